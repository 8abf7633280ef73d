//! A backup run: a repozo-compatible backup of every selected Data.fs,
//! each copied only up to its storage's coherent TID (SPEC §6).
//!
//! One run: lock every repository, copy the status file aside, ask the
//! daemon for the coherency point (waiting a bounded time for storages
//! still missing after start-up, firing their bootstrap triggers), back up
//! each storage (full, incremental or nothing new) up to the cut position
//! of its TID, then name the run with one UTC timestamp T: the status-file
//! copy `<name>.<T>`, one manifest `<T>.tidstorage.json` per repository,
//! and the line T in the timestamp file (only when every configured
//! storage succeeded, so a default restore always finds a complete set).
//! `keep_full` prunes last. A storage that fails is reported and the
//! others carry on.
//!
//! Must not: write a backup file anywhere but through the repozo module
//! (temp, fsync, link under a name no file has), or reuse a second.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::blobs::{self as blob_step, BackupFailure};
use super::job::StorageJob;
use super::{Error, ErrorKind, Result};
use crate::blobs::SnapshotReport;
use crate::bootstrap::{Triggers, EXIT_GRACE};
use crate::client::{server_address, DaemonClient};
use crate::config::Config;
use crate::datafs::index::{index_for_prefix, FsIndex};
use crate::datafs::DataFs;
use crate::fsutil::{self, DataFsLock};
use crate::progress::{self, Progress};
use crate::repozo::backup::Decision;
use crate::repozo::manifest::Manifest;
use crate::repozo::{self, timestamps, Stamp};
use crate::tid::Tid;

/// What the caller asks of a run (the flags, merged with `[backup]`).
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Daemon to take the point from (default: `[server]` address:port).
    pub server: Option<String>,
    /// Back up to each file's end; restore then cuts with the status file.
    pub no_server: bool,
    /// Only these configured storages (empty: all).
    pub storages: Vec<String>,
    pub full: bool,
    pub quick: bool,
    /// gzip new files; `None` takes `[backup] gzip`.
    pub gzip: Option<bool>,
    /// Prune older chains; `None` takes `[backup] keep_full`.
    pub keep_full: Option<u32>,
    /// How long to wait for storages missing from the daemon's point.
    pub bootstrap_wait: Duration,
    /// Skip a storage whose coherent TID lags its Data.fs's newest
    /// transaction by more than this; `None` takes `[backup] max_lag`.
    pub max_lag: Option<Duration>,
    /// No progress bars.
    pub quiet: bool,
}

/// What one storage's backup did.
#[derive(Debug)]
pub struct StorageBackup {
    pub storage: String,
    /// `full`, `incremental` or `unchanged`.
    pub kind: &'static str,
    /// The new backup file's path (None when unchanged).
    pub file: Option<PathBuf>,
    /// The byte range of the Data.fs this run copied.
    pub start: u64,
    pub end: u64,
    pub source_size: u64,
    /// The coherent TID (None with `no_server`).
    pub tid: Option<Tid>,
    /// The last TID in the backed-up prefix.
    pub last_tid: Option<Tid>,
    /// The coherent TID's lag behind the Data.fs's newest transaction, in
    /// seconds of TID time (None with `no_server`).
    pub lag: Option<f64>,
    /// Why a full backup was taken when an incremental was possible.
    pub reason: Option<String>,
    pub notes: Vec<String>,
    /// The blob run written with it (None: no blob_dir, or nothing new).
    pub blobs: Option<SnapshotReport>,
    pub secs: f64,
}

/// What `keep_full` removed.
#[derive(Debug)]
pub enum Pruned {
    Repository {
        storage: String,
        removed: usize,
        keep_full: u32,
    },
    /// Blob runs (and pool files only they named) of removed backups.
    Blobs {
        storage: String,
        runs: u64,
        files: u64,
        bytes: u64,
    },
    StatusCopies {
        removed: usize,
        older_than: Stamp,
    },
}

/// The outcome of a run that got as far as backing up.
#[derive(Debug)]
pub struct BackupReport {
    /// The run's timestamp.
    pub run: Stamp,
    pub backed_up: Vec<StorageBackup>,
    /// Storages that failed (each error names its storage).
    pub failures: Vec<Error>,
    /// Failures of the run's own files (status copy, timestamp file, pruning).
    pub run_errors: Vec<Error>,
    pub pruned: Vec<Pruned>,
    pub status_copy: Option<PathBuf>,
    /// How many storages were selected.
    pub selected: usize,
}

impl BackupReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.run_errors.is_empty()
    }
}

/// How long to wait for the clock to reach a repository's next free second.
const CLOCK_WAIT: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(250);

/// A storage being backed up.
struct Job<'a> {
    job: StorageJob<'a>,
    /// The newest second named in the repository before this run.
    floor: Option<Stamp>,
    /// Data files no `.dat` listed, set aside before this run.
    set_aside: Vec<PathBuf>,
}

/// A storage's Data.fs was backed up but the blob files it names were not
/// all found, and the Data.fs was replaced meanwhile (a pack).
struct Packed {
    missing: crate::blobs::Error,
    /// The Data.fs backup file written before (it has no blob run).
    file: Option<String>,
}

/// How long a backup redone after a pack waits for the daemon's point to
/// pass the pack.
const PACK_WAIT: Duration = Duration::from_secs(30);

/// A storage backed up, before the run was named.
struct Done {
    out: StorageBackup,
    /// The backup is written but its `.index` is not (reported, not fatal).
    index_error: Option<Error>,
    file_name: Option<String>,
    chain: Vec<String>,
    stamp: Option<Stamp>,
}

/// Runs a backup of the selected storages. `Err` when nothing could be
/// started (configuration, the status-file copy, an unreachable daemon);
/// otherwise the report says per storage what happened.
pub fn run(c: &Config, o: &BackupOptions) -> Result<BackupReport> {
    let selected = c
        .select_storages(&o.storages)
        .map_err(|e| Error::config(e.message))?;
    if selected.is_empty() {
        return Err(Error::config(format!(
            "no storage to back up: the {} has no [[storage]] with data_fs and repository",
            c.describe_source()
        )));
    }
    // A storage the configuration cannot back up is a configuration error
    // (exit 2) found before anything is written.
    let unconfigured: Vec<Error> = selected
        .iter()
        .filter_map(|s| {
            let missing = match (&s.data_fs, &s.repository) {
                (None, _) => "data_fs",
                (_, None) => "repository",
                _ => return None,
            };
            Some(
                Error::config(format!("no {missing} in the {}", c.describe_source()))
                    .storage(&s.id),
            )
        })
        .collect();
    if !unconfigured.is_empty() {
        return Err(Error::new(ErrorKind::Storages(unconfigured)).doing("nothing was backed up"));
    }
    let gzip = o.gzip.unwrap_or(c.backup.gzip);
    let keep_full = o.keep_full.or(c.backup.keep_full);
    let timestamp_floor = match &c.backup.timestamp_file {
        Some(p) => timestamps::last(p)?.map(Stamp::next),
        None => None,
    };

    // Lock and check every repository first.
    let mut failures = Vec::new();
    let mut jobs = Vec::new();
    for s in &selected {
        match prepare(s, c) {
            Ok(j) => jobs.push(j),
            Err(e) => failures.push(e.storage(&s.id)),
        }
    }

    // The status file, copied before the Data.fs files are read: every
    // point in the copy is then covered by the copies (what a no-server
    // backup's restore relies on).
    let status_copy = match &c.backup.status_file_backup_dir {
        Some(dir) if !jobs.is_empty() => copy_status_file(&c.server.status_file, dir, o.no_server)?,
        _ => None,
    };
    let status_copy_floor = match &c.backup.status_file_backup_dir {
        Some(dir) => newest_status_copy(dir, &c.server.status_file)?,
        None => None,
    };

    let addr = server_address(o.server.as_deref(), c);
    let point: Option<BTreeMap<String, Tid>> = if o.no_server || jobs.is_empty() {
        None
    } else {
        let ids: Vec<&str> = jobs.iter().map(|j| j.job.id()).collect();
        Some(take_point(&addr, &ids, o.bootstrap_wait, c)?)
    };

    // Each Data.fs is opened once: the exact cut is read from, and the
    // copy made from, the same descriptor (and so the same file, whatever
    // a pack renames meanwhile).
    let mut opened = Vec::new();
    for j in jobs {
        match DataFs::open(&j.job.data_fs) {
            Ok(df) => opened.push((j, df)),
            Err(e) => failures.push(
                Error::from(e)
                    .doing("cannot read the Data.fs")
                    .storage(j.job.id()),
            ),
        }
    }
    let exact = point
        .as_ref()
        .and_then(|p| exact_on_live_files(c, p, &opened));

    let max_lag = o.max_lag.or(c.backup.max_lag);
    let mut done: Vec<(Job, Done)> = Vec::new();
    for (j, df) in opened {
        let tid = match &point {
            None => None,
            Some(p) => match p.get(j.job.id()) {
                Some(t) => Some(*t),
                None => {
                    failures.push(
                        Error::refused(format!(
                            "the daemon has no coherent TID for this storage (bootstrap incomplete \
                             after waiting {}): check `tidstorage bootstrap-status`, the \
                             [bootstrap] trigger, and that Zope reports commits of this storage; \
                             or back up with --no-server",
                            humantime::format_duration(o.bootstrap_wait)
                        ))
                        .storage(j.job.id()),
                    );
                    continue;
                }
            },
        };
        // Above the daemon's point, what the tags show complete now.
        let (tid, beyond) = match (tid, exact.as_ref().and_then(|x| x.get(j.job.id()))) {
            (Some(t), Some(sp)) => match sp.cut_tid {
                Some(e) if e > t => (Some(e), sp.kept_beyond_floor),
                _ => (Some(t), 0),
            },
            (t, _) => (t, 0),
        };
        let floor = j.floor.max(timestamp_floor.map(|s| Stamp(s.0 - 1)));
        let limit = max_lag.zip(tid).map(|(l, t)| (l, t, addr.as_str()));
        let r = backup_one(&j, df, tid, beyond, o, gzip, floor, limit).and_then(|r| match r {
            Ok(d) => Ok(d),
            Err(packed) => redo_after_pack(&j, packed, o, gzip, floor, point.is_some(), &addr),
        });
        match r {
            Ok(d) => done.push((j, d)),
            Err(e) => failures.push(e.storage(j.job.id())),
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
    // A failed run may have left its status-file copy under its second.
    if let Some(f) = status_copy_floor {
        run = run.max(f.next());
    }
    if !repozo::wait_for(run, CLOCK_WAIT) {
        log::warn!(
            "the repositories hold names up to {run}, ahead of this host's clock; \
             naming the run {run} anyway (check the clock)"
        );
    }

    let mut run_errors = Vec::new();
    let copy_failed = status_copy.is_some();
    let status_copy_path = match status_copy {
        Some((tmp, base, dir)) => {
            let target = dir.join(format!("{base}.{run}"));
            match tmp.persist_new(&target) {
                Ok(()) => Some(target),
                Err(e) => {
                    run_errors
                        .push(Error::io(&target, e).doing("cannot save the status file copy"));
                    None
                }
            }
        }
        None => None,
    };

    let copy_failed = copy_failed && status_copy_path.is_none();
    let point_json: BTreeMap<String, u64> = point
        .as_ref()
        .map(|p| p.iter().map(|(k, v)| (k.clone(), v.0)).collect())
        .unwrap_or_default();
    let mut ok_jobs = Vec::new();
    for (j, d) in &mut done {
        if let Some(e) = d.index_error.take() {
            run_errors.push(e.storage(j.job.id()));
        }
    }
    for (j, d) in done {
        let m = Manifest {
            format: repozo::manifest::FORMAT.into(),
            version: 1,
            timestamp: run.text(),
            storage: j.job.cfg.id.clone(),
            data_fs: j.job.data_fs.display().to_string(),
            mode: if o.no_server { "no-server" } else { "coherent" }.into(),
            tid: d.out.tid.map(|t| t.0),
            tid_hex: d.out.tid.map(|t| t.hex()),
            tid_time: d.out.tid.map(|t| t.rfc3339()),
            cut_position: d.out.end,
            last_tid: d.out.last_tid.map(|t| t.0),
            source_size: d.out.source_size,
            backup_kind: d.out.kind.into(),
            backup_file: d.file_name.clone(),
            chain: d.chain.clone(),
            point: point_json.clone(),
            status_file_copy: status_copy_path.as_ref().map(|p| p.display().to_string()),
        };
        match j.job.repo.write_manifest(&m, run) {
            Ok(_) => ok_jobs.push((j, d)),
            Err(e) if e.is_in_place() => {
                run_errors.push(Error::from(e).storage(j.job.id()));
                ok_jobs.push((j, d));
            }
            Err(e) => failures.push(
                Error::from(e)
                    .doing("backed up, but the manifest could not be written")
                    .advice("restore of this run needs --tid-log")
                    .storage(j.job.id()),
            ),
        }
    }

    // A run whose status-file copy failed is not complete: a no-server
    // run restores only with it.
    let complete = failures.is_empty() && !copy_failed && selected.len() == c.storages.len();
    if let Some(ts) = &c.backup.timestamp_file {
        if complete {
            if let Err(e) = timestamps::append(ts, &run.text()) {
                run_errors.push(
                    Error::io(ts, e)
                        .doing(format!("cannot append {run} to the timestamp file"))
                        .advice(format!("restore with --date {run}")),
                );
            }
        } else if failures.is_empty() {
            log::info!(
                "{run} not added to the timestamp file {}: only some storages were backed up",
                ts.display()
            );
        }
    }

    let mut pruned = Vec::new();
    if let Some(n) = keep_full {
        let mut oldest_kept: Option<Stamp> = None;
        let mut all_pruned = complete;
        for (j, _) in &ok_jobs {
            match j.job.repo.prune(n as usize) {
                Ok((kept, removed)) => {
                    match kept {
                        Some(k) => oldest_kept = Some(oldest_kept.map_or(k, |o| o.min(k))),
                        None => all_pruned = false,
                    }
                    if !removed.is_empty() {
                        pruned.push(Pruned::Repository {
                            storage: j.job.cfg.id.clone(),
                            removed: removed.len(),
                            keep_full: n,
                        });
                    }
                    if j.job.cfg.blob_dir.is_some() && !removed.is_empty() {
                        match prune_blobs(&j.job) {
                            Ok(Some(p)) => pruned.push(p),
                            Ok(None) => {}
                            Err(e) => run_errors.push(e.storage(j.job.id()).doing("--keep-full")),
                        }
                    }
                }
                Err(e) => run_errors.push(Error::from(e).doing("--keep-full")),
            }
        }
        if let (true, Some(cut), Some(dir)) =
            (all_pruned, oldest_kept, &c.backup.status_file_backup_dir)
        {
            match prune_status_copies(dir, &c.server.status_file, cut) {
                Ok(0) => {}
                Ok(k) => pruned.push(Pruned::StatusCopies {
                    removed: k,
                    older_than: cut,
                }),
                Err(e) => run_errors.push(e),
            }
        }
    }

    Ok(BackupReport {
        run,
        backed_up: ok_jobs.into_iter().map(|(_, d)| d.out).collect(),
        failures,
        run_errors,
        pruned,
        status_copy: status_copy_path,
        selected: selected.len(),
    })
}

fn prepare<'a>(s: &'a crate::config::StorageConfig, c: &Config) -> Result<Job<'a>> {
    if let Some(dir) = &s.repository {
        if !dir.is_dir() {
            return Err(Error::refused(format!(
                "repository {} is not a directory; create it (repozo requires it to exist too)",
                dir.display()
            )));
        }
    }
    let job = StorageJob::prepare(s, c)?;
    // Under the lock: what an interrupted run left under a backup name, and
    // the temporaries of runs that were killed.
    let set_aside = job.repo.set_aside_unlisted()?;
    fsutil::remove_stale_temps_in(&job.repo.dir);
    fsutil::remove_stale_temps_in(&job.repo.dir.join("blobs").join("runs"));
    let floor = job.repo.newest_stamp()?;
    Ok(Job {
        job,
        floor,
        set_aside,
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
    let mut client =
        DaemonClient::connect(addr).map_err(|e| Error::from(e).advice("nothing was backed up"))?;
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

#[allow(clippy::too_many_arguments)]
fn backup_one(
    j: &Job,
    df: DataFs,
    tid: Option<Tid>,
    beyond: u64,
    o: &BackupOptions,
    gzip: bool,
    floor: Option<Stamp>,
    max_lag: Option<(Duration, Tid, &str)>,
) -> Result<std::result::Result<Done, Packed>> {
    let t0 = Instant::now();
    let id = j.job.id();
    let data_fs = &j.job.data_fs;
    let repo = &j.job.repo;
    let mut notes: Vec<String> = j
        .set_aside
        .iter()
        .map(|p| {
            format!(
                "{} was left by an interrupted backup (no .dat lists it): set aside, not used",
                p.display()
            )
        })
        .collect();
    if beyond > 0 {
        notes.push(format!(
            "the exact cut keeps {beyond} transaction(s) beyond the daemon's point (complete on \
             every storage their tags name)"
        ));
    }
    let (end, last_tid) = match tid {
        Some(t) => {
            let cc = df.coherent_cut(t)?;
            if let Some(why) = cc.below_pack_refusal(data_fs.as_ref(), t) {
                return Err(Error::refused(why));
            }
            if cc.ends_before_tid {
                return Err(Error::refused(format!(
                    "{} ends at TID {} before the coherent TID {} the daemon reports for this \
                     storage: is data_fs the file this ZEO server writes? nothing was backed up",
                    data_fs.display(),
                    cc.cut.last_kept_tid.map(|t| t.hex()).unwrap_or_default(),
                    t.hex()
                )));
            }
            if let Some(d) = &cc.cut.damage {
                if cc.cut.valid_end <= cc.cut.position
                    && !commit_in_progress(data_fs, cc.cut.zodb_refuses)
                {
                    notes.push(format!("damage after the backed-up part: {d}"));
                }
            }
            (cc.cut.position, cc.cut.last_kept_tid)
        }
        None => {
            let v = df
                .valid_prefix()
                .map_err(|e| Error::from(e).doing("cannot read the Data.fs"))?;
            if let Some(d) = &v.damage {
                if commit_in_progress(data_fs, v.zodb_refuses) {
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
    // How far the point lags what the file holds (TID time).
    let lag = match tid {
        Some(t) => {
            let newest = df
                .last_tid()
                .map_err(|e| Error::from(e).doing("cannot read the Data.fs"))?;
            Some(newest.map_or(0.0, |n| (n.unix_seconds() - t.unix_seconds()).max(0.0)))
        }
        None => None,
    };
    if let (Some((limit, t, addr)), Some(secs)) = (max_lag, lag) {
        if secs > limit.as_secs_f64() {
            return Err(Error::refused(lag_refusal(id, t, secs, limit, addr)));
        }
    }
    let check_pb = progress::bar(0, format!("{id} checking"), o.quiet);
    let (decision, chain) =
        repo.decide(df.file(), end, o.full, o.quick, &check_pb as &dyn Progress)?;
    check_pb.finish_and_clear();
    let out = |kind, file: Option<PathBuf>, start, reason, notes, blobs| StorageBackup {
        storage: id.to_string(),
        kind,
        file,
        start,
        end,
        source_size: df.size(),
        tid,
        last_tid,
        lag,
        reason,
        notes,
        blobs,
        secs: t0.elapsed().as_secs_f64(),
    };
    let blob_dir = j.job.cfg.blob_dir.as_deref();
    let (start, chain_ref, kind, reason) = match &decision {
        Decision::Unchanged => {
            // A run that failed to write the chain's index left none: write it now.
            if let Some(last) = chain.as_ref().and_then(|c| c.links.last()) {
                let p = repo.index_path(&last.file);
                if !fsutil::exists(&p).map_err(|e| Error::io(&p, e))? {
                    let existing = FsIndex::load(&fsutil::sibling(data_fs, ".index")).ok();
                    let ix = index_for_prefix(&df, end, existing, &mut |_, _| {})?;
                    ix.index.save(end, &p).map_err(|e| {
                        Error::io(&p, e)
                            .doing("the repository is unchanged, but cannot write the index")
                    })?;
                    notes.push(format!("wrote the missing index {}", p.display()));
                }
            }
            // The newest backup has no blob run (blob_dir configured since,
            // or its blob backup failed): write it now.
            let mut blobs = None;
            if let (Some(dir), Some(last)) = (blob_dir, chain.as_ref().and_then(|c| c.links.last()))
            {
                if !blob_step::has_run(&repo.dir, &last.file.name)? {
                    let name = blob_step::run_name(&last.file.name);
                    match blob_step::back_up(dir, &repo.dir, &df, name, end, last_tid, None) {
                        Ok(r) => blobs = Some(r),
                        Err(BackupFailure::Other(e)) => return Err(e),
                        Err(BackupFailure::Missing(e)) => {
                            return pack_or_missing(data_fs, &df, e, None)
                        }
                    }
                }
            }
            return Ok(Ok(Done {
                out: out("unchanged", None, end, None, notes, blobs),
                file_name: None,
                chain: chain.map(|c| c.names()).unwrap_or_default(),
                stamp: None,
                index_error: None,
            }));
        }
        Decision::Incremental { start } => (*start, chain.as_ref(), "incremental", None),
        Decision::Full(why) => (0, None, "full", Some(why.clone())),
    };
    let mut stamp = repo.next_stamp(floor)?;
    if !repozo::wait_for(stamp, CLOCK_WAIT) {
        log::warn!(
            "{}: newest name is ahead of this host's clock; naming the backup {stamp}",
            repo.dir.display()
        );
    } else {
        // The wait may have crossed into a later second; a later name is
        // still unique and more honest.
        stamp = stamp.max(Stamp::now());
    }
    let pb = progress::bar(end - start, format!("{id} {kind}"), o.quiet);
    // The index is built on a second thread while the bytes are copied.
    let previous_index = match chain_ref.and_then(|c| c.links.last()) {
        Some(l) => repo.index_path(&l.file),
        None => fsutil::sibling(data_fs, ".index"),
    };
    let (written, index) = std::thread::scope(|s| {
        let ix = s.spawn(|| {
            // The copy's md5 is the critical path: on two cores the index
            // scan yields to it (a per-thread nice; best effort).
            // SAFETY: plain syscalls on this thread's own id.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, 10);
            }
            let existing = FsIndex::load(&previous_index).ok();
            index_for_prefix(&df, end, existing, &mut |_, _| {})
        });
        let w = repo.write_backup(
            df.file(),
            start,
            end,
            chain_ref,
            stamp,
            gzip,
            &pb as &dyn Progress,
        );
        // The index thread only reads; a panic there is a bug worth seeing.
        (w, ix.join().expect("index thread"))
    });
    pb.finish_and_clear();
    let written = written.map_err(|e| {
        let advice = if e.is_in_place() {
            "the backup file is listed by its .dat; run the backup again to finish the run"
        } else if e.is_damage() {
            // Says itself what was left and what the next run does.
            "fix the cause and run again"
        } else {
            "no backup file was left under a backup name, fix the cause and run again"
        };
        Error::from(e).advice(advice)
    })?;
    let index_error = match index {
        Ok(ix) => {
            let p = repo.index_path(&written.file);
            ix.index.save(end, &p).err().map(|e| {
                Error::io(&p, e)
                    .doing("backed up, but cannot write the index")
                    .advice("restore rebuilds it; the next backup writes it")
            })
        }
        Err(e) => {
            notes.push(format!(
                "no .index written: the Data.fs could not be indexed ({e}); restore rebuilds it"
            ));
            None
        }
    };
    // The blob files the copied prefix names, right after it (a pack
    // removes the files of revisions it drops).
    let blobs = match blob_dir {
        None => None,
        Some(dir) => {
            let previous = chain_ref
                .and_then(|c| c.links.last())
                .map(|l| l.file.name.as_str());
            let delta = previous
                .filter(|_| kind == "incremental")
                .map(|p| (start, p));
            let name = blob_step::run_name(&written.file.name);
            match blob_step::back_up(dir, &repo.dir, &df, name, end, last_tid, delta) {
                Ok(r) => Some(r),
                Err(BackupFailure::Other(e)) => {
                    return Err(e.advice(format!(
                        "the Data.fs backup {} is written, but has no blob backup: run the \
                         backup again",
                        written.file.name
                    )))
                }
                Err(BackupFailure::Missing(e)) => {
                    return pack_or_missing(data_fs, &df, e, Some(written.file.name.clone()))
                }
            }
        }
    };
    Ok(Ok(Done {
        out: out(
            kind,
            Some(repo.path(&written.file.name)),
            start,
            reason,
            notes,
            blobs,
        ),
        file_name: Some(written.file.name.clone()),
        chain: written.chain,
        stamp: Some(stamp),
        index_error,
    }))
}

/// Blob files missing for a Data.fs backup: a pack (the Data.fs path no
/// longer names the file that was copied) is redone by the caller; files
/// missing from an unpacked source fail the storage.
fn pack_or_missing(
    data_fs: &Path,
    df: &DataFs,
    missing: crate::blobs::Error,
    file: Option<String>,
) -> Result<std::result::Result<Done, Packed>> {
    use std::os::unix::fs::MetadataExt;
    let copied = df
        .file()
        .metadata()
        .map_err(|e| Error::io(data_fs, e).doing("cannot stat"))?;
    let packed = match std::fs::metadata(data_fs) {
        Ok(now) => (now.dev(), now.ino()) != (copied.dev(), copied.ino()),
        Err(e) => return Err(Error::io(data_fs, e).doing("cannot stat")),
    };
    if packed {
        return Ok(Err(Packed { missing, file }));
    }
    let mut e = Error::from(missing)
        .doing("the blob directory lacks files the Data.fs names (in the source too, not a pack)");
    if let Some(f) = file {
        e = e.advice(format!(
            "the Data.fs backup {f} is written but has no blob backup, and this storage is not \
             backed up; restore those blob files (from an older backup: `tidstorage restore \
             --output-dir`), then run the backup again"
        ));
    }
    Err(e)
}

/// After a pack during the backup: a full backup of the packed file at a
/// point above the pack (with a daemon, waiting up to [`PACK_WAIT`] for
/// its point to pass it). Files still missing are missing in the source.
fn redo_after_pack(
    j: &Job,
    first: Packed,
    o: &BackupOptions,
    gzip: bool,
    floor: Option<Stamp>,
    with_daemon: bool,
    addr: &str,
) -> Result<Done> {
    let id = j.job.id();
    let data_fs = &j.job.data_fs;
    log::warn!(
        "storage {id}: the Data.fs was packed during the backup ({}); backing up the packed \
         file in full",
        first.missing
    );
    let end = Instant::now() + PACK_WAIT;
    let (df, tid) = loop {
        let df = DataFs::open(data_fs)
            .map_err(|e| Error::from(e).doing("cannot read the packed Data.fs"))?;
        if !with_daemon {
            break (df, None);
        }
        let t = DaemonClient::connect(addr)
            .and_then(|mut c| c.dump())
            .map_err(Error::from)?
            .into_iter()
            .find(|(k, _)| k == id)
            .map(|(_, t)| t)
            .ok_or_else(|| Error::refused("the daemon no longer has a coherent TID for it"))?;
        let cc = df.coherent_cut(t)?;
        match cc.below_pack_refusal(data_fs.as_ref(), t) {
            None => break (df, Some(t)),
            Some(why) if Instant::now() + POLL > end => {
                return Err(Error::refused(format!(
                    "packed during the backup, and the daemon's point stayed below the pack \
                     for {}: {why}",
                    humantime::format_duration(PACK_WAIT)
                ))
                .advice("run the backup again once the site has committed after the pack"))
            }
            Some(_) => std::thread::sleep(POLL),
        }
    };
    let full = BackupOptions {
        full: true,
        ..o.clone()
    };
    match backup_one(j, df, tid, 0, &full, gzip, floor, None)? {
        Ok(mut d) => {
            d.out.reason = Some("the Data.fs was packed during the backup".into());
            if let Some(f) = first.file {
                d.out.notes.push(format!(
                    "{f} was copied before the pack and has no blob backup: restore this run \
                     (or a later one), not --date {}",
                    blob_step::run_name(&f)
                ));
            }
            Ok(d)
        }
        Err(again) => Err(Error::from(again.missing).doing(
            "packed during the backup; the full backup of the packed file lacks blob files too \
             (missing in the source, or packed again: run the backup again)",
        )),
    }
}

/// `--keep-full` for the blob runs: the runs of backup files gone go.
fn prune_blobs(job: &StorageJob) -> Result<Option<Pruned>> {
    let kept: Vec<String> = job.repo.list()?.into_iter().map(|f| f.name).collect();
    let r = blob_step::prune(&job.repo.dir, &kept)?;
    Ok((r.manifests > 0 || r.files > 0).then(|| Pruned::Blobs {
        storage: job.id().to_string(),
        runs: r.manifests,
        files: r.files,
        bytes: r.bytes,
    }))
}

/// The exact cut over the live files, above the daemon's point: every
/// configured storage is read (the ones not backed up too, as a tag may
/// name them), the backed-up ones through the descriptors the copy uses.
/// `None` (with a warning) when it cannot be computed: the point is used.
fn exact_on_live_files(
    c: &Config,
    point: &BTreeMap<String, Tid>,
    opened: &[(Job, DataFs)],
) -> Option<crate::exactcut::Plan> {
    use crate::exactcut::{FloorSpec, TagSummary};
    let reads = c.storages.iter().filter_map(|s| {
        let spec = FloorSpec::Tid(*point.get(&s.id)?);
        let read = match opened.iter().find(|(j, _)| j.job.id() == s.id) {
            Some((_, df)) => TagSummary::read(df, &s.id, spec),
            None => TagSummary::read_file(s.data_fs.as_ref()?, &s.id, spec),
        };
        Some((s.id.as_str(), read))
    });
    super::point::exact_or_point(reads, "backing up at the daemon's point")
}

/// The message of a storage `--max-lag` skips: how far behind, which
/// transactions hold its point back (asked from the daemon), what to do.
fn lag_refusal(id: &str, tid: Tid, secs: f64, limit: Duration, addr: &str) -> String {
    let mut m = format!(
        "not backed up: its coherent TID {} ({}) is {} behind the newest transaction in \
         its Data.fs, more than --max-lag {}",
        tid.hex(),
        tid.rfc3339(),
        humantime::format_duration(Duration::from_secs(secs as u64)),
        humantime::format_duration(limit)
    );
    let holders = DaemonClient::connect(addr).and_then(|mut c| c.in_flight());
    match holders {
        Ok(answer) => {
            let named: Vec<String> = answer
                .holding_back(id)
                .map(|t| {
                    format!(
                        "{} ({}, {:.0} s old, storages {}{})",
                        t.id,
                        match t.state {
                            crate::protocol::answers::TxnState::Orphan => "orphan",
                            crate::protocol::answers::TxnState::InFlight => "in flight",
                        },
                        t.age_seconds,
                        t.storages.join(", "),
                        t.client
                            .as_ref()
                            .map(|c| format!(", from {c}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            if named.is_empty() {
                m.push_str(
                    "; the daemon names no transaction holding it back (no newer commit of this \
                     storage reached it: check that Zope reports its commits)",
                );
            } else {
                m.push_str(&format!(
                    "; held back by {}: if that commit is known to be over (its client is gone, \
                     or the databases were checked), end it with `tidstorage resolve ID`; see \
                     `tidstorage inflight`",
                    named.join("; ")
                ));
            }
        }
        Err(e) => m.push_str(&format!(
            "; the daemon could not say which transaction holds it back ({e})"
        )),
    }
    m
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
    matches!(DataFsLock::probe(data_fs), Ok(Some(_)))
}

/// Copies the status file into a temporary file of `dir` (named once the
/// run's timestamp is known). A missing status file is a warning.
fn copy_status_file(
    status: &Path,
    dir: &Path,
    no_server: bool,
) -> Result<Option<(fsutil::TempFile, String, PathBuf)>> {
    let base = status_copy_base(status);
    let mut src = match std::fs::File::open(status) {
        Ok(f) => f,
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io(status, e)
                .doing("cannot read the status file")
                .advice("nothing was backed up; fix the cause and run again"))
        }
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
        Error::io(dir, e)
            .doing("cannot create status_file_backup_dir")
            .advice("nothing was backed up")
    })?;
    let mut tmp = fsutil::TempFile::beside(&dir.join(&base)).map_err(|e| {
        Error::io(dir, e)
            .doing("cannot write into status_file_backup_dir")
            .advice("nothing was backed up")
    })?;
    std::io::copy(&mut src, tmp.file()).map_err(|e| {
        Error::io(status, e)
            .doing(format!(
                "cannot copy into {} the status file",
                dir.display()
            ))
            .advice("nothing was backed up")
    })?;
    Ok(Some((tmp, base, dir.to_path_buf())))
}

/// The newest second a status-file copy in `dir` is named for.
fn newest_status_copy(dir: &Path, status: &Path) -> Result<Option<Stamp>> {
    let prefix = format!("{}.", status_copy_base(status));
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(dir, e).doing("cannot list")),
    };
    let mut newest = None;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(dir, e).doing("cannot list"))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if let Some(st) = name.strip_prefix(&prefix).and_then(Stamp::parse) {
            newest = newest.max(Some(st));
        }
    }
    Ok(newest)
}

/// The file name status-file copies are named after.
fn status_copy_base(status: &Path) -> String {
    status
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tidstorage.tid".into())
}

fn prune_status_copies(dir: &Path, status: &Path, before: Stamp) -> Result<usize> {
    let prefix = format!("{}.", status_copy_base(status));
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        // No copy was ever made.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, e).doing("cannot list")),
    };
    let mut n = 0;
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        let Some(st) = name.strip_prefix(&prefix).and_then(Stamp::parse) else {
            continue;
        };
        if st < before {
            std::fs::remove_file(ent.path())
                .map_err(|e| Error::io(ent.path(), e).doing("cannot remove"))?;
            n += 1;
        }
    }
    Ok(n)
}
