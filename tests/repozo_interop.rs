//! `backup` and `restore` against ZODB's own repozo (from the test
//! virtualenv) on Data.fs files written by ZODB: each side restores the
//! other's repositories byte for byte, each continues the other's chain,
//! a pack forces a full backup in both, and our gzip level differs from
//! repozo's level 9 on purpose.
//!
//! Backup behaviour of our own (run names, lock, pruning, failures) is in
//! `backup.rs`; restore's checks (`--verify`, `--check`, `--force`) are in
//! `restore.rs`.

mod common;

use common::*;

#[test]
fn our_backups_restore_with_repozo_byte_identical() {
    let s = Site::new(8);
    let out = s.ok(&["backup", "--no-server"]);
    assert!(out.contains("full"), "{out}");
    s.write(4);
    s.ok(&["backup", "--no-server"]);
    s.write(3);
    s.ok(&["backup", "--no-server", "--gzip"]);
    let files = s.data_files();
    let exts: Vec<&str> = files.iter().map(|f| ext_of(f)).collect();
    assert_eq!(exts, [".fs", ".deltafs", ".deltafsz"], "{files:?}");
    let live = s.live();
    let theirs = s.repozo_restore("repozo.fs", None);
    assert!(theirs == live, "repozo's restore of our backups differs");
    let ours = s.our_restore("out", &[]);
    assert!(ours == theirs, "our restore differs from repozo's");
    // repozo's verifier accepts our .dat and files, gzip included.
    s.repozo(&["-V", "-r", "repo"]);
    // The per-file indexes are ZODB's format: ZODB loads the restored
    // index without rebuilding (repozo copied the last one).
    let ix = s.p("repozo.fs.index");
    assert!(ix.exists(), "repozo restores the .index we wrote");
    let check = zodb(&["check", s.restored("out").to_str().unwrap()]);
    assert_eq!(check["fstest"], "ok");
}

#[test]
fn repozo_backups_restore_with_us_byte_identical() {
    let s = Site::new(6);
    s.repozo_backup(&[]);
    s.write(3);
    s.repozo_backup(&["-z"]);
    let middle = s.data_files()[1][..19].to_string();
    s.write(2);
    s.repozo_backup(&[]);
    s.write(2);
    s.repozo_backup(&["-z", "-F"]);
    let exts: Vec<String> = s
        .data_files()
        .iter()
        .map(|f| ext_of(f).to_string())
        .collect();
    assert_eq!(exts, [".fs", ".deltafsz", ".deltafs", ".fsz"]);
    let theirs = s.repozo_restore("repozo.fs", None);
    assert!(theirs == s.live());
    assert!(s.our_restore("out", &[]) == theirs);
    // As of the gzipped incremental: repozo's date selection, same bytes.
    let theirs = s.repozo_restore("repozo-mid.fs", Some(&middle));
    let ours = s.our_restore("out-mid", &["--date", &middle]);
    assert!(
        ours == theirs,
        "as of {middle}: our restore differs from repozo's"
    );
    // Without a manifest there is no point to cut at: said clearly.
    let o = s.tid(&["restore", "--output-dir", "cut"]);
    assert_code(&o, 3);
    assert!(stderr(&o).contains("--tid-log"), "{}", stderr(&o));
}

#[test]
fn each_continues_the_others_chain() {
    let s = Site::new(5);
    s.ok(&["backup", "--no-server"]);
    s.write(2);
    s.repozo_backup(&[]);
    s.write(2);
    s.ok(&["backup", "--no-server", "--quick"]);
    s.write(2);
    s.repozo_backup(&["-Q", "-z"]);
    s.write(2);
    s.ok(&["backup", "--no-server"]);
    let exts: Vec<String> = s
        .data_files()
        .iter()
        .map(|f| ext_of(f).to_string())
        .collect();
    // One chain: nobody started a new full backup.
    assert_eq!(
        exts,
        [".fs", ".deltafs", ".deltafs", ".deltafsz", ".deltafs"]
    );
    let theirs = s.repozo_restore("repozo.fs", None);
    assert!(theirs == s.live());
    assert!(s.our_restore("out", &[]) == theirs);
    s.ok(&["restore", "--verify"]);
}

#[test]
fn pack_forces_a_full_backup_in_both() {
    for quick in [false, true] {
        let s = Site::new(12);
        s.ok(&["backup", "--no-server"]);
        zodb(&["pack", s.data_fs().to_str().unwrap()]);
        s.write(1);
        let mut a = vec!["backup", "--no-server"];
        if quick {
            a.push("--quick");
        }
        let out = s.ok(&a);
        assert!(out.contains("full because"), "{out}");
        assert_eq!(
            s.data_files().iter().filter(|f| f.ends_with(".fs")).count(),
            2
        );
        // And repozo, after another pack, does the same with our repository.
        s.write(6);
        zodb(&["pack", s.data_fs().to_str().unwrap()]);
        s.repozo_backup(if quick { &["-Q"] } else { &[] });
        let files = s.data_files();
        assert!(files.last().unwrap().ends_with(".fs"), "{files:?}");
        assert!(s.repozo_restore("r.fs", None) == s.live());
        // The default date is our last run, before repozo's full backup.
        assert!(s.our_restore("out", &["--date", "2099-12-31"]) == s.live());
    }
}

#[test]
fn gzip_is_fast_level_where_repozo_uses_9() {
    // gzip's XFL header byte: 4 = fastest compression, 2 = maximum.
    let s = Site::new(20);
    s.ok(&["backup", "--no-server", "--gzip"]);
    let ours = std::fs::read(s.repo().join(&s.data_files()[0])).unwrap();
    assert_eq!(ours[8], 4, "our gzip level is not the fast one");
    s.write(2);
    s.repozo_backup(&["-z", "-F"]);
    let theirs = std::fs::read(s.repo().join(s.data_files().last().unwrap())).unwrap();
    assert_eq!(theirs[8], 2, "repozo writes level 9");
    assert_eq!(tidstorage::repozo::GZIP_LEVEL, 1);
}
