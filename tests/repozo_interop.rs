//! `backup` and `restore` against ZODB's own repozo (from the test
//! virtualenv) on Data.fs files written by ZODB: each side restores the
//! other's repositories byte for byte, each continues the other's chain,
//! a pack forces a full backup in both, and the repozo traps (same-second
//! names, level-9 gzip, no repository lock) are avoided. Also: failures
//! leave no file under a backup's name, --keep-full, --verify, --check,
//! --force.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    /// A Data.fs with `n` ZODB transactions, an empty repository, a config.
    fn new(n: usize) -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("repo")).unwrap();
        std::fs::write(
            dir.path().join("t.toml"),
            "[server]\nstatus_file = \"status.tid\"\n\
             [backup]\ntimestamp_file = \"timestamps.log\"\nstatus_file_backup_dir = \"status-copies\"\n\
             [[storage]]\nid = \"main\"\ndata_fs = \"var/Data.fs\"\nrepository = \"repo\"\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("var")).unwrap();
        let s = Site { dir };
        if n > 0 {
            s.write(n);
        }
        s
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn data_fs(&self) -> PathBuf {
        self.p("var/Data.fs")
    }

    fn repo(&self) -> PathBuf {
        self.p("repo")
    }

    fn write(&self, n: usize) -> Vec<u64> {
        zodb_write(&self.data_fs(), n)
    }

    fn tid(&self, args: &[&str]) -> Output {
        let mut v = vec!["-c", "t.toml"];
        v.extend_from_slice(args);
        run_in(self.dir.path(), &v)
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.tid(args);
        assert_code(&o, 0);
        stdout(&o)
    }

    fn repozo(&self, args: &[&str]) -> Output {
        let o = Command::new(python().parent().unwrap().join("repozo"))
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run repozo");
        assert!(
            o.status.success(),
            "repozo {args:?} failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    fn repozo_backup(&self, extra: &[&str]) {
        // repozo names files by the second and refuses an existing name.
        next_second();
        let mut a = vec!["-B", "-r", "repo", "-f", "var/Data.fs"];
        a.extend_from_slice(extra);
        self.repozo(&a);
    }

    fn repozo_restore(&self, out: &str, date: Option<&str>) -> Vec<u8> {
        let mut a = vec!["-R", "-r", "repo", "-o", out];
        if let Some(d) = date {
            a.extend_from_slice(&["-D", d]);
        }
        self.repozo(&a);
        std::fs::read(self.p(out)).unwrap()
    }

    /// Our restore without cut into `dir`; the restored bytes.
    fn our_restore(&self, dir: &str, extra: &[&str]) -> Vec<u8> {
        let mut a = vec!["restore", "--no-cut", "--output-dir", dir];
        a.extend_from_slice(extra);
        self.ok(&a);
        std::fs::read(self.p(dir).join("var/Data.fs")).unwrap()
    }

    /// Names of the repository's data files, sorted.
    fn data_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.repo())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.ends_with(".fs")
                    || n.ends_with(".fsz")
                    || n.ends_with(".deltafs")
                    || n.ends_with(".deltafsz")
            })
            .collect();
        v.sort();
        v
    }

    fn all_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.repo())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn live(&self) -> Vec<u8> {
        std::fs::read(self.data_fs()).unwrap()
    }
}

/// Sleeps (bounded, < 1.1 s) into the next wall-clock second.
fn next_second() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let left = 1_000_000_000 - now.subsec_nanos() as u64;
    std::thread::sleep(Duration::from_nanos(left + 20_000_000));
}

fn ext_of(name: &str) -> &str {
    &name[19..]
}

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
    let check = zodb(&["check", s.p("out").join("var/Data.fs").to_str().unwrap()]);
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

fn flip_byte(p: &Path, at: u64) {
    let mut b = std::fs::read(p).unwrap();
    b[at as usize] ^= 0x55;
    std::fs::write(p, b).unwrap();
}

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
    assert!(!s.p("out/").join("var/Data.fs").exists());
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

/// Holds `path` open read-write with ZODB (its `.lock` taken, as a ZEO
/// server does) until the returned child's stdin is closed.
fn hold_open(path: &Path) -> std::process::Child {
    let mut hold = Command::new(python())
        .arg(repo_path("tests/python/zodb_tool.py"))
        .args(["hold", path.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(hold.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    hold
}

/// Appends what a FileStorage has on disk between a commit's vote and its
/// finish: a transaction with status 'c' (voted, not finished).
fn append_voted_transaction(path: &Path, tid: u64) -> u64 {
    let mut rec = Vec::new();
    rec.extend_from_slice(&tid.to_be_bytes());
    rec.extend_from_slice(&23u64.to_be_bytes());
    rec.extend_from_slice(b"c\0\0\0\0\0\0");
    rec.extend_from_slice(&23u64.to_be_bytes());
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(&rec).unwrap();
    rec.len() as u64
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
