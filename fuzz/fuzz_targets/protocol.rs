//! The wire codec (src/protocol/): the client-command decoder and the
//! server-answer decoder on arbitrary bytes.
//!
//! Input: byte 0 selects the decoder (bit 0: server answers) and the
//! limits (bit 1: tiny limits, to reach every limit check); byte 1 seeds
//! the random splits; the rest is the stream.
//!
//! Checks: never a panic; the same commands and the same error (kind and
//! offset) whether the stream arrives whole, in random splits or one byte
//! at a time; a failed decoder keeps returning its error; no more than
//! `max_field + 1` bytes stay buffered once the complete fields are decoded;
//! every decoded value re-encodes and decodes back to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidstorage::protocol::{
    encode_abort, encode_begin, encode_bootstraped, encode_commit, encode_dump, encode_info,
    encode_word, Command, Decoder, Expect, FrameError, Limits, Response, ResponseDecoder,
};

#[path = "common.rs"]
mod common;

const TINY: Limits = Limits {
    max_field: 24,
    max_list: 4,
    max_command: 64,
};

type Outcome<T> = (Vec<T>, Option<FrameError>);

fn commands<'a>(limits: Limits, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome<Command> {
    let mut d = Decoder::new(limits);
    let mut out = Vec::new();
    for chunk in chunks {
        d.feed(chunk);
        loop {
            match d.next_command() {
                Ok(Some(c)) => out.push(c),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(
                        d.next_command(),
                        Err(e.clone()),
                        "the decoder must stay failed"
                    );
                    return (out, Some(e));
                }
            }
        }
        assert!(
            d.buffered() <= limits.max_field + 1,
            "{} bytes buffered with max_field {}",
            d.buffered(),
            limits.max_field
        );
    }
    (out, None)
}

/// What the client expects, drawn from the stream's own bytes so that
/// every kind of answer is reached.
fn expectations(data: &[u8]) -> Vec<Expect> {
    data.iter()
        .take(16)
        .map(|b| match b % 3 {
            0 => Expect::Dump,
            1 => Expect::Bootstraped,
            _ => Expect::Info,
        })
        .collect()
}

fn responses<'a>(
    limits: Limits,
    expect: &[Expect],
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Outcome<Response> {
    let mut d = ResponseDecoder::new(limits);
    for e in expect {
        d.expect(*e);
    }
    let mut out = Vec::new();
    for chunk in chunks {
        d.feed(chunk);
        loop {
            match d.next_response() {
                Ok(Some(r)) => out.push(r),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(
                        d.next_response(),
                        Err(e.clone()),
                        "the decoder must stay failed"
                    );
                    return (out, Some(e));
                }
            }
        }
        assert!(d.buffered() <= limits.max_field + 1);
    }
    assert_eq!(d.pending(), expect.len() - out.len());
    (out, None)
}

/// Encodes a decoded command back into bytes: decoded ids never hold
/// `\n` or `\r`, so encoding cannot refuse them.
fn encode_command(c: &Command, out: &mut Vec<u8>) {
    match c {
        Command::Begin { txn, storages } => encode_begin(out, txn, storages),
        Command::Abort { txn } => encode_abort(out, txn),
        Command::Commit { txn, tids } => encode_commit(out, txn, tids),
        Command::Dump => encode_word(out, "DUMP"),
        Command::Bootstraped => encode_word(out, "BOOTSTRAPED"),
        Command::Quit => encode_word(out, "QUIT"),
        Command::Info => encode_word(out, "INFO"),
        Command::Unknown(w) => encode_word(out, w),
    }
    .expect("a decoded command re-encodes");
}

fn client(limits: Limits, seed: u8, data: &[u8]) {
    let whole = commands(limits, [data]);
    let split = commands(limits, common::Splits::new(seed, 17).chunks(data));
    assert_eq!(whole, split, "random splits change the decoding");
    let bytes = commands(limits, data.chunks(1));
    assert_eq!(whole, bytes, "byte-at-a-time feeding changes the decoding");

    // Round trip: what was decoded, encoded again, decodes to itself (with
    // the default limits: `\r` removal can only shorten what is re-sent).
    // Lossy UTF-8 can triple an unknown word's length: those are left out.
    let kept: Vec<&Command> = whole
        .0
        .iter()
        .filter(|c| !matches!(c, Command::Unknown(w) if w.len() > Limits::DEFAULT.max_field))
        .collect();
    let mut wire = Vec::new();
    for c in &kept {
        encode_command(c, &mut wire);
    }
    let (again, err) = commands(Limits::DEFAULT, [&wire[..]]);
    assert_eq!(err, None, "re-encoded commands fail to decode");
    assert!(
        again.iter().eq(kept.iter().copied()),
        "encode -> decode is not the identity"
    );

    // The server's answers built from the decoded values round-trip too.
    let mut answers = Vec::new();
    let mut expect = Vec::new();
    for c in &whole.0 {
        match c {
            Command::Commit { txn, tids } => {
                encode_dump(&mut answers, tids.iter().map(|(k, t)| (k.as_str(), *t)))
                    .expect("decoded ids re-encode");
                expect.push(Expect::Dump);
                encode_info(&mut answers, txn).expect("decoded ids re-encode");
                expect.push(Expect::Info);
            }
            Command::Begin { storages, .. } => {
                encode_bootstraped(&mut answers, storages.len() % 2 == 0);
                expect.push(Expect::Bootstraped);
            }
            _ => {}
        }
    }
    let (got, err) = responses(Limits::DEFAULT, &expect, [&answers[..]]);
    assert_eq!(err, None);
    assert_eq!(got.len(), expect.len());
    let mut got = got.into_iter();
    for c in &whole.0 {
        match c {
            Command::Commit { txn, tids } => {
                assert_eq!(got.next(), Some(Response::Dump(tids.clone())));
                assert_eq!(got.next(), Some(Response::Info(txn.clone())));
            }
            Command::Begin { storages, .. } => {
                assert_eq!(
                    got.next(),
                    Some(Response::Bootstraped(storages.len() % 2 == 0))
                );
            }
            _ => {}
        }
    }
}

fn server(limits: Limits, seed: u8, data: &[u8]) {
    let expect = expectations(data);
    let whole = responses(limits, &expect, [data]);
    let split = responses(limits, &expect, common::Splits::new(seed, 17).chunks(data));
    assert_eq!(whole, split, "random splits change the decoding");
    let bytes = responses(limits, &expect, data.chunks(1));
    assert_eq!(whole, bytes, "byte-at-a-time feeding changes the decoding");

    let mut wire = Vec::new();
    for r in &whole.0 {
        match r {
            Response::Dump(point) => {
                encode_dump(&mut wire, point.iter().map(|(k, t)| (k.as_str(), *t)))
            }
            Response::Bootstraped(b) => {
                encode_bootstraped(&mut wire, *b);
                Ok(())
            }
            Response::Info(json) => encode_info(&mut wire, json),
        }
        .expect("a decoded answer re-encodes");
    }
    let kinds: Vec<Expect> = whole
        .0
        .iter()
        .map(|r| match r {
            Response::Dump(_) => Expect::Dump,
            Response::Bootstraped(_) => Expect::Bootstraped,
            Response::Info(_) => Expect::Info,
        })
        .collect();
    let (again, err) = responses(Limits::DEFAULT, &kinds, [&wire[..]]);
    assert_eq!(err, None, "re-encoded answers fail to decode");
    assert_eq!(again, whole.0, "encode -> decode is not the identity");
}

fuzz_target!(|data: &[u8]| {
    let [mode, seed, stream @ ..] = data else {
        return;
    };
    let limits = if mode & 2 != 0 { TINY } else { Limits::DEFAULT };
    if mode & 1 == 0 {
        client(limits, *seed, stream);
    } else {
        server(limits, *seed, stream);
    }
});
