//! md5 speed over a file already in the page cache: the md-5 crate as the
//! backup pipeline uses it (read(2) into a buffer, then hash), against the
//! hash alone over bytes already in memory. Compare with `md5sum FILE`.
//!
//! Usage: `md5_speed FILE [CHUNK_BYTES]` (default 1 MiB).

use std::fs::File;
use std::io::Read;
use std::time::Instant;

use md5::{Digest, Md5};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: md5_speed FILE [CHUNK_BYTES]");
        std::process::exit(2);
    };
    let chunk: usize = args
        .get(1)
        .map_or(1 << 20, |s| s.parse().expect("chunk size"));
    let mut f = File::open(path).expect("open");
    let mut buf = vec![0u8; chunk];
    let mut h = Md5::new();
    let t = Instant::now();
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    let sum: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "read+md5  {sum}  {total} bytes  {secs:.3} s  {:.0} MB/s",
        total as f64 / secs / 1e6
    );
    // The hash alone: one buffer hashed over and over (stays in cache).
    let mut h = Md5::new();
    let t = Instant::now();
    let mut done = 0u64;
    while done < total {
        h.update(&buf);
        done += buf.len() as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(h.finalize());
    println!(
        "md5 only  {done} bytes  {secs:.3} s  {:.0} MB/s",
        done as f64 / secs / 1e6
    );
}
