//! Helpers shared by the fuzz targets (included with `#[path]`, not a crate).

#![allow(dead_code)]

use std::path::PathBuf;

/// Chunk lengths (1..=max) drawn from `seed`, xorshift, so a failing input
/// replays the same splits.
pub struct Splits {
    state: u64,
    max: usize,
}

impl Splits {
    pub fn new(seed: u8, max: usize) -> Splits {
        Splits {
            state: 0x9e37_79b9_7f4a_7c15 ^ seed as u64,
            max: max.max(1),
        }
    }

    pub fn next_len(&mut self) -> usize {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        1 + (x % self.max as u64) as usize
    }

    /// `data` cut into consecutive chunks.
    pub fn chunks<'a>(&mut self, data: &'a [u8]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let n = self.next_len().min(rest.len());
            let (a, b) = rest.split_at(n);
            out.push(a);
            rest = b;
        }
        out
    }
}

/// The scratch files the targets use, removed when the fuzzer exits.
const SCRATCH_NAMES: [&str; 2] = ["Data.fs", "Data.fs.index"];

extern "C" {
    fn atexit(callback: extern "C" fn()) -> i32;
}

extern "C" fn remove_scratch() {
    for name in SCRATCH_NAMES {
        let _ = std::fs::remove_file(scratch_path(name));
    }
}

fn scratch_path(name: &str) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("tidstorage-fuzz-{}-{name}", std::process::id()))
}

/// A file path private to this fuzzing process, on tmpfs when there is one
/// (the Data.fs and index readers take paths, not byte slices). `name` is
/// one of [`SCRATCH_NAMES`]; the files go when libFuzzer exits normally.
pub fn scratch(name: &str) -> PathBuf {
    static CLEANUP: std::sync::Once = std::sync::Once::new();
    assert!(
        SCRATCH_NAMES.contains(&name),
        "{name} is not a scratch name"
    );
    // SAFETY: registers a plain function with the C library; it only
    // removes files.
    CLEANUP.call_once(|| unsafe {
        atexit(remove_scratch);
    });
    scratch_path(name)
}
