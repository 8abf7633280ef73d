//! Blob records in a Data.fs: which (oid, tid) pairs name a blob file.
//!
//! Owns: walking the data records of the transactions in a range of
//! offsets, resolving back pointers (undo) to the pickle they reuse, and
//! deciding, exactly as `ZODB.blob.is_blob_record` does, whether that pickle
//! is a blob's. Must not touch blob directories (that is `crate::blobs`),
//! nor panic on any input: damage is a [`super::Error`] with its offset.
//!
//! What ZODB does, and so what this mirrors (ZODB 6.4):
//!
//! - `is_blob_record(record)`: `b'ZODB.blob' in record`, then the *first*
//!   pickle of the record (the class pickle) is loaded with a `find_global`
//!   that answers the class `ZODB.blob.Blob` for `("ZODB.blob", "Blob")` and
//!   `None` for anything else, without `persistent_load`; the record is a
//!   blob record iff that load returns the class `Blob` itself. Any
//!   exception means "no". So subclasses of `Blob` (which `Blob.__init__`
//!   refuses anyway) and `(Blob, args)` class pickles are not blob records.
//! - The blob file of a record is named after the record's own tid
//!   (`FileIterator` yields `Record(h.oid, h.tid, ...)` and
//!   `copyTransactionsFromTo` calls `loadBlob(record.oid, record.tid)`).
//! - An undo writes a back-pointer record (plen 0) for the undo's tid and,
//!   when the data it points to is a blob record, copies the blob file into
//!   a file for the undo's tid (`FileStorage._txn_undo_write`). A back
//!   pointer chain is followed to the first record with a pickle
//!   (`_loadBack_impl`); a chain ending in 0 (undo of a creation) has no
//!   data and no file.
//! - A ZEO server may write two data records for one (oid, tid) of a blob
//!   in one transaction: one file. [`BlobRecords`] holds each pair once.
//!
//! The class-pickle evaluation is an abstract pickle machine that never
//! calls anything, following the unpickler ZODB really uses: zodbpickle's
//! C `_pickle` (CPython 3.3's), which knows protocols 0-3 only (a
//! protocol-4 pickle of `Blob` is *not* a blob record for ZODB: PROTO 4 and
//! the protocol-4 opcodes raise), and whose value stack has no fence at
//! marks (a pop below the last MARK is allowed). It is exact for every
//! pickle whose result does not depend on calling `Blob` (or
//! `Blob.__setstate__`), and reports [`ClassPickle::Undecidable`] for the
//! rest (no real ZODB record is like that: ZODB writes the class pickle as
//! one GLOBAL opcode and a memo PUT). `tests/blobs.rs` checks it against
//! `is_blob_record` on thousands of mutated pickles.

use std::collections::HashMap;

use std::fmt;
use std::path::PathBuf;

use super::layout::{RawDataHeader, DATA_HEADER_LEN, FIRST_TXN};
use super::{DataFs, Error, ErrorKind};
use crate::tid::Tid;

/// Why the blob records of a range could not be listed.
#[derive(Debug)]
pub enum BlobRecordError {
    /// Reading or walking the Data.fs failed (I/O or damage, with offset).
    DataFs(Error),
    /// A record whose class pickle is a blob's only if calling `Blob`
    /// succeeds: no ZODB writes such a pickle; named rather than guessed.
    Undecidable {
        path: PathBuf,
        /// Offset of the opcode in the file.
        offset: u64,
        opcode: u8,
    },
}

impl From<Error> for BlobRecordError {
    fn from(e: Error) -> Self {
        BlobRecordError::DataFs(e)
    }
}

impl fmt::Display for BlobRecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobRecordError::DataFs(e) => e.fmt(f),
            BlobRecordError::Undecidable {
                path,
                offset,
                opcode,
            } => write!(
                f,
                "{}: offset {offset}: the class pickle of this data record names \
                 ZODB.blob.Blob through opcode 0x{opcode:02x}, so whether it is a blob \
                 record depends on running Python code; no ZODB writes this: check the \
                 record with ZODB (fsdump) and report it",
                path.display()
            ),
        }
    }
}

impl std::error::Error for BlobRecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BlobRecordError::DataFs(e) => Some(e),
            BlobRecordError::Undecidable { .. } => None,
        }
    }
}

impl BlobRecordError {
    /// True for damage in the bytes (or an undecidable record), false for I/O.
    pub fn is_damage(&self) -> bool {
        match self {
            BlobRecordError::DataFs(e) => e.is_damage(),
            BlobRecordError::Undecidable { .. } => true,
        }
    }
}

/// One blob file a Data.fs names: its oid, the tid of the record (the file
/// name), and the offset of the (first) data record naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobRecord {
    pub oid: u64,
    pub tid: Tid,
    pub pos: u64,
}

/// The blob records of a range of transactions, each (oid, tid) once, in
/// file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobRecords {
    pub records: Vec<BlobRecord>,
    /// Transactions walked.
    pub transactions: u64,
    /// Data records walked (blob or not).
    pub data_records: u64,
    /// Offset just after the last transaction walked.
    pub end: u64,
}

/// First read of a pickle: class pickles are tens of bytes, so one small
/// read per data record decides; a longer class pickle reads the record.
const PICKLE_WINDOW: u64 = 512;

/// The ASCII bytes `is_blob_record` looks for before unpickling.
const NEEDLE: &[u8] = b"ZODB.blob";

impl DataFs {
    /// The blob records of the transactions starting in `[from, to)`:
    /// `from` is a transaction offset (4 for the first), `to` a transaction
    /// end such as a cut position or a backup's end (clamped to the file
    /// size). Each transaction is checked like [`DataFs::verify_transaction`]
    /// (status, lengths, records inside it, pointers below them); undone
    /// (`u`) transactions are skipped, as ZODB does.
    pub fn blob_records(&self, from: u64, to: u64) -> Result<BlobRecords, BlobRecordError> {
        self.blob_records_with(from, to, &mut |_, _| {})
    }

    /// [`Self::blob_records`], calling `progress(pos, to)` after each
    /// transaction.
    pub fn blob_records_with(
        &self,
        from: u64,
        to: u64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<BlobRecords, BlobRecordError> {
        let to = to.min(self.size());
        let mut out = BlobRecords {
            end: from.max(FIRST_TXN),
            ..BlobRecords::default()
        };
        let mut pos = from;
        let mut seen: std::collections::HashSet<u64> = std::collections::HashSet::new();
        let mut recs: Vec<(u64, RawDataHeader)> = Vec::new();
        while pos < to {
            let h = self.read_txn_header(pos)?;
            if h.end() > to {
                return Err(self
                    .error(
                        pos,
                        ErrorKind::NotTransactionEnd {
                            what: "the end of the blob record range",
                        },
                    )
                    .into());
            }
            recs.clear();
            // A record's tid is its transaction's (checked), so the same
            // (oid, tid) can only repeat inside one transaction.
            seen.clear();
            self.verify_transaction_visit(&h, &mut |p, d| recs.push((p, *d)))?;
            for (p, d) in &recs {
                out.data_records += 1;
                if self.record_is_blob(*p, d)? && seen.insert(d.oid) {
                    out.records.push(BlobRecord {
                        oid: d.oid,
                        tid: Tid(d.tid),
                        pos: *p,
                    });
                }
            }
            out.transactions += 1;
            pos = h.end();
            out.end = pos;
            progress(pos, to);
        }
        Ok(out)
    }

    /// Whether the data record at `pos` (header `d`, already checked to lie
    /// in its transaction) is a blob record, following back pointers.
    fn record_is_blob(&self, pos: u64, d: &RawDataHeader) -> Result<bool, BlobRecordError> {
        let mut at = pos;
        let mut plen = d.plen;
        while plen == 0 {
            let back = self.read_u64_at(at + DATA_HEADER_LEN as u64, "back pointer")?;
            if back == 0 {
                // Undo of a creation: no data, so no blob.
                return Ok(false);
            }
            if back >= at || back < FIRST_TXN {
                return Err(self
                    .corrupt(at, super::Corruption::BackPointer { back })
                    .into());
            }
            at = back;
            plen = self.read_raw_data_header(at)?.plen;
        }
        self.pickle_is_blob(at + DATA_HEADER_LEN as u64, plen)
    }

    /// `is_blob_record` of the `plen` bytes at `start`.
    fn pickle_is_blob(&self, start: u64, plen: u64) -> Result<bool, BlobRecordError> {
        let available = self.size().saturating_sub(start);
        if plen > available {
            return Err(self
                .error(
                    start,
                    ErrorKind::Truncated {
                        needed: plen,
                        available,
                        what: "data record pickle",
                    },
                )
                .into());
        }
        let first = plen.min(PICKLE_WINDOW);
        let mut buf = vec![0u8; first as usize];
        self.read_at(start, &mut buf, "data record pickle")?;
        let mut verdict = class_pickle_is_blob(&buf);
        if verdict == ClassPickle::NeedMore && first < plen {
            buf = vec![0u8; plen as usize];
            self.read_at(start, &mut buf, "data record pickle")?;
            verdict = class_pickle_is_blob(&buf);
        }
        match verdict {
            ClassPickle::Blob => {
                if contains(&buf, NEEDLE) {
                    return Ok(true);
                }
                if (buf.len() as u64) < plen {
                    let mut all = vec![0u8; plen as usize];
                    self.read_at(start, &mut all, "data record pickle")?;
                    return Ok(contains(&all, NEEDLE));
                }
                Ok(false)
            }
            ClassPickle::NotBlob | ClassPickle::NeedMore => Ok(false),
            ClassPickle::Undecidable { offset, opcode } => Err(BlobRecordError::Undecidable {
                path: self.path().to_path_buf(),
                offset: start + offset,
                opcode,
            }),
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// What loading a record's first pickle as `is_blob_record` does gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassPickle {
    /// The load returns the class `ZODB.blob.Blob`.
    Blob,
    /// The load returns something else or raises.
    NotBlob,
    /// The bytes end inside the pickle (the load would raise; a caller
    /// holding only a prefix of the record reads more).
    NeedMore,
    /// The answer depends on calling `Blob` (opcode at `offset`).
    Undecidable { offset: u64, opcode: u8 },
}

/// Values on the abstract pickle stack.
#[derive(Debug, Clone, PartialEq, Eq)]
enum V {
    /// The class `ZODB.blob.Blob`.
    Blob,
    /// Anything else: None (every other global), numbers, bytes,
    /// containers. Never callable, never the class Blob.
    Other,
}

/// `is_blob_record`'s unpickling of the first pickle in `b` (the caller
/// has already checked for `ZODB.blob`, or does so after).
pub fn class_pickle_is_blob(b: &[u8]) -> ClassPickle {
    Machine::new(b).run()
}

struct Machine<'a> {
    b: &'a [u8],
    p: usize,
    stack: Vec<V>,
    /// Stack lengths at each MARK (kept apart from the values, as in
    /// CPython 3.3's `_pickle`; pops may go below them).
    marks: Vec<usize>,
    memo: HashMap<u64, V>,
    /// An operation ran whose success the machine cannot tell (BUILD on a
    /// non-Blob value, container updates): a final Blob is then undecidable.
    maybe_raised: Option<(u64, u8)>,
}

enum Step {
    Go,
    Done(ClassPickle),
}

/// A stack value limit: deeper pickles are not class pickles.
const MAX_STACK: usize = 100_000;

impl<'a> Machine<'a> {
    fn new(b: &'a [u8]) -> Machine<'a> {
        Machine {
            b,
            p: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            maybe_raised: None,
        }
    }

    fn run(mut self) -> ClassPickle {
        loop {
            match self.step() {
                Ok(Step::Go) => {}
                Ok(Step::Done(v)) => return v,
                Err(v) => return v,
            }
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ClassPickle> {
        if self.b.len() - self.p < n {
            return Err(ClassPickle::NeedMore);
        }
        let s = &self.b[self.p..self.p + n];
        self.p += n;
        Ok(s)
    }

    fn line(&mut self) -> Result<&'a [u8], ClassPickle> {
        let rest = &self.b[self.p..];
        match rest.iter().position(|&c| c == b'\n') {
            Some(i) => {
                self.p += i + 1;
                Ok(&rest[..i])
            }
            None => Err(ClassPickle::NeedMore),
        }
    }

    fn le(&mut self, n: usize) -> Result<u64, ClassPickle> {
        let s = self.take(n)?;
        let mut v = 0u64;
        for (i, &c) in s.iter().enumerate() {
            v |= (c as u64) << (8 * i);
        }
        Ok(v)
    }

    /// Pops one value, or raises on an empty stack.
    fn pop(&mut self) -> Result<V, ClassPickle> {
        self.stack.pop().ok_or(ClassPickle::NotBlob)
    }

    fn push(&mut self, v: V) -> Result<(), ClassPickle> {
        if self.stack.len() >= MAX_STACK {
            return Err(ClassPickle::NotBlob);
        }
        self.stack.push(v);
        Ok(())
    }

    /// Pops to the last mark (raises without one, or when pops went
    /// below it), returning the items.
    fn pop_mark(&mut self) -> Result<Vec<V>, ClassPickle> {
        let m = self.marks.pop().ok_or(ClassPickle::NotBlob)?;
        if m > self.stack.len() {
            return Err(ClassPickle::NotBlob);
        }
        Ok(self.stack.split_off(m))
    }

    fn top(&self) -> Result<&V, ClassPickle> {
        self.stack.last().ok_or(ClassPickle::NotBlob)
    }

    fn global(module: &[u8], name: &[u8]) -> V {
        if module == b"ZODB.blob" && name == b"Blob" {
            V::Blob
        } else {
            V::Other
        }
    }

    fn undecidable(&self, at: usize, op: u8) -> ClassPickle {
        ClassPickle::Undecidable {
            offset: at as u64,
            opcode: op,
        }
    }

    fn step(&mut self) -> Result<Step, ClassPickle> {
        let at = self.p;
        let op = self.take(1)?[0];
        match op {
            // PROTO: zodbpickle's unpickler refuses anything above 3.
            0x80 => {
                if self.take(1)?[0] > 3 {
                    return Err(ClassPickle::NotBlob);
                }
            }
            // STOP
            b'.' => {
                let v = self.pop()?;
                return Ok(Step::Done(match (v, self.maybe_raised) {
                    (V::Blob, None) => ClassPickle::Blob,
                    (V::Blob, Some((o, c))) => ClassPickle::Undecidable {
                        offset: o,
                        opcode: c,
                    },
                    _ => ClassPickle::NotBlob,
                }));
            }
            // GLOBAL: module and name lines, decoded as UTF-8.
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                if std::str::from_utf8(module).is_err() || std::str::from_utf8(name).is_err() {
                    return Err(ClassPickle::NotBlob);
                }
                self.push(Self::global(module, name))?;
            }
            // INST: find_class then call it.
            b'i' => {
                let module = self.line()?;
                let name = self.line()?;
                if Self::global(module, name) == V::Blob {
                    return Err(self.undecidable(at, op));
                }
                // Calling None raises.
                return Err(ClassPickle::NotBlob);
            }
            // OBJ: the first item after the mark is the class.
            b'o' => {
                let items = self.pop_mark()?;
                match items.first() {
                    Some(V::Blob) => return Err(self.undecidable(at, op)),
                    _ => return Err(ClassPickle::NotBlob),
                }
            }
            // REDUCE: callable, args.
            b'R' => {
                let _args = self.pop()?;
                match self.pop()? {
                    V::Blob => return Err(self.undecidable(at, op)),
                    _ => return Err(ClassPickle::NotBlob),
                }
            }
            // NEWOBJ (cls, args): cls must be a type; only Blob is one.
            0x81 => {
                self.pop()?;
                match self.pop()? {
                    V::Blob => return Err(self.undecidable(at, op)),
                    _ => return Err(ClassPickle::NotBlob),
                }
            }
            // BUILD: inst.__setstate__(state) or a __dict__ update.
            b'b' => {
                self.pop()?;
                if *self.top()? == V::Blob {
                    return Err(self.undecidable(at, op));
                }
                self.maybe_raised.get_or_insert((at as u64, op));
            }
            // PERSID, BINPERSID: no persistent_load: raises.
            b'P' | b'Q' => return Err(ClassPickle::NotBlob),
            // EXT1/2/4: the extension registry is empty: raises.
            0x82..=0x84 => return Err(ClassPickle::NotBlob),
            // MARK
            b'(' => self.marks.push(self.stack.len()),
            // POP: a mark at the top is popped instead of a value.
            b'0' => {
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop()?;
                }
            }
            // POP_MARK
            b'1' => {
                self.pop_mark()?;
            }
            // DUP
            b'2' => {
                let v = self.top()?.clone();
                self.push(v)?;
            }
            // Memo stores: PUT (decimal line), BINPUT, LONG_BINPUT.
            b'p' | b'q' | b'r' => {
                let key = match op {
                    b'p' => parse_decimal(self.line()?).ok_or(ClassPickle::NotBlob)?,
                    b'q' => self.le(1)?,
                    _ => self.le(4)?,
                };
                let v = self.top()?.clone();
                self.memo.insert(key, v);
            }
            // Memo loads: GET, BINGET, LONG_BINGET; a missing key raises.
            b'g' | b'h' | b'j' => {
                let key = match op {
                    b'g' => parse_decimal(self.line()?).ok_or(ClassPickle::NotBlob)?,
                    b'h' => self.le(1)?,
                    _ => self.le(4)?,
                };
                let v = self.memo.get(&key).cloned().ok_or(ClassPickle::NotBlob)?;
                self.push(v)?;
            }
            // Strings (no protocol 0-3 opcode turns one into a global).
            b'X' => {
                let n = self.le(4)? as usize;
                self.take(n)?;
                self.push(V::Other)?;
            }
            b'V' | b'S' => {
                self.line()?;
                self.push(V::Other)?;
            }
            b'U' | b'T' => {
                let n = if op == b'U' { self.le(1)? } else { self.le(4)? };
                if op == b'T' && n > i32::MAX as u64 {
                    return Err(ClassPickle::NotBlob);
                }
                self.take(n as usize)?;
                self.push(V::Other)?;
            }
            // Bytes.
            b'C' | b'B' => {
                let n = if op == b'C' { self.le(1)? } else { self.le(4)? };
                self.take(n as usize)?;
                self.push(V::Other)?;
            }
            // Numbers and constants.
            b'I' | b'L' | b'F' => {
                self.line()?;
                self.push(V::Other)?;
            }
            b'J' => {
                self.take(4)?;
                self.push(V::Other)?;
            }
            b'K' => {
                self.take(1)?;
                self.push(V::Other)?;
            }
            b'M' => {
                self.take(2)?;
                self.push(V::Other)?;
            }
            b'G' => {
                self.take(8)?;
                self.push(V::Other)?;
            }
            0x8a => {
                let n = self.le(1)? as usize;
                self.take(n)?;
                self.push(V::Other)?;
            }
            0x8b => {
                let n = self.le(4)?;
                if n > i32::MAX as u64 {
                    return Err(ClassPickle::NotBlob);
                }
                self.take(n as usize)?;
                self.push(V::Other)?;
            }
            b'N' | 0x88 | 0x89 | b')' | b']' | b'}' => self.push(V::Other)?,
            // TUPLE, LIST from the mark: never raise.
            b't' | b'l' => {
                self.pop_mark()?;
                self.push(V::Other)?;
            }
            // DICT from the mark: hashing may raise.
            b'd' => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err(ClassPickle::NotBlob);
                }
                self.maybe_raised.get_or_insert((at as u64, op));
                self.push(V::Other)?;
            }
            // TUPLE1/2/3
            0x85..=0x87 => {
                for _ in 0..(op - 0x84) {
                    self.pop()?;
                }
                self.push(V::Other)?;
            }
            // APPEND, SETITEM: the target must be a list / dict.
            b'a' | b's' => {
                self.pop()?;
                if op == b's' {
                    self.pop()?;
                }
                if *self.top()? == V::Blob {
                    return Err(self.undecidable(at, op));
                }
                self.maybe_raised.get_or_insert((at as u64, op));
            }
            // APPENDS, SETITEMS: items after the mark, into the value below.
            b'e' | b'u' => {
                self.pop_mark()?;
                if *self.top()? == V::Blob {
                    return Err(self.undecidable(at, op));
                }
                self.maybe_raised.get_or_insert((at as u64, op));
            }
            _ => return Err(ClassPickle::NotBlob),
        }
        Ok(Step::Go)
    }
}

/// A memo key line of PUT/GET: decimal digits (Python's `int()` also takes
/// a sign and spaces; memo keys never have them in real pickles).
fn parse_decimal(s: &[u8]) -> Option<u64> {
    let t = std::str::from_utf8(s).ok()?.trim();
    t.parse::<u64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_class_pickles_zodb_writes_for_a_blob() {
        // ZODB 6 / zodbpickle protocol 3, as found in real Data.fs files.
        assert_eq!(
            class_pickle_is_blob(b"\x80\x03cZODB.blob\nBlob\nq\x00.N."),
            ClassPickle::Blob
        );
        // Python 2 era ZODB (protocol 1).
        assert_eq!(
            class_pickle_is_blob(b"cZODB.blob\nBlob\nq\x01.N."),
            ClassPickle::Blob
        );
        // Protocol 4 (STACK_GLOBAL): zodbpickle cannot read it, so ZODB
        // says no.
        assert_eq!(
            class_pickle_is_blob(
                b"\x80\x04\x95\x14\x00\x00\x00\x00\x00\x00\x00\x8c\tZODB.blob\x94\x8c\x04Blob\x94\x93\x94."
            ),
            ClassPickle::NotBlob
        );
    }

    #[test]
    fn other_classes_tuples_and_broken_pickles_are_not_blobs() {
        for b in [
            &b"\x80\x03cZODB.blob\nBlobFile\nq\x00."[..],
            b"\x80\x03cmy.mod\nMyBlob\nq\x00.",
            // (Blob, newargs): format #2, a tuple, not the class.
            b"\x80\x03cZODB.blob\nBlob\nq\x00)\x86q\x01.",
            // ((module, name), None): persistent class form.
            b"\x80\x03X\t\x00\x00\x00ZODB.blobX\x04\x00\x00\x00Blob\x86N\x86.",
            // calling None raises.
            b"\x80\x03cZODB.blob\nBlob\nq\x00cfoo\nbar\n)R0h\x00.",
            // truncated.
            b"\x80\x03cZODB.blob\nBl",
            b"",
            // protocol 6 does not exist.
            b"\x80\x06cZODB.blob\nBlob\n.",
            // a tuple of the values below a mark.
            b"cZODB.blob\nBlob\n(\x85.",
        ] {
            assert_ne!(class_pickle_is_blob(b), ClassPickle::Blob, "{b:?}");
        }
        assert_eq!(
            class_pickle_is_blob(b"\x80\x03cZODB.blob\nBl"),
            ClassPickle::NeedMore
        );
    }

    #[test]
    fn calling_blob_is_reported_not_guessed() {
        assert!(matches!(
            class_pickle_is_blob(b"\x80\x03cZODB.blob\nBlob\nq\x00)R0h\x00."),
            ClassPickle::Undecidable { opcode: b'R', .. }
        ));
    }

    enum Body<'a> {
        Pickle(&'a [u8]),
        /// Back pointer to the n-th data record written (None: 0).
        Back(Option<usize>),
    }

    /// A Data.fs of one transaction per element, each with its records.
    fn build_fs(txns: &[Vec<(u64, Body)>]) -> (tempfile::TempDir, DataFs) {
        let mut f = b"FS30".to_vec();
        let mut positions = Vec::new();
        for (i, recs) in txns.iter().enumerate() {
            let tid = 0x03ec_0000_0000_0000u64 + i as u64 + 1;
            let tpos = f.len() as u64;
            let mut data = Vec::new();
            for (oid, body) in recs {
                let rpos = tpos + 23 + data.len() as u64;
                positions.push(rpos);
                data.extend_from_slice(&oid.to_be_bytes());
                data.extend_from_slice(&tid.to_be_bytes());
                data.extend_from_slice(&0u64.to_be_bytes());
                data.extend_from_slice(&tpos.to_be_bytes());
                data.extend_from_slice(&0u16.to_be_bytes());
                match body {
                    Body::Pickle(p) => {
                        data.extend_from_slice(&(p.len() as u64).to_be_bytes());
                        data.extend_from_slice(p);
                    }
                    Body::Back(to) => {
                        data.extend_from_slice(&0u64.to_be_bytes());
                        let back = to.map(|n| positions[n]).unwrap_or(0);
                        data.extend_from_slice(&back.to_be_bytes());
                    }
                }
            }
            let tlen = 23 + data.len() as u64;
            f.extend_from_slice(&tid.to_be_bytes());
            f.extend_from_slice(&tlen.to_be_bytes());
            f.extend_from_slice(b" \0\0\0\0\0\0");
            f.extend_from_slice(&data);
            f.extend_from_slice(&tlen.to_be_bytes());
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("Data.fs");
        std::fs::write(&p, f).unwrap();
        let fs = DataFs::open(&p).unwrap();
        (d, fs)
    }

    #[test]
    fn back_pointers_long_class_pickles_and_references_in_a_file() {
        const BLOB: &[u8] = b"\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.";
        // A class pickle longer than the first read: MARK, 600 ints,
        // POP_MARK, then the Blob global.
        let mut long = b"(".to_vec();
        for _ in 0..600 {
            long.extend_from_slice(b"K\x01");
        }
        long.extend_from_slice(b"1cZODB.blob\nBlob\n.N.");
        // An object whose state references a blob (the needle, not a blob).
        const REF: &[u8] = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01(X\x01\x00\x00\x00bq\x02C\x08\x00\x00\x00\x00\x00\x00\x00\x02q\x03cZODB.blob\nBlob\nq\x04\x86q\x05Qu.";
        let (_d, fs) = build_fs(&[
            vec![(1, Body::Pickle(BLOB)), (2, Body::Pickle(REF))],
            vec![(3, Body::Pickle(&long))],
            // undo: back to oid 1's blob record, and an undone creation.
            vec![(1, Body::Back(Some(0))), (4, Body::Back(None))],
            // a chain of two back pointers, and a ZEO-style duplicate.
            vec![(1, Body::Back(Some(3))), (1, Body::Back(Some(0)))],
        ]);
        let r = fs.blob_records(4, fs.size()).unwrap();
        let got: Vec<(u64, u64)> = r
            .records
            .iter()
            .map(|r| (r.oid, r.tid.0 - 0x03ec_0000_0000_0000))
            .collect();
        assert_eq!(got, vec![(1, 1), (3, 2), (1, 3), (1, 4)]);
        assert_eq!((r.transactions, r.data_records, r.end), (4, 7, fs.size()));
        // A range that does not end at a transaction end is refused.
        let e = fs.blob_records(4, fs.size() - 1).unwrap_err();
        assert!(!e.is_damage(), "{e}");
    }

    #[test]
    fn memo_and_marks_follow_cpython() {
        // Blob stored, replaced by other values, fetched back.
        assert_eq!(
            class_pickle_is_blob(b"cZODB.blob\nBlob\np0\n0(K\x01K\x02t0g0\n."),
            ClassPickle::Blob
        );
        // POP of a mark sitting at the top pops the mark, not the value;
        // STOP may pop below a mark (no fence in zodbpickle's unpickler).
        assert_eq!(
            class_pickle_is_blob(b"cZODB.blob\nBlob\n(."),
            ClassPickle::Blob,
        );
        assert_eq!(
            class_pickle_is_blob(b"cZODB.blob\nBlob\n(0."),
            ClassPickle::Blob,
        );
        assert_eq!(
            class_pickle_is_blob(b"(cZODB.blob\nBlob\n1cZODB.blob\nBlob\n."),
            ClassPickle::Blob
        );
    }
}
