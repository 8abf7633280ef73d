//! One status-file record <-> one line of text.
//!
//! Owns the line syntax (SPEC §4), the Python dict literal both ways and the
//! trailing crc32 comment. Pure: no I/O, no clock, no notion of what came
//! before (replay rules live in `reader.rs`).
//!
//! ```text
//! 1732212345.67 f {'[[["127.0.0.1", 8100]], "1"]': 285899593185544149} #crc32=0a1b2c3d\n
//! ^time, 2 dec. ^kind ^Python dict literal                             ^crc32 of every byte before " #crc32="
//! ```
//!
//! Keys are written as Python 3's `repr(str)` writes them, except that every
//! non-ASCII character is written raw (UTF-8): Python 3's `eval` then gives
//! back the same `str`, and Python 2's `eval` gives the UTF-8 bytes, which is
//! what a Python 2 client sent on the wire. Values are plain decimal integers
//! (no `L`), valid in both Pythons.
//!
//! A record written when the operator resolves a transaction (`tidstorage
//! resolve`) carries a note between the dict and the checksum, a Python
//! comment like the checksum, so every reader that `eval`s the dict (the
//! original's check_tid_log.py, tid_log_to_full.py, restore_tidstorage.py)
//! still reads it; the crc covers it:
//!
//! ```text
//! 1732212345.67 f {'a': 2859} # resolved '10.0.0.7:8080_7f3a' #crc32=0a1b2c3d\n
//! ```
//!
//! The parser accepts what the original Python 2 daemon wrote as well: `L`
//! suffixes, `u'...'` keys, both quote styles, Python's escapes, a missing
//! crc. It refuses what either Python would read differently (leading zeros,
//! which Python 2 reads as octal) or what no writer produces (`b''`/`r''`
//! strings, negative values, duplicate keys).

use std::fmt;
use std::fmt::Write as _;

use crate::tid::Tid;

/// What sits between the dict and the checksum.
pub const CRC_MARKER: &str = " #crc32=";
/// What starts the note of a record written by `resolve`, after the dict.
pub const RESOLVED_MARKER: &str = " # resolved ";
/// `CRC_MARKER` plus 8 hex digits.
const CRC_SUFFIX_LEN: usize = CRC_MARKER.len() + 8;

/// `f` (the whole point) or `d` (only the storages changed since the
/// previous record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Full,
    Delta,
}

impl RecordKind {
    /// The letter written in the second column.
    pub fn letter(self) -> char {
        match self {
            RecordKind::Full => 'f',
            RecordKind::Delta => 'd',
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordKind::Full => f.write_str("f (full)"),
            RecordKind::Delta => f.write_str("d (delta)"),
        }
    }
}

/// One line of the status file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Unix time in hundredths of a second (the file prints 2 decimals).
    pub centis: u64,
    pub kind: RecordKind,
    /// In file order when parsed; `format_record` sorts them by key. Keys are
    /// unique (the parser refuses duplicates; writers pass a map's entries).
    pub entries: Vec<(String, Tid)>,
    /// Whether the parsed line carried a (valid) crc32 comment. Old files
    /// written by the original daemon have none.
    pub had_crc: bool,
}

/// Why one line is not a valid record. `offset` is the byte offset inside
/// the line (0-based) where the problem was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    pub offset: usize,
    pub kind: LineErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineErrorKind {
    /// The crc32 comment does not match the bytes before it.
    Crc { stored: u32, computed: u32 },
    /// The text does not follow the line syntax; says what was expected.
    Syntax(String),
    /// A TID value that is not a non-negative integer below 2^64.
    Value(String),
    /// The same storage id twice in one dict.
    DuplicateKey(String),
    /// The line is not UTF-8 (our writer and Python 2's repr never produce
    /// that; the bytes are damaged).
    NotUtf8,
    /// Longer than the reader accepts (see `reader::MAX_LINE`).
    TooLong(usize),
}

impl LineError {
    fn syntax(offset: usize, what: impl Into<String>) -> LineError {
        LineError {
            offset,
            kind: LineErrorKind::Syntax(what.into()),
        }
    }

    fn value(offset: usize, what: impl Into<String>) -> LineError {
        LineError {
            offset,
            kind: LineErrorKind::Value(what.into()),
        }
    }

    /// A bad checksum, as opposed to text that cannot be parsed.
    pub fn is_crc(&self) -> bool {
        matches!(self.kind, LineErrorKind::Crc { .. })
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            LineErrorKind::Crc { stored, computed } => write!(
                f,
                "crc32 mismatch: the line says {stored:08x}, its bytes give {computed:08x}"
            ),
            LineErrorKind::Syntax(what) => write!(f, "at byte {}: {what}", self.offset),
            LineErrorKind::Value(what) => write!(f, "at byte {}: {what}", self.offset),
            LineErrorKind::DuplicateKey(k) => {
                write!(f, "at byte {}: storage id {k:?} appears twice", self.offset)
            }
            LineErrorKind::NotUtf8 => {
                write!(f, "at byte {}: the line is not valid UTF-8", self.offset)
            }
            LineErrorKind::TooLong(n) => write!(f, "the line is longer than {n} bytes"),
        }
    }
}

impl std::error::Error for LineError {}

/// The line for `rec`: time, kind letter, dict with sorted keys, crc32
/// comment and the trailing `'\n'`. `rec.had_crc` is ignored: every line we
/// write carries its checksum.
pub fn format_record(rec: &Record) -> String {
    format_line(rec.centis, rec.kind, &rec.entries)
}

/// `format_record` without building a `Record` (the writer's path).
pub(crate) fn format_line(centis: u64, kind: RecordKind, entries: &[(String, Tid)]) -> String {
    format_noted_line(centis, kind, entries, &[])
}

/// A line with the note of a `resolve` naming the transaction ids in
/// `resolved` (none: no note, the plain line).
pub(crate) fn format_noted_line(
    centis: u64,
    kind: RecordKind,
    entries: &[(String, Tid)],
    resolved: &[String],
) -> String {
    let mut sorted: Vec<&(String, Tid)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut s = String::with_capacity(32 + entries.iter().map(|e| e.0.len() + 26).sum::<usize>());
    // Writing into a String cannot fail.
    let _ = write!(
        s,
        "{}.{:02} {} {{",
        centis / 100,
        centis % 100,
        kind.letter()
    );
    for (i, (key, tid)) in sorted.into_iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        push_py_repr(&mut s, key);
        let _ = write!(s, ": {}", tid.0);
    }
    s.push('}');
    if !resolved.is_empty() {
        s.push_str(RESOLVED_MARKER);
        for (i, id) in resolved.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            push_py_repr(&mut s, id);
        }
    }
    let crc = crc32fast::hash(s.as_bytes());
    let _ = writeln!(s, "{CRC_MARKER}{crc:08x}");
    s
}

/// Appends `key` the way Python's `repr(str)` quotes it, non-ASCII raw.
pub fn push_py_repr(out: &mut String, key: &str) {
    let quote = if key.contains('\'') && !key.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in key.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Parses one line (with or without its trailing `'\n'`). Strict: the crc32
/// is checked when present, and anything after the dict other than the crc32
/// comment or blanks is refused (a truncated comment is a torn write).
pub fn parse_record(line: &str) -> Result<Record, LineError> {
    let mut body = line.strip_suffix('\n').unwrap_or(line);
    // Tolerated so a file that went through a CRLF editor still reads; the
    // crc covers only the bytes before the marker, so it is unaffected.
    body = body.strip_suffix('\r').unwrap_or(body);
    if let Some(at) = body.find(['\n', '\r']) {
        return Err(LineError::syntax(at, "line break inside the line"));
    }

    let mut had_crc = false;
    if let Some((before, hex)) = split_crc(body) {
        // `split_crc` checked the 8 hex digits.
        let stored = u32::from_str_radix(hex, 16).expect("8 hex digits fit a u32");
        let computed = crc32fast::hash(before.as_bytes());
        if stored != computed {
            return Err(LineError {
                offset: before.len(),
                kind: LineErrorKind::Crc { stored, computed },
            });
        }
        body = before;
        had_crc = true;
    }

    let mut p = Parser { s: body, pos: 0 };
    let centis = p.timestamp()?;
    p.expect_byte(b' ', "a single space after the time")?;
    let kind = match p.peek() {
        Some(b'f') => RecordKind::Full,
        Some(b'd') => RecordKind::Delta,
        _ => {
            return Err(LineError::syntax(
                p.pos,
                "record type 'f' or 'd' after the time",
            ))
        }
    };
    p.pos += 1;
    p.expect_byte(b' ', "a space after the record type")?;
    let entries = p.dict()?;
    p.resolved_note()?;
    p.skip_blanks();
    if p.pos != body.len() {
        let what = if body[p.pos..].starts_with('#') {
            "unexpected comment after the dict (a truncated crc32 comment?)"
        } else {
            "unexpected text after the dict"
        };
        return Err(LineError::syntax(p.pos, what));
    }
    Ok(Record {
        centis,
        kind,
        entries,
        had_crc,
    })
}

/// `Some((text before the marker, 8 hex digits))` when the line ends with a
/// complete crc32 comment. Only such a suffix counts: a storage id may itself
/// contain the marker text, even near the end of a line without a crc (a
/// dict literal ends with `}`, never with a hex digit, so there is no
/// ambiguity).
fn split_crc(body: &str) -> Option<(&str, &str)> {
    let cut = body.len().checked_sub(CRC_SUFFIX_LEN)?;
    let (before, tail) = (body.get(..cut)?, body.get(cut..)?);
    let hex = tail.strip_prefix(CRC_MARKER)?;
    hex.bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then_some((before, hex))
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn expect_byte(&mut self, b: u8, what: &str) -> Result<(), LineError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(LineError::syntax(self.pos, format!("expected {what}")))
        }
    }

    /// The optional note of a `resolve` record: the marker, then one or
    /// more Python string literals separated by `, `. Checked, not kept:
    /// the ids are for people reading the file.
    fn resolved_note(&mut self) -> Result<(), LineError> {
        if !self.s[self.pos..].starts_with(RESOLVED_MARKER) {
            return Ok(());
        }
        self.pos += RESOLVED_MARKER.len();
        loop {
            self.string()?;
            if self.s[self.pos..].starts_with(", ") {
                self.pos += 2;
            } else {
                return Ok(());
            }
        }
    }

    /// Python's tokenizer skips spaces and tabs between tokens (and `eval`
    /// strips them in front).
    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// `SECONDS[.D[D]]` -> hundredths of a second.
    fn timestamp(&mut self) -> Result<u64, LineError> {
        let start = self.pos;
        let int_start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        if self.pos == int_start {
            return Err(LineError::syntax(
                start,
                "expected the unix time at the start of the line",
            ));
        }
        let secs: u64 = self.s[int_start..self.pos]
            .parse()
            .map_err(|_| LineError::syntax(start, "unix time is too large"))?;
        let mut frac = 0u64;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let f_start = self.pos;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            let digits = &self.s[f_start..self.pos];
            if digits.len() > 2 {
                return Err(LineError::syntax(
                    f_start,
                    "unix time has more than 2 decimals (the format prints hundredths)",
                ));
            }
            for (i, d) in digits.bytes().enumerate() {
                frac += u64::from(d - b'0') * if i == 0 { 10 } else { 1 };
            }
        }
        secs.checked_mul(100)
            .and_then(|c| c.checked_add(frac))
            .ok_or_else(|| LineError::syntax(start, "unix time is too large"))
    }

    fn dict(&mut self) -> Result<Vec<(String, Tid)>, LineError> {
        self.skip_blanks();
        self.expect_byte(b'{', "'{' starting the dict")?;
        let mut entries: Vec<(String, Tid)> = Vec::new();
        let mut key_offsets = Vec::new();
        loop {
            self.skip_blanks();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                check_unique(&entries, &key_offsets)?;
                return Ok(entries);
            }
            key_offsets.push(self.pos);
            let key = self.string()?;
            self.skip_blanks();
            self.expect_byte(b':', "':' after the storage id")?;
            self.skip_blanks();
            let value = self.value()?;
            entries.push((key, value));
            self.skip_blanks();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => {
                    return Err(LineError::syntax(
                        self.pos,
                        "expected ',' or '}' after a value",
                    ))
                }
            }
        }
    }

    /// A non-negative integer literal, Python 2 `L` suffix allowed.
    fn value(&mut self) -> Result<Tid, LineError> {
        let start = self.pos;
        match self.peek() {
            Some(b'-') => return Err(LineError::value(start, "negative TID")),
            Some(b'0'..=b'9') => {}
            _ => {
                return Err(LineError::syntax(
                    start,
                    "expected an integer TID after ':'",
                ))
            }
        }
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        let digits = &self.s[start..self.pos];
        if digits.len() > 1 && digits.starts_with('0') {
            // Python 2 reads this as octal, Python 3 refuses it.
            return Err(LineError::value(
                start,
                format!("TID {digits} has a leading zero"),
            ));
        }
        let v: u64 = digits
            .parse()
            .map_err(|_| LineError::value(start, format!("TID {digits} is larger than 2^64-1")))?;
        if matches!(self.peek(), Some(b'L' | b'l')) {
            self.pos += 1;
        }
        if matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
            return Err(LineError::value(
                start,
                "TID is not a plain decimal integer",
            ));
        }
        Ok(Tid(v))
    }

    /// A Python string literal: optional `u` prefix, either quote, escapes.
    fn string(&mut self) -> Result<String, LineError> {
        let start = self.pos;
        let unicode = matches!(self.peek(), Some(b'u' | b'U'));
        if unicode {
            self.pos += 1;
        }
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            Some(b) if b.is_ascii_alphabetic() => {
                return Err(LineError::syntax(
                    start,
                    "only plain or u'' string literals are accepted as storage ids",
                ))
            }
            _ => return Err(LineError::syntax(start, "expected a quoted storage id")),
        };
        self.pos += 1;
        // Two readings of one literal (see `Unescaped`).
        let mut un = Unescaped::default();
        loop {
            let Some(c) = self.s[self.pos..].chars().next() else {
                return Err(LineError::syntax(start, "unterminated string"));
            };
            let c_at = self.pos;
            self.pos += c.len_utf8();
            if c as u32 == u32::from(quote) {
                break;
            }
            if c != '\\' {
                un.push_char(c);
                continue;
            }
            let Some(e) = self.peek() else {
                return Err(LineError::syntax(c_at, "unterminated string"));
            };
            self.pos += 1;
            match e {
                b'\\' | b'\'' | b'"' => un.push_char(e as char),
                b'a' => un.push_char('\x07'),
                b'b' => un.push_char('\x08'),
                b'f' => un.push_char('\x0c'),
                b'n' => un.push_char('\n'),
                b'r' => un.push_char('\r'),
                b't' => un.push_char('\t'),
                b'v' => un.push_char('\x0b'),
                b'0'..=b'7' => {
                    let mut v = u32::from(e - b'0');
                    for _ in 0..2 {
                        match self.peek() {
                            Some(d @ b'0'..=b'7') => {
                                v = v * 8 + u32::from(d - b'0');
                                self.pos += 1;
                            }
                            _ => break,
                        }
                    }
                    if v > 0xff {
                        return Err(LineError::syntax(c_at, "octal escape above \\377"));
                    }
                    un.push_byte_escape(v as u8);
                }
                b'x' => {
                    let v = self.hex_digits(2, c_at)?;
                    un.push_byte_escape(v as u8);
                }
                b'u' | b'U' => {
                    let n = if e == b'u' { 4 } else { 8 };
                    let v = self.hex_digits(n, c_at)?;
                    let c = self.code_point(v, c_at)?;
                    un.push_char(c);
                }
                b'N' => {
                    return Err(LineError::syntax(
                        c_at,
                        "\\N{...} escapes are not supported",
                    ));
                }
                _ => {
                    // Python keeps an unknown escape as written.
                    un.push_char('\\');
                    self.pos -= 1;
                }
            }
        }
        Ok(un.finish(unicode))
    }

    fn hex_digits(&mut self, n: usize, esc_at: usize) -> Result<u32, LineError> {
        let digits = self
            .s
            .get(self.pos..self.pos + n)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| LineError::syntax(esc_at, format!("escape needs {n} hex digits")))?;
        self.pos += n;
        // n <= 8 hex digits always fit a u32.
        Ok(u32::from_str_radix(digits, 16).expect("checked hex digits"))
    }

    /// A `\u`/`\U` value; joins a UTF-16 surrogate pair (how Python 2 narrow
    /// builds wrote characters beyond the BMP).
    fn code_point(&mut self, v: u32, esc_at: usize) -> Result<char, LineError> {
        if (0xd800..0xdc00).contains(&v) {
            let rest = &self.s[self.pos..];
            if rest.len() >= 6 && rest.starts_with("\\u") {
                if let Ok(lo) = u32::from_str_radix(&rest[2..6], 16) {
                    if (0xdc00..0xe000).contains(&lo) {
                        self.pos += 6;
                        let c = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
                        // In range by construction: at most 0x10ffff.
                        return Ok(char::from_u32(c).expect("valid surrogate pair"));
                    }
                }
            }
        }
        char::from_u32(v).ok_or_else(|| {
            LineError::syntax(
                esc_at,
                format!("escape \\u{v:x} is not a unicode scalar value"),
            )
        })
    }
}

/// Refuses a storage id given twice, pointing at its second occurrence.
/// Sorting indices instead of hashing keeps replay free of key copies.
fn check_unique(entries: &[(String, Tid)], offsets: &[usize]) -> Result<(), LineError> {
    if entries.len() < 2 {
        return Ok(());
    }
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_unstable_by(|&a, &b| entries[a].0.cmp(&entries[b].0).then(a.cmp(&b)));
    let dup = order
        .windows(2)
        .filter(|w| entries[w[0]].0 == entries[w[1]].0)
        .map(|w| w[1])
        .min();
    match dup {
        None => Ok(()),
        Some(i) => Err(LineError {
            offset: offsets[i],
            kind: LineErrorKind::DuplicateKey(entries[i].0.clone()),
        }),
    }
}

/// A plain (non-`u`) literal means different things to the two Pythons:
/// bytes in Python 2 (`'\xc3\xa9'` is the UTF-8 of "é"), text in Python 3
/// (`'\xe9'` is "é"). Build both; `finish` picks Python 2's reading when it
/// is valid UTF-8 (the original daemon stored the client's bytes), Python
/// 3's otherwise. They only differ once a `\x`/octal escape is >= 0x80;
/// until then Python 2's bytes are Python 3's text in UTF-8, so the byte
/// reading is only built from that point on.
#[derive(Default)]
struct Unescaped {
    py3: String,
    /// `Some` from the first escape >= 0x80 on.
    py2: Option<Vec<u8>>,
}

impl Unescaped {
    fn push_char(&mut self, c: char) {
        self.py3.push(c);
        if let Some(py2) = &mut self.py2 {
            let mut b = [0u8; 4];
            py2.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
    }

    fn push_byte_escape(&mut self, v: u8) {
        if v >= 0x80 && self.py2.is_none() {
            self.py2 = Some(self.py3.as_bytes().to_vec());
        }
        if let Some(py2) = &mut self.py2 {
            py2.push(v);
        }
        self.py3.push(char::from(v));
    }

    fn finish(self, unicode: bool) -> String {
        match self.py2 {
            Some(py2) if !unicode => String::from_utf8(py2).unwrap_or(self.py3),
            _ => self.py3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(centis: u64, kind: RecordKind, entries: &[(&str, u64)]) -> Record {
        Record {
            centis,
            kind,
            entries: entries
                .iter()
                .map(|(k, v)| (k.to_string(), Tid(*v)))
                .collect(),
            had_crc: true,
        }
    }

    #[test]
    fn resolve_note_round_trips_under_the_crc() {
        let ids = vec![
            "10.0.0.7:8080_7f3a".to_string(),
            "it's #crc32=x".to_string(),
        ];
        let entries = vec![("a".to_string(), Tid(7))];
        let line = format_noted_line(12345, RecordKind::Full, &entries, &ids);
        assert!(
            line.starts_with(
                "123.45 f {'a': 7} # resolved '10.0.0.7:8080_7f3a', \"it's #crc32=x\" #crc32="
            ),
            "{line}"
        );
        let r = parse_record(&line).unwrap();
        assert_eq!(r, rec(12345, RecordKind::Full, &[("a", 7)]));
        // The crc covers the note: changing it is damage.
        let bad = line.replace("7f3a", "7f3b");
        assert!(parse_record(&bad).unwrap_err().is_crc());
        // A note cut short is a torn write, not a record.
        let cut = line.split(" #crc32=").next().unwrap();
        assert!(parse_record(&cut[..cut.len() - 3]).is_err());
        // Anything else after the dict is still refused.
        assert!(parse_record("1.00 f {'a': 7} # resolvedx 'y'\n").is_err());
        assert!(parse_record("1.00 f {'a': 7} # resolved y\n").is_err());
    }

    #[test]
    fn original_daemon_line_parses() {
        let r = parse_record(
            "1732212345.67 f {'[[[\"127.0.0.1\", 8100]], \"1\"]': 285899593185544149L}\n",
        )
        .unwrap();
        assert_eq!(r.centis, 173221234567);
        assert_eq!(r.kind, RecordKind::Full);
        assert!(!r.had_crc);
        assert_eq!(
            r.entries,
            vec![(
                "[[[\"127.0.0.1\", 8100]], \"1\"]".to_string(),
                Tid(285899593185544149)
            )]
        );
    }

    #[test]
    fn python2_forms_parse() {
        let r = parse_record(
            "1232212345.5 d {u'a': 1L, \"b'c\": 2, u\"d\": 3l, 'caf\\xc3\\xa9': 4, u'caf\\xe9\\u20ac': 5}",
        )
        .unwrap();
        assert_eq!(r.centis, 123221234550);
        assert_eq!(r.kind, RecordKind::Delta);
        let keys: Vec<&str> = r.entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(keys, ["a", "b'c", "d", "café", "café€"]);
    }

    #[test]
    fn escapes_decode_like_python() {
        let r = parse_record(r#"1 f {'\\\'\"\n\t\r\x00\x7f\101\0\a\q\U0001f600\ud83d\ude00': 0}"#)
            .unwrap();
        assert_eq!(
            r.entries[0].0,
            "\\'\"\n\t\r\x00\x7fA\x00\x07\\q\u{1f600}\u{1f600}"
        );
        // Python 3's repr of U+0080 and U+00A0: not UTF-8 as bytes, so read as text.
        let r = parse_record(r"1 f {'\x80\xa0': 0}").unwrap();
        assert_eq!(r.entries[0].0, "\u{80}\u{a0}");
    }

    #[test]
    fn written_line_matches_python_repr_conventions() {
        let line = format_record(&rec(
            173221234507,
            RecordKind::Delta,
            &[("z", 2), ("a'b", 1), ("a'\"b", 3), ("\u{e9}\x01\\", 4)],
        ));
        let (body, crc) = line.split_at(line.len() - 17);
        assert_eq!(
            body,
            "1732212345.07 d {'a\\'\"b': 3, \"a'b\": 1, 'z': 2, '\u{e9}\\x01\\\\': 4}"
        );
        assert_eq!(
            crc,
            format!(" #crc32={:08x}\n", crc32fast::hash(body.as_bytes()))
        );
        assert_eq!(parse_record(&line).unwrap().entries.len(), 4);
    }

    #[test]
    fn empty_dict_and_blanks_parse() {
        let r = parse_record("5.00 f {}\n").unwrap();
        assert!(r.entries.is_empty());
        let r = parse_record("5 d   { 'a' :1 ,\t'b':2, }  ").unwrap();
        assert_eq!(r.entries.len(), 2);
        let line = format_record(&rec(5, RecordKind::Full, &[]));
        assert_eq!(
            line,
            format!("0.05 f {{}} #crc32={:08x}\n", crc32fast::hash(b"0.05 f {}"))
        );
    }

    #[test]
    fn bad_crc_is_reported_as_crc() {
        let line = format_record(&rec(100, RecordKind::Full, &[("a", 7)]));
        let bad = line.replace("': 7}", "': 8}");
        let e = parse_record(&bad).unwrap_err();
        assert!(e.is_crc(), "{e}");
    }

    #[test]
    fn malformed_lines_are_refused_with_an_offset() {
        let cases: &[(&str, usize)] = &[
            ("", 0),
            ("x f {}", 0),
            ("1.234 f {}", 2),
            ("1  f {}", 2),
            ("1 x {}", 2),
            ("1 f", 3),
            ("1 f {'a': -1}", 10),
            ("1 f {'a': 012}", 10),
            ("1 f {'a': 18446744073709551616}", 10),
            ("1 f {'a': 0x10}", 10),
            ("1 f {'a': 1, 'a': 2}", 13),
            ("1 f {b'a': 1}", 5),
            ("1 f {'a: 1}", 5),
            ("1 f {'a' 1}", 9),
            ("1 f {'a': 1} #crc32=12", 13),
            ("1 f {'a': 1} junk", 13),
            ("1 f {'\\x4': 1}", 6),
            ("1 f {'\\ud800': 1}", 6),
            ("1 f {'\\777': 1}", 6),
        ];
        for (line, offset) in cases {
            let e = parse_record(line).expect_err(line);
            assert_eq!(e.offset, *offset, "{line:?}: {e}");
        }
        // The `L` suffix is Python 2 only; nothing else may follow the digits.
        assert!(parse_record("1 f {'a': 1LL}").is_err());
        assert!(parse_record("1 f {'a': 1.5}").is_err());
    }

    #[test]
    fn marker_text_near_the_end_of_a_line_without_crc_is_a_key() {
        // Found by Python's own repr (tests/statuslog.rs).
        let r = parse_record("1.00 d {'x #crc32=\"1\"': 1}\n").unwrap();
        assert_eq!(r.entries[0].0, "x #crc32=\"1\"");
        assert!(!r.had_crc);
    }

    #[test]
    fn marker_text_inside_a_key_is_not_a_checksum() {
        let key = format!("x{CRC_MARKER}0000000");
        let line = format_record(&rec(1, RecordKind::Full, &[(&key, 1)]));
        assert_eq!(parse_record(&line).unwrap().entries[0].0, key);
    }
}
