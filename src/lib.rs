//! tidstorage: coherency points across ZODB databases, and the tools that
//! use them (backup, restore, cut).
//!
//! The binary (`src/main.rs`) is a thin shell over this library so tests and
//! benchmarks reach every module. Module map:
//!
//! - [`tid`]: the TID type and its textual forms.
//! - [`datafs`]: read-only access to FileStorage `Data.fs` files.
//! - [`exactcut`]: the exact cut from the commit tags in the files.
//! - [`blobs`]: blob directories: layout, the repository's blob pool and
//!   per-run manifests, restore, verify, compare and cut at a TID.
//! - [`statuslog`]: the status file (TID log): records, replay, writer.
//! - [`protocol`]: the sans-I/O wire codec.
//! - [`engine`]: the pure coherency engine.
//! - [`daemon`]: the event loop, the only owner of sockets and signals.
//! - [`metrics`]: what `GET /metrics` answers (Prometheus text format).
//! - [`bootstrap`]: bootstrap triggers (commands, HTTP GETs), used by the
//!   daemon and by `backup`.
//! - [`repozo`]: repozo-compatible backup repositories.
//! - [`client`]: a blocking client of a running daemon.
//! - [`config`]: TOML file + flags -> one validated configuration.
//! - [`cli`]: the subcommand table, argv[0] dispatch, man/completions.
//! - [`cmd`]: one module per subcommand: flags, one library call, rendering.
//! - [`storageset`]: backup, restore and cut runs across the configured
//!   storages (the rules the commands share).
//! - [`error`]: the top-level error and its exit codes.
//! - [`fsutil`]: durable file replacement and the Data.fs lock.
//! - [`progress`]: the progress trait of long copies and the terminal bar.

pub mod blobs;
pub mod bootstrap;
pub mod cli;
pub mod client;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod datafs;
pub mod engine;
pub mod error;
pub mod exactcut;
pub mod fsutil;
pub mod metrics;
pub mod progress;
pub mod protocol;
pub mod repozo;
pub mod statuslog;
pub mod storageset;
pub mod tid;
