//! `tidstorage serve`: flags merged over the configuration, then the daemon.

use std::path::PathBuf;
use std::time::Duration;

use crate::cmd::Context;
use crate::config::{parse_duration, Cidr, Config};
use crate::error::{CliError, Result};
use crate::statuslog::FsyncPolicy;

fn duration_arg(s: &str) -> std::result::Result<Duration, String> {
    parse_duration(s)
}

#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Signals: HUP reopens the log and the status file (logrotate), USR1 logs the \
    whole engine state, TERM/INT write a final full record and exit 0."
)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, value_name = "ADDR")]
    pub address: Option<String>,
    /// Port to listen on; 0 picks a free one and logs it [default: 9001].
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Status file (TID log) to replay at start-up and append to [default: tidstorage.tid beside the configuration file, or in the working directory without one].
    #[arg(short = 's', long, value_name = "FILE")]
    pub status_file: Option<PathBuf>,
    /// Minimum time between two `d` records (humantime, or seconds) [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub burst_period: Option<Duration>,
    /// Time between two `f` records [default: 5m].
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub full_dump_period: Option<Duration>,
    /// When to fsync the status file: always, interval (at most once a
    /// second), interval:DURATION, never [default: always].
    #[arg(long, value_name = "POLICY")]
    pub fsync: Option<FsyncPolicy>,
    /// Server log file [default: standard error].
    #[arg(short = 'l', long = "log", value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Pid file, locked while the daemon runs (a second daemon refuses to start).
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Detach: double fork, setsid, chdir /, umask 027.
    #[arg(short = 'd', long)]
    pub daemon: bool,
    /// Stay in the foreground (the default; accepted for compatibility).
    #[arg(
        short = 'n',
        long = "nofork",
        visible_alias = "fg",
        conflicts_with = "daemon"
    )]
    pub nofork: bool,
    /// User to run as after binding (name or number, from /etc/passwd).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Group to run as after binding (name or number, from /etc/group).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Accept connections only from this address block (repeatable; CIDR).
    #[arg(long = "allow", value_name = "CIDR")]
    pub allow: Vec<Cidr>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (port 0 picks a
    /// free one and logs it) [default: [server] metrics_address, else none].
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_address: Option<String>,
}

pub fn run(a: ServeArgs, g: &Context) -> Result<()> {
    let mut c = Config::load(g.config.as_deref())?;
    let s = &mut c.server;
    if let Some(v) = a.address {
        s.address = v;
    }
    if let Some(v) = a.port {
        s.port = v;
    }
    if let Some(v) = a.status_file {
        s.status_file = v;
    }
    if let Some(v) = a.burst_period {
        s.burst_period = v;
    }
    if let Some(v) = a.full_dump_period {
        s.full_dump_period = v;
    }
    if let Some(v) = a.fsync {
        s.fsync = v;
    }
    if let Some(v) = a.log_file {
        s.log_file = Some(v);
    }
    if let Some(v) = a.pidfile {
        s.pidfile = Some(v);
    }
    if let Some(v) = a.user {
        s.user = Some(v);
    }
    if let Some(v) = a.group {
        s.group = Some(v);
    }
    if !a.allow.is_empty() {
        s.allow = a.allow;
    }
    if let Some(v) = a.metrics_address {
        s.metrics_address = Some(v);
    }
    if s.burst_period.is_zero() || s.full_dump_period.is_zero() {
        return Err(CliError::usage(
            "--burst-period and --full-dump-period must be greater than zero",
        ));
    }
    // --daemon changes directory to /: every path the daemon opens later
    // (status file, log on HUP, pidfile at exit) must not depend on it.
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::runtime(format!("cannot read the current directory: {e}")))?;
    let absolute = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = cwd.join(&*p);
        }
    };
    absolute(&mut s.status_file);
    if let Some(p) = &mut s.log_file {
        absolute(p);
    }
    if let Some(p) = &mut s.pidfile {
        absolute(p);
    }
    if let Some(p) = &mut c.bootstrap.command {
        absolute(p);
    }
    for st in &mut c.storages {
        if let Some(p) = &mut st.data_fs {
            absolute(p);
        }
    }
    crate::daemon::serve(c, a.daemon, g.level(log::LevelFilter::Info))
}
