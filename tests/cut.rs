//! `tidstorage cut` against Data.fs files written by the real ZODB, checked
//! afterwards by ZODB itself (open, last transaction, fstest).

mod common;
use common::*;
use tidstorage::fsutil::sibling;

use std::path::PathBuf;

struct Site {
    dir: tempfile::TempDir,
    files: Vec<PathBuf>,
    tids: Vec<Vec<u64>>,
    config: PathBuf,
    status: PathBuf,
}

const IDS: [&str; 3] = [
    r#"[[["127.0.0.1", 8100]], "1"]"#,
    r#"[[["127.0.0.1", 8100]], "2"]"#,
    "/srv/zeo3/var/Data.fs",
];

/// Three real Data.fs files and a config naming them.
fn site(n: usize) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut tids = Vec::new();
    let mut cfg = "[server]\nstatus_file = \"status.tid\"\n".to_string();
    for (i, id) in IDS.iter().enumerate() {
        let sub = dir.path().join(format!("zeo{i}"));
        std::fs::create_dir(&sub).unwrap();
        let f = sub.join("Data.fs");
        tids.push(zodb_write(&f, n));
        cfg.push_str(&format!(
            "[[storage]]\nid = '{id}'\ndata_fs = \"zeo{i}/Data.fs\"\n"
        ));
        files.push(f);
    }
    let config = dir.path().join("tidstorage.toml");
    std::fs::write(&config, cfg).unwrap();
    let status = dir.path().join("status.tid");
    Site {
        dir,
        files,
        tids,
        config,
        status,
    }
}

fn py_repr(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A status file in the original daemon's format (Python 2 longs, no CRC),
/// whose last full point keeps transaction `keep[i]` on storage i.
fn write_status(site: &Site, keep: &[usize]) {
    let mut lines = String::new();
    let first: Vec<String> = IDS
        .iter()
        .enumerate()
        .map(|(i, id)| format!("{}: {}L", py_repr(id), site.tids[i][0]))
        .collect();
    lines.push_str(&format!("1732212345.67 f {{{}}}\n", first.join(", ")));
    let last: Vec<String> = IDS
        .iter()
        .enumerate()
        .map(|(i, id)| format!("{}: {}L", py_repr(id), site.tids[i][keep[i]]))
        .collect();
    lines.push_str(&format!("1732212346.00 d {{{}}}\n", last.join(", ")));
    std::fs::write(&site.status, lines).unwrap();
}

fn cut(site: &Site, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["-c", site.config.to_str().unwrap(), "cut"];
    args.extend_from_slice(extra);
    run_in(site.dir.path(), &args)
}

fn snapshot(files: &[PathBuf]) -> Vec<Vec<u8>> {
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

#[test]
fn dry_run_plans_and_changes_nothing() {
    let s = site(6);
    write_status(&s, &[2, 5, 3]);
    let before = snapshot(&s.files);
    let o = cut(&s, &["--dry-run", "--format", "json"]);
    assert_code(&o, 0);
    let plans: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(plans.len(), 3);
    for (i, p) in plans.iter().enumerate() {
        assert_eq!(p["storage"], IDS[i]);
        let keep = [2, 5, 3][i];
        assert_eq!(p["tid"], s.tids[i][keep]);
        let size = std::fs::metadata(&s.files[i]).unwrap().len();
        assert_eq!(p["current_size"], size);
        // ZODB's own answer for the cut position.
        let z = zodb(&[
            "size",
            s.files[i].to_str().unwrap(),
            &s.tids[i][keep].to_string(),
        ]);
        assert_eq!(p["cut_position"], z["size"]);
        assert_eq!(p["bytes_removed"], size - z["size"].as_u64().unwrap());
        assert_eq!(p["transactions_removed"], (5 - keep) as u64);
        assert_eq!(p["data_fs"], s.files[i].display().to_string());
    }
    // The same plan as TSV rows, one per storage.
    let o = cut(&s, &["--dry-run", "--format", "tsv"]);
    assert_code(&o, 0);
    let rows: Vec<Vec<String>> = stdout(&o)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 3, "{}", stdout(&o));
    for (r, p) in rows.iter().zip(&plans) {
        let want = [
            p["storage"].as_str().unwrap().to_string(),
            p["data_fs"].as_str().unwrap().to_string(),
            p["tid"].to_string(),
            p["tid_hex"].as_str().unwrap().to_string(),
            p["current_size"].to_string(),
            p["cut_position"].to_string(),
            p["bytes_removed"].to_string(),
            p["transactions_removed"].to_string(),
            p["index"]["action"].as_str().unwrap().to_string(),
        ];
        assert_eq!(r[..], want[..]);
    }
    assert_eq!(snapshot(&s.files), before, "--dry-run changed a file");
    assert!(!sibling(&s.files[0], &format!(".tail-{:016x}", s.tids[0][2])).exists());
}

#[test]
fn cut_makes_zodb_see_the_coherent_point_and_keeps_the_tail() {
    let s = site(6);
    let keep = [2, 5, 0];
    write_status(&s, &keep);
    let before = snapshot(&s.files);
    for f in &s.files {
        assert!(sibling(f, ".index").exists(), "ZODB wrote an index");
    }
    let o = cut(&s, &[]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("cut 2 of 3 file(s)"), "{}", stdout(&o));
    for (i, f) in s.files.iter().enumerate() {
        let tid = s.tids[i][keep[i]];
        let z = zodb(&["check", f.to_str().unwrap()]);
        assert_eq!(z["last_tid"], tid, "storage {i}: ZODB's last transaction");
        assert_eq!(z["fstest"], "ok", "storage {i}");
        let now = std::fs::read(f).unwrap();
        let tail = sibling(f, &format!(".tail-{tid:016x}"));
        if keep[i] == 5 {
            // Nothing to remove: file, index and directory untouched.
            assert_eq!(now, before[i]);
            assert!(!tail.exists());
        } else {
            // prefix + tail = the original bytes.
            let t = std::fs::read(&tail).expect("tail kept");
            assert_eq!([now.as_slice(), t.as_slice()].concat(), before[i]);
            // The stale index was replaced by one for the cut file, which
            // ZODB trusts (tests/index.rs checks that in detail).
            let ix = tidstorage::datafs::index::FsIndex::read_pos(&sibling(f, ".index"));
            assert_eq!(ix.unwrap(), now.len() as u64, "fresh index written");
        }
    }
    // Idempotent: a second cut removes nothing more.
    let o = cut(&s, &[]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("cut 0 of 3 file(s)"), "{}", stdout(&o));
}

#[test]
fn discard_tail_keeps_nothing() {
    let s = site(3);
    write_status(&s, &[1, 1, 1]);
    let o = cut(&s, &["--discard-tail"]);
    assert_code(&o, 0);
    for (i, f) in s.files.iter().enumerate() {
        assert!(!sibling(f, &format!(".tail-{:016x}", s.tids[i][1])).exists());
        assert_eq!(
            zodb(&["check", f.to_str().unwrap()])["last_tid"],
            s.tids[i][1]
        );
    }
}

#[test]
fn storage_missing_from_status_file_cuts_nothing() {
    let s = site(3);
    // Only the first two storages in the status file.
    std::fs::write(
        &s.status,
        format!(
            "1732212345.67 f {{{}: {}, {}: {}}}\n",
            py_repr(IDS[0]),
            s.tids[0][0],
            py_repr(IDS[1]),
            s.tids[1][0]
        ),
    )
    .unwrap();
    let before = snapshot(&s.files);
    let o = cut(&s, &[]);
    assert_code(&o, 3);
    let e = stderr(&o);
    assert!(e.contains("nothing was cut"), "{e}");
    assert!(e.contains(IDS[2]), "the missing storage is named: {e}");
    assert_eq!(snapshot(&s.files), before);
}

#[test]
fn refuses_a_data_fs_held_by_a_running_zodb() {
    let s = site(3);
    write_status(&s, &[0, 0, 0]);
    let before = snapshot(&s.files);
    let mut holder = std::process::Command::new(python())
        .arg(repo_path("tests/python/zodb_tool.py"))
        .args(["hold", s.files[1].to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded by the child's own start-up) for "ready".
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    let o = cut(&s, &[]);
    drop(holder.stdin.take());
    holder.wait().unwrap();
    assert_code(&o, 3);
    let e = stderr(&o);
    assert!(e.contains("locked"), "{e}");
    assert!(e.contains(&s.files[1].display().to_string()), "{e}");
    assert_eq!(
        snapshot(&s.files),
        before,
        "nothing cut while one file is locked"
    );
    // Once the holder is gone the cut goes through.
    let o = cut(&s, &[]);
    assert_code(&o, 0);
}

#[test]
fn single_file_form_and_tid_formats() {
    let s = site(4);
    let f = s.files[0].to_str().unwrap();
    let tid = s.tids[0][1];
    let want = zodb(&["size", f, &tid.to_string()])["size"]
        .as_u64()
        .unwrap();
    for form in [tid.to_string(), format!("{tid:016x}"), format!("0x{tid:x}")] {
        let o = run_in(
            s.dir.path(),
            &["cut", "--dry-run", "--format", "json", f, &form],
        );
        assert_code(&o, 0);
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        assert_eq!(v["cut_position"], want, "form {form}");
        assert_eq!(v["storage"], serde_json::Value::Null);
    }
    let link = s.dir.path().join("tidstorage-cut");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let o = std::process::Command::new(&link)
        .args([f, &tid.to_string()])
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert_eq!(std::fs::metadata(f).unwrap().len(), want);
    assert_eq!(zodb(&["check", f])["last_tid"], tid);
}

#[test]
fn damaged_status_file_is_refused_with_line_number() {
    let s = site(2);
    std::fs::write(
        &s.status,
        "1732212345.67 f {'a': 5}\n1732212344.00 d {'a': 6}\n1732212346.00 d {'a': 7}\n",
    )
    .unwrap();
    let before = snapshot(&s.files);
    let o = cut(&s, &["--dry-run"]);
    assert_code(&o, 3);
    assert!(stderr(&o).contains("line 2"), "{}", stderr(&o));
    assert_eq!(snapshot(&s.files), before);
}

#[test]
fn cut_from_a_running_daemon() {
    let s = site(4);
    let d = Daemon::start(s.dir.path(), &[]);
    let mut c = d.client();
    // One multi-database transaction per index, as the Zopes would report;
    // the first one completes bootstrap (every configured storage seen).
    for k in 0..=2 {
        let x = format!("t{k}");
        c.begin(&x, &IDS);
        let tids: Vec<(&str, u64)> = IDS
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, s.tids[i][k]))
            .collect();
        c.commit(&x, &tids);
        if k == 0 {
            c.wait_bootstrapped();
        }
    }
    // The fourth is still in flight: the point stays at the third.
    c.begin("t3", &IDS);
    let server = format!("127.0.0.1:{}", d.port);
    let o = cut(&s, &["--server", &server, "--format", "json"]);
    assert_code(&o, 0);
    for (i, f) in s.files.iter().enumerate() {
        assert_eq!(
            zodb(&["check", f.to_str().unwrap()])["last_tid"],
            s.tids[i][2]
        );
    }
    drop(d);
    let o = cut(&s, &["--server", &server]);
    assert_code(&o, 3);
    assert!(stderr(&o).contains(&server), "{}", stderr(&o));
}

#[test]
fn verify_finds_damage_inside_the_kept_part() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("Data.fs");
    std::fs::copy(
        repo_path("tests/fixtures/datafs/damaged_bad_redundant_length_middle.fs"),
        &f,
    )
    .unwrap();
    let before = std::fs::read(&f).unwrap();
    let fs = f.to_str().unwrap();
    // Nothing to cut at the end of the file: the fast plan does not read the middle.
    let o = run_in(
        dir.path(),
        &["cut", "--dry-run", fs, "18446744073709551615"],
    );
    assert_code(&o, 0);
    // --verify reads every kept transaction and refuses.
    let o = run_in(dir.path(), &["cut", "--verify", fs, "18446744073709551615"]);
    assert_code(&o, 3);
    let e = stderr(&o);
    assert!(e.contains("found by --verify"), "{e}");
    assert!(e.contains("offset 495"), "{e}");
    assert_eq!(std::fs::read(&f).unwrap(), before);
    // A good file passes --verify.
    let good = dir.path().join("good.fs");
    std::fs::copy(repo_path("tests/fixtures/datafs/small.fs"), &good).unwrap();
    let o = run_in(
        dir.path(),
        &["cut", "--verify", "--dry-run", good.to_str().unwrap(), "0"],
    );
    assert_code(&o, 0);
    assert!(stdout(&o).contains("verified the"), "{}", stdout(&o));
}

// ---------------------------------------------------------------------------
// After a failure, an immediate rerun finishes the job; messages say the
// truth (issue 13).

#[test]
fn a_missing_data_fs_is_named_as_missing() {
    let d = tempfile::tempdir().unwrap();
    let o = run_in(d.path(), &["cut", "nope/Data.fs", "1"]);
    assert_code(&o, 3);
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}

#[test]
fn dry_run_says_that_nothing_was_changed() {
    let s = site(3);
    write_status(&s, &[1, 1, 1]);
    let o = cut(&s, &["--dry-run"]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("dry run: nothing was changed"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_rerun_writes_the_index_a_cut_could_not() {
    let s = site(4);
    write_status(&s, &[1, 2, 3]);
    assert_code(&cut(&s, &[]), 0);
    let index = |f: &PathBuf| {
        let mut p = f.clone().into_os_string();
        p.push(".index");
        PathBuf::from(p)
    };
    // What a cut killed after truncating, or whose index write failed,
    // leaves: the cut file without its index.
    std::fs::remove_file(index(&s.files[1])).unwrap();
    let o = cut(&s, &[]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("already cut; index written"),
        "{}",
        stdout(&o)
    );
    assert!(index(&s.files[1]).exists());
    // ZODB takes it as is.
    let c = zodb(&["check", s.files[1].to_str().unwrap()]);
    assert_eq!(c["fstest"], "ok");
}

#[test]
fn a_symlinked_data_fs_is_locked_and_cut_as_the_real_file() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("real")).unwrap();
    std::fs::create_dir_all(d.path().join("var")).unwrap();
    let real = d.path().join("real/Data.fs");
    let tids = zodb_write(&real, 4);
    let link = d.path().join("var/Data.fs");
    std::os::unix::fs::symlink("../real/Data.fs", &link).unwrap();
    // A running ZODB holds the real file: a cut through the link refuses.
    let mut zeo = hold_open(&real);
    let o = run_in(d.path(), &["cut", "var/Data.fs", &tids[1].to_string()]);
    drop(zeo.stdin.take());
    let _ = zeo.wait();
    assert_code(&o, 3);
    assert!(stderr(&o).contains("locked"), "{}", stderr(&o));
    // Once it stopped, the cut's tail and index are the real file's.
    let o = run_in(d.path(), &["cut", "var/Data.fs", &tids[1].to_string()]);
    assert_code(&o, 0);
    let names: Vec<String> = std::fs::read_dir(d.path().join("real"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("Data.fs.tail-")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n == "Data.fs.index"), "{names:?}");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_file_another_cut_holds_names_tidstorage_not_zodb() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("Data.fs");
    let tids = zodb_write(&f, 3);
    let held = tidstorage::fsutil::DataFsLock::take(&f).unwrap();
    let o = run_in(d.path(), &["cut", "Data.fs", &tids[0].to_string()]);
    drop(held);
    assert_code(&o, 3);
    let e = stderr(&o);
    assert!(e.contains("another tidstorage command"), "{e}");
    assert!(!e.contains("ZODB process"), "{e}");
}

#[test]
fn a_single_file_cut_after_its_last_transaction_is_no_loss() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("Data.fs");
    zodb_write(&f, 2);
    let o = run_in(
        d.path(),
        &["cut", "--dry-run", "Data.fs", "0x7fffffffffffffff"],
    );
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(!out.contains("lost transactions"), "{out}");
    assert!(out.contains("nothing to cut"), "{out}");
}

#[test]
fn two_storages_on_one_data_fs_are_a_configuration_error() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("t.toml"),
        "[[storage]]\nid = \"a\"\ndata_fs = \"var/Data.fs\"\n\
         [[storage]]\nid = \"b\"\ndata_fs = \"./var/../var/Data.fs\"\n",
    )
    .unwrap();
    let o = run_in(d.path(), &["-c", "t.toml", "cut", "--dry-run"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("same data_fs"), "{}", stderr(&o));
}

#[test]
fn a_checkpoint_transaction_in_the_middle_ends_what_is_kept_as_for_zodb() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("Data.fs");
    let tids = zodb_write(&f, 6);
    // Transaction 3 left with the checkpoint status, more after it: ZODB's
    // open stops at it (and would truncate there when opened writable).
    let pos = {
        let df = tidstorage::datafs::DataFs::open(&f).unwrap();
        let hs: Vec<_> = df.iter_forward(4).map(|h| h.unwrap()).collect();
        hs[2].pos
    };
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[pos as usize + 16] = b'c';
    std::fs::write(&f, &bytes).unwrap();
    for t in [tids[0], tids[2], tids[4], tids[5]] {
        let o = run_in(
            d.path(),
            &[
                "cut",
                "--dry-run",
                "--format",
                "json",
                "Data.fs",
                &t.to_string(),
            ],
        );
        assert_code(&o, 0);
        let plan: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        let z = zodb(&["size", f.to_str().unwrap(), &t.to_string()]);
        assert_eq!(plan["cut_position"], z["size"], "TID {t}: {plan}");
    }
    // Cut for real after the last TID: ZODB then reads every kept byte.
    let o = run_in(d.path(), &["cut", "Data.fs", &tids[5].to_string()]);
    assert_code(&o, 0);
    assert_eq!(std::fs::metadata(&f).unwrap().len(), pos);
    assert_eq!(zodb(&["check", f.to_str().unwrap()])["fstest"], "ok");
}
