//! ZODB blob directories: their layout, their backups, restores and cuts.
//!
//! Owns: where ZODB keeps the file of a blob record ([`layout`]: `.layout`,
//! `bushy` / `lawn`, `<tid repr>.blob`, what is temporary), the blob part of
//! a storage's repository ([`snapshot`]: a pool of files plus one manifest
//! per backup run, see `docs/blobs.md`), rebuilding a blob directory from a
//! run, checking and comparing it ([`restore`]), and cutting a live blob
//! directory at a TID ([`cut`]).
//!
//! Must not: decide which TID or which run (that is `storageset`), read a
//! Data.fs (the blob records come from [`crate::datafs::blobrecords`]),
//! ever take a source file from `tmp/` or a `*.tmp` file, write into a
//! live blob directory except through [`cut`] and the final rename of
//! [`restore`], or overwrite a file in the repository.
//!
//! Blob files are immutable once committed (ZODB never rewrites one), so a
//! file is identified by its (oid, tid) and copied once per repository.

pub mod cut;
pub mod layout;
pub mod restore;
pub mod snapshot;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::tid::Tid;

pub use cut::{execute_cut, plan_cut, CutPlan, CutReport};
pub use layout::{read_layout, Layout};
pub use restore::{
    build_beside, compare, restore, verify, Built, CompareReport, RestoreReport, VerifyReport,
};
pub use snapshot::{BlobRepo, Entry, Manifest, SnapshotReport};

/// A failure on blob files: which path, and what.
#[derive(Debug)]
pub struct Error {
    pub path: PathBuf,
    pub kind: ErrorKind,
}

#[derive(Debug)]
pub enum ErrorKind {
    Io(io::Error),
    /// A `.layout` naming neither `bushy` nor `lawn`.
    UnknownLayout(String),
    /// Blob files named by the backed-up Data.fs prefix that are in neither
    /// the blob directory nor `<blob_dir>.old` (pack with keep-old).
    Missing(Vec<Missing>),
    /// A manifest that does not parse (line number, what is wrong).
    BadManifest {
        line: usize,
        what: String,
    },
    /// A pool file for (oid, tid) that differs from the source's file: the
    /// same (oid, tid) was committed twice with different data (a clock
    /// that went back after a cut or restore).
    PoolConflict {
        oid: u64,
        tid: Tid,
    },
    /// A pool file that is missing or differs from its manifest entry.
    PoolDamaged {
        oid: u64,
        tid: Tid,
        what: String,
    },
    /// The target of a restore exists and replacing it was not asked for.
    TargetExists,
    /// A run stamp that cannot be a file name.
    BadStamp(String),
    /// A cut found a file in the tail directory that differs from the one
    /// it would move there.
    TailConflict {
        other: PathBuf,
    },
}

/// A blob file a backup needed and could not find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub oid: u64,
    pub tid: Tid,
    /// Every place looked at.
    pub looked: Vec<PathBuf>,
}

impl Error {
    pub(crate) fn io(path: &Path, e: io::Error) -> Error {
        Error {
            path: path.to_path_buf(),
            kind: ErrorKind::Io(e),
        }
    }

    pub(crate) fn new(path: &Path, kind: ErrorKind) -> Error {
        Error {
            path: path.to_path_buf(),
            kind,
        }
    }

    /// True for damage (in a manifest, the pool or the data), false for I/O
    /// failure and refusals.
    pub fn is_damage(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::BadManifest { .. }
                | ErrorKind::PoolDamaged { .. }
                | ErrorKind::PoolConflict { .. }
                | ErrorKind::UnknownLayout(_)
        )
    }

    /// The blob files a backup could not find, if that is the error.
    pub fn missing(&self) -> Option<&[Missing]> {
        match &self.kind {
            ErrorKind::Missing(m) => Some(m),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path.display())?;
        match &self.kind {
            ErrorKind::Io(e) => write!(f, "i/o error: {e}"),
            ErrorKind::UnknownLayout(l) if l == "zeocache" => write!(
                f,
                "this is a ZEO client's blob cache (.layout \"zeocache\"): it is partial and \
                 pruned, never a source; configure the ZEO server's blob directory"
            ),
            ErrorKind::UnknownLayout(l) => write!(
                f,
                "unknown blob directory layout {l:?} in .layout (zodb knows \"bushy\" and \"lawn\")"
            ),
            ErrorKind::Missing(m) => {
                write!(
                    f,
                    "{} blob file(s) named by the backed-up Data.fs are missing: ",
                    m.len()
                )?;
                for (i, x) in m.iter().take(5).enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "oid 0x{:016x} tid {}", x.oid, x.tid.hex())?;
                    if let Some(p) = x.looked.first() {
                        write!(f, " ({})", p.display())?;
                    }
                }
                if m.len() > 5 {
                    write!(f, " and {} more", m.len() - 5)?;
                }
                write!(
                    f,
                    "; a pack removed them (back up again at a point above the pack) \
                     or they are lost from the blob directory"
                )
            }
            ErrorKind::BadManifest { line, what } => write!(
                f,
                "line {line}: {what}; the blob manifest is damaged: restore from another run"
            ),
            ErrorKind::PoolConflict { oid, tid } => write!(
                f,
                "the repository already holds a different file for oid 0x{oid:016x} tid {}; \
                 blob files are never rewritten by zodb: check the system clock and the \
                 blob directory",
                tid.hex()
            ),
            ErrorKind::PoolDamaged { oid, tid, what } => write!(
                f,
                "backed-up blob file for oid 0x{oid:016x} tid {}: {what}; \
                 restore from another run",
                tid.hex()
            ),
            ErrorKind::TargetExists => write!(
                f,
                "exists; it is replaced only when asked (the old directory is kept aside)"
            ),
            ErrorKind::BadStamp(s) => {
                write!(f, "run stamp {s:?} cannot be a file name")
            }
            ErrorKind::TailConflict { other } => write!(
                f,
                "{} already holds a different file of that name; move it away and rerun",
                other.display()
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

pub type Result<T> = std::result::Result<T, Error>;

/// fsync of a directory.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// `mkdir -p` that remembers which directories it created, so their
/// parents can be synced.
pub(crate) fn create_dirs(dir: &Path, created: &mut Vec<PathBuf>) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(Error::io(
                dir,
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a directory",
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(dir, e)),
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent, created)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {
            created.push(dir.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}
