//! `restore --incremental`: a standby kept current by appending only what
//! the chain adds, checked against real ZODB and against a fresh full
//! restore of the same run (md5), for repositories of tidstorage and of
//! ZODB's own repozo; packs, flipped bytes and interrupted appends fall
//! back or resume as documented.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn md5(p: &Path) -> String {
    let o = std::process::Command::new("md5sum")
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8(o.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A fresh full restore of the same run, for comparison.
fn fresh(s: &Site, extra: &[&str]) -> PathBuf {
    let dir = format!("fresh-{}", std::process::id() as u64 + rand_suffix());
    let mut a = vec!["restore", "--output-dir", &dir];
    a.extend_from_slice(extra);
    s.ok(&a);
    s.restored(&dir)
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

fn status_at(s: &Site, name: &str, tid: u64) {
    std::fs::write(s.p(name), format!("1732212345.67 f {{'main': {tid}}}\n")).unwrap();
}

#[test]
fn a_standby_follows_several_runs_and_equals_a_fresh_full_restore() {
    let s = Site::new(5);
    s.ok(&["backup", "--no-server"]);
    // The first day: no standby yet, restored in full.
    let out = s.ok(&["restore", "--incremental", "--no-cut", "--output-dir", "sb"]);
    assert!(out.contains("restored"), "{out}");
    let sb = s.restored("sb");
    for (day, quick) in [(1, false), (2, true), (3, true)] {
        s.write(3 + day);
        next_second();
        s.ok(&["backup", "--no-server"]);
        let mut a = vec!["restore", "--incremental", "--no-cut", "--output-dir", "sb"];
        if quick {
            a.push("--quick");
        }
        let out = s.ok(&a);
        assert!(out.contains("appended"), "day {day}: {out}");
        if quick {
            assert!(out.contains("--quick, the last chunk"), "{out}");
        }
        assert_eq!(md5(&sb), md5(&fresh(&s, &["--no-cut"])), "day {day}");
        let c = zodb(&["check", sb.to_str().unwrap()]);
        assert_eq!(c["fstest"], "ok");
        assert_eq!(std::fs::read(&sb).unwrap(), s.live());
    }
    // Nothing new: nothing appended, still equal.
    let out = s.ok(&["restore", "--incremental", "--no-cut", "--output-dir", "sb"]);
    assert!(out.contains("appended 0 bytes"), "{out}");
}

#[test]
fn a_standby_cut_at_its_point_catches_up() {
    let s = Site::new(0);
    let first = s.write(6);
    s.ok(&["backup", "--no-server"]);
    status_at(&s, "p1.tid", first[2]);
    s.ok(&[
        "restore",
        "--incremental",
        "--tid-log",
        "p1.tid",
        "--output-dir",
        "sb",
    ]);
    let sb = s.restored("sb");
    let cut_size = std::fs::metadata(&sb).unwrap().len();
    assert!(cut_size < s.live().len() as u64);
    let more = s.write(2);
    next_second();
    s.ok(&["backup", "--no-server"]);
    status_at(&s, "p2.tid", more[0]);
    let out = s.ok(&[
        "restore",
        "--incremental",
        "--tid-log",
        "p2.tid",
        "--output-dir",
        "sb",
    ]);
    assert!(
        out.contains(&format!("({cut_size}..")),
        "appended from the cut: {out}"
    );
    assert_eq!(md5(&sb), md5(&fresh(&s, &["--tid-log", "p2.tid"])));
    assert_eq!(zodb(&["check", sb.to_str().unwrap()])["last_tid"], more[0]);
}

#[test]
fn a_pack_or_a_flipped_byte_means_a_full_restore_with_the_reason() {
    let s = Site::new(5);
    s.ok(&["backup", "--no-server"]);
    s.ok(&["restore", "--incremental", "--no-cut", "--output-dir", "sb"]);
    let sb = s.restored("sb");
    // A flipped byte in the standby's prefix is found (no --quick).
    flip_byte(&sb, 200);
    s.write(1);
    next_second();
    s.ok(&["backup", "--no-server"]);
    let out = s.ok(&["restore", "--incremental", "--no-cut", "--output-dir", "sb"]);
    assert!(out.contains("full restore because: its bytes 0.."), "{out}");
    assert_eq!(md5(&sb), md5(&fresh(&s, &["--no-cut"])));
    // --quick on a standby changed since it was written checks it all.
    flip_byte(&sb, 200);
    let out = s.ok(&[
        "restore",
        "--incremental",
        "--quick",
        "--no-cut",
        "--output-dir",
        "sb",
    ]);
    assert!(out.contains("full restore because"), "{out}");
    // A pack: the live file is no longer a continuation of the chain.
    zodb(&["pack", s.data_fs().to_str().unwrap()]);
    next_second();
    s.ok(&["backup", "--no-server"]);
    let out = s.ok(&["restore", "--incremental", "--no-cut", "--output-dir", "sb"]);
    assert!(out.contains("full restore because"), "{out}");
    assert_eq!(std::fs::read(&sb).unwrap(), s.live());
}

#[test]
fn an_interrupted_append_serves_the_old_database_and_a_rerun_completes_it() {
    use tidstorage::repozo::Repository;
    use tidstorage::storageset::standby;
    let s = Site::new(4);
    s.ok(&["backup", "--no-server"]);
    s.ok(&["restore", "--incremental", "--no-cut", "--output-dir", "sb"]);
    let sb = s.restored("sb");
    let old = zodb(&["check", sb.to_str().unwrap()]);
    let old_size = std::fs::metadata(&sb).unwrap().len();
    s.write(3);
    next_second();
    s.ok(&["backup", "--no-server"]);
    // The first phase only (what a kill before the status byte leaves).
    let repo = Repository::new(s.repo());
    let chain = repo.checked_chain(repo.find_chain(None).unwrap()).unwrap();
    let a = standby::append(
        &sb,
        &repo,
        &chain,
        old_size,
        None,
        &tidstorage::progress::NoProgress,
    )
    .unwrap();
    assert!(a.end > old_size);
    // FileStorage, with the old index and without one, sees the old
    // database: its size and its transactions. (Its lastTransaction() is
    // the hidden transaction's tid: read_index takes the tid before it
    // looks at the status.)
    let seen = |p: &Path| {
        let c = zodb(&["check", p.to_str().unwrap()]);
        (c["size"].clone(), c["count"].clone())
    };
    assert_eq!(seen(&sb), (old["size"].clone(), old["count"].clone()));
    let lone = s.p("lone.fs");
    std::fs::copy(&sb, &lone).unwrap();
    assert_eq!(seen(&lone), (old["size"].clone(), old["count"].clone()));
    // The same command finishes the job.
    let out = s.ok(&["restore", "--incremental", "--no-cut", "--output-dir", "sb"]);
    assert!(
        out.contains(&format!("({old_size}..")),
        "resumed from the old end: {out}"
    );
    assert_eq!(std::fs::read(&sb).unwrap(), s.live());
    assert_eq!(md5(&sb), md5(&fresh(&s, &["--no-cut"])));
}

#[test]
fn a_repository_written_by_repozo_is_followed_too() {
    let s = Site::new(4);
    s.repozo_backup(&[]);
    s.ok(&["restore", "--incremental", "--no-cut", "--output-dir", "sb"]);
    s.write(2);
    s.repozo_backup(&[]);
    let out = s.ok(&["restore", "--incremental", "--no-cut", "--output-dir", "sb"]);
    assert!(out.contains("appended"), "{out}");
    let sb = s.restored("sb");
    assert!(std::fs::read(&sb).unwrap() == s.repozo_restore("theirs.fs", None));
}
