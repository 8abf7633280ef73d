//! `tidstorage backup` on Data.fs files written by the real ZODB: run
//! names (several runs in one second), the repository lock, a failed copy
//! leaving no file under a backup's name, an unreachable daemon, pruning
//! with `--keep-full`, a commit in progress on a live file. Then backups
//! through a running daemon fed the real TIDs: each Data.fs is copied only
//! up to its storage's coherent TID, the point is recorded in the
//! manifests, `restore` gives it back, a storage the daemon does not know
//! fails alone, and backup fires the bootstrap trigger of a storage missing
//! from the point.
//!
//! Restore-only behaviour is in `restore.rs`; exchanging repositories with
//! ZODB's repozo is in `repozo_interop.rs`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;

#[test]
fn backups_in_one_second_get_distinct_names_and_all_restore() {
    let s = Site::new(3);
    for _ in 0..3 {
        s.write(1);
        s.ok(&["backup", "--no-server"]);
    }
    let files = s.data_files();
    assert_eq!(files.len(), 3);
    let mut roots: Vec<&str> = files.iter().map(|f| &f[..19]).collect();
    roots.dedup();
    assert_eq!(roots.len(), 3, "two files share a second: {files:?}");
    // repozo would skip nothing: its restore has every transaction.
    assert!(s.repozo_restore("r.fs", None) == s.live());
    let ts = std::fs::read_to_string(s.p("timestamps.log")).unwrap();
    let lines: Vec<&str> = ts.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "{ts}");
}

#[test]
fn a_locked_repository_is_refused_and_untouched() {
    let s = Site::new(3);
    let held = tidstorage::fsutil::try_lock_file(&s.repo().join("tidstorage.lock"))
        .unwrap()
        .unwrap();
    let before = s.all_files();
    let o = s.tid(&["backup", "--no-server"]);
    assert_code(&o, 3);
    assert!(
        stderr(&o).contains("held by another tidstorage"),
        "{}",
        stderr(&o)
    );
    assert_eq!(s.all_files(), before);
    let o = s.tid(&["restore", "--no-cut", "--output-dir", "out"]);
    assert_code(&o, 3);
    drop(held);
    s.ok(&["backup", "--no-server"]);
}

#[test]
fn a_failed_copy_leaves_no_file_under_a_backup_name() {
    let s = Site::new(30);
    let size = std::fs::metadata(s.data_fs()).unwrap().len();
    // A file size limit below the Data.fs: the copy fails like a full disk.
    let limit = size / 2;
    let mut cmd = Command::new(bin());
    cmd.args(["-c", "t.toml", "backup", "--no-server"])
        .current_dir(s.dir.path())
        .env_remove("TIDSTORAGE_CONFIG");
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: libc::RLIM_INFINITY,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    assert_code(&o, 3);
    let err = stderr(&o);
    assert!(err.contains("no backup file was left"), "{err}");
    // Only the lock file: no data file, no .dat, no temporary, no manifest.
    assert_eq!(s.all_files(), ["tidstorage.lock"]);
    assert!(!s.p("timestamps.log").exists());
    // And a later run works.
    s.ok(&["backup", "--no-server"]);
    assert_eq!(s.data_files().len(), 1);
}

#[test]
fn daemon_down_is_a_clear_error_and_writes_nothing() {
    let s = Site::new(3);
    // A port nobody listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let o = s.tid(&["backup", "--server", &addr]);
    assert_code(&o, 3);
    let err = stderr(&o);
    assert!(err.contains("cannot reach the tidstorage daemon"), "{err}");
    assert!(err.contains("nothing was backed up"), "{err}");
    assert_eq!(s.all_files(), ["tidstorage.lock"]);
    assert!(
        !s.p("status-copies").exists()
            || std::fs::read_dir(s.p("status-copies")).unwrap().count() == 0
    );
}

#[test]
fn keep_full_prunes_older_chains_and_status_copies() {
    let s = Site::new(3);
    std::fs::write(s.p("status.tid"), "").unwrap();
    for i in 0..3 {
        s.write(1);
        s.ok(&["backup", "--no-server", "--full"]);
        s.write(1);
        s.ok(&["backup", "--no-server"]);
        if i == 2 {
            break;
        }
    }
    assert_eq!(s.data_files().len(), 6);
    let copies = std::fs::read_dir(s.p("status-copies")).unwrap().count();
    assert_eq!(copies, 6);
    s.write(1);
    let out = s.ok(&["backup", "--no-server", "--keep-full", "2"]);
    assert!(out.contains("removed"), "{out}");
    let files = s.data_files();
    let exts: Vec<&str> = files.iter().map(|f| ext_of(f)).collect();
    assert_eq!(exts, [".fs", ".deltafs", ".fs", ".deltafs", ".deltafs"]);
    // Nothing of the removed chain is left (no .dat, .index or manifest).
    let oldest = &files[0][..19];
    for f in s.all_files() {
        if f.len() >= 19 && f.as_bytes()[4] == b'-' {
            assert!(&f[..19] >= oldest, "{f} survived the pruning");
        }
    }
    let copies: Vec<String> = std::fs::read_dir(s.p("status-copies"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // 7 runs; the 2 made before the oldest kept full backup are gone.
    assert_eq!(copies.len(), 5, "{copies:?}");
    assert!(
        copies.iter().all(|c| c[c.len() - 19..] >= *oldest),
        "{copies:?}"
    );
    assert!(s.repozo_restore("r.fs", None) == s.live());
}

#[test]
fn a_commit_in_progress_on_a_live_file_is_not_reported_as_damage() {
    let s = Site::new(0);
    let tids = s.write(3);
    let size = std::fs::metadata(s.data_fs()).unwrap().len();
    // ZODB truncates a voted tail when it opens a file read-write: the
    // server opens first, then its commit is in progress.
    let mut hold = hold_open(&s.data_fs());
    append_voted_transaction(&s.data_fs(), tids.last().unwrap() + 1);
    let o = s.tid(&["backup", "--no-server"]);
    drop(hold.stdin.take());
    let _ = hold.wait();
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "backed up to offset {size}, before a commit in progress"
        )),
        "{out}"
    );
    assert!(!out.contains("damaged"), "{out}");
    assert_eq!(s.our_restore("out", &[]).len() as u64, size);

    // Nobody holds the file any more: the same tail is damage (a commit
    // interrupted by a crash), and said so.
    next_second();
    let out = s.ok(&["backup", "--no-server"]);
    assert!(
        out.contains(&format!("the Data.fs is damaged after offset {size}")),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// Backups through a running daemon (several storages, one coherent point).

fn write_config(dir: &Path, name: &str, port: u16, storages: &[&str]) {
    let mut t = format!(
        "[server]\nport = {port}\nstatus_file = \"status.tid\"\n\
         [backup]\ntimestamp_file = \"timestamps.log\"\nstatus_file_backup_dir = \"status-copies\"\n"
    );
    for s in storages {
        t.push_str(&format!(
            "[[storage]]\nid = \"{s}\"\ndata_fs = \"{s}/Data.fs\"\nrepository = \"repo-{s}\"\n"
        ));
        std::fs::create_dir_all(dir.join(s)).unwrap();
        std::fs::create_dir_all(dir.join(format!("repo-{s}"))).unwrap();
    }
    std::fs::write(dir.join(name), t).unwrap();
}

#[test]
fn backup_stops_at_the_coherent_tid_and_restore_gives_the_point() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The daemon knows storages a and b; the backup config adds c, which
    // no commit ever names.
    write_config(d, "daemon.toml", 0, &["a", "b"]);
    let ta = zodb_write(&d.join("a/Data.fs"), 5);
    let tb = zodb_write(&d.join("b/Data.fs"), 5);

    let daemon = Daemon::start(d, &["-c", "daemon.toml", "--burst-period", "10ms"]);
    let mut cl = daemon.client();
    cl.begin("t0", &["a", "b"]);
    cl.commit("t0", &[("a", ta[0]), ("b", tb[0])]);
    cl.wait_bootstrapped();
    for i in 1..4 {
        let t = format!("t{i}");
        cl.begin(&t, &["a", "b"]);
        cl.commit(&t, &[("a", ta[i]), ("b", tb[i])]);
    }
    // a's last transaction is still in flight: the point stays below it.
    cl.begin("t4", &["a"]);
    cl.begin("t5", &["b"]);
    cl.commit("t5", &[("b", tb[4])]);
    assert_eq!(cl.dump(), pt(&[("a", ta[3]), ("b", tb[4])]));

    write_config(d, "backup.toml", daemon.port, &["a", "b", "c"]);
    zodb_write(&d.join("c/Data.fs"), 2);
    let o = run_in(
        d,
        &["-c", "backup.toml", "backup", "--bootstrap-wait", "300ms"],
    );
    // c fails (the daemon has no TID for it), a and b are backed up.
    assert_code(&o, 3);
    let err = stderr(&o);
    assert!(
        err.contains("storage c") && err.contains("no coherent TID"),
        "{err}"
    );
    assert!(
        !d.join("timestamps.log").exists(),
        "an incomplete run is no restore point"
    );
    let list = |r: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d.join(r))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(list("repo-c"), ["tidstorage.lock"]);

    // a's backup ends where ZODB stops reading at the coherent TID; b's
    // holds the whole file.
    let size_a = zodb(&[
        "size",
        d.join("a/Data.fs").to_str().unwrap(),
        &ta[3].to_string(),
    ])["size"]
        .as_u64()
        .unwrap();
    let full_a = std::fs::metadata(d.join("a/Data.fs")).unwrap().len();
    assert!(size_a < full_a);
    let fs_a: Vec<String> = list("repo-a")
        .into_iter()
        .filter(|n| n.ends_with(".fs"))
        .collect();
    assert_eq!(fs_a.len(), 1);
    assert_eq!(
        std::fs::metadata(d.join("repo-a").join(&fs_a[0]))
            .unwrap()
            .len(),
        size_a
    );
    let fs_b: Vec<String> = list("repo-b")
        .into_iter()
        .filter(|n| n.ends_with(".fs"))
        .collect();
    assert_eq!(
        std::fs::metadata(d.join("repo-b").join(&fs_b[0]))
            .unwrap()
            .len(),
        std::fs::metadata(d.join("b/Data.fs")).unwrap().len()
    );
    let man: Vec<String> = list("repo-a")
        .into_iter()
        .filter(|n| n.ends_with(".tidstorage.json"))
        .collect();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("repo-a").join(&man[0])).unwrap()).unwrap();
    assert_eq!(m["tid"], ta[3]);
    assert_eq!(m["cut_position"], size_a);
    assert_eq!(m["point"]["b"], tb[4]);

    // The run's date is the manifests' name; restore a and b as of it.
    let date = &man[0][..19];
    let o = run_in(
        d,
        &[
            "-c",
            "backup.toml",
            "restore",
            "--storage",
            "a",
            "--storage",
            "b",
            "--date",
            date,
            "--output-dir",
            "restored",
        ],
    );
    assert_code(&o, 0);
    for (s, want) in [("a", ta[3]), ("b", tb[4])] {
        let p = restored_under(&d.join("restored"), &d.join(s).join("Data.fs"));
        let c = zodb(&["check", p.to_str().unwrap()]);
        assert_eq!(c["last_tid"], want, "storage {s}");
        assert_eq!(c["fstest"], "ok");
        assert!(p.with_file_name("Data.fs.index").exists());
    }

    // a's in-flight transaction commits; the next backup is incremental up
    // to the new point, and a default restore (timestamp file) follows it.
    cl.commit("t4", &[("a", ta[4])]);
    let mut waited = 0;
    while cl.dump().get("a") != Some(&ta[4]) {
        waited += 1;
        assert!(waited < 1000, "the point never reached a's last TID");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    write_config(d, "backup2.toml", daemon.port, &["a", "b"]);
    let o = run_in(d, &["-c", "backup2.toml", "backup"]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("storage a: incremental"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("storage b: unchanged"),
        "{}",
        stdout(&o)
    );
    let o = run_in(
        d,
        &["-c", "backup2.toml", "restore", "--output-dir", "restored2"],
    );
    assert_code(&o, 0);
    for (s, want) in [("a", ta[4]), ("b", tb[4])] {
        let p = restored_under(&d.join("restored2"), &d.join(s).join("Data.fs"));
        assert_eq!(
            zodb(&["check", p.to_str().unwrap()])["last_tid"],
            want,
            "storage {s}"
        );
    }
    drop(cl);
    daemon.stop();
}

#[test]
fn backup_fires_the_bootstrap_trigger_of_a_storage_missing_from_the_point() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, "daemon.toml", 0, &["a"]);
    let ta = zodb_write(&d.join("a/Data.fs"), 2);
    let daemon = Daemon::start(d, &["-c", "daemon.toml"]);
    let mut cl = daemon.client();
    cl.begin("t0", &["a"]);
    cl.commit("t0", &[("a", ta[0])]);
    cl.wait_bootstrapped();
    cl.begin("t1", &["a"]);
    cl.commit("t1", &[("a", ta[1])]);
    assert_eq!(cl.dump(), pt(&[("a", ta[1])]));
    // c never committed since the daemon started: only its trigger can
    // make it known. The trigger reports c's last real TID, as the
    // bootstrap helper's commit through ZEO would.
    write_config(d, "backup.toml", daemon.port, &["a", "c"]);
    let tc = zodb_write(&d.join("c/Data.fs"), 2);
    let script = d.join("touch.sh");
    write_script(
        &script,
        &format!(
            "#!/bin/bash\nid=\"$TIDSTORAGE_STORAGE_ID\"\n\
             printf 'BEGIN\\nboot-%s\\n1\\n%s\\nCOMMIT\\nboot-%s\\n1\\n%s\\n{}\\n' \"$id\" \"$id\" \"$id\" \"$id\" \
             > /dev/tcp/127.0.0.1/{}\n",
            tc[1], daemon.port
        ),
    );
    let mut cfg = std::fs::read_to_string(d.join("backup.toml")).unwrap();
    cfg.push_str(&format!(
        "[bootstrap]\ncommand = \"{}\"\n",
        script.display()
    ));
    std::fs::write(d.join("backup.toml"), cfg).unwrap();
    let o = run_in(
        d,
        &["-c", "backup.toml", "backup", "--bootstrap-wait", "20s"],
    );
    assert_code(&o, 0);
    assert!(
        stderr(&o).contains("firing their bootstrap triggers"),
        "{}",
        stderr(&o)
    );
    assert_eq!(cl.dump().get("c"), Some(&tc[1]));
    assert!(d.join("timestamps.log").exists(), "a complete run");
    drop(cl);
    daemon.stop();
}

// ---------------------------------------------------------------------------
// After a failure, an immediate rerun finishes the job (issue 13).

/// A valid status file whose point is `tid` for storage `main`.
fn write_status_file(s: &Site, tid: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    std::fs::write(s.p("status.tid"), format!("{now:.2} f {{'main': {tid}}}\n")).unwrap();
}

fn utc_second_now() -> String {
    let o = Command::new("date")
        .args(["-u", "+%Y-%m-%d-%H-%M-%S"])
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn a_rerun_in_the_second_of_a_failed_run_succeeds_and_restores_by_default() {
    let s = Site::new(3);
    let tids = s.write(2);
    write_status_file(&s, *tids.last().unwrap());
    // What a run that failed after copying the status file leaves: the
    // copy under this second's name.
    std::fs::create_dir_all(s.p("status-copies")).unwrap();
    let leftover = s.p(&format!("status-copies/status.tid.{}", utc_second_now()));
    std::fs::write(&leftover, "garbage of a failed run\n").unwrap();
    let out = s.ok(&["backup", "--no-server"]);
    assert!(out.contains("status file copied to"), "{out}");
    // The run is complete: a default restore (timestamp file) uses it.
    let o = s.tid(&["restore", "--output-dir", "out"]);
    assert_code(&o, 0);
    assert_eq!(std::fs::read(s.restored("out")).unwrap(), s.live());
}

#[test]
fn a_backup_file_no_dat_lists_is_set_aside_and_verify_passes_again() {
    let s = Site::new(3);
    s.ok(&["backup", "--no-server"]);
    // What a backup killed between naming its file and listing it in the
    // .dat leaves: a complete file under a backup name, unlisted.
    next_second();
    let orphan = s.repo().join(format!("{}.deltafs", utc_second_now()));
    std::fs::write(&orphan, b"unlisted bytes").unwrap();
    let o = s.tid(&["restore", "--verify"]);
    assert_code(&o, 1);
    next_second();
    s.write(2);
    let out = s.ok(&["backup", "--no-server"]);
    assert!(out.contains("set aside"), "{out}");
    assert!(!orphan.exists());
    assert!(
        fsutil_sibling(&orphan, ".unlisted").exists(),
        "kept for the operator"
    );
    s.ok(&["restore", "--verify"]);
    // repozo, which picks files by name, restores the same bytes.
    assert!(s.repozo_restore("theirs.fs", None) == s.live());
}

fn fsutil_sibling(p: &Path, suffix: &str) -> std::path::PathBuf {
    let mut o = p.as_os_str().to_owned();
    o.push(suffix);
    o.into()
}

#[test]
fn an_unchanged_backup_writes_the_index_an_earlier_run_could_not() {
    let s = Site::new(3);
    s.ok(&["backup", "--no-server"]);
    let index: Vec<String> = s
        .all_files()
        .into_iter()
        .filter(|n| n.ends_with(".index"))
        .collect();
    assert_eq!(index.len(), 1, "{index:?}");
    std::fs::remove_file(s.repo().join(&index[0])).unwrap();
    let out = s.ok(&["backup", "--no-server"]);
    assert!(
        out.contains("unchanged") && out.contains("wrote the missing index"),
        "{out}"
    );
    assert!(s.repo().join(&index[0]).exists());
}

#[test]
fn keep_full_removes_what_a_prune_killed_half_way_left() {
    let s = Site::new(2);
    for _ in 0..2 {
        s.ok(&["backup", "--no-server", "--full"]);
        s.write(1);
        s.ok(&["backup", "--no-server"]);
        next_second();
    }
    let files = s.data_files();
    // A prune killed after removing the oldest full, before its delta.
    std::fs::remove_file(s.repo().join(&files[0])).unwrap();
    let orphan_delta = files[1].clone();
    assert!(orphan_delta.ends_with(".deltafs"), "{files:?}");
    s.write(1);
    s.ok(&["backup", "--no-server", "--full", "--keep-full", "2"]);
    assert!(
        !s.repo().join(&orphan_delta).exists(),
        "the delta of a removed full stays forever: {:?}",
        s.all_files()
    );
    s.ok(&["restore", "--verify"]);
}

#[test]
fn a_storage_without_repository_is_a_configuration_error_and_nothing_is_written() {
    let s = Site::new(2);
    std::fs::write(
        s.p("t.toml"),
        "[[storage]]\nid = \"main\"\ndata_fs = \"var/Data.fs\"\nrepository = \"repo\"\n\
         [[storage]]\nid = \"other\"\ndata_fs = \"var/Other.fs\"\n",
    )
    .unwrap();
    let o = s.tid(&["backup", "--no-server"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("no repository"), "{}", stderr(&o));
    assert!(s.data_files().is_empty(), "{:?}", s.data_files());
}

#[test]
fn a_relative_config_records_absolute_paths_so_restore_works_from_elsewhere() {
    let s = Site::new(3);
    let tids = s.write(1);
    write_status_file(&s, *tids.last().unwrap());
    s.ok(&["backup", "--no-server"]);
    let manifest = s
        .all_files()
        .into_iter()
        .find(|n| n.ends_with(".tidstorage.json"))
        .unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.repo().join(manifest)).unwrap()).unwrap();
    let copy = m["status_file_copy"].as_str().unwrap();
    assert!(Path::new(copy).is_absolute(), "{copy}");
    assert!(
        Path::new(m["data_fs"].as_str().unwrap()).is_absolute(),
        "{m}"
    );
    // From another directory, with the configuration named absolutely.
    let elsewhere = tempfile::tempdir().unwrap();
    let cfg = s.p("t.toml");
    let out = elsewhere.path().join("out");
    let o = run_in(
        elsewhere.path(),
        &[
            "-c",
            cfg.to_str().unwrap(),
            "restore",
            "--output-dir",
            out.to_str().unwrap(),
        ],
    );
    assert_code(&o, 0);
}

#[test]
fn a_file_size_limit_is_reported_as_an_error_not_a_signal() {
    let s = Site::new(30);
    let script = format!(
        "ulimit -f 8; exec {} -c t.toml backup --no-server",
        bin().display()
    );
    let o = Command::new("sh")
        .args(["-c", &script])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "killed by a signal? {:?}",
        o.status
    );
    assert!(stderr(&o).contains("File too large"), "{}", stderr(&o));
    assert!(s.data_files().is_empty(), "{:?}", s.data_files());
}

#[test]
fn max_lag_skips_only_the_storage_a_stuck_transaction_holds_back_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, "daemon.toml", 0, &["a", "b"]);
    let ta = zodb_write(&d.join("a/Data.fs"), 4);
    let tb = zodb_write(&d.join("b/Data.fs"), 3);
    let daemon = Daemon::start(d, &["-c", "daemon.toml", "--burst-period", "10ms"]);
    let mut cl = daemon.client();
    cl.begin("t0", &["a", "b"]);
    cl.commit("t0", &[("a", ta[0]), ("b", tb[0])]);
    cl.wait_bootstrapped();
    cl.begin("t1", &["a", "b"]);
    cl.commit("t1", &[("a", ta[1]), ("b", tb[2])]);
    // A commit on a that never ends: a's point stays at ta[1] while its
    // Data.fs holds two newer transactions.
    cl.begin("stuck", &["a"]);
    cl.begin("t2", &["a"]);
    cl.commit("t2", &[("a", ta[3])]);
    assert_eq!(cl.dump(), pt(&[("a", ta[1]), ("b", tb[2])]));
    write_config(d, "backup.toml", daemon.port, &["a", "b"]);
    let o = run_in(d, &["-c", "backup.toml", "backup", "--max-lag", "0s"]);
    assert_code(&o, 3);
    let err = stderr(&o);
    assert!(
        err.contains("storage a") && err.contains("--max-lag"),
        "{err}"
    );
    assert!(
        err.contains("held back by stuck"),
        "the holder is named: {err}"
    );
    assert!(err.contains("tidstorage resolve"), "{err}");
    // b, not held back, is backed up, and its summary says its lag.
    let out = stdout(&o);
    assert!(
        out.contains("storage b: full") && out.contains("lag 0.0 s"),
        "{out}"
    );
    let files = |r: &str| {
        std::fs::read_dir(d.join(r))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".fs")
            })
            .count()
    };
    assert_eq!((files("repo-a"), files("repo-b")), (0, 1));
    // Without the limit (the same command without --max-lag), a is backed
    // up at its old point: the limit is what refuses a silently stale backup.
    let o = run_in(d, &["-c", "backup.toml", "backup"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("storage a: full"), "{}", stdout(&o));
    daemon.stop();
}
