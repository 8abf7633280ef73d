//! Looking inside the engine: the human dump (SIGUSR1) and the invariant
//! check the tests run after every event. Both walk the whole state; the
//! daemon calls them only on demand, never per event.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{fopt, q, Engine, Named, Now};
use crate::tid::Tid;

impl Engine {
    /// Multi-line dump of the whole state for SIGUSR1: published and known
    /// values, in-flight transactions (age, storages, floors), orphans,
    /// stale ones, and what waits to be published on each storage.
    pub fn state_dump(&self, now: Now) -> String {
        // Writing to a String cannot fail.
        let mut o = String::new();
        let _ = writeln!(o, "engine state");
        let _ = writeln!(o, "bootstrap: {:?}", self.bootstrap);
        let missing = self.bootstrap_missing();
        if !missing.is_empty() {
            let l: Vec<String> = missing.iter().map(|s| q(s)).collect();
            let _ = writeln!(
                o,
                "  configured storages with no commit seen: {}",
                l.join(", ")
            );
        }
        let mut order: Vec<u32> = (0..self.st.len() as u32).collect();
        order.sort_by(|a, b| self.st[*a as usize].name.cmp(&self.st[*b as usize].name));
        let _ = writeln!(o, "storages ({}):", order.len());
        for &s in &order {
            let st = &self.st[s as usize];
            let cap = match st.cap() {
                None => "none".to_string(),
                Some(None) => "nothing publishable".to_string(),
                Some(Some(c)) => format!("at most {}", c.0),
            };
            let _ = writeln!(
                o,
                "  {}: published {}, known {}, cap {}, {} commit(s) waiting{}",
                q(&st.name),
                fopt(st.published),
                fopt(st.known),
                cap,
                st.pending.len(),
                st.pending
                    .first()
                    .map(|e| format!(" (lowest {})", e.0 .0))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(o, "in flight ({}):", self.by_age.len());
        for &(_, _, slot) in &self.by_age {
            let Some(t) = self.txns[slot as usize].as_ref() else {
                continue;
            };
            let parts: Vec<String> = t
                .parts
                .iter()
                .map(|p| {
                    let named = match p.named {
                        Named::No => String::new(),
                        Named::Accepted(v) => format!(", committed {}", v.0),
                        Named::Decreasing(v) => format!(", decreasing {} ignored", v.0),
                        Named::Rejected(v) => format!(", future {} refused", v.0),
                    };
                    format!(
                        "{} floor {}{}{}",
                        q(&self.st[p.storage as usize].name),
                        p.floor.map(|f| f.0.to_string()).unwrap_or("nothing".into()),
                        named,
                        if p.in_begin { "" } else { " (joined)" }
                    )
                })
                .collect();
            let _ = writeln!(
                o,
                "  {}{}{}{} age {:.1}s: {}{}",
                q(&t.id),
                if t.orphan { " [orphan]" } else { "" },
                if t.stale { " [stale]" } else { "" },
                t.client.map(|c| format!(" from {c}")).unwrap_or_default(),
                now.mono.saturating_sub(t.begun).as_secs_f64(),
                if parts.is_empty() {
                    "no storage".to_string()
                } else {
                    parts.join("; ")
                },
                t.blocked
                    .as_ref()
                    .map(|b| format!(" -- blocked: {b}"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(
            o,
            "orphans: {}; stale: {}; remembered committed transactions: {}",
            self.orphan_slots.len(),
            self.stale(now).len(),
            self.remembered
        );
        let _ = writeln!(
            o,
            "counters: {}",
            serde_json::to_string(&self.counters).unwrap_or_default()
        );
        o
    }

    /// Panics with a clear message if the internal state is inconsistent.
    /// Walks everything: for tests and debugging only.
    pub fn check_invariants(&self) {
        let fail = |what: String| -> ! { panic!("engine invariant broken: {what}") };
        // Caps recomputed from the in-flight transactions.
        let mut caps: Vec<BTreeMap<Tid, u32>> = vec![BTreeMap::new(); self.st.len()];
        let mut nothing = vec![0u32; self.st.len()];
        let mut live = 0;
        for (slot, t) in self.txns.iter().enumerate() {
            let Some(t) = t else { continue };
            live += 1;
            if !self.by_age.contains(&(t.begun, t.serial, slot as u32)) {
                fail(format!("transaction {} missing from the age index", t.id));
            }
            if !t.orphan && self.by_id.get(&t.id) != Some(&(slot as u32)) {
                fail(format!("transaction {} not reachable by its id", t.id));
            }
            if t.orphan && !self.orphan_slots.contains(&(slot as u32)) {
                fail(format!("orphan {} not listed", t.id));
            }
            for w in t.parts.windows(2) {
                if w[0].storage >= w[1].storage {
                    fail(format!("parts of {} not sorted/unique", t.id));
                }
            }
            for p in &t.parts {
                if p.cap > p.floor {
                    fail(format!("cap above floor in {}", t.id));
                }
                if let Named::Accepted(v) = p.named {
                    if p.cap >= Some(v) {
                        fail(format!("cap not below the reported tid in {}", t.id));
                    }
                }
                let st = &self.st[p.storage as usize];
                if st.published > p.cap {
                    fail(format!(
                        "published {} on {} beyond the cap {} of in-flight {}",
                        fopt(st.published),
                        st.name,
                        fopt(p.cap),
                        t.id
                    ));
                }
                match p.cap {
                    None => nothing[p.storage as usize] += 1,
                    Some(c) => *caps[p.storage as usize].entry(c).or_insert(0) += 1,
                }
            }
        }
        if live != self.by_age.len() || self.by_id.len() + self.orphan_slots.len() != live {
            fail(format!(
                "in-flight counts disagree: {} live, {} by age, {} by id, {} orphans",
                live,
                self.by_age.len(),
                self.by_id.len(),
                self.orphan_slots.len()
            ));
        }
        // Remembered committed transactions and the per-storage queues.
        let mut remembered = 0;
        let mut entries = 0;
        for (c, com) in self.committed.iter().enumerate() {
            let Some(com) = com else { continue };
            remembered += 1;
            entries += com.tids.len();
            if com.tids.is_empty() {
                fail(format!("remembered transaction #{c} has no tid"));
            }
            for &(s, t) in &com.tids {
                let st = &self.st[s as usize];
                if !st.pending.contains(&(t, c as u32)) {
                    fail(format!(
                        "tid {} of #{c} missing from {}'s queue",
                        t.0, st.name
                    ));
                }
                // All above published: split transactions cannot exist.
                if st.published >= Some(t) {
                    fail(format!(
                        "remembered #{c} has tid {} on {} at or below the published {}",
                        t.0,
                        st.name,
                        fopt(st.published)
                    ));
                }
            }
        }
        if remembered != self.remembered || entries != self.pending_entries {
            fail(format!(
                "remembered counts disagree: {remembered}/{entries} found, {}/{} counted",
                self.remembered, self.pending_entries
            ));
        }
        let point = self.published();
        let mut missing = 0;
        for (i, st) in self.st.iter().enumerate() {
            if st.caps != caps[i] || st.nothing_caps != nothing[i] {
                fail(format!("cap multiset of {} out of date", st.name));
            }
            if st.published > st.known {
                fail(format!(
                    "published {} above known {} on {}",
                    fopt(st.published),
                    fopt(st.known),
                    st.name
                ));
            }
            if point.get(&st.name).copied() != st.published {
                fail(format!("point map disagrees on {}", st.name));
            }
            let queued: usize = st.pending.len();
            let mine = self
                .committed
                .iter()
                .flatten()
                .flat_map(|c| c.tids.iter())
                .filter(|e| e.0 == i as u32)
                .count();
            if queued != mine {
                fail(format!(
                    "queue of {} holds {queued} entries, {mine} expected",
                    st.name
                ));
            }
            if let Some(&(t, _)) = st.pending.last() {
                if Some(t) > st.known {
                    fail(format!("remembered tid {} above known on {}", t.0, st.name));
                }
            }
            if st.configured && !st.seen {
                missing += 1;
            }
            if st.dirty != self.dirty.contains(&(i as u32)) {
                fail(format!("dirty flag of {} disagrees with the list", st.name));
            }
            if st.changed != self.changed.contains(&(i as u32)) {
                fail(format!(
                    "changed flag of {} disagrees with the list",
                    st.name
                ));
            }
        }
        if missing != self.missing {
            fail(format!(
                "{missing} configured storages unseen, {} counted",
                self.missing
            ));
        }
        if point.len() != self.st.iter().filter(|s| s.published.is_some()).count() {
            fail("point map holds unknown storages".into());
        }
    }
}
