//! Transaction headers and the two walks over them.
//!
//! Owns: reading one transaction header with its bounds checked, the forward
//! iterator (header, then tlen to the next one, checking each redundant
//! length) and the backward iterator (from the end, through the redundant
//! lengths). Must not look inside data records (that is [`super::verify`])
//! nor decide where ZODB's valid prefix ends (that is [`super::cut`]).

use super::layout::{FIRST_TXN, TXN_HEADER_LEN, TXN_TRAILER_LEN};
use super::{Corruption, DataFs, Error, ErrorKind, TxnHeader};
use crate::tid::Tid;

impl DataFs {
    /// The transaction header at `pos`, checked to fit in the file
    /// (`pos + tlen + 8 <= size`) and to be no longer than its transaction.
    /// The status is returned as stored; judging it is the caller's job.
    pub fn read_txn_header(&self, pos: u64) -> Result<TxnHeader, Error> {
        if pos < FIRST_TXN {
            return Err(self.corrupt(pos, Corruption::OffsetInMagic));
        }
        let raw = self.read_raw_txn_header(pos)?;
        let available = self.size - pos;
        let needed = raw.tlen.saturating_add(TXN_TRAILER_LEN);
        if needed > available {
            return Err(self.error(
                pos,
                ErrorKind::Truncated {
                    needed,
                    available,
                    what: "transaction",
                },
            ));
        }
        if raw.tlen < raw.header_len() {
            return Err(self.corrupt(
                pos,
                Corruption::TxnShorterThanHeader {
                    tlen: raw.tlen,
                    header_len: raw.header_len(),
                },
            ));
        }
        Ok(TxnHeader {
            pos,
            tid: Tid(raw.tid),
            tlen: raw.tlen,
            status: raw.status,
            user_len: raw.ulen,
            desc_len: raw.dlen,
            ext_len: raw.elen,
        })
    }

    /// Checks that the redundant length after `h` repeats its tlen.
    pub fn check_trailer(&self, h: &TxnHeader) -> Result<(), Error> {
        let trailer = self.read_u64_at(h.data_end(), "redundant transaction length")?;
        if trailer != h.tlen {
            return Err(self.corrupt(
                h.data_end(),
                Corruption::RedundantLength {
                    header: h.tlen,
                    trailer,
                },
            ));
        }
        Ok(())
    }

    /// Transactions from `from` (a transaction offset, 4 for the first) to
    /// the end of the file. Each header's bounds and redundant length are
    /// checked; the first failure is yielded once and ends the iteration.
    pub fn iter_forward(&self, from: u64) -> ForwardIter<'_> {
        ForwardIter {
            fs: self,
            pos: from,
            done: false,
        }
    }

    /// Transactions from the last to the first, found through the redundant
    /// lengths: costs O(transactions visited), whatever the file size. The
    /// first inconsistency is yielded once and ends the iteration.
    pub fn iter_backward(&self) -> BackwardIter<'_> {
        BackwardIter {
            fs: self,
            pos: self.size,
            done: false,
        }
    }

    /// Like [`Self::iter_backward`] from `end`, the end of a transaction.
    pub fn iter_backward_from(&self, end: u64) -> BackwardIter<'_> {
        BackwardIter {
            fs: self,
            pos: end.min(self.size),
            done: false,
        }
    }

    /// One step of the backward walk: the transaction ending at `end`.
    pub(crate) fn txn_before(&self, end: u64) -> Result<TxnHeader, Error> {
        let min_txn = TXN_HEADER_LEN as u64 + TXN_TRAILER_LEN;
        let trailer_pos = end.saturating_sub(TXN_TRAILER_LEN);
        if end < FIRST_TXN + min_txn {
            return Err(self.error(
                FIRST_TXN,
                ErrorKind::Truncated {
                    needed: min_txn,
                    available: end.saturating_sub(FIRST_TXN),
                    what: "transaction",
                },
            ));
        }
        let tlen = self.read_u64_at(trailer_pos, "redundant transaction length")?;
        let chain = |fs: &DataFs| fs.corrupt(trailer_pos, Corruption::BackwardChain { tlen });
        // The transaction must start at or after the first offset.
        if tlen > trailer_pos - FIRST_TXN || tlen < TXN_HEADER_LEN as u64 {
            return Err(chain(self));
        }
        let pos = trailer_pos - tlen;
        let h = self.read_txn_header(pos).map_err(|_| chain(self))?;
        if h.tlen != tlen {
            return Err(chain(self));
        }
        Ok(h)
    }
}

/// See [`DataFs::iter_forward`].
pub struct ForwardIter<'a> {
    fs: &'a DataFs,
    pos: u64,
    done: bool,
}

impl Iterator for ForwardIter<'_> {
    type Item = Result<TxnHeader, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos == self.fs.size {
            return None;
        }
        let r = self
            .fs
            .read_txn_header(self.pos)
            .and_then(|h| self.fs.check_trailer(&h).map(|()| h));
        match r {
            Ok(h) => {
                self.pos = h.end();
                Some(Ok(h))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// See [`DataFs::iter_backward`].
pub struct BackwardIter<'a> {
    fs: &'a DataFs,
    pos: u64,
    done: bool,
}

impl Iterator for BackwardIter<'_> {
    type Item = Result<TxnHeader, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos <= FIRST_TXN {
            return None;
        }
        match self.fs.txn_before(self.pos) {
            Ok(h) => {
                self.pos = h.pos;
                Some(Ok(h))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
