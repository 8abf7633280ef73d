//! Raising the published point (SPEC §3.2), incrementally.
//!
//! The published point only moves up, and only onto TIDs of remembered
//! committed transactions (every remembered TID on a storage lies above its
//! published value). So the next point is the current one plus a set of
//! remembered transactions "absorbed" whole: on each storage the absorbed
//! ones are those with the lowest TIDs, and no absorbed TID exceeds the cap
//! that in-flight transactions put on its storage.
//!
//! One step, from a storage `s`: take the group of transactions holding the
//! lowest remembered TID on `s`; each of them must hold the lowest TID on
//! every other storage it touched, whose groups join in turn; every storage
//! reached must allow its lowest TID under its cap. If that closure holds,
//! it is absorbed at once: each storage reached moves to its lowest TID and
//! those transactions are forgotten. Otherwise nothing moves from `s`.
//!
//! Only storages whose lowest group or cap changed (`dirty`) can start a
//! successful step, since a closure's success depends only on the storages
//! it reaches. So the cost of an event is the storages it names plus what
//! it lets through, never the number of storages or the history.
//!
//! Safety holds whatever the clients send: a step never splits a remembered
//! transaction (whole groups move and each storage stops just below its next
//! TID) and never passes a cap. The result is the *greatest* point of the
//! rule whenever no two transactions committed in opposite orders on two
//! storages (which ZODB's ordered commit locks guarantee): the step then
//! finds every transaction in order. When clients break that order, the
//! transactions caught in such a cycle simply wait (never unsafe).

use super::Engine;

impl Engine {
    /// Publishes everything the dirty storages let through.
    pub(super) fn recompute(&mut self) {
        while let Some(s) = self.dirty.pop() {
            self.st[s as usize].dirty = false;
            self.try_advance(s);
        }
    }

    /// One closure step from `start` (see the module documentation).
    /// On success the storages reached are dirty again, so the caller's
    /// loop tries their next groups.
    fn try_advance(&mut self, start: u32) -> bool {
        if self.st[start as usize].pending.is_empty() {
            return false;
        }
        self.gen += 1;
        let gen = self.gen;
        let mut stors = std::mem::take(&mut self.scratch_st);
        let mut txs = std::mem::take(&mut self.scratch_c);
        stors.clear();
        txs.clear();
        self.smark[start as usize] = gen;
        stors.push(start);
        let mut ok = true;
        let mut i = 0;
        'closure: while i < stors.len() {
            let r = stors[i];
            i += 1;
            let st = &self.st[r as usize];
            let Some(&(v, _)) = st.pending.first() else {
                // Reached through a transaction it does not hold: the
                // bookkeeping is broken; refuse to move rather than guess.
                ok = false;
                break;
            };
            if !st.cap_allows(v) {
                ok = false;
                break;
            }
            for &(_, c) in st.pending.range((v, 0)..=(v, u32::MAX)) {
                let Some(com) = self.committed[c as usize].as_mut() else {
                    ok = false;
                    break 'closure;
                };
                if com.mark == gen {
                    continue;
                }
                com.mark = gen;
                txs.push(c);
                for &(r2, t2) in &com.tids {
                    let lowest = self.st[r2 as usize].pending.first().map(|e| e.0);
                    if lowest != Some(t2) {
                        ok = false;
                        break 'closure;
                    }
                    if self.smark[r2 as usize] != gen {
                        self.smark[r2 as usize] = gen;
                        stors.push(r2);
                    }
                }
            }
        }
        if ok {
            for &r in &stors {
                let st = &mut self.st[r as usize];
                // Checked non-empty by the closure walk above.
                let v = st.pending.first().map(|e| e.0).expect("closure storage");
                while st.pending.first().is_some_and(|e| e.0 == v) {
                    st.pending.pop_first();
                    self.pending_entries -= 1;
                }
                st.published = Some(v);
                self.point.get_mut().queue(r);
                if !st.changed {
                    st.changed = true;
                    self.changed.push(r);
                }
                if !st.dirty {
                    st.dirty = true;
                    self.dirty.push(r);
                }
            }
            for &c in &txs {
                self.committed[c as usize] = None;
                self.free_committed.push(c);
                self.remembered -= 1;
            }
        }
        self.scratch_st = stors;
        self.scratch_c = txs;
        ok
    }
}
