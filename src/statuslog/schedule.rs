//! When the daemon writes a status record (SPEC §4).
//!
//! Pure: no clock, no I/O. The caller passes `now`, a monotonic time since
//! any origin it likes, and asks `due(now)` on every timer tick and after
//! every change; `next_deadline()` gives its poll timeout.
//!
//! Policy:
//! - nothing is due before `on_opened` (the daemon opens the status file,
//!   and calls it, once bootstrap is complete, and again after SIGHUP);
//! - an `f` record is due right after `on_opened`, then every
//!   `full_period` after the last `f`;
//! - a `d` record is due when the point changed since the last record and
//!   at least `burst_period` passed since the last record of either kind;
//! - when both are due, `f` wins (it carries the change too);
//! - after `failed`, nothing is due for one `burst_period` (at least
//!   `MIN_RETRY`, so a zero burst period cannot spin on a full disk); what
//!   was due stays due;
//! - after `point_empty` (the `f` that was due would be `{}`, which the
//!   original's readers reject), nothing is due until the next change,
//!   and then the `f` is.

use std::time::Duration;

use super::record::RecordKind;

/// Floor of the wait after a failed write.
pub const MIN_RETRY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    burst_period: Duration,
    full_period: Duration,
    opened: bool,
    /// When the next `f` is due (meaningful once opened).
    full_due: Duration,
    last_record: Option<Duration>,
    /// The first change not yet written.
    changed_since: Option<Duration>,
    retry_at: Option<Duration>,
    /// The point had nothing to write: wait for a change.
    empty_point: bool,
}

impl Schedule {
    pub fn new(burst_period: Duration, full_period: Duration) -> Schedule {
        Schedule {
            burst_period,
            full_period,
            opened: false,
            full_due: Duration::ZERO,
            last_record: None,
            changed_since: None,
            retry_at: None,
            empty_point: false,
        }
    }

    /// The status file was (re)opened: an `f` record is due now. A pending
    /// retry delay is dropped (the new file may well be writable).
    pub fn on_opened(&mut self, now: Duration) {
        self.opened = true;
        self.full_due = now;
        self.retry_at = None;
    }

    /// The published point changed.
    pub fn on_changed(&mut self, now: Duration) {
        self.changed_since.get_or_insert(now);
        self.empty_point = false;
    }

    /// The record that was due would hold no storage: write nothing until
    /// the point changes (the `f` stays due and goes out then).
    pub fn point_empty(&mut self) {
        self.empty_point = true;
    }

    /// Which record to write now, if any.
    pub fn due(&self, now: Duration) -> Option<RecordKind> {
        if !self.opened || self.empty_point || self.retry_at.is_some_and(|r| now < r) {
            return None;
        }
        if now >= self.full_due {
            return Some(RecordKind::Full);
        }
        match self.delta_due() {
            Some(t) if now >= t => Some(RecordKind::Delta),
            _ => None,
        }
    }

    /// A record of `kind` was written at `now`.
    pub fn written(&mut self, kind: RecordKind, now: Duration) {
        self.last_record = Some(now);
        self.changed_since = None;
        self.retry_at = None;
        if kind == RecordKind::Full {
            self.full_due = now.saturating_add(self.full_period);
        }
    }

    /// Writing failed at `now`: try again one period later.
    pub fn failed(&mut self, now: Duration) {
        self.retry_at = Some(now.saturating_add(self.burst_period.max(MIN_RETRY)));
    }

    /// When `due` may next return a record; `None` while nothing can become
    /// due without an event (not opened yet).
    pub fn next_deadline(&self) -> Option<Duration> {
        if !self.opened || self.empty_point {
            return None;
        }
        let mut at = self.full_due;
        if let Some(d) = self.delta_due() {
            at = at.min(d);
        }
        if let Some(r) = self.retry_at {
            at = at.max(r);
        }
        Some(at)
    }

    /// Since when the file lags behind the published point (for `INFO`).
    pub fn unwritten_since(&self) -> Option<Duration> {
        self.changed_since
    }

    fn delta_due(&self) -> Option<Duration> {
        self.changed_since?;
        Some(
            self.last_record
                .map_or(Duration::ZERO, |t| t.saturating_add(self.burst_period)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn sched() -> Schedule {
        Schedule::new(s(1), s(300))
    }

    #[test]
    fn nothing_before_opening() {
        let mut sc = sched();
        sc.on_changed(s(0));
        assert_eq!(sc.due(s(1000)), None);
        assert_eq!(sc.next_deadline(), None);
    }

    #[test]
    fn full_first_after_opening_even_without_change() {
        let mut sc = sched();
        sc.on_opened(s(10));
        assert_eq!(sc.next_deadline(), Some(s(10)));
        assert_eq!(sc.due(s(10)), Some(RecordKind::Full));
        sc.written(RecordKind::Full, s(10));
        assert_eq!(sc.due(s(11)), None);
        assert_eq!(sc.next_deadline(), Some(s(310)));
        // A SIGHUP reopen asks for a full record again.
        sc.on_opened(s(20));
        assert_eq!(sc.due(s(20)), Some(RecordKind::Full));
    }

    #[test]
    fn delta_at_most_every_burst_period_and_only_after_a_change() {
        let mut sc = sched();
        sc.on_opened(s(0));
        sc.written(RecordKind::Full, s(0));
        let ms = Duration::from_millis;
        sc.on_changed(ms(100));
        assert_eq!(sc.due(ms(100)), None, "burst period since the f not over");
        assert_eq!(sc.next_deadline(), Some(ms(1000)));
        assert_eq!(sc.due(ms(999)), None);
        assert_eq!(sc.due(ms(1000)), Some(RecordKind::Delta));
        sc.written(RecordKind::Delta, ms(1000));
        assert_eq!(sc.due(ms(5000)), None, "no change since the last record");
        assert_eq!(sc.next_deadline(), Some(s(300)));
        // A change long after the last record is written at once.
        sc.on_changed(ms(5000));
        assert_eq!(sc.due(ms(5000)), Some(RecordKind::Delta));
        assert_eq!(sc.unwritten_since(), Some(ms(5000)));
        sc.written(RecordKind::Delta, ms(5000));
        assert_eq!(sc.unwritten_since(), None);
        // Changes in a burst collapse into one record per period.
        let mut writes = 0;
        for t in (5001..=9000).step_by(10) {
            sc.on_changed(ms(t));
            if let Some(k) = sc.due(ms(t)) {
                assert_eq!(k, RecordKind::Delta);
                sc.written(k, ms(t));
                writes += 1;
            }
        }
        assert_eq!(
            writes, 3,
            "at 6.001, 7.001 and 8.001 s: one per burst period"
        );
    }

    #[test]
    fn full_every_full_period_and_full_wins_over_delta() {
        let mut sc = sched();
        sc.on_opened(s(0));
        sc.written(RecordKind::Full, s(0));
        sc.on_changed(s(299));
        sc.written(RecordKind::Delta, s(299));
        sc.on_changed(s(299));
        assert_eq!(sc.next_deadline(), Some(s(300)));
        assert_eq!(sc.due(s(300)), Some(RecordKind::Full), "both due: f wins");
        sc.written(RecordKind::Full, s(300));
        assert_eq!(sc.due(s(301)), None, "the f carried the change");
        assert_eq!(sc.due(s(599)), None);
        assert_eq!(sc.due(s(600)), Some(RecordKind::Full));
    }

    #[test]
    fn failed_write_is_retried_one_period_later() {
        let mut sc = sched();
        sc.on_opened(s(0));
        assert_eq!(sc.due(s(0)), Some(RecordKind::Full));
        sc.failed(s(0));
        assert_eq!(sc.due(Duration::from_millis(999)), None);
        assert_eq!(sc.next_deadline(), Some(s(1)));
        assert_eq!(sc.due(s(1)), Some(RecordKind::Full));
        sc.written(RecordKind::Full, s(1));
        sc.on_changed(s(2));
        assert_eq!(sc.due(s(2)), Some(RecordKind::Delta));
        sc.failed(s(2));
        assert_eq!(sc.due(s(2)), None);
        assert_eq!(sc.next_deadline(), Some(s(3)));
        assert_eq!(
            sc.due(s(3)),
            Some(RecordKind::Delta),
            "the change is still pending"
        );
    }

    #[test]
    fn an_empty_point_waits_for_the_first_change_then_goes_out_as_f() {
        let mut sc = sched();
        sc.on_opened(s(0));
        assert_eq!(sc.due(s(0)), Some(RecordKind::Full));
        sc.point_empty();
        assert_eq!(sc.due(s(0)), None);
        assert_eq!(sc.due(s(1000)), None, "not even the periodic f");
        assert_eq!(sc.next_deadline(), None, "no timer: only a change helps");
        sc.on_changed(s(1001));
        assert_eq!(sc.due(s(1001)), Some(RecordKind::Full));
        sc.written(RecordKind::Full, s(1001));
        assert_eq!(sc.due(s(1002)), None);
        assert_eq!(sc.next_deadline(), Some(s(1301)));
    }

    #[test]
    fn zero_burst_period_still_waits_after_a_failure() {
        let mut sc = Schedule::new(Duration::ZERO, s(300));
        sc.on_opened(s(0));
        sc.failed(s(0));
        assert_eq!(sc.next_deadline(), Some(MIN_RETRY));
        assert_eq!(sc.due(s(0)), None);
    }

    #[test]
    fn huge_periods_do_not_overflow() {
        let mut sc = Schedule::new(Duration::MAX, Duration::MAX);
        sc.on_opened(s(1));
        sc.written(RecordKind::Full, s(1));
        sc.on_changed(s(2));
        assert_eq!(sc.due(s(1_000_000)), None);
        assert_eq!(sc.next_deadline(), Some(Duration::MAX));
        sc.failed(s(3));
    }
}
