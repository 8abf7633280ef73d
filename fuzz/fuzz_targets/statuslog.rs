//! The status-file reader (src/statuslog/): replay of arbitrary bytes, and
//! the one-line record parser.
//!
//! Checks: never a panic; replay gives the same answer (or the same error)
//! whatever the reader's buffer size, strict and lenient alike; a strict
//! replay that succeeds succeeds leniently too, with nothing skipped; every
//! line that parses formats back to a line that parses to the same record
//! (entries sorted, crc32 added), and formatting is then a fixed point.

#![no_main]

use std::io::BufReader;

use libfuzzer_sys::fuzz_target;
use tidstorage::statuslog::{format_record, parse_record, replay_reader, ReplayOptions};

#[path = "common.rs"]
mod common;

fn replay(data: &[u8], capacity: usize, lenient: bool) -> Result<String, String> {
    replay_reader(
        BufReader::with_capacity(capacity, data),
        "fuzz",
        ReplayOptions { lenient },
    )
    .map(|r| format!("{r:?}"))
    .map_err(|e| e.to_string())
}

fuzz_target!(|data: &[u8]| {
    let Some((seed, data)) = data.split_first() else {
        return;
    };
    let capacity = common::Splits::new(*seed, 16).next_len();
    for lenient in [false, true] {
        let whole = replay(data, 1 << 16, lenient);
        let small = replay(data, capacity, lenient);
        assert_eq!(
            whole, small,
            "the reader's buffer size ({capacity}) changes the replay"
        );
    }
    if let Ok(strict) = replay_reader(data, "fuzz", ReplayOptions { lenient: false }) {
        let lenient = replay_reader(data, "fuzz", ReplayOptions { lenient: true })
            .expect("what replays strictly replays leniently");
        assert!(lenient.skipped.is_empty(), "{:?}", lenient.skipped);
        assert_eq!(strict, lenient);
    }

    for line in data.split(|&b| b == b'\n') {
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        let Ok(rec) = parse_record(text) else {
            continue;
        };
        let formatted = format_record(&rec);
        let again = parse_record(&formatted)
            .unwrap_or_else(|e| panic!("{formatted:?} (from {text:?}) does not parse: {e}"));
        let mut sorted = rec.entries.clone();
        sorted.sort();
        assert_eq!(again.centis, rec.centis);
        assert_eq!(again.kind, rec.kind);
        assert_eq!(again.entries, sorted, "{formatted:?} from {text:?}");
        assert!(again.had_crc);
        assert_eq!(
            format_record(&again),
            formatted,
            "format is not a fixed point"
        );
    }
});
