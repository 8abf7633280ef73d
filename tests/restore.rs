//! `tidstorage restore` on repositories made by `backup`: `--verify` (and
//! `--quick`) catch a flipped byte and a missing file, a `--date` before
//! the first backup is named and leaves no directory behind, `--check`
//! compares with the live file, `--force` keeps the old file, and a restore
//! over a Data.fs held by a running ZEO is refused.
//!
//! Restores as of a daemon's coherent point are in `backup.rs`; restoring
//! repozo's repositories (and repozo restoring ours) is in
//! `repozo_interop.rs`.

mod common;

use std::path::PathBuf;

use common::*;

#[test]
fn verify_catches_a_flipped_byte_and_a_missing_file() {
    let s = Site::new(6);
    s.ok(&["backup", "--no-server"]);
    s.write(3);
    s.ok(&["backup", "--no-server", "--gzip"]);
    s.write(3);
    s.ok(&["backup", "--no-server"]);
    s.ok(&["restore", "--verify"]);
    let files = s.data_files();
    let delta = s.repo().join(&files[2]);
    flip_byte(&delta, 30);
    let o = s.tid(&["restore", "--verify"]);
    assert_code(&o, 1);
    assert!(
        stdout(&o).contains(&files[2]) && stdout(&o).contains("md5"),
        "{}",
        stdout(&o)
    );
    // Sizes only: a flipped byte is not seen, as with repozo -V -Q.
    s.ok(&["restore", "--verify", "--quick"]);
    // A restore refuses the damaged chain, naming the file, and writes nothing.
    let o = s.tid(&["restore", "--no-cut", "--output-dir", "out"]);
    assert_code(&o, 3);
    assert!(stderr(&o).contains(&files[2]), "{}", stderr(&o));
    assert!(!s.restored("out").exists());
    flip_byte(&delta, 30);
    // A gzip file gone: verify (even quick) and restore name it.
    std::fs::remove_file(s.repo().join(&files[1])).unwrap();
    for q in [
        &["restore", "--verify"][..],
        &["restore", "--verify", "--quick"],
    ] {
        let o = s.tid(q);
        assert_code(&o, 1);
        assert!(
            stdout(&o).contains(&files[1]) && stdout(&o).contains("missing"),
            "{}",
            stdout(&o)
        );
    }
    let o = s.tid(&["restore", "--no-cut", "--output-dir", "out"]);
    assert_code(&o, 3);
    assert!(stderr(&o).contains(&files[1]), "{}", stderr(&o));
}

#[test]
fn a_date_before_the_first_backup_is_named_and_leaves_nothing_behind() {
    let s = Site::new(3);
    s.ok(&["backup", "--no-server"]);
    let o = s.tid(&[
        "restore",
        "--date",
        "2000-01-01-00-00-00",
        "--output-dir",
        "out/deep",
    ]);
    assert_code(&o, 3);
    let e = stderr(&o);
    assert!(
        e.contains("no backup in") && e.contains("its oldest is 20"),
        "{e}"
    );
    assert!(!s.p("out").exists(), "a refused restore left directories");
    // A chain that fails its md5 check leaves no directory either.
    let full = s
        .data_files()
        .into_iter()
        .find(|f| f.ends_with(".fs"))
        .unwrap();
    flip_byte(&s.repo().join(full), 100);
    let o = s.tid(&["restore", "--no-cut", "--output-dir", "out/deep"]);
    assert_code(&o, 3);
    assert!(stderr(&o).contains("md5"), "{}", stderr(&o));
    assert!(!s.p("out").exists(), "a refused restore left directories");
}

#[test]
fn check_compares_and_force_keeps_the_old_file() {
    let s = Site::new(5);
    s.ok(&["backup", "--no-server"]);
    s.write(2);
    // The live file grew since: the restore is its prefix.
    let out = s.ok(&["restore", "--no-cut", "--check"]);
    assert!(out.contains("ok, the restored"), "{out}");
    let live = s.live();
    flip_byte(&s.data_fs(), 100);
    let o = s.tid(&["restore", "--no-cut", "--check"]);
    assert_code(&o, 1);
    assert!(
        stdout(&o).contains("differs from the restored data at offset 100"),
        "{}",
        stdout(&o)
    );
    flip_byte(&s.data_fs(), 100);
    assert!(s.live() == live, "--check changed the live file");
    // Over the configured file: refused without --force.
    let o = s.tid(&["restore", "--no-cut"]);
    assert_code(&o, 3);
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert!(s.live() == live);
    let out = s.ok(&["restore", "--no-cut", "--force"]);
    assert!(out.contains("kept as"), "{out}");
    let kept: Vec<PathBuf> = std::fs::read_dir(s.p("var"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("Data.fs.before-restore-") && !n.ends_with(".index")
        })
        .collect();
    assert_eq!(kept.len(), 1);
    assert!(std::fs::read(&kept[0]).unwrap() == live);
    assert!(s.live().len() < live.len());
    assert_eq!(
        zodb(&["check", s.data_fs().to_str().unwrap()])["fstest"],
        "ok"
    );
}

#[test]
fn restore_refuses_while_zeo_holds_the_file() {
    let s = Site::new(3);
    s.ok(&["backup", "--no-server"]);
    let mut hold = hold_open(&s.data_fs());
    let o = s.tid(&["restore", "--no-cut", "--force"]);
    drop(hold.stdin.take());
    let _ = hold.wait();
    assert_code(&o, 3);
    assert!(
        stderr(&o).contains("locked by a running ZEO"),
        "{}",
        stderr(&o)
    );
}
