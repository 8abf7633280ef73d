//! The exact cut: from the commit tags in the files themselves, the
//! greatest set of transactions every storage can keep above a floor known
//! to be consistent (docs/tags.md).
//!
//! Owns: the per-file summary of tags above a floor ([`summary`]: read from
//! a Data.fs, or imported as JSON from another host) and the fixpoint that
//! turns summaries into a plan ([`plan`]). Must not write to any file nor
//! talk to a daemon: the `cut`, `backup`, `restore`, `tags` and `check`
//! commands do the I/O and act on the plan.
//!
//! Typical use (one host):
//!
//! ```no_run
//! use tidstorage::exactcut::{exact_cut, FloorSpec, TagSummary};
//! # fn f(storages: &[(String, std::path::PathBuf, Option<tidstorage::tid::Tid>)]) -> Result<(), Box<dyn std::error::Error>> {
//! let mut inputs = Vec::new();
//! for (id, path, point) in storages {
//!     let floor = point.map(FloorSpec::Tid).unwrap_or(FloorSpec::FirstTagged);
//!     inputs.push(TagSummary::read_file(path, id, floor)?);
//! }
//! let plan = exact_cut(&inputs)?;
//! for p in &plan.storages {
//!     println!("{}: cut at {} ({} kept beyond the floor)", p.storage, p.cut_position, p.kept_beyond_floor);
//! }
//! # Ok(()) }
//! ```

pub mod plan;
pub mod summary;

pub use plan::{exact_cut, Plan, PlanError, Reason, Removed, StoragePlan};
pub use summary::{read_storages, Floor, FloorKind, FloorSpec, TagState, TagSummary, TxnInfo};
