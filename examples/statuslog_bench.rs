//! Status-file throughput, side by side with the original reader's way
//! (Python `eval` of every line).
//!
//!     cargo run --release --example statuslog_bench -- [RECORDS] [STORAGES]
//!
//! Writes RECORDS records (default 86,400: one day at one `d` per second,
//! an `f` every 300) over STORAGES storages (default 8) with the real
//! writer (fsync `never`, then a shorter run with `always`), replays the
//! file with `replay_file` (best of 5), then times the venv's Python replaying the same
//! file with `tests/python/statuslog_compat.py replay` (skipped with a note
//! when `.venv/bin/python` or `$TIDSTORAGE_PYTHON` is missing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use tidstorage::statuslog::{replay_file, FsyncPolicy, RecordKind, ReplayOptions, StatusWriter};
use tidstorage::tid::Tid;

fn main() {
    let mut args = std::env::args().skip(1);
    let records: u64 = args
        .next()
        .map_or(86_400, |a| a.parse().expect("RECORDS is an integer"));
    let storages: usize = args
        .next()
        .map_or(8, |a| a.parse().expect("STORAGES is an integer"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("status.tid");
    let ids: Vec<String> = (0..storages)
        .map(|i| format!("[[[\"10.0.0.{}\", 8100]], \"{}\"]", i + 1, i + 1))
        .collect();

    let write_secs = write_file(&path, records, &ids, FsyncPolicy::Never);
    let bytes = std::fs::metadata(&path).expect("the file").len();
    println!(
        "write (fsync never):  {records} records, {:.1} MB in {write_secs:.3} s = {:.0} records/s",
        bytes as f64 / 1e6,
        records as f64 / write_secs
    );

    let synced = (records / 100).max(10);
    let synced_path = dir.path().join("synced.tid");
    let secs = write_file(&synced_path, synced, &ids, FsyncPolicy::Always);
    println!(
        "write (fsync always): {synced} records in {secs:.3} s = {:.0} records/s ({})",
        synced as f64 / secs,
        dir.path().display()
    );

    // Best of 5: the machine is shared, the minimum is the least disturbed.
    let mut ours = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let r = replay_file(&path, ReplayOptions::default()).expect("our own file replays");
        ours = ours.min(t.elapsed().as_secs_f64());
        assert_eq!(r.records, records);
    }
    println!(
        "replay (tidstorage):  {:.3} s = {:.0} records/s, {:.0} MB/s (best of 5)",
        ours,
        records as f64 / ours,
        bytes as f64 / 1e6 / ours
    );

    match python() {
        Some(py) => {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/statuslog_compat.py");
            let t = Instant::now();
            let out = Command::new(&py)
                .arg(&script)
                .arg("replay")
                .arg(&path)
                .output()
                .expect("python runs");
            let theirs = t.elapsed().as_secs_f64();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                text.split_whitespace().next(),
                Some(records.to_string().as_str())
            );
            println!(
                "replay (python eval): {theirs:.3} s = {:.0} records/s ({} ; {:.1}x slower)",
                records as f64 / theirs,
                py.display(),
                theirs / ours
            );
        }
        None => println!("replay (python eval): skipped, no .venv/bin/python (run `make venv`)"),
    }
}

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TIDSTORAGE_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    p.exists().then_some(p)
}

/// One day of a busy cluster: a `d` naming 1-3 storages per record, an `f`
/// every 300 records. Returns the seconds spent in `write`.
fn write_file(path: &Path, records: u64, ids: &[String], policy: FsyncPolicy) -> f64 {
    let mut w = StatusWriter::open(path, policy).expect("open the status file");
    let mut point: Vec<u64> = (0..ids.len() as u64)
        .map(|i| 285_899_593_185_544_149 + i)
        .collect();
    let mut spent = 0.0;
    for n in 0..records {
        let now = 1_732_212_345.0 + n as f64;
        let entries: Vec<(String, Tid)> = if n % 300 == 0 {
            ids.iter()
                .cloned()
                .zip(point.iter().map(|&v| Tid(v)))
                .collect()
        } else {
            let k = (n as usize * 7) % ids.len();
            let span = 1 + (n as usize % 3).min(ids.len() - 1);
            (k..k + span)
                .map(|i| {
                    let i = i % ids.len();
                    point[i] += 1 + n % 1000;
                    (ids[i].clone(), Tid(point[i]))
                })
                .collect()
        };
        let kind = if n % 300 == 0 {
            RecordKind::Full
        } else {
            RecordKind::Delta
        };
        let t = Instant::now();
        w.write(kind, &entries, now).expect("write a record");
        spent += t.elapsed().as_secs_f64();
    }
    spent
}
