//! The top-level error every subcommand returns, and its exit status.
//!
//! SPEC §6: 0 success, 1 "the answer is no" (e.g. bootstrap incomplete),
//! 2 usage or configuration error, 3 runtime failure. Domain modules keep
//! their own error types (with file, offset, line, peer); a subcommand turns
//! them into a [`CliError`] carrying the full, operator-facing message.
//! Only `main` prints it and exits.

use std::fmt;

/// The exit status classes of SPEC §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// The command worked and its answer is "no" (exit 1).
    No,
    /// Bad flags, bad configuration (exit 2).
    Usage,
    /// The work itself failed: I/O, damaged data, unreachable daemon (exit 3).
    Runtime,
    /// Standard output was closed by the reader (`| head`): stop quietly, exit 0.
    BrokenPipe,
}

impl ExitKind {
    pub fn code(self) -> u8 {
        match self {
            ExitKind::No => 1,
            ExitKind::Usage => 2,
            ExitKind::Runtime => 3,
            ExitKind::BrokenPipe => 0,
        }
    }
}

/// An error on its way to `main`: a class and a complete message.
#[derive(Debug)]
pub struct CliError {
    pub kind: ExitKind,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            kind: ExitKind::Usage,
            message: message.into(),
        }
    }

    pub fn runtime(message: impl Into<String>) -> CliError {
        CliError {
            kind: ExitKind::Runtime,
            message: message.into(),
        }
    }

    /// "The answer is no": exit 1, with a message (may be empty: nothing printed).
    pub fn no(message: impl Into<String>) -> CliError {
        CliError {
            kind: ExitKind::No,
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

pub type Result<T> = std::result::Result<T, CliError>;
