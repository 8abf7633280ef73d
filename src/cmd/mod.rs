//! One module per subcommand: its flags (clap `Args`) and its `run`, which
//! calls the library (`crate::storageset`, `crate::client`, the daemon for
//! `serve`) once and renders the answer. No domain rule lives here: a
//! subcommand never imports `crate::cli` or another subcommand's module.
//!
//! Shared here: the [`Context`] of global flags, writing to stdout without
//! panicking on a closed pipe, and rendering a coherency point as text,
//! JSON or TSV.

pub mod backup;
pub mod bootstrap_status;
pub mod check;
mod context;
pub mod cut;
pub mod dump;
pub mod inflight;
pub mod resolve;
pub mod restore;
pub mod serve;
pub mod tags;

use std::collections::HashMap;
use std::io::Write;

use crate::datafs::extension::StorageName;
use crate::error::{CliError, ExitKind};
use crate::tid::Tid;

pub use context::Context;

/// Output formats of the reporting subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Text,
    /// One JSON document (machine-stable keys).
    Json,
    /// Tab-separated rows, no header.
    Tsv,
}

/// Writes `text` to stdout; a closed pipe ends the command quietly.
pub fn emit(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(CliError {
            kind: ExitKind::BrokenPipe,
            message: String::new(),
        }),
        Err(e) => Err(CliError::runtime(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

/// The JSON object describing one TID: integer, hex, base64, time.
pub fn tid_json(t: Tid) -> serde_json::Value {
    serde_json::json!({
        "tid": t.0,
        "hex": t.hex(),
        "base64": t.base64(),
        "time": t.rfc3339(),
    })
}

/// Renders rows of (storage id, TID) as aligned text with a header.
pub fn point_text<'a>(rows: impl IntoIterator<Item = (&'a str, Tid)>) -> String {
    let rows: Vec<(&str, Tid)> = rows.into_iter().collect();
    let w = rows
        .iter()
        .map(|(s, _)| s.chars().count())
        .max()
        .unwrap_or(0)
        .max("STORAGE".len());
    let mut out = format!(
        "{:<w$}  {:>20}  {:<16}  {:<12}  TIME\n",
        "STORAGE", "TID", "HEX", "BASE64"
    );
    for (s, t) in rows {
        let pad = w - s.chars().count();
        out.push_str(&format!(
            "{s}{:pad$}  {:>20}  {}  {}  {}\n",
            "",
            t.0,
            t.hex(),
            t.base64(),
            t.rfc3339()
        ));
    }
    out
}

/// Renders rows as `storage<TAB>tid<TAB>hex<TAB>time<TAB>base64` lines
/// (base64 last: it came later, and scripts cut the first columns).
pub fn point_tsv<'a>(rows: impl IntoIterator<Item = (&'a str, Tid)>) -> String {
    let mut out = String::new();
    for (s, t) in rows {
        // Storage ids never contain newlines (the protocol cannot carry
        // them); tabs would break columns, so escape them.
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            s.replace('\t', "\\t"),
            t.0,
            t.hex(),
            t.rfc3339(),
            t.base64()
        ));
    }
    out
}

/// Renders rows as a JSON array of `{storage, tid, hex, base64, time}` objects.
pub fn point_json<'a>(rows: impl IntoIterator<Item = (&'a str, Tid)>) -> serde_json::Value {
    serde_json::Value::Array(
        rows.into_iter()
            .map(|(s, t)| {
                let mut v = tid_json(t);
                v["storage"] = serde_json::Value::String(s.to_string());
                v
            })
            .collect(),
    )
}

/// Milliseconds since the epoch as RFC 3339 UTC (via the TID clock, whose
/// resolution is finer than a millisecond).
pub fn ms_time(ms: u64) -> String {
    let t = Tid::from_unix_seconds(ms as f64 / 1000.0).rfc3339();
    // 2026-11-21T16:24:18.206837Z -> 2026-11-21T16:24:18.206Z
    match t.find('.') {
        Some(dot) if t.len() > dot + 4 => format!("{}Z", &t[..dot + 4]),
        _ => t,
    }
}

/// The storages a tag names, by configured id when known.
pub fn names_text(names: &[StorageName], known: &HashMap<StorageName, String>) -> String {
    names
        .iter()
        .map(|n| known.get(n).cloned().unwrap_or_else(|| n.hex()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_aligned() {
        let t = point_text([("a", Tid(1)), ("longer-id", Tid(291936934231455914))]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        let col = lines[0].find("HEX").unwrap();
        assert_eq!(lines[1].find("0000000000000001").unwrap(), col);
        assert_eq!(lines[2].find("040d2b184daeb8aa").unwrap(), col);
        assert!(lines[2].ends_with("2026-11-21T16:24:18.206837Z"));
    }

    #[test]
    fn tsv_and_json() {
        assert_eq!(
            point_tsv([("a\tb", Tid(1))]),
            "a\\tb\t1\t0000000000000001\t1900-01-01T00:00:00.000000Z\tAAAAAAAAAAE=\n"
        );
        let j = point_json([("s", Tid(291936934231455914))]);
        assert_eq!(j[0]["storage"], "s");
        assert_eq!(j[0]["tid"], 291936934231455914u64);
        assert_eq!(j[0]["hex"], "040d2b184daeb8aa");
        assert_eq!(j[0]["base64"], "BA0rGE2uuKo=");
    }
}
