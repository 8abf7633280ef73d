//! `tidstorage bootstrap-status`: is the daemon's bootstrap complete?
//! Prints `complete` (exit 0) or `incomplete` (exit 1); `--wait` polls.

use std::time::{Duration, Instant};

use crate::client::{server_address, DaemonClient};
use crate::cmd::emit;
use crate::cmd::Context;
use crate::config::{parse_duration, Config};
use crate::error::{CliError, ExitKind, Result};

#[derive(Debug, Clone, clap::Args)]
pub struct BootstrapStatusArgs {
    /// Daemon to ask, HOST:PORT [default: [server] address:port of the configuration].
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// Poll until complete, for at most this long (e.g. 5m), also while the daemon is not
    /// reachable yet; exit 1 if still incomplete (3 if never reached).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,
}

/// Poll interval of --wait.
const POLL: Duration = Duration::from_millis(250);

pub fn run(a: BootstrapStatusArgs, g: &Context) -> Result<()> {
    g.init_stderr_log();
    let c = Config::load(g.config.as_deref())?;
    let addr = server_address(a.server.as_deref(), &c);
    let end = a.wait.map(|w| Instant::now() + w);
    let mut client = None;
    loop {
        let answer = ask(&mut client, &addr);
        let now = Instant::now();
        let waiting = end.is_some_and(|t| now < t);
        match answer {
            Ok(true) => return emit("complete\n"),
            Ok(false) if !waiting => {
                emit("incomplete\n")?;
                return Err(CliError::no(String::new()));
            }
            Ok(false) => {}
            // With --wait, a daemon not listening yet (or restarting) is
            // asked again at the next poll; a bad address is not.
            Err(e) if waiting && e.kind != ExitKind::Usage => {
                log::debug!("{}; asking again", e.message);
                client = None;
            }
            Err(e) => return Err(e),
        }
        if let Some(t) = end {
            // The last poll falls on the deadline itself.
            std::thread::sleep(POLL.min(t.saturating_duration_since(now)));
        }
    }
}

/// One BOOTSTRAPED question, connecting first when needed.
fn ask(client: &mut Option<DaemonClient>, addr: &str) -> Result<bool> {
    if client.is_none() {
        *client = Some(DaemonClient::connect(addr)?);
    }
    client.as_mut().expect("connected above").bootstrapped()
}
