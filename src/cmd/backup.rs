//! `tidstorage backup`: flags, one call of [`storageset::backup::run`],
//! and the per-storage summary. What a run does is documented there.

use std::time::Duration;

use crate::cmd::{emit, Context};
use crate::config::parse_duration;
use crate::error::{CliError, Result};
use crate::storageset::backup::{self, BackupOptions, BackupReport, Pruned, StorageBackup};
use crate::storageset::{self};

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    tidstorage backup                     back up every configured storage up to the daemon's point\n  \
    tidstorage backup --full --gzip       start new (gzipped) chains\n  \
    tidstorage backup --no-server         back up to the current end (restore cuts with the status file copy)")]
pub struct BackupArgs {
    /// Daemon to take the coherency point from, HOST:PORT [default: [server] address:port].
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "no_server")]
    pub server: Option<String>,
    /// Do not ask the daemon: back up each Data.fs to its current end (the
    /// original TIDStorage behaviour); restore then cuts with the status file.
    #[arg(long)]
    pub no_server: bool,
    /// Back up only this configured storage (repeatable).
    #[arg(long = "storage", value_name = "ID")]
    pub storages: Vec<String>,
    /// Start a new chain with a full backup even if an incremental would do.
    #[arg(short = 'F', long)]
    pub full: bool,
    /// Check only the last backup file against the Data.fs (its md5 range)
    /// instead of the whole repository, like repozo's --quick.
    #[arg(short = 'Q', long)]
    pub quick: bool,
    /// gzip new backup files (.fsz, .deltafsz) [default: [backup] gzip].
    #[arg(short = 'z', long, conflicts_with = "no_gzip")]
    pub gzip: bool,
    /// Do not gzip, whatever [backup] gzip says.
    #[arg(long)]
    pub no_gzip: bool,
    /// After the backup, remove what is older than the N-th newest full
    /// backup of each repository, and older status-file copies [default: [backup] keep_full].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_full: Option<u32>,
    /// How long to wait for the daemon to know storages missing from its
    /// point (bootstrap after a daemon start).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub bootstrap_wait: Duration,
    /// Do not back up a storage whose coherent TID is more than DURATION
    /// (TID time) older than the newest transaction in its Data.fs (exit 3,
    /// naming the transactions holding it back); the others are backed up
    /// [default: [backup] max_lag, else no limit].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "no_server")]
    pub max_lag: Option<Duration>,
}

pub fn run(a: BackupArgs, g: &Context) -> Result<()> {
    g.init_stderr_log();
    let c = g.load_config()?;
    let o = BackupOptions {
        server: a.server,
        no_server: a.no_server,
        storages: a.storages,
        full: a.full,
        quick: a.quick,
        gzip: if a.no_gzip {
            Some(false)
        } else if a.gzip {
            Some(true)
        } else {
            None
        },
        keep_full: a.keep_full,
        bootstrap_wait: a.bootstrap_wait,
        max_lag: a.max_lag,
        quiet: g.quiet(),
    };
    let r = backup::run(&c, &o)?;
    emit(&render(&r))?;
    if r.ok() {
        return Ok(());
    }
    let mut msgs: Vec<String> = r.failures.iter().map(with_storage).collect();
    msgs.extend(r.run_errors.iter().map(with_storage));
    Err(CliError::runtime(format!(
        "{} of {} storage(s) failed{}:\n  {}",
        r.failures.len(),
        r.selected,
        if r.failures.is_empty() {
            " (but the run had errors)"
        } else {
            ""
        },
        msgs.join("\n  ")
    )))
}

fn with_storage(e: &storageset::Error) -> String {
    match &e.storage {
        Some(id) => format!("storage {id}: {e}"),
        None => e.to_string(),
    }
}

fn render(r: &BackupReport) -> String {
    let mut out = String::new();
    for d in &r.backed_up {
        out.push_str(&summary(d));
    }
    for e in &r.failures {
        out.push_str(&format!(
            "storage {}: FAILED: {e}\n",
            e.storage.as_deref().unwrap_or("?")
        ));
    }
    for p in &r.pruned {
        out.push_str(&match p {
            Pruned::Repository {
                storage,
                removed,
                keep_full,
            } => format!(
                "storage {storage}: removed {removed} file(s) older than the {keep_full} newest full backup(s)\n"
            ),
            Pruned::StatusCopies {
                removed,
                older_than,
            } => format!("removed {removed} status file cop(ies) older than {older_than}\n"),
            Pruned::Blobs {
                storage,
                runs,
                files,
                bytes,
            } => format!(
                "storage {storage}: removed {runs} blob run(s) of those backups and {files} blob \
                 file(s) ({bytes} bytes) no kept run names\n"
            ),
        });
    }
    if !r.backed_up.is_empty() {
        out.push_str(&format!("backup run {}", r.run));
        if let Some(p) = &r.status_copy {
            out.push_str(&format!(", status file copied to {}", p.display()));
        }
        out.push('\n');
    }
    out
}

fn summary(d: &StorageBackup) -> String {
    let upto = match (d.tid, d.last_tid) {
        (Some(t), _) => format!(
            "coherent TID {} ({}, lag {:.1} s)",
            t.hex(),
            t.rfc3339(),
            d.lag.unwrap_or(0.0)
        ),
        (None, Some(l)) => format!("end, last TID {} ({})", l.hex(), l.rfc3339()),
        (None, None) => "end (no transaction)".into(),
    };
    let mut s = format!("storage {}: ", d.storage);
    match &d.file {
        Some(f) => s.push_str(&format!(
            "{} {} bytes {}..{} ({} bytes) up to {upto} in {:.1} s\n",
            d.kind,
            f.display(),
            d.start,
            d.end,
            d.end - d.start,
            d.secs
        )),
        None => s.push_str(&format!(
            "unchanged, the repository already holds {} bytes up to {upto}\n",
            d.end
        )),
    }
    if let Some(r) = &d.reason {
        s.push_str(&format!("  full because: {r}\n"));
    }
    if let Some(b) = &d.blobs {
        s.push_str(&format!(
            "  blobs: {} file(s), {} bytes; {} new ({} bytes{}), {} carried from the previous run{}\n",
            b.files,
            b.bytes,
            b.copied,
            b.copied_bytes,
            if b.from_old > 0 {
                format!(", {} of them from the .old directory a pack left", b.from_old)
            } else {
                String::new()
            },
            b.carried,
            if b.already_pooled > 0 {
                format!(", {} already in the repository", b.already_pooled)
            } else {
                String::new()
            }
        ));
    }
    for n in &d.notes {
        s.push_str(&format!("  note: {n}\n"));
    }
    s
}
