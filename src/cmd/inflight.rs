//! `tidstorage inflight`: every in-flight and orphaned transaction of a
//! running daemon, with what it holds back and for how long, so an operator
//! can tell which transaction and client hold the point.

use crate::client::{server_address, DaemonClient};
use crate::cmd::{emit, Context};
use crate::config::Config;
use crate::error::Result;
use crate::protocol::answers::{InFlightAnswer, TxnState};

/// Output formats of `inflight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InFlightFormat {
    /// Aligned columns for people.
    Text,
    /// `{"transactions": [...]}` (machine-stable keys).
    Json,
}

#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "A transaction is blocking when a commit waits behind it on some \
    storage: on one of its own storages, or on another one through a transaction it holds \
    back. BLOCKING shows for how long the oldest such commit has waited (TID time). \
    See `tidstorage resolve` for ending one whose outcome is known.\n\nExamples:\n  \
    tidstorage inflight\n  \
    tidstorage inflight --server 10.0.0.5:9001 --format json"
)]
pub struct InFlightArgs {
    /// Daemon to ask, HOST:PORT [default: [server] address:port of the configuration].
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: InFlightFormat,
}

pub fn run(a: InFlightArgs, g: &Context) -> Result<()> {
    g.init_stderr_log();
    let c = Config::load(g.config.as_deref())?;
    let addr = server_address(a.server.as_deref(), &c);
    let answer = DaemonClient::connect(&addr)?.in_flight()?;
    match a.format {
        InFlightFormat::Json => {
            // Serializing plain data cannot fail.
            emit(&format!(
                "{}\n",
                serde_json::to_string(&answer).unwrap_or_default()
            ))
        }
        InFlightFormat::Text => emit(&text(&answer)),
    }
}

/// `3h12m`, `41s`: whole seconds are enough to tell a stuck transaction.
fn age(secs: f64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs.max(0.0) as u64)).to_string()
}

/// The text table (or a line saying there is nothing).
pub fn text(a: &InFlightAnswer) -> String {
    if a.transactions.is_empty() {
        return "no transaction is in flight\n".to_string();
    }
    let rows: Vec<[String; 6]> = a
        .transactions
        .iter()
        .map(|t| {
            let state = match t.state {
                TxnState::InFlight if t.stale => "stale",
                TxnState::InFlight => "in-flight",
                TxnState::Orphan => "orphan",
            };
            let blocking = match (t.blocking, t.blocking_seconds) {
                (false, _) => "no".to_string(),
                (true, Some(s)) => format!("{} ({})", age(s), t.holds_back.join(", ")),
                (true, None) => format!("yes ({})", t.holds_back.join(", ")),
            };
            [
                t.id.clone(),
                state.to_string(),
                age(t.age_seconds),
                blocking,
                t.client.clone().unwrap_or_else(|| "-".into()),
                t.storages.join(", "),
            ]
        })
        .collect();
    let head = ["ID", "STATE", "AGE", "BLOCKING", "CLIENT", "STORAGES"];
    let mut w = head.map(|h| h.chars().count());
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(c);
                out.push_str(&" ".repeat(w[i] - c.chars().count() + 2));
            }
        }
        out.push('\n');
    };
    line(&head);
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::answers::InFlightTransaction;

    #[test]
    fn text_names_state_blocking_and_client() {
        let t = |id: &str, state, blocking: bool| InFlightTransaction {
            id: id.into(),
            state,
            age_seconds: 3725.0,
            storages: vec!["a".into(), "b".into()],
            blocking,
            holds_back: if blocking { vec!["a".into()] } else { vec![] },
            blocking_seconds: blocking.then_some(65.0),
            stale: false,
            client: blocking.then(|| "10.0.0.7:5".into()),
            blocked_because: None,
        };
        let s = text(&InFlightAnswer {
            transactions: vec![
                t("t1", TxnState::Orphan, true),
                t("t2", TxnState::InFlight, false),
            ],
        });
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[0].starts_with("ID  STATE"), "{s}");
        assert!(
            lines[1].contains("orphan") && lines[1].contains("1h 2m 5s"),
            "{s}"
        );
        assert!(
            lines[1].contains("1m 5s (a)") && lines[1].contains("10.0.0.7:5"),
            "{s}"
        );
        assert!(
            lines[2].contains("in-flight") && lines[2].contains(" no "),
            "{s}"
        );
        assert_eq!(
            text(&InFlightAnswer {
                transactions: vec![]
            }),
            "no transaction is in flight\n"
        );
    }
}
