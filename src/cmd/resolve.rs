//! `tidstorage resolve ID`: the operator declares transaction ID finished;
//! the daemon stops waiting for it, recomputes the point at once, logs one
//! line and records the resolution in the status file. Exit 1 when there is
//! no such transaction (or only a young in-flight one, left alone).

use crate::client::{server_address, DaemonClient};
use crate::cmd::{emit, Context};
use crate::config::Config;
use crate::error::{CliError, Result};

#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Right only when the commit is known to be over: its client is gone \
    (the Zope process was killed or restarted) or the databases were checked. What it costs: \
    a partial commit stays partial in the live databases, and backups taken from now on match \
    the live state (the part that committed is in them). The orphans with ID are resolved; \
    when there is none, a stale in-flight transaction with ID (older than stale_after); a \
    younger one is left alone.\n\nExamples:\n  \
    tidstorage inflight\n  \
    tidstorage resolve 10.0.0.7:8080_7f3a"
)]
pub struct ResolveArgs {
    /// The transaction id, as `tidstorage inflight` shows it.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Daemon to ask, HOST:PORT [default: [server] address:port of the configuration].
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
}

pub fn run(a: ResolveArgs, g: &Context) -> Result<()> {
    g.init_stderr_log();
    let c = Config::load(g.config.as_deref())?;
    let addr = server_address(a.server.as_deref(), &c);
    let r = DaemonClient::connect(&addr)?.resolve(&a.id)?;
    if r.resolved.is_empty() {
        return Err(CliError::no(format!(
            "nothing resolved: {}; see `tidstorage inflight --server {addr}`",
            r.refused.as_deref().unwrap_or("no such transaction")
        )));
    }
    let mut out = String::new();
    for t in &r.resolved {
        out.push_str(&format!(
            "resolved {} {:?} (in flight {:.0}s on {}{}{})\n",
            match t.state {
                crate::protocol::answers::TxnState::Orphan => "orphan",
                crate::protocol::answers::TxnState::InFlight => "transaction",
            },
            t.id,
            t.age_seconds,
            t.storages.join(", "),
            t.client
                .as_ref()
                .map(|c| format!(", client {c}"))
                .unwrap_or_default(),
            if t.holds_back.is_empty() {
                String::new()
            } else {
                format!(", was holding back {}", t.holds_back.join(", "))
            }
        ));
    }
    if let Some(rec) = &r.recorded {
        if rec == "status file" {
            out.push_str("recorded in the status file\n");
        } else {
            out.push_str(&format!("recorded in the status file {rec}\n"));
        }
    }
    emit(&out)
}
