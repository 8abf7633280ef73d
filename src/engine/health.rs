//! The point's health: which in-flight transactions hold which storages
//! back, and the operator's way out (`resolve`).
//!
//! Read-only walks over the whole state, run on demand (`INFLIGHT`, `INFO`,
//! a scrape), never per event. `resolve` is the one event here: the
//! operator declares a transaction finished, the engine stops waiting for
//! it and recomputes at once. Still pure: time comes in, notices go out.

use std::collections::HashMap;

use super::{q, Engine, InFlightInfo, Level, Named, NoticeKind, Now, Txn};
use crate::tid::Tid;

/// Which storages each in-flight transaction (by slot) holds back, and the
/// first value waiting on each storage.
pub(super) struct Holds {
    by_slot: HashMap<u32, Vec<u32>>,
    /// Per storage: the lowest remembered TID, or `known` when nothing is
    /// remembered yet `known` is above `published` (a partial commit's
    /// TIDs); `None` when nothing waits.
    waiting: Vec<Option<Tid>>,
}

/// What `resolve` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The transactions no longer waited for, as they were just before.
    pub resolved: Vec<InFlightInfo>,
    /// Why nothing was resolved, when nothing was.
    pub refused: Option<String>,
}

impl Engine {
    /// The first value waiting on storage `s` (see [`Holds::waiting`]).
    fn waiting_on(&self, s: u32) -> Option<Tid> {
        let st = &self.st[s as usize];
        match st.pending.first() {
            Some(&(v, _)) => Some(v),
            None => st.known.filter(|k| Some(*k) > st.published),
        }
    }

    /// For every storage with something waiting, the in-flight
    /// transactions whose cap keeps it waiting: on the storage itself, or
    /// on any storage its lowest committed transactions also touched
    /// (followed transitively: the no-split rule moves them together).
    pub(super) fn holds(&self) -> Holds {
        let waiting: Vec<Option<Tid>> = (0..self.st.len() as u32)
            .map(|s| self.waiting_on(s))
            .collect();
        // Storage -> (slot, cap) of the in-flight transactions capping it.
        let mut capping: HashMap<u32, Vec<(u32, Option<Tid>)>> = HashMap::new();
        for &(_, _, slot) in &self.by_age {
            if let Some(t) = self.txns[slot as usize].as_ref() {
                for p in &t.parts {
                    capping.entry(p.storage).or_default().push((slot, p.cap));
                }
            }
        }
        let mut by_slot: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut seen = vec![usize::MAX; self.st.len()];
        let mut queue = Vec::new();
        for s in 0..self.st.len() as u32 {
            if waiting[s as usize].is_none() {
                continue;
            }
            queue.clear();
            queue.push(s);
            seen[s as usize] = s as usize;
            let mut i = 0;
            while i < queue.len() {
                let r = queue[i];
                i += 1;
                let Some(v) = waiting[r as usize] else {
                    continue;
                };
                if !self.st[r as usize].cap_allows(v) {
                    for &(slot, cap) in capping.get(&r).into_iter().flatten() {
                        if cap < Some(v) {
                            let v = by_slot.entry(slot).or_default();
                            if v.last() != Some(&s) {
                                v.push(s);
                            }
                        }
                    }
                }
                for &(_, c) in self.st[r as usize].pending.range((v, 0)..=(v, u32::MAX)) {
                    let Some(com) = self.committed[c as usize].as_ref() else {
                        continue;
                    };
                    for &(r2, _) in &com.tids {
                        if seen[r2 as usize] != s as usize {
                            seen[r2 as usize] = s as usize;
                            queue.push(r2);
                        }
                    }
                }
            }
        }
        Holds { by_slot, waiting }
    }

    pub(super) fn info(&self, now: Now, slot: u32, t: &Txn, holds: &Holds) -> InFlightInfo {
        let held = holds.by_slot.get(&slot).map(Vec::as_slice).unwrap_or(&[]);
        let mut holds_back: Vec<String> = held
            .iter()
            .map(|&s| self.st[s as usize].name.clone())
            .collect();
        holds_back.sort();
        let blocking_seconds = held
            .iter()
            .filter_map(|&s| holds.waiting[s as usize])
            .map(|v| (now.unix - v.unix_seconds()).max(0.0))
            .reduce(f64::max);
        InFlightInfo {
            id: t.id.clone(),
            orphan: t.orphan,
            age_seconds: now.mono.saturating_sub(t.begun).as_secs_f64(),
            stale: t.stale,
            storages: t
                .parts
                .iter()
                .map(|p| self.st[p.storage as usize].name.clone())
                .collect(),
            blocked_because: t.blocked.clone(),
            client: t.client,
            holds_back,
            blocking_seconds,
        }
    }

    /// Every in-flight transaction, orphans included, oldest first, with
    /// what each holds back.
    pub fn in_flight(&self, now: Now) -> Vec<InFlightInfo> {
        let holds = self.holds();
        self.by_age
            .iter()
            .filter_map(|&(_, _, s)| Some((s, self.txns[s as usize].as_ref()?)))
            .map(|(s, t)| self.info(now, s, t, &holds))
            .collect()
    }

    /// The operator declares transaction `id` finished (`tidstorage
    /// resolve`): the orphans with that id stop blocking; when there is
    /// none, the in-flight transaction with that id does, if it is stale
    /// (a younger one is left alone: its client may still be committing).
    /// TIDs it reported count as one committed transaction (a partial
    /// commit stays partial, as in the live databases); the point is
    /// recomputed at once when bootstrap is complete. One notice names it.
    pub fn resolve(&mut self, now: Now, id: &str) -> Resolution {
        let mut slots: Vec<u32> = self
            .orphan_slots
            .iter()
            .copied()
            .filter(|&s| self.txns[s as usize].as_ref().is_some_and(|t| t.id == id))
            .collect();
        if slots.is_empty() {
            match self.by_id.get(id).copied() {
                None => {
                    return Resolution {
                        resolved: Vec::new(),
                        refused: Some(format!("no transaction {} is in flight or orphaned", q(id))),
                    }
                }
                Some(s) => {
                    let t = self.txns[s as usize]
                        .as_ref()
                        .expect("by_id holds live slots");
                    let age = now.mono.saturating_sub(t.begun);
                    if !t.stale && age < self.cfg.stale_after {
                        return Resolution {
                            resolved: Vec::new(),
                            refused: Some(format!(
                                "transaction {} began {} ago and is not stale yet (stale_after \
                                 {}): its client may still be committing, so it is left alone",
                                q(id),
                                humantime::format_duration(std::time::Duration::from_secs(
                                    age.as_secs()
                                )),
                                humantime::format_duration(self.cfg.stale_after)
                            )),
                        };
                    }
                    slots.push(s);
                }
            }
        }
        let holds = self.holds();
        let resolved: Vec<InFlightInfo> = slots
            .iter()
            .filter_map(|&s| Some(self.info(now, s, self.txns[s as usize].as_ref()?, &holds)))
            .collect();
        for &s in &slots {
            self.orphan_slots.retain(|&o| o != s);
            let t = self.remove_txn(s);
            let tids: Vec<(u32, Tid)> = t
                .parts
                .iter()
                .filter_map(|p| match p.named {
                    Named::Accepted(v) => Some((p.storage, v)),
                    _ => None,
                })
                .collect();
            self.remember(tids);
            self.outcomes.resolved += 1;
        }
        let desc: Vec<String> = resolved
            .iter()
            .map(|r| {
                format!(
                    "{}{} in flight {:.0}s on {}{}",
                    if r.orphan { "orphan" } else { "transaction" },
                    r.client.map(|c| format!(" from {c}")).unwrap_or_default(),
                    r.age_seconds,
                    if r.storages.is_empty() {
                        "no storage".to_string()
                    } else {
                        r.storages
                            .iter()
                            .map(|s| q(s))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                    if r.holds_back.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", holding back {}",
                            r.holds_back
                                .iter()
                                .map(|s| q(s))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                )
            })
            .collect();
        let recomputed = self.is_bootstrapped();
        if recomputed {
            self.recompute();
        }
        let msg = format!(
            "resolved by the operator: transaction {} ({}) is no longer waited for; {}",
            q(id),
            desc.join("; "),
            if recomputed {
                "the point was recomputed"
            } else {
                "the point moves once bootstrap completes"
            }
        );
        self.notice(Level::Warn, NoticeKind::Resolved, msg);
        Resolution {
            resolved,
            refused: None,
        }
    }
}
