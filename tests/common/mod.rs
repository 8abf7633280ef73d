//! Shared helpers for the integration tests: the real binary, the real
//! ZODB (through the test virtualenv), temp dirs, readable failures, the
//! daemon under test and a protocol client; `site` holds the one-storage
//! site of the backup, restore and repozo interop tests.
#![allow(dead_code)]

// The one-storage site of the backup, restore and repozo interop tests.
pub mod site;
#[allow(unused_imports)]
pub use site::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `tidstorage` binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tidstorage"))
}

/// The virtualenv python with ZODB, or a panic saying how to get it.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TIDSTORAGE_PYTHON") {
        let p = PathBuf::from(p);
        if p.exists() {
            return p;
        }
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.exists(),
        "the ZODB test virtualenv is missing: run `make venv` (or `make test`)"
    );
    p
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Runs `tests/python/SCRIPT ARGS` with the venv python and parses the
/// JSON it prints.
pub fn py_tool(script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(repo_path(&format!("tests/python/{script}")))
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{script} {args:?} printed no JSON ({e})"))
}

/// Runs `tests/python/zodb_tool.py ARGS` and parses its JSON answer.
pub fn zodb(args: &[&str]) -> serde_json::Value {
    py_tool("zodb_tool.py", args)
}

/// Writes N real ZODB transactions into `path`; returns their TIDs.
pub fn zodb_write(path: &Path, n: usize) -> Vec<u64> {
    let v = zodb(&["write", path.to_str().unwrap(), &n.to_string()]);
    v["tids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect()
}

/// Runs the binary with `args` in `cwd`, with no config from the environment.
pub fn run_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("TIDSTORAGE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run tidstorage")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing both streams when it differs.
pub fn assert_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "unexpected exit status\n--- stdout\n{}\n--- stderr\n{}",
        stdout(o),
        stderr(o)
    );
}

// ---------------------------------------------------------------------------
// The daemon under test, and a protocol client.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tidstorage::protocol::{self, Expect, Limits, Response, ResponseDecoder};
use tidstorage::tid::Tid;

/// A running `tidstorage serve` on a free loopback port; killed on drop.
pub struct Daemon {
    pub child: std::process::Child,
    pub port: u16,
    pub dir: PathBuf,
    pub status_file: PathBuf,
    /// Server log lines (its stderr), as they arrive.
    lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

pub const DEADLINE: Duration = Duration::from_secs(30);

impl Daemon {
    /// Starts `serve --port 0 --status-file DIR/status.tid EXTRA...` in `dir`
    /// and waits (bounded) for "listening on".
    pub fn start(dir: &Path, extra: &[&str]) -> Daemon {
        let status_file = dir.join("status.tid");
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--port".into(),
            "0".into(),
            "--status-file".into(),
            status_file.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Daemon::start_args(dir, &args, status_file)
    }

    pub fn start_args(dir: &Path, args: &[String], status_file: PathBuf) -> Daemon {
        Daemon::start_with(dir, bin().to_str().unwrap(), args, status_file)
    }

    /// Starts `program ARGS` (e.g. a shell wrapping the daemon) as the daemon.
    pub fn start_with(dir: &Path, program: &str, args: &[String], status_file: PathBuf) -> Daemon {
        let mut child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .env_remove("TIDSTORAGE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tidstorage serve");
        // Both streams into one channel: the log is on stderr, and the
        // "listening on" line is on stdout when the log goes to a file.
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx2.send(line).is_err() {
                    break;
                }
            }
        });
        let mut d = Daemon {
            child,
            port: 0,
            dir: dir.to_path_buf(),
            status_file,
            lines: rx,
            log: Vec::new(),
        };
        let line = d
            .wait_log("listening on ")
            .unwrap_or_else(|| panic!("daemon did not start:\n{}", d.log.join("\n")));
        let addr = line.rsplit("listening on ").next().unwrap().trim();
        d.port = addr.rsplit(':').next().unwrap().parse().unwrap();
        d
    }

    /// Waits (bounded) for a log line containing `needle`.
    pub fn wait_log(&mut self, needle: &str) -> Option<String> {
        if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
            return Some(l.clone());
        }
        let end = Instant::now() + DEADLINE;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.log.push(l.clone());
                    if l.contains(needle) {
                        return Some(l);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// Waits (bounded) until `n` log lines contain `needle`; returns how
    /// many there were at the end.
    pub fn wait_log_count(&mut self, needle: &str, n: usize) -> usize {
        let end = Instant::now() + DEADLINE;
        loop {
            let have = self
                .drain_log()
                .iter()
                .filter(|l| l.contains(needle))
                .count();
            if have >= n || Instant::now() >= end {
                return have;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Collects the log lines that arrived so far.
    pub fn drain_log(&mut self) -> &[String] {
        while let Ok(l) = self.lines.try_recv() {
            self.log.push(l);
        }
        &self.log
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn stop(mut self) -> (Option<i32>, Vec<String>) {
        self.signal(libc::SIGTERM);
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Collect the rest of the log (the reader ends at EOF).
                while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.log.push(l);
                }
                return (st.code(), std::mem::take(&mut self.log));
            }
            assert!(Instant::now() < end, "daemon did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking protocol client with deadlines.
pub struct Client {
    pub sock: TcpStream,
    dec: ResponseDecoder,
}

pub type Point = BTreeMap<String, u64>;

impl Client {
    pub fn connect(port: u16) -> Client {
        let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect to daemon");
        sock.set_read_timeout(Some(DEADLINE)).unwrap();
        sock.set_nodelay(true).unwrap();
        Client {
            sock,
            dec: ResponseDecoder::new(Limits::default()),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("send to daemon");
    }

    pub fn begin(&mut self, txn: &str, storages: &[&str]) {
        let mut b = Vec::new();
        protocol::encode_begin(&mut b, txn, storages).unwrap();
        self.send(&b);
    }

    pub fn commit(&mut self, txn: &str, tids: &[(&str, u64)]) {
        let mut b = Vec::new();
        let t: Vec<(&str, Tid)> = tids.iter().map(|(s, v)| (*s, Tid(*v))).collect();
        protocol::encode_commit(&mut b, txn, &t).unwrap();
        self.send(&b);
    }

    pub fn abort(&mut self, txn: &str) {
        let mut b = Vec::new();
        protocol::encode_abort(&mut b, txn).unwrap();
        self.send(&b);
    }

    fn ask(&mut self, word: &str, e: Expect) -> Response {
        let mut b = Vec::new();
        protocol::encode_word(&mut b, word).unwrap();
        self.send(&b);
        self.dec.expect(e);
        let mut buf = [0u8; 65536];
        loop {
            if let Some(r) = self.dec.next_response().expect("well-formed answer") {
                return r;
            }
            let n = self
                .sock
                .read(&mut buf)
                .expect("answer within the deadline");
            assert!(
                n > 0,
                "daemon closed the connection instead of answering {word}"
            );
            self.dec.feed(&buf[..n]);
        }
    }

    pub fn dump(&mut self) -> Point {
        match self.ask("DUMP", Expect::Dump) {
            Response::Dump(p) => p.into_iter().map(|(s, t)| (s, t.0)).collect(),
            r => panic!("unexpected answer {r:?}"),
        }
    }

    pub fn bootstraped(&mut self) -> bool {
        match self.ask("BOOTSTRAPED", Expect::Bootstraped) {
            Response::Bootstraped(b) => b,
            r => panic!("unexpected answer {r:?}"),
        }
    }

    pub fn info(&mut self) -> serde_json::Value {
        match self.ask("INFO", Expect::Info) {
            Response::Info(j) => serde_json::from_str(&j).unwrap(),
            r => panic!("unexpected answer {r:?}"),
        }
    }

    /// Waits (bounded) until BOOTSTRAPED answers 1.
    pub fn wait_bootstrapped(&mut self) {
        let end = Instant::now() + DEADLINE;
        while !self.bootstraped() {
            assert!(Instant::now() < end, "bootstrap did not complete");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Builds a point from literal pairs.
pub fn pt(pairs: &[(&str, u64)]) -> Point {
    pairs.iter().map(|(s, t)| (s.to_string(), *t)).collect()
}

/// Writes an executable script (mode 0755).
pub fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// Where `restore --output-dir out` puts a configured file: its absolute
/// path recreated under `out` (the configuration's paths are absolute
/// once read, whatever `-c` was).
pub fn restored_under(out: &std::path::Path, configured: &std::path::Path) -> std::path::PathBuf {
    let configured = std::fs::canonicalize(configured.parent().unwrap())
        .unwrap()
        .join(configured.file_name().unwrap());
    out.join(configured.strip_prefix("/").unwrap())
}

/// BEGIN then COMMIT of `txn` with these TIDs (one transaction, published
/// once bootstrap is complete).
pub fn publish(c: &mut Client, txn: &str, pairs: &[(&str, u64)]) {
    let ids: Vec<&str> = pairs.iter().map(|(s, _)| *s).collect();
    c.begin(txn, &ids);
    c.commit(txn, pairs);
}

/// A client of `d` once its bootstrap is complete (a first transaction
/// end starts it; with no storage configured it then completes).
pub fn bootstrapped(d: &Daemon) -> Client {
    let mut c = d.client();
    c.begin("warmup", &[]);
    c.abort("warmup");
    c.wait_bootstrapped();
    c
}
