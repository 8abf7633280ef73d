//! `tidstorage dump`: print the coherency point, asked of a running daemon
//! (the default) or replayed offline from a status file (which validates
//! the whole file).

use std::path::PathBuf;

use crate::client::{server_address, DaemonClient};
use crate::cmd::Context;
use crate::cmd::{emit, point_json, point_text, point_tsv, Format};
use crate::config::Config;
use crate::error::{CliError, Result};
use crate::statuslog::{self, ReplayOptions};
use crate::tid::Tid;

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    tidstorage dump                                 ask the daemon of the configuration\n  \
    tidstorage dump --server 10.0.0.5:9001 --format json\n  \
    tidstorage dump --status-file /var/lib/tidstorage/tidstorage.tid")]
pub struct DumpArgs {
    /// Daemon to ask, HOST:PORT [default: [server] address:port of the configuration].
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "status_file")]
    pub server: Option<String>,
    /// Replay and validate this status file offline instead of asking the daemon.
    #[arg(long, value_name = "FILE")]
    pub status_file: Option<PathBuf>,
    /// With --status-file: skip damaged lines instead of failing (their count is reported).
    #[arg(long, requires = "status_file")]
    pub lenient: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub fn run(a: DumpArgs, g: &Context) -> Result<()> {
    g.init_stderr_log();
    match &a.status_file {
        Some(p) => from_status_file(&a, p.clone()),
        None => {
            let c = Config::load(g.config.as_deref())?;
            let addr = server_address(a.server.as_deref(), &c);
            let point = DaemonClient::connect(&addr)?.dump()?;
            let rows = || point.iter().map(|(s, t)| (s.as_str(), *t));
            match a.format {
                Format::Text => {
                    if point.is_empty() {
                        log::warn!("the daemon at {addr} has published no coherency point yet");
                    }
                    emit(&point_text(rows()))
                }
                Format::Tsv => emit(&point_tsv(rows())),
                Format::Json => {
                    let v = serde_json::json!({
                        "source": "daemon",
                        "server": addr,
                        "point": point_json(rows()),
                    });
                    emit(&format!("{v}\n"))
                }
            }
        }
    }
}

fn from_status_file(a: &DumpArgs, path: PathBuf) -> Result<()> {
    let r = statuslog::replay_file(&path, ReplayOptions { lenient: a.lenient })
        .map_err(|e| CliError::runtime(e.to_string()))?;
    if let Some((line, why)) = &r.torn_last_line {
        log::warn!(
            "{}: last line {line} is damaged and was ignored ({why}); this is what a crash \
             during a write leaves, the point before it is used",
            path.display()
        );
    }
    if !r.skipped.is_empty() {
        log::warn!(
            "{}: --lenient skipped {} damaged line(s): {}",
            path.display(),
            r.skipped.len(),
            r.skipped
                .iter()
                .map(|(l, w)| format!("line {l} ({w})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let rows = || {
        r.point
            .iter()
            .map(|(s, t): (&String, &Tid)| (s.as_str(), *t))
    };
    match a.format {
        Format::Text => {
            if r.point.is_empty() {
                log::warn!("{}: no coherency point recorded yet", path.display());
            }
            emit(&point_text(rows()))
        }
        Format::Tsv => emit(&point_tsv(rows())),
        Format::Json => {
            let v = serde_json::json!({
                "source": "status-file",
                "status_file": path.display().to_string(),
                "records": r.records,
                "last_record_time": r.last_centis.map(|c| c as f64 / 100.0),
                "skipped_lines": r.skipped.iter().map(|(l, w)| serde_json::json!({"line": l, "reason": w})).collect::<Vec<_>>(),
                "torn_last_line": r.torn_last_line.as_ref().map(|(l, w)| serde_json::json!({"line": l, "reason": w})),
                "point": point_json(rows()),
            });
            emit(&format!("{v}\n"))
        }
    }
}
