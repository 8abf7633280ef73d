//! Times the `Data.fs.index` operations on one file: full build, save,
//! load, and the three ways `cut` makes the index of a prefix.
//!
//! Usage: `index_bench PATH TID_NEAR_END`. Writes `PATH.index` (the index
//! of the whole file, for ZODB to open with). Prints one line per
//! operation: name, seconds, detail.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tidstorage::datafs::index::{build_index, index_for_prefix, FsIndex};
use tidstorage::datafs::DataFs;
use tidstorage::tid::Tid;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 2 {
        eprintln!("usage: index_bench PATH TID_NEAR_END");
        std::process::exit(2);
    }
    let fail = |e: String| -> ! {
        eprintln!("index_bench: {e}");
        std::process::exit(1)
    };
    let path = Path::new(&args[0]);
    let near: Tid = args[1].parse().unwrap_or_else(|e| fail(format!("{e}")));
    let df = DataFs::open(path).unwrap_or_else(|e| fail(e.to_string()));
    let index_path = PathBuf::from(format!("{}.index", path.display()));
    let mut none = |_: u64, _: u64| {};

    let t = Instant::now();
    let full = build_index(&df, df.size(), None, &mut none).unwrap_or_else(|e| fail(e.to_string()));
    println!(
        "build_full {:.6} {} oids",
        t.elapsed().as_secs_f64(),
        full.len()
    );

    // Peak resident memory so far: the mapping of the file is not
    // resident (reads go through pread), so this is the index's cost.
    let peak = peak_rss_bytes();
    println!(
        "peak_rss {} bytes, {:.1} bytes per oid",
        peak,
        peak as f64 / full.len().max(1) as f64
    );

    let t = Instant::now();
    full.save(df.size(), &index_path)
        .unwrap_or_else(|e| fail(e.to_string()));
    println!(
        "save {:.6} {} bytes",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(&index_path).map(|m| m.len()).unwrap_or(0)
    );

    let t = Instant::now();
    let (pos, loaded) = FsIndex::load(&index_path).unwrap_or_else(|e| fail(e.to_string()));
    println!(
        "load {:.6} {} oids",
        t.elapsed().as_secs_f64(),
        loaded.len()
    );
    assert_eq!((pos, &loaded), (df.size(), &full));

    let cut = df
        .cut_position(near)
        .unwrap_or_else(|e| fail(e.to_string()))
        .position;
    let removed = df.size() - cut;

    let t = Instant::now();
    let fixed = index_for_prefix(&df, cut, Some((df.size(), loaded)), &mut none)
        .unwrap_or_else(|e| fail(e.to_string()));
    println!(
        "cut_fix_up {:.6} {:?}, {removed} bytes removed",
        t.elapsed().as_secs_f64(),
        fixed.method
    );

    let t = Instant::now();
    let built = build_index(&df, cut, None, &mut none).unwrap_or_else(|e| fail(e.to_string()));
    println!(
        "cut_build {:.6} {cut} bytes read",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(built, fixed.index, "fix-up and full build differ");
}

/// VmHWM of this process (Linux), 0 when unknown.
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
