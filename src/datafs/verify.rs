//! Checking transactions and whole files, like ZODB's `fstest`.
//!
//! Owns: the data-record walk inside one transaction, in two strengths:
//! [`Checks::Zodb`] (only what makes ZODB's `read_index` refuse to open a
//! file, used by [`super::cut`] to mirror it) and [`Checks::Full`] (fstest's
//! checks plus the data record's tid and prev/back pointers, used by
//! [`DataFs::verify_transaction`] and [`DataFs::verify`]). Must not decide
//! where a cut goes, nor read pickles: plen bytes are skipped, never loaded.

use super::layout::{
    RawDataHeader, DATA_HEADER_LEN, STATUS_CHECKPOINT, STATUS_DONE, STATUS_PACKED, STATUS_UNDONE,
};
use super::{Corruption, DataFs, Error, TxnHeader};
use crate::tid::Tid;

/// What one verified transaction holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxnSummary {
    /// Data records (0 for an undone `u` transaction, whose records are
    /// not read, as ZODB does).
    pub records: u64,
    /// Sum of the pickle lengths.
    pub data_bytes: u64,
    /// Records with a back pointer instead of a pickle.
    pub back_pointers: u64,
}

/// The result of a whole-file check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VerifyReport {
    pub transactions: u64,
    pub records: u64,
    pub data_bytes: u64,
    pub back_pointers: u64,
    pub first_tid: Option<Tid>,
    pub last_tid: Option<Tid>,
    /// Offset just after the last transaction (the file size when Ok).
    pub end: u64,
}

/// How much a data-record walk checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checks {
    /// What ZODB's `read_index` refuses to open on: a record header or back
    /// pointer cut by the end of the file, a version, a record crossing its
    /// transaction, a tloc not pointing at it.
    Zodb,
    /// Also the record's tid and its prev/back pointers (fstest and
    /// `FileStorageFormatter.checkData`).
    Full,
}

/// The status byte as fstest judges it.
pub(crate) fn check_status(fs: &DataFs, pos: u64, status: u8) -> Result<(), Error> {
    match status {
        STATUS_DONE | STATUS_PACKED | STATUS_UNDONE => Ok(()),
        STATUS_CHECKPOINT => Err(fs.corrupt(pos, Corruption::Checkpoint)),
        s if !s.is_ascii() => Err(fs.corrupt(pos, Corruption::NonAsciiStatus(s))),
        s => Err(fs.corrupt(pos, Corruption::InvalidStatus(s))),
    }
}

impl DataFs {
    /// Walks the data records of `h` (not its status nor its trailer).
    pub(crate) fn walk_records(&self, h: &TxnHeader, checks: Checks) -> Result<TxnSummary, Error> {
        self.walk_records_visit(h, checks, &mut |_, _| {})
    }

    /// [`Self::walk_records`], handing each record that passed its checks
    /// (offset, header) to `visit`.
    pub(crate) fn walk_records_visit(
        &self,
        h: &TxnHeader,
        checks: Checks,
        visit: &mut dyn FnMut(u64, &RawDataHeader),
    ) -> Result<TxnSummary, Error> {
        let mut sum = TxnSummary::default();
        let end = h.data_end();
        let mut p = h.data_start();
        while p < end {
            if p + DATA_HEADER_LEN as u64 > end {
                return Err(self.corrupt(
                    p,
                    Corruption::DataRecordCrossesTxn {
                        record_end: p + DATA_HEADER_LEN as u64,
                        txn_end: end,
                    },
                ));
            }
            let d: RawDataHeader = self.read_raw_data_header(p)?;
            if d.vlen != 0 {
                return Err(self.corrupt(p, Corruption::VersionLength(d.vlen)));
            }
            let record_end = d.record_len().and_then(|l| p.checked_add(l));
            match record_end {
                Some(e) if e <= end => {}
                _ => {
                    return Err(self.corrupt(
                        p,
                        Corruption::DataRecordCrossesTxn {
                            record_end: record_end.unwrap_or(u64::MAX),
                            txn_end: end,
                        },
                    ))
                }
            }
            if d.tloc != h.pos {
                return Err(self.corrupt(
                    p,
                    Corruption::DataRecordWrongTxn {
                        tloc: d.tloc,
                        txn_pos: h.pos,
                    },
                ));
            }
            if d.plen == 0 {
                sum.back_pointers += 1;
            } else {
                sum.data_bytes += d.plen;
            }
            if checks == Checks::Full {
                if d.tid != h.tid.0 {
                    return Err(self.corrupt(
                        p,
                        Corruption::DataRecordWrongTid {
                            tid: Tid(d.tid),
                            txn_tid: h.tid,
                        },
                    ));
                }
                if d.prev >= p {
                    return Err(self.corrupt(p, Corruption::PrevPointer { prev: d.prev }));
                }
                if d.plen == 0 {
                    let back = self.read_u64_at(p + DATA_HEADER_LEN as u64, "back pointer")?;
                    if back >= p {
                        return Err(self.corrupt(p, Corruption::BackPointer { back }));
                    }
                }
            }
            sum.records += 1;
            visit(p, &d);
            // Checked above: record_end is Some and <= end.
            p = record_end.unwrap_or(end);
        }
        Ok(sum)
    }

    /// All of fstest's checks on one transaction except the tid order
    /// (which needs the previous one): status, lengths, redundant length,
    /// and every data record inside it, pointing back to it, with its tid,
    /// prev/back pointers below the record, no version. An undone (`u`)
    /// transaction's records are not read, as in ZODB.
    pub fn verify_transaction(&self, h: &TxnHeader) -> Result<TxnSummary, Error> {
        self.verify_transaction_visit(h, &mut |_, _| {})
    }

    /// [`Self::verify_transaction`], handing each data record (offset,
    /// header) to `visit` as it passes its checks; records of an undone
    /// transaction are not visited. On Err, some records may have been
    /// visited: the caller drops what it collected.
    pub(crate) fn verify_transaction_visit(
        &self,
        h: &TxnHeader,
        visit: &mut dyn FnMut(u64, &RawDataHeader),
    ) -> Result<TxnSummary, Error> {
        // Re-read: `h` may come from the caller and must match the file.
        let h = self.read_txn_header(h.pos)?;
        check_status(self, h.pos, h.status)?;
        self.check_trailer(&h)?;
        if h.status == STATUS_UNDONE {
            return Ok(TxnSummary::default());
        }
        self.walk_records_visit(&h, Checks::Full, visit)
    }

    /// Only the checks whose failure makes ZODB's open raise (see
    /// [`super::cut`]): what every transaction kept by a cut passes.
    pub fn zodb_check_transaction(&self, h: &TxnHeader) -> Result<TxnSummary, Error> {
        let h = self.read_txn_header(h.pos)?;
        if !h.status.is_ascii() {
            return Err(self.corrupt(h.pos, Corruption::NonAsciiStatus(h.status)));
        }
        if h.status == STATUS_CHECKPOINT {
            return Err(self.corrupt(h.pos, Corruption::Checkpoint));
        }
        self.check_trailer(&h)?;
        if h.status == STATUS_UNDONE {
            return Ok(TxnSummary::default());
        }
        self.walk_records(&h, Checks::Zodb)
    }

    /// Checks the whole file like ZODB's `fstest` (plus the record tids and
    /// pointers), failing at the first damage. `progress(pos, size)` is
    /// called after each transaction.
    pub fn verify(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<VerifyReport, Error> {
        self.verify_upto(self.size, progress)
    }

    /// [`DataFs::verify`] of the transactions that start before `end` (a
    /// cut position: the part of the file that would be kept).
    /// `progress(pos, end)` is called after each transaction.
    pub fn verify_upto(
        &self,
        end: u64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<VerifyReport, Error> {
        let end = end.min(self.size);
        let mut r = VerifyReport {
            end: super::layout::FIRST_TXN,
            ..VerifyReport::default()
        };
        // fstest starts from tid 0, so a tid of 0 is a reduction too.
        let mut previous = Tid(0);
        let mut pos = super::layout::FIRST_TXN;
        while pos < end {
            let h = self.read_txn_header(pos)?;
            if h.tid <= previous {
                return Err(self.corrupt(
                    pos,
                    Corruption::TidNotIncreasing {
                        tid: h.tid,
                        previous,
                    },
                ));
            }
            let s = self.verify_transaction(&h)?;
            previous = h.tid;
            r.transactions += 1;
            r.records += s.records;
            r.data_bytes += s.data_bytes;
            r.back_pointers += s.back_pointers;
            r.first_tid.get_or_insert(h.tid);
            r.last_tid = Some(h.tid);
            pos = h.end();
            r.end = pos;
            progress(pos, end);
        }
        Ok(r)
    }
}
