//! The status file (the TID log, SPEC §4): the daemon appends coherency
//! points to it; start-up, `dump --status-file`, `cut` and `restore` replay
//! it.
//!
//! Owns the line format (`record`), replay and validation (`reader`), the
//! appending writer (`writer`) and the pure policy of when to write
//! (`schedule`). It must not know about the engine, sockets or the CLI: the
//! daemon passes points and times in, and decides what to log.
//!
//! The operator-facing description is `docs/status-file.md`; keep it in step.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use crate::tid::Tid;

pub mod reader;
pub mod record;
pub mod schedule;
pub mod writer;

pub use reader::{replay_file, replay_reader, Replay, ReplayOptions, MAX_LINE};
pub use record::{format_record, parse_record, LineError, LineErrorKind, Record, RecordKind};
pub use schedule::Schedule;
pub use writer::{FsyncPolicy, StatusWriter};

/// A coherency point: storage id -> TID.
pub type Point = BTreeMap<String, Tid>;

/// A replay failure: which file, which line (1-based) and what.
#[derive(Debug)]
pub struct Error {
    /// The path, or the name the caller gave to `replay_reader`.
    pub name: String,
    /// 1-based line number, when the failure belongs to a line.
    pub line: Option<u64>,
    pub kind: ErrorKind,
}

/// Damage, rule violations and I/O failures stay apart: the first two are
/// about the file's content (`--lenient` may skip them), the last is not.
#[derive(Debug)]
pub enum ErrorKind {
    Io(io::Error),
    /// The line cannot be read as a record.
    Damaged(LineError),
    /// A well-formed record that breaks the replay rules.
    Violation(Violation),
}

/// A record that contradicts what came before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Timestamps must be strictly increasing (hundredths of a second).
    TimeNotIncreasing { previous: u64, this: u64 },
    /// A `d` record lowers a storage's TID.
    DeltaDecreases {
        storage: String,
        previous: Tid,
        this: Tid,
    },
    /// An `f` record lacks a storage an earlier record had.
    FullMissing { storage: String },
    /// An `f` record lowers a storage's TID.
    FullDecreases {
        storage: String,
        previous: Tid,
        this: Tid,
    },
}

fn centis_text(c: u64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::TimeNotIncreasing { previous, this } => write!(
                f,
                "time {} is not after the previous record's {}",
                centis_text(*this),
                centis_text(*previous)
            ),
            Violation::DeltaDecreases {
                storage,
                previous,
                this,
            } => write!(
                f,
                "d record lowers storage {storage:?} from {previous} to {this}"
            ),
            Violation::FullMissing { storage } => write!(
                f,
                "f record lacks storage {storage:?} that an earlier record had"
            ),
            Violation::FullDecreases {
                storage,
                previous,
                this,
            } => write!(
                f,
                "f record lowers storage {storage:?} from {previous} to {this}"
            ),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "status file {}", self.name)?;
        if let Some(n) = self.line {
            write!(f, ", line {n}")?;
        }
        match &self.kind {
            ErrorKind::Io(e) => write!(f, ": cannot read: {e}; check the path and its permissions"),
            ErrorKind::Damaged(e) => write!(
                f,
                ": damaged line: {e}; repair or delete that line, or replay with --lenient \
                 to skip damaged lines"
            ),
            ErrorKind::Violation(v) => write!(
                f,
                ": {v}; the file was edited or written by two daemons at once: fix that line, \
                 or replay with --lenient to skip it"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io(e) => Some(e),
            ErrorKind::Damaged(e) => Some(e),
            ErrorKind::Violation(_) => None,
        }
    }
}
