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

use std::path::{Path, PathBuf};

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

// ---------------------------------------------------------------------------
// After a failure, an immediate rerun finishes the job (issue 13).

/// The `.before-restore-*` files kept beside `target`.
fn kept_beside(target: &Path) -> Vec<String> {
    let name = target.file_name().unwrap().to_string_lossy().into_owned();
    let mut v: Vec<String> = std::fs::read_dir(target.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{name}.before-restore-")) && !n.ends_with(".index"))
        .collect();
    v.sort();
    v
}

#[test]
fn force_twice_in_one_second_keeps_both_replaced_files() {
    let s = Site::new(3);
    s.ok(&["backup", "--no-server"]);
    s.ok(&["restore", "--no-cut", "--output-dir", "out"]);
    s.ok(&["restore", "--no-cut", "--output-dir", "out", "--force"]);
    s.ok(&["restore", "--no-cut", "--output-dir", "out", "--force"]);
    let kept = kept_beside(&s.restored("out"));
    assert!(kept.len() == 2, "two replaced files, two names: {kept:?}");
}

#[test]
fn a_restore_already_in_place_is_finished_by_a_plain_rerun() {
    let s = Site::new(3);
    s.ok(&["backup", "--no-server"]);
    s.ok(&["restore", "--no-cut", "--output-dir", "out"]);
    // A restore whose index could not be written (or whose directory
    // fsync failed) leaves the file in place: the same command finishes.
    let index = {
        let mut p = s.restored("out").into_os_string();
        p.push(".index");
        std::path::PathBuf::from(p)
    };
    std::fs::remove_file(&index).unwrap();
    let out = s.ok(&["restore", "--no-cut", "--output-dir", "out"]);
    assert!(out.contains("already held this restore's result"), "{out}");
    assert!(index.exists(), "the rerun writes the missing index");
    // A different file under the name is still refused.
    s.write(1);
    s.ok(&["backup", "--no-server"]);
    let o = s.tid(&["restore", "--no-cut", "--output-dir", "out"]);
    assert_code(&o, 3);
    assert!(
        stderr(&o).contains("exists; restore with --force"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn force_keeps_the_owner_and_mode_of_the_replaced_file() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let s = Site::new(3);
    s.ok(&["backup", "--no-server"]);
    s.ok(&["restore", "--no-cut", "--output-dir", "out"]);
    let target = s.restored("out");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o664)).unwrap();
    // As root (CI), the owner too; otherwise only the mode is checked.
    let root = unsafe { libc_geteuid() } == 0;
    if root {
        std::os::unix::fs::chown(&target, Some(65534), Some(65534)).unwrap();
    }
    s.ok(&["restore", "--no-cut", "--output-dir", "out", "--force"]);
    let m = std::fs::metadata(&target).unwrap();
    assert_eq!(m.mode() & 0o777, 0o664);
    if root {
        assert_eq!((m.uid(), m.gid()), (65534, 65534));
    }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[test]
fn a_multi_storage_install_is_all_or_nothing() {
    let s = Site::new(3);
    std::fs::create_dir(s.p("repo2")).unwrap();
    zodb_write(&s.p("var/Second.fs"), 2);
    std::fs::write(
        s.p("t.toml"),
        "[backup]\ntimestamp_file = \"timestamps.log\"\n\
         [[storage]]\nid = \"main\"\ndata_fs = \"var/Data.fs\"\nrepository = \"repo\"\n\
         [[storage]]\nid = \"second\"\ndata_fs = \"var/Second.fs\"\nrepository = \"repo2\"\n",
    )
    .unwrap();
    s.ok(&["backup", "--no-server"]);
    s.ok(&["restore", "--no-cut", "--output-dir", "out"]);
    let first = s.restored("out");
    let second = restored_under(&s.p("out"), &s.p("var/Second.fs"));
    // The first target holds something else; the second cannot be
    // replaced (a directory where the file should be).
    std::fs::write(&first, b"the operator's own file").unwrap();
    std::fs::remove_file(&second).unwrap();
    std::fs::create_dir(&second).unwrap();
    let o = s.tid(&["restore", "--no-cut", "--output-dir", "out", "--force"]);
    assert_code(&o, 3);
    assert!(
        stderr(&o).contains("nothing was restored"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(&first).unwrap(),
        b"the operator's own file",
        "the first storage was replaced although the second failed"
    );
    assert!(kept_beside(&first).is_empty(), "{:?}", kept_beside(&first));
}

#[test]
fn output_dir_recreates_the_normalized_absolute_path() {
    let s = Site::new(2);
    std::fs::create_dir(s.p("sub")).unwrap();
    std::fs::write(
        s.p("sub/t.toml"),
        "[[storage]]\nid = \"main\"\ndata_fs = \"../var/Data.fs\"\nrepository = \"../repo\"\n",
    )
    .unwrap();
    let o = run_in(s.dir.path(), &["-c", "sub/t.toml", "backup", "--no-server"]);
    assert_code(&o, 0);
    let o = run_in(
        s.dir.path(),
        &[
            "-c",
            "sub/t.toml",
            "restore",
            "--no-cut",
            "--output-dir",
            "out",
        ],
    );
    assert_code(&o, 0);
    // DIR/<abs>/var/Data.fs, not DIR/<abs>/sub/var/Data.fs.
    assert!(s.restored("out").exists(), "{}", stdout(&o));
}

#[test]
fn a_point_below_a_later_pack_is_refused_naming_the_pack() {
    let s = Site::new(0);
    let early = s.write(4);
    zodb(&["pack", s.data_fs().to_str().unwrap()]);
    s.write(2);
    s.ok(&["backup", "--no-server"]);
    let status = s.p("early.tid");
    std::fs::write(
        &status,
        format!("1732212345.67 f {{'main': {}}}\n", early[0]),
    )
    .unwrap();
    let o = s.tid(&["restore", "--tid-log", "early.tid", "--output-dir", "out"]);
    assert_code(&o, 3);
    assert!(stderr(&o).contains("packed after TID"), "{}", stderr(&o));
    assert!(!s.restored("out").exists());
    // The same rule for cut, on the live file.
    let o = s.tid(&[
        "cut",
        "--dry-run",
        s.data_fs().to_str().unwrap(),
        &early[0].to_string(),
    ]);
    assert_code(&o, 3);
    assert!(stderr(&o).contains("packed after TID"), "{}", stderr(&o));
}
