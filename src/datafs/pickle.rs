//! The few pickle opcodes ZODB's `fsIndex.save` writes, read and written.
//!
//! Owns: decoding one pickle at a time from a byte stream into a tiny value
//! type ([`Value`]: non-negative integer, bytes, pair, `None`) and encoding
//! those values exactly as ZODB 5/6 (zodbpickle, protocol 3, `fast = True`,
//! so no memo opcodes) encodes them, byte for byte.
//!
//! Must not: construct arbitrary objects, look up globals, accept any opcode
//! outside the list below, allocate from a length read in the stream without
//! bounding it, or panic. Every refusal is a [`PickleError`] carrying the
//! stream offset of the offending byte.
//!
//! The opcodes, found by pickling with ZODB and disassembling with
//! `pickletools` (see `docs/index.md`):
//!
//! ```text
//! \x80 n      PROTO n (must be 3; first opcode of every pickle)
//! K b         BININT1: unsigned byte
//! M bb        BININT2: unsigned 16-bit little-endian
//! J bbbb      BININT: signed 32-bit little-endian (negative refused)
//! \x8a n b*n  LONG1: n-byte little-endian two's complement (negative and
//!             > 64-bit values refused)
//! C n b*n     SHORT_BINBYTES: bytes of length n < 256
//! B nnnn b*   BINBYTES: bytes of 32-bit little-endian length
//! \x86        TUPLE2: the two top stack items become a pair
//! N           NONE
//! .           STOP: the pickle's value is the single stack item
//! ```

use std::fmt;
use std::io::{self, Read, Write};

/// A value of the fsIndex pickle subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(u64),
    Bytes(Vec<u8>),
    Pair(Box<Value>, Box<Value>),
    None,
}

/// What went wrong, at which stream offset.
#[derive(Debug)]
pub struct PickleError {
    pub offset: u64,
    pub kind: PickleErrorKind,
}

#[derive(Debug)]
pub enum PickleErrorKind {
    Io(io::Error),
    /// The stream ended inside a pickle (`needed` more bytes for `what`).
    Truncated {
        what: &'static str,
    },
    /// An opcode outside the fsIndex subset.
    UnsupportedOpcode(u8),
    UnsupportedProtocol(u8),
    /// A pickle that does not start with PROTO.
    MissingProto,
    /// An integer that is negative or does not fit 64 bits.
    IntOutOfRange,
    /// A bytes object longer than the caller's limit.
    BytesTooLong {
        len: u64,
        max: usize,
    },
    /// TUPLE2 or STOP with too few items, or STOP leaving extra items.
    BadStack {
        items: usize,
        op: &'static str,
    },
    /// More items pushed than any fsIndex pickle holds.
    StackTooDeep,
}

impl fmt::Display for PickleErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PickleErrorKind::Io(e) => write!(f, "i/o error: {e}"),
            PickleErrorKind::Truncated { what } => {
                write!(f, "the file ends inside a pickle ({what})")
            }
            PickleErrorKind::UnsupportedOpcode(op) => write!(
                f,
                "pickle opcode 0x{op:02x} is not one ZODB's fsIndex.save writes"
            ),
            PickleErrorKind::UnsupportedProtocol(p) => {
                write!(f, "pickle protocol {p} (fsIndex.save writes protocol 3)")
            }
            PickleErrorKind::MissingProto => {
                write!(f, "pickle does not start with the protocol opcode")
            }
            PickleErrorKind::IntOutOfRange => {
                write!(f, "integer is negative or wider than 64 bits")
            }
            PickleErrorKind::BytesTooLong { len, max } => {
                write!(
                    f,
                    "bytes of length {len} exceed the largest expected ({max})"
                )
            }
            PickleErrorKind::BadStack { items, op } => {
                write!(f, "{op} with {items} item(s) on the pickle stack")
            }
            PickleErrorKind::StackTooDeep => write!(f, "pickle stack deeper than expected"),
        }
    }
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "offset {}: {}", self.offset, self.kind)
    }
}

impl std::error::Error for PickleError {}

const PROTO: u8 = 0x80;
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const BININT: u8 = b'J';
const LONG1: u8 = 0x8a;
const SHORT_BINBYTES: u8 = b'C';
const BINBYTES: u8 = b'B';
const TUPLE2: u8 = 0x86;
const NONE: u8 = b'N';
const STOP: u8 = b'.';

/// The protocol ZODB pickles with (`ZODB._compat._protocol`).
pub const PROTOCOL: u8 = 3;

/// fsIndex pickles hold at most a pair of two leaves.
const MAX_STACK: usize = 4;

/// Reads consecutive pickles from a stream, keeping the offset.
pub struct PickleReader<R> {
    inner: R,
    offset: u64,
    max_bytes: usize,
}

impl<R: Read> PickleReader<R> {
    /// `max_bytes` bounds every bytes object (and so every allocation).
    pub fn new(inner: R, max_bytes: usize) -> PickleReader<R> {
        PickleReader {
            inner,
            offset: 0,
            max_bytes,
        }
    }

    /// Offset of the next byte to read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn err(&self, offset: u64, kind: PickleErrorKind) -> PickleError {
        PickleError { offset, kind }
    }

    /// Fills `buf` entirely, or reports where the stream ended.
    fn fill(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), PickleError> {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(self.err(
                        self.offset + done as u64,
                        PickleErrorKind::Truncated { what },
                    ))
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err(self.offset + done as u64, PickleErrorKind::Io(e))),
            }
        }
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, PickleError> {
        let mut b = [0u8; 1];
        self.fill(&mut b, what)?;
        Ok(b[0])
    }

    /// Reads one pickle (PROTO ... STOP) and returns its value.
    pub fn read_value(&mut self) -> Result<Value, PickleError> {
        let start = self.offset;
        let first = self.byte("protocol opcode")?;
        if first != PROTO {
            return Err(self.err(start, PickleErrorKind::MissingProto));
        }
        let proto = self.byte("protocol number")?;
        if proto != PROTOCOL {
            return Err(self.err(start + 1, PickleErrorKind::UnsupportedProtocol(proto)));
        }
        let mut stack: Vec<Value> = Vec::with_capacity(MAX_STACK);
        loop {
            let at = self.offset;
            let op = self.byte("opcode")?;
            let v = match op {
                BININT1 => Value::Int(self.byte("BININT1 argument")? as u64),
                BININT2 => {
                    let mut b = [0u8; 2];
                    self.fill(&mut b, "BININT2 argument")?;
                    Value::Int(u16::from_le_bytes(b) as u64)
                }
                BININT => {
                    let mut b = [0u8; 4];
                    self.fill(&mut b, "BININT argument")?;
                    let n = i32::from_le_bytes(b);
                    if n < 0 {
                        return Err(self.err(at, PickleErrorKind::IntOutOfRange));
                    }
                    Value::Int(n as u64)
                }
                LONG1 => {
                    let n = self.byte("LONG1 length")? as usize;
                    // A non-negative u64 needs at most 9 bytes (a sign byte).
                    if n > 9 {
                        return Err(self.err(at, PickleErrorKind::IntOutOfRange));
                    }
                    let mut b = [0u8; 9];
                    self.fill(&mut b[..n], "LONG1 digits")?;
                    Value::Int(decode_long(&b[..n]).ok_or(PickleError {
                        offset: at,
                        kind: PickleErrorKind::IntOutOfRange,
                    })?)
                }
                SHORT_BINBYTES => {
                    let n = self.byte("SHORT_BINBYTES length")? as u64;
                    Value::Bytes(self.bytes(at, n)?)
                }
                BINBYTES => {
                    let mut b = [0u8; 4];
                    self.fill(&mut b, "BINBYTES length")?;
                    Value::Bytes(self.bytes(at, u32::from_le_bytes(b) as u64)?)
                }
                NONE => Value::None,
                TUPLE2 => {
                    let items = stack.len();
                    let (Some(b), Some(a)) = (stack.pop(), stack.pop()) else {
                        return Err(self.err(
                            at,
                            PickleErrorKind::BadStack {
                                items,
                                op: "TUPLE2",
                            },
                        ));
                    };
                    Value::Pair(Box::new(a), Box::new(b))
                }
                STOP => {
                    if stack.len() != 1 {
                        let items = stack.len();
                        return Err(self.err(at, PickleErrorKind::BadStack { items, op: "STOP" }));
                    }
                    // Length checked just above.
                    return Ok(stack.pop().unwrap_or(Value::None));
                }
                other => return Err(self.err(at, PickleErrorKind::UnsupportedOpcode(other))),
            };
            if stack.len() == MAX_STACK {
                return Err(self.err(at, PickleErrorKind::StackTooDeep));
            }
            stack.push(v);
        }
    }

    fn bytes(&mut self, at: u64, len: u64) -> Result<Vec<u8>, PickleError> {
        if len > self.max_bytes as u64 {
            return Err(self.err(
                at,
                PickleErrorKind::BytesTooLong {
                    len,
                    max: self.max_bytes,
                },
            ));
        }
        let mut v = vec![0u8; len as usize];
        self.fill(&mut v, "bytes")?;
        Ok(v)
    }
}

/// Little-endian two's complement, as `pickle.decode_long`; `None` when
/// negative or wider than 64 bits.
fn decode_long(b: &[u8]) -> Option<u64> {
    if b.last().is_some_and(|&last| last & 0x80 != 0) {
        return None;
    }
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate() {
        if i >= 8 {
            // The 9th byte may only be the sign byte (0, checked above).
            if byte != 0 {
                return None;
            }
            continue;
        }
        v |= (byte as u64) << (8 * i);
    }
    Some(v)
}

/// Writes pickles the way zodbpickle's protocol-3 `Pickler` with
/// `fast = True` does, so the output matches ZODB's byte for byte.
pub struct PickleWriter<W> {
    inner: W,
}

impl<W: Write> PickleWriter<W> {
    pub fn new(inner: W) -> PickleWriter<W> {
        PickleWriter { inner }
    }

    pub fn into_inner(self) -> W {
        self.inner
    }

    /// One whole pickle of `v` (PROTO ... STOP).
    pub fn write_value(&mut self, v: &Value) -> io::Result<()> {
        self.inner.write_all(&[PROTO, PROTOCOL])?;
        self.write_item(v)?;
        self.inner.write_all(&[STOP])
    }

    /// One pickle of the pair (a, b) of bytes, without building a [`Value`]
    /// (the index writer streams millions of entries through this).
    pub fn write_bytes_pair(&mut self, a: &[u8], b: &[u8]) -> io::Result<()> {
        self.inner.write_all(&[PROTO, PROTOCOL])?;
        self.write_bytes(a)?;
        self.write_bytes(b)?;
        self.inner.write_all(&[TUPLE2, STOP])
    }

    fn write_item(&mut self, v: &Value) -> io::Result<()> {
        match v {
            Value::Int(n) => self.write_int(*n),
            Value::Bytes(b) => self.write_bytes(b),
            Value::None => self.inner.write_all(&[NONE]),
            Value::Pair(a, b) => {
                self.write_item(a)?;
                self.write_item(b)?;
                self.inner.write_all(&[TUPLE2])
            }
        }
    }

    fn write_int(&mut self, n: u64) -> io::Result<()> {
        // pickle's save_long: the shortest of BININT1, BININT2, BININT for
        // 0 <= n < 2**31, else LONG1 with the minimal two's complement.
        if n < 0x100 {
            self.inner.write_all(&[BININT1, n as u8])
        } else if n < 0x1_0000 {
            self.inner.write_all(&[BININT2])?;
            self.inner.write_all(&(n as u16).to_le_bytes())
        } else if n < 0x8000_0000 {
            self.inner.write_all(&[BININT])?;
            self.inner.write_all(&(n as u32).to_le_bytes())
        } else {
            let le = n.to_le_bytes();
            let mut len = 8 - (n.leading_zeros() / 8) as usize;
            let mut digits = [0u8; 9];
            digits[..8].copy_from_slice(&le);
            // A set top bit would read back negative: add a sign byte.
            if digits[len - 1] & 0x80 != 0 {
                len += 1;
            }
            self.inner.write_all(&[LONG1, len as u8])?;
            self.inner.write_all(&digits[..len])
        }
    }

    fn write_bytes(&mut self, b: &[u8]) -> io::Result<()> {
        if b.len() < 0x100 {
            self.inner.write_all(&[SHORT_BINBYTES, b.len() as u8])?;
        } else {
            let len = u32::try_from(b.len()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "bytes longer than protocol 3 can hold",
                )
            })?;
            self.inner.write_all(&[BINBYTES])?;
            self.inner.write_all(&len.to_le_bytes())?;
        }
        self.inner.write_all(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(v: &Value) -> Vec<u8> {
        let mut w = PickleWriter::new(Vec::new());
        w.write_value(v).unwrap();
        w.into_inner()
    }

    fn decode(b: &[u8]) -> Result<Value, PickleError> {
        PickleReader::new(b, 1 << 20).read_value()
    }

    #[test]
    fn integers_are_encoded_like_python_pickle() {
        // Bytes from `zodbpickle.pickle.Pickler(f, 3)` (see docs/index.md).
        let cases: &[(u64, &str)] = &[
            (0, "80034b002e"),
            (255, "80034bff2e"),
            (256, "80034d00012e"),
            (65535, "80034dffff2e"),
            (65536, "80034a000001002e"),
            (2147483647, "80034affffff7f2e"),
            (2147483648, "80038a0500000080002e"),
            (4294967296, "80038a0500000000012e"),
            (281474976710655, "80038a07ffffffffffff002e"),
            (9223372036854775808, "80038a090000000000000080002e"),
            (u64::MAX, "80038a09ffffffffffffffff002e"),
        ];
        for (n, hex) in cases {
            let got: String = encode(&Value::Int(*n))
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(&got, hex, "encoding of {n}");
            assert_eq!(decode(&encode(&Value::Int(*n))).unwrap(), Value::Int(*n));
        }
    }

    #[test]
    fn pairs_of_bytes_round_trip_in_both_lengths() {
        for len in [0usize, 1, 255, 256, 70_000] {
            let v = Value::Pair(
                Box::new(Value::Bytes(vec![1; 6])),
                Box::new(Value::Bytes(vec![7; len])),
            );
            let mut w = PickleWriter::new(Vec::new());
            w.write_bytes_pair(&[1; 6], &vec![7; len]).unwrap();
            assert_eq!(w.into_inner(), encode(&v));
            assert_eq!(decode(&encode(&v)).unwrap(), v);
        }
    }

    #[test]
    fn refuses_what_fsindex_never_writes() {
        let bad: &[(&[u8], u64)] = &[
            (b"\x80\x02N.", 1),                 // protocol 2
            (b"N.", 0),                         // no PROTO
            (b"\x80\x03c__builtin__\n", 2),     // GLOBAL
            (b"\x80\x03J\xff\xff\xff\xff.", 2), // negative BININT
            (b"\x80\x03\x8a\x01\xff.", 2),      // negative LONG1
            (b"\x80\x03\x8a\x0a", 2),           // LONG1 too wide
            (b"\x80\x03\x86.", 2),              // TUPLE2 on an empty stack
            (b"\x80\x03NN.", 4),                // STOP with two items
            (b"\x80\x03.", 2),                  // STOP with nothing
            (b"\x80\x03NNNNN", 6),              // stack too deep
        ];
        for (b, offset) in bad {
            let e = decode(b).unwrap_err();
            assert_eq!(e.offset, *offset, "{b:?}: {e}");
        }
        let e = PickleReader::new(&b"\x80\x03B\xff\xff\xff\x7f"[..], 100)
            .read_value()
            .unwrap_err();
        assert!(
            matches!(e.kind, PickleErrorKind::BytesTooLong { .. }),
            "{e}"
        );
    }

    #[test]
    fn every_prefix_of_a_pickle_is_a_truncation_error() {
        let full = encode(&Value::Pair(
            Box::new(Value::Bytes(vec![0; 6])),
            Box::new(Value::Bytes(vec![9; 300])),
        ));
        for n in 0..full.len() {
            let e = decode(&full[..n]).unwrap_err();
            assert!(
                matches!(e.kind, PickleErrorKind::Truncated { .. }),
                "prefix {n}: {e}"
            );
            assert!(e.offset <= n as u64);
        }
    }
}
