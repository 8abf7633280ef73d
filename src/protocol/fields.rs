//! Splitting a byte stream into fields, shared by both decoders.
//!
//! Owns the receive buffer and the field-length limit. It knows nothing of
//! commands. The cost contract: every received byte is searched for `\n` at
//! most twice (once by `feed` if it ends up in an incomplete tail, once by
//! `next_field`), the consumed prefix is dropped in amortised O(1) per byte,
//! and an incomplete field never holds more than `max_field + 1` bytes.

use super::{FrameError, FrameErrorKind};
use crate::tid::Tid;
use std::borrow::Cow;

/// One complete field, borrowed from the buffer, `\r` not yet removed.
pub(crate) struct Field<'a> {
    raw: &'a [u8],
    /// Stream offset of the field's first byte.
    pub offset: u64,
}

pub(crate) struct FieldBuf {
    buf: Vec<u8>,
    /// Start of the first field not yet handed out.
    pos: usize,
    /// Just after the last `\n` in `buf`: fields before it are complete,
    /// bytes from it on are the incomplete tail.
    complete_end: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    max_field: usize,
    /// The tail reached `max_field + 1` bytes: later bytes are dropped and
    /// the error is reported once the complete fields before it are decoded.
    overflow: bool,
    /// Bytes searched for `\n`, to prove in tests that nothing is rescanned.
    #[cfg(test)]
    pub scanned: u64,
}

impl FieldBuf {
    pub fn new(max_field: usize) -> FieldBuf {
        FieldBuf {
            buf: Vec::new(),
            pos: 0,
            complete_end: 0,
            base: 0,
            max_field,
            overflow: false,
            #[cfg(test)]
            scanned: 0,
        }
    }

    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.overflow || bytes.is_empty() {
            return;
        }
        // Dropping the consumed prefix only once it is at least half the
        // buffer keeps the copying amortised O(1) per byte.
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.complete_end -= self.pos;
            self.pos = 0;
        }
        let last_nl = bytes.iter().rposition(|&b| b == b'\n');
        #[cfg(test)]
        {
            self.scanned += (bytes.len() - last_nl.unwrap_or(0)) as u64;
        }
        let tail = match last_nl {
            Some(i) => {
                self.buf.extend_from_slice(&bytes[..=i]);
                self.complete_end = self.buf.len();
                &bytes[i + 1..]
            }
            None => bytes,
        };
        // Invariant: the buffered tail holds at most max_field bytes unless
        // `overflow` is set, so this cannot underflow.
        let room = self.max_field.saturating_add(1) - (self.buf.len() - self.complete_end);
        let take = tail.len().min(room);
        self.buf.extend_from_slice(&tail[..take]);
        if self.buf.len() - self.complete_end > self.max_field {
            self.overflow = true;
        }
    }

    /// The next complete field, `Ok(None)` when more bytes are needed.
    pub fn next_field(&mut self) -> Result<Option<Field<'_>>, FrameError> {
        if self.pos < self.complete_end {
            let window = &self.buf[self.pos..self.complete_end];
            // `complete_end` is just after a `\n`, so one is always found.
            let Some(len) = window.iter().position(|&b| b == b'\n') else {
                return Ok(None);
            };
            #[cfg(test)]
            {
                self.scanned += len as u64 + 1;
            }
            let offset = self.base + self.pos as u64;
            if len > self.max_field {
                return Err(too_long(offset, self.max_field));
            }
            let start = self.pos;
            self.pos += len + 1;
            return Ok(Some(Field {
                raw: &self.buf[start..start + len],
                offset,
            }));
        }
        if self.overflow {
            return Err(too_long(
                self.base + self.complete_end as u64,
                self.max_field,
            ));
        }
        Ok(None)
    }
}

fn too_long(offset: u64, max_field: usize) -> FrameError {
    FrameError {
        kind: FrameErrorKind::FieldTooLong,
        detail: format!(
            "a field is longer than the limit of {max_field} bytes without a newline; \
             fields end with \\n, and a longer id needs a larger limit"
        ),
        offset,
    }
}

/// What a TID field may hold.
pub(crate) enum TidValue {
    Tid(Tid),
    /// The original Zope client's `str(None)`.
    Missing,
}

impl<'a> Field<'a> {
    /// The field with every `\r` removed.
    pub fn bytes(&self) -> Cow<'a, [u8]> {
        if self.raw.contains(&b'\r') {
            Cow::Owned(self.raw.iter().copied().filter(|&b| b != b'\r').collect())
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    /// An id: UTF-8 text, `what` naming it in the error.
    pub fn text(&self, what: &str) -> Result<String, FrameError> {
        match self.bytes() {
            Cow::Borrowed(b) => std::str::from_utf8(b).map(str::to_owned).map_err(|_| ()),
            Cow::Owned(v) => String::from_utf8(v).map_err(|_| ()),
        }
        .map_err(|()| FrameError {
            kind: FrameErrorKind::InvalidUtf8,
            detail: format!(
                "the {what} {} is not valid utf-8; ids must be utf-8 text",
                shown(self.raw)
            ),
            offset: self.offset,
        })
    }

    /// The command word, lossily decoded (it is only matched or logged).
    pub fn word(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// A list or dict count, checked against `max_list`.
    pub fn count(&self, what: &str, max_list: usize) -> Result<usize, FrameError> {
        let b = self.bytes();
        let err = |kind, detail: String| FrameError {
            kind,
            detail,
            offset: self.offset,
        };
        match parse_decimal(&b) {
            Decimal::Value(n) if n <= max_list as u64 => Ok(n as usize),
            Decimal::Value(_) | Decimal::Overflow => Err(err(
                FrameErrorKind::ListTooLong,
                format!(
                    "the {what} count {} is above the limit of {max_list} items; \
                     split the request or raise the limit",
                    shown(&b)
                ),
            )),
            Decimal::Negative => Err(err(
                FrameErrorKind::NegativeCount,
                format!("the {what} count {} is negative", shown(&b)),
            )),
            Decimal::Invalid => Err(err(
                FrameErrorKind::InvalidCount,
                format!(
                    "the {what} count {} is not a decimal integer; \
                     a list starts with its number of items",
                    shown(&b)
                ),
            )),
        }
    }

    /// A TID value of a dict, for storage `key`.
    pub fn tid(&self, key: &str) -> Result<TidValue, FrameError> {
        let b = self.bytes();
        let err = |kind, detail: String| FrameError {
            kind,
            detail,
            offset: self.offset,
        };
        match parse_decimal(&b) {
            Decimal::Value(n) => Ok(TidValue::Tid(Tid(n))),
            _ if &*b == b"None" => Ok(TidValue::Missing),
            Decimal::Overflow => Err(err(
                FrameErrorKind::TidOutOfRange,
                format!(
                    "the TID {} for storage {key:?} is above 2^64-1; a TID is 8 bytes",
                    shown(&b)
                ),
            )),
            Decimal::Negative => Err(err(
                FrameErrorKind::NegativeTid,
                format!("the TID {} for storage {key:?} is negative", shown(&b)),
            )),
            Decimal::Invalid => Err(err(
                FrameErrorKind::InvalidTid,
                format!(
                    "the TID {} for storage {key:?} is not a decimal integer",
                    shown(&b)
                ),
            )),
        }
    }
}

enum Decimal {
    Value(u64),
    Overflow,
    Negative,
    Invalid,
}

fn parse_decimal(b: &[u8]) -> Decimal {
    let (neg, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Decimal::Invalid;
    }
    if neg {
        return Decimal::Negative;
    }
    let mut n: u64 = 0;
    for &d in digits {
        match n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
        {
            Some(v) => n = v,
            None => return Decimal::Overflow,
        }
    }
    Decimal::Value(n)
}

/// A field as it appears in an error message: quoted, escaped, cut short.
pub(crate) fn shown(b: &[u8]) -> String {
    const MAX: usize = 40;
    let text = String::from_utf8_lossy(&b[..b.len().min(MAX)]);
    if b.len() > MAX {
        format!("{text:?}... ({} bytes)", b.len())
    } else {
        format!("{text:?}")
    }
}
