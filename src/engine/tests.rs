//! The scenarios of SPEC §3.3, one test each, then the anomalies of §3.4,
//! bootstrap (§3.5), restart (§3.6) and a long run bounded in memory.
//!
//! Setup for every scenario but A and B: an engine with no configured
//! storage, bootstrapped by a transaction `setup` that begins on no storage
//! and aborts. Its end starts bootstrap, which completes at once (nothing to
//! wait for), and it adds no storage and no value, so every DUMP of the
//! table is what the engine publishes. Scenario B shows that the end which
//! completes bootstrap does not itself publish.

use std::time::Duration;

use super::*;

pub(super) const UNIX_NOW: f64 = 1_700_000_000.0;

/// Drives an engine, checking invariants after every event.
pub(super) struct H {
    pub e: Engine,
    pub secs: u64,
}

pub(super) fn p(entries: &[(&str, u64)]) -> Point {
    entries
        .iter()
        .map(|(s, t)| (s.to_string(), Tid(*t)))
        .collect()
}

impl H {
    pub fn new(configured: &[&str]) -> H {
        H {
            e: Engine::new(EngineConfig {
                storages: configured.iter().map(|s| s.to_string()).collect(),
                ..EngineConfig::default()
            }),
            secs: 0,
        }
    }

    /// Bootstrapped, empty, no configured storage (see the module docs).
    pub fn ready() -> H {
        let mut h = H::new(&[]);
        h.begin("setup", &[]);
        h.abort("setup");
        assert!(h.e.is_bootstrapped());
        assert_eq!(h.dump(), p(&[]));
        h.e.drain_notices();
        h
    }

    pub fn now(&self) -> Now {
        Now {
            mono: Duration::from_secs(self.secs),
            unix: UNIX_NOW + self.secs as f64,
        }
    }

    pub fn begin(&mut self, x: &str, storages: &[&str]) {
        let v: Vec<String> = storages.iter().map(|s| s.to_string()).collect();
        self.e.begin(self.now(), x, &v);
        self.e.check_invariants();
    }

    pub fn commit(&mut self, x: &str, tids: &[(&str, u64)]) {
        let v: Vec<(String, Tid)> = tids.iter().map(|(s, t)| (s.to_string(), Tid(*t))).collect();
        self.e.commit(self.now(), x, &v);
        self.e.check_invariants();
    }

    pub fn abort(&mut self, x: &str) {
        self.e.abort(self.now(), x);
        self.e.check_invariants();
    }

    pub fn dump(&self) -> Point {
        self.e.published().clone()
    }

    fn kinds(&mut self) -> Vec<NoticeKind> {
        self.e.drain_notices().into_iter().map(|n| n.kind).collect()
    }
}

#[test]
fn scenario_a() {
    let h = H::new(&[]);
    assert_eq!(h.dump(), p(&[]));
    assert_eq!(h.e.bootstrap_state(), BootstrapState::NotStarted);
}

#[test]
fn scenario_b() {
    let mut h = H::new(&["s0"]);
    h.begin("t1", &["s0"]);
    h.commit("t1", &[("s0", 1)]);
    assert_eq!(h.dump(), p(&[]));
    // "Wait until BOOTSTRAPED=1": s0 committed, so the end of t1 started and
    // completed bootstrap, but did not publish.
    assert!(h.e.is_bootstrapped());
    assert_eq!(h.dump(), p(&[]));
    h.begin("t2", &["s1"]);
    h.commit("t2", &[("s1", 1)]);
    assert_eq!(h.dump(), p(&[("s0", 1), ("s1", 1)]));
    assert_eq!(
        h.kinds(),
        vec![NoticeKind::BootstrapStarted, NoticeKind::BootstrapComplete]
    );
}

#[test]
fn scenario_c() {
    let mut h = H::ready();
    h.begin("t1", &["s1"]);
    assert_eq!(h.dump(), p(&[]));
    h.commit("t1", &[("s1", 1)]);
    assert_eq!(h.dump(), p(&[("s1", 1)]));
}

#[test]
fn scenario_d() {
    let mut h = H::ready();
    h.begin("t1", &["s1"]);
    h.abort("t1");
    assert_eq!(h.dump(), p(&[]));
    assert_eq!(h.e.in_flight_count(), 0);
}

/// E's first three steps, shared by E, F and G.
fn e_prefix() -> H {
    let mut h = H::ready();
    h.begin("t1", &["s1", "s2"]);
    h.begin("t2", &["s1", "s3"]);
    h.commit("t2", &[("s1", 2), ("s3", 1)]);
    assert_eq!(h.dump(), p(&[]));
    h
}

#[test]
fn scenario_e() {
    let mut h = e_prefix();
    h.commit("t1", &[("s1", 1), ("s2", 1)]);
    assert_eq!(h.dump(), p(&[("s1", 2), ("s2", 1), ("s3", 1)]));
    assert_eq!(h.e.remembered_count(), 0);
}

fn f_prefix() -> H {
    let mut h = e_prefix();
    h.begin("t3", &["s3"]);
    h.commit("t3", &[("s3", 1)]);
    assert_eq!(h.dump(), p(&[]));
    h
}

#[test]
fn scenario_f() {
    let mut h = f_prefix();
    h.commit("t1", &[("s1", 1), ("s2", 2)]);
    assert_eq!(h.dump(), p(&[("s1", 2), ("s2", 2), ("s3", 1)]));
}

#[test]
fn scenario_g() {
    let mut h = f_prefix();
    h.abort("t1");
    assert_eq!(h.dump(), p(&[("s1", 2), ("s3", 1)]));
}

#[test]
fn scenario_h() {
    let mut h = H::ready();
    h.begin("t1", &["s1"]);
    h.begin("t2", &["s1", "s2"]);
    h.commit("t1", &[("s1", 2)]);
    assert_eq!(h.dump(), p(&[]));
    h.commit("t2", &[("s1", 1), ("s2", 1)]);
    assert_eq!(h.dump(), p(&[("s1", 2), ("s2", 1)]));
}

#[test]
fn scenario_i() {
    let mut h = H::ready();
    h.begin("t1", &["s1"]);
    h.begin("t2", &["s2"]);
    h.commit("t1", &[("s1", 1)]);
    assert_eq!(h.dump(), p(&[("s1", 1)]));
    h.commit("t2", &[("s2", 1)]);
    assert_eq!(h.dump(), p(&[("s1", 1), ("s2", 1)]));
}

#[test]
fn scenario_j() {
    let mut h = H::ready();
    h.begin("t1", &["s1"]);
    h.begin("t2", &["s2"]);
    h.begin("t3", &["s1", "s2"]);
    h.commit("t1", &[("s1", 1)]);
    assert_eq!(h.dump(), p(&[]));
    h.commit("t2", &[("s2", 2)]);
    assert_eq!(h.dump(), p(&[]));
    h.commit("t3", &[("s1", 2), ("s2", 2)]);
    assert_eq!(h.dump(), p(&[("s1", 2), ("s2", 2)]));
}

#[test]
fn scenario_k() {
    let mut h = H::ready();
    let mut previous = p(&[]);
    for n in 1..=2u64 {
        h.begin("t1", &["s1"]);
        assert_eq!(h.dump(), previous);
        h.commit("t1", &[("s1", n)]);
        previous = p(&[("s1", n)]);
        assert_eq!(h.dump(), previous);
    }
    assert_eq!(h.dump(), p(&[("s1", 2)]));
    // Reusing an id after its commit ended is normal, not an orphan.
    assert_eq!(h.e.counters().orphans, 0);
    assert!(h.kinds().is_empty());
}

#[test]
fn scenario_l1() {
    let mut h = H::ready();
    h.begin("t0", &["a", "b"]);
    h.begin("t1", &["b"]);
    h.commit("t0", &[("a", 1), ("b", 1)]);
    // t1 began when nothing was known on b: nothing on b is safe yet.
    assert_eq!(h.dump(), p(&[]));
    for i in 2..=1001u64 {
        h.begin(&format!("t{i}"), &["b"]);
        h.commit(&format!("t{}", i - 1), &[("b", i)]);
        // The newest commit waits behind the transaction that began just
        // before it; everything older is published.
        assert_eq!(h.dump(), p(&[("a", 1), ("b", i - 1)]), "after link {i}");
        assert!(h.e.remembered_count() <= 1);
    }
    h.commit("t1001", &[("b", 1002)]);
    assert_eq!(h.dump(), p(&[("a", 1), ("b", 1002)]));
}

#[test]
fn scenario_l2() {
    let mut h = H::ready();
    h.begin("t1", &["a", "b"]);
    h.commit("t1", &[("a", 5), ("b", 5)]);
    assert_eq!(h.dump(), p(&[("a", 5), ("b", 5)]));
    h.begin("t2", &["b"]);
    h.begin("t3", &["a"]);
    h.commit("t3", &[("a", 6)]);
    assert_eq!(h.dump(), p(&[("a", 6), ("b", 5)]));
}

#[test]
fn bootstrap_waits_for_every_configured_storage() {
    let mut h = H::new(&["s0", "s1"]);
    assert_eq!(h.e.bootstrap_missing(), vec!["s0", "s1"]);
    h.begin("t1", &["s0"]);
    assert_eq!(h.e.bootstrap_state(), BootstrapState::NotStarted);
    h.commit("t1", &[("s0", 1)]);
    assert_eq!(h.e.bootstrap_state(), BootstrapState::InProgress);
    assert_eq!(h.e.bootstrap_missing(), vec!["s1"]);
    let n = h.e.drain_notices();
    assert_eq!(n.len(), 1);
    assert!(n[0].message.contains("'s1'"), "{}", n[0].message);
    // An unconfigured storage does not help.
    h.begin("t2", &["other"]);
    h.commit("t2", &[("other", 1)]);
    assert_eq!(h.e.bootstrap_state(), BootstrapState::InProgress);
    h.begin("t3", &["s1"]);
    h.commit("t3", &[("s1", 1)]);
    assert!(h.e.is_bootstrapped());
    assert_eq!(h.dump(), p(&[]));
    assert_eq!(h.kinds(), vec![NoticeKind::BootstrapComplete]);
    h.begin("t4", &["s0"]);
    h.commit("t4", &[("s0", 2)]);
    assert_eq!(h.dump(), p(&[("other", 1), ("s0", 2), ("s1", 1)]));
}

#[test]
fn restart_serves_the_loaded_point_and_waits_for_bootstrap() {
    let mut h = H::new(&["s1"]);
    h.e.load_point(&p(&[("s1", 10), ("s2", 7)]));
    assert_eq!(h.dump(), p(&[("s1", 10), ("s2", 7)]));
    h.e.check_invariants();
    h.begin("t1", &["s2"]);
    h.commit("t1", &[("s2", 8)]);
    // Bootstrap is waiting for s1: the loaded point stays.
    assert_eq!(h.dump(), p(&[("s1", 10), ("s2", 7)]));
    h.begin("t2", &["s1"]);
    h.commit("t2", &[("s1", 11)]);
    assert!(h.e.is_bootstrapped());
    h.begin("t3", &["s1"]);
    h.commit("t3", &[("s1", 12)]);
    assert_eq!(h.dump(), p(&[("s1", 12), ("s2", 8)]));
    // Nothing was written for the loaded values themselves.
    assert_eq!(
        h.e.take_changed(),
        vec![("s1".to_string(), Tid(12)), ("s2".to_string(), Tid(8))]
    );
    assert!(h.e.take_changed().is_empty());
}

#[test]
fn decreasing_update_is_critical_and_the_rest_applies() {
    let mut h = H::ready();
    h.begin("t1", &["a", "b"]);
    h.commit("t1", &[("a", 5), ("b", 5)]);
    h.e.drain_notices();
    h.begin("t2", &["a", "b"]);
    h.commit("t2", &[("a", 4), ("b", 6)]);
    assert_eq!(h.dump(), p(&[("a", 5), ("b", 6)]));
    assert_eq!(h.e.counters().decreasing_updates, 1);
    let n = h.e.drain_notices();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].level, Level::Critical);
    assert_eq!(n[0].kind, NoticeKind::DecreasingUpdate);
    for needle in ["'t2'", "'a'", "4 (", "5 (", "incomplete transaction"] {
        assert!(
            n[0].message.contains(needle),
            "{needle} in {}",
            n[0].message
        );
    }
}

#[test]
fn unknown_commit_raises_known_and_is_never_split() {
    let mut h = H::ready();
    h.begin("t1", &["a"]);
    // Committed on a and b without a BEGIN seen; a is still capped by t1.
    h.commit("ghost", &[("a", 2), ("b", 2)]);
    assert_eq!(h.e.counters().unknown_transactions, 1);
    // b alone would be publishable, but ghost must not be split.
    assert_eq!(h.dump(), p(&[]));
    h.commit("t1", &[("a", 1)]);
    assert_eq!(h.dump(), p(&[("a", 2), ("b", 2)]));
    // A later BEGIN on b starts from the raised known value.
    h.begin("t3", &["b"]);
    h.begin("t4", &["b"]);
    h.commit("t4", &[("b", 4)]);
    h.commit("t3", &[("b", 3)]);
    assert_eq!(h.dump(), p(&[("a", 2), ("b", 4)]));
    h.abort("nobody");
    assert_eq!(h.e.counters().unknown_transactions, 2);
    let kinds = h.kinds();
    assert_eq!(kinds, vec![NoticeKind::UnknownTransaction; 2]);
}

#[test]
fn duplicate_begin_keeps_the_earlier_one_blocking_as_orphan() {
    let mut h = H::ready();
    h.begin("t1", &["a", "b"]);
    h.begin("t1", &["a"]);
    assert_eq!(h.e.counters().orphans, 1);
    let n = h.e.drain_notices();
    assert_eq!(n[0].kind, NoticeKind::DuplicateBegin);
    assert_eq!(n[0].level, Level::Error);
    assert!(n[0].message.contains("'t1'") && n[0].message.contains("'a', 'b'"));
    h.commit("t1", &[("a", 1)]);
    // The orphan still blocks a and b (it may have committed on them).
    assert_eq!(h.dump(), p(&[]));
    assert_eq!(h.e.orphans(h.now()).len(), 1);
    assert_eq!(h.e.in_flight_count(), 1);
    assert!(h.e.state_dump(h.now()).contains("[orphan]"));
}

#[test]
fn partial_commit_blocks_until_the_rest_is_reported() {
    let mut h = H::ready();
    h.begin("t1", &["a", "b"]);
    h.begin("t2", &["c"]);
    h.commit("t1", &[("a", 1)]);
    assert_eq!(h.e.counters().partial_commits, 1);
    let n = h.e.drain_notices();
    assert_eq!(n[0].kind, NoticeKind::PartialCommit);
    assert!(n[0].message.contains("but not on 'b'"), "{}", n[0].message);
    h.commit("t2", &[("c", 1)]);
    assert_eq!(h.dump(), p(&[("c", 1)]));
    // Other traffic on a does not pass the partial transaction.
    h.begin("t3", &["a"]);
    h.commit("t3", &[("a", 2)]);
    assert_eq!(h.dump(), p(&[("c", 1)]));
    // The rest arrives: the transaction completes with both values.
    h.commit("t1", &[("b", 1)]);
    assert_eq!(h.dump(), p(&[("a", 2), ("b", 1), ("c", 1)]));
}

#[test]
fn abort_after_a_partial_commit_keeps_blocking() {
    let mut h = H::ready();
    h.begin("t1", &["a", "b"]);
    h.commit("t1", &[("a", 1)]);
    h.abort("t1");
    assert_eq!(h.e.counters().conflicting_outcomes, 1);
    h.begin("t2", &["b"]);
    h.commit("t2", &[("b", 2)]);
    assert_eq!(h.dump(), p(&[]));
    assert!(h
        .e
        .state_dump(h.now())
        .contains("blocked: abort after a commit"));
}

#[test]
fn two_values_for_one_storage_keep_blocking() {
    let mut h = H::ready();
    h.begin("t1", &["a", "b"]);
    h.commit("t1", &[("a", 1)]);
    h.commit("t1", &[("a", 3), ("b", 1)]);
    assert_eq!(h.e.counters().conflicting_outcomes, 1);
    assert_eq!(h.dump(), p(&[]));
    assert_eq!(h.e.in_flight_count(), 1);
}

#[test]
fn extra_storages_join_the_transaction() {
    let mut h = H::ready();
    h.begin("t0", &["c"]);
    h.begin("t1", &["a"]);
    h.commit("t1", &[("a", 1), ("c", 1)]);
    assert_eq!(h.e.counters().extra_storages, 1);
    assert_eq!(h.kinds(), vec![NoticeKind::ExtraStorages]);
    // t1 counts on c: a must wait with it behind t0's floor on c.
    assert_eq!(h.dump(), p(&[]));
    h.abort("t0");
    assert_eq!(h.dump(), p(&[("a", 1), ("c", 1)]));
}

#[test]
fn future_tid_is_refused_and_the_transaction_keeps_blocking() {
    let mut h = H::ready();
    let future = Tid::from_unix_seconds(UNIX_NOW + 7200.0);
    h.begin("t1", &["a", "b"]);
    let v = vec![("a".to_string(), Tid(1)), ("b".to_string(), future)];
    h.e.commit(h.now(), "t1", &v);
    h.e.check_invariants();
    assert_eq!(h.e.counters().future_tids, 1);
    let n = h.e.drain_notices();
    assert_eq!(n[0].kind, NoticeKind::FutureTid);
    assert!(n[0].message.contains("7200 s ahead"), "{}", n[0].message);
    assert_eq!(h.dump(), p(&[]));
    // The refused TID did not raise known on b: a later BEGIN there still
    // starts from nothing, and commits on b stay behind t1.
    h.begin("t2", &["b"]);
    h.commit("t2", &[("b", 5)]);
    assert_eq!(h.dump(), p(&[]));
    // A TID just inside the limit is fine.
    let near = Tid::from_unix_seconds(UNIX_NOW + 3000.0);
    h.begin("t3", &["z"]);
    h.e.commit(h.now(), "t3", &[("z".to_string(), near)]);
    assert_eq!(h.dump().get("z"), Some(&near));
}

#[test]
fn stale_is_reported_when_stale_then_at_a_slowing_interval_and_keeps_blocking() {
    let mut h = H::ready();
    let peer: std::net::SocketAddr = "10.0.0.7:51234".parse().unwrap();
    h.e.begin_from(h.now(), "t1", &["a".to_string()], Some(peer));
    assert_eq!(h.e.next_deadline(), Some(Duration::from_secs(600)));
    h.secs = 599;
    h.e.tick(h.now());
    assert!(h.e.drain_notices().is_empty());
    h.secs = 600;
    h.e.tick(h.now());
    h.e.check_invariants();
    let n = h.e.drain_notices();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].kind, NoticeKind::Stale);
    assert!(n[0].message.contains("'t1'") && n[0].message.contains("'a'"));
    assert!(
        n[0].message.contains("from 10.0.0.7:51234"),
        "{}",
        n[0].message
    );
    assert!(
        n[0].message.starts_with("stale transaction"),
        "{}",
        n[0].message
    );
    // Then each time its age doubles: 20 min, 40 min, 80 min...
    assert_eq!(h.e.next_deadline(), Some(Duration::from_secs(1200)));
    h.secs = 1199;
    h.e.tick(h.now());
    assert!(h.e.drain_notices().is_empty());
    h.secs = 1200;
    h.e.tick(h.now());
    let n = h.e.drain_notices();
    assert_eq!(n.len(), 1);
    assert!(n[0].message.starts_with("still stale"), "{}", n[0].message);
    assert_eq!(h.e.next_deadline(), Some(Duration::from_secs(2400)));
    // A late tick reports once, and the schedule does not drift.
    h.secs = 6000;
    h.e.tick(h.now());
    assert_eq!(h.e.drain_notices().len(), 2, "at 2400 s and 4800 s");
    assert_eq!(h.e.next_deadline(), Some(Duration::from_secs(9600)));
    assert_eq!(h.e.counters().stale, 1, "one transaction became stale");
    assert_eq!(h.e.stale(h.now()).len(), 1);
    assert_eq!(
        h.e.oldest_in_flight_age(h.now()),
        Some(Duration::from_secs(6000))
    );
    h.begin("t2", &["a"]);
    h.commit("t2", &[("a", 1)]);
    assert_eq!(h.dump(), p(&[]));
    h.commit("t1", &[("a", 2)]);
    assert_eq!(h.dump(), p(&[("a", 2)]));
    assert!(h.e.stale(h.now()).is_empty());
    // The ended transaction is no longer watched.
    assert_eq!(h.e.next_deadline(), None);
}

#[test]
fn in_flight_names_what_each_transaction_holds_back() {
    let mut h = H::ready();
    h.begin("t1", &["a"]);
    h.begin("t2", &["c"]);
    // t3 commits on a and b: a is capped by t1, so b waits too (no split).
    h.begin("t3", &["a", "b"]);
    h.commit("t3", &[("a", 5), ("b", 5)]);
    assert_eq!(h.dump(), p(&[]));
    let v = h.e.in_flight(h.now());
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].id, "t1");
    assert_eq!(v[0].holds_back, vec!["a".to_string(), "b".to_string()]);
    assert!(v[0].blocking_seconds.is_some());
    // t2 caps c, where nothing waits.
    assert_eq!(v[1].id, "t2");
    assert!(v[1].holds_back.is_empty() && v[1].blocking_seconds.is_none());
    // A partial commit holds back the storage it reported on.
    h.begin("t4", &["d", "e"]);
    h.commit("t4", &[("d", 7)]);
    let v = h.e.in_flight(h.now());
    let t4 = v.iter().find(|t| t.id == "t4").unwrap();
    assert_eq!(t4.holds_back, vec!["d".to_string()]);
    h.abort("t2");
    h.commit("t1", &[("a", 4)]);
    assert_eq!(h.dump(), p(&[("a", 5), ("b", 5)]));
    assert!(h.e.in_flight(h.now()).iter().all(|t| t.id == "t4"));
}

#[test]
fn resolve_ends_orphans_and_recomputes_at_once() {
    let mut h = H::ready();
    h.begin("t1", &["a", "b"]);
    h.begin("t1", &["a"]);
    h.commit("t1", &[("a", 1)]);
    h.begin("t2", &["b"]);
    h.commit("t2", &[("b", 2)]);
    assert_eq!(h.dump(), p(&[]), "the orphan blocks a and b");
    h.e.drain_notices();
    let r = h.e.resolve(h.now(), "t1");
    h.e.check_invariants();
    assert_eq!(r.refused, None);
    assert_eq!(r.resolved.len(), 1);
    assert!(r.resolved[0].orphan);
    assert_eq!(
        r.resolved[0].holds_back,
        vec!["a".to_string(), "b".to_string()]
    );
    // Recomputed without waiting for more traffic.
    assert_eq!(h.dump(), p(&[("a", 1), ("b", 2)]));
    let n = h.e.drain_notices();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].kind, NoticeKind::Resolved);
    assert!(n[0].message.contains("'t1'"), "{}", n[0].message);
    assert_eq!(h.e.outcomes().resolved, 1);
    assert_eq!(h.e.in_flight_count(), 0);
    // Nothing left with that id.
    let r = h.e.resolve(h.now(), "t1");
    assert!(r.resolved.is_empty());
    assert!(r.refused.unwrap().contains("no transaction 't1'"));
    assert!(h.e.drain_notices().is_empty());
}

#[test]
fn resolve_leaves_a_live_transaction_alone_until_it_is_stale() {
    let mut h = H::ready();
    // Orphan and live one with the same id: only the orphan is resolved.
    h.begin("t1", &["a"]);
    h.begin("t1", &["b"]);
    let r = h.e.resolve(h.now(), "t1");
    assert_eq!(r.resolved.len(), 1);
    assert_eq!(r.resolved[0].storages, vec!["a".to_string()]);
    assert_eq!(h.e.in_flight_count(), 1);
    // The live one is young: refused.
    let r = h.e.resolve(h.now(), "t1");
    assert!(r.resolved.is_empty());
    assert!(r.refused.unwrap().contains("not stale"));
    assert_eq!(h.e.in_flight_count(), 1);
    // A client killed between BEGIN and COMMIT: once stale, resolvable.
    h.begin("t2", &["b"]);
    h.commit("t2", &[("b", 3)]);
    assert_eq!(h.dump(), p(&[]));
    h.secs = 600;
    h.e.tick(h.now());
    let r = h.e.resolve(h.now(), "t1");
    h.e.check_invariants();
    assert_eq!(r.resolved.len(), 1);
    assert!(!r.resolved[0].orphan);
    assert_eq!(h.dump(), p(&[("b", 3)]));
    assert_eq!(h.e.next_deadline(), None);
}

#[test]
fn resolving_a_partial_commit_keeps_what_it_reported_as_one_transaction() {
    let mut h = H::ready();
    h.begin("t1", &["a", "b"]);
    h.commit("t1", &[("a", 5)]);
    h.begin("t1", &["c"]);
    h.begin("t2", &["a", "b"]);
    h.commit("t2", &[("a", 6), ("b", 6)]);
    assert_eq!(h.dump(), p(&[]));
    h.e.resolve(h.now(), "t1");
    h.e.check_invariants();
    // Its a:5 is a value of the point; t2 follows it whole.
    assert_eq!(h.dump(), p(&[("a", 6), ("b", 6)]));
}

#[test]
fn resolve_before_bootstrap_waits_for_it() {
    let mut h = H::new(&["a"]);
    h.begin("t1", &["a"]);
    h.begin("t1", &["a"]);
    let r = h.e.resolve(h.now(), "t1");
    assert_eq!(r.resolved.len(), 1);
    assert!(h.e.drain_notices()[1]
        .message
        .contains("once bootstrap completes"));
    h.commit("t1", &[("a", 2)]);
    assert!(h.e.is_bootstrapped());
    h.begin("t3", &["a"]);
    h.commit("t3", &[("a", 3)]);
    assert_eq!(h.dump(), p(&[("a", 3)]));
}

#[test]
fn malformed_inputs_do_not_panic() {
    let mut h = H::ready();
    h.begin("t1", &["a", "a", ""]);
    h.commit("t1", &[("a", 0), ("a", 0), ("", u64::MAX)]);
    h.begin("t2", &[]);
    h.commit("t2", &[]);
    h.commit("t3", &[]);
    h.abort("t2");
    h.e.tick(h.now());
    let _ = h.e.state_dump(h.now());
}

/// Long run (test 4 of the brief): scenario-L1 chains on some storages and
/// random multi-storage transactions on others, overlapping all the time.
/// Remembered state must stay bounded by the lag and the point must advance.
#[test]
fn long_run_memory_stays_bounded() {
    let mut rng = Rng(0x5eed_1234);
    let mut e = Engine::new(EngineConfig::default());
    let now = Now {
        mono: Duration::ZERO,
        unix: UNIX_NOW,
    };
    e.begin(now, "setup", &[]);
    e.abort(now, "setup");
    e.drain_notices();
    let names: Vec<String> = (0..12).map(|i| format!("s{i}")).collect();
    let mut tid = 0u64;
    // Slots of overlapping transactions: (id, storages).
    let mut open: Vec<(String, Vec<String>)> = Vec::new();
    let mut last = e.published().clone();
    let mut max_remembered = 0;
    let mut max_stats = MemoryStats::default();
    let total = 1_000_000u64;
    for n in 0..total {
        let storages: Vec<String> = if n % 2 == 0 {
            // L1-style chain on s0 and s1.
            vec![names[(n / 2 % 2) as usize].clone()]
        } else {
            let k = 1 + rng.below(3) as usize;
            (0..k)
                .map(|_| names[2 + rng.below(10) as usize].clone())
                .collect()
        };
        let id = format!("x{}", rng.below(64));
        if !open.iter().any(|o| o.0 == id) {
            e.begin(now, &id, &storages);
            open.push((id, storages));
        }
        // Keep about eight in flight: end the oldest-ish one.
        if open.len() > 8 {
            let i = rng.below(3) as usize;
            let (id, st) = open.remove(i);
            if rng.below(10) == 0 {
                e.abort(now, &id);
            } else {
                tid += 1;
                let tids: Vec<(String, Tid)> = st.into_iter().map(|s| (s, Tid(tid))).collect();
                e.commit(now, &id, &tids);
            }
        }
        max_remembered = max_remembered.max(e.remembered_count());
        if n % 100_000 == 99_999 {
            e.check_invariants();
            let st = e.memory_stats();
            max_stats.txn_slots = max_stats.txn_slots.max(st.txn_slots);
            max_stats.committed_slots = max_stats.committed_slots.max(st.committed_slots);
            max_stats.pending_entries = max_stats.pending_entries.max(st.pending_entries);
            let now_point = e.published().clone();
            for s in &names {
                assert!(
                    now_point.get(s) > last.get(s),
                    "{s} did not advance during the last 100,000 transactions: {:?} -> {:?}",
                    last.get(s),
                    now_point.get(s)
                );
            }
            last = now_point;
            assert!(e.drain_notices().is_empty());
        }
    }
    assert!(max_remembered <= 64, "remembered up to {max_remembered}");
    assert!(max_stats.txn_slots <= 16, "{max_stats:?}");
    assert!(max_stats.committed_slots <= 64, "{max_stats:?}");
    assert!(max_stats.pending_entries <= 200, "{max_stats:?}");
    assert_eq!(e.memory_stats().orphans, 0);
    assert_eq!(e.memory_stats().storages, 12);
}

/// xorshift64*: tests need reproducible randomness, not a crate.
pub(super) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn resolve_in_random_histories_keeps_every_invariant() {
    // Duplicate begins (orphans), partial commits, aborts, time passing
    // (stale transactions) and resolves in any order: after every event the
    // engine's invariants hold (nothing published past the cap of a
    // transaction still waited for, no remembered transaction split) and
    // the point never goes down.
    let ids = ["t0", "t1", "t2", "t3", "t4", "t5"];
    let storages = ["a", "b", "c", "d"];
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut h = H::ready();
        let mut clock = 0u64;
        let mut last = p(&[]);
        for step in 0..300 {
            let id = ids[rng.below(ids.len() as u64) as usize];
            let ctx = format!("seed {seed}, step {step}");
            match rng.below(10) {
                0..=3 => {
                    let chosen: Vec<&str> = storages
                        .iter()
                        .copied()
                        .filter(|_| rng.below(2) == 0)
                        .collect();
                    h.begin(id, &chosen);
                }
                4..=6 => {
                    let mut chosen: Vec<&str> = storages
                        .iter()
                        .copied()
                        .filter(|_| rng.below(2) == 0)
                        .collect();
                    if rng.below(5) == 0 && !chosen.is_empty() {
                        chosen.pop();
                    }
                    let tids: Vec<(&str, u64)> = chosen
                        .into_iter()
                        .map(|s| {
                            clock += 1;
                            (s, clock)
                        })
                        .collect();
                    h.commit(id, &tids);
                }
                7 => h.abort(id),
                8 => {
                    let before = h.e.in_flight_count();
                    let r = h.e.resolve(h.now(), id);
                    h.e.check_invariants();
                    assert_eq!(h.e.in_flight_count(), before - r.resolved.len(), "{ctx}");
                    assert_eq!(r.resolved.is_empty(), r.refused.is_some(), "{ctx}");
                }
                _ => {
                    h.secs += rng.below(400);
                    h.e.tick(h.now());
                    h.e.check_invariants();
                }
            }
            let now = h.dump();
            for (s, t) in &last {
                assert!(now.get(s).is_some_and(|v| v >= t), "point went down; {ctx}");
            }
            last = now;
            h.e.drain_notices();
        }
    }
}
