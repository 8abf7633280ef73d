//! The coherency engine (SPEC §3): commit notifications in, coherency point out.
//!
//! Owns the per-storage state (`known`, `published`, remembered committed
//! transactions, the floors of in-flight transactions), the rule that turns
//! them into the published point, the anomaly handling of §3.4 and the
//! bootstrap state of §3.5.
//!
//! It is pure and must stay so: no sockets, no files, no clock, no logging.
//! The caller passes the time in (`Now`) with every event and drains what
//! happened out of it: `drain_notices` (lines the daemon logs) and
//! `take_changed` (storages the status file must record). Malformed or
//! contradictory input never panics; it becomes a `Notice` and a counter.
//!
//! Cost model: an event costs O(storages it names × log) plus the work of
//! publishing what it unblocks; nothing walks every storage ever seen or the
//! history. See `compute.rs` for the algorithm and `docs/engine.md` for the
//! operator's view.

mod compute;
mod dump;
mod health;
pub use health::Resolution;
#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;

use std::cell::{Ref, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::tid::Tid;

/// The instant of an event, given by the caller (the engine has no clock).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Now {
    /// Monotonic time since an arbitrary origin: ages and stale detection.
    pub mono: Duration,
    /// Wall clock, seconds since the Unix epoch: only to refuse TIDs from the
    /// future.
    pub unix: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Configured storage ids: bootstrap waits for a commit on each.
    pub storages: Vec<String>,
    /// An in-flight transaction older than this is reported once.
    pub stale_after: Duration,
    /// A COMMIT TID further than this ahead of `Now::unix` is refused.
    pub max_future: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            storages: Vec::new(),
            stale_after: Duration::from_secs(600),
            max_future: Duration::from_secs(3600),
        }
    }
}

/// A coherency point: storage id -> TID. A storage with nothing publishable
/// yet is absent.
pub type Point = BTreeMap<String, Tid>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BootstrapState {
    /// No transaction has ended since start-up.
    NotStarted,
    /// Waiting for a commit on some configured storages.
    InProgress,
    /// Every configured storage has committed since start-up.
    Complete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Progress worth a line in the log (bootstrap).
    Info,
    Warn,
    Error,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A COMMIT TID at or below the published value of its storage.
    DecreasingUpdate,
    /// COMMIT or ABORT of a transaction id that is not in flight.
    UnknownTransaction,
    /// BEGIN of an id already in flight: the earlier one became an orphan.
    DuplicateBegin,
    /// COMMIT naming fewer storages than the BEGIN.
    PartialCommit,
    /// COMMIT naming storages that were not in the BEGIN.
    ExtraStorages,
    /// Reports about one transaction that cannot all be true (two TIDs for
    /// one storage, ABORT after a COMMIT was reported).
    ConflictingOutcome,
    /// An in-flight transaction older than `stale_after` (reported when it
    /// becomes stale, then again each time its age doubles).
    Stale,
    /// The operator declared a transaction finished (`tidstorage resolve`).
    Resolved,
    /// A COMMIT TID too far in the future.
    FutureTid,
    BootstrapStarted,
    BootstrapComplete,
}

/// Something the daemon should log: `message` is the complete line.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub level: Level,
    pub kind: NoticeKind,
    pub message: String,
}

/// Anomaly counters since start-up (shown by `INFO`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub decreasing_updates: u64,
    pub unknown_transactions: u64,
    /// Blocking entries no later message can end: duplicate BEGINs, and
    /// unknown-transaction COMMITs holding a refused TID.
    pub orphans: u64,
    pub partial_commits: u64,
    pub extra_storages: u64,
    pub conflicting_outcomes: u64,
    pub future_tids: u64,
    pub stale: u64,
}

/// How transactions ended since start-up (the `outcome` label of
/// `tidstorage_transactions_total`; orphaned and unknown ones are counted in
/// [`Counters`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    /// Begun, then committed on every storage of its BEGIN.
    pub committed: u64,
    /// Begun, then aborted.
    pub aborted: u64,
    /// Declared finished by the operator (`resolve`).
    pub resolved: u64,
}

/// Sizes of the engine's state, for the memory test and `INFO`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryStats {
    /// Storage ids interned since start-up (never forgotten: they are few).
    pub storages: usize,
    /// In-flight transactions, orphans included.
    pub in_flight: usize,
    pub orphans: usize,
    /// Committed transactions not yet entirely at-or-below the point.
    pub remembered: usize,
    /// Sum over storages of remembered TIDs.
    pub pending_entries: usize,
    /// Allocated slots (live + free) in the transaction tables.
    pub txn_slots: usize,
    pub committed_slots: usize,
    pub notices_queued: usize,
}

/// One in-flight transaction, as `INFO`, `INFLIGHT` and the USR1 dump show
/// it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InFlightInfo {
    /// The client's transaction id (orphans keep the id they had).
    pub id: String,
    pub orphan: bool,
    pub age_seconds: f64,
    pub stale: bool,
    pub storages: Vec<String>,
    /// Why no later message can end it, when that is so.
    pub blocked_because: Option<String>,
    /// Address of the connection its BEGIN came on, when known.
    pub client: Option<SocketAddr>,
    /// Storages whose published point it holds back: a commit waits above
    /// its cap there, or behind a commit that does (no-split rule). Sorted.
    pub holds_back: Vec<String>,
    /// How long the oldest commit it holds back has waited, in TID time
    /// (`now` minus that commit's TID); `None` when it holds nothing back.
    pub blocking_seconds: Option<f64>,
}

/// What a transaction's COMMIT(s) said about one storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    No,
    Accepted(Tid),
    /// At or below the published value: ignored, but the storage was named.
    Decreasing(Tid),
    /// Too far in the future: refused.
    Rejected(Tid),
}

/// One storage of an in-flight transaction.
#[derive(Debug, Clone)]
struct Part {
    storage: u32,
    /// Named in the BEGIN (false: joined through a COMMIT).
    in_begin: bool,
    /// `known` when the storage joined; `None` = nothing was known.
    floor: Option<Tid>,
    named: Named,
    /// Highest value this transaction lets the point take on the storage;
    /// `None` = nothing at all. Always <= floor, and below any TID reported.
    cap: Option<Tid>,
}

#[derive(Debug, Clone)]
struct Txn {
    id: String,
    orphan: bool,
    begun: Duration,
    serial: u64,
    stale: bool,
    /// When `tick` reports it next (its key in `watch`).
    next_report: Duration,
    client: Option<SocketAddr>,
    /// Sorted by storage index, one per storage.
    parts: Vec<Part>,
    /// Set when no later message can end it (never guess an outcome).
    blocked: Option<String>,
}

impl Txn {
    fn age_key(&self) -> (Duration, u64) {
        (self.begun, self.serial)
    }
}

/// A committed transaction that is not yet entirely at-or-below the point.
#[derive(Debug, Clone)]
struct Committed {
    tids: Vec<(u32, Tid)>,
    /// Visit mark of the publishing search (see compute.rs).
    mark: u64,
}

#[derive(Debug, Clone)]
struct Storage {
    name: String,
    known: Option<Tid>,
    published: Option<Tid>,
    /// Remembered committed TIDs on this storage, all above `published`,
    /// with the index of their committed transaction.
    pending: BTreeSet<(Tid, u32)>,
    /// Multiset of the caps in-flight transactions put on this storage.
    caps: BTreeMap<Tid, u32>,
    /// In-flight transactions that allow nothing here (nothing was known).
    nothing_caps: u32,
    configured: bool,
    seen: bool,
    dirty: bool,
    changed: bool,
}

impl Storage {
    fn new(name: String) -> Storage {
        Storage {
            name,
            known: None,
            published: None,
            pending: BTreeSet::new(),
            caps: BTreeMap::new(),
            nothing_caps: 0,
            configured: false,
            seen: false,
            dirty: false,
            changed: false,
        }
    }

    /// The combined cap of rule (1): `None` = no in-flight transaction,
    /// `Some(None)` = nothing publishable, `Some(Some(t))` = at most `t`.
    fn cap(&self) -> Option<Option<Tid>> {
        if self.nothing_caps > 0 {
            return Some(None);
        }
        self.caps.keys().next().map(|t| Some(*t))
    }

    fn cap_allows(&self, v: Tid) -> bool {
        match self.cap() {
            None => true,
            Some(None) => false,
            Some(Some(c)) => v <= c,
        }
    }

    fn add_cap(&mut self, cap: Option<Tid>) {
        match cap {
            None => self.nothing_caps += 1,
            Some(c) => *self.caps.entry(c).or_insert(0) += 1,
        }
    }

    fn remove_cap(&mut self, cap: Option<Tid>) {
        match cap {
            None => self.nothing_caps = self.nothing_caps.saturating_sub(1),
            Some(c) => {
                if let Some(n) = self.caps.get_mut(&c) {
                    *n -= 1;
                    if *n == 0 {
                        self.caps.remove(&c);
                    }
                }
            }
        }
    }
}

/// The coherency engine. See the module documentation.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    ids: HashMap<String, u32>,
    st: Vec<Storage>,
    /// Visit marks of the publishing search, parallel to `st`.
    smark: Vec<u64>,
    /// In-flight transactions reachable by their id (orphans are not).
    by_id: HashMap<String, u32>,
    txns: Vec<Option<Txn>>,
    free_txns: Vec<u32>,
    orphan_slots: Vec<u32>,
    committed: Vec<Option<Committed>>,
    free_committed: Vec<u32>,
    remembered: usize,
    pending_entries: usize,
    /// Every in-flight transaction by (begin instant, serial).
    by_age: BTreeSet<(Duration, u64, u32)>,
    /// In-flight transactions by the instant `tick` reports them next.
    watch: BTreeSet<(Duration, u64, u32)>,
    serial: u64,
    gen: u64,
    dirty: Vec<u32>,
    changed: Vec<u32>,
    /// The published point by name, brought up to date only when read.
    point: RefCell<PointCache>,
    bootstrap: BootstrapState,
    missing: usize,
    notices: Vec<Notice>,
    /// Kinds the caller muted, with the notices skipped since.
    muted: Vec<(NoticeKind, u64)>,
    counters: Counters,
    outcomes: Outcomes,
    scratch_st: Vec<u32>,
    scratch_c: Vec<u32>,
}

/// The published point keyed by name, and the storages whose value moved
/// since it was last brought up to date.
#[derive(Debug, Default)]
struct PointCache {
    map: Point,
    todo: Vec<u32>,
    queued: Vec<bool>,
}

impl PointCache {
    fn queue(&mut self, s: u32) {
        let i = s as usize;
        if self.queued.len() <= i {
            self.queued.resize(i + 1, false);
        }
        if !self.queued[i] {
            self.queued[i] = true;
            self.todo.push(s);
        }
    }
}

/// `'id'`: storage and transaction ids are opaque strings, often with
/// commas and brackets, so quotes keep them apart in a list.
fn q(s: &str) -> String {
    format!("'{s}'")
}

/// A TID as operators read it: integer (the wire form) and time.
fn ft(t: Tid) -> String {
    format!("{} ({})", t.0, t.rfc3339())
}

fn fopt(t: Option<Tid>) -> String {
    t.map(ft).unwrap_or_else(|| "nothing".to_string())
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        let mut e = Engine {
            cfg,
            ids: HashMap::new(),
            st: Vec::new(),
            smark: Vec::new(),
            by_id: HashMap::new(),
            txns: Vec::new(),
            free_txns: Vec::new(),
            orphan_slots: Vec::new(),
            committed: Vec::new(),
            free_committed: Vec::new(),
            remembered: 0,
            pending_entries: 0,
            by_age: BTreeSet::new(),
            watch: BTreeSet::new(),
            serial: 0,
            gen: 0,
            dirty: Vec::new(),
            changed: Vec::new(),
            point: RefCell::new(PointCache::default()),
            bootstrap: BootstrapState::NotStarted,
            missing: 0,
            notices: Vec::new(),
            muted: Vec::new(),
            counters: Counters::default(),
            outcomes: Outcomes::default(),
            scratch_st: Vec::new(),
            scratch_c: Vec::new(),
        };
        let names = e.cfg.storages.clone();
        for name in names {
            let s = e.intern(&name) as usize;
            if !e.st[s].configured {
                e.st[s].configured = true;
                e.missing += 1;
            }
        }
        e
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.ids.get(name) {
            return i;
        }
        let i = self.st.len() as u32;
        self.ids.insert(name.to_string(), i);
        self.st.push(Storage::new(name.to_string()));
        self.smark.push(0);
        i
    }

    /// The caller will not log more notices of `kind` for now (it is over
    /// its log budget): from here on they are only counted, not described,
    /// so a flood of anomalies costs no formatting.
    pub fn mute(&mut self, kind: NoticeKind) {
        if !self.muted.iter().any(|(k, _)| *k == kind) {
            self.muted.push((kind, 0));
        }
    }

    /// The kinds muted since the last call with how many notices each
    /// skipped; unmutes them all.
    pub fn take_muted(&mut self) -> Vec<(NoticeKind, u64)> {
        std::mem::take(&mut self.muted)
    }

    /// True (and counted) when notices of `kind` are muted.
    fn is_muted(&mut self, kind: NoticeKind) -> bool {
        match self.muted.iter_mut().find(|(k, _)| *k == kind) {
            Some(e) => {
                e.1 += 1;
                true
            }
            None => false,
        }
    }

    fn notice(&mut self, level: Level, kind: NoticeKind, message: String) {
        self.notices.push(Notice {
            level,
            kind,
            message,
        });
    }

    fn mark_dirty(&mut self, s: u32) {
        let st = &mut self.st[s as usize];
        if !st.dirty {
            st.dirty = true;
            self.dirty.push(s);
        }
    }

    fn names(&self, storages: impl IntoIterator<Item = u32>) -> String {
        let v: Vec<String> = storages
            .into_iter()
            .map(|s| q(&self.st[s as usize].name))
            .collect();
        if v.is_empty() {
            "no storage".to_string()
        } else {
            v.join(", ")
        }
    }

    /// Restart (§3.6): the last point of the status file becomes published
    /// and known. Call it once, before any event: new values still wait for
    /// bootstrap like on a fresh start.
    pub fn load_point(&mut self, p: &Point) {
        for (name, &tid) in p {
            let s = self.intern(name) as usize;
            let st = &mut self.st[s];
            st.known = st.known.max(Some(tid));
            if st.published < Some(tid) {
                st.published = Some(tid);
                self.point.get_mut().queue(s as u32);
            }
        }
    }

    /// BEGIN: `txn` starts its two-phase commit on `storages`.
    pub fn begin(&mut self, now: Now, txn: &str, storages: &[String]) {
        self.begin_from(now, txn, storages, None);
    }

    /// [`Engine::begin`] with the address the BEGIN came from, shown by
    /// `INFLIGHT` and in stale-transaction lines.
    pub fn begin_from(
        &mut self,
        now: Now,
        txn: &str,
        storages: &[String],
        client: Option<SocketAddr>,
    ) {
        if let Some(old) = self.by_id.remove(txn) {
            self.make_orphan(old);
        }
        let mut idx: Vec<u32> = storages.iter().map(|s| self.intern(s)).collect();
        idx.sort_unstable();
        idx.dedup();
        let parts = idx
            .into_iter()
            .map(|s| {
                let floor = self.st[s as usize].known;
                Part {
                    storage: s,
                    in_begin: true,
                    floor,
                    named: Named::No,
                    cap: floor,
                }
            })
            .collect();
        let slot = self.insert_txn(now, txn.to_string(), parts);
        if let Some(t) = self.txns[slot as usize].as_mut() {
            t.client = client;
        }
        self.by_id.insert(txn.to_string(), slot);
    }

    fn make_orphan(&mut self, slot: u32) {
        let (id, storages, age) = {
            let t = self.txns[slot as usize]
                .as_mut()
                .expect("by_id points at a live slot");
            t.orphan = true;
            (
                t.id.clone(),
                t.parts.iter().map(|p| p.storage).collect::<Vec<_>>(),
                t.begun,
            )
        };
        self.orphan_slots.push(slot);
        self.counters.orphans += 1;
        let msg = format!(
            "duplicate begin: transaction {} began again while its previous begin \
             (at monotonic {:.3}s, storages {}) never ended; the earlier one is kept \
             blocking those storages as an orphan (never guess an outcome); \
             restart the daemon to clear orphans once you know the earlier commit finished",
            q(&id),
            age.as_secs_f64(),
            self.names(storages)
        );
        self.notice(Level::Error, NoticeKind::DuplicateBegin, msg);
    }

    fn insert_txn(&mut self, now: Now, id: String, parts: Vec<Part>) -> u32 {
        for p in &parts {
            self.st[p.storage as usize].add_cap(p.cap);
        }
        self.serial += 1;
        let t = Txn {
            id,
            orphan: false,
            begun: now.mono,
            serial: self.serial,
            stale: false,
            next_report: now.mono + self.cfg.stale_after,
            client: None,
            parts,
            blocked: None,
        };
        let slot = match self.free_txns.pop() {
            Some(s) => s,
            None => {
                self.txns.push(None);
                (self.txns.len() - 1) as u32
            }
        };
        self.by_age.insert((t.begun, t.serial, slot));
        self.watch.insert((t.next_report, t.serial, slot));
        self.txns[slot as usize] = Some(t);
        slot
    }

    /// Removes an in-flight transaction, releasing its caps.
    fn remove_txn(&mut self, slot: u32) -> Txn {
        let t = self.txns[slot as usize]
            .take()
            .expect("caller holds a live slot");
        self.free_txns.push(slot);
        let (b, ser) = t.age_key();
        self.by_age.remove(&(b, ser, slot));
        self.watch.remove(&(t.next_report, ser, slot));
        if !t.orphan {
            self.by_id.remove(&t.id);
        }
        for p in &t.parts {
            self.st[p.storage as usize].remove_cap(p.cap);
            self.mark_dirty(p.storage);
        }
        t
    }

    /// Remembers a committed transaction for the no-split rule.
    fn remember(&mut self, tids: Vec<(u32, Tid)>) {
        if tids.is_empty() {
            return;
        }
        let slot = match self.free_committed.pop() {
            Some(s) => s,
            None => {
                self.committed.push(None);
                (self.committed.len() - 1) as u32
            }
        };
        for &(s, t) in &tids {
            self.st[s as usize].pending.insert((t, slot));
            self.mark_dirty(s);
        }
        self.pending_entries += tids.len();
        self.remembered += 1;
        self.committed[slot as usize] = Some(Committed { tids, mark: 0 });
    }

    /// COMMIT: `txn` finished its two-phase commit with these TIDs.
    pub fn commit(&mut self, now: Now, txn: &str, tids: &[(String, Tid)]) {
        let limit = now.unix + self.cfg.max_future.as_secs_f64();
        // Floors of storages that join must not see this commit's own TIDs.
        let items: Vec<(u32, Tid, Option<Tid>)> = tids
            .iter()
            .map(|(name, tid)| {
                let s = self.intern(name);
                (s, *tid, self.st[s as usize].known)
            })
            .collect();
        let mut classified = Vec::with_capacity(items.len());
        for (s, tid, known_before) in items {
            let named = self.classify(now, limit, txn, s, tid);
            classified.push((s, named, known_before));
        }
        match self.by_id.get(txn) {
            Some(&slot) => {
                self.apply_commit(slot, txn, &classified, true);
            }
            None => {
                self.counters.unknown_transactions += 1;
                if !self.is_muted(NoticeKind::UnknownTransaction) {
                    let list: Vec<String> = tids
                        .iter()
                        .map(|(s, t)| format!("{}: {}", q(s), t.0))
                        .collect();
                    let msg = format!(
                        "commit of unknown transaction {} ({}): it is not in flight (its begin was \
                         not seen, typically just after start-up); its TIDs raise the known values \
                         and it is remembered as a committed transaction",
                        q(txn),
                        list.join(", ")
                    );
                    self.notice(Level::Warn, NoticeKind::UnknownTransaction, msg);
                }
                // Same handling as a begun transaction, so a refused TID or
                // two values for one storage keep it blocking.
                // It is never reachable by its id: marked orphan from the
                // start so ending it leaves `by_id` alone.
                let slot = self.insert_txn(now, txn.to_string(), Vec::new());
                if let Some(t) = self.txns[slot as usize].as_mut() {
                    t.orphan = true;
                }
                self.apply_commit(slot, txn, &classified, false);
                if self.txns[slot as usize].is_some() {
                    self.orphan_slots.push(slot);
                    self.counters.orphans += 1;
                }
            }
        }
        self.transaction_ended();
    }

    /// Decides what one reported TID is worth, raising `known` when accepted.
    fn classify(&mut self, now: Now, limit: f64, txn: &str, s: u32, tid: Tid) -> Named {
        let secs = tid.unix_seconds();
        if secs > limit {
            self.counters.future_tids += 1;
            let msg = format!(
                "future tid refused: transaction {} reported tid {} on storage {}, \
                 {:.0} s ahead of this host's clock (limit {:.0} s); the transaction keeps \
                 blocking its storages; check the clocks of the ZEO server and of this host",
                q(txn),
                ft(tid),
                q(&self.st[s as usize].name),
                secs - now.unix,
                self.cfg.max_future.as_secs_f64()
            );
            self.notice(Level::Error, NoticeKind::FutureTid, msg);
            return Named::Rejected(tid);
        }
        self.see(s);
        if let Some(p) = self.st[s as usize].published.filter(|p| tid <= *p) {
            self.counters.decreasing_updates += 1;
            if !self.is_muted(NoticeKind::DecreasingUpdate) {
                let msg = format!(
                    "decreasing update ignored: transaction {} reported tid {} on storage {} \
                     which is not above the published value {}; backups taken since that value \
                     was published may hold an incomplete transaction; the rest of the commit applies",
                    q(txn),
                    ft(tid),
                    q(&self.st[s as usize].name),
                    ft(p)
                );
                self.notice(Level::Critical, NoticeKind::DecreasingUpdate, msg);
            }
            return Named::Decreasing(tid);
        }
        let st = &mut self.st[s as usize];
        st.known = st.known.max(Some(tid));
        Named::Accepted(tid)
    }

    fn see(&mut self, s: u32) {
        let st = &mut self.st[s as usize];
        if !st.seen {
            st.seen = true;
            if st.configured {
                self.missing -= 1;
            }
        }
    }

    /// Applies classified reports to the in-flight transaction in `slot`;
    /// ends it when every storage is accounted for and nothing contradicts.
    fn apply_commit(
        &mut self,
        slot: u32,
        txn: &str,
        items: &[(u32, Named, Option<Tid>)],
        begun: bool,
    ) {
        let mut joined = Vec::new();
        let mut conflicts = Vec::new();
        let mut refused = false;
        {
            // Disjoint fields: the transaction and the storages' cap sets.
            let t = self.txns[slot as usize].as_mut().expect("live slot");
            let sts = &mut self.st;
            for &(s, named, known_before) in items {
                let pos = match t.parts.binary_search_by_key(&s, |p| p.storage) {
                    Ok(i) => i,
                    Err(i) => {
                        t.parts.insert(
                            i,
                            Part {
                                storage: s,
                                in_begin: !begun,
                                floor: known_before,
                                named: Named::No,
                                cap: known_before,
                            },
                        );
                        sts[s as usize].add_cap(known_before);
                        if begun {
                            joined.push(s);
                        }
                        i
                    }
                };
                let p = &mut t.parts[pos];
                // The same TID again is a repeat, whatever it was classified
                // as then (the point may have moved meanwhile).
                match (p.named, named) {
                    (Named::No, n) => p.named = n,
                    (a, b) if a.tid() == b.tid() => {}
                    (a, b) => conflicts.push((s, a, b)),
                }
                match named {
                    Named::Accepted(v) => {
                        let new_cap = p.cap.min(v.0.checked_sub(1).map(Tid));
                        if new_cap != p.cap {
                            sts[s as usize].remove_cap(p.cap);
                            sts[s as usize].add_cap(new_cap);
                            p.cap = new_cap;
                        }
                    }
                    Named::Rejected(_) => refused = true,
                    Named::Decreasing(_) | Named::No => {}
                }
            }
        }

        let name_list = |e: &Engine, v: &[u32]| e.names(v.iter().copied());
        if !joined.is_empty() {
            self.counters.extra_storages += 1;
            let msg = format!(
                "extra storages: transaction {} committed on {} which its begin did not \
                 name; they join the transaction (client bug: report it)",
                q(txn),
                name_list(self, &joined)
            );
            self.notice(Level::Warn, NoticeKind::ExtraStorages, msg);
        }
        if !conflicts.is_empty() {
            self.counters.conflicting_outcomes += 1;
            let desc: Vec<String> = conflicts
                .iter()
                .map(|(s, a, b)| {
                    format!(
                        "{} first {} then {}",
                        q(&self.st[*s as usize].name),
                        describe(*a),
                        describe(*b)
                    )
                })
                .collect();
            let reason = format!("conflicting commit reports ({})", desc.join("; "));
            let msg = format!(
                "conflicting outcome: transaction {} reported {}; it keeps blocking its \
                 storages until the daemon restarts (never guess an outcome)",
                q(txn),
                desc.join("; ")
            );
            self.notice(Level::Error, NoticeKind::ConflictingOutcome, msg);
            self.block(slot, reason);
        }
        if refused {
            self.block(
                slot,
                "a commit tid was refused as being in the future".into(),
            );
        }
        let t = self.txns[slot as usize].as_ref().expect("live slot");
        let missing: Vec<u32> = t
            .parts
            .iter()
            .filter(|p| p.named == Named::No)
            .map(|p| p.storage)
            .collect();
        if t.blocked.is_none() && missing.is_empty() {
            if begun {
                self.outcomes.committed += 1;
            }
            let t = self.remove_txn(slot);
            let tids = t
                .parts
                .iter()
                .filter_map(|p| match p.named {
                    Named::Accepted(v) => Some((p.storage, v)),
                    _ => None,
                })
                .collect();
            self.remember(tids);
        } else if !missing.is_empty() {
            self.counters.partial_commits += 1;
            let done: Vec<u32> = t
                .parts
                .iter()
                .filter(|p| p.named != Named::No)
                .map(|p| p.storage)
                .collect();
            let msg = format!(
                "partial commit: transaction {} committed on {} but not on {}; it stays in \
                 flight and keeps blocking those storages until a commit names the rest \
                 (the reported TIDs raise the known values)",
                q(txn),
                name_list(self, &done),
                name_list(self, &missing)
            );
            self.notice(Level::Error, NoticeKind::PartialCommit, msg);
        }
    }

    fn block(&mut self, slot: u32, reason: String) {
        if let Some(t) = self.txns[slot as usize].as_mut() {
            if t.blocked.is_none() {
                t.blocked = Some(reason);
            }
        }
    }

    /// ABORT: `txn` gave up its two-phase commit.
    pub fn abort(&mut self, _now: Now, txn: &str) {
        let Some(&slot) = self.by_id.get(txn) else {
            self.counters.unknown_transactions += 1;
            if !self.is_muted(NoticeKind::UnknownTransaction) {
                let msg = format!(
                    "abort of unknown transaction {}: it is not in flight (its begin was not \
                     seen, typically just after start-up); ignored",
                    q(txn)
                );
                self.notice(Level::Warn, NoticeKind::UnknownTransaction, msg);
            }
            return;
        };
        let t = self.txns[slot as usize].as_ref().expect("live slot");
        let reported: Vec<u32> = t
            .parts
            .iter()
            .filter(|p| p.named != Named::No)
            .map(|p| p.storage)
            .collect();
        if reported.is_empty() {
            self.remove_txn(slot);
            self.outcomes.aborted += 1;
        } else {
            self.counters.conflicting_outcomes += 1;
            let msg = format!(
                "conflicting outcome: abort of transaction {} after a commit was reported on \
                 {}; what committed is unknown, so it keeps blocking its storages until the \
                 daemon restarts (never guess an outcome)",
                q(txn),
                self.names(reported)
            );
            self.notice(Level::Error, NoticeKind::ConflictingOutcome, msg);
            self.block(slot, "abort after a commit was reported".into());
        }
        self.transaction_ended();
    }

    /// Bootstrap progress and recomputation, at every COMMIT and at every
    /// ABORT of a transaction in flight.
    fn transaction_ended(&mut self) {
        match self.bootstrap {
            BootstrapState::Complete => self.recompute(),
            BootstrapState::NotStarted => {
                self.bootstrap = BootstrapState::InProgress;
                let missing = self.bootstrap_missing();
                let msg = if missing.is_empty() {
                    "bootstrap started: every configured storage has committed since start-up"
                        .to_string()
                } else {
                    format!(
                        "bootstrap started: waiting for a commit on {} configured storage(s): {}",
                        missing.len(),
                        missing.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
                    )
                };
                self.notice(Level::Info, NoticeKind::BootstrapStarted, msg);
                self.check_bootstrap_done();
            }
            BootstrapState::InProgress => self.check_bootstrap_done(),
        }
    }

    fn check_bootstrap_done(&mut self) {
        if self.missing == 0 {
            self.bootstrap = BootstrapState::Complete;
            self.notice(
                Level::Info,
                NoticeKind::BootstrapComplete,
                "bootstrap complete: the coherency point is recomputed from the next \
                 transaction end on"
                    .to_string(),
            );
        }
    }

    /// Timers: reports in-flight transactions older than `stale_after`,
    /// once when they become stale, then each time their age doubles (at
    /// most a day apart). They keep blocking.
    pub fn tick(&mut self, now: Now) {
        while let Some(&(deadline, serial, slot)) = self.watch.first() {
            if deadline > now.mono {
                break;
            }
            self.watch.remove(&(deadline, serial, slot));
            let Some(t) = self.txns[slot as usize].as_mut() else {
                continue;
            };
            if t.serial != serial || t.next_report != deadline {
                continue;
            }
            let first = !t.stale;
            t.stale = true;
            // From the schedule, not from `now`, so a late tick does not
            // stretch the intervals; never less than a second apart.
            let scheduled = deadline.saturating_sub(t.begun);
            let step = scheduled
                .min(Duration::from_secs(86_400))
                .max(Duration::from_secs(1));
            t.next_report = deadline + step;
            self.watch.insert((t.next_report, serial, slot));
            let id = t.id.clone();
            let orphan = t.orphan;
            let client = t.client;
            let age = now.mono.saturating_sub(t.begun);
            let parts: Vec<u32> = t.parts.iter().map(|p| p.storage).collect();
            if first {
                self.counters.stale += 1;
            }
            let msg = format!(
                "{}: {}{}{} has been in flight for {} on {}; it keeps blocking those storages \
                 (never guess an outcome); once you know how its commit ended (its client is \
                 gone, or the databases were checked), end it with `tidstorage resolve {}`; \
                 reported again each time its age doubles",
                if first {
                    "stale transaction"
                } else {
                    "still stale"
                },
                if orphan { "orphan " } else { "" },
                q(&id),
                client.map(|c| format!(" from {c}")).unwrap_or_default(),
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                self.names(parts),
                shell_word(&id)
            );
            self.notice(Level::Error, NoticeKind::Stale, msg);
        }
    }

    /// When `tick` next has something to do (monotonic instant).
    pub fn next_deadline(&self) -> Option<Duration> {
        self.watch.first().map(|k| k.0)
    }

    /// The published coherency point (the DUMP answer).
    ///
    /// A name-keyed map costs O(log storages) string comparisons per
    /// update, so events only queue the storages that moved and reading
    /// applies them. Holding the returned guard borrows the engine, so no
    /// event can run meanwhile.
    pub fn published(&self) -> Ref<'_, Point> {
        let stale = !self.point.borrow().todo.is_empty();
        if stale {
            // Cannot fail: a queued update means an event (`&mut self`) ran
            // after every earlier guard was dropped.
            let mut pc = self.point.borrow_mut();
            let PointCache { map, todo, queued } = &mut *pc;
            for s in todo.drain(..) {
                queued[s as usize] = false;
                let st = &self.st[s as usize];
                if let Some(v) = st.published {
                    match map.get_mut(st.name.as_str()) {
                        Some(p) => *p = v,
                        None => {
                            map.insert(st.name.clone(), v);
                        }
                    }
                }
            }
        }
        Ref::map(self.point.borrow(), |pc| &pc.map)
    }

    /// Storages whose published value changed since the last call, sorted.
    pub fn take_changed(&mut self) -> Vec<(String, Tid)> {
        let mut out: Vec<(String, Tid)> = Vec::with_capacity(self.changed.len());
        for s in std::mem::take(&mut self.changed) {
            let st = &mut self.st[s as usize];
            st.changed = false;
            if let Some(p) = st.published {
                out.push((st.name.clone(), p));
            }
        }
        out.sort();
        out
    }

    pub fn bootstrap_state(&self) -> BootstrapState {
        self.bootstrap
    }

    /// Configured storages with no COMMIT seen since start-up, sorted.
    pub fn bootstrap_missing(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .st
            .iter()
            .filter(|s| s.configured && !s.seen)
            .map(|s| s.name.clone())
            .collect();
        v.sort();
        v
    }

    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrap == BootstrapState::Complete
    }

    pub fn drain_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn outcomes(&self) -> &Outcomes {
        &self.outcomes
    }

    /// In-flight transactions already reported stale.
    pub fn stale_count(&self) -> usize {
        self.txns.iter().flatten().filter(|t| t.stale).count()
    }

    /// Orphans only (in-flight transactions no message can end by id).
    pub fn orphan_count(&self) -> usize {
        self.orphan_slots.len()
    }

    /// Every storage seen or configured: (id, known, published), in no
    /// particular order. Walks all storages: for scrapes, not per event.
    pub fn storage_points(&self) -> impl Iterator<Item = (&str, Option<Tid>, Option<Tid>)> {
        self.st
            .iter()
            .map(|s| (s.name.as_str(), s.known, s.published))
    }

    /// In-flight transactions, orphans included.
    pub fn in_flight_count(&self) -> usize {
        self.by_age.len()
    }

    pub fn oldest_in_flight_age(&self, now: Now) -> Option<Duration> {
        self.by_age
            .first()
            .map(|(b, _, _)| now.mono.saturating_sub(*b))
    }

    /// Blocking entries no message can end except `resolve` (a restart
    /// clears them too).
    pub fn orphans(&self, now: Now) -> Vec<InFlightInfo> {
        // The holds walk covers every storage: only when there is an orphan.
        if self.orphan_slots.is_empty() {
            return Vec::new();
        }
        let holds = self.holds();
        self.orphan_slots
            .iter()
            .filter_map(|&s| Some((s, self.txns[s as usize].as_ref()?)))
            .map(|(s, t)| self.info(now, s, t, &holds))
            .collect()
    }

    /// In-flight transactions already reported stale, oldest first.
    pub fn stale(&self, now: Now) -> Vec<InFlightInfo> {
        if self.stale_count() == 0 {
            return Vec::new();
        }
        let holds = self.holds();
        self.by_age
            .iter()
            .filter_map(|&(_, _, s)| Some((s, self.txns[s as usize].as_ref()?)))
            .take_while(|(_, t)| {
                now.mono.saturating_sub(t.begun) >= self.cfg.stale_after || t.stale
            })
            .filter(|(_, t)| t.stale)
            .map(|(s, t)| self.info(now, s, t, &holds))
            .collect()
    }

    /// Committed transactions still remembered for the no-split rule.
    pub fn remembered_count(&self) -> usize {
        self.remembered
    }

    pub fn memory_stats(&self) -> MemoryStats {
        MemoryStats {
            storages: self.st.len(),
            in_flight: self.by_age.len(),
            orphans: self.orphan_slots.len(),
            remembered: self.remembered,
            pending_entries: self.pending_entries,
            txn_slots: self.txns.len(),
            committed_slots: self.committed.len(),
            notices_queued: self.notices.len(),
        }
    }
}

impl Named {
    fn tid(self) -> Option<Tid> {
        match self {
            Named::No => None,
            Named::Accepted(t) | Named::Decreasing(t) | Named::Rejected(t) => Some(t),
        }
    }
}

/// `id` as one shell word, for a command line quoted in the log.
fn shell_word(id: &str) -> String {
    if !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@%+=,".contains(&b))
    {
        id.to_string()
    } else {
        format!("'{}'", id.replace('\'', "'\\''"))
    }
}

fn describe(n: Named) -> String {
    match n {
        Named::No => "nothing".to_string(),
        Named::Accepted(t) => format!("tid {}", t.0),
        Named::Decreasing(t) => format!("tid {} (decreasing, ignored)", t.0),
        Named::Rejected(t) => format!("tid {} (future, refused)", t.0),
    }
}
