//! `tidstorage backup`: a repozo-compatible backup of every configured
//! Data.fs, each copied only up to its storage's coherent TID (SPEC §6).
//!
//! One run: lock every repository, copy the status file aside, ask the
//! daemon for the coherency point (waiting a bounded time for storages
//! still missing after start-up), back up each storage (full, incremental
//! or nothing new) up to the cut position of its TID, then name the run
//! with one UTC timestamp T: the status-file copy `<name>.<T>`, one
//! manifest `<T>.tidstorage.json` per repository, and the line T in the
//! timestamp file (only when every configured storage succeeded, so a
//! default restore always finds a complete set). `--keep-full N` prunes
//! last. A storage that fails is reported and the others carry on; the
//! exit status says if any failed.
//!
//! Must not: write a backup file anywhere but through the repozo module
//! (temp, fsync, link under a name no file has), or reuse a second.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bootstrap::{Triggers, EXIT_GRACE};
use crate::client::{server_address, DaemonClient};
use crate::cmd::emit;
use crate::cmd::progress_bar;
use crate::cmd::Context;
use crate::config::{parse_duration, Config, StorageConfig};
use crate::datafs::index::{index_for_prefix, FsIndex};
use crate::datafs::DataFs;
use crate::error::{CliError, Result};
use crate::fsutil;
use crate::repozo::backup::Decision;
use crate::repozo::copy::Progress;
use crate::repozo::manifest::Manifest;
use crate::repozo::{self, RepoLock, Repository, Stamp};
use crate::tid::Tid;

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    tidstorage backup                     back up every configured storage up to the daemon's point\n  \
    tidstorage backup --full --gzip       start new (gzipped) chains\n  \
    tidstorage backup --no-server         back up to the current end (restore then needs --tid-log)")]
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
}

/// How long to wait for the clock to reach a repository's next free second.
const CLOCK_WAIT: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(250);

/// A storage being backed up.
struct Job<'a> {
    cfg: &'a StorageConfig,
    repo: Repository,
    data_fs: PathBuf,
    _lock: RepoLock,
    /// The newest second named in the repository before this run.
    floor: Option<Stamp>,
}

/// What one storage's backup did.
struct Done {
    kind: &'static str,
    file: Option<String>,
    start: u64,
    end: u64,
    source_size: u64,
    tid: Option<Tid>,
    last_tid: Option<Tid>,
    chain: Vec<String>,
    stamp: Option<Stamp>,
    reason: Option<String>,
    notes: Vec<String>,
    secs: f64,
}

pub fn run(a: BackupArgs, g: &Context) -> Result<()> {
    g.init_stderr_log();
    let quiet = g.quiet > 0;
    let c = Config::load(g.config.as_deref())?;
    let selected = c.select_storages(&a.storages)?;
    if selected.is_empty() {
        return Err(CliError::usage(format!(
            "no storage to back up: the {} has no [[storage]] with data_fs and repository",
            c.describe_source()
        )));
    }
    let gzip = if a.no_gzip {
        false
    } else {
        a.gzip || c.backup.gzip
    };
    let keep_full = a.keep_full.or(c.backup.keep_full);
    let timestamp_floor = match &c.backup.timestamp_file {
        Some(p) => last_timestamp(p)?.map(Stamp::next),
        None => None,
    };

    // Lock and check every repository first.
    let mut failures: Vec<(String, String)> = Vec::new();
    let mut jobs = Vec::new();
    for s in &selected {
        match prepare(s, &c) {
            Ok(j) => jobs.push(j),
            Err(e) => failures.push((s.id.clone(), e)),
        }
    }

    // The status file, copied before the Data.fs files are read: every
    // point in the copy is then covered by the copies (what a no-server
    // backup's restore relies on).
    let status_copy = match &c.backup.status_file_backup_dir {
        Some(dir) if !jobs.is_empty() => copy_status_file(&c.server.status_file, dir, a.no_server)?,
        _ => None,
    };

    let point: Option<BTreeMap<String, Tid>> = if a.no_server || jobs.is_empty() {
        None
    } else {
        let addr = server_address(a.server.as_deref(), &c);
        let ids: Vec<&str> = jobs.iter().map(|j| j.cfg.id.as_str()).collect();
        Some(take_point(&addr, &ids, a.bootstrap_wait, &c)?)
    };

    let mut done: Vec<(Job, Done)> = Vec::new();
    for j in jobs {
        let tid = match &point {
            None => None,
            Some(p) => match p.get(&j.cfg.id) {
                Some(t) => Some(*t),
                None => {
                    failures.push((
                        j.cfg.id.clone(),
                        format!(
                            "the daemon has no coherent TID for this storage (bootstrap incomplete \
                             after waiting {}): check `tidstorage bootstrap-status`, the \
                             [bootstrap] trigger, and that Zope reports commits of this storage; \
                             or back up with --no-server",
                            humantime::format_duration(a.bootstrap_wait)
                        ),
                    ));
                    continue;
                }
            },
        };
        let floor = j.floor.max(timestamp_floor.map(|s| Stamp(s.0 - 1)));
        match backup_one(&j, tid, &a, gzip, floor, quiet) {
            Ok(d) => done.push((j, d)),
            Err(e) => failures.push((j.cfg.id.clone(), e)),
        }
    }

    // The run's timestamp: after every name this run or earlier runs used.
    let mut run = Stamp::now();
    for (j, d) in &done {
        run = run.max(j.floor.map(Stamp::next).unwrap_or(run));
        if let Some(s) = d.stamp {
            run = run.max(s);
        }
    }
    if let Some(f) = timestamp_floor {
        run = run.max(f);
    }
    if !repozo::wait_for(run, CLOCK_WAIT) {
        log::warn!(
            "the repositories hold names up to {run}, ahead of this host's clock; \
             naming the run {run} anyway (check the clock)"
        );
    }

    let mut run_errors = Vec::new();
    let status_copy_path = match status_copy {
        Some((tmp, base, dir)) => {
            let target = dir.join(format!("{base}.{run}"));
            match tmp.persist_new(&target) {
                Ok(()) => Some(target),
                Err(e) => {
                    run_errors.push(format!(
                        "cannot save the status file copy {}: {e}",
                        target.display()
                    ));
                    None
                }
            }
        }
        None => None,
    };

    let point_json: BTreeMap<String, u64> = point
        .as_ref()
        .map(|p| p.iter().map(|(k, v)| (k.clone(), v.0)).collect())
        .unwrap_or_default();
    let mut ok_jobs = Vec::new();
    for (j, d) in done {
        let m = Manifest {
            format: repozo::manifest::FORMAT.into(),
            version: 1,
            timestamp: run.text(),
            storage: j.cfg.id.clone(),
            data_fs: j.data_fs.display().to_string(),
            mode: if a.no_server { "no-server" } else { "coherent" }.into(),
            tid: d.tid.map(|t| t.0),
            tid_hex: d.tid.map(|t| t.hex()),
            tid_time: d.tid.map(|t| t.rfc3339()),
            cut_position: d.end,
            last_tid: d.last_tid.map(|t| t.0),
            source_size: d.source_size,
            backup_kind: d.kind.into(),
            backup_file: d.file.clone(),
            chain: d.chain.clone(),
            point: point_json.clone(),
            status_file_copy: status_copy_path.as_ref().map(|p| p.display().to_string()),
        };
        match j.repo.write_manifest(&m, run) {
            Ok(_) => ok_jobs.push((j, d)),
            Err(e) => failures.push((
                j.cfg.id.clone(),
                format!(
                    "backed up, but the manifest could not be written ({e}); \
                     restore of this run needs --tid-log"
                ),
            )),
        }
    }

    let complete = failures.is_empty() && selected.len() == c.storages.len();
    if let Some(ts) = &c.backup.timestamp_file {
        if complete {
            if let Err(e) = append_line(ts, &run.text()) {
                run_errors.push(format!(
                    "cannot append {run} to the timestamp file {}: {e}; restore with --date {run}",
                    ts.display()
                ));
            }
        } else if failures.is_empty() {
            log::info!(
                "{run} not added to the timestamp file {}: only some storages were backed up",
                ts.display()
            );
        }
    }

    let mut pruned_text = String::new();
    if let Some(n) = keep_full {
        let mut oldest_kept: Option<Stamp> = None;
        let mut all_pruned = complete;
        for (j, _) in &ok_jobs {
            match j.repo.prune(n as usize) {
                Ok((kept, removed)) => {
                    match kept {
                        Some(k) => oldest_kept = Some(oldest_kept.map_or(k, |o| o.min(k))),
                        None => all_pruned = false,
                    }
                    if !removed.is_empty() {
                        pruned_text.push_str(&format!(
                            "storage {}: removed {} file(s) older than the {n} newest full backup(s)\n",
                            j.cfg.id,
                            removed.len()
                        ));
                    }
                }
                Err(e) => run_errors.push(format!("--keep-full: {e}")),
            }
        }
        if let (true, Some(cut), Some(dir)) =
            (all_pruned, oldest_kept, &c.backup.status_file_backup_dir)
        {
            match prune_status_copies(dir, &c.server.status_file, cut) {
                Ok(0) => {}
                Ok(k) => pruned_text.push_str(&format!(
                    "removed {k} status file cop(ies) older than {cut}\n"
                )),
                Err(e) => run_errors.push(e),
            }
        }
    }

    let mut out = String::new();
    for (j, d) in &ok_jobs {
        out.push_str(&summary(j, d));
    }
    for (id, e) in &failures {
        out.push_str(&format!("storage {id}: FAILED: {e}\n"));
    }
    out.push_str(&pruned_text);
    if !ok_jobs.is_empty() {
        out.push_str(&format!("backup run {run}"));
        if let Some(p) = &status_copy_path {
            out.push_str(&format!(", status file copied to {}", p.display()));
        }
        out.push('\n');
    }
    emit(&out)?;
    if failures.is_empty() && run_errors.is_empty() {
        return Ok(());
    }
    let mut msgs: Vec<String> = failures
        .iter()
        .map(|(id, e)| format!("storage {id}: {e}"))
        .collect();
    msgs.extend(run_errors);
    Err(CliError::runtime(format!(
        "{} of {} storage(s) failed{}:\n  {}",
        failures.len(),
        selected.len(),
        if failures.is_empty() {
            " (but the run had errors)"
        } else {
            ""
        },
        msgs.join("\n  ")
    )))
}

fn prepare<'a>(s: &'a StorageConfig, c: &Config) -> std::result::Result<Job<'a>, String> {
    let data_fs = s
        .data_fs
        .clone()
        .ok_or_else(|| format!("no data_fs in the {}", c.describe_source()))?;
    let dir = s
        .repository
        .clone()
        .ok_or_else(|| format!("no repository in the {}", c.describe_source()))?;
    if !dir.is_dir() {
        return Err(format!(
            "repository {} is not a directory; create it (repozo requires it to exist too)",
            dir.display()
        ));
    }
    let repo = Repository::new(dir);
    let lock = repo.lock().map_err(|e| e.to_string())?;
    let floor = repo.newest_stamp().map_err(|e| e.to_string())?;
    Ok(Job {
        cfg: s,
        repo,
        data_fs,
        _lock: lock,
        floor,
    })
}

/// Asks the daemon for its point; while some of `ids` are missing from it
/// (the daemon just started and has not seen them commit), fires their
/// `[bootstrap]` triggers once and waits (bounded) for them to show up.
fn take_point(
    addr: &str,
    ids: &[&str],
    wait: Duration,
    c: &Config,
) -> Result<BTreeMap<String, Tid>> {
    let end = Instant::now() + wait;
    let mut client = DaemonClient::connect(addr)
        .map_err(|e| CliError::runtime(format!("{}; nothing was backed up", e.message)))?;
    let mut triggers: Option<Triggers> = None;
    loop {
        let point: BTreeMap<String, Tid> = client.dump()?.into_iter().collect();
        let missing: Vec<String> = ids
            .iter()
            .filter(|i| !point.contains_key(**i))
            .map(|i| i.to_string())
            .collect();
        if let Some(t) = &mut triggers {
            t.reap();
        }
        if missing.is_empty() || Instant::now() + POLL > end {
            if let Some(t) = &mut triggers {
                // Their commits were seen: let them close cleanly. A
                // trigger that did not get through by now is stuck.
                if missing.is_empty() {
                    t.wait(EXIT_GRACE);
                }
                t.stop();
            }
            return Ok(point);
        }
        if triggers.is_none() {
            log::warn!(
                "the daemon at {addr} has no coherent TID yet for {missing:?}; firing their \
                 bootstrap triggers and waiting up to {}",
                humantime::format_duration(wait)
            );
            let mut t = Triggers::new(c.bootstrap.clone(), &c.storages, addr.to_string());
            t.fire(&missing);
            triggers = Some(t);
        }
        std::thread::sleep(POLL);
    }
}

fn backup_one(
    j: &Job,
    tid: Option<Tid>,
    a: &BackupArgs,
    gzip: bool,
    floor: Option<Stamp>,
    quiet: bool,
) -> std::result::Result<Done, String> {
    let t0 = Instant::now();
    let df = DataFs::open(&j.data_fs).map_err(|e| format!("cannot read the Data.fs: {e}"))?;
    let mut notes = Vec::new();
    let (end, last_tid) = match tid {
        Some(t) => {
            let cc = crate::cmd::cut::coherent_cut(&df, t).map_err(|e| e.to_string())?;
            if cc.ends_before_tid {
                return Err(format!(
                    "{} ends at TID {} before the coherent TID {} the daemon reports for this \
                     storage: is data_fs the file this ZEO server writes? nothing was backed up",
                    j.data_fs.display(),
                    cc.cut.last_kept_tid.map(|t| t.hex()).unwrap_or_default(),
                    t.hex()
                ));
            }
            if let Some(d) = &cc.cut.damage {
                if cc.cut.valid_end <= cc.cut.position
                    && !commit_in_progress(&j.data_fs, cc.cut.zodb_refuses)
                {
                    notes.push(format!("damage after the backed-up part: {d}"));
                }
            }
            (cc.cut.position, cc.cut.last_kept_tid)
        }
        None => {
            let v = df
                .valid_prefix()
                .map_err(|e| format!("cannot read the Data.fs: {e}"))?;
            if let Some(d) = &v.damage {
                if commit_in_progress(&j.data_fs, v.zodb_refuses) {
                    notes.push(format!(
                        "backed up to offset {}, before a commit in progress (the ZEO \
                         server holds the file's lock)",
                        v.end
                    ));
                } else {
                    notes.push(format!(
                        "the Data.fs is damaged after offset {}: backed up only before it ({d})",
                        v.end
                    ));
                }
            }
            (v.end, v.last_tid)
        }
    };
    let check_pb = progress_bar(0, format!("{} checking", j.cfg.id), quiet);
    let (decision, chain) = j
        .repo
        .decide(df.file(), end, a.full, a.quick, &check_pb as &dyn Progress)
        .map_err(|e| e.to_string())?;
    check_pb.finish_and_clear();
    let (start, chain_ref, kind, reason) = match &decision {
        Decision::Unchanged => {
            return Ok(Done {
                kind: "unchanged",
                file: None,
                start: end,
                end,
                source_size: df.size(),
                tid,
                last_tid,
                chain: chain.map(|c| c.names()).unwrap_or_default(),
                stamp: None,
                reason: None,
                notes,
                secs: t0.elapsed().as_secs_f64(),
            })
        }
        Decision::Incremental { start } => (*start, chain.as_ref(), "incremental", None),
        Decision::Full(why) => (0, None, "full", Some(why.clone())),
    };
    let mut stamp = j.repo.next_stamp(floor).map_err(|e| e.to_string())?;
    if !repozo::wait_for(stamp, CLOCK_WAIT) {
        log::warn!(
            "{}: newest name is ahead of this host's clock; naming the backup {stamp}",
            j.repo.dir.display()
        );
    } else {
        // The wait may have crossed into a later second; a later name is
        // still unique and more honest.
        stamp = stamp.max(Stamp::now());
    }
    let pb = progress_bar(end - start, format!("{} {kind}", j.cfg.id), quiet);
    // The index is built on a second thread while the bytes are copied.
    let previous_index = match chain_ref.and_then(|c| c.links.last()) {
        Some(l) => j.repo.index_path(&l.file),
        None => fsutil::sibling(&j.data_fs, ".index"),
    };
    let (written, index) = std::thread::scope(|s| {
        let ix = s.spawn(|| {
            let existing = FsIndex::load(&previous_index).ok();
            index_for_prefix(&df, end, existing, &mut |_, _| {})
        });
        let w = j.repo.write_backup(
            df.file(),
            start,
            end,
            chain_ref,
            stamp,
            gzip,
            &pb as &dyn Progress,
        );
        (w, ix.join().expect("index thread"))
    });
    pb.finish_and_clear();
    let written = written.map_err(|e| {
        format!("{e}; no backup file was left under a backup name, fix the cause and run again")
    })?;
    match index {
        Ok(ix) => {
            let p = j.repo.index_path(&written.file);
            if let Err(e) = ix.index.save(end, &p) {
                notes.push(format!(
                    "index {} not written ({e}); restore rebuilds it",
                    p.display()
                ));
            }
        }
        Err(e) => notes.push(format!(
            "no .index written: the Data.fs could not be indexed ({e}); restore rebuilds it"
        )),
    }
    Ok(Done {
        kind,
        file: Some(written.file.name.clone()),
        start,
        end,
        source_size: df.size(),
        tid,
        last_tid,
        chain: written.chain,
        stamp: Some(stamp),
        reason,
        notes,
        secs: t0.elapsed().as_secs_f64(),
    })
}

/// True when the bytes after a file's valid prefix are a commit a live
/// server is writing rather than damage: ZODB quietly stops before them
/// (a voted transaction not finished yet, or one still being appended)
/// and the file's `.lock` is held. Reading a live file meets this on every
/// busy backup; calling it damage would send the operator to cut or
/// restore a healthy database.
fn commit_in_progress(data_fs: &Path, zodb_refuses: bool) -> bool {
    if zodb_refuses {
        return false;
    }
    matches!(
        fsutil::lock_is_held(&fsutil::sibling(data_fs, ".lock")),
        Ok(true)
    )
}

fn summary(j: &Job, d: &Done) -> String {
    let upto = match (d.tid, d.last_tid) {
        (Some(t), _) => format!("coherent TID {} ({})", t.hex(), t.rfc3339()),
        (None, Some(l)) => format!("end, last TID {} ({})", l.hex(), l.rfc3339()),
        (None, None) => "end (no transaction)".into(),
    };
    let mut s = format!("storage {}: ", j.cfg.id);
    match &d.file {
        Some(f) => s.push_str(&format!(
            "{} {} bytes {}..{} ({} bytes) up to {upto} in {:.1} s\n",
            d.kind,
            j.repo.path(f).display(),
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
    for n in &d.notes {
        s.push_str(&format!("  note: {n}\n"));
    }
    s
}

/// The last non-blank line of the timestamp file, as a stamp.
pub fn last_timestamp(path: &Path) -> Result<Option<Stamp>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CliError::runtime(format!(
                "cannot read the timestamp file {}: {e}",
                path.display()
            )))
        }
    };
    match text.lines().rev().find(|l| !l.trim().is_empty()) {
        None => Ok(None),
        Some(l) => Stamp::parse(l.trim()).map(Some).ok_or_else(|| {
            CliError::runtime(format!(
                "the timestamp file {} ends with {:?}, not a YYYY-MM-DD-HH-MM-SS line; fix it",
                path.display(),
                l
            ))
        }),
    }
}

/// Appends `line` durably: the old content plus the line, into a temporary
/// file renamed over the old one.
fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let mut text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    if !text.is_empty() && !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    text.extend_from_slice(line.as_bytes());
    text.push(b'\n');
    let mut tmp = fsutil::TempFile::beside(path)?;
    tmp.file().write_all(&text)?;
    tmp.persist(path)
}

/// Copies the status file into a temporary file of `dir` (named once the
/// run's timestamp is known). A missing status file is a warning.
fn copy_status_file(
    status: &Path,
    dir: &Path,
    no_server: bool,
) -> Result<Option<(fsutil::TempFile, String, PathBuf)>> {
    let base = status
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tidstorage.tid".into());
    let mut src = match std::fs::File::open(status) {
        Ok(f) => f,
        Err(e) => {
            log::warn!(
                "status file {} not copied ({e}){}",
                status.display(),
                if no_server {
                    "; restoring this no-server backup will need --tid-log with a status file"
                } else {
                    ""
                }
            );
            return Ok(None);
        }
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        CliError::runtime(format!(
            "cannot create status_file_backup_dir {}: {e}; nothing was backed up",
            dir.display()
        ))
    })?;
    let mut tmp = fsutil::TempFile::beside(&dir.join(&base)).map_err(|e| {
        CliError::runtime(format!(
            "cannot write into status_file_backup_dir {}: {e}; nothing was backed up",
            dir.display()
        ))
    })?;
    std::io::copy(&mut src, tmp.file()).map_err(|e| {
        CliError::runtime(format!(
            "cannot copy the status file {} into {}: {e}; nothing was backed up",
            status.display(),
            dir.display()
        ))
    })?;
    Ok(Some((tmp, base, dir.to_path_buf())))
}

fn prune_status_copies(
    dir: &Path,
    status: &Path,
    before: Stamp,
) -> std::result::Result<usize, String> {
    let base = status
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!("{base}.");
    let rd = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut n = 0;
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        let Some(st) = name.strip_prefix(&prefix).and_then(Stamp::parse) else {
            continue;
        };
        if st < before {
            std::fs::remove_file(ent.path())
                .map_err(|e| format!("cannot remove {}: {e}", ent.path().display()))?;
            n += 1;
        }
    }
    Ok(n)
}
