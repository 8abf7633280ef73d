//! The index reader (src/datafs/index.rs) and the pickle subset under it
//! (src/datafs/pickle.rs), on arbitrary bytes.
//!
//! Input: byte 0 chooses the pickle stream reader (even) or the index file
//! loader (odd); the rest is the stream or the file.
//!
//! Checks: never a panic, every refusal a typed error; each pickle value
//! read writes back to bytes that read as the same value; an index file
//! that loads saves to a file that loads to the same position and map,
//! written byte for byte the same the second time (the canonical form), and
//! `read_pos` agrees with `load`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidstorage::datafs::index::FsIndex;
use tidstorage::datafs::pickle::{PickleReader, PickleWriter};

#[path = "common.rs"]
mod common;

/// The readers' bound on one pickle (a full 64 Ki-entry bucket).
const MAX_BYTES: usize = 1 << 19;

fn pickles(data: &[u8]) {
    let mut r = PickleReader::new(data, MAX_BYTES);
    // Each value consumes at least its PROTO and STOP: bounded.
    for _ in 0..=data.len() {
        let before = r.offset();
        let v = match r.read_value() {
            Ok(v) => v,
            Err(e) => {
                assert!(e.offset <= data.len() as u64, "{e}");
                return;
            }
        };
        assert!(r.offset() > before);
        let mut w = PickleWriter::new(Vec::new());
        w.write_value(&v).expect("writing to a Vec");
        let bytes = w.into_inner();
        let back = PickleReader::new(&bytes[..], MAX_BYTES)
            .read_value()
            .unwrap_or_else(|e| panic!("{v:?} written as {bytes:?} does not read back: {e}"));
        assert_eq!(back, v);
    }
    panic!("read_value made no progress");
}

fn index_file(data: &[u8]) {
    let path = common::scratch("Data.fs.index");
    std::fs::write(&path, data).expect("scratch file");
    let read_pos = FsIndex::read_pos(&path);
    let (pos, index) = match FsIndex::load(&path) {
        Ok(loaded) => loaded,
        Err(e) => {
            assert!(e.offset <= data.len() as u64, "{e}");
            return;
        }
    };
    assert_eq!(read_pos.expect("load succeeded, so read_pos must"), pos);
    assert_eq!(index.len(), index.iter().count());
    let mut saved = Vec::new();
    index.write_to(pos, &mut saved).expect("writing to a Vec");
    std::fs::write(&path, &saved).expect("scratch file");
    let (pos2, index2) = FsIndex::load(&path).expect("a saved index loads");
    assert_eq!(pos2, pos);
    assert!(
        index2.iter().eq(index.iter()),
        "save -> load changes the index"
    );
    for (oid, at) in index.iter() {
        assert_eq!(index2.get(oid), Some(at));
    }
    let mut again = Vec::new();
    index2.write_to(pos2, &mut again).expect("writing to a Vec");
    assert_eq!(again, saved, "the saved form is not canonical");
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        pickles(rest);
    } else {
        index_file(rest);
    }
});
