//! Operations over the set of configured storages: [`backup`], [`restore`]
//! and [`cut`]. Each is one library call taking the configuration and its
//! options and returning a typed report (what was done per storage, what
//! failed and why), which the subcommands in `crate::cmd` render. The
//! domain rules of a run across databases live here, once:
//!
//! - [`job`]: one storage prepared the same way for backup and restore
//!   (its Data.fs, its repository, the repository lock).
//! - [`point`]: where a coherency point comes from (a status file, a
//!   running daemon).
//! - [`backup`]: the run's timestamp, the status-file copy, the per-storage
//!   copies up to the coherent TID, manifests, the timestamp file, pruning.
//! - [`restore`]: picking the run, checking its manifests come from one
//!   run, and the build / install / compare steps.
//! - [`standby`]: incremental restore, appending to an output that is a
//!   prefix of the chain, never showing a half-written database.
//! - [`cut`]: the all-or-nothing plan of cuts and its execution.
//! - [`Error`]: `{ storage, kind }`, carrying the domain errors of
//!   `datafs`, `repozo`, `statuslog` and `fsutil` to `main` typed.
//!
//! Must not: print (commands render reports), parse flags, or write a
//! file other than through `fsutil` and `repozo`.

pub mod backup;
pub mod blobs;
pub mod cut;
mod error;
pub mod job;
pub mod point;
pub mod restore;
pub mod standby;

pub use error::{Error, ErrorKind};

/// Results of this module: a typed [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
