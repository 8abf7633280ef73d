//! Read-only access to a ZODB FileStorage file (`Data.fs`, SPEC §5).
//!
//! Owns: opening and checking the magic, decoding transaction and data
//! records ([`layout`]), forward and backward iteration ([`reader`]),
//! fstest-like verification ([`verify`]) and the valid prefix / cut position
//! computations that mirror what ZODB's read-only `FileStorage` open does
//! ([`cut`]), and ZODB's `Data.fs.index` (oid -> newest record position),
//! read, written and built from the file ([`index`], over the pickle subset
//! in [`pickle`]).
//!
//! Must not: write to the Data.fs (the `cut` command truncates, not this
//! module; [`index`] writes only the `.index` beside it), trust any length before checking it against the file size (with
//! overflow), allocate from a length read in the file, or panic on any
//! input. Every malformed byte sequence becomes an [`Error`] carrying the
//! path and the offset where the damage starts.
//!
//! Offsets are `u64` byte positions from the start of the file; TIDs are
//! [`Tid`] everywhere.

pub mod blobrecords;
pub mod cut;
pub mod extension;
pub mod index;
pub mod layout;
pub mod pickle;
pub mod reader;
pub mod verify;

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::tid::Tid;

pub use cut::{CoherentCut, CutPosition, ValidPrefix, Walk};
pub use reader::{BackwardIter, ForwardIter};
pub use verify::{TxnSummary, VerifyReport};

/// A failure reading a Data.fs: where, and what.
#[derive(Debug)]
pub struct Error {
    pub path: PathBuf,
    /// Byte offset where the problem starts (for damage: the first byte a
    /// reader cannot trust).
    pub offset: u64,
    pub kind: ErrorKind,
}

/// I/O failure and damage are kept apart: the first may go away on retry,
/// the second is in the bytes.
#[derive(Debug)]
pub enum ErrorKind {
    Io(io::Error),
    /// The file does not start with a FileStorage magic.
    BadMagic {
        found: Vec<u8>,
    },
    /// A record announces more bytes than the file holds.
    Truncated {
        needed: u64,
        available: u64,
        what: &'static str,
    },
    Corrupt(Corruption),
    /// An offset given by a caller (or by an index file) that is not where
    /// a transaction ends; nothing is wrong with the bytes.
    NotTransactionEnd {
        what: &'static str,
    },
}

/// The ways a structurally readable record can be wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Corruption {
    /// A status byte that is not ASCII: ZODB fails decoding it.
    NonAsciiStatus(u8),
    /// An ASCII status other than ' ', 'p', 'u', 'c'.
    InvalidStatus(u8),
    /// A transaction left with the checkpoint status: voted, never finished.
    Checkpoint,
    /// tlen smaller than the header plus user, description and extension.
    TxnShorterThanHeader { tlen: u64, header_len: u64 },
    /// The redundant trailing length differs from the header's tlen.
    RedundantLength { header: u64, trailer: u64 },
    /// A transaction whose tid is not above the previous one's.
    TidNotIncreasing { tid: Tid, previous: Tid },
    /// A TID of 0xffffffffffffffff: ZODB's open stops before it.
    ReservedTid,
    /// A data record that ends after its transaction's data records.
    DataRecordCrossesTxn { record_end: u64, txn_end: u64 },
    /// A data record whose tloc is not its transaction's offset.
    DataRecordWrongTxn { tloc: u64, txn_pos: u64 },
    /// A data record whose tid is not its transaction's tid.
    DataRecordWrongTid { tid: Tid, txn_tid: Tid },
    /// A data record with a version (unsupported since ZODB 3.9).
    VersionLength(u16),
    /// A previous-record pointer not below the record.
    PrevPointer { prev: u64 },
    /// A back pointer not below the record.
    BackPointer { back: u64 },
    /// The backward walk met a trailing length that leads nowhere valid.
    BackwardChain { tlen: u64 },
    /// A transaction offset inside the 4-byte magic.
    OffsetInMagic,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::NonAsciiStatus(b) => {
                write!(f, "transaction status byte 0x{b:02x} is not ascii")
            }
            Corruption::InvalidStatus(b) => write!(
                f,
                "invalid transaction status {:?} (expected ' ', 'p', 'u' or 'c')",
                *b as char
            ),
            Corruption::Checkpoint => write!(
                f,
                "transaction has the checkpoint status 'c' (voted but never finished)"
            ),
            Corruption::TxnShorterThanHeader { tlen, header_len } => write!(
                f,
                "transaction length {tlen} is shorter than its header ({header_len} bytes)"
            ),
            Corruption::RedundantLength { header, trailer } => write!(
                f,
                "redundant transaction length {trailer} differs from the header's {header}"
            ),
            Corruption::TidNotIncreasing { tid, previous } => write!(
                f,
                "time-stamp reduction: tid {} is not above the previous {}",
                tid.hex(),
                previous.hex()
            ),
            Corruption::ReservedTid => write!(
                f,
                "transaction has tid ffffffffffffffff, which zodb never reads"
            ),
            Corruption::DataRecordCrossesTxn {
                record_end,
                txn_end,
            } => write!(
                f,
                "data record ends at {record_end}, beyond its transaction's data end {txn_end}"
            ),
            Corruption::DataRecordWrongTxn { tloc, txn_pos } => write!(
                f,
                "data record points to transaction {tloc}, not to its transaction {txn_pos}"
            ),
            Corruption::DataRecordWrongTid { tid, txn_tid } => write!(
                f,
                "data record tid {} differs from its transaction's {}",
                tid.hex(),
                txn_tid.hex()
            ),
            Corruption::VersionLength(v) => {
                write!(f, "data record has version length {v} (must be 0)")
            }
            Corruption::PrevPointer { prev } => {
                write!(f, "data record's previous pointer {prev} is not below it")
            }
            Corruption::BackPointer { back } => {
                write!(f, "data record's back pointer {back} is not below it")
            }
            Corruption::BackwardChain { tlen } => write!(
                f,
                "trailing transaction length {tlen} does not lead to a matching transaction header"
            ),
            Corruption::OffsetInMagic => write!(
                f,
                "offset is inside the file magic; transactions start at offset 4"
            ),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: offset {}: ", self.path.display(), self.offset)?;
        match &self.kind {
            ErrorKind::Io(e) => write!(
                f,
                "i/o error: {e}; check that the file is readable and the disk healthy"
            ),
            ErrorKind::BadMagic { found } => write!(
                f,
                "not a FileStorage file (magic {:?}, expected \"FS30\" or \"FS21\"); \
                 check the path points at a Data.fs",
                String::from_utf8_lossy(found)
            ),
            ErrorKind::Truncated {
                needed,
                available,
                what,
            } => write!(
                f,
                "truncated {what}: needs {needed} bytes, {available} left in the file; \
                 the file ends with a partial record: cut it before this offset \
                 (tidstorage cut) or restore it from a backup"
            ),
            ErrorKind::NotTransactionEnd { what } => {
                write!(f, "{what} is not the end of a transaction in this file")
            }
            ErrorKind::Corrupt(c) => write!(
                f,
                "{c}; the file is damaged from here: cut it before this offset \
                 (tidstorage cut) if this is its tail, or restore it from a backup"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl Error {
    /// True for damage in the bytes, false for I/O failure.
    pub fn is_damage(&self) -> bool {
        !matches!(
            self.kind,
            ErrorKind::Io(_) | ErrorKind::NotTransactionEnd { .. }
        )
    }
}

/// A transaction header read from the file, already checked to fit in it:
/// `tlen >= header_len()` and `end() <= size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnHeader {
    pub pos: u64,
    pub tid: Tid,
    pub tlen: u64,
    pub status: u8,
    pub user_len: u16,
    pub desc_len: u16,
    pub ext_len: u16,
}

impl TxnHeader {
    /// Offset just after the redundant length: where the next transaction
    /// starts.
    pub fn end(&self) -> u64 {
        // Read headers satisfy pos + tlen + 8 <= size; saturating only
        // protects hand-built ones.
        self.pos
            .saturating_add(self.tlen)
            .saturating_add(layout::TXN_TRAILER_LEN)
    }

    /// Header plus user, description and extension.
    pub fn header_len(&self) -> u64 {
        layout::TXN_HEADER_LEN as u64
            + self.user_len as u64
            + self.desc_len as u64
            + self.ext_len as u64
    }

    /// Offset of the redundant trailing length (end of the data records).
    pub fn data_end(&self) -> u64 {
        self.pos.saturating_add(self.tlen)
    }

    /// Offset of the first data record.
    pub fn data_start(&self) -> u64 {
        self.pos.saturating_add(self.header_len())
    }
}

/// An open Data.fs. Reads never move a shared cursor, so `&self` suffices.
#[derive(Debug)]
pub struct DataFs {
    file: File,
    path: PathBuf,
    size: u64,
    magic: [u8; 4],
    /// One byte read as another value (see [`DataFs::reading_byte_as`]).
    patch: Option<(u64, u8)>,
    /// Set during [`DataFs::sequential`] only.
    window: Mutex<Option<Window>>,
}

/// Bytes a sequential scan reads at once ([`DataFs::sequential`]).
const WINDOW: usize = 64 << 10;
/// A read further than this after the previous one goes to the file
/// instead of refilling the window.
const JUMP: u64 = 4 << 10;

/// The read-ahead window of a sequential scan of `[lo, hi)`: `buf` holds
/// the file's bytes from `at`; `next` is where the last read ended.
#[derive(Debug)]
struct Window {
    lo: u64,
    hi: u64,
    at: u64,
    buf: Vec<u8>,
    next: u64,
}

impl DataFs {
    /// Opens read-only and checks the magic. An empty (0-byte) file is
    /// refused although ZODB's read-only open reports it as size 4: there is
    /// no offset 4 to cut at in it.
    pub fn open(path: &Path) -> Result<DataFs, Error> {
        let err = |offset, kind| Error {
            path: path.to_path_buf(),
            offset,
            kind,
        };
        let file = File::open(path).map_err(|e| err(0, ErrorKind::Io(e)))?;
        let size = file.metadata().map_err(|e| err(0, ErrorKind::Io(e)))?.len();
        let mut magic = [0u8; 4];
        if size < layout::MAGIC_LEN {
            let mut found = vec![0u8; size as usize];
            file.read_exact_at(&mut found, 0)
                .map_err(|e| err(0, ErrorKind::Io(e)))?;
            return Err(err(
                0,
                if size == 0 {
                    ErrorKind::Truncated {
                        needed: layout::MAGIC_LEN,
                        available: 0,
                        what: "file magic",
                    }
                } else {
                    ErrorKind::BadMagic { found }
                },
            ));
        }
        file.read_exact_at(&mut magic, 0)
            .map_err(|e| err(0, ErrorKind::Io(e)))?;
        if magic != layout::MAGIC_FS30 && magic != layout::MAGIC_FS21 {
            return Err(err(
                0,
                ErrorKind::BadMagic {
                    found: magic.to_vec(),
                },
            ));
        }
        Ok(DataFs {
            file,
            path: path.to_path_buf(),
            size,
            magic,
            patch: None,
            window: Mutex::new(None),
        })
    }

    /// This file read as if the byte at `pos` were `value`: an appended
    /// standby whose first new transaction is hidden behind status `c`
    /// until published, read as it will be then. Never written.
    pub fn reading_byte_as(mut self, pos: u64, value: u8) -> DataFs {
        self.patch = Some((pos, value));
        self
    }

    /// Runs `f`, a forward scan of `[lo, hi)`, with its small reads served
    /// from a read-ahead window: where records are small (most of a
    /// database's transactions), one 64 KiB read replaces a hundred reads
    /// of 23 or 42 bytes; where the scan jumps over large records, reads go
    /// to the file as usual. Only for bytes that cannot change while `f`
    /// runs: `hi` must not be beyond the end of the committed transactions
    /// the caller knows of (a transaction in progress rewrites its status
    /// byte). Reads outside `[lo, hi)` are not affected.
    pub(crate) fn sequential<R>(&self, lo: u64, hi: u64, f: impl FnOnce() -> R) -> R {
        struct Reset<'a>(&'a DataFs);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                *self.0.window() = None;
            }
        }
        *self.window() = Some(Window {
            lo,
            hi: hi.min(self.size),
            at: lo,
            buf: Vec::new(),
            next: lo,
        });
        let _reset = Reset(self);
        f()
    }

    fn window(&self) -> MutexGuard<'_, Option<Window>> {
        // The window is a cache: one left by a panicking thread is as good.
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves a read from the sequential window when it can; false when
    /// the read must go to the file.
    fn read_windowed(&self, pos: u64, buf: &mut [u8]) -> bool {
        let len = buf.len() as u64;
        if len > (WINDOW / 4) as u64 {
            return false;
        }
        let mut guard = self.window();
        let Some(w) = guard.as_mut() else {
            return false;
        };
        if pos < w.lo || pos + len > w.hi {
            return false;
        }
        let inside = pos >= w.at && pos + len <= w.at + w.buf.len() as u64;
        if !inside {
            // A jump over a record of more than a few KiB: reading the
            // window would copy more than it saves; read just what is
            // asked.
            if pos >= w.next + JUMP || pos < w.next.saturating_sub(WINDOW as u64) {
                w.next = pos + len;
                return false;
            }
            let n = (w.hi - pos).min(WINDOW as u64) as usize;
            w.buf.resize(n, 0);
            if self.file.read_exact_at(&mut w.buf, pos).is_err() {
                // Let the plain read say what is wrong.
                w.buf.clear();
                return false;
            }
            w.at = pos;
        }
        let i = (pos - w.at) as usize;
        buf.copy_from_slice(&w.buf[i..i + buf.len()]);
        w.next = pos + len;
        true
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File length when it was opened; everything beyond is ignored.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The open file, for copying its bytes (backup): the same file the
    /// positions were computed on, even if a pack renamed another over it.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// `FS30` or `FS21`.
    pub fn magic(&self) -> [u8; 4] {
        self.magic
    }

    pub(crate) fn error(&self, offset: u64, kind: ErrorKind) -> Error {
        Error {
            path: self.path.clone(),
            offset,
            kind,
        }
    }

    pub(crate) fn corrupt(&self, offset: u64, c: Corruption) -> Error {
        self.error(offset, ErrorKind::Corrupt(c))
    }

    /// Reads `buf.len()` bytes at `pos`, refusing (as `Truncated`, reported
    /// at `pos`) anything past the size seen at open.
    pub(crate) fn read_at(
        &self,
        pos: u64,
        buf: &mut [u8],
        what: &'static str,
    ) -> Result<(), Error> {
        let available = self.size.saturating_sub(pos);
        if (buf.len() as u64) > available {
            return Err(self.error(
                pos,
                ErrorKind::Truncated {
                    needed: buf.len() as u64,
                    available,
                    what,
                },
            ));
        }
        if !self.read_windowed(pos, buf) {
            self.file
                .read_exact_at(buf, pos)
                .map_err(|e| self.error(pos, ErrorKind::Io(e)))?;
        }
        if let Some((at, value)) = self.patch {
            if (pos..pos + buf.len() as u64).contains(&at) {
                buf[(at - pos) as usize] = value;
            }
        }
        Ok(())
    }

    pub(crate) fn read_u64_at(&self, pos: u64, what: &'static str) -> Result<u64, Error> {
        let mut b = [0u8; 8];
        self.read_at(pos, &mut b, what)?;
        Ok(u64::from_be_bytes(b))
    }

    pub(crate) fn read_raw_txn_header(&self, pos: u64) -> Result<layout::RawTxnHeader, Error> {
        let mut b = [0u8; layout::TXN_HEADER_LEN];
        self.read_at(pos, &mut b, "transaction header")?;
        Ok(layout::RawTxnHeader::decode(&b))
    }

    pub(crate) fn read_raw_data_header(&self, pos: u64) -> Result<layout::RawDataHeader, Error> {
        let mut b = [0u8; layout::DATA_HEADER_LEN];
        self.read_at(pos, &mut b, "data record header")?;
        Ok(layout::RawDataHeader::decode(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_reads_give_the_file_bytes_dense_sparse_and_outside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Data.fs");
        let mut data: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
        data[..4].copy_from_slice(&layout::MAGIC_FS30);
        std::fs::write(&path, &data).unwrap();
        let df = DataFs::open(&path).unwrap();
        let (lo, hi) = (1000u64, 500_000u64);
        // Small steps (served from the window), jumps over "large
        // records", a step back, reads crossing hi and outside [lo, hi).
        let mut reads = Vec::new();
        let mut pos = lo;
        while pos + 42 < hi {
            reads.push((pos, 23 + (pos % 20) as usize));
            pos += if pos % 7 == 0 {
                100_000
            } else {
                300 + pos % 900
            };
        }
        reads.extend([
            (lo + 10, 23),
            (hi - 10, 23),
            (10, 8),
            (550_000, 42),
            (lo, 20_000),
        ]);
        df.sequential(lo, hi, || {
            for &(p, n) in &reads {
                let mut b = vec![0u8; n];
                df.read_at(p, &mut b, "test").unwrap();
                assert_eq!(b, &data[p as usize..p as usize + n], "read of {n} at {p}");
            }
            let mut past = [0u8; 8];
            assert!(df
                .read_at(data.len() as u64 - 4, &mut past, "test")
                .is_err());
        });
        assert!(df.window().is_none(), "the window ends with the scan");
    }

    #[test]
    fn error_messages_name_the_file_the_offset_and_what_to_do() {
        let e = Error {
            path: PathBuf::from("/srv/Data.fs"),
            offset: 921,
            kind: ErrorKind::Corrupt(Corruption::Checkpoint),
        };
        let msg = e.to_string();
        assert!(msg.starts_with("/srv/Data.fs: offset 921: transaction has the checkpoint"));
        assert!(msg.contains("; the file is damaged from here: cut it before this offset"));
        assert_eq!(
            msg,
            msg.to_lowercase().replace("/srv/data.fs", "/srv/Data.fs")
        );
        assert!(e.is_damage());
    }

    #[test]
    fn hand_built_headers_never_overflow() {
        let h = TxnHeader {
            pos: u64::MAX - 1,
            tid: Tid(1),
            tlen: u64::MAX,
            status: b' ',
            user_len: 1,
            desc_len: 1,
            ext_len: 1,
        };
        assert_eq!(
            (h.end(), h.data_end(), h.data_start()),
            (u64::MAX, u64::MAX, u64::MAX)
        );
    }
}
