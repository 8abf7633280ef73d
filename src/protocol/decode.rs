//! Server side: bytes from a client in, [`Command`]s out.
//!
//! A command may arrive split over any number of `feed` calls; the fields
//! already complete are moved into a partial command, so nothing is parsed
//! twice. Must not interpret commands beyond their syntax.

use super::fields::{FieldBuf, TidValue};
use super::{FrameError, FrameErrorKind, Limits};
use crate::tid::Tid;

/// Items reserved up front for a list: a count is only a peer's claim, so
/// a large configured `max_list` must not let one field allocate much.
const PREALLOCATE: usize = 64;

/// One decoded client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Begin {
        txn: String,
        storages: Vec<String>,
    },
    Abort {
        txn: String,
    },
    /// Storages whose TID was sent as `None` are left out of `tids` (see the
    /// module documentation).
    Commit {
        txn: String,
        tids: Vec<(String, Tid)>,
    },
    Dump,
    Bootstraped,
    Quit,
    Info,
    /// Extension: every in-flight and orphaned transaction (one JSON field).
    InFlight,
    /// Extension: the operator declares transaction `txn` finished.
    Resolve {
        txn: String,
    },
    /// A word that is none of the above, lossily decoded, for a debug log.
    Unknown(String),
}

/// Where the decoder is inside a command.
enum State {
    Word,
    BeginTxn,
    BeginCount {
        txn: String,
    },
    BeginItems {
        txn: String,
        left: usize,
        storages: Vec<String>,
    },
    AbortTxn,
    ResolveTxn,
    CommitTxn,
    CommitCount {
        txn: String,
    },
    CommitKeys {
        txn: String,
        left: usize,
        keys: Vec<String>,
    },
    CommitValues {
        txn: String,
        keys: std::vec::IntoIter<String>,
        tids: Vec<(String, Tid)>,
    },
    Failed(FrameError),
}

/// Counts an id of `len` bytes into the command being decoded, against
/// `max_command`.
fn hold(held: &mut usize, max_command: usize, len: usize, offset: u64) -> Result<(), FrameError> {
    *held = held.saturating_add(len);
    if *held > max_command {
        return Err(FrameError {
            kind: FrameErrorKind::CommandTooLong,
            detail: format!(
                "one command holds more than {max_command} bytes of ids (the max_command limit)"
            ),
            offset,
        });
    }
    Ok(())
}

/// Decodes one connection's client stream.
pub struct Decoder {
    fields: FieldBuf,
    limits: Limits,
    state: State,
    /// Bytes of ids held by the command being decoded.
    command_bytes: usize,
}

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            fields: FieldBuf::new(limits.max_field),
            limits,
            state: State::Word,
            command_bytes: 0,
        }
    }

    /// Appends received bytes. Cheap: a too-long field is cut at
    /// `max_field + 1` bytes and reported by [`Decoder::next_command`].
    pub fn feed(&mut self, bytes: &[u8]) {
        self.fields.feed(bytes);
    }

    /// Raw bytes received but not yet decoded into fields.
    pub fn buffered(&self) -> usize {
        self.fields.buffered()
    }

    /// The next complete command, `Ok(None)` when more bytes are needed.
    ///
    /// After an error the decoder stays failed and returns the same error.
    pub fn next_command(&mut self) -> Result<Option<Command>, FrameError> {
        match self.step() {
            Err(e) => {
                self.state = State::Failed(e.clone());
                Err(e)
            }
            ok => ok,
        }
    }

    fn step(&mut self) -> Result<Option<Command>, FrameError> {
        loop {
            // States that can finish without reading another field.
            match std::mem::replace(&mut self.state, State::Word) {
                State::Failed(e) => return Err(e),
                State::BeginItems {
                    txn,
                    left: 0,
                    storages,
                } => return Ok(Some(Command::Begin { txn, storages })),
                State::CommitKeys { txn, left: 0, keys } => {
                    let tids = Vec::with_capacity(keys.len());
                    self.state = State::CommitValues {
                        txn,
                        keys: keys.into_iter(),
                        tids,
                    };
                    continue;
                }
                State::CommitValues { txn, keys, tids } if keys.len() == 0 => {
                    return Ok(Some(Command::Commit { txn, tids }))
                }
                other => self.state = other,
            }
            let Some(field) = self.fields.next_field()? else {
                return Ok(None);
            };
            self.state = match std::mem::replace(&mut self.state, State::Word) {
                State::Word => {
                    let word = field.bytes();
                    let is = |w: &str| word.eq_ignore_ascii_case(w.as_bytes());
                    self.command_bytes = 0;
                    if word.is_empty() {
                        State::Word
                    } else if is("begin") {
                        State::BeginTxn
                    } else if is("abort") {
                        State::AbortTxn
                    } else if is("commit") {
                        State::CommitTxn
                    } else if is("resolve") {
                        State::ResolveTxn
                    } else {
                        let cmd = if is("dump") {
                            Command::Dump
                        } else if is("bootstraped") {
                            Command::Bootstraped
                        } else if is("quit") {
                            Command::Quit
                        } else if is("info") {
                            Command::Info
                        } else if is("inflight") {
                            Command::InFlight
                        } else {
                            Command::Unknown(field.word())
                        };
                        return Ok(Some(cmd));
                    }
                }
                State::BeginTxn => State::BeginCount {
                    txn: field.text("transaction id of BEGIN")?,
                },
                State::BeginCount { txn } => {
                    let left = field.count("BEGIN storage list", self.limits.max_list)?;
                    State::BeginItems {
                        txn,
                        left,
                        storages: Vec::with_capacity(left.min(PREALLOCATE)),
                    }
                }
                State::BeginItems {
                    txn,
                    left,
                    mut storages,
                } => {
                    let id = field.text("storage id of BEGIN")?;
                    hold(
                        &mut self.command_bytes,
                        self.limits.max_command,
                        id.len(),
                        field.offset,
                    )?;
                    storages.push(id);
                    State::BeginItems {
                        txn,
                        left: left - 1,
                        storages,
                    }
                }
                State::AbortTxn => {
                    let txn = field.text("transaction id of ABORT")?;
                    return Ok(Some(Command::Abort { txn }));
                }
                State::ResolveTxn => {
                    let txn = field.text("transaction id of RESOLVE")?;
                    return Ok(Some(Command::Resolve { txn }));
                }
                State::CommitTxn => State::CommitCount {
                    txn: field.text("transaction id of COMMIT")?,
                },
                State::CommitCount { txn } => {
                    let left = field.count("COMMIT storage dict", self.limits.max_list)?;
                    State::CommitKeys {
                        txn,
                        left,
                        keys: Vec::with_capacity(left.min(PREALLOCATE)),
                    }
                }
                State::CommitKeys {
                    txn,
                    left,
                    mut keys,
                } => {
                    let id = field.text("storage id of COMMIT")?;
                    hold(
                        &mut self.command_bytes,
                        self.limits.max_command,
                        id.len(),
                        field.offset,
                    )?;
                    keys.push(id);
                    State::CommitKeys {
                        txn,
                        left: left - 1,
                        keys,
                    }
                }
                State::CommitValues {
                    txn,
                    mut keys,
                    mut tids,
                } => {
                    // The loop head only reads a field here while a key is
                    // left, so `next` yields one.
                    if let Some(key) = keys.next() {
                        if let TidValue::Tid(tid) = field.tid(&key)? {
                            tids.push((key, tid));
                        }
                    }
                    State::CommitValues { txn, keys, tids }
                }
                // Handled at the loop head, which never leaves it in place.
                State::Failed(e) => return Err(e),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode_begin, encode_commit, encode_resolve, encode_word, FrameErrorKind};
    use super::*;
    use proptest::prelude::*;

    fn decode_all(d: &mut Decoder) -> Result<Vec<Command>, FrameError> {
        let mut out = Vec::new();
        // Bounded: every command consumes at least one field of the input.
        for _ in 0..1_000_000 {
            match d.next_command()? {
                Some(c) => out.push(c),
                None => return Ok(out),
            }
        }
        panic!("decoder produced more than a million commands");
    }

    fn decode(bytes: &[u8]) -> Result<Vec<Command>, FrameError> {
        let mut d = Decoder::new(Limits::DEFAULT);
        d.feed(bytes);
        decode_all(&mut d)
    }

    fn small() -> Limits {
        Limits {
            max_field: 16,
            max_list: 3,
            max_command: 40,
        }
    }

    fn error_of(limits: Limits, bytes: &[u8]) -> FrameError {
        let mut d = Decoder::new(limits);
        d.feed(bytes);
        let e = decode_all(&mut d).expect_err("stream should be rejected");
        // Sticky: the connection cannot resynchronise.
        assert_eq!(d.next_command(), Err(e.clone()));
        e
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn every_command_decodes() {
        let got = decode(
            b"BEGIN\nt1\n2\ns0\ns1\nCOMMIT\nt1\n2\ns0\ns1\n5\n6\nABORT\nt2\n\
              DUMP\nBOOTSTRAPED\nINFO\nQUIT\n",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                Command::Begin {
                    txn: "t1".into(),
                    storages: s(&["s0", "s1"])
                },
                Command::Commit {
                    txn: "t1".into(),
                    tids: vec![("s0".into(), Tid(5)), ("s1".into(), Tid(6))]
                },
                Command::Abort { txn: "t2".into() },
                Command::Dump,
                Command::Bootstraped,
                Command::Info,
                Command::Quit,
            ]
        );
    }

    #[test]
    fn words_are_case_insensitive_and_exact() {
        let got = decode(b"dump\nDuMp\nbootstraped\nQuit\nDUMP \nbootstrapped\n").unwrap();
        assert_eq!(
            got,
            vec![
                Command::Dump,
                Command::Dump,
                Command::Bootstraped,
                Command::Quit,
                Command::Unknown("DUMP ".into()),
                Command::Unknown("bootstrapped".into()),
            ]
        );
    }

    #[test]
    fn unknown_word_consumes_only_itself() {
        let got = decode(b"HELLO\n\xff\xfe\nDUMP\n").unwrap();
        assert_eq!(
            got,
            vec![
                Command::Unknown("HELLO".into()),
                Command::Unknown("\u{fffd}\u{fffd}".into()),
                Command::Dump
            ]
        );
    }

    #[test]
    fn empty_lines_between_commands_are_skipped() {
        assert_eq!(decode(b"\n\r\n\nDUMP\n\n").unwrap(), vec![Command::Dump]);
    }

    #[test]
    fn empty_ids_and_empty_lists_are_values() {
        let got = decode(b"BEGIN\n\n1\n\nBEGIN\nt\n0\nCOMMIT\nt\n0\n").unwrap();
        assert_eq!(
            got,
            vec![
                Command::Begin {
                    txn: "".into(),
                    storages: s(&[""])
                },
                Command::Begin {
                    txn: "t".into(),
                    storages: vec![]
                },
                Command::Commit {
                    txn: "t".into(),
                    tids: vec![]
                },
            ]
        );
    }

    #[test]
    fn carriage_returns_are_dropped_everywhere() {
        let got = decode(
            b"BE\rGIN\r\nt\r1\r\n\r1\r\n[\"a\r\"]\r\nCOMMIT\r\nt1\r\n1\r\n[\"a\"]\r\n1\r2\r\n",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                Command::Begin {
                    txn: "t1".into(),
                    storages: s(&["[\"a\"]"])
                },
                Command::Commit {
                    txn: "t1".into(),
                    tids: vec![("[\"a\"]".into(), Tid(12))]
                },
            ]
        );
    }

    #[test]
    fn tid_limits_and_leading_zeros() {
        let got = decode(b"COMMIT\nt\n3\na\nb\nc\n0\n007\n18446744073709551615\n").unwrap();
        assert_eq!(
            got,
            vec![Command::Commit {
                txn: "t".into(),
                tids: vec![
                    ("a".into(), Tid(0)),
                    ("b".into(), Tid(7)),
                    ("c".into(), Tid(u64::MAX))
                ]
            }]
        );
    }

    #[test]
    fn none_tid_leaves_that_storage_out_of_the_commit() {
        let got = decode(b"commit\nz_1\n2\na\nb\nNone\n9\nDUMP\n").unwrap();
        assert_eq!(
            got,
            vec![
                Command::Commit {
                    txn: "z_1".into(),
                    tids: vec![("b".into(), Tid(9))]
                },
                Command::Dump
            ]
        );
        // Only Python's exact spelling.
        let e = error_of(Limits::DEFAULT, b"commit\nz\n1\na\nnone\n");
        assert_eq!(e.kind, FrameErrorKind::InvalidTid);
    }

    #[test]
    fn duplicates_are_passed_on_in_order() {
        let got = decode(b"BEGIN\nt\n2\na\na\nCOMMIT\nt\n2\na\na\n2\n1\n").unwrap();
        assert_eq!(
            got,
            vec![
                Command::Begin {
                    txn: "t".into(),
                    storages: s(&["a", "a"])
                },
                Command::Commit {
                    txn: "t".into(),
                    tids: vec![("a".into(), Tid(2)), ("a".into(), Tid(1))]
                },
            ]
        );
    }

    #[test]
    fn non_numeric_counts_are_rejected() {
        for bad in [&b"x"[..], b"", b" 1", b"+1", b"1 ", b"0x1", b"1.0", b"-"] {
            let mut stream = b"BEGIN\nt\n".to_vec();
            stream.extend_from_slice(bad);
            stream.extend_from_slice(b"\nDUMP\n");
            let e = error_of(Limits::DEFAULT, &stream);
            assert_eq!(e.kind, FrameErrorKind::InvalidCount, "{bad:?}");
            assert_eq!(e.offset, 8, "{bad:?}");
        }
        let e = error_of(Limits::DEFAULT, b"COMMIT\nt\nabc\n");
        assert_eq!(e.kind, FrameErrorKind::InvalidCount);
        assert!(e.to_string().contains("\"abc\""), "{e}");
        assert!(e.to_string().contains("COMMIT"), "{e}");
    }

    #[test]
    fn negative_counts_are_rejected() {
        let e = error_of(Limits::DEFAULT, b"DUMP\nBEGIN\nt\n-1\n");
        assert_eq!(e.kind, FrameErrorKind::NegativeCount);
        assert_eq!(e.offset, 13);
        let e = error_of(Limits::DEFAULT, b"COMMIT\nt\n-0\n");
        assert_eq!(e.kind, FrameErrorKind::NegativeCount);
    }

    #[test]
    fn huge_counts_are_rejected_before_any_item() {
        for count in [&b"4"[..], b"10000000", b"99999999999999999999999999"] {
            let mut stream = b"BEGIN\nt\n".to_vec();
            stream.extend_from_slice(count);
            stream.push(b'\n');
            let limits = Limits {
                max_field: 64,
                max_list: 3,
                max_command: usize::MAX,
            };
            let e = error_of(limits, &stream);
            assert_eq!(e.kind, FrameErrorKind::ListTooLong, "{count:?}");
            assert!(e.to_string().contains("limit of 3 items"), "{e}");
        }
        // At the limit it is fine.
        let mut d = Decoder::new(small());
        d.feed(b"COMMIT\nt\n3\na\nb\nc\n1\n2\n3\n");
        assert!(matches!(d.next_command(), Ok(Some(Command::Commit { .. }))));
    }

    #[test]
    fn unbounded_limits_trust_no_claimed_count() {
        // With limits set to the maximum, a claimed count must not reserve
        // memory up front (an 18-exabyte allocation would abort) nor
        // overflow the field-length arithmetic.
        let limits = Limits {
            max_field: usize::MAX,
            max_list: usize::MAX,
            max_command: usize::MAX,
        };
        let mut d = Decoder::new(limits);
        d.feed(b"BEGIN\nt\n18446744073709551615\na\nCOMMIT\nt\n18446744073709551615\nk\n");
        assert_eq!(d.next_command(), Ok(None));
        d.feed(&[b'x'; 100_000]);
        assert_eq!(d.next_command(), Ok(None));
    }

    #[test]
    fn bad_tids_are_rejected() {
        let cases: [(&[u8], FrameErrorKind); 7] = [
            (b"x", FrameErrorKind::InvalidTid),
            (b"", FrameErrorKind::InvalidTid),
            (b"1e3", FrameErrorKind::InvalidTid),
            (b" 5", FrameErrorKind::InvalidTid),
            (b"-5", FrameErrorKind::NegativeTid),
            (b"18446744073709551616", FrameErrorKind::TidOutOfRange),
            (
                b"340282366920938463463374607431768211456",
                FrameErrorKind::TidOutOfRange,
            ),
        ];
        for (tid, kind) in cases {
            let mut stream = b"COMMIT\nt\n2\nok\nbad\n1\n".to_vec();
            stream.extend_from_slice(tid);
            stream.push(b'\n');
            let e = error_of(Limits::DEFAULT, &stream);
            assert_eq!(e.kind, kind, "{tid:?}");
            assert_eq!(e.offset, 20, "{tid:?}");
            assert!(e.to_string().contains("\"bad\""), "{e}");
        }
    }

    #[test]
    fn field_at_the_limit_passes_and_one_more_byte_fails() {
        let mut d = Decoder::new(small());
        d.feed(b"ABORT\n0123456789abcdef\n");
        assert_eq!(
            d.next_command(),
            Ok(Some(Command::Abort {
                txn: "0123456789abcdef".into()
            }))
        );
        let e = error_of(small(), b"ABORT\n0123456789abcdefg\n");
        assert_eq!(e.kind, FrameErrorKind::FieldTooLong);
        assert_eq!(e.offset, 6);
    }

    #[test]
    fn long_field_is_cut_as_soon_as_it_passes_the_limit() {
        let mut d = Decoder::new(small());
        d.feed(b"DUMP\nABORT\n");
        d.feed(&[b'x'; 16]);
        // Complete commands before it still come out.
        assert_eq!(d.next_command(), Ok(Some(Command::Dump)));
        assert_eq!(d.next_command(), Ok(None));
        d.feed(b"y");
        let e = d.next_command().unwrap_err();
        assert_eq!(e.kind, FrameErrorKind::FieldTooLong);
        assert_eq!(e.offset, 11);
        // Nothing more is buffered however much the client sends.
        let before = d.buffered();
        for _ in 0..1000 {
            d.feed(&[b'z'; 10_000]);
        }
        assert_eq!(d.buffered(), before);
        assert!(before <= 6 + 17, "{before}");
    }

    #[test]
    fn carriage_returns_count_against_the_field_limit() {
        let mut d = Decoder::new(small());
        for _ in 0..100 {
            d.feed(b"\r");
        }
        assert_eq!(
            d.next_command().unwrap_err().kind,
            FrameErrorKind::FieldTooLong
        );
        assert!(d.buffered() <= 17);
    }

    #[test]
    fn binary_garbage_with_nul_bytes_never_panics() {
        // NULs inside a word make it unknown; inside ids they are valid
        // UTF-8 and so opaque bytes like any other.
        assert_eq!(
            decode(b"DU\0MP\n").unwrap(),
            vec![Command::Unknown("DU\0MP".into())]
        );
        assert_eq!(
            decode(b"ABORT\n\0\0\n").unwrap(),
            vec![Command::Abort { txn: "\0\0".into() }]
        );
        let e = error_of(Limits::DEFAULT, b"BEGIN\n\0\n\0\x01\n");
        assert_eq!(e.kind, FrameErrorKind::InvalidCount);
        let e = error_of(Limits::DEFAULT, b"BEGIN\nt\n1\n\xc3\x28\0\n");
        assert_eq!(e.kind, FrameErrorKind::InvalidUtf8);
        assert!(e.to_string().contains("storage id of BEGIN"), "{e}");
        let e = error_of(Limits::DEFAULT, b"COMMIT\nt\n1\nk\n\0\n");
        assert_eq!(e.kind, FrameErrorKind::InvalidTid);
        // Pseudo-random garbage: decoding ends in Ok or a typed error.
        let mut x: u32 = 12345;
        for _ in 0..200 {
            let mut d = Decoder::new(small());
            let mut junk = b"COMMIT\n".to_vec();
            for _ in 0..300 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let b = (x >> 16) as u8;
                junk.push(if b % 7 == 0 {
                    b'\n'
                } else {
                    b % 4 + b'0' - 1 + (b & 0x80)
                });
            }
            d.feed(&junk);
            let _ = decode_all(&mut d);
        }
    }

    #[test]
    fn invalid_utf8_in_transaction_ids_is_rejected() {
        for cmd in ["BEGIN", "ABORT", "COMMIT"] {
            let mut stream = format!("{cmd}\n").into_bytes();
            stream.extend_from_slice(b"\xff\n0\n");
            let e = error_of(Limits::DEFAULT, &stream);
            assert_eq!(e.kind, FrameErrorKind::InvalidUtf8, "{cmd}");
            assert!(e.to_string().contains(&format!("transaction id of {cmd}")));
        }
    }

    #[test]
    fn bytes_of_the_original_zope_client() {
        // What Products.TIDStorage's Zope patch writes: lower-case words, ids
        // `json.dumps((addr, storage))` and `host:port_hexthread`, one
        // sendall per command.
        let id = r#"[[["10.0.0.5", 8100]], "1"]"#;
        let stream = format!(
            "begin\n10.0.0.7:8080_7f3a\n1\n{id}\n\
             commit\n10.0.0.7:8080_7f3a\n1\n{id}\n285660890981355298\n\
             abort\n10.0.0.7:8080_7f3a\n"
        );
        assert_eq!(
            decode(stream.as_bytes()).unwrap(),
            vec![
                Command::Begin {
                    txn: "10.0.0.7:8080_7f3a".into(),
                    storages: s(&[id])
                },
                Command::Commit {
                    txn: "10.0.0.7:8080_7f3a".into(),
                    tids: vec![(id.into(), Tid(285660890981355298))]
                },
                Command::Abort {
                    txn: "10.0.0.7:8080_7f3a".into()
                },
            ]
        );
    }

    #[test]
    fn buffered_counts_undecoded_bytes() {
        let mut d = Decoder::new(Limits::DEFAULT);
        d.feed(b"DUMP\nBEG");
        assert_eq!(d.buffered(), 8);
        assert_eq!(d.next_command(), Ok(Some(Command::Dump)));
        assert_eq!(d.buffered(), 3);
        assert_eq!(d.next_command(), Ok(None));
        d.feed(b"IN\nt\n");
        assert_eq!(d.next_command(), Ok(None));
        assert_eq!(d.buffered(), 0);
        d.feed(b"1\na\n");
        assert_eq!(
            d.next_command(),
            Ok(Some(Command::Begin {
                txn: "t".into(),
                storages: s(&["a"])
            }))
        );
    }

    /// 1 MiB+ of pipelined commands fed whole, in 4 KiB reads and one byte
    /// at a time: each byte is searched for a newline at most twice, and the
    /// buffer never grows past one read plus one field.
    #[test]
    fn large_pipelined_stream_is_scanned_linearly() {
        let mut stream = Vec::new();
        let mut expected = 0;
        let mut i = 0u64;
        while stream.len() < 1_100_000 {
            let txn = format!("10.0.0.7:8080_{i:x}");
            let st = [format!("storage-{}", i % 20), format!("storage-{}", i % 7)];
            encode_begin(&mut stream, &txn, &st).unwrap();
            let tids = [
                (st[0].as_str(), Tid(i * 2)),
                (st[1].as_str(), Tid(i * 2 + 1)),
            ];
            encode_commit(&mut stream, &txn, &tids).unwrap();
            expected += 2;
            if i % 50 == 0 {
                encode_word(&mut stream, "DUMP").unwrap();
                expected += 1;
            }
            i += 1;
        }
        let n = stream.len() as u64;
        for chunk in [stream.len(), 4096, 1] {
            let mut d = Decoder::new(Limits::DEFAULT);
            let mut got = 0;
            let mut peak = 0;
            for piece in stream.chunks(chunk) {
                d.feed(piece);
                peak = peak.max(d.buffered());
                got += decode_all(&mut d).unwrap().len();
            }
            assert_eq!(got, expected, "chunk {chunk}");
            assert!(
                d.fields.scanned <= 2 * n,
                "chunk {chunk}: {}",
                d.fields.scanned
            );
            if chunk < stream.len() {
                assert!(peak <= chunk + 100, "chunk {chunk}: peak {peak}");
            }
        }
    }

    fn id() -> impl Strategy<Value = String> {
        // Anything but the two framing bytes; includes NUL and non-ASCII.
        "[^\n\r]{0,12}"
    }

    fn command() -> impl Strategy<Value = Command> {
        prop_oneof![
            (id(), prop::collection::vec(id(), 0..5))
                .prop_map(|(txn, storages)| Command::Begin { txn, storages }),
            (
                id(),
                prop::collection::vec((id(), any::<u64>().prop_map(Tid)), 0..5)
            )
                .prop_map(|(txn, tids)| Command::Commit { txn, tids }),
            id().prop_map(|txn| Command::Abort { txn }),
            Just(Command::Dump),
            Just(Command::Bootstraped),
            Just(Command::Info),
            Just(Command::InFlight),
            id().prop_map(|txn| Command::Resolve { txn }),
            Just(Command::Quit),
            "[A-Za-z]{1,10}"
                .prop_filter("not a known word", |w| {
                    ![
                        "begin",
                        "abort",
                        "commit",
                        "dump",
                        "bootstraped",
                        "quit",
                        "info",
                        "inflight",
                        "resolve",
                    ]
                    .contains(&w.to_ascii_lowercase().as_str())
                })
                .prop_map(Command::Unknown),
        ]
    }

    fn encode(cmds: &[Command]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in cmds {
            match c {
                Command::Begin { txn, storages } => encode_begin(&mut out, txn, storages),
                Command::Commit { txn, tids } => encode_commit(&mut out, txn, tids),
                Command::Abort { txn } => super::super::encode_abort(&mut out, txn),
                Command::Dump => encode_word(&mut out, "dump"),
                Command::Bootstraped => encode_word(&mut out, "Bootstraped"),
                Command::Info => encode_word(&mut out, "INFO"),
                Command::InFlight => encode_word(&mut out, "INFLIGHT"),
                Command::Resolve { txn } => encode_resolve(&mut out, txn),
                Command::Quit => encode_word(&mut out, "QUIT"),
                Command::Unknown(w) => encode_word(&mut out, w),
            }
            .unwrap();
        }
        out
    }

    proptest! {
        #[test]
        fn any_split_decodes_like_the_whole(
            cmds in prop::collection::vec(command(), 0..20),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
        ) {
            let stream = encode(&cmds);
            prop_assert_eq!(&decode(&stream).unwrap(), &cmds);

            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            points.sort_unstable();
            let mut d = Decoder::new(Limits::DEFAULT);
            let mut got = Vec::new();
            let mut last = 0;
            for p in points.into_iter().chain([stream.len()]) {
                d.feed(&stream[last..p]);
                last = p;
                got.extend(decode_all(&mut d).unwrap());
            }
            prop_assert_eq!(&got, &cmds);

            let mut d = Decoder::new(Limits::DEFAULT);
            let mut got = Vec::new();
            for b in &stream {
                d.feed(std::slice::from_ref(b));
                got.extend(decode_all(&mut d).unwrap());
            }
            prop_assert_eq!(got, cmds);
            prop_assert_eq!(d.buffered(), 0);
        }

        #[test]
        fn crlf_line_endings_decode_the_same(cmds in prop::collection::vec(command(), 0..10)) {
            let stream = encode(&cmds);
            let crlf: Vec<u8> = stream
                .iter()
                .flat_map(|&b| if b == b'\n' { vec![b'\r', b'\n'] } else { vec![b] })
                .collect();
            prop_assert_eq!(decode(&crlf).unwrap(), cmds);
        }

        #[test]
        fn arbitrary_bytes_give_commands_or_a_typed_error(
            bytes in prop::collection::vec(any::<u8>(), 0..400),
            max_field in 1usize..40,
        ) {
            let limits = Limits { max_field, max_list: 5, max_command: usize::MAX };
            let mut whole = Decoder::new(limits);
            whole.feed(&bytes);
            let a = decode_all(&mut whole);
            let mut split = Decoder::new(limits);
            let mut b = Ok(Vec::new());
            for byte in &bytes {
                split.feed(std::slice::from_ref(byte));
                match (&mut b, decode_all(&mut split)) {
                    (Ok(v), Ok(more)) => v.extend(more),
                    (r @ Ok(_), Err(e)) => *r = Err(e),
                    (Err(_), _) => {}
                }
            }
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn a_command_holding_too_many_id_bytes_is_refused() {
        let limits = Limits {
            max_field: 64,
            max_list: 100,
            max_command: 50,
        };
        // 5 ids of 10 bytes fit exactly; a sixth does not.
        let mut ok = Vec::new();
        let ids: Vec<String> = (0..5).map(|i| format!("storage-{i:02}")).collect();
        encode_begin(&mut ok, "t", &ids).unwrap();
        let mut d = Decoder::new(limits);
        d.feed(&ok);
        assert!(matches!(d.next_command(), Ok(Some(Command::Begin { .. }))));
        // The budget is per command: the same BEGIN again still fits.
        d.feed(&ok);
        assert!(matches!(d.next_command(), Ok(Some(Command::Begin { .. }))));
        let ids: Vec<String> = (0..6).map(|i| format!("storage-{i:02}")).collect();
        let mut bad = Vec::new();
        encode_begin(&mut bad, "t", &ids).unwrap();
        let mut d = Decoder::new(limits);
        d.feed(&bad);
        let e = d.next_command().unwrap_err();
        assert_eq!(e.kind, FrameErrorKind::CommandTooLong);
        assert!(e.to_string().contains("max_command"), "{e}");
    }
}
