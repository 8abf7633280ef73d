//! Client side: bytes from a server in, answers out.
//!
//! Answers carry no tag, so the client says what it asked for, in order,
//! with [`ResponseDecoder::expect`] (one call per DUMP, BOOTSTRAPED or INFO
//! it sent). Used by `tidstorage dump`/`bootstrap-status`, tests and the
//! load generator. Must not do I/O.

use super::fields::{shown, FieldBuf, TidValue};
use super::{FrameError, FrameErrorKind, Limits};
use crate::tid::Tid;

/// Items reserved up front for a list: a count is only a peer's claim, so
/// a large configured `max_list` must not let one field allocate much.
const PREALLOCATE: usize = 64;
use std::collections::VecDeque;

/// An answer the client is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Dump,
    Bootstraped,
    Info,
    /// The INFLIGHT or RESOLVE extensions: one JSON field, like INFO.
    Json,
}

/// A decoded server answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The coherency point, in the order the server sent it.
    Dump(Vec<(String, Tid)>),
    Bootstraped(bool),
    /// The JSON text of an INFO answer, not parsed here.
    Info(String),
    /// The JSON text of an INFLIGHT or RESOLVE answer, not parsed here.
    Json(String),
}

enum State {
    Idle,
    DumpKeys {
        left: usize,
        keys: Vec<String>,
    },
    DumpValues {
        keys: std::vec::IntoIter<String>,
        point: Vec<(String, Tid)>,
    },
    Failed(FrameError),
}

/// Decodes one connection's server stream.
pub struct ResponseDecoder {
    fields: FieldBuf,
    limits: Limits,
    expected: VecDeque<Expect>,
    state: State,
}

impl ResponseDecoder {
    pub fn new(limits: Limits) -> ResponseDecoder {
        ResponseDecoder {
            fields: FieldBuf::new(limits.max_field),
            limits,
            expected: VecDeque::new(),
            state: State::Idle,
        }
    }

    /// Records that one more answer of this kind is due, after those already
    /// expected.
    pub fn expect(&mut self, what: Expect) {
        self.expected.push_back(what);
    }

    /// Answers expected and not yet decoded.
    pub fn pending(&self) -> usize {
        self.expected.len()
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.fields.feed(bytes);
    }

    /// Raw bytes received but not yet decoded into fields.
    pub fn buffered(&self) -> usize {
        self.fields.buffered()
    }

    /// The next complete answer, `Ok(None)` when more bytes are needed.
    /// Bytes arriving when no answer is expected are an error.
    pub fn next_response(&mut self) -> Result<Option<Response>, FrameError> {
        match self.step() {
            Err(e) => {
                self.state = State::Failed(e.clone());
                Err(e)
            }
            ok => ok,
        }
    }

    fn step(&mut self) -> Result<Option<Response>, FrameError> {
        loop {
            match std::mem::replace(&mut self.state, State::Idle) {
                State::Failed(e) => return Err(e),
                State::DumpKeys { left: 0, keys } => {
                    self.state = State::DumpValues {
                        point: Vec::with_capacity(keys.len()),
                        keys: keys.into_iter(),
                    };
                    continue;
                }
                State::DumpValues { keys, point } if keys.len() == 0 => {
                    self.expected.pop_front();
                    return Ok(Some(Response::Dump(point)));
                }
                other => self.state = other,
            }
            let Some(field) = self.fields.next_field()? else {
                return Ok(None);
            };
            self.state = match std::mem::replace(&mut self.state, State::Idle) {
                State::Idle => match self.expected.front() {
                    None => {
                        return Err(FrameError {
                            kind: FrameErrorKind::UnexpectedData,
                            detail: format!(
                                "the server sent {} although no answer was expected; \
                                 is this a TIDStorage server?",
                                shown(&field.bytes())
                            ),
                            offset: field.offset,
                        })
                    }
                    Some(Expect::Dump) => {
                        let left = field.count("DUMP answer", self.limits.max_list)?;
                        State::DumpKeys {
                            left,
                            keys: Vec::with_capacity(left.min(PREALLOCATE)),
                        }
                    }
                    Some(Expect::Bootstraped) => {
                        let done = match &*field.bytes() {
                            b"1" => true,
                            b"0" => false,
                            other => {
                                return Err(FrameError {
                                    kind: FrameErrorKind::InvalidAnswer,
                                    detail: format!(
                                        "the BOOTSTRAPED answer {} is neither 1 nor 0; \
                                         is this a TIDStorage server?",
                                        shown(other)
                                    ),
                                    offset: field.offset,
                                });
                            }
                        };
                        self.expected.pop_front();
                        return Ok(Some(Response::Bootstraped(done)));
                    }
                    Some(Expect::Info) => {
                        let json = field.text("INFO answer")?;
                        self.expected.pop_front();
                        return Ok(Some(Response::Info(json)));
                    }
                    Some(Expect::Json) => {
                        let json = field.text("JSON answer")?;
                        self.expected.pop_front();
                        return Ok(Some(Response::Json(json)));
                    }
                },
                State::DumpKeys { left, mut keys } => {
                    keys.push(field.text("storage id of the DUMP answer")?);
                    State::DumpKeys {
                        left: left - 1,
                        keys,
                    }
                }
                State::DumpValues {
                    mut keys,
                    mut point,
                } => {
                    if let Some(key) = keys.next() {
                        match field.tid(&key)? {
                            TidValue::Tid(tid) => point.push((key, tid)),
                            // A server only publishes TIDs it parsed; `None`
                            // here means it is not speaking this protocol.
                            TidValue::Missing => {
                                return Err(FrameError {
                                    kind: FrameErrorKind::InvalidTid,
                                    detail: format!(
                                        "the DUMP answer has no TID (None) for storage {key:?}"
                                    ),
                                    offset: field.offset,
                                })
                            }
                        }
                    }
                    State::DumpValues { keys, point }
                }
                State::Failed(e) => return Err(e),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode_bootstraped, encode_dump, encode_info};
    use super::*;
    use proptest::prelude::*;

    fn all(d: &mut ResponseDecoder) -> Result<Vec<Response>, FrameError> {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            match d.next_response()? {
                Some(r) => out.push(r),
                None => return Ok(out),
            }
        }
        panic!("too many responses");
    }

    #[test]
    fn answers_in_the_order_asked() {
        let mut d = ResponseDecoder::new(Limits::DEFAULT);
        for e in [
            Expect::Dump,
            Expect::Bootstraped,
            Expect::Dump,
            Expect::Info,
        ] {
            d.expect(e);
        }
        d.feed(b"2\r\na\nb\n10\n20\n1\n0\n{\"x\":1}\n");
        assert_eq!(
            all(&mut d).unwrap(),
            vec![
                Response::Dump(vec![("a".into(), Tid(10)), ("b".into(), Tid(20))]),
                Response::Bootstraped(true),
                Response::Dump(vec![]),
                Response::Info("{\"x\":1}".into()),
            ]
        );
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn unexpected_and_invalid_answers_are_errors() {
        let mut d = ResponseDecoder::new(Limits::DEFAULT);
        d.feed(b"1\n");
        assert_eq!(
            d.next_response().unwrap_err().kind,
            FrameErrorKind::UnexpectedData
        );

        let mut d = ResponseDecoder::new(Limits::DEFAULT);
        d.expect(Expect::Bootstraped);
        d.feed(b"yes\n");
        let e = d.next_response().unwrap_err();
        assert_eq!(e.kind, FrameErrorKind::InvalidAnswer);
        assert!(e.to_string().contains("\"yes\""), "{e}");

        let mut d = ResponseDecoder::new(Limits::DEFAULT);
        d.expect(Expect::Dump);
        d.feed(b"1\na\nNone\n");
        assert_eq!(
            d.next_response().unwrap_err().kind,
            FrameErrorKind::InvalidTid
        );

        let mut d = ResponseDecoder::new(Limits {
            max_field: 64,
            max_list: 2,
            max_command: usize::MAX,
        });
        d.expect(Expect::Dump);
        d.feed(b"3\n");
        assert_eq!(
            d.next_response().unwrap_err().kind,
            FrameErrorKind::ListTooLong
        );
    }

    proptest! {
        #[test]
        fn server_answers_round_trip_in_any_split(
            point in prop::collection::vec(("[^\n\r]{0,10}", any::<u64>()), 0..8),
            done: bool,
            json in "[^\n\r]{0,30}",
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let point: Vec<(String, Tid)> = point.into_iter().map(|(k, v)| (k, Tid(v))).collect();
            let mut stream = Vec::new();
            encode_dump(&mut stream, point.iter().map(|(k, t)| (k.as_str(), *t))).unwrap();
            encode_bootstraped(&mut stream, done);
            encode_info(&mut stream, &json).unwrap();

            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut d = ResponseDecoder::new(Limits::DEFAULT);
            d.expect(Expect::Dump);
            d.expect(Expect::Bootstraped);
            d.expect(Expect::Info);
            let mut got = Vec::new();
            let mut last = 0;
            for p in cuts.into_iter().chain([stream.len()]) {
                d.feed(&stream[last..p]);
                last = p;
                got.extend(all(&mut d).unwrap());
            }
            prop_assert_eq!(got, vec![
                Response::Dump(point),
                Response::Bootstraped(done),
                Response::Info(json),
            ]);
        }
    }
}
