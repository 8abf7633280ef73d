//! The error of an operation over storages: which storage, the domain
//! error that caused it (still typed: Data.fs damage stays apart from I/O),
//! and what it means for the operator.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::datafs::blobrecords::BlobRecordError;
use crate::error::{CliError, ExitKind};
use crate::fsutil::LockError;
use crate::{blobs, datafs, repozo, statuslog};

/// A failure of one storage (or of the whole run when `storage` is None).
#[derive(Debug)]
pub struct Error {
    pub storage: Option<String>,
    /// Boxed: the domain errors are large, and `Result`s of this type are
    /// returned on every path.
    pub kind: Box<ErrorKind>,
    /// What was being done, printed before the cause ("cannot read the Data.fs").
    pub doing: Option<String>,
    /// What it means or what to do, printed after the cause ("nothing was backed up").
    pub advice: Option<String>,
}

/// The cause, typed as its domain module reported it.
#[derive(Debug)]
pub enum ErrorKind {
    /// The configuration lacks what the operation needs (exit 2).
    Config(String),
    /// A rule refuses the operation; the sentence says which and what to do.
    Refused(String),
    DataFs(datafs::Error),
    Repository(repozo::Error),
    StatusFile(statuslog::Error),
    Lock(LockError),
    /// The daemon could not be asked (already an operator-facing message).
    Daemon(CliError),
    Io {
        path: PathBuf,
        error: io::Error,
    },
    /// Several storages failed (each error names its storage).
    Storages(Vec<Error>),
    /// The exact cut cannot be computed from these inputs.
    ExactCut(crate::exactcut::PlanError),
    /// A blob directory or the blob part of a repository.
    Blobs(blobs::Error),
    /// The blob records of a Data.fs could not be read.
    BlobRecords(BlobRecordError),
}

impl Error {
    pub fn new(kind: ErrorKind) -> Error {
        Error {
            storage: None,
            kind: Box::new(kind),
            doing: None,
            advice: None,
        }
    }

    pub fn config(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config(msg.into()))
    }

    pub fn refused(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::Refused(msg.into()))
    }

    pub fn io(path: impl Into<PathBuf>, error: io::Error) -> Error {
        Error::new(ErrorKind::Io {
            path: path.into(),
            error,
        })
    }

    pub fn storage(mut self, id: &str) -> Error {
        self.storage = Some(id.to_string());
        self
    }

    pub fn doing(mut self, what: impl Into<String>) -> Error {
        self.doing = Some(what.into());
        self
    }

    pub fn advice(mut self, what: impl Into<String>) -> Error {
        self.advice = Some(what.into());
        self
    }

    /// Damage in a file's bytes (a Data.fs, a repository, a status file),
    /// as opposed to I/O failure, a lock, a refusal or the configuration.
    pub fn is_damage(&self) -> bool {
        match &*self.kind {
            ErrorKind::DataFs(e) => e.is_damage(),
            ErrorKind::Repository(e) => e.is_damage(),
            ErrorKind::StatusFile(e) => !matches!(e.kind, statuslog::ErrorKind::Io(_)),
            ErrorKind::Blobs(e) => e.is_damage(),
            ErrorKind::BlobRecords(e) => e.is_damage(),
            _ => false,
        }
    }

    /// The exit status class (SPEC §6).
    pub fn exit_kind(&self) -> ExitKind {
        match &*self.kind {
            ErrorKind::Config(_) => ExitKind::Usage,
            ErrorKind::Daemon(e) => e.kind,
            // "nothing was done" because of the configuration alone.
            ErrorKind::Storages(errors)
                if !errors.is_empty()
                    && errors.iter().all(|e| e.exit_kind() == ExitKind::Usage) =>
            {
                ExitKind::Usage
            }
            _ => ExitKind::Runtime,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Config(m) | ErrorKind::Refused(m) => f.write_str(m),
            ErrorKind::DataFs(e) => e.fmt(f),
            ErrorKind::Repository(e) => e.fmt(f),
            ErrorKind::StatusFile(e) => e.fmt(f),
            ErrorKind::Lock(e) => e.fmt(f),
            ErrorKind::Daemon(e) => e.fmt(f),
            ErrorKind::Io { path, error } => write!(f, "{}: {error}", path.display()),
            ErrorKind::ExactCut(e) => e.fmt(f),
            ErrorKind::Blobs(e) => e.fmt(f),
            ErrorKind::BlobRecords(e) => e.fmt(f),
            ErrorKind::Storages(errors) => {
                for e in errors {
                    match &e.storage {
                        Some(id) => write!(f, "\n  storage {id}: {e}")?,
                        None => write!(f, "\n  {e}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// The cause with its context; the storage is left to the caller, which
/// prints it in its own form ("storage ID: FAILED: ...").
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.doing, &*self.kind) {
            // "cannot remove /x: No such file or directory"
            (Some(d), ErrorKind::Io { path, error }) => {
                write!(f, "{d} {}: {error}", path.display())?
            }
            // "nothing was restored:" and one storage per line.
            (Some(d), k @ ErrorKind::Storages(_)) => write!(f, "{d}:{k}")?,
            (Some(d), k) => write!(f, "{d}: {k}")?,
            (None, k) => k.fmt(f)?,
        }
        if let Some(a) = &self.advice {
            write!(f, "; {a}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.kind {
            ErrorKind::DataFs(e) => Some(e),
            ErrorKind::Repository(e) => Some(e),
            ErrorKind::StatusFile(e) => Some(e),
            ErrorKind::Lock(e) => Some(e),
            ErrorKind::Io { error, .. } => Some(error),
            ErrorKind::Blobs(e) => Some(e),
            _ => None,
        }
    }
}

impl From<datafs::Error> for Error {
    fn from(e: datafs::Error) -> Error {
        Error::new(ErrorKind::DataFs(e))
    }
}

impl From<repozo::Error> for Error {
    fn from(e: repozo::Error) -> Error {
        Error::new(ErrorKind::Repository(e))
    }
}

impl From<statuslog::Error> for Error {
    fn from(e: statuslog::Error) -> Error {
        Error::new(ErrorKind::StatusFile(e))
    }
}

impl From<blobs::Error> for Error {
    fn from(e: blobs::Error) -> Error {
        Error::new(ErrorKind::Blobs(e))
    }
}

impl From<BlobRecordError> for Error {
    fn from(e: BlobRecordError) -> Error {
        Error::new(ErrorKind::BlobRecords(e))
    }
}

impl From<LockError> for Error {
    fn from(e: LockError) -> Error {
        Error::new(ErrorKind::Lock(e))
    }
}

impl From<CliError> for Error {
    fn from(e: CliError) -> Error {
        Error::new(ErrorKind::Daemon(e))
    }
}

/// At the edge to `main`: the message with its storage, and the exit class.
impl From<Error> for CliError {
    fn from(e: Error) -> CliError {
        let message = match &e.storage {
            Some(id) => format!("storage {id}: {e}"),
            None => e.to_string(),
        };
        CliError {
            kind: e.exit_kind(),
            message,
        }
    }
}
