//! Brute-force models the engine is checked against, with seeded random
//! simulations (the failing seed is in every assertion message; rerun one
//! with `ENGINE_SEED=<seed>`).
//!
//! `ordered`: clients behave as ZODB does (TIDs from one increasing clock,
//! so commit order agrees across storages). The model keeps every committed
//! transaction and enumerates every candidate point; the engine must publish
//! exactly the greatest consistent one at every transaction end.
//!
//! `broken`: clients break every rule (random TIDs, opposite orders,
//! duplicate begins, unknown ids, partial commits, extra storages, future
//! TIDs). The engine need not be greatest there, only safe: monotonic,
//! never past a floor or a part of an unfinished transaction, never
//! splitting a transaction whose outcome is fully known.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use super::tests::{Rng, UNIX_NOW};
use super::*;

type MPoint = BTreeMap<String, Option<u64>>;

fn now() -> Now {
    Now {
        mono: Duration::from_secs(1),
        unix: UNIX_NOW,
    }
}

fn engine_point(e: &Engine, storages: &[String]) -> MPoint {
    storages
        .iter()
        .map(|s| (s.clone(), e.published().get(s).map(|t| t.0)))
        .collect()
}

fn seeds(default_cases: u64, base: u64) -> Vec<u64> {
    match std::env::var("ENGINE_SEED") {
        Ok(s) => vec![s.parse().expect("ENGINE_SEED must be an integer")],
        Err(_) => (0..default_cases).map(|i| base + i).collect(),
    }
}

/// The reference for well-behaved clients: the rule of SPEC §3.2 applied
/// literally, by enumeration.
struct Ordered {
    storages: Vec<String>,
    configured: BTreeSet<String>,
    seen: BTreeSet<String>,
    started: bool,
    complete: bool,
    known: BTreeMap<String, u64>,
    published: MPoint,
    /// id -> floor per storage (`None` = nothing known at BEGIN).
    in_flight: BTreeMap<String, BTreeMap<String, Option<u64>>>,
    committed: Vec<BTreeMap<String, u64>>,
    reported: BTreeMap<String, BTreeSet<u64>>,
}

impl Ordered {
    fn consistent(&self, p: &MPoint) -> bool {
        self.committed.iter().all(|t| {
            let below = t.iter().filter(|(s, v)| Some(**v) <= p[*s]).count();
            below == 0 || below == t.len()
        })
    }

    fn greatest(&self) -> MPoint {
        // Rules (1), (3), (4) are per storage: they bound the candidates.
        let mut cands: Vec<Vec<Option<u64>>> = Vec::new();
        for s in &self.storages {
            let cap: Option<Option<u64>> = self
                .in_flight
                .values()
                .filter_map(|f| f.get(s).copied())
                .min();
            let pubd = self.published[s];
            let mut c = vec![pubd];
            if let Some(vals) = self.reported.get(s) {
                for &v in vals {
                    let under_cap = match cap {
                        None => true,
                        Some(None) => false,
                        Some(Some(f)) => v <= f,
                    };
                    if Some(v) > pubd && under_cap {
                        c.push(Some(v));
                    }
                }
            }
            cands.push(c);
        }
        let mut best: Option<MPoint> = None;
        let mut idx = vec![0usize; cands.len()];
        loop {
            let p: MPoint = self
                .storages
                .iter()
                .zip(&idx)
                .enumerate()
                .map(|(k, (s, &i))| (s.clone(), cands[k][i]))
                .collect();
            if self.consistent(&p) {
                best = Some(match best {
                    None => p,
                    Some(b) => b
                        .into_iter()
                        .map(|(s, v)| {
                            let w = p[&s];
                            (s, v.max(w))
                        })
                        .collect(),
                });
            }
            // Next combination (odometer).
            let mut k = 0;
            loop {
                if k == idx.len() {
                    let best = best.expect("the published point itself is consistent");
                    assert!(self.consistent(&best), "pointwise max must be consistent");
                    return best;
                }
                idx[k] += 1;
                if idx[k] < cands[k].len() {
                    break;
                }
                idx[k] = 0;
                k += 1;
            }
        }
    }

    fn ended(&mut self) {
        if self.complete {
            self.published = self.greatest();
        } else {
            self.started = true;
            if self.configured.is_subset(&self.seen) {
                self.complete = true;
            }
        }
    }
}

fn run_ordered(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let n_st = 3 + rng.below(2) as usize;
    let storages: Vec<String> = (0..n_st).map(|i| format!("s{i}")).collect();
    let configured: BTreeSet<String> = storages
        .iter()
        .filter(|_| rng.below(3) == 0)
        .cloned()
        .collect();
    let mut e = Engine::new(EngineConfig {
        storages: configured.iter().cloned().collect(),
        ..EngineConfig::default()
    });
    let mut m = Ordered {
        storages: storages.clone(),
        configured,
        seen: BTreeSet::new(),
        started: false,
        complete: false,
        known: BTreeMap::new(),
        published: storages.iter().map(|s| (s.clone(), None)).collect(),
        in_flight: BTreeMap::new(),
        committed: Vec::new(),
        reported: BTreeMap::new(),
    };
    let mut clock = 0u64;
    let steps = 20 + rng.below(40);
    let mut log: Vec<String> = Vec::new();
    for step in 0..steps {
        let id = format!("t{}", rng.below(6));
        let mut is_end = false;
        let was_complete = m.complete;
        if let Some(floors) = m.in_flight.get(&id).cloned() {
            is_end = true;
            if rng.below(4) == 0 {
                log.push(format!("abort {id}"));
                e.abort(now(), &id);
                m.in_flight.remove(&id);
            } else {
                // One clock for every storage: commit order agrees across
                // storages, as ZODB's ordered commit locks guarantee.
                let same = rng.below(2) == 0;
                clock += 1;
                let mut tids = Vec::new();
                for s in floors.keys() {
                    if !same {
                        clock += 1;
                    }
                    tids.push((s.clone(), Tid(clock)));
                }
                log.push(format!("commit {id} {tids:?}"));
                e.commit(now(), &id, &tids);
                m.in_flight.remove(&id);
                let mut t = BTreeMap::new();
                for (s, v) in &tids {
                    m.known.insert(s.clone(), v.0);
                    m.reported.entry(s.clone()).or_default().insert(v.0);
                    m.seen.insert(s.clone());
                    t.insert(s.clone(), v.0);
                }
                m.committed.push(t);
            }
            m.ended();
        } else {
            let chosen: Vec<String> = storages
                .iter()
                .filter(|_| rng.below(2) == 0)
                .cloned()
                .collect();
            log.push(format!("begin {id} {chosen:?}"));
            e.begin(now(), &id, &chosen);
            let floors = chosen
                .iter()
                .map(|s| (s.clone(), m.known.get(s).copied()))
                .collect();
            m.in_flight.insert(id.clone(), floors);
        }
        let ctx = || format!("seed {seed}, step {step}, events:\n  {}", log.join("\n  "));
        e.check_invariants();
        let got = engine_point(&e, &storages);
        assert_eq!(got, m.published, "published point differs; {}", ctx());
        assert_eq!(
            e.is_bootstrapped(),
            m.complete,
            "bootstrap differs; {}",
            ctx()
        );
        if is_end && was_complete {
            // Equality right after a recomputation is the "greatest" claim.
            assert_eq!(got, m.greatest(), "not the greatest point; {}", ctx());
        }
        assert_eq!(e.in_flight_count(), m.in_flight.len(), "{}", ctx());
        let notices = e.drain_notices();
        assert!(
            notices.iter().all(|n| n.level == Level::Info),
            "unexpected anomaly {notices:?}; {}",
            ctx()
        );
    }
}

#[test]
fn ordered_clients_get_the_greatest_consistent_point() {
    for seed in seeds(2000, 1) {
        run_ordered(seed);
    }
}

/// One BEGIN instance as the safety model sees it.
struct Inst {
    /// Storage -> floor (`known` when it joined, `None` = nothing known).
    floors: BTreeMap<String, Option<u64>>,
    /// Storage -> what COMMITs said: (tid, accepted).
    named: BTreeMap<String, Vec<(u64, bool)>>,
    contradicted: bool,
    /// Still blocking (open, orphan or contradicted).
    blocking: bool,
}

struct Broken {
    known: BTreeMap<String, u64>,
    accepted: BTreeMap<String, BTreeSet<u64>>,
    insts: Vec<Inst>,
    by_id: HashMap<String, usize>,
    /// Transactions whose full outcome is known: storage -> accepted tid.
    done: Vec<BTreeMap<String, u64>>,
}

fn is_future(t: Tid) -> bool {
    t.unix_seconds() > now().unix + EngineConfig::default().max_future.as_secs_f64()
}

impl Broken {
    fn commit(&mut self, e_pub: &Point, id: &str, items: &[(String, Tid)]) {
        let known_before = self.known.clone();
        let mut classified = Vec::new();
        for (s, t) in items {
            let future = is_future(*t);
            let decreasing = !future && e_pub.get(s).is_some_and(|p| *t <= *p);
            if !future {
                let k = self.known.entry(s.clone()).or_insert(t.0);
                *k = (*k).max(t.0);
            }
            if !future && !decreasing {
                self.accepted.entry(s.clone()).or_default().insert(t.0);
            }
            classified.push((s.clone(), t.0, future, decreasing));
        }
        let i = match self.by_id.get(id) {
            Some(&i) => i,
            None => {
                self.insts.push(Inst {
                    floors: BTreeMap::new(),
                    named: BTreeMap::new(),
                    contradicted: false,
                    blocking: true,
                });
                self.insts.len() - 1
            }
        };
        let inst = &mut self.insts[i];
        for (s, t, future, decreasing) in &classified {
            inst.floors
                .entry(s.clone())
                .or_insert(known_before.get(s).copied());
            let v = inst.named.entry(s.clone()).or_default();
            if v.iter().any(|x| x.0 != *t) {
                inst.contradicted = true;
            }
            v.push((*t, !*future && !*decreasing));
            if *future {
                inst.contradicted = true;
            }
        }
        let complete = inst.floors.keys().all(|s| inst.named.contains_key(s));
        if complete && !inst.contradicted {
            inst.blocking = false;
            let t: BTreeMap<String, u64> = inst
                .named
                .iter()
                .filter(|(_, v)| v[0].1)
                .map(|(s, v)| (s.clone(), v[0].0))
                .collect();
            self.done.push(t);
            self.by_id.remove(id);
        }
    }

    fn check(&self, e: &Engine, before: &Point, ctx: &dyn Fn() -> String) {
        let now_p = e.published();
        for (s, v) in before {
            assert!(now_p.get(s) >= Some(v), "point went down on {s}; {}", ctx());
        }
        for (s, v) in now_p.iter() {
            assert!(
                Some(&v.0) <= self.known.get(s),
                "published {s}={} above known; {}",
                v.0,
                ctx()
            );
            assert!(
                before.get(s) == Some(v) || self.accepted.get(s).is_some_and(|a| a.contains(&v.0)),
                "published {s}={} was never reported; {}",
                v.0,
                ctx()
            );
        }
        for inst in self.insts.iter().filter(|i| i.blocking) {
            for (s, floor) in &inst.floors {
                let p = now_p.get(s).map(|t| t.0);
                assert!(
                    p <= *floor,
                    "published {s}={p:?} beyond floor {floor:?}; {}",
                    ctx()
                );
                for (t, acc) in inst.named.get(s).into_iter().flatten() {
                    if *acc {
                        assert!(
                            p < Some(*t),
                            "published {s}={p:?} holds part of an unfinished transaction ({t}); {}",
                            ctx()
                        );
                    }
                }
            }
        }
        for t in &self.done {
            let below = t
                .iter()
                .filter(|(s, v)| now_p.get(*s).map(|x| x.0) >= Some(**v))
                .count();
            assert!(
                below == 0 || below == t.len(),
                "transaction {t:?} split by {now_p:?}; {}",
                ctx()
            );
        }
    }
}

fn run_broken(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0xd1b5_4a32_d192_ed03) | 1);
    let storages: Vec<String> = (0..4).map(|i| format!("s{i}")).collect();
    let mut e = Engine::new(EngineConfig::default());
    let mut m = Broken {
        known: BTreeMap::new(),
        accepted: BTreeMap::new(),
        insts: Vec::new(),
        by_id: HashMap::new(),
        done: Vec::new(),
    };
    let future = Tid::from_unix_seconds(UNIX_NOW + 7200.0);
    let mut log: Vec<String> = Vec::new();
    for step in 0..60 {
        let before = e.published().clone();
        let id = format!("t{}", rng.below(6));
        let pick = |rng: &mut Rng| -> Vec<String> {
            let n = rng.below(4) as usize;
            (0..n)
                .map(|_| storages[rng.below(4) as usize].clone())
                .collect()
        };
        match rng.below(10) {
            0..=3 => {
                let chosen = pick(&mut rng);
                log.push(format!("begin {id} {chosen:?}"));
                e.begin(now(), &id, &chosen);
                if let Some(old) = m.by_id.remove(&id) {
                    // Orphan: keeps blocking forever.
                    let _ = old;
                }
                let mut floors = BTreeMap::new();
                for s in &chosen {
                    floors.insert(s.clone(), m.known.get(s).copied());
                }
                m.insts.push(Inst {
                    floors,
                    named: BTreeMap::new(),
                    contradicted: false,
                    blocking: true,
                });
                m.by_id.insert(id.clone(), m.insts.len() - 1);
            }
            4..=8 => {
                // Mostly the storages of its BEGIN, sometimes fewer or more.
                let mut chosen: Vec<String> = match m.by_id.get(&id) {
                    Some(&i) if rng.below(3) != 0 => m.insts[i].floors.keys().cloned().collect(),
                    _ => pick(&mut rng),
                };
                if rng.below(4) == 0 && !chosen.is_empty() {
                    chosen.remove(0);
                }
                let tids: Vec<(String, Tid)> = chosen
                    .into_iter()
                    .map(|s| {
                        let t = if rng.below(25) == 0 {
                            future
                        } else {
                            Tid(1 + rng.below(30))
                        };
                        (s, t)
                    })
                    .collect();
                log.push(format!("commit {id} {tids:?}"));
                e.commit(now(), &id, &tids);
                m.commit(&before, &id, &tids);
            }
            _ => {
                log.push(format!("abort {id}"));
                e.abort(now(), &id);
                if let Some(&i) = m.by_id.get(&id) {
                    if m.insts[i].named.is_empty() {
                        m.insts[i].blocking = false;
                        m.by_id.remove(&id);
                    } else {
                        m.insts[i].contradicted = true;
                    }
                }
            }
        }
        let ctx = || format!("seed {seed}, step {step}, events:\n  {}", log.join("\n  "));
        e.check_invariants();
        m.check(&e, &before, &ctx);
        let blocking = m.insts.iter().filter(|i| i.blocking).count();
        assert_eq!(e.in_flight_count(), blocking, "in-flight count; {}", ctx());
        for n in e.drain_notices() {
            assert!(
                n.message.starts_with(|c: char| c.is_ascii_lowercase()),
                "notice must start lower case: {}",
                n.message
            );
        }
    }
}

#[test]
fn broken_clients_never_make_the_engine_unsafe() {
    for seed in seeds(2000, 1_000_000) {
        run_broken(seed);
    }
}
