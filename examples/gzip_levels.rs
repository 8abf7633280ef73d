//! Measures flate2 (zlib-rs backend, the one backups use) at gzip levels
//! 1, 6 and 9 on the first bytes of a file: throughput and size ratio.
//! Usage: `gzip_levels FILE [MEGABYTES]` (default 256). Feeds the choice of
//! `repozo::GZIP_LEVEL` (docs/bench-backup.md).

use std::io::{Read, Write};
use std::time::Instant;

use flate2::write::GzEncoder;
use flate2::Compression;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: gzip_levels FILE [MEGABYTES]");
        std::process::exit(2);
    };
    let mb: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(256);
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(mb << 20).read_to_end(&mut data))
        .unwrap_or_else(|e| {
            eprintln!("cannot read {path}: {e}");
            std::process::exit(3)
        });
    for level in [1, 6, 9] {
        let t = Instant::now();
        let mut enc = GzEncoder::new(Vec::new(), Compression::new(level));
        enc.write_all(&data).expect("in-memory write");
        let out = enc.finish().expect("in-memory finish");
        let s = t.elapsed().as_secs_f64();
        println!(
            "level {level}: {:.0} MB/s, compressed to {:.1}% ({} -> {} bytes)",
            data.len() as f64 / s / 1e6,
            100.0 * out.len() as f64 / data.len() as f64,
            data.len(),
            out.len()
        );
    }
}
