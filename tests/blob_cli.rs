//! Blob directories through the commands (`backup`, `restore`, `cut`),
//! on sites written by the real ZODB (`tests/python/blob_tool.py`:
//! FileStorage with a blob_dir, blobs created, overwritten, deleted, one
//! undo; both layouts). ZODB is the ground truth: its iterator with
//! `is_blob_record` says which files a Data.fs names, and `ZODB.DB` must
//! read every reachable blob of every result. The library underneath is
//! tested in `blobs.rs`; the ZEO end-to-end test is `tests/e2e/test_blobs.py`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tidstorage::blobs::layout::{self, FileKind};

fn tool(args: &[&str]) -> serde_json::Value {
    py_tool("blob_tool.py", args)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A ZODB site with blobs: `site/Data.fs`, `site/blobs`, a repository and
/// a configuration naming them.
struct BlobSite {
    dir: tempfile::TempDir,
}

impl BlobSite {
    fn new(layout: &str) -> BlobSite {
        let dir = tempfile::tempdir().unwrap();
        tool(&["make", s(&dir.path().join("site")), layout]);
        std::fs::create_dir(dir.path().join("repo")).unwrap();
        std::fs::write(
            dir.path().join("t.toml"),
            "[server]\nstatus_file = \"status.tid\"\n\
             [backup]\ntimestamp_file = \"timestamps.log\"\n\
             [[storage]]\nid = \"main\"\ndata_fs = \"site/Data.fs\"\nrepository = \"repo\"\n\
             blob_dir = \"site/blobs\"\n",
        )
        .unwrap();
        BlobSite { dir }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn site(&self) -> PathBuf {
        self.p("site")
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut v = vec!["-c", "t.toml"];
        v.extend_from_slice(args);
        run_in(self.dir.path(), &v)
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_code(&o, 0);
        stdout(&o)
    }

    /// A backup to the file's end; returns (run stamp, output).
    fn backup(&self, extra: &[&str]) -> (String, String) {
        let mut a = vec!["backup", "--no-server"];
        a.extend_from_slice(extra);
        let out = self.ok(&a);
        let run = out
            .lines()
            .find_map(|l| l.strip_prefix("backup run "))
            .map(|l| l.split(',').next().unwrap().to_string())
            .unwrap_or_else(|| panic!("no run line in:\n{out}"));
        (run, out)
    }

    fn more(&self, n: usize) {
        tool(&["more", s(&self.site()), &n.to_string()]);
    }

    /// Where `--output-dir out` puts the Data.fs and the blob directory.
    fn restored(&self, out: &str) -> (PathBuf, PathBuf) {
        (
            restored_under(&self.p(out), &self.p("site/Data.fs")),
            restored_under(&self.p(out), &self.p("site/blobs")),
        )
    }
}

/// (oid, tid) of every blob file in a directory (tmp/ and temporaries
/// excluded).
fn blob_files(dir: &Path) -> BTreeSet<(u64, u64)> {
    let l = layout::read_layout(dir).unwrap();
    layout::walk(dir, l)
        .unwrap()
        .files
        .iter()
        .filter_map(|f| match f.kind {
            FileKind::Blob(t) => Some((f.oid, t.0)),
            _ => None,
        })
        .collect()
}

/// ZODB's blob records of the Data.fs in `site_dir` (`Data.fs` there).
fn truth(site_dir: &Path, stop: Option<u64>) -> BTreeSet<(u64, u64)> {
    let stop = stop.map(|t| t.to_string());
    let mut a = vec!["truth", s(site_dir)];
    if let Some(t) = &stop {
        a.push(t);
    }
    tool(&a)["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap()))
        .collect()
}

/// ZODB reads every reachable blob (and every record's file) of `fs` with
/// `blob_dir`: the reachable contents.
fn zodb_read(fs: &Path, blob_dir: &Path) -> serde_json::Value {
    tool(&["read", s(fs), s(blob_dir)])
}

/// A restored pair checked against ZODB: exactly one file per blob record
/// of the restored Data.fs, `.layout`, empty `tmp/`; ZODB reads it all.
fn check_restored(fs: &Path, blobs: &Path, layout: &str) -> serde_json::Value {
    // `truth` reads DIR/Data.fs: give it the restored file under that name.
    let probe = tempfile::tempdir().unwrap();
    std::fs::copy(fs, probe.path().join("Data.fs")).unwrap();
    assert_eq!(
        blob_files(blobs),
        truth(probe.path(), None),
        "{}",
        blobs.display()
    );
    assert_eq!(
        std::fs::read_to_string(blobs.join(".layout"))
            .unwrap()
            .trim(),
        layout
    );
    assert_eq!(std::fs::read_dir(blobs.join("tmp")).unwrap().count(), 0);
    zodb_read(fs, blobs)
}

#[test]
fn backups_full_then_incremental_restore_every_run_in_both_layouts() {
    for layout in ["bushy", "lawn"] {
        let site = BlobSite::new(layout);
        let live_fs = site.p("site/Data.fs");
        let live_blobs = site.p("site/blobs");
        let (run1, out1) = site.backup(&[]);
        let files1 = blob_files(&live_blobs);
        assert!(
            out1.contains(&format!("blobs: {} file(s)", files1.len())),
            "{out1}"
        );
        let state1 = zodb_read(&live_fs, &live_blobs)["reachable"].clone();

        site.more(3);
        let (run2, out2) = site.backup(&[]);
        assert!(out2.contains("storage main: incremental"), "{out2}");
        // Only the three new files are copied; the rest is carried.
        assert!(
            out2.contains("3 new") && out2.contains(&format!("{} carried", files1.len())),
            "{out2}"
        );
        let state2 = zodb_read(&live_fs, &live_blobs)["reachable"].clone();
        assert_ne!(state1, state2);

        // The newest run, then the first with --date.
        site.ok(&["restore", "--no-cut", "--output-dir", "out2"]);
        let (fs2, blobs2) = site.restored("out2");
        assert_eq!(check_restored(&fs2, &blobs2, layout)["reachable"], state2);
        site.ok(&[
            "restore",
            "--no-cut",
            "--output-dir",
            "out1",
            "--date",
            &run1,
        ]);
        let (fs1, blobs1) = site.restored("out1");
        assert_eq!(check_restored(&fs1, &blobs1, layout)["reachable"], state1);
        assert_eq!(blob_files(&blobs1), files1);
        let _ = run2;

        // --check compares the live directory too.
        let out = site.ok(&["restore", "--no-cut", "--check"]);
        assert!(out.contains("holds exactly the run's files"), "{out}");
        // --verify: the newest run against the blob records of its chain.
        let out = site.ok(&["restore", "--verify"]);
        assert!(out.contains("one per blob record"), "{out}");
    }
}

#[test]
fn verify_and_check_catch_a_missing_or_changed_blob_file() {
    let site = BlobSite::new("bushy");
    site.backup(&[]);
    let pool = site.p("repo/blobs/pool");
    let victim = walk_files(&pool)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "blob") && p.metadata().unwrap().len() > 0)
        .unwrap();
    let mut perm = victim.metadata().unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&victim, perm).unwrap();
    std::fs::write(&victim, b"not the committed bytes").unwrap();
    let o = site.run(&["restore", "--verify"]);
    assert_code(&o, 1);
    assert!(stdout(&o).contains("its pool file has"), "{}", stdout(&o));
    // A restore refuses the damaged run and leaves nothing behind.
    let o = site.run(&["restore", "--no-cut", "--output-dir", "out"]);
    assert_code(&o, 3);
    assert!(
        stderr(&o).contains("restore from another run"),
        "{}",
        stderr(&o)
    );
    let (fs, blobs) = site.restored("out");
    assert!(!fs.exists() && !blobs.exists());
    // A live file gone: --check names it.
    std::fs::remove_file(&victim).unwrap();
    let live = site.p("site/blobs");
    let f = walk_files(&live)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "blob"))
        .unwrap();
    std::fs::remove_file(&f).unwrap();
    let o = site.run(&["restore", "--no-cut", "--check"]);
    assert_ne!(o.status.code(), Some(0));
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The pid of a process that ran and was reaped: gone, as a killed run's.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

#[test]
fn restore_force_keeps_the_old_directory_and_a_rerun_finishes_the_job() {
    let site = BlobSite::new("bushy");
    site.backup(&[]);
    site.ok(&["restore", "--no-cut", "--output-dir", "out"]);
    let (fs, blobs) = site.restored("out");
    let before = blob_files(&blobs);
    // The same restore again: already this result, nothing replaced.
    let out = site.ok(&["restore", "--no-cut", "--output-dir", "out"]);
    assert!(out.contains("already in place"), "{out}");
    // Another directory there: refused without --force, kept with it.
    site.more(1);
    site.backup(&[]);
    let o = site.run(&["restore", "--no-cut", "--output-dir", "out"]);
    assert_code(&o, 3);
    assert_eq!(blob_files(&blobs), before);
    // What a restore killed before its renames left: a partial Data.fs copy
    // and a blob directory being built, of a process that is gone; the
    // rerun removes both (and leaves a live process's).
    let dead = dead_pid();
    let dir = fs.parent().unwrap().to_path_buf();
    let stale_fs = dir.join(format!(".Data.fs.tmp-{dead}-0"));
    let live_fs = dir.join(format!(".Data.fs.tmp-{}-0", std::process::id()));
    std::fs::write(&stale_fs, "half a copy").unwrap();
    std::fs::write(&live_fs, "someone's").unwrap();
    let stale_blobs = blobs
        .parent()
        .unwrap()
        .join(format!(".blobs.restore-{dead}-0"));
    std::fs::create_dir_all(stale_blobs.join("0x00")).unwrap();
    let out = site.ok(&["restore", "--no-cut", "--output-dir", "out", "--force"]);
    assert!(
        out.contains("the replaced blob directory is kept as"),
        "{out}"
    );
    assert!(!stale_fs.exists() && !stale_blobs.exists());
    assert!(live_fs.exists());
    std::fs::remove_file(&live_fs).unwrap();
    let kept: Vec<PathBuf> = std::fs::read_dir(blobs.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("blobs.before-restore-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(blob_files(&kept[0]), before);
    check_restored(&fs, &blobs, "bushy");
}

#[test]
fn an_incremental_restore_adds_only_the_new_blob_files() {
    let site = BlobSite::new("bushy");
    site.backup(&[]);
    let out = site.ok(&[
        "restore",
        "--no-cut",
        "--output-dir",
        "standby",
        "--incremental",
    ]);
    assert!(out.contains("rebuilt"), "{out}");
    let (fs, blobs) = site.restored("standby");
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&p.metadata().unwrap());
    let first = walk_files(&blobs)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "blob"))
        .unwrap();
    let first_ino = inode(&first);
    // What an incremental restore killed before its rename left: the
    // temporary of a process that is gone (and one of this test's own
    // process, alive: kept).
    let dead = dead_pid();
    let stale = PathBuf::from(format!("{}.tmp-restore-{dead}", first.display()));
    let alive = PathBuf::from(format!(
        "{}.tmp-restore-{}",
        first.display(),
        std::process::id()
    ));
    std::fs::write(&stale, "half a file").unwrap();
    std::fs::write(&alive, "someone's").unwrap();
    site.more(2);
    site.backup(&[]);
    let out = site.ok(&[
        "restore",
        "--no-cut",
        "--output-dir",
        "standby",
        "--incremental",
    ]);
    assert!(out.contains("appended"), "{out}");
    assert!(out.contains("2 new file(s) added"), "{out}");
    // The old files were not rewritten.
    assert_eq!(inode(&first), first_ino);
    assert!(
        !stale.exists(),
        "the dead restore's temporary is still there"
    );
    assert!(alive.exists());
    std::fs::remove_file(&alive).unwrap();
    let live = zodb_read(&site.p("site/Data.fs"), &site.p("site/blobs"))["reachable"].clone();
    assert_eq!(check_restored(&fs, &blobs, "bushy")["reachable"], live);
}

#[test]
fn a_pack_between_backups_keeps_every_run_restorable() {
    let site = BlobSite::new("bushy");
    let (run1, _) = site.backup(&[]);
    let state1 = zodb_read(&site.p("site/Data.fs"), &site.p("site/blobs"))["reachable"].clone();
    let files1 = blob_files(&site.p("site/blobs"));
    site.more(1);
    tool(&["pack", s(&site.site()), "0"]);
    assert!(
        blob_files(&site.p("site/blobs")).len() < files1.len() + 1,
        "the pack removed no blob file"
    );
    let (_, out) = site.backup(&["--gzip"]);
    assert!(out.contains("storage main: full"), "{out}");
    assert!(out.contains(".fsz"), "{out}");
    assert!(out.contains(", 0 new") || out.contains("1 new"), "{out}");
    site.ok(&["restore", "--no-cut", "--output-dir", "now"]);
    let (fs, blobs) = site.restored("now");
    let live = zodb_read(&site.p("site/Data.fs"), &site.p("site/blobs"))["reachable"].clone();
    assert_eq!(check_restored(&fs, &blobs, "bushy")["reachable"], live);
    // The run before the pack still has every file it named.
    site.ok(&[
        "restore",
        "--no-cut",
        "--output-dir",
        "old",
        "--date",
        &run1,
    ]);
    let (fs, blobs) = site.restored("old");
    assert_eq!(check_restored(&fs, &blobs, "bushy")["reachable"], state1);
    assert_eq!(blob_files(&blobs), files1);
}

#[test]
fn a_backup_removes_the_temporaries_of_killed_runs_and_nothing_else() {
    let site = BlobSite::new("bushy");
    site.backup(&[]);
    let dead = dead_pid();
    // What backups killed before their renames left, of a process that is
    // gone; and one of a live process (this test's), and names not ours.
    let stale = [
        site.p(&format!("repo/.2020-01-01-00-00-00.fs.tmp-{dead}-0")),
        site.p(&format!("repo/.2020-01-01-00-00-00.deltafs.tmp-{dead}-1")),
        site.p(&format!(
            "repo/blobs/runs/.2020-01-01-00-00-00.blobs.tmp-{dead}-0"
        )),
    ];
    let kept = [
        site.p(&format!(
            "repo/.2020-01-01-00-00-01.fs.tmp-{}-0",
            std::process::id()
        )),
        site.p(&format!("repo/notes.tmp-{dead}-0")),
    ];
    for p in stale.iter().chain(&kept) {
        std::fs::write(p, "partial").unwrap();
    }
    site.more(1);
    site.backup(&[]);
    for p in &stale {
        assert!(!p.exists(), "{} is still there", p.display());
    }
    for p in &kept {
        assert!(p.exists(), "{} was removed", p.display());
    }
}

#[test]
fn keep_full_prunes_the_blob_runs_and_files_of_removed_backups() {
    let site = BlobSite::new("bushy");
    site.backup(&[]);
    site.more(1);
    tool(&["pack", s(&site.site()), "0"]);
    site.backup(&[]);
    let pool_before = walk_files(&site.p("repo/blobs/pool")).len();
    site.more(1);
    let (_, out) = site.backup(&["--full", "--keep-full", "1"]);
    assert!(out.contains("blob run(s) of those backups"), "{out}");
    let runs = std::fs::read_dir(site.p("repo/blobs/runs"))
        .unwrap()
        .count();
    assert_eq!(runs, 1);
    // Files only the pruned runs named (packed away) are gone.
    assert!(walk_files(&site.p("repo/blobs/pool")).len() <= pool_before);
    site.ok(&["restore", "--no-cut", "--output-dir", "out"]);
    let (fs, blobs) = site.restored("out");
    check_restored(&fs, &blobs, "bushy");
}

#[test]
fn a_blob_missing_from_the_source_fails_the_storage_naming_it() {
    let site = BlobSite::new("bushy");
    let live = site.p("site/blobs");
    site.backup(&[]);
    site.more(1);
    // The newest blob file vanishes (not a pack: the Data.fs is the same).
    let newest = walk_files(&live)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "blob"))
        .max_by_key(|p| p.file_name().unwrap().to_os_string())
        .unwrap();
    std::fs::remove_file(&newest).unwrap();
    let o = site.run(&["backup", "--no-server"]);
    assert_code(&o, 3);
    let err = stderr(&o);
    assert!(err.contains("missing") && err.contains("oid 0x"), "{err}");
    assert!(err.contains("in the source too, not a pack"), "{err}");
    // No run was completed: the timestamp file has only the first run.
    let ts = std::fs::read_to_string(site.p("timestamps.log")).unwrap();
    assert_eq!(ts.lines().count(), 1, "{ts}");
}

#[test]
fn cut_moves_blob_files_above_the_tid_aside_and_zodb_reads_the_rest() {
    for layout in ["bushy", "lawn"] {
        let site = BlobSite::new(layout);
        let d = site.site();
        let fs = d.join("Data.fs");
        let blobs = d.join("blobs");
        let all = truth(&d, None);
        // Cut before the last three transactions.
        let tids: Vec<u64> = all
            .iter()
            .map(|r| r.1)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let t = tids[tids.len() - 2] - 1;
        // An uncommitted leftover, in tmp/ and above T.
        std::fs::write(blobs.join("tmp").join("BUC1234"), b"uncommitted").unwrap();
        let t_hex = format!("0x{t:016x}");
        let o = run_in(site.dir.path(), &["cut", s(&fs), &t_hex]);
        assert_code(&o, 0);
        let out = stdout(&o);
        assert!(
            out.contains("blobs          left alone (no --blob-dir)"),
            "{out}"
        );
        let before = blob_files(&blobs);
        assert_eq!(before, all, "without --blob-dir the blob files stay");
        // Dry run with --blob-dir: counts, nothing changed.
        let o = run_in(
            site.dir.path(),
            &["cut", s(&fs), &t_hex, "--blob-dir", s(&blobs), "--dry-run"],
        );
        assert_code(&o, 0);
        let above = all.iter().filter(|r| r.1 > t).count();
        assert!(above > 0);
        assert!(
            stdout(&o).contains(&format!("{above} file(s) above the TID")),
            "{}",
            stdout(&o)
        );
        assert_eq!(blob_files(&blobs), before);
        let o = run_in(
            site.dir.path(),
            &["cut", s(&fs), &t_hex, "--blob-dir", s(&blobs)],
        );
        assert_code(&o, 0);
        let kept = truth(&d, None);
        assert_eq!(blob_files(&blobs), kept);
        assert!(kept.iter().all(|r| r.1 <= t));
        let tail = d.join(format!("blobs.tail-{t:016x}"));
        assert_eq!(blob_files(&tail).len(), above);
        assert_eq!(std::fs::read_dir(blobs.join("tmp")).unwrap().count(), 0);
        zodb_read(&fs, &blobs);
        // Rerunning is harmless.
        let o = run_in(
            site.dir.path(),
            &["cut", s(&fs), &t_hex, "--blob-dir", s(&blobs)],
        );
        assert_code(&o, 0);
        assert_eq!(blob_files(&blobs), kept);
        assert_eq!(blob_files(&tail).len(), above);
    }
}

/// Runs a backup under strace, which holds the first access to the blob
/// directory's `.layout` (after the Data.fs is copied, before any blob
/// file is) for `hold` seconds, and packs the site meanwhile.
fn backup_with_pack_during(site: &BlobSite, keep_old: &str) -> Output {
    let layout = site.p("site/blobs/.layout");
    let mut child = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-P", s(&layout)])
        .arg("-e")
        .arg("inject=openat,open:delay_enter=4000000:when=1")
        .arg(bin())
        .args(["-c", "t.toml", "backup", "--no-server"])
        .current_dir(site.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace (installed by .ci/run)");
    // The Data.fs copy is done once its backup file is listed in a .dat.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = |site: &BlobSite| {
        std::fs::read_dir(site.p("repo"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".dat"))
            .map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .lines()
                    .count()
            })
            .sum::<usize>()
    };
    let before = listed(site);
    while listed(site) == before {
        assert!(
            Instant::now() < deadline,
            "the backup never copied the Data.fs"
        );
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tool(&["pack", s(&site.site()), keep_old]);
    child.wait_with_output().unwrap()
}

#[test]
fn a_pack_during_the_backup_is_redone_in_full_above_it_and_restores_whole() {
    for keep_old in ["0", "1"] {
        let site = BlobSite::new("bushy");
        // The first (full) backup's prefix names the overwritten and the
        // undone revisions, whose files the pack removes before they are
        // copied.
        let o = backup_with_pack_during(&site, keep_old);
        assert_code(&o, 0);
        let out = stdout(&o);
        if keep_old == "1" {
            // pack-keep-old: the packed-away files are taken from blobs.old.
            assert!(out.contains("from the .old directory a pack left"), "{out}");
        } else {
            assert!(
                out.contains("full because: the Data.fs was packed during the backup"),
                "{out}"
            );
            assert!(
                out.contains("was copied before the pack and has no blob backup"),
                "{out}"
            );
        }
        site.ok(&["restore", "--no-cut", "--output-dir", "out"]);
        let (fs, blobs) = site.restored("out");
        let live = zodb_read(&site.p("site/Data.fs"), &site.p("site/blobs"))["reachable"].clone();
        assert_eq!(check_restored(&fs, &blobs, "bushy")["reachable"], live);
    }
}

#[test]
fn a_restore_at_a_tid_below_a_pack_is_refused_naming_the_pack() {
    let site = BlobSite::new("bushy");
    let d = site.site();
    let first = truth(&d, None).iter().map(|r| r.1).min().unwrap();
    site.more(1);
    tool(&["pack", s(&d), "0"]);
    let o = run_in(
        site.dir.path(),
        &[
            "cut",
            s(&d.join("Data.fs")),
            &format!("0x{first:016x}"),
            "--blob-dir",
            s(&d.join("blobs")),
            "--dry-run",
        ],
    );
    assert_code(&o, 3);
    assert!(
        stderr(&o).contains("was packed after TID"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_backup_at_the_daemons_point_holds_only_the_blobs_up_to_it_and_restores_there() {
    let site = BlobSite::new("bushy");
    let d = site.site();
    site.more(3);
    let tids: Vec<u64> = truth(&d, None)
        .iter()
        .map(|r| r.1)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // The point: before the last two blob transactions.
    let point = tids[tids.len() - 3];
    let daemon = Daemon::start(site.dir.path(), &["-c", "t.toml", "--burst-period", "10ms"]);
    let mut cl = daemon.client();
    publish(&mut cl, "t0", &[("main", tids[0])]);
    cl.wait_bootstrapped();
    publish(&mut cl, "t1", &[("main", point)]);
    assert_eq!(cl.dump(), pt(&[("main", point)]));
    let toml = std::fs::read_to_string(site.p("t.toml")).unwrap();
    std::fs::write(
        site.p("t.toml"),
        toml.replace("[server]\n", &format!("[server]\nport = {}\n", daemon.port)),
    )
    .unwrap();
    let out = site.ok(&["backup"]);
    let expected: BTreeSet<(u64, u64)> = truth(&d, Some(point));
    assert!(
        out.contains(&format!("blobs: {} file(s)", expected.len())),
        "{out}"
    );
    site.ok(&["restore", "--output-dir", "out"]);
    let (fs, blobs) = site.restored("out");
    assert_eq!(blob_files(&blobs), expected);
    assert!(blob_files(&blobs).iter().all(|r| r.1 <= point));
    check_restored(&fs, &blobs, "bushy");
    daemon.stop();
}
