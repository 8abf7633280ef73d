//! Where ZODB's valid prefix ends, and where to cut for a TID.
//!
//! Owns the two answers the `cut`, `backup` and `restore` commands rely on:
//! [`DataFs::valid_prefix`] and [`DataFs::cut_position`]. Must not write to
//! the file, and must not disagree with ZODB: the forward scan here mirrors,
//! check for check and in the same order, what `read_index()` in ZODB 6.4's
//! `FileStorage.py` does when `FileStorage(path, read_only=True, stop=S)`
//! opens a file without a usable `.index`:
//!
//! | at a transaction header at `pos`                    | ZODB read-only |
//! |-----------------------------------------------------|----------------|
//! | end of file exactly                                 | ends at `pos`  |
//! | fewer than 23 bytes left                            | ends at `pos`  |
//! | status byte not ASCII                               | raises         |
//! | `pos + tlen + 8 > size`, or status `c`              | ends at `pos`  |
//! | `tlen < header_len`, last 8 bytes of the file read  |                |
//! |   as a length `r` with `size - r < pos or r < 23`   | ends at `pos`  |
//! |   otherwise                                         | raises         |
//! | `tid >= S` (S defaults to ff..ff)                   | ends at `pos`  |
//! | status `u`: redundant length != tlen                | raises         |
//! | a data record cut by EOF, with a version, crossing  |                |
//! |   the transaction, or whose tloc != `pos`           | raises         |
//! | redundant length != tlen                            | raises         |
//! | a tid not above the previous one, an ASCII status   |                |
//! |   other than ` `/`p`/`u`, wrong prev pointers       | logs, goes on  |
//!
//! The cut position for T is that scan's end with S = T+1 (saturating, as
//! ZODB cannot be given 2^64). Where ZODB raises, the answer is the offset
//! of the damaged transaction, with the damage reported: cutting there
//! gives a file ZODB opens.
//!
//! Cost: [`DataFs::cut_position`] first walks backward from the end through
//! the redundant lengths, checking each step (trailer == header tlen, header
//! in range, ASCII status, tids decreasing), fully checks the last kept
//! transaction and the header chain just before it, and so costs O(bytes
//! after the cut). Anything unusual on that walk (a partial or garbage
//! tail, a bad length, a non-ASCII status, a tid order problem) makes it
//! fall back to the forward scan from offset 4, which is exact but reads
//! every header of the file. Damage *before* the last kept transaction is
//! not looked for on the fast path: that is [`DataFs::verify`]'s job.

use super::layout::{
    FIRST_TXN, STATUS_CHECKPOINT, STATUS_PACKED, STATUS_UNDONE, TXN_HEADER_LEN, TXN_TRAILER_LEN,
};
use super::verify::Checks;
use super::{Corruption, DataFs, Error, ErrorKind};
use crate::tid::Tid;

/// Which walk produced an answer (for logs, tests and benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// From the end through the redundant lengths: O(bytes after the cut).
    Backward,
    /// From offset 4, mirroring ZODB's open: O(file).
    Forward,
}

/// The part of the file ZODB's read-only open accepts.
#[derive(Debug)]
pub struct ValidPrefix {
    /// Offset just after the last transaction ZODB reads.
    pub end: u64,
    pub last_tid: Option<Tid>,
    /// What lies at `end` when it is not the end of the file.
    pub damage: Option<Error>,
    /// True when ZODB's open raises because of `damage` instead of quietly
    /// ending at `end`; after truncating the file at `end` it opens.
    pub zodb_refuses: bool,
    pub walk: Walk,
}

/// Where to cut the file so that it ends with the last transaction whose
/// tid is <= the requested TID.
#[derive(Debug)]
pub struct CutPosition {
    /// New length of the file: offset just after the last kept transaction
    /// (4 when none is kept).
    pub position: u64,
    pub last_kept_tid: Option<Tid>,
    /// Complete transactions between `position` and `valid_end`.
    pub transactions_removed: u64,
    /// End of ZODB's valid prefix (see [`ValidPrefix`]).
    pub valid_end: u64,
    /// The damage found at `valid_end`, if the file does not end there.
    pub damage: Option<Error>,
    /// See [`ValidPrefix::zodb_refuses`].
    pub zodb_refuses: bool,
    pub walk: Walk,
}

/// Where a file must be cut for a coherent TID, and what an operator
/// should be told about it: the one rule set `cut`, `backup` and `restore`
/// share, so live, backed-up and restored files are cut alike.
#[derive(Debug)]
pub struct CoherentCut {
    pub cut: CutPosition,
    /// Sentences for the operator (damage removed with the tail).
    pub notes: Vec<String>,
    /// The file ends before `tid` although `tid` was committed to it: it
    /// lost transactions the other storages may depend on.
    pub ends_before_tid: bool,
    /// The transaction right after the cut has status `p`: the file was
    /// packed after `tid`, so the state as of `tid` is no longer in it
    /// (objects changed between `tid` and the pack time lost their older
    /// revisions). Its (offset, tid). Callers refuse such a cut.
    pub below_pack: Option<(u64, Tid)>,
}

impl CoherentCut {
    /// The refusal of a cut below a pack, for the operator.
    pub fn below_pack_refusal(&self, path: &std::path::Path, tid: Tid) -> Option<String> {
        self.below_pack.map(|(pos, next)| {
            format!(
                "{} was packed after TID {} (the next transaction, {} at offset {pos}, has the \
                 packed status 'p'): the state as of that TID is no longer in the file, and \
                 cutting there would give objects that raise POSKeyError; use a point after \
                 the pack, or a backup taken before the pack",
                path.display(),
                tid.hex(),
                next.hex()
            )
        })
    }
}

/// How the forward scan ended at `end`.
struct Ending {
    end: u64,
    damage: Option<Error>,
    refuses: bool,
}

impl DataFs {
    /// End of the prefix ZODB's read-only open (no `stop`) accepts, the
    /// last TID in it, and the damage after it if any.
    pub fn valid_prefix(&self) -> Result<ValidPrefix, Error> {
        let c = self.cut_position(Tid::MAX)?;
        Ok(ValidPrefix {
            end: c.valid_end,
            last_tid: c.last_kept_tid,
            damage: c.damage,
            zodb_refuses: c.zodb_refuses,
            walk: c.walk,
        })
    }

    /// The TID of the last transaction ZODB reads, `None` when there is
    /// none.
    pub fn last_tid(&self) -> Result<Option<Tid>, Error> {
        Ok(self.valid_prefix()?.last_tid)
    }

    /// Where to cut to keep exactly the transactions ZODB reads with
    /// `stop = tid + 1`. See the module documentation for the rules.
    pub fn cut_position(&self, tid: Tid) -> Result<CutPosition, Error> {
        match self.cut_backward(tid)? {
            Some(c) => Ok(c),
            None => self.cut_forward(tid),
        }
    }

    /// [`DataFs::cut_position`] for a coherent TID, with what the operator
    /// must hear about the file: damage after the kept part (removed with
    /// the tail), a file that ends before `tid` (for a point the daemon
    /// saw committed: it lost transactions other storages may depend on),
    /// a cut below a pack.
    pub fn coherent_cut(&self, tid: Tid) -> Result<CoherentCut, Error> {
        self.explain(self.cut_position(tid)?, tid)
    }

    /// What the operator must hear about a cut position for `tid`.
    fn explain(&self, cut: CutPosition, tid: Tid) -> Result<CoherentCut, Error> {
        let mut notes = Vec::new();
        if let Some(d) = &cut.damage {
            notes.push(format!(
                "the file is damaged from offset {} ({d}); the damaged bytes are removed with the tail",
                cut.valid_end
            ));
        }
        let ends_before_tid = cut.position == cut.valid_end
            && cut.transactions_removed == 0
            && cut.last_kept_tid.is_some_and(|last| last < tid);
        let below_pack = if cut.position < cut.valid_end {
            let next = self.read_txn_header(cut.position)?;
            (next.status == STATUS_PACKED).then_some((next.pos, next.tid))
        } else {
            None
        };
        Ok(CoherentCut {
            cut,
            notes,
            ends_before_tid,
            below_pack,
        })
    }

    /// [`DataFs::coherent_cut`], also exact when a transaction header
    /// before the cut is wrong: the checkpoint status `c` (voted, never
    /// finished: ZODB's open stops there, however much follows), a tid
    /// that does not increase or is above `tid`. ZODB never writes such a
    /// file itself (a writable open truncates at the `c`), so the fast path
    /// does not look; this walks every transaction header of the kept part
    /// (23 bytes each: O(transactions), not O(bytes)) and falls back to the
    /// forward scan when one is wrong. For `cut` and `restore`, which change
    /// files. Damage inside the data records of the kept part is found by
    /// `cut --verify` ([`DataFs::verify_upto`]).
    pub fn coherent_cut_checked(&self, tid: Tid) -> Result<CoherentCut, Error> {
        let cc = self.coherent_cut(tid)?;
        if cc.cut.walk == Walk::Forward || !self.headers_disagree(cc.cut.position, tid)? {
            return Ok(cc);
        }
        self.explain(self.cut_forward(tid)?, tid)
    }

    /// True when the headers of the transactions before `end` say the fast
    /// path may be wrong: a `c` status, a tid that does not increase, or
    /// one above `tid` (a damaged file whose backward walk kept too much;
    /// found by fuzzing). Damage inside data records is `verify`'s job.
    fn headers_disagree(&self, end: u64, tid: Tid) -> Result<bool, Error> {
        let mut pos = FIRST_TXN;
        let mut previous: Option<Tid> = None;
        while pos < end {
            let h = match self.read_txn_header(pos) {
                Ok(h) => h,
                // The forward scan answers for damage too.
                Err(e) if e.is_damage() => return Ok(true),
                Err(e) => return Err(e),
            };
            if h.status == STATUS_CHECKPOINT || h.tid > tid || previous.is_some_and(|p| h.tid <= p)
            {
                return Ok(true);
            }
            previous = Some(h.tid);
            pos = h.end();
        }
        Ok(false)
    }

    /// The forward scan only (exact, O(file)); public so that tests and
    /// benchmarks can compare both walks.
    pub fn cut_forward(&self, tid: Tid) -> Result<CutPosition, Error> {
        let stop = tid.0.saturating_add(1);
        let mut pos = FIRST_TXN;
        let mut last_tid: Option<Tid> = None;
        let mut cut: Option<(u64, Option<Tid>)> = None;
        let mut removed = 0u64;
        let ending = loop {
            match self.zodb_step(pos, stop, cut.is_some())? {
                Step::Kept(h_tid, next) => {
                    if cut.is_some() {
                        removed += 1;
                    }
                    last_tid = Some(h_tid);
                    pos = next;
                }
                Step::AtStop => {
                    cut = Some((pos, last_tid));
                    // Keep scanning with ZODB's default stop to find the
                    // valid end and count what the cut removes.
                    continue;
                }
                Step::End(e) => break e,
            }
        };
        let (position, last_kept_tid) = cut.unwrap_or((ending.end, last_tid));
        Ok(CutPosition {
            position,
            last_kept_tid,
            transactions_removed: removed,
            valid_end: ending.end,
            damage: ending.damage,
            zodb_refuses: ending.refuses,
            walk: Walk::Forward,
        })
    }

    /// One transaction of ZODB's `read_index` loop at `pos`. `past_stop`
    /// switches to ZODB's default stop (ff..ff) once the caller's stop was
    /// met. Err only for I/O failures.
    fn zodb_step(&self, pos: u64, stop: u64, past_stop: bool) -> Result<Step, Error> {
        let stop = if past_stop { u64::MAX } else { stop };
        let end = |damage: Error, refuses| {
            Ok(Step::End(Ending {
                end: pos,
                damage: Some(damage),
                refuses,
            }))
        };
        if pos == self.size {
            return Ok(Step::End(Ending {
                end: pos,
                damage: None,
                refuses: false,
            }));
        }
        let raw = match self.read_raw_txn_header(pos) {
            Ok(raw) => raw,
            Err(e) if e.is_damage() => return end(e, false),
            Err(e) => return Err(e),
        };
        if !raw.status.is_ascii() {
            return end(
                self.corrupt(pos, Corruption::NonAsciiStatus(raw.status)),
                true,
            );
        }
        let available = self.size - pos;
        let needed = raw.tlen.saturating_add(TXN_TRAILER_LEN);
        if needed > available {
            let what = "transaction";
            return end(
                self.error(
                    pos,
                    ErrorKind::Truncated {
                        needed,
                        available,
                        what,
                    },
                ),
                false,
            );
        }
        if raw.status == STATUS_CHECKPOINT {
            return end(self.corrupt(pos, Corruption::Checkpoint), false);
        }
        if raw.tlen < raw.header_len() {
            let damage = self.corrupt(
                pos,
                Corruption::TxnShorterThanHeader {
                    tlen: raw.tlen,
                    header_len: raw.header_len(),
                },
            );
            // ZODB's guess between "garbage at the end of the file" (stop
            // quietly) and "damage in the middle" (raise), from the last 8
            // bytes of the file. size >= pos + 8 was checked just above.
            let rtl =
                self.read_u64_at(self.size - TXN_TRAILER_LEN, "redundant transaction length")?;
            let garbage_at_end = rtl > self.size - pos || rtl < TXN_HEADER_LEN as u64;
            return end(damage, !garbage_at_end);
        }
        if raw.tid >= stop {
            if past_stop || stop == u64::MAX {
                // ZODB's own default stop: a tid of ff..ff is never read.
                return end(self.corrupt(pos, Corruption::ReservedTid), false);
            }
            return Ok(Step::AtStop);
        }
        let h = match self.read_txn_header(pos) {
            Ok(h) => h,
            // Unreachable after the checks above, but never trusted.
            Err(e) if e.is_damage() => return end(e, true),
            Err(e) => return Err(e),
        };
        if h.status != STATUS_UNDONE {
            match self.walk_records(&h, Checks::Zodb) {
                Ok(_) => {}
                Err(e) if e.is_damage() => return end(e, true),
                Err(e) => return Err(e),
            }
        }
        match self.check_trailer(&h) {
            Ok(()) => Ok(Step::Kept(h.tid, h.end())),
            Err(e) if e.is_damage() => end(e, true),
            Err(e) => Err(e),
        }
    }

    /// The fast path: `None` when the tail does not look like ZODB wrote it
    /// and finished, which sends the caller to [`Self::cut_forward`].
    fn cut_backward(&self, tid: Tid) -> Result<Option<CutPosition>, Error> {
        let stop = tid.0.saturating_add(1);
        let mut pos = self.size;
        let mut next_tid: Option<Tid> = None;
        let mut removed = 0u64;
        let mut valid_end = self.size;
        let mut damage: Option<Error> = None;
        let mut refuses = false;
        loop {
            if pos == FIRST_TXN {
                return Ok(Some(CutPosition {
                    position: FIRST_TXN,
                    last_kept_tid: None,
                    transactions_removed: removed,
                    valid_end,
                    damage,
                    zodb_refuses: refuses,
                    walk: Walk::Backward,
                }));
            }
            let h = match self.txn_before(pos) {
                Ok(h) => h,
                Err(e) if e.is_damage() => return Ok(None),
                Err(e) => return Err(e),
            };
            if next_tid.is_some_and(|n| h.tid >= n) {
                // Stop-by-tid is ZODB's first tid >= stop: only the forward
                // scan answers that when tids go down.
                return Ok(None);
            }
            next_tid = Some(h.tid);
            pos = h.pos;
            // ZODB's checks for this transaction, in its order; the first
            // failure from the start of the file is where its prefix ends,
            // so each one found walking backward replaces the previous.
            let found = if !h.status.is_ascii() {
                Some((
                    self.corrupt(h.pos, Corruption::NonAsciiStatus(h.status)),
                    true,
                ))
            } else if h.status == STATUS_CHECKPOINT {
                Some((self.corrupt(h.pos, Corruption::Checkpoint), false))
            } else if h.tid == Tid::MAX {
                Some((self.corrupt(h.pos, Corruption::ReservedTid), false))
            } else if h.tid.0 >= stop {
                // Removed by the cut, but ZODB's open without stop reads
                // it, so it decides where the valid prefix ends.
                match self.zodb_body(&h)? {
                    None => {
                        removed += 1;
                        None
                    }
                    Some(e) => Some((e, true)),
                }
            } else {
                // `h` is the last kept transaction: check it as ZODB would,
                // and the header chain just before it, so a file damaged
                // right there is not cut quietly.
                if self.zodb_body(&h)?.is_some() {
                    return Ok(None);
                }
                if h.pos > FIRST_TXN {
                    match self.txn_before(h.pos) {
                        Ok(p)
                            if p.status.is_ascii()
                                && p.status != STATUS_CHECKPOINT
                                && p.tid < h.tid => {}
                        Ok(_) => return Ok(None),
                        Err(e) if e.is_damage() => return Ok(None),
                        Err(e) => return Err(e),
                    }
                }
                return Ok(Some(CutPosition {
                    position: h.end(),
                    last_kept_tid: Some(h.tid),
                    transactions_removed: removed,
                    valid_end,
                    damage,
                    zodb_refuses: refuses,
                    walk: Walk::Backward,
                }));
            };
            if let Some((e, r)) = found {
                valid_end = h.pos;
                damage = Some(e);
                refuses = r;
                removed = 0;
            }
        }
    }

    /// The data records of a transaction whose header and trailer already
    /// match, checked as ZODB's open does: `Some(damage)` when it would
    /// raise. Err only for I/O failures.
    fn zodb_body(&self, h: &super::TxnHeader) -> Result<Option<Error>, Error> {
        if h.status == STATUS_UNDONE {
            return Ok(None);
        }
        match self.walk_records(h, Checks::Zodb) {
            Ok(_) => Ok(None),
            Err(e) if e.is_damage() => Ok(Some(e)),
            Err(e) => Err(e),
        }
    }
}

enum Step {
    /// The transaction was read; the next one starts at the offset.
    Kept(Tid, u64),
    /// The transaction's tid reaches the caller's stop.
    AtStop,
    End(Ending),
}
