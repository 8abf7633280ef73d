//! `tidstorage bootstrap-status`: is the daemon's bootstrap complete?
//! Prints `complete` (exit 0) or `incomplete` (exit 1); `--wait` polls.

use std::time::{Duration, Instant};

use crate::cli::GlobalArgs;
use crate::client::{server_address, DaemonClient};
use crate::cmd::emit;
use crate::config::{parse_duration, Config};
use crate::error::{CliError, Result};

#[derive(Debug, Clone, clap::Args)]
pub struct BootstrapStatusArgs {
    /// Daemon to ask, HOST:PORT [default: [server] address:port of the configuration].
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// Poll until complete, for at most this long (e.g. 5m); exit 1 if still incomplete.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,
}

/// Poll interval of --wait.
const POLL: Duration = Duration::from_millis(250);

pub fn run(a: BootstrapStatusArgs, g: &GlobalArgs) -> Result<()> {
    crate::cli::init_stderr_log(g);
    let c = Config::load(g.config.as_deref())?;
    let addr = server_address(a.server.as_deref(), &c);
    let end = a.wait.map(|w| Instant::now() + w);
    let mut client = DaemonClient::connect(&addr)?;
    loop {
        let done = match client.bootstrapped() {
            Ok(d) => d,
            // The daemon may restart while we wait: reconnect once per poll.
            Err(e) if end.is_some_and(|t| Instant::now() < t) => {
                log::debug!("{e}; reconnecting");
                std::thread::sleep(POLL);
                client = DaemonClient::connect(&addr)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        if done {
            return emit("complete\n");
        }
        match end {
            Some(t) if Instant::now() + POLL < t => std::thread::sleep(POLL),
            _ => {
                emit("incomplete\n")?;
                return Err(CliError::no(String::new()));
            }
        }
    }
}
