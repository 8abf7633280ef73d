//! ZODB's `Data.fs.index`: the map oid -> offset of the oid's newest data
//! record, for a prefix `[4, pos)` of the Data.fs (SPEC §5 "The index").
//!
//! Owns: the in-memory map ([`FsIndex`]), its file format (read with
//! [`FsIndex::load`], written with [`FsIndex::save`], byte for byte what
//! ZODB's `fsIndex.save(pos, path)` writes), building it from the file
//! ([`build_index`], from scratch or extending a shorter index), the
//! check ZODB makes before trusting an index ([`zodb_accepts`]) and the
//! choice, for a cut, between extending, fixing up or rebuilding an existing
//! index ([`index_for_prefix`]).
//!
//! Must not: write the Data.fs, trust an index file (every check failure is
//! a typed [`IndexError`] with the file offset, or a reason to rebuild), or
//! index a transaction that did not pass [`DataFs::verify_transaction`].
//!
//! File format (see `ZODB/fsIndex.py`): consecutive protocol-3 pickles: the
//! integer `pos`; then, one per "bucket" of oids sharing their 6 high bytes,
//! in increasing prefix order, the pair `(prefix: 6 bytes, data: bytes)`
//! where `data` is the bucket's 2-byte low oid halves, increasing, then the
//! matching 6-byte big-endian record offsets; then `None`. Bytes after the
//! `None` are ignored, as ZODB does.
//!
//! What the map holds, like ZODB's `read_index`: every data record of a
//! transaction not marked undone (`u`) sets its oid to its offset, so an oid
//! whose creation was undone (a record with a zero back pointer) stays in
//! the index. Nothing is ever removed by a scan; only a cut removes oids
//! created after the cut position.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::layout::{
    RawDataHeader, FIRST_TXN, STATUS_DONE, STATUS_PACKED, STATUS_UNDONE, TXN_TRAILER_LEN,
};
use super::pickle::{PickleError, PickleErrorKind, PickleReader, PickleWriter, Value};
use super::{Corruption, DataFs, Error, ErrorKind};
use crate::fsutil;
use crate::tid::Tid;

/// Offsets are stored in 6 bytes, as ZODB does (256 TiB).
pub const MAX_POSITION: u64 = (1 << 48) - 1;

/// Entries per bucket: one per possible 2-byte suffix.
const BUCKET_CAPACITY: usize = 1 << 16;

/// The largest bucket `data` a valid index holds.
const MAX_BUCKET_BYTES: usize = BUCKET_CAPACITY * 8;

/// Oids sharing their 6 high bytes, sorted by their 2 low bytes. Two
/// parallel vectors: 8 bytes per oid, like ZODB's fsBucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Bucket {
    suffixes: Vec<u16>,
    positions: Vec<[u8; 6]>,
}

fn pos6(pos: u64) -> [u8; 6] {
    let b = pos.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

fn pos_from6(b: &[u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// oid -> offset of its newest data record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsIndex {
    buckets: BTreeMap<u64, Bucket>,
    len: usize,
}

/// A failure reading an index file: where, and what.
#[derive(Debug)]
pub struct IndexError {
    pub path: PathBuf,
    /// Offset in the index file where the problem starts.
    pub offset: u64,
    pub kind: IndexErrorKind,
}

#[derive(Debug)]
pub enum IndexErrorKind {
    Io(io::Error),
    /// Not a pickle stream fsIndex writes (bad opcode, truncated, ...).
    Pickle(PickleErrorKind),
    /// A pickle of the wrong shape for its place in the file.
    Unexpected {
        expected: &'static str,
    },
    /// A bucket whose data is not a whole number of 8-byte entries.
    BucketLength(usize),
    /// Buckets or oids inside a bucket not strictly increasing.
    Unsorted,
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: offset {}: ", self.path.display(), self.offset)?;
        match &self.kind {
            IndexErrorKind::Io(e) => write!(f, "i/o error: {e}")?,
            IndexErrorKind::Pickle(k) => write!(f, "not a ZODB index: {k}")?,
            IndexErrorKind::Unexpected { expected } => {
                write!(f, "not a ZODB index: expected {expected}")?
            }
            IndexErrorKind::BucketLength(n) => write!(
                f,
                "index bucket of {n} bytes is not a whole number of 8-byte entries"
            )?,
            IndexErrorKind::Unsorted => write!(f, "index oids are not in increasing order")?,
        }
        write!(
            f,
            "; the index is only a cache: remove it and ZODB rebuilds it by reading the Data.fs"
        )
    }
}

impl std::error::Error for IndexError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            IndexErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl FsIndex {
    pub fn new() -> FsIndex {
        FsIndex::default()
    }

    /// Number of oids.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The offset of `oid`'s newest data record.
    pub fn get(&self, oid: u64) -> Option<u64> {
        let b = self.buckets.get(&(oid >> 16))?;
        let i = b.suffixes.binary_search(&(oid as u16)).ok()?;
        Some(pos_from6(&b.positions[i]))
    }

    /// Sets `oid` to `pos` (at most [`MAX_POSITION`]: higher bits are
    /// dropped, as ZODB does; [`build_index`] refuses such files).
    pub fn insert(&mut self, oid: u64, pos: u64) {
        debug_assert!(pos <= MAX_POSITION);
        let b = self.buckets.entry(oid >> 16).or_default();
        let suffix = oid as u16;
        // Oids are mostly allocated in increasing order: append first.
        if b.suffixes.last().map_or(true, |&l| l < suffix) {
            b.suffixes.push(suffix);
            b.positions.push(pos6(pos));
            self.len += 1;
            return;
        }
        match b.suffixes.binary_search(&suffix) {
            Ok(i) => b.positions[i] = pos6(pos),
            Err(i) => {
                b.suffixes.insert(i, suffix);
                b.positions.insert(i, pos6(pos));
                self.len += 1;
            }
        }
    }

    /// Removes `oid`; returns its offset if it was present.
    pub fn remove(&mut self, oid: u64) -> Option<u64> {
        let prefix = oid >> 16;
        let b = self.buckets.get_mut(&prefix)?;
        let i = b.suffixes.binary_search(&(oid as u16)).ok()?;
        b.suffixes.remove(i);
        let p = b.positions.remove(i);
        if b.suffixes.is_empty() {
            // ZODB never saves an empty bucket; neither do we.
            self.buckets.remove(&prefix);
        }
        self.len -= 1;
        Some(pos_from6(&p))
    }

    /// (oid, offset) in increasing oid order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.buckets.iter().flat_map(|(prefix, b)| {
            b.suffixes
                .iter()
                .zip(&b.positions)
                .map(move |(s, p)| ((prefix << 16) | *s as u64, pos_from6(p)))
        })
    }

    /// Reads an index file written by ZODB (or by [`Self::save`]): the
    /// position it covers and the map.
    pub fn load(path: &Path) -> Result<(u64, FsIndex), IndexError> {
        let file = File::open(path).map_err(|e| IndexError {
            path: path.to_path_buf(),
            offset: 0,
            kind: IndexErrorKind::Io(e),
        })?;
        let mut r = PickleReader::new(BufReader::with_capacity(1 << 20, file), MAX_BUCKET_BYTES);
        let err = |offset, kind| IndexError {
            path: path.to_path_buf(),
            offset,
            kind,
        };
        let from_pickle = |e: PickleError| IndexError {
            path: path.to_path_buf(),
            offset: e.offset,
            kind: match e.kind {
                PickleErrorKind::Io(io) => IndexErrorKind::Io(io),
                k => IndexErrorKind::Pickle(k),
            },
        };
        let pos = match r.read_value().map_err(from_pickle)? {
            Value::Int(n) => n,
            _ => {
                return Err(err(
                    0,
                    IndexErrorKind::Unexpected {
                        expected: "the covered position (an integer) first",
                    },
                ))
            }
        };
        let mut index = FsIndex::new();
        let mut last_prefix: Option<u64> = None;
        loop {
            let at = r.offset();
            let (prefix, data) = match r.read_value().map_err(from_pickle)? {
                Value::None => break,
                Value::Pair(a, b) => match (*a, *b) {
                    (Value::Bytes(p), Value::Bytes(d)) if p.len() == 6 => (p, d),
                    _ => {
                        return Err(err(
                            at,
                            IndexErrorKind::Unexpected {
                                expected: "a pair (6-byte oid prefix, bucket bytes)",
                            },
                        ))
                    }
                },
                _ => {
                    return Err(err(
                        at,
                        IndexErrorKind::Unexpected {
                            expected: "a bucket pair or the final None",
                        },
                    ))
                }
            };
            if data.len() % 8 != 0 {
                return Err(err(at, IndexErrorKind::BucketLength(data.len())));
            }
            let prefix = u64::from_be_bytes([
                0, 0, prefix[0], prefix[1], prefix[2], prefix[3], prefix[4], prefix[5],
            ]);
            if last_prefix.is_some_and(|l| l >= prefix) {
                return Err(err(at, IndexErrorKind::Unsorted));
            }
            last_prefix = Some(prefix);
            let n = data.len() / 8;
            if n == 0 {
                continue;
            }
            let (keys, values) = data.split_at(2 * n);
            let suffixes: Vec<u16> = keys
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            if suffixes.windows(2).any(|w| w[0] >= w[1]) {
                return Err(err(at, IndexErrorKind::Unsorted));
            }
            let positions: Vec<[u8; 6]> = values
                .chunks_exact(6)
                .map(|c| [c[0], c[1], c[2], c[3], c[4], c[5]])
                .collect();
            index.len += n;
            index.buckets.insert(
                prefix,
                Bucket {
                    suffixes,
                    positions,
                },
            );
        }
        Ok((pos, index))
    }

    /// Only the position an index file covers (its first pickle): cheap,
    /// for plans.
    pub fn read_pos(path: &Path) -> Result<u64, IndexError> {
        let file = File::open(path).map_err(|e| IndexError {
            path: path.to_path_buf(),
            offset: 0,
            kind: IndexErrorKind::Io(e),
        })?;
        let mut r = PickleReader::new(BufReader::new(file), MAX_BUCKET_BYTES);
        match r.read_value() {
            Ok(Value::Int(n)) => Ok(n),
            Ok(_) => Err(IndexError {
                path: path.to_path_buf(),
                offset: 0,
                kind: IndexErrorKind::Unexpected {
                    expected: "the covered position (an integer) first",
                },
            }),
            Err(e) => Err(IndexError {
                path: path.to_path_buf(),
                offset: e.offset,
                kind: match e.kind {
                    PickleErrorKind::Io(io) => IndexErrorKind::Io(io),
                    k => IndexErrorKind::Pickle(k),
                },
            }),
        }
    }

    /// The bytes of the index file for `pos`, as ZODB's `fsIndex.save`.
    pub fn write_to(&self, pos: u64, w: impl Write) -> io::Result<()> {
        let mut p = PickleWriter::new(w);
        p.write_value(&Value::Int(pos))?;
        let mut data = Vec::with_capacity(MAX_BUCKET_BYTES);
        for (prefix, b) in &self.buckets {
            data.clear();
            for s in &b.suffixes {
                data.extend_from_slice(&s.to_be_bytes());
            }
            for q in &b.positions {
                data.extend_from_slice(q);
            }
            p.write_bytes_pair(&pos6(*prefix), &data)?;
        }
        p.write_value(&Value::None)?;
        p.into_inner().flush()
    }

    /// Writes the index file for `pos` durably: temp file beside `path`,
    /// fsync, rename over `path`, fsync of the directory.
    pub fn save(&self, pos: u64, path: &Path) -> io::Result<()> {
        self.save_owned_like(pos, path, None)
    }

    /// [`Self::save`], giving the index the owner, group and permission
    /// bits (without execute) of `like` (the Data.fs), so the ZEO server's
    /// user can read an index written by root.
    pub fn save_owned_like(&self, pos: u64, path: &Path, like: Option<&Path>) -> io::Result<()> {
        let mut tmp = fsutil::TempFile::beside(path)?;
        self.write_to(pos, BufWriter::with_capacity(1 << 20, tmp.file()))?;
        if let Some(like) = like {
            fsutil::copy_owner_and_mode(like, tmp.file())?;
        }
        tmp.persist(path)
    }
}

/// Walks the transactions of `[from, upto)`, verifying each one like
/// fstest (status, lengths, records, tids strictly increasing from the
/// transaction before `from`), and hands every data record of a
/// transaction not marked undone to `visit(offset, header)`.
fn scan(
    df: &DataFs,
    from: u64,
    upto: u64,
    progress: &mut dyn FnMut(u64, u64),
    visit: &mut dyn FnMut(u64, &RawDataHeader),
) -> Result<(), Error> {
    if upto > df.size() {
        return Err(df.error(
            upto,
            ErrorKind::NotTransactionEnd {
                what: "the index end, beyond the end of the file,",
            },
        ));
    }
    let mut previous: Option<Tid> = None;
    if from > FIRST_TXN {
        // Proves `from` ends a transaction, and gives its tid for the order
        // check.
        let h = df.txn_before(from).map_err(|e| {
            if e.is_damage() {
                df.error(
                    from,
                    ErrorKind::NotTransactionEnd {
                        what: "the position the existing index covers",
                    },
                )
            } else {
                e
            }
        })?;
        previous = Some(h.tid);
    }
    // `upto` ends a committed transaction (the caller's valid end or cut):
    // the bytes before it do not change during the scan.
    df.sequential(from, upto, || {
        scan_forward(df, from, upto, previous, progress, visit)
    })
}

fn scan_forward(
    df: &DataFs,
    from: u64,
    upto: u64,
    mut previous: Option<Tid>,
    progress: &mut dyn FnMut(u64, u64),
    visit: &mut dyn FnMut(u64, &RawDataHeader),
) -> Result<(), Error> {
    let mut pos = from;
    while pos < upto {
        let h = df.read_txn_header(pos)?;
        if h.end() > upto {
            return Err(df.error(
                upto,
                ErrorKind::NotTransactionEnd {
                    what: "the requested index end",
                },
            ));
        }
        if let Some(p) = previous {
            if h.tid <= p {
                return Err(df.corrupt(
                    pos,
                    Corruption::TidNotIncreasing {
                        tid: h.tid,
                        previous: p,
                    },
                ));
            }
        }
        df.verify_transaction_visit(&h, visit)?;
        previous = Some(h.tid);
        pos = h.end();
        progress(pos, upto);
    }
    Ok(())
}

/// The index of the prefix `[4, upto)` of `df`. With `start = Some((pos,
/// index))`, `index` is taken as the index of `[4, pos)` (the caller checks
/// it, see [`index_for_prefix`]) and only `[pos, upto)` is read.
///
/// `upto` must end a transaction; every transaction read is verified like
/// fstest (damage is an error, never indexed). `progress(done, upto)` is
/// called after each transaction.
pub fn build_index(
    df: &DataFs,
    upto: u64,
    start: Option<(u64, FsIndex)>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<FsIndex, Error> {
    if df.size() > MAX_POSITION {
        return Err(df.error(
            MAX_POSITION,
            ErrorKind::NotTransactionEnd {
                what: "a file of 256 TiB or more (beyond what ZODB's index holds)",
            },
        ));
    }
    let (from, mut index) = start.unwrap_or((FIRST_TXN, FsIndex::new()));
    if from > upto {
        return Err(df.error(
            from,
            ErrorKind::NotTransactionEnd {
                what: "the existing index's position, after the requested end,",
            },
        ));
    }
    scan(df, from, upto, progress, &mut |pos, d| {
        index.insert(d.oid, pos)
    })?;
    Ok(index)
}

/// Mirrors ZODB's `FileStorage._check_sanity(index, pos)`: true when ZODB's
/// open would use `index` for `pos` instead of rebuilding it (it still
/// extends it over anything after `pos`). ZODB checks little: `pos >= 100`,
/// the file at least that long, and the first five data records of the last
/// transaction (not undone, not empty) before `pos` present in the index at
/// their offsets.
pub fn zodb_accepts(df: &DataFs, pos: u64, index: &FsIndex) -> bool {
    const MAX_CHECKED: usize = 5;
    if pos < 100 || df.size() < pos {
        return false;
    }
    let mut pos = pos;
    // Each step moves `pos` back by at least a trailer: bounded.
    loop {
        // After the first transaction, ZODB's seek before the magic fails.
        let Some(trailer) = pos.checked_sub(TXN_TRAILER_LEN).filter(|&t| t >= FIRST_TXN) else {
            return false;
        };
        let Ok(tl) = df.read_u64_at(trailer, "redundant transaction length") else {
            return false;
        };
        let Some(start) = pos
            .checked_sub(TXN_TRAILER_LEN)
            .and_then(|p| p.checked_sub(tl))
        else {
            return false;
        };
        if start < FIRST_TXN {
            return false;
        }
        pos = start;
        let Ok(raw) = df.read_raw_txn_header(pos) else {
            return false;
        };
        if raw.tlen != tl {
            return false;
        }
        if raw.status == STATUS_UNDONE {
            continue;
        }
        if raw.status != STATUS_DONE && raw.status != STATUS_PACKED {
            return false;
        }
        if tl < raw.header_len() {
            return false;
        }
        let tend = pos + tl;
        let mut opos = pos + raw.header_len();
        if opos == tend {
            continue;
        }
        let mut checked = 0;
        while opos < tend && checked < MAX_CHECKED {
            let Ok(d) = df.read_raw_data_header(opos) else {
                return false;
            };
            let Some(end) = d.record_len().and_then(|l| opos.checked_add(l)) else {
                return false;
            };
            if end > tend || d.tloc != pos {
                return false;
            }
            if index.get(d.oid) != Some(opos) {
                return false;
            }
            checked += 1;
            opos = end;
        }
        return true;
    }
}

/// Checks that the record at `at` is a data record of `oid` inside a
/// transaction ZODB indexes (not undone), below `limit`.
fn is_record_of(df: &DataFs, at: u64, oid: u64, limit: u64) -> Result<bool, Error> {
    if !(FIRST_TXN..limit).contains(&at) {
        return Ok(false);
    }
    let d = match df.read_raw_data_header(at) {
        Ok(d) => d,
        Err(e) if e.is_damage() => return Ok(false),
        Err(e) => return Err(e),
    };
    if d.oid != oid || d.tloc >= at {
        return Ok(false);
    }
    let h = match df.read_txn_header(d.tloc) {
        Ok(h) => h,
        Err(e) if e.is_damage() => return Ok(false),
        Err(e) => return Err(e),
    };
    let inside = d
        .record_len()
        .and_then(|l| at.checked_add(l))
        .is_some_and(|end| at >= h.data_start() && end <= h.data_end());
    Ok(inside && h.tid.0 == d.tid && (h.status == STATUS_DONE || h.status == STATUS_PACKED))
}

/// How many index entries [`check_existing`] reads back from the file.
const SPOT_CHECKS: usize = 64;

/// Is `index` plausibly the index of `[4, pos)`? ZODB's own check, every
/// offset below `pos`, and a sample of entries pointing at a record of
/// their oid. `Err(reason)` when not; the caller rebuilds.
fn check_existing(df: &DataFs, pos: u64, index: &FsIndex) -> Result<Result<(), String>, Error> {
    if pos == FIRST_TXN {
        return Ok(if index.is_empty() {
            Ok(())
        } else {
            Err("it covers no transaction but lists oids".into())
        });
    }
    if pos >= 100 && !zodb_accepts(df, pos, index) {
        return Ok(Err(
            "its last entries do not match the file (ZODB would ignore it too)".into(),
        ));
    }
    if let Some((oid, p)) = index.iter().find(|&(_, p)| p >= pos) {
        return Ok(Err(format!(
            "oid 0x{oid:016x} points at offset {p}, past the {pos} bytes it covers"
        )));
    }
    let step = (index.len() / SPOT_CHECKS).max(1);
    for (oid, p) in index.iter().step_by(step) {
        if !is_record_of(df, p, oid, pos)? {
            return Ok(Err(format!(
                "oid 0x{oid:016x} points at offset {p}, which is not a record of that oid"
            )));
        }
    }
    Ok(Ok(()))
}

/// The index of `[4, upto)` from `index`, the index of `[4, pos)` with
/// `upto < pos`, reading only `[upto, pos)`: each oid written there goes
/// back to the record its first write there replaced (the data record's
/// `prev` pointer, which ZODB sets to the oid's index entry when it writes
/// it), or out of the index when that pointer is 0 (created after `upto`).
/// `Ok(Err(reason))` when the file and the index disagree.
fn shrink(
    df: &DataFs,
    upto: u64,
    pos: u64,
    mut index: FsIndex,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Result<FsIndex, String>, Error> {
    // oid -> (prev of its first record in the tail, its last record there)
    let mut touched: HashMap<u64, (u64, u64)> = HashMap::new();
    let scanned = scan(df, upto, pos, progress, &mut |at, d| {
        touched
            .entry(d.oid)
            .and_modify(|e| e.1 = at)
            .or_insert((d.prev, at));
    });
    match scanned {
        Ok(()) => {}
        Err(e) if matches!(e.kind, ErrorKind::Io(_)) => return Err(e),
        Err(e) => {
            return Ok(Err(format!(
                "the removed part cannot be read as ZODB wrote it ({e})"
            )))
        }
    }
    for (&oid, &(_, last)) in &touched {
        if index.get(oid) != Some(last) {
            return Ok(Err(format!(
                "it does not point oid 0x{oid:016x} at its newest record {last}"
            )));
        }
    }
    for (&oid, &(prev, _)) in &touched {
        if prev == 0 {
            index.remove(oid);
        } else if is_record_of(df, prev, oid, upto)? {
            index.insert(oid, prev);
        } else {
            return Ok(Err(format!(
                "the first removed record of oid 0x{oid:016x} has a previous-record pointer \
                 {prev} that is not a record of that oid before the cut"
            )));
        }
    }
    if let Some((oid, p)) = index.iter().find(|&(_, p)| p >= upto) {
        return Ok(Err(format!(
            "oid 0x{oid:016x} points at offset {p}, in the removed part, but was not written there"
        )));
    }
    if upto >= 100 && !zodb_accepts(df, upto, &index) {
        return Ok(Err(
            "the fixed-up index does not match the last kept transaction".into(),
        ));
    }
    Ok(Ok(index))
}

/// How [`index_for_prefix`] made its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexMethod {
    /// Read the whole prefix.
    Built,
    /// Extended an existing index covering `from <= upto`: read `[from, upto)`.
    Extended { from: u64 },
    /// Fixed up an existing index covering `from > upto`: read `[upto, from)`.
    FixedUp { from: u64 },
}

/// An index and how it was made.
#[derive(Debug)]
pub struct PrefixIndex {
    pub index: FsIndex,
    pub method: IndexMethod,
    /// Why the existing index was not reused, when it was given but not used.
    pub rejected: Option<String>,
}

/// What [`index_for_prefix`] would try first with an existing index
/// covering `existing_pos` (`None`: no usable index file).
pub fn plan_method(existing_pos: Option<u64>, upto: u64, size: u64) -> IndexMethod {
    match existing_pos {
        Some(from) if from <= upto => IndexMethod::Extended { from },
        Some(from) if from <= size => IndexMethod::FixedUp { from },
        _ => IndexMethod::Built,
    }
}

/// The index of `[4, upto)`, reusing `existing` (an index and the position
/// it covers) when it can be trusted: extended when it covers less, fixed up
/// from the removed part when it covers more (O(bytes between the two)),
/// else rebuilt from the whole prefix (O(upto)). An existing index that
/// fails the checks is reported in [`PrefixIndex::rejected`], never used.
pub fn index_for_prefix(
    df: &DataFs,
    upto: u64,
    existing: Option<(u64, FsIndex)>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PrefixIndex, Error> {
    let mut rejected = None;
    if let Some((from, index)) = existing {
        match plan_method(Some(from), upto, df.size()) {
            IndexMethod::Extended { from } => match check_existing(df, from, &index)? {
                Ok(()) => match build_index(df, upto, Some((from, index)), progress) {
                    Ok(index) => {
                        return Ok(PrefixIndex {
                            index,
                            method: IndexMethod::Extended { from },
                            rejected,
                        })
                    }
                    Err(e) if matches!(e.kind, ErrorKind::NotTransactionEnd { .. }) => {
                        rejected = Some(e.to_string())
                    }
                    Err(e) => return Err(e),
                },
                Err(why) => rejected = Some(why),
            },
            IndexMethod::FixedUp { from } => match shrink(df, upto, from, index, progress)? {
                Ok(index) => {
                    return Ok(PrefixIndex {
                        index,
                        method: IndexMethod::FixedUp { from },
                        rejected,
                    })
                }
                Err(why) => rejected = Some(why),
            },
            IndexMethod::Built => {
                rejected = Some(format!(
                    "it covers {from} bytes, more than the file's {}",
                    df.size()
                ))
            }
        }
    }
    let index = build_index(df, upto, None, progress)?;
    Ok(PrefixIndex {
        index,
        method: IndexMethod::Built,
        rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_keep_buckets_sorted_and_counted() {
        let mut ix = FsIndex::new();
        let oids = [5u64, 3, 0x1_0000, 0xffff, 4, 3, 0x0102_0304_0506_0708];
        for (i, &o) in oids.iter().enumerate() {
            ix.insert(o, 100 + i as u64);
        }
        assert_eq!(ix.len(), 6);
        assert_eq!(ix.get(3), Some(105));
        assert_eq!(ix.get(0x0102_0304_0506_0708), Some(106));
        assert_eq!(ix.get(6), None);
        let keys: Vec<u64> = ix.iter().map(|(o, _)| o).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(ix.remove(0x1_0000), Some(102));
        assert_eq!(ix.remove(0x1_0000), None);
        assert_eq!(ix.len(), 5);
        assert!(!ix.buckets.contains_key(&1), "empty bucket dropped");
    }

    #[test]
    fn write_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Data.fs.index");
        let mut ix = FsIndex::new();
        for o in 0..70_000u64 {
            ix.insert(o * 3, o * 1000 + 4);
        }
        ix.insert(0, MAX_POSITION);
        ix.save(1 << 40, &path).unwrap();
        let (pos, back) = FsIndex::load(&path).unwrap();
        assert_eq!(pos, 1 << 40);
        assert_eq!(back, ix);
        assert_eq!(FsIndex::read_pos(&path).unwrap(), 1 << 40);
    }
}
