//! The one-storage site shared by the backup, restore and repozo interop
//! tests: a Data.fs written by the real ZODB under `var/`, an empty
//! repository `repo/`, a config `t.toml`, and ZODB's own repozo from the
//! test virtualenv. Also the small helpers those tests share (next wall
//! clock second, damaging a byte, holding a Data.fs open as ZEO does, a
//! voted but unfinished transaction).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{assert_code, python, repo_path, restored_under, run_in, stdout, zodb_write};

pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    /// A Data.fs with `n` ZODB transactions, an empty repository, a config.
    pub fn new(n: usize) -> Site {
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

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn data_fs(&self) -> PathBuf {
        self.p("var/Data.fs")
    }

    pub fn repo(&self) -> PathBuf {
        self.p("repo")
    }

    pub fn write(&self, n: usize) -> Vec<u64> {
        zodb_write(&self.data_fs(), n)
    }

    pub fn tid(&self, args: &[&str]) -> Output {
        let mut v = vec!["-c", "t.toml"];
        v.extend_from_slice(args);
        run_in(self.dir.path(), &v)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.tid(args);
        assert_code(&o, 0);
        stdout(&o)
    }

    pub fn repozo(&self, args: &[&str]) -> Output {
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

    pub fn repozo_backup(&self, extra: &[&str]) {
        // repozo names files by the second and refuses an existing name.
        next_second();
        let mut a = vec!["-B", "-r", "repo", "-f", "var/Data.fs"];
        a.extend_from_slice(extra);
        self.repozo(&a);
    }

    pub fn repozo_restore(&self, out: &str, date: Option<&str>) -> Vec<u8> {
        let mut a = vec!["-R", "-r", "repo", "-o", out];
        if let Some(d) = date {
            a.extend_from_slice(&["-D", d]);
        }
        self.repozo(&a);
        std::fs::read(self.p(out)).unwrap()
    }

    /// Where `restore --output-dir dir` puts the Data.fs.
    pub fn restored(&self, dir: &str) -> PathBuf {
        restored_under(&self.p(dir), &self.p("var/Data.fs"))
    }

    /// Our restore without cut into `dir`; the restored bytes.
    pub fn our_restore(&self, dir: &str, extra: &[&str]) -> Vec<u8> {
        let mut a = vec!["restore", "--no-cut", "--output-dir", dir];
        a.extend_from_slice(extra);
        self.ok(&a);
        std::fs::read(self.restored(dir)).unwrap()
    }

    /// Names of the repository's data files, sorted.
    pub fn data_files(&self) -> Vec<String> {
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

    pub fn all_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.repo())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    pub fn live(&self) -> Vec<u8> {
        std::fs::read(self.data_fs()).unwrap()
    }
}

/// Sleeps (bounded, < 1.1 s) into the next wall-clock second.
pub fn next_second() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let left = 1_000_000_000 - now.subsec_nanos() as u64;
    std::thread::sleep(Duration::from_nanos(left + 20_000_000));
}

/// A repository file name's extension (what follows its 19-character
/// `YYYY-MM-DD-hh-mm-ss` date).
pub fn ext_of(name: &str) -> &str {
    &name[19..]
}

pub fn flip_byte(p: &Path, at: u64) {
    let mut b = std::fs::read(p).unwrap();
    b[at as usize] ^= 0x55;
    std::fs::write(p, b).unwrap();
}

/// Holds `path` open read-write with ZODB (its `.lock` taken, as a ZEO
/// server does) until the returned child's stdin is closed.
pub fn hold_open(path: &Path) -> std::process::Child {
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
pub fn append_voted_transaction(path: &Path, tid: u64) -> u64 {
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
