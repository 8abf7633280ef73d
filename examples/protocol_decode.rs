//! Measures the protocol decoder on pipelined client traffic, to show that
//! decoding cost grows linearly with the stream and does not depend on how
//! the bytes are split.
//!
//!     cargo run --release --example protocol_decode
//!
//! Prints one line per (stream size, read size): MB/s and commands/s.

use std::time::Instant;
use tidstorage::protocol::{encode_begin, encode_commit, encode_word, Decoder, Limits};
use tidstorage::tid::Tid;

/// Zope-like traffic: BEGIN/COMMIT on 1-3 of 20 JSON storage ids, a DUMP
/// every 50 transactions.
fn stream(bytes: usize) -> (Vec<u8>, usize) {
    let ids: Vec<String> = (0..20)
        .map(|i| format!("[[[\"10.0.0.{i}\", 8100]], \"{i}\"]"))
        .collect();
    let mut out = Vec::with_capacity(bytes + 1024);
    let mut commands = 0;
    let mut tid = Tid::from_unix_seconds(1_700_000_000.0).0;
    let mut i = 0usize;
    while out.len() < bytes {
        let txn = format!("10.0.0.7:8080_{:x}", 0x7f3a_0000 + i % 64);
        let n = 1 + i % 3;
        let st: Vec<&str> = (0..n).map(|k| ids[(i * 7 + k * 3) % 20].as_str()).collect();
        encode_begin(&mut out, &txn, &st).expect("ids have no line breaks");
        tid += 1;
        let tids: Vec<(&str, Tid)> = st.iter().map(|s| (*s, Tid(tid))).collect();
        encode_commit(&mut out, &txn, &tids).expect("ids have no line breaks");
        commands += 2;
        if i % 50 == 0 {
            encode_word(&mut out, "DUMP").expect("a constant word");
            commands += 1;
        }
        i += 1;
    }
    (out, commands)
}

fn main() {
    for mb in [1usize, 4, 16] {
        let (data, expected) = stream(mb << 20);
        for chunk in [data.len(), 65536, 4096, 1] {
            let start = Instant::now();
            let mut d = Decoder::new(Limits::DEFAULT);
            let mut got = 0usize;
            for piece in data.chunks(chunk) {
                d.feed(piece);
                while let Some(_cmd) = d.next_command().expect("valid stream") {
                    got += 1;
                }
            }
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(got, expected);
            let chunk_name = if chunk == data.len() {
                "whole".to_string()
            } else {
                chunk.to_string()
            };
            println!(
                "stream {:>2} MiB  reads of {:>6}: {:8.1} MB/s  {:>10.0} commands/s",
                mb,
                chunk_name,
                data.len() as f64 / secs / 1e6,
                got as f64 / secs
            );
        }
    }
}
