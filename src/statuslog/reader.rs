//! Replays a status file into the last coherency point, validating it.
//!
//! Owns the replay rules: `f` replaces the point, `d` updates it; times
//! strictly increase; a `d` never lowers a storage (an equal value is
//! harmless: it says nothing new); an `f` keeps every earlier storage at a
//! value not lower. Blank (or whitespace-only) lines are skipped: editors
//! leave them and no writer produces a record that looks blank.
//!
//! The last non-blank line gets special treatment: if it cannot be parsed
//! (bad crc32, cut short, not UTF-8) it is the mark of a write interrupted by
//! a crash, so it is reported in `Replay::torn_last_line` and ignored. The
//! same damage on any earlier line is an error, unless `lenient`, which skips
//! the line and lists it in `Replay::skipped` (rule violations are skipped
//! the same way). A last line that parses is used even without its `'\n'`:
//! a complete dict means every byte of the record reached the file.
//!
//! Reads through `BufRead` so any split of the input gives the same result;
//! must not write anything.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use super::record::{parse_record, LineError, LineErrorKind, Record, RecordKind};
use super::{Error, ErrorKind, Point, Violation};
use crate::tid::Tid;

/// Lines longer than this are damage, not records: a status line holds one
/// storage id and TID per storage (tens of bytes each), so 16 MiB means a
/// wrong file or garbage, and the bound keeps memory bounded on such input.
pub const MAX_LINE: usize = 16 << 20;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Skip damaged lines and rule violations anywhere instead of failing.
    pub lenient: bool,
}

/// What a replay found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// The last coherency point.
    pub point: Point,
    /// Time of the last applied record, in hundredths of a second.
    pub last_centis: Option<u64>,
    /// Records applied.
    pub records: u64,
    /// Lines skipped in lenient mode: (1-based line number, why).
    pub skipped: Vec<(u64, String)>,
    /// The damaged last line, ignored: (1-based line number, why).
    pub torn_last_line: Option<(u64, String)>,
}

/// Replays the file at `path`.
pub fn replay_file(path: &Path, opts: ReplayOptions) -> Result<Replay, Error> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| Error {
        name: name.clone(),
        line: None,
        kind: ErrorKind::Io(e),
    })?;
    replay_reader(BufReader::with_capacity(1 << 16, file), &name, opts)
}

/// Replays from any buffered reader; `name` appears in errors.
pub fn replay_reader(
    mut r: impl BufRead,
    name: &str,
    opts: ReplayOptions,
) -> Result<Replay, Error> {
    let mut st = Replay::default();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    // A damaged line is only known to be the last one once the input ends.
    let mut pending: Option<(u64, LineError)> = None;
    loop {
        let got = next_line(&mut r, &mut buf).map_err(|e| Error {
            name: name.to_string(),
            line: Some(line_no + 1),
            kind: ErrorKind::Io(e),
        })?;
        let Some(too_long) = got else { break };
        line_no += 1;
        if !too_long && buf.iter().all(|b| b" \t\r\n".contains(b)) {
            continue;
        }
        if let Some((n, e)) = pending.take() {
            reject(&mut st, name, n, ErrorKind::Damaged(e), opts)?;
        }
        let parsed = if too_long {
            Err(LineError {
                offset: MAX_LINE,
                kind: LineErrorKind::TooLong(MAX_LINE),
            })
        } else {
            parse_bytes(&buf)
        };
        match parsed {
            Err(e) => pending = Some((line_no, e)),
            Ok(rec) => match check(&st, &rec) {
                Ok(()) => apply(&mut st, rec),
                Err(v) => reject(&mut st, name, line_no, ErrorKind::Violation(v), opts)?,
            },
        }
    }
    if let Some((n, e)) = pending {
        st.torn_last_line = Some((n, e.to_string()));
    }
    Ok(st)
}

fn parse_bytes(line: &[u8]) -> Result<Record, LineError> {
    let text = std::str::from_utf8(line).map_err(|e| LineError {
        offset: e.valid_up_to(),
        kind: LineErrorKind::NotUtf8,
    })?;
    parse_record(text)
}

/// Fails, or in lenient mode notes the line and carries on.
fn reject(
    st: &mut Replay,
    name: &str,
    line: u64,
    kind: ErrorKind,
    opts: ReplayOptions,
) -> Result<(), Error> {
    if !opts.lenient {
        return Err(Error {
            name: name.to_string(),
            line: Some(line),
            kind,
        });
    }
    let why = match &kind {
        ErrorKind::Damaged(e) => format!("damaged: {e}"),
        ErrorKind::Violation(v) => v.to_string(),
        ErrorKind::Io(e) => e.to_string(),
    };
    st.skipped.push((line, why));
    Ok(())
}

fn check(st: &Replay, rec: &Record) -> Result<(), Violation> {
    if let Some(previous) = st.last_centis {
        if rec.centis <= previous {
            return Err(Violation::TimeNotIncreasing {
                previous,
                this: rec.centis,
            });
        }
    }
    match rec.kind {
        RecordKind::Delta => {
            for (storage, this) in &rec.entries {
                let this = *this;
                if let Some(&previous) = st.point.get(storage) {
                    if this < previous {
                        return Err(Violation::DeltaDecreases {
                            storage: storage.clone(),
                            previous,
                            this,
                        });
                    }
                }
            }
        }
        RecordKind::Full => {
            let new: BTreeMap<&str, Tid> =
                rec.entries.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            for (storage, &previous) in &st.point {
                match new.get(storage.as_str()) {
                    None => {
                        return Err(Violation::FullMissing {
                            storage: storage.clone(),
                        })
                    }
                    Some(&this) if this < previous => {
                        return Err(Violation::FullDecreases {
                            storage: storage.clone(),
                            previous,
                            this,
                        })
                    }
                    Some(_) => {}
                }
            }
        }
    }
    Ok(())
}

fn apply(st: &mut Replay, rec: Record) {
    if rec.kind == RecordKind::Full {
        st.point.clear();
    }
    st.point.extend(rec.entries);
    st.last_centis = Some(rec.centis);
    st.records += 1;
}

/// Reads one line (with its `'\n'` if any) into `buf`. `None` at the end of
/// input; `Some(true)` when the line exceeded `MAX_LINE` (it is consumed but
/// not kept).
fn next_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<bool>> {
    buf.clear();
    let mut any = false;
    let mut too_long = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            break;
        }
        any = true;
        let (n, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if !too_long {
            if buf.len() + n > MAX_LINE {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&avail[..n]);
            }
        }
        r.consume(n);
        if done {
            break;
        }
    }
    Ok(any.then_some(too_long))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statuslog::record::format_record;
    use crate::tid::Tid;

    fn line(centis: u64, kind: RecordKind, entries: &[(&str, u64)]) -> String {
        format_record(&Record {
            centis,
            kind,
            entries: entries
                .iter()
                .map(|(k, v)| (k.to_string(), Tid(*v)))
                .collect(),
            had_crc: true,
        })
    }

    fn replay(text: &str, lenient: bool) -> Result<Replay, Error> {
        replay_reader(text.as_bytes(), "t", ReplayOptions { lenient })
    }

    fn point(entries: &[(&str, u64)]) -> Point {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), Tid(*v)))
            .collect()
    }

    #[test]
    fn empty_and_blank_input_give_the_empty_point() {
        for text in ["", "\n", "  \n\t\n", "\r\n"] {
            let r = replay(text, false).unwrap();
            assert_eq!(r, Replay::default(), "{text:?}");
        }
    }

    #[test]
    fn full_replaces_and_delta_updates() {
        let text = [
            line(100, RecordKind::Full, &[("a", 1)]),
            "\n".to_string(),
            line(101, RecordKind::Delta, &[("b", 5)]),
            line(102, RecordKind::Delta, &[("a", 1)]),
            line(103, RecordKind::Full, &[("a", 3), ("b", 5), ("c", 1)]),
            line(104, RecordKind::Delta, &[("c", 2)]),
        ]
        .concat();
        let r = replay(&text, false).unwrap();
        assert_eq!(r.point, point(&[("a", 3), ("b", 5), ("c", 2)]));
        assert_eq!(r.last_centis, Some(104));
        assert_eq!(r.records, 5);
        assert!(r.skipped.is_empty() && r.torn_last_line.is_none());
    }

    #[test]
    fn an_overlong_line_is_damage() {
        let text = format!(
            "{}{}\n{}",
            line(100, RecordKind::Full, &[("a", 1)]),
            "x".repeat(MAX_LINE + 1),
            line(101, RecordKind::Delta, &[("a", 2)])
        );
        let e = replay(&text, false).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(matches!(
            e.kind,
            ErrorKind::Damaged(LineError {
                kind: LineErrorKind::TooLong(_),
                ..
            })
        ));
        let r = replay(&text, true).unwrap();
        assert_eq!(r.point, point(&[("a", 2)]));
        assert_eq!(r.skipped.len(), 1);
    }

    #[test]
    fn a_non_utf8_last_line_is_torn() {
        let mut bytes = line(100, RecordKind::Full, &[("a", 1)]).into_bytes();
        bytes.extend_from_slice(b"101 d {'\xff': 1}");
        let r = replay_reader(&bytes[..], "t", ReplayOptions::default()).unwrap();
        assert_eq!(r.point, point(&[("a", 1)]));
        assert_eq!(r.torn_last_line.as_ref().map(|t| t.0), Some(2));
    }
}
