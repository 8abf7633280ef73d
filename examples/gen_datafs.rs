//! Writes a large *valid* Data.fs fast, for benchmarks.
//!
//! Usage: `gen_datafs OUT SIZE [--mix SIZE:WEIGHT,...] [--records-per-txn N]
//! [--oids N] [--seed S] [--root]`, SIZE like `4G`, `300M`, `65536`. Default mix:
//! `100:400,500:400,3000:150,50000:45,1500000:5` (object sizes in bytes : weight).
//! The first `--oids` records (default 100,000) create objects 0, 1, 2...;
//! later records rewrite objects picked at random, as a live database does.
//!
//! The layout is what ZODB's FileStorage writes (magic FS30, transaction
//! headers, data records with prev pointers and tloc, redundant lengths);
//! the pickles are filler bytes, which ZODB's open never unpickles. With
//! `--root`, object 0 is instead the empty root ZODB's `DB` creates (and is
//! never rewritten), so `ZODB.DB` opens the file and a program can commit
//! new objects on top of it (bench/exactcut_gen.py does). Prints one JSON
//! line: size, transactions, first/middle/last tid.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use tidstorage::tid::Tid;

pub struct Options {
    pub size: u64,
    /// (object size, weight)
    pub mix: Vec<(u64, u32)>,
    pub records_per_txn: u32,
    /// Number of distinct objects (oids 0..oids).
    pub oids: u64,
    pub seed: u64,
    /// Object 0 is a real, empty root mapping ([`ROOT_PICKLE`]).
    pub root: bool,
}

/// The record ZODB 6's `DB` writes for a new database's root (an empty
/// `persistent.mapping.PersistentMapping`), as read back with
/// `FileStorage.load(z64)`.
pub const ROOT_PICKLE: &[u8] =
    b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01X\x04\x00\x00\x00dataq\x02}q\x03s.";

pub struct Summary {
    pub size: u64,
    pub transactions: u64,
    pub first_tid: Tid,
    pub middle_tid: Tid,
    pub last_tid: Tid,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: plenty for picking sizes and oids.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Writes at least `opts.size` bytes (whole transactions) to `out`.
pub fn write_datafs(out: &Path, opts: &Options) -> io::Result<Summary> {
    let mut w = BufWriter::with_capacity(4 << 20, File::create(out)?);
    w.write_all(b"FS30")?;
    let mut pos = 4u64;
    let mut rng = Rng(opts.seed | 1);
    let total_weight: u64 = opts.mix.iter().map(|m| m.1 as u64).sum::<u64>().max(1);
    let first = Tid::from_unix_seconds(1_600_000_000.0);
    // About one millisecond between transactions.
    let step = (1u64 << 32) / 60_000;
    let mut tid = first;
    // Offset of each object's newest record (0: none yet).
    let oids = opts.oids.max(1);
    let mut last_pos: Vec<u64> = Vec::new();
    let filler = vec![0x55u8; 1 << 16];
    let mut transactions = 0u64;
    let mut middle = None;
    while pos < opts.size {
        let records: Vec<(u64, u64)> = (0..opts.records_per_txn.max(1))
            .map(|_| {
                let mut pick = rng.next() % total_weight;
                let mut size = opts.mix.first().map_or(100, |m| m.0);
                for (s, wgt) in &opts.mix {
                    if pick < *wgt as u64 {
                        size = *s;
                        break;
                    }
                    pick -= *wgt as u64;
                }
                let oid = if (last_pos.len() as u64) < oids {
                    last_pos.push(0);
                    last_pos.len() as u64 - 1
                } else if opts.root && oids > 1 {
                    1 + rng.next() % (oids - 1)
                } else {
                    rng.next() % oids
                };
                if opts.root && oid == 0 {
                    return (0, ROOT_PICKLE.len() as u64);
                }
                (oid, size.max(1))
            })
            .collect();
        let header_len = 23u64;
        let data_len: u64 = records.iter().map(|r| 42 + r.1).sum();
        let tlen = header_len + data_len;
        let tpos = pos;
        w.write_all(&tid.0.to_be_bytes())?;
        w.write_all(&tlen.to_be_bytes())?;
        w.write_all(b" ")?;
        w.write_all(&[0u8; 6])?;
        let mut rpos = tpos + header_len;
        for (oid, plen) in records {
            let prev = std::mem::replace(&mut last_pos[oid as usize], rpos);
            w.write_all(&oid.to_be_bytes())?;
            w.write_all(&tid.0.to_be_bytes())?;
            w.write_all(&prev.to_be_bytes())?;
            w.write_all(&tpos.to_be_bytes())?;
            w.write_all(&0u16.to_be_bytes())?;
            w.write_all(&plen.to_be_bytes())?;
            let mut left = plen;
            if opts.root && oid == 0 {
                w.write_all(ROOT_PICKLE)?;
                left = 0;
            }
            while left > 0 {
                let n = left.min(filler.len() as u64) as usize;
                w.write_all(&filler[..n])?;
                left -= n as u64;
            }
            rpos += 42 + plen;
        }
        w.write_all(&tlen.to_be_bytes())?;
        pos = tpos + tlen + 8;
        transactions += 1;
        if middle.is_none() && pos >= opts.size / 2 {
            middle = Some(tid);
        }
        tid = Tid(tid.0 + step);
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let last = Tid(tid.0 - step);
    Ok(Summary {
        size: pos,
        transactions,
        first_tid: first,
        middle_tid: middle.unwrap_or(last),
        last_tid: last,
    })
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("invalid size {s:?}: give bytes or a number with K, M or G"))
}

pub fn parse_mix(s: &str) -> Result<Vec<(u64, u32)>, String> {
    s.split(',')
        .map(|part| {
            let (size, weight) = part
                .split_once(':')
                .ok_or_else(|| format!("invalid mix entry {part:?}: expected SIZE:WEIGHT"))?;
            let weight = weight
                .parse::<u32>()
                .map_err(|_| format!("invalid weight in {part:?}"))?;
            Ok((parse_size(size)?, weight))
        })
        .collect()
}

#[allow(dead_code)] // unused when the integration test includes this file
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: gen_datafs OUT SIZE [--mix SIZE:WEIGHT,...] [--records-per-txn N] [--oids N] [--seed S] [--root]";
    if args.len() < 2 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let fail = |m: String| -> ! {
        eprintln!("gen_datafs: {m}\n{usage}");
        std::process::exit(2)
    };
    let mut opts = Options {
        size: parse_size(&args[1]).unwrap_or_else(|e| fail(e)),
        mix: parse_mix("100:400,500:400,3000:150,50000:45,1500000:5").unwrap_or_else(|e| fail(e)),
        records_per_txn: 3,
        oids: 100_000,
        seed: 1,
        root: false,
    };
    let mut i = 2;
    while i < args.len() {
        if args[i] == "--root" {
            opts.root = true;
            i += 1;
            continue;
        }
        let value = args
            .get(i + 1)
            .unwrap_or_else(|| fail(format!("{} needs a value", args[i])));
        match args[i].as_str() {
            "--mix" => opts.mix = parse_mix(value).unwrap_or_else(|e| fail(e)),
            "--records-per-txn" => {
                opts.records_per_txn = value
                    .parse()
                    .unwrap_or_else(|_| fail(format!("invalid count {value:?}")))
            }
            "--oids" => {
                opts.oids = value
                    .parse()
                    .unwrap_or_else(|_| fail(format!("invalid count {value:?}")))
            }
            "--seed" => {
                opts.seed = value
                    .parse()
                    .unwrap_or_else(|_| fail(format!("invalid seed {value:?}")))
            }
            other => fail(format!("unknown option {other:?}")),
        }
        i += 2;
    }
    match write_datafs(Path::new(&args[0]), &opts) {
        Ok(s) => println!(
            "{{\"size\": {}, \"transactions\": {}, \"first_tid\": {}, \"middle_tid\": {}, \"last_tid\": {}}}",
            s.size, s.transactions, s.first_tid.0, s.middle_tid.0, s.last_tid.0
        ),
        Err(e) => {
            eprintln!("gen_datafs: {}: {e}", args[0]);
            std::process::exit(1);
        }
    }
}
