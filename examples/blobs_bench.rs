//! The tidstorage side of `bench/blobs.sh`: a synthetic blob site and the
//! timed blob backups.
//!
//! Usage:
//!   blobs_bench gen DIR N           DIR/Data.fs with N transactions, each
//!                                   storing one new blob (ZODB's class
//!                                   pickle), and DIR/blobs (bushy) with
//!                                   their files (200-2,000 bytes); prints
//!                                   the Data.fs size
//!   blobs_bench grow DIR K          K more such transactions and files
//!   blobs_bench full REPO DIR STAMP       blob records of the whole
//!                                   Data.fs + a full blob snapshot
//!   blobs_bench incr REPO DIR STAMP FROM  blob records of the Data.fs from
//!                                   offset FROM + an incremental snapshot
//!                                   on the latest run
//!
//! `full` and `incr` print one JSON line: seconds for the Data.fs scan and
//! for the snapshot, files copied and carried.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use tidstorage::blobs::layout::Layout;
use tidstorage::blobs::snapshot::Contents;
use tidstorage::blobs::BlobRepo;
use tidstorage::datafs::DataFs;
use tidstorage::tid::Tid;

/// What ZODB writes for a blob: class pickle, then the state (None).
const PICKLE: &[u8] = b"\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.";
const FIRST_TID: u64 = 0x03ec_0000_0000_0000;

fn die(msg: String) -> ! {
    eprintln!("blobs_bench: {msg}");
    std::process::exit(2)
}

fn append(dir: &Path, k: u64) {
    let data_fs = dir.join("Data.fs");
    let blobs = dir.join("blobs");
    let (mut pos, mut tid, mut oid) = if data_fs.exists() {
        let fs = DataFs::open(&data_fs).unwrap_or_else(|e| die(e.to_string()));
        let last = fs.last_tid().unwrap_or_else(|e| die(e.to_string()));
        let n = fs.blob_records(4, fs.size()).unwrap().records.len() as u64;
        (fs.size(), last.map(|t| t.0).unwrap_or(FIRST_TID), n)
    } else {
        std::fs::create_dir_all(blobs.join("tmp")).unwrap();
        std::fs::write(blobs.join(".layout"), "bushy").unwrap();
        std::fs::write(&data_fs, b"FS30").unwrap();
        (4, FIRST_TID, 0)
    };
    let f = OpenOptions::new().append(true).open(&data_fs).unwrap();
    let mut w = BufWriter::new(f);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ oid;
    for _ in 0..k {
        tid += 0x1000;
        oid += 1;
        let tlen = 23 + 42 + PICKLE.len() as u64;
        w.write_all(&tid.to_be_bytes()).unwrap();
        w.write_all(&tlen.to_be_bytes()).unwrap();
        w.write_all(b" \0\0\0\0\0\0").unwrap();
        w.write_all(&oid.to_be_bytes()).unwrap();
        w.write_all(&tid.to_be_bytes()).unwrap();
        w.write_all(&0u64.to_be_bytes()).unwrap();
        w.write_all(&pos.to_be_bytes()).unwrap();
        w.write_all(&0u16.to_be_bytes()).unwrap();
        w.write_all(&(PICKLE.len() as u64).to_be_bytes()).unwrap();
        w.write_all(PICKLE).unwrap();
        w.write_all(&tlen.to_be_bytes()).unwrap();
        pos += tlen + 8;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let size = 200 + (seed % 1800) as usize;
        let p = blobs.join(Layout::Bushy.blob_path(oid, Tid(tid)));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, vec![(oid % 251) as u8; size]).unwrap();
    }
    w.flush().unwrap();
    println!("{pos}");
}

fn snapshot(repo: &Path, dir: &Path, stamp: &str, from: Option<u64>) {
    let repo = BlobRepo::at(repo);
    let t0 = Instant::now();
    let fs = DataFs::open(&dir.join("Data.fs")).unwrap_or_else(|e| die(e.to_string()));
    let previous = if from.is_some() {
        Some(
            repo.latest()
                .unwrap_or_else(|e| die(e.to_string()))
                .unwrap_or_else(|| die("no previous run".into())),
        )
    } else {
        None
    };
    let recs = fs
        .blob_records(from.unwrap_or(4), fs.size())
        .unwrap_or_else(|e| die(e.to_string()));
    let point = fs.last_tid().unwrap_or_else(|e| die(e.to_string()));
    let scan = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let contents = match &previous {
        Some(p) => Contents::Incremental {
            previous: p,
            delta: &recs.records,
        },
        None => Contents::Full {
            records: &recs.records,
            previous: None,
        },
    };
    let r = repo
        .write_snapshot(stamp, &dir.join("blobs"), point, contents)
        .unwrap_or_else(|e| die(e.to_string()));
    let snap = t1.elapsed().as_secs_f64();
    println!(
        "{{\"scan_s\": {scan:.4}, \"snapshot_s\": {snap:.4}, \"total_s\": {:.4}, \"files\": {}, \"copied\": {}, \"carried\": {}}}",
        scan + snap,
        r.files,
        r.copied,
        r.carried
    );
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let num = |s: &str| -> u64 { s.parse().unwrap_or_else(|_| die(format!("bad number {s}"))) };
    match a.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["gen", dir, n] => {
            if Path::new(dir).join("Data.fs").exists() {
                die(format!("{dir}/Data.fs exists"));
            }
            std::fs::create_dir_all(dir).unwrap();
            append(Path::new(dir), num(n))
        }
        ["grow", dir, k] => append(Path::new(dir), num(k)),
        ["full", repo, dir, stamp] => snapshot(Path::new(repo), Path::new(dir), stamp, None),
        ["incr", repo, dir, stamp, from] => {
            snapshot(Path::new(repo), Path::new(dir), stamp, Some(num(from)))
        }
        _ => die("usage: see the //! block of examples/blobs_bench.rs".into()),
    }
}
