//! The greatest consistent cut above the floors: the fixpoint.
//!
//! Owns the rule (docs/tags.md, "The exact cut"), over [`TagSummary`]s
//! however they were obtained. Pure: no I/O, no clock. Must not cut below a
//! floor, and must never keep a transaction whose presence on another
//! storage it cannot prove.
//!
//! A cut keeps a prefix of every storage's transactions above its floor.
//! It is *consistent* when every kept transaction is tagged, its tag names
//! the storage holding it and only configured storages, and it is kept on
//! every storage it names. Consistent cuts are closed under pointwise max
//! (a transaction kept by the max is kept by one of the two, with all its
//! partners), so the greatest exists. It is computed as:
//!
//! 1. on each storage, the limit starts at the first transaction that
//!    cannot be kept whatever the others do: untagged or unreadable, naming
//!    an unconfigured storage or not naming its own, or *incomplete* (absent
//!    above the floor of a storage it names);
//! 2. whenever a limit moves down, each transaction it drops takes with it
//!    its commit's copy on every storage whose tag names the dropping one
//!    (that copy needed it; the limit there moves to the copy), to a
//!    fixpoint. Each transaction drops once: O(transactions × storages per
//!    transaction).
//!
//! Every step removes only what any consistent cut must remove, and the
//! result is consistent, so it is the greatest. `tests/exactcut.rs` checks
//! it against a brute-force enumeration of all cuts.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::datafs::extension::StorageName;
use crate::tid::Tid;

use super::summary::{Floor, TagState, TagSummary};

/// Why a transaction above the floor goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Tagged, but absent from these storages (a crash between two
    /// databases' `tpc_finish`, or a commit still in progress).
    Incomplete { missing: Vec<String> },
    /// No tag: its storages are unknown.
    Untagged,
    /// An extension or tag that cannot be read: its storages are unknown.
    UnreadableTag(String),
    /// The tag names storages outside the configuration (their short
    /// names): whether it is complete there cannot be checked.
    UnknownStorage { names: Vec<StorageName> },
    /// The tag does not name the storage holding it: the configured id
    /// differs from the one the client computes.
    NotNamed,
    /// The same commit id twice in one file (a copy, or a bug).
    DuplicateCommit,
    /// Complete, but its part on `storage` goes (it comes after a removed
    /// transaction there).
    PartnerRemoved { storage: String, tid: Tid },
    /// Complete, kept on every storage it names, but after `first`, which
    /// goes on this storage: a file is cut at one position.
    AfterRemoved { first: Tid },
}

impl Reason {
    /// A one-word name, stable for scripts (JSON plans).
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Incomplete { .. } => "incomplete",
            Reason::Untagged => "untagged",
            Reason::UnreadableTag(_) => "unreadable-tag",
            Reason::UnknownStorage { .. } => "unknown-storage",
            Reason::NotNamed => "not-named",
            Reason::DuplicateCommit => "duplicate-commit",
            Reason::PartnerRemoved { .. } => "partner-removed",
            Reason::AfterRemoved { .. } => "after-removed",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Incomplete { missing } => {
                write!(f, "incomplete: absent from {}", missing.join(", "))
            }
            Reason::Untagged => write!(f, "untagged: its storages are unknown"),
            Reason::UnreadableTag(why) => write!(f, "unreadable tag ({why})"),
            Reason::UnknownStorage { names } => write!(
                f,
                "names storage(s) {} outside the configuration",
                names
                    .iter()
                    .map(StorageName::hex)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Reason::NotNamed => write!(
                f,
                "its tag does not name this storage (is the configured id the one the client sends?)"
            ),
            Reason::DuplicateCommit => write!(f, "its commit id appears twice in this file"),
            Reason::PartnerRemoved { storage, tid } => {
                write!(f, "its part on {storage} (tid {}) is removed", tid.hex())
            }
            Reason::AfterRemoved { first } => {
                write!(f, "after the removed transaction {}", first.hex())
            }
        }
    }
}

/// A transaction the exact cut removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub tid: Tid,
    pub pos: u64,
    pub commit_id: Option<u64>,
    /// The client's start time (ms since the epoch), when tagged.
    pub start_ms: Option<u64>,
    pub reason: Reason,
}

/// The exact cut of one storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoragePlan {
    pub storage: String,
    pub data_fs: String,
    pub floor: Floor,
    /// New length of the file: the end of the last kept transaction, or the
    /// floor position.
    pub cut_position: u64,
    /// TID of the last kept transaction (the floor's when none above it is
    /// kept; `None` when the file keeps no transaction at all).
    pub cut_tid: Option<Tid>,
    /// Transactions kept above the floor.
    pub kept_beyond_floor: u64,
    /// Every transaction above the floor that goes, in file order.
    pub removed: Vec<Removed>,
    /// End of ZODB's valid prefix; bytes beyond it (a `c` record, a torn
    /// tail) go too.
    pub valid_end: u64,
}

/// The exact cut of every storage, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub storages: Vec<StoragePlan>,
}

impl Plan {
    pub fn get(&self, storage: &str) -> Option<&StoragePlan> {
        self.storages.iter().find(|p| p.storage == storage)
    }
}

/// Inputs the exact cut cannot work with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// Two summaries for one storage id.
    DuplicateStorage(String),
    /// Two configured ids with the same short name: tags cannot tell them
    /// apart.
    NameCollision(String, String, StorageName),
    /// A summary that breaks its invariants (an imported file).
    BadSummary(String, String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::DuplicateStorage(s) => write!(
                f,
                "storage {s} is given twice (a configured storage and a --tags file, or two --tags files)"
            ),
            PlanError::NameCollision(a, b, n) => write!(
                f,
                "storages {a} and {b} have the same tag name {n}: the exact cut cannot tell them \
                 apart; cut at the coherency point instead (cut --at-point)"
            ),
            PlanError::BadSummary(s, why) => write!(f, "tags of storage {s}: {why}"),
        }
    }
}

impl std::error::Error for PlanError {}

/// What step 1 says of one transaction.
fn intrinsic(
    t: &TagState,
    own: StorageName,
    names: &HashMap<StorageName, usize>,
    present: &dyn Fn(usize, u64) -> bool,
    ids: &[&str],
) -> Option<Reason> {
    let tag = match t {
        TagState::Untagged => return Some(Reason::Untagged),
        TagState::Unreadable(why) => return Some(Reason::UnreadableTag(why.clone())),
        TagState::Tagged(tag) => tag,
    };
    let unknown: Vec<StorageName> = tag
        .storages
        .iter()
        .filter(|n| !names.contains_key(n))
        .copied()
        .collect();
    if !unknown.is_empty() {
        return Some(Reason::UnknownStorage { names: unknown });
    }
    if !tag.storages.contains(&own) {
        return Some(Reason::NotNamed);
    }
    let missing: Vec<String> = tag
        .storages
        .iter()
        .map(|n| names[n])
        .filter(|&r| !present(r, tag.commit_id))
        .map(|r| ids[r].to_string())
        .collect();
    if !missing.is_empty() {
        return Some(Reason::Incomplete { missing });
    }
    None
}

/// The greatest consistent cut of the storages summarised in `inputs`
/// (which make up the configuration: a tag naming any other storage is
/// unknown).
pub fn exact_cut(inputs: &[TagSummary]) -> Result<Plan, PlanError> {
    exact_cut_with(inputs, true)
}

/// With `propagate` false, step 2 is skipped: only for tests showing that
/// the brute-force checker catches an inconsistent cut.
#[doc(hidden)]
pub fn exact_cut_with(inputs: &[TagSummary], propagate: bool) -> Result<Plan, PlanError> {
    let n = inputs.len();
    let ids: Vec<&str> = inputs.iter().map(|s| s.storage.as_str()).collect();
    let mut names: HashMap<StorageName, usize> = HashMap::new();
    let mut seen: BTreeMap<&str, ()> = BTreeMap::new();
    for (i, s) in inputs.iter().enumerate() {
        if seen.insert(&s.storage, ()).is_some() {
            return Err(PlanError::DuplicateStorage(s.storage.clone()));
        }
        s.check()
            .map_err(|e| PlanError::BadSummary(s.storage.clone(), e))?;
        let name = StorageName::of(&s.storage);
        if let Some(&j) = names.get(&name) {
            return Err(PlanError::NameCollision(
                inputs[j].storage.clone(),
                s.storage.clone(),
                name,
            ));
        }
        names.insert(name, i);
    }
    // commit id -> index, per storage; a commit id seen twice in one file
    // is not trusted at either place.
    let mut index: Vec<HashMap<u64, usize>> = vec![HashMap::new(); n];
    let mut dup: Vec<Vec<bool>> = inputs
        .iter()
        .map(|s| vec![false; s.transactions.len()])
        .collect();
    for (s, inp) in inputs.iter().enumerate() {
        for (i, t) in inp.transactions.iter().enumerate() {
            if let TagState::Tagged(tag) = &t.tag {
                if let Some(&j) = index[s].get(&tag.commit_id) {
                    dup[s][i] = true;
                    dup[s][j] = true;
                } else {
                    index[s].insert(tag.commit_id, i);
                }
            }
        }
    }
    let present = |r: usize, cid: u64| index[r].contains_key(&cid);
    // Step 1.
    let mut own_reason: Vec<Vec<Option<Reason>>> = Vec::with_capacity(n);
    for (s, inp) in inputs.iter().enumerate() {
        let own = StorageName::of(&inp.storage);
        own_reason.push(
            inp.transactions
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    if dup[s][i] {
                        Some(Reason::DuplicateCommit)
                    } else {
                        intrinsic(&t.tag, own, &names, &present, &ids)
                    }
                })
                .collect(),
        );
    }
    let mut limit: Vec<usize> = own_reason
        .iter()
        .map(|r| r.iter().position(Option::is_some).unwrap_or(r.len()))
        .collect();
    // Why the transaction at a limit goes when step 1 did not say.
    let mut forced: Vec<Option<Reason>> = vec![None; n];
    // Step 2: every transaction dropped (from the limit to the end) drops
    // the copies of its commit on other storages whose tags name this one
    // (they needed it kept). Copies are found by commit id, whatever the
    // dropped one's own tag names: two tags of one commit never differ when
    // written by the client, but a damaged one must not make a cut unsafe.
    if propagate {
        let mut copies: HashMap<u64, Vec<(usize, usize)>> = HashMap::new();
        for (r, idx) in index.iter().enumerate() {
            for (&cid, &j) in idx {
                copies.entry(cid).or_default().push((r, j));
            }
        }
        let own_names: Vec<StorageName> =
            inputs.iter().map(|s| StorageName::of(&s.storage)).collect();
        let mut work: Vec<(usize, usize, usize)> = (0..n)
            .map(|s| (s, limit[s], inputs[s].transactions.len()))
            .collect();
        while let Some((s, from, to)) = work.pop() {
            for i in from..to {
                let TagState::Tagged(tag) = &inputs[s].transactions[i].tag else {
                    continue;
                };
                let Some(list) = copies.get(&tag.commit_id) else {
                    continue;
                };
                for &(r, j) in list {
                    if r == s || j >= limit[r] {
                        continue;
                    }
                    let needs_s = matches!(
                        &inputs[r].transactions[j].tag,
                        TagState::Tagged(t) if t.storages.contains(&own_names[s])
                    );
                    if needs_s {
                        let old = limit[r];
                        limit[r] = j;
                        forced[r] = Some(Reason::PartnerRemoved {
                            storage: inputs[s].storage.clone(),
                            tid: inputs[s].transactions[i].tid,
                        });
                        work.push((r, j, old));
                    }
                }
            }
        }
    }
    let mut storages = Vec::with_capacity(n);
    for (s, inp) in inputs.iter().enumerate() {
        let txns = &inp.transactions;
        let lim = limit[s];
        let (cut_position, cut_tid) = match lim {
            0 => (inp.floor.position, inp.floor.tid),
            k => (txns[k - 1].end, Some(txns[k - 1].tid)),
        };
        let first = txns.get(lim).map(|t| t.tid);
        let removed = txns[lim..]
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let i = lim + k;
                let reason = own_reason[s][i]
                    .clone()
                    .or_else(|| if i == lim { forced[s].clone() } else { None })
                    .unwrap_or(Reason::AfterRemoved {
                        // `first` is Some: txns[lim] exists since i >= lim.
                        first: first.unwrap_or(t.tid),
                    });
                let (commit_id, start_ms) = match &t.tag {
                    TagState::Tagged(tag) => (Some(tag.commit_id), Some(tag.start_ms)),
                    _ => (None, None),
                };
                Removed {
                    tid: t.tid,
                    pos: t.pos,
                    commit_id,
                    start_ms,
                    reason,
                }
            })
            .collect();
        storages.push(StoragePlan {
            storage: inp.storage.clone(),
            data_fs: inp.data_fs.clone(),
            floor: inp.floor,
            cut_position,
            cut_tid,
            kept_beyond_floor: lim as u64,
            removed,
            valid_end: inp.valid_end,
        });
    }
    Ok(Plan { storages })
}
