//! Metrics for Prometheus: what `GET /metrics` answers, built from the
//! engine and the daemon's own counters at scrape time (nothing is kept per
//! event). Pure: the daemon owns the metrics socket and passes a
//! [`Snapshot`] in; `request` turns request bytes into answer bytes,
//! `exposition` writes the 0.0.4 text format.
//!
//! The metric names are an interface (dashboards and alerts use them):
//! add, never rename. Each is described in the README ("Metrics"), with an
//! alerting example.

pub mod exposition;
pub mod request;

use crate::engine::{Engine, Now};
use exposition::{Exposition, Kind, Value};

/// What the daemon knows beyond the engine.
#[derive(Debug, Clone, Copy)]
pub struct DaemonCounters {
    /// Open protocol connections (metrics requests not counted).
    pub connections: usize,
    /// Status-file writes or fsyncs that failed since start-up.
    pub status_write_errors: u64,
    /// Unix time of the last record written, if any.
    pub last_record_unix: Option<f64>,
    pub uptime_seconds: f64,
}

/// Everything one scrape shows.
pub struct Snapshot<'a> {
    pub engine: &'a Engine,
    pub now: Now,
    pub daemon: DaemonCounters,
}

fn gauge(e: &mut Exposition, name: &str, help: &str, v: Value) {
    e.family(name, Kind::Gauge, help);
    e.sample(name, &[], v);
}

/// The exposition text of one scrape.
pub fn render(s: &Snapshot) -> String {
    let eng = s.engine;
    let mut e = Exposition::new();
    e.family(
        "tidstorage_info",
        Kind::Gauge,
        "Always 1; the version label is the daemon's.",
    );
    e.sample(
        "tidstorage_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        Value::Int(1),
    );
    gauge(
        &mut e,
        "tidstorage_bootstrap_complete",
        "1 once every configured storage has committed since start-up (points move only then).",
        Value::Int(eng.is_bootstrapped() as u64),
    );
    let orphans = eng.orphan_count();
    gauge(
        &mut e,
        "tidstorage_inflight_transactions",
        "Transactions begun and not ended (orphans excluded).",
        Value::Int(eng.in_flight_count().saturating_sub(orphans) as u64),
    );
    gauge(
        &mut e,
        "tidstorage_orphan_transactions",
        "Transactions no message can end (their id began again): they block until `tidstorage resolve` or a restart.",
        Value::Int(orphans as u64),
    );
    gauge(
        &mut e,
        "tidstorage_stale_transactions",
        "In-flight transactions (orphans included) older than stale_after.",
        Value::Int(eng.stale_count() as u64),
    );
    gauge(
        &mut e,
        "tidstorage_oldest_inflight_seconds",
        "Age of the oldest in-flight or orphaned transaction; 0 when none.",
        Value::Float(
            eng.oldest_in_flight_age(s.now)
                .map_or(0.0, |d| d.as_secs_f64()),
        ),
    );
    let mut storages: Vec<_> = eng.storage_points().collect();
    storages.sort_by(|a, b| a.0.cmp(b.0));
    e.family(
        "tidstorage_point_lag_seconds",
        Kind::Gauge,
        "Newest TID seen committed on the storage minus its published TID, in seconds of TID time.",
    );
    for &(id, known, published) in &storages {
        if let (Some(k), Some(p)) = (known, published) {
            let lag = (k.unix_seconds() - p.unix_seconds()).max(0.0);
            e.sample(
                "tidstorage_point_lag_seconds",
                &[("storage", id)],
                Value::Float(lag),
            );
        }
    }
    e.family(
        "tidstorage_published_tid",
        Kind::Gauge,
        "The storage's published coherency point (the exact TID as a decimal integer).",
    );
    for &(id, _, published) in &storages {
        if let Some(p) = published {
            e.sample(
                "tidstorage_published_tid",
                &[("storage", id)],
                Value::Int(p.0),
            );
        }
    }
    e.family(
        "tidstorage_known_tid",
        Kind::Gauge,
        "The newest TID seen committed on the storage (exact decimal integer).",
    );
    for &(id, known, _) in &storages {
        if let Some(k) = known {
            e.sample("tidstorage_known_tid", &[("storage", id)], Value::Int(k.0));
        }
    }
    let o = eng.outcomes();
    let c = eng.counters();
    e.family(
        "tidstorage_transactions_total",
        Kind::Counter,
        "Transactions ended since start-up, by outcome (orphaned: its id began again; unknown: a COMMIT or ABORT without BEGIN).",
    );
    for (outcome, n) in [
        ("committed", o.committed),
        ("aborted", o.aborted),
        ("resolved", o.resolved),
        ("orphaned", c.orphans),
        ("unknown", c.unknown_transactions),
    ] {
        e.sample(
            "tidstorage_transactions_total",
            &[("outcome", outcome)],
            Value::Int(n),
        );
    }
    e.family(
        "tidstorage_anomalies_total",
        Kind::Counter,
        "Anomalies since start-up, by kind (the INFO counters; each is logged).",
    );
    for (kind, n) in [
        ("decreasing_update", c.decreasing_updates),
        ("unknown_transaction", c.unknown_transactions),
        ("orphan", c.orphans),
        ("partial_commit", c.partial_commits),
        ("extra_storages", c.extra_storages),
        ("conflicting_outcome", c.conflicting_outcomes),
        ("future_tid", c.future_tids),
        ("stale", c.stale),
    ] {
        e.sample(
            "tidstorage_anomalies_total",
            &[("kind", kind)],
            Value::Int(n),
        );
    }
    gauge(
        &mut e,
        "tidstorage_connections",
        "Open protocol client connections (metrics requests not counted).",
        Value::Int(s.daemon.connections as u64),
    );
    e.family(
        "tidstorage_status_file_write_errors_total",
        Kind::Counter,
        "Failed status-file writes and fsyncs since start-up (each is logged and retried).",
    );
    e.sample(
        "tidstorage_status_file_write_errors_total",
        &[],
        Value::Int(s.daemon.status_write_errors),
    );
    if let Some(t) = s.daemon.last_record_unix {
        gauge(
            &mut e,
            "tidstorage_status_file_last_record_timestamp_seconds",
            "Unix time of the last record written to the status file.",
            Value::Float(t),
        );
    }
    gauge(
        &mut e,
        "tidstorage_uptime_seconds",
        "Seconds since the daemon started.",
        Value::Float(s.daemon.uptime_seconds),
    );
    e.finish()
}
