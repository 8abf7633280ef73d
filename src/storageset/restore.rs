//! A restore run: rebuild every selected Data.fs from its repository as of
//! a date, cut at the coherent point (SPEC §6).
//!
//! Two phases, so a failure never leaves a mixed set: first every storage
//! is rebuilt into a temporary file beside its target (chain checked
//! against the `.dat`: order, contiguity, sizes, md5s), cut with the same
//! rules as `cut` ([`DataFs::coherent_cut`]) and indexed; only when all
//! succeeded is each one moved into place (the replaced file kept as
//! `Data.fs.before-restore-<time>`, its index beside it), then its fresh
//! `Data.fs.index` written. A check stops after the first phase and
//! compares with the live files; [`verify`] only reads repositories.
//!
//! The point comes from the run manifests (`<RUN>.tidstorage.json`, one per
//! repository, all from the same run), from a status file (`--tid-log`),
//! or nowhere (`--no-cut`, repozo's behaviour).
//!
//! Must not: delete or truncate an existing Data.fs, or write while a ZEO
//! server holds the target's lock.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::blobs::{self as blob_step, Planned};
use super::job::StorageJob;
use super::{point, standby, Error, ErrorKind, Result};
use crate::config::{Config, StorageConfig};
use crate::datafs::index::{index_for_prefix, FsIndex};
use crate::datafs::DataFs;
use crate::fsutil::{self, sibling, DataFsLock, Holder, LockError};
use crate::progress::{self, Progress};
use crate::repozo::chain::Chain;
use crate::repozo::manifest::read_manifest;
use crate::repozo::{self, timestamps, Repository, Stamp};
use crate::tid::Tid;

/// What the caller asks of a restore (the flags).
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// As of this date (repozo's format); `None`: the timestamp file's last
    /// run, else now.
    pub date: Option<String>,
    /// Only these configured storages (empty: all).
    pub storages: Vec<String>,
    /// Cut at this status file's last point instead of the manifests'.
    pub tid_log: Option<PathBuf>,
    pub lenient: bool,
    pub no_cut: bool,
    pub force: bool,
    pub output_dir: Option<PathBuf>,
    /// Build and compare with the live files; change nothing.
    pub check: bool,
    /// Append to outputs that are a prefix of the chain (see
    /// [`super::standby`]); the rest are restored in full, replaced as
    /// with `force`.
    pub incremental: bool,
    /// With `incremental`: check only the last chunk an unchanged output
    /// covers.
    pub quick: bool,
    /// Cut at a status file's point itself, not at the exact cut above it.
    pub at_point: bool,
    pub quiet: bool,
}

/// One storage put in place.
#[derive(Debug)]
pub struct Installed {
    pub storage: String,
    pub target: PathBuf,
    pub size: u64,
    /// The TID it was cut at (None: not cut).
    pub tid: Option<Tid>,
    pub removed: u64,
    pub last_tid: Option<Tid>,
    /// How many repository files the chain had.
    pub files: usize,
    pub repository: PathBuf,
    /// Where the replaced file is kept.
    pub kept: Option<PathBuf>,
    /// With `incremental`: what was appended, or why it was restored in full.
    pub how: How,
    /// Its blob directory, restored at the same TID.
    pub blobs: Option<BlobsInstalled>,
    pub notes: Vec<String>,
}

/// A storage's blob directory put in place with its Data.fs.
#[derive(Debug)]
pub struct BlobsInstalled {
    pub target: PathBuf,
    /// Files and bytes the directory holds at the restore's TID.
    pub files: u64,
    pub bytes: u64,
    /// Files an incremental restore added (None: built whole, or present).
    pub added: Option<u64>,
    /// It already held this result (a rerun after a failed last step).
    pub present: bool,
    /// Where the replaced directory is kept.
    pub kept: Option<PathBuf>,
}

/// How a storage was restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    /// Rebuilt whole (the default).
    Full,
    /// `incremental` found no prefix to extend, for this reason.
    FullBecause(String),
    /// `incremental`: bytes `from..size` appended after checking `checked`
    /// bytes of the existing prefix (`quick`: its last chunk only).
    Appended {
        from: u64,
        checked: u64,
        quick: bool,
    },
}

/// What [`run`] did.
#[derive(Debug)]
pub enum Outcome {
    /// Every storage was built; `installed` were put in place, `failed`
    /// could not be (the others were).
    Installed {
        installed: Vec<Installed>,
        failed: Vec<Error>,
    },
    /// `check`: each storage's restored bytes against its live file.
    Checked(Vec<Compared>),
}

/// A check's verdict for one storage.
#[derive(Debug)]
pub struct Compared {
    pub storage: String,
    pub live: PathBuf,
    pub size: u64,
    /// Ok(None): equal; Ok(Some(why)): differs; Err: could not compare.
    pub verdict: std::result::Result<Option<String>, Error>,
    /// The live blob directory against the run's, at the same TID.
    pub blobs: Option<BlobVerdict>,
}

/// One storage on its way back.
struct Job<'a> {
    job: StorageJob<'a>,
    target: PathBuf,
    /// Where its blob directory goes (the live one with `check`).
    blob_target: Option<PathBuf>,
    tid: Option<Tid>,
    /// The manifest's expectation: (its chain, its cut position).
    expect: Option<(Vec<String>, u64)>,
    /// `tid` is a status file's point (a no-server run, `--tid-log`): a
    /// floor above which the exact cut keeps what the tags show complete.
    floor_only: bool,
    /// Directories made for `target` (deepest first), removed again if
    /// nothing is restored.
    created: Vec<PathBuf>,
    /// The size of a target that exists without `--force`: it must equal
    /// the restored result (then the restore only finishes), or nothing
    /// is restored.
    existing: Option<u64>,
}

/// A storage rebuilt into a temporary file.
struct Built<'a> {
    job: Job<'a>,
    /// The restored file (taken when it is renamed into place).
    tmp: Option<fsutil::TempFile>,
    size: u64,
    chain: Chain,
    removed: u64,
    last_tid: Option<Tid>,
    index: Option<FsIndex>,
    /// The blob directory, built beside its target (with its run, for
    /// `check`).
    blobs: Option<(PathBuf, Planned)>,
    blob_run: Option<crate::blobs::Manifest>,
    /// What placing the blob directory did.
    blobs_report: Option<BlobsInstalled>,
    notes: Vec<String>,
}

/// Restores (or with `check`, compares) every selected storage.
pub fn run(c: &Config, o: &RestoreOptions) -> Result<Outcome> {
    let selected = select(c, &o.storages)?;
    let date = match &o.date {
        Some(d) => d.clone(),
        None => match c.backup.timestamp_file.as_deref().map(timestamps::last) {
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Some(s))) => s.text(),
            // repozo's default: a repository it wrote has no timestamp file.
            _ => {
                let now = Stamp::now().text();
                log::info!("no backup run in a timestamp file: restoring as of now ({now})");
                now
            }
        },
    };

    // Plan every storage before writing anything.
    let mut errors = Vec::new();
    let mut jobs = Vec::new();
    for s in &selected {
        match plan(s, c, o) {
            Ok(j) => jobs.push(j),
            Err(e) => errors.push(e.storage(&s.id)),
        }
    }
    if errors.is_empty() && !o.no_cut {
        if let Err(e) = assign_point(&mut jobs, o, &date) {
            match *e.kind {
                ErrorKind::Storages(problems) => errors.extend(problems),
                kind => errors.push(Error {
                    kind: Box::new(kind),
                    ..e
                }),
            }
        }
    }
    for j in &jobs {
        let expected = j.expect.as_ref().map(|(_, pos)| *pos);
        if let (Some(size), Some(pos)) = (j.existing, expected) {
            if size != pos {
                errors.push(exists_refusal(&j.target).storage(&j.job.cfg.id));
            }
        }
    }
    // Directories made for the outputs go again if nothing is restored.
    let mut created: Vec<PathBuf> = jobs.iter().flat_map(|j| j.created.clone()).collect();
    // Deepest first: storages may share the directories made above theirs.
    created.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    let remove_created = || {
        for d in &created {
            // Only empty ones: remove_dir refuses anything else.
            let _ = std::fs::remove_dir(d);
        }
    };
    if !errors.is_empty() {
        remove_created();
        return Err(Error::new(ErrorKind::Storages(errors)).doing("nothing was restored"));
    }

    // Incremental: extend the outputs that are a prefix of their chain
    // (hidden until every storage is ready), restore the others in full.
    let mut appended: Vec<(standby::Appended, How, Chain, Job, Option<StandbyBlobs>)> = Vec::new();
    let mut full_because: std::collections::HashMap<String, String> = Default::default();
    // Appended outputs whose point is a floor: cut once the exact cut over
    // every storage is known.
    let mut uncut: Vec<String> = Vec::new();
    if o.incremental {
        let mut rest = Vec::new();
        for j in jobs {
            let id = j.job.cfg.id.clone();
            let r = chain_for(&j, &date).and_then(|chain| {
                let v = standby::check(&j.target, &j.job.repo, &chain, j.tid, o.quick)?;
                Ok((chain, v))
            });
            match r {
                Ok((
                    chain,
                    standby::Verdict::Resume {
                        from,
                        checked,
                        quick,
                    },
                )) => {
                    let pb = progress::bar(chain.end() - from, format!("{id} append"), o.quiet);
                    let how = How::Appended {
                        from,
                        checked,
                        quick,
                    };
                    if j.floor_only && !o.at_point {
                        match standby::append_uncut(&j.target, &j.job.repo, &chain, from, &pb) {
                            Ok(a) => {
                                uncut.push(id.clone());
                                appended.push((a, how, chain, j, None));
                            }
                            Err(e) => errors.push(e.storage(&id)),
                        }
                        pb.finish_and_clear();
                        continue;
                    }
                    match standby::append(&j.target, &j.job.repo, &chain, from, j.tid, &pb) {
                        Ok(a) => match standby_blobs(&j, &chain, blob_tid(j.tid, a.last_tid)) {
                            Ok(b) => appended.push((a, how, chain, j, b)),
                            Err(e) => {
                                if let Err(u) = a.undo() {
                                    log::error!("{}: {u}", a.target.display());
                                }
                                errors.push(e.storage(&id));
                            }
                        },
                        Err(e) => errors.push(e.storage(&id)),
                    }
                    pb.finish_and_clear();
                }
                Ok((_, standby::Verdict::Missing)) => rest.push(j),
                Ok((_, standby::Verdict::Full(why))) => {
                    log::info!("storage {id}: full restore because: {why}");
                    full_because.insert(id, why);
                    rest.push(j);
                }
                Err(e) => errors.push(e.storage(&id)),
            }
        }
        jobs = rest;
    }
    // Appended outputs go back as they were if the run does not finish.
    let undo_appended =
        |appended: &[(standby::Appended, How, Chain, Job, Option<StandbyBlobs>)]| {
            for (a, ..) in appended {
                if let Err(e) = a.undo() {
                    log::error!(
                        "{}: the appended bytes (hidden) could not be removed ({e}); the same \
                     restore finishes it",
                        a.target.display()
                    );
                }
            }
        };

    let mut streamed = Vec::new();
    for j in jobs {
        let id = j.job.cfg.id.clone();
        match stream(j, &date, o.quiet) {
            Ok(s) => streamed.push(s),
            Err(e) => errors.push(e.storage(&id)),
        }
    }
    // A status file's point is a floor: above it, the exact cut over the
    // restored files (a no-server backup, storages backed up on several
    // hosts) keeps what their tags show complete.
    let exact = if o.at_point || !streamed.iter().any(|s| s.job.floor_only) && uncut.is_empty() {
        None
    } else {
        exact_on_restored(&streamed, &appended)
    };
    let exact_tid =
        |id: &str, floor: Option<Tid>| match (floor, exact.as_ref().and_then(|p| p.get(id))) {
            (Some(t), Some(sp)) => Some(sp.cut_tid.filter(|e| *e > t).unwrap_or(t)),
            (t, _) => t,
        };
    for (a, _, chain, j, b) in appended.iter_mut() {
        let id = j.job.cfg.id.clone();
        if !uncut.contains(&id) {
            continue;
        }
        let tid = exact_tid(&id, j.tid);
        let r = a.cut_at(tid).and_then(|()| {
            j.tid = tid;
            standby_blobs(j, chain, blob_tid(tid, a.last_tid))
        });
        match r {
            Ok(blobs) => *b = blobs,
            Err(e) => errors.push(e.storage(&id)),
        }
    }
    let mut built = Vec::new();
    for s in streamed {
        let id = s.job.job.cfg.id.clone();
        let tid = match s.job.floor_only {
            true => exact_tid(&id, s.job.tid),
            false => s.job.tid,
        };
        match finish(s, tid).and_then(|b| with_blobs(b, o)) {
            Ok(b) => built.push(b),
            Err(e) => errors.push(e.storage(&id)),
        }
    }
    if !errors.is_empty() {
        drop(built);
        undo_appended(&appended);
        remove_created();
        return Err(Error::new(ErrorKind::Storages(errors))
            .doing("nothing was restored (the temporary files are removed)"));
    }

    if o.check {
        return Ok(Outcome::Checked(
            built
                .iter()
                .map(|b| Compared {
                    blobs: compare_blobs(b),
                    ..compare(b)
                })
                .collect(),
        ));
    }

    // An existing target (no --force) must already be this result.
    for b in &built {
        if b.job.existing.is_some() {
            match compare(b).verdict {
                Ok(None) if b.job.existing == Some(b.size) => {}
                Ok(_) => errors.push(exists_refusal(&b.job.target).storage(&b.job.job.cfg.id)),
                Err(e) => errors.push(e.storage(&b.job.job.cfg.id)),
            }
        }
    }
    if !errors.is_empty() {
        drop(built);
        remove_created();
        return Err(Error::new(ErrorKind::Storages(errors))
            .doing("nothing was restored (the temporary files are removed)"));
    }

    let when = Stamp::now().text();
    let (mut installed, mut failed) = match install_all(built, &when) {
        Ok(r) => r,
        Err(e) => {
            undo_appended(&appended);
            return Err(e);
        }
    };
    for i in &mut installed {
        if let Some(why) = full_because.remove(&i.storage) {
            i.how = How::FullBecause(why);
        }
    }
    // Now the appended ones become visible, one status byte each.
    for (a, how, chain, j, b) in appended {
        let id = j.job.cfg.id.clone();
        // The blob files first: files above the old end stay invisible to
        // ZODB until the Data.fs grows.
        let blobs = match b.map(install_standby_blobs).transpose() {
            Ok(b) => b,
            Err(e) => {
                failed.push(e.storage(&id));
                continue;
            }
        };
        match standby::publish(&a, &chain) {
            Ok(notes) => installed.push(Installed {
                blobs,
                storage: id,
                target: a.target.clone(),
                size: a.end,
                tid: j.tid,
                removed: a.removed,
                last_tid: a.last_tid,
                files: chain.links.len(),
                repository: j.job.repo.dir.clone(),
                kept: None,
                how,
                notes,
            }),
            Err(e) => failed.push(e.storage(&id)),
        }
    }
    Ok(Outcome::Installed { installed, failed })
}

/// The exact cut over the restored (not yet cut) files and appended
/// standbys, above their status-file floors; `None` (with a warning) when
/// it cannot be computed.
fn exact_on_restored(
    streamed: &[Streamed],
    appended: &[(standby::Appended, How, Chain, Job, Option<StandbyBlobs>)],
) -> Option<crate::exactcut::Plan> {
    use crate::exactcut::{FloorSpec, TagSummary};
    let full = streamed.iter().filter_map(|s| {
        let id = s.job.job.cfg.id.as_str();
        Some((
            id,
            TagSummary::read_file(s.tmp.path(), id, FloorSpec::Tid(s.job.tid?)),
        ))
    });
    // An appended standby reads as it will once published.
    let standbys = appended.iter().filter_map(|(a, _, _, j, _)| {
        let id = j.job.cfg.id.as_str();
        let spec = FloorSpec::Tid(j.tid?);
        Some((
            id,
            a.open_unhidden()
                .and_then(|df| TagSummary::read(&df, id, spec)),
        ))
    });
    let reads = full.chain(standbys);
    point::exact_or_point(reads, "cutting at the status file's point")
}

/// The chain a restore as of `date` uses for `j`, checked against its `.dat`.
fn chain_for(j: &Job, date: &str) -> Result<Chain> {
    let repo = &j.job.repo;
    let files = repo.find_chain(Some(date))?;
    if files.is_empty() {
        return Err(Error::refused(format!(
            "no full backup in {} as of {date}",
            repo.dir.display()
        )));
    }
    Ok(repo.checked_chain(files)?)
}

fn exists_refusal(target: &Path) -> Error {
    Error::refused(format!(
        "{} exists; restore with --force to replace it (it is kept as \
         {}.before-restore-<time>), or use --output-dir",
        target.display(),
        target.display()
    ))
}

fn select<'a>(c: &'a Config, ids: &[String]) -> Result<Vec<&'a StorageConfig>> {
    let selected = c
        .select_storages(ids)
        .map_err(|e| Error::config(e.message))?;
    if selected.is_empty() {
        return Err(Error::config(format!(
            "no storage to restore: the {} has no [[storage]]",
            c.describe_source()
        )));
    }
    Ok(selected)
}

/// Where `data_fs` is restored: itself, or its path recreated under
/// `output_dir`.
pub fn target_for(data_fs: &Path, output_dir: Option<&Path>) -> PathBuf {
    match output_dir {
        None => data_fs.to_path_buf(),
        Some(dir) => {
            let rel: PathBuf = crate::config::normalize(data_fs)
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .collect();
            dir.join(rel)
        }
    }
}

fn plan<'a>(s: &'a StorageConfig, c: &Config, o: &RestoreOptions) -> Result<Job<'a>> {
    let job = StorageJob::prepare(s, c)?;
    let mut created = Vec::new();
    let mut existing = None;
    let target = if o.check {
        job.data_fs.clone()
    } else {
        let t = target_for(&job.data_fs, o.output_dir.as_deref());
        fsutil::resolve(&t).map_err(|e| Error::io(&t, e).doing("cannot resolve"))?
    };
    if !o.check {
        match DataFsLock::probe(&target) {
            Ok(Some(LockError::Held {
                by: Holder::Tidstorage(pid),
                ..
            })) => {
                return Err(Error::refused(format!(
                    "{} is locked by another tidstorage command (pid {pid}); wait for it",
                    target.display()
                )))
            }
            Ok(Some(held)) => {
                let pid = match &held {
                    LockError::Held {
                        by: Holder::Zodb(Some(pid)),
                        ..
                    } => format!(" (pid {pid})"),
                    _ => String::new(),
                };
                return Err(Error::refused(format!(
                    "{} is locked by a running ZEO server or ZODB process{pid}; stop it before \
                     restoring",
                    target.display()
                )));
            }
            Ok(None) => {}
            Err(e) => return Err(Error::io(&target, e).doing("cannot check the lock of")),
        }
        let exists =
            fsutil::exists(&target).map_err(|e| Error::io(&target, e).doing("cannot look for"))?;
        if exists && !o.force && !o.incremental {
            // Refused unless it already holds exactly what this restore
            // gives (a restore whose last step failed): then the rerun
            // only finishes the job. Checked once the result is built.
            existing = Some(
                std::fs::metadata(&target)
                    .map_err(|e| Error::io(&target, e).doing("cannot stat"))?
                    .len(),
            );
        }
        if let Some(parent) = target.parent() {
            created = parent
                .ancestors()
                .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
                .map(Path::to_path_buf)
                .collect();
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(parent, e).doing("cannot create"))?;
        }
    }
    let blob_target = match &s.blob_dir {
        None => None,
        Some(dir) if o.check => Some(dir.clone()),
        Some(dir) => {
            let t = target_for(dir, o.output_dir.as_deref());
            Some(fsutil::resolve(&t).map_err(|e| Error::io(&t, e).doing("cannot resolve"))?)
        }
    };
    Ok(Job {
        job,
        target,
        blob_target,
        tid: None,
        expect: None,
        floor_only: false,
        created,
        existing,
    })
}

/// Gives every job the TID to cut at: from `--tid-log`, or from the newest
/// run manifest `<= date`, which must be the same run for every storage.
fn assign_point(jobs: &mut [Job], o: &RestoreOptions, date: &str) -> Result<()> {
    if let Some(log_path) = &o.tid_log {
        let point = point::from_status_file(log_path, o.lenient)?;
        for j in jobs.iter_mut() {
            let id = &j.job.cfg.id;
            j.floor_only = true;
            j.tid = Some(*point.get(id).ok_or_else(|| {
                Error::refused(format!(
                    "status file {} has no TID for storage {id}; nothing to cut it at \
                     (use --no-cut to restore without cutting)",
                    log_path.display(),
                ))
            })?);
        }
        return Ok(());
    }
    let mut run: Option<Stamp> = None;
    let mut problems = Vec::new();
    let mut status_copy: Option<String> = None;
    for j in jobs.iter_mut() {
        let id = j.job.cfg.id.clone();
        let repo = &j.job.repo;
        match repo.find_manifest(date)? {
            None if repo.find_chain(Some(date))?.is_empty() => {
                let files = repo.list()?;
                problems.push(
                    Error::refused(match files.first() {
                        Some(oldest) => format!(
                            "no backup in {} as of {date}: its oldest is {}; give a later --date",
                            repo.dir.display(),
                            oldest.name
                        ),
                        None => format!(
                            "no backup in {}: the repository is empty; run `tidstorage \
                         backup` first, or check [[storage]] repository",
                            repo.dir.display()
                        ),
                    })
                    .storage(&id),
                )
            }
            None => problems.push(
                Error::refused(format!(
                    "no tidstorage backup manifest in {} as of {date} (a repository \
                     written by repozo alone?): restore with --tid-log FILE or --no-cut",
                    repo.dir.display()
                ))
                .storage(&id),
            ),
            Some((st, m)) => {
                if m.storage != id {
                    problems.push(
                        Error::refused(format!(
                            "the manifest {} is for storage {:?}: is the repository \
                             configured for the right storage?",
                            repo.manifest_path(st).display(),
                            m.storage
                        ))
                        .storage(&id),
                    );
                    continue;
                }
                match run {
                    None => run = Some(st),
                    Some(r) if r != st => problems.push(
                        Error::refused(format!(
                            "its newest backup as of {date} is from run {st}, not {r} like \
                             the others': cutting runs of different times is not coherent; \
                             restore --date {} (the older run) or use --tid-log",
                            r.min(st)
                        ))
                        .storage(&id),
                    ),
                    Some(_) => {}
                }
                match m.tid {
                    Some(t) => {
                        j.tid = Some(Tid(t));
                        j.expect = Some((m.chain.clone(), m.cut_position));
                    }
                    None => match &m.status_file_copy {
                        Some(p) => status_copy = Some(p.clone()),
                        None => problems.push(
                            Error::refused(format!(
                                "run {st} was a --no-server backup without a status \
                                 file copy: restore with --tid-log FILE or --no-cut"
                            ))
                            .storage(&id),
                        ),
                    },
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(Error::new(ErrorKind::Storages(problems)));
    }
    if let Some(copy) = status_copy {
        // A --no-server run: its status file copy was taken before the
        // Data.fs files were read, so its last point is covered by them.
        let point = point::from_status_file(Path::new(&copy), false)?;
        for j in jobs.iter_mut().filter(|j| j.tid.is_none()) {
            let id = &j.job.cfg.id;
            j.floor_only = true;
            j.tid = Some(*point.get(id).ok_or_else(|| {
                Error::refused(format!(
                    "the status file copy {copy} has no TID for storage {id}; restore with \
                     --tid-log FILE or --no-cut",
                ))
            })?);
        }
    }
    Ok(())
}

/// A storage's chain streamed into a temporary file, not cut yet.
struct Streamed<'a> {
    job: Job<'a>,
    tmp: fsutil::TempFile,
    size: u64,
    chain: Chain,
}

/// Rebuilds the chain of `j` into a temporary file beside its target.
fn stream<'a>(j: Job<'a>, date: &str, quiet: bool) -> Result<Streamed<'a>> {
    let repo = &j.job.repo;
    let chain = chain_for(&j, date)?;
    let mut tmp = fsutil::TempFile::beside(&j.target)
        .map_err(|e| Error::io(&j.target, e).doing("cannot create a temporary file beside"))?;
    let pb = progress::bar(chain.end(), format!("{} restore", j.job.cfg.id), quiet);
    let tmp_path = tmp.path().to_path_buf();
    let mut out = crate::repozo::copy::WritebackFile::new(tmp.file(), 0);
    let size = repo
        .stream_chain(&chain, &mut out, &tmp_path, &pb as &dyn Progress)
        .map_err(|e| {
            Error::from(e).advice(format!("nothing was written under {}", j.target.display()))
        })?;
    pb.finish_and_clear();
    Ok(Streamed {
        job: j,
        tmp,
        size,
        chain,
    })
}

/// Cuts a streamed storage at `tid` (None: not cut) and indexes it.
fn finish(st: Streamed, tid: Option<Tid>) -> Result<Built> {
    let Streamed {
        job: j,
        mut tmp,
        size,
        chain,
    } = st;
    let repo = &j.job.repo;
    let mut notes = Vec::new();
    let df = DataFs::open(tmp.path())
        .map_err(|e| Error::from(e).doing("the restored data is not a Data.fs"))?;
    let (position, last_tid, removed) = match tid {
        None => {
            let v = df.valid_prefix()?;
            if let Some(d) = &v.damage {
                notes.push(format!(
                    "the restored file is damaged after offset {}: {d}",
                    v.end
                ));
            }
            (size, v.last_tid, 0)
        }
        Some(tid) => {
            let cc = df.coherent_cut_checked(tid)?;
            if let Some(why) = cc.below_pack_refusal(j.target.as_ref(), tid) {
                return Err(Error::refused(why));
            }
            if cc.ends_before_tid {
                return Err(Error::refused(format!(
                    "the repository holds this storage only up to TID {}, before the coherent \
                     TID {}: transactions are missing; restore an earlier date, or --no-cut",
                    cc.cut.last_kept_tid.map(|t| t.hex()).unwrap_or_default(),
                    tid.hex()
                )));
            }
            if let (Some((mchain, mpos)), true) = (&j.expect, Some(tid) == j.tid) {
                let names = chain.names();
                if names.starts_with(mchain) && cc.cut.position != *mpos {
                    return Err(Error::refused(format!(
                        "the cut position for TID {} is {}, but the backup recorded {}: the \
                         repository does not hold what the backup wrote",
                        tid.hex(),
                        cc.cut.position,
                        mpos
                    )));
                }
            }
            notes.extend(cc.notes);
            (
                cc.cut.position,
                cc.cut.last_kept_tid,
                size - cc.cut.position,
            )
        }
    };
    // The index, before truncating: the chain's last .index covers the
    // whole restored file and is fixed up from the removed part.
    let existing = chain
        .links
        .last()
        .and_then(|l| FsIndex::load(&repo.index_path(&l.file)).ok());
    let index = match index_for_prefix(&df, position, existing, &mut |_, _| {}) {
        Ok(pi) => Some(pi.index),
        Err(e) => {
            notes.push(format!(
                "no Data.fs.index written ({e}); ZODB rebuilds it at open"
            ));
            None
        }
    };
    drop(df);
    if position < size {
        tmp.file()
            .set_len(position)
            .map_err(|e| Error::io(tmp.path(), e).doing("cannot cut the temporary file"))?;
    }
    let mut job = j;
    job.tid = tid;
    Ok(Built {
        job,
        tmp: Some(tmp),
        size: position,
        chain,
        removed,
        last_tid,
        index,
        blobs: None,
        blob_run: None,
        blobs_report: None,
        notes,
    })
}

/// A standby's blob directory on its way to the run's TID.
enum StandbyBlobs {
    /// The files it lacked were added (it held nothing else).
    CaughtUp {
        target: PathBuf,
        added: blob_step::CaughtUp,
        files: u64,
        bytes: u64,
    },
    /// It held something else: rebuilt whole beside it.
    Rebuilt {
        target: PathBuf,
        planned: Planned,
        files: u64,
        bytes: u64,
    },
}

/// Brings the blob directory of an appended standby to run `upto`: only
/// the new files when it holds exactly an earlier state of the run.
fn standby_blobs(j: &Job, chain: &Chain, upto: Tid) -> Result<Option<StandbyBlobs>> {
    let Some(target) = &j.blob_target else {
        return Ok(None);
    };
    let repo = &j.job.repo.dir;
    let last = &chain
        .links
        .last()
        .expect("a chain has a full backup")
        .file
        .name;
    let m = blob_step::run_for(repo, last)?;
    let (files, bytes) = m.totals_upto(upto);
    Ok(Some(match blob_step::catch_up(repo, &m, upto, target)? {
        Some(added) => StandbyBlobs::CaughtUp {
            target: target.clone(),
            added,
            files,
            bytes,
        },
        None => {
            log::info!(
                "storage {}: blob directory {} rebuilt whole: it holds files the run does not",
                j.job.cfg.id,
                target.display()
            );
            StandbyBlobs::Rebuilt {
                target: target.clone(),
                planned: blob_step::build(repo, &m, upto, target, true)
                    .map_err(|e| e.doing("cannot restore the blob directory"))?,
                files,
                bytes,
            }
        }
    }))
}

fn install_standby_blobs(b: StandbyBlobs) -> Result<BlobsInstalled> {
    match b {
        StandbyBlobs::CaughtUp {
            target,
            added,
            files,
            bytes,
        } => Ok(BlobsInstalled {
            target,
            files,
            bytes,
            added: Some(added.added),
            present: false,
            kept: None,
        }),
        StandbyBlobs::Rebuilt {
            target,
            planned,
            files,
            bytes,
        } => install_planned(target, planned, (files, bytes), &mut None),
    }
}

/// Puts a planned blob directory in place (noting in `placed` as soon as
/// it is), or reports the one already there; `totals`: the run's files and
/// bytes at the restore's TID.
fn install_planned(
    target: PathBuf,
    planned: Planned,
    (files, bytes): (u64, u64),
    placed: &mut Option<(PathBuf, Option<PathBuf>)>,
) -> Result<BlobsInstalled> {
    match planned {
        Planned::Built(built) => {
            let r = built
                .install_noting(placed)
                .map_err(|e| Error::from(e).doing("cannot put the blob directory in place"))?;
            Ok(BlobsInstalled {
                target: r.target,
                files: r.files,
                bytes: r.bytes,
                added: None,
                present: false,
                kept: r.kept_aside,
            })
        }
        Planned::Present => Ok(BlobsInstalled {
            target,
            files,
            bytes,
            added: None,
            present: true,
            kept: None,
        }),
    }
}

/// The TID a restored storage's blob directory is cut at: the Data.fs's
/// (its last TID when it is not cut).
fn blob_tid(tid: Option<Tid>, last_tid: Option<Tid>) -> Tid {
    tid.or(last_tid).unwrap_or(Tid(0))
}

/// Reads the blob run of a built storage's chain and, unless `check`,
/// builds its blob directory beside the target.
fn with_blobs<'a>(mut b: Built<'a>, o: &RestoreOptions) -> Result<Built<'a>> {
    let Some(target) = b.job.blob_target.clone() else {
        return Ok(b);
    };
    let last = &b
        .chain
        .links
        .last()
        .expect("a chain has a full backup")
        .file
        .name;
    let m = blob_step::run_for(&b.job.job.repo.dir, last)?;
    if !o.check {
        let upto = blob_tid(b.job.tid, b.last_tid);
        let planned = blob_step::build(
            &b.job.job.repo.dir,
            &m,
            upto,
            &target,
            o.force || o.incremental,
        )
        .map_err(|e| e.doing("cannot restore the blob directory"))?;
        b.blobs = Some((target, planned));
    }
    b.blob_run = Some(m);
    Ok(b)
}

/// What was done to one target while putting the set in place, so that
/// a failure on a later storage can undo it.
struct Placed {
    target: PathBuf,
    /// The old file's second name (a hard link made before the rename).
    kept: Option<PathBuf>,
    /// Where the old index was moved.
    kept_index: Option<PathBuf>,
    /// The new file was renamed over the target.
    renamed: bool,
    /// The blob directory put in place: its target and where the one it
    /// replaced went.
    blobs: Option<(PathBuf, Option<PathBuf>)>,
}

/// A free name for a kept file: `base`, else `base.1`, `base.2`, ... (a
/// rerun within the same second must not be blocked by the first run's).
fn free_name(base: PathBuf) -> Result<PathBuf> {
    let mut candidate = base.clone();
    for n in 1..1000 {
        if !fsutil::exists(&candidate)
            .map_err(|e| Error::io(&candidate, e).doing("cannot look for"))?
        {
            return Ok(candidate);
        }
        candidate = sibling(&base, &format!(".{n}"));
    }
    Err(Error::refused(format!(
        "no free name for {}: remove old .before-restore files",
        base.display()
    )))
}

/// Keeps the old file and index of `b`'s target and renames the new file
/// over it, recording each step in `placed` (even when a later step fails).
fn place(b: &mut Built, when: &str, placed: &mut Placed) -> Result<()> {
    let target = b.job.target.clone();
    let index_path = sibling(&target, ".index");
    if b.job.existing.is_some() {
        // Already this result (checked): nothing to replace.
        return place_blobs(b, placed);
    }
    if fsutil::exists(&target).map_err(|e| Error::io(&target, e).doing("cannot look for"))? {
        let old = free_name(sibling(&target, &format!(".before-restore-{when}")))?;
        std::fs::hard_link(&target, &old).map_err(|e| {
            Error::io(&target, e).doing(format!("cannot keep as {} the old", old.display()))
        })?;
        placed.kept = Some(old);
        // The replaced file's owner and mode carry over to the new one.
        fsutil::copy_owner_and_mode(&target, b.tmp_file().file()).map_err(|e| {
            Error::io(&target, e).doing("cannot give the new file the owner and mode of")
        })?;
    }
    // The old index describes the old file: move it away before the new
    // file arrives (a crash in between leaves no index: ZODB rebuilds).
    if fsutil::exists(&index_path)
        .map_err(|e| Error::io(&index_path, e).doing("cannot look for"))?
    {
        let dest = match &placed.kept {
            Some(old) => free_name(sibling(old, ".index"))?,
            None => free_name(sibling(&index_path, &format!(".before-restore-{when}")))?,
        };
        std::fs::rename(&index_path, &dest)
            .map_err(|e| Error::io(&index_path, e).doing("cannot move aside the old"))?;
        placed.kept_index = Some(dest);
    }
    let tmp = b.tmp.take().expect("placed once");
    match tmp.persist(&target) {
        Ok(()) => placed.renamed = true,
        Err(e) => {
            placed.renamed = fsutil::in_place(&e);
            return Err(Error::io(&target, e).doing("cannot put in place"));
        }
    }
    place_blobs(b, placed)
}

/// Puts the built blob directory of `b` in place, after its Data.fs.
fn place_blobs(b: &mut Built, placed: &mut Placed) -> Result<()> {
    if let Some((target, planned)) = b.blobs.take() {
        let m = b.blob_run.as_ref().expect("read with the plan");
        let totals = m.totals_upto(blob_tid(b.job.tid, b.last_tid));
        b.blobs_report = Some(install_planned(target, planned, totals, &mut placed.blobs)?);
    }
    Ok(())
}

/// Undoes what [`place`] did: the old file back under its name (or the new
/// one removed when there was none), the old index back. Returns what could
/// not be undone.
fn undo(p: &Placed) -> Vec<String> {
    let mut left = Vec::new();
    if p.renamed {
        let r = match &p.kept {
            Some(old) => std::fs::rename(old, &p.target),
            None => std::fs::remove_file(&p.target),
        };
        if let Err(e) = r {
            left.push(format!("{} is the NEW file ({e})", p.target.display()));
        }
    } else if let Some(old) = &p.kept {
        // The old file is still in place: its extra name goes.
        let _ = std::fs::remove_file(old);
    }
    if let Some(ix) = &p.kept_index {
        if let Err(e) = std::fs::rename(ix, sibling(&p.target, ".index")) {
            left.push(format!("the old index is at {} ({e})", ix.display()));
        }
    }
    let _ = fsutil::sync_parent_dir(&p.target);
    if let Some((dir, kept)) = &p.blobs {
        // The new directory is this restore's own copy of the repository:
        // removing it loses nothing.
        let gone = std::fs::remove_dir_all(dir);
        let back = match (&gone, kept) {
            (Ok(()), Some(old)) => std::fs::rename(old, dir),
            (Ok(()), None) => Ok(()),
            (Err(_), _) => Ok(()),
        };
        if let Err(e) = gone.and(back) {
            left.push(format!(
                "the blob directory {} is the NEW one or missing ({e}){}",
                dir.display(),
                kept.as_ref()
                    .map(|k| format!("; the old one is {}", k.display()))
                    .unwrap_or_default()
            ));
        }
        let _ = fsutil::sync_parent_dir(dir);
    }
    left
}

impl Built<'_> {
    /// The restored file; present until [`place`] renames it.
    fn tmp_file(&mut self) -> &mut fsutil::TempFile {
        self.tmp.as_mut().expect("present until placed")
    }

    fn tmp_file_ref(&self) -> &fsutil::TempFile {
        self.tmp.as_ref().expect("present until placed")
    }
}

/// Puts every built storage in place, all or nothing: when one cannot be,
/// those already placed get their old files back.
/// Returns the storages installed and those whose last steps (index,
/// fsync of an already-present result) failed after every file was placed.
fn install_all(mut built: Vec<Built>, when: &str) -> Result<(Vec<Installed>, Vec<Error>)> {
    let mut placed: Vec<Placed> = Vec::new();
    for b in &mut built {
        let mut p = Placed {
            target: b.job.target.clone(),
            kept: None,
            kept_index: None,
            renamed: false,
            blobs: None,
        };
        let r = place(b, when, &mut p);
        placed.push(p);
        if let Err(e) = r {
            let e = e.storage(&b.job.job.cfg.id);
            let mut left = Vec::new();
            for p in placed.iter().rev() {
                left.extend(undo(p));
            }
            return Err(if left.is_empty() {
                Error::new(ErrorKind::Storages(vec![e]))
                    .doing("nothing was restored (the files already put in place got their old files back)")
            } else {
                Error::refused(format!(
                    "{e}; undoing the storages already restored failed: {}; put the kept \
                     .before-restore files back by hand, or run the restore again with --force",
                    left.join("; ")
                ))
            });
        }
    }
    // Every file is in place: what follows cannot be undone, only reported.
    let mut installed = Vec::new();
    let mut failed = Vec::new();
    for (b, p) in built.into_iter().zip(placed) {
        let id = b.job.job.cfg.id.clone();
        let target = b.job.target.clone();
        let index_path = sibling(&target, ".index");
        let mut notes = Vec::new();
        if b.job.existing.is_some() {
            notes.push("it already held this restore's result: made durable, index checked".into());
            let r = std::fs::File::open(&target)
                .and_then(|f| f.sync_all())
                .and_then(|()| fsutil::sync_parent_dir(&target));
            if let Err(e) = r {
                failed.push(Error::io(&target, e).doing("cannot fsync").storage(&id));
                continue;
            }
        }
        let index_current = b.job.existing.is_some()
            && matches!(FsIndex::read_pos(&index_path), Ok(pos) if pos == b.size);
        if let (Some(ix), false) = (&b.index, index_current) {
            if let Err(e) = ix.save(b.size, &index_path) {
                failed.push(
                    Error::io(&index_path, e)
                        .doing(format!("{} is restored, but cannot write", target.display()))
                        .advice("run the same restore again (without --force) to write it; ZODB rebuilds it at open meanwhile")
                        .storage(&id),
                );
                continue;
            }
        }
        if let Err(e) = standby::write_state(&target, &b.chain) {
            notes.push(format!(
                "the state file {} was not written ({e}): a later restore --incremental \
                 --quick checks the whole prefix",
                standby::state_path(&target).display()
            ));
        }
        notes.extend(b.notes);
        installed.push(Installed {
            storage: id,
            target,
            size: b.size,
            tid: b.job.tid,
            removed: b.removed,
            last_tid: b.last_tid,
            files: b.chain.links.len(),
            repository: b.job.job.repo.dir.clone(),
            kept: p.kept,
            how: How::Full,
            blobs: b.blobs_report,
            notes,
        });
    }
    Ok((installed, failed))
}

/// Compares one restored file with the live one (its prefix).
fn compare(b: &Built) -> Compared {
    let live = &b.job.target;
    Compared {
        storage: b.job.job.cfg.id.clone(),
        live: live.clone(),
        size: b.size,
        verdict: compare_prefix(b.tmp_file_ref().path(), live, b.size)
            .map_err(|e| Error::io(live, e)),
        blobs: None,
    }
}

/// `check`: the live blob directory against the run at the restore's TID.
type BlobVerdict = (
    PathBuf,
    std::result::Result<crate::blobs::CompareReport, Error>,
);

fn compare_blobs(b: &Built) -> Option<BlobVerdict> {
    match (&b.job.blob_target, &b.blob_run) {
        (Some(dir), Some(m)) => Some((
            dir.clone(),
            crate::blobs::compare(m, blob_tid(b.job.tid, b.last_tid), dir, true)
                .map_err(Error::from),
        )),
        _ => None,
    }
}

fn compare_prefix(restored: &Path, live: &Path, len: u64) -> std::io::Result<Option<String>> {
    let live_len = std::fs::metadata(live)?.len();
    if live_len < len {
        return Ok(Some(format!(
            "{} is {live_len} bytes, shorter than the restored {len}",
            live.display()
        )));
    }
    let mut a = std::fs::File::open(restored)?.take(len);
    let mut b = std::fs::File::open(live)?.take(len);
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let n = read_full(&mut a, &mut ba)?;
        if n == 0 {
            return Ok(None);
        }
        let m = read_full(&mut b, &mut bb[..n])?;
        if m != n {
            return Ok(Some(format!("{} changed while compared", live.display())));
        }
        if let Some(i) = (0..n).find(|&i| ba[i] != bb[i]) {
            return Ok(Some(format!(
                "{} differs from the restored data at offset {}",
                live.display(),
                off + i as u64
            )));
        }
        off += n as u64;
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// One repository's `--verify` result.
#[derive(Debug)]
pub struct Verified {
    pub storage: String,
    pub repository: Option<PathBuf>,
    /// The chain check: the problems found and how many files were
    /// checked, or why the repository could not be checked at all.
    pub chain: std::result::Result<(Vec<Error>, usize), Error>,
    /// Manifests that cannot be read.
    pub manifests: Vec<Error>,
    /// With a blob_dir: the newest blob run against the blob records of
    /// the Data.fs its chain rebuilds (the run's stamp and what was found).
    pub blobs: Option<std::result::Result<(String, crate::blobs::VerifyReport), Error>>,
}

impl Verified {
    /// Problems found (an unreadable repository counts as one).
    pub fn problem_count(&self) -> usize {
        let chain = match &self.chain {
            Ok((p, _)) if p.is_empty() => 0,
            _ => 1,
        };
        let blobs = match &self.blobs {
            Some(Ok((_, r))) => r.problems.len(),
            Some(Err(_)) => 1,
            None => 0,
        };
        chain + self.manifests.len() + blobs
    }
}

/// Checks every selected repository (chain contiguity, sizes, md5s unless
/// `quick`, manifests) and writes nothing.
pub fn verify(c: &Config, storages: &[String], quick: bool, quiet: bool) -> Result<Vec<Verified>> {
    let selected = select(c, storages)?;
    let mut out = Vec::new();
    for s in selected {
        let Some(dir) = &s.repository else {
            out.push(Verified {
                storage: s.id.clone(),
                repository: None,
                chain: Err(Error::config(format!(
                    "no repository in the {}",
                    c.describe_source()
                ))),
                manifests: Vec::new(),
                blobs: None,
            });
            continue;
        };
        let repo = Repository::new(dir);
        let pb = progress::bar(0, format!("{} verify", s.id), quiet);
        let chain = repo
            .verify(quick, &pb as &dyn Progress)
            .map(|(problems, n)| (problems.into_iter().map(Error::from).collect(), n))
            .map_err(Error::from);
        pb.finish_and_clear();
        // A manifest that cannot be read is a problem of the repository too.
        let mut manifests = Vec::new();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for ent in rd.flatten() {
                let name = ent.file_name().to_string_lossy().into_owned();
                if name.ends_with(repozo::manifest::SUFFIX) {
                    if let Err(e) = read_manifest(&ent.path()) {
                        manifests.push(e.into());
                    }
                }
            }
        }
        let blobs = s
            .blob_dir
            .as_ref()
            .map(|_| verify_blobs(&repo, &s.id, quick, quiet));
        out.push(Verified {
            storage: s.id.clone(),
            repository: Some(dir.clone()),
            chain,
            manifests,
            blobs,
        });
    }
    Ok(out)
}

/// `--verify` of the newest blob run: its chain is rebuilt into a
/// temporary file in the repository (removed after) to read the blob
/// records, each of which (up to the run's point) must have its file in the
/// run and the pool, with the right size (and crc32 unless `quick`).
fn verify_blobs(
    repo: &Repository,
    id: &str,
    quick: bool,
    quiet: bool,
) -> Result<(String, crate::blobs::VerifyReport)> {
    let files = repo.find_chain(None)?;
    let last = files
        .last()
        .map(|f| f.name.clone())
        .ok_or_else(|| Error::refused("no full backup: no blob run to verify"))?;
    let chain = repo.checked_chain(files)?;
    let m = blob_step::run_for(&repo.dir, &last)?;
    let mut tmp = fsutil::TempFile::beside(&repo.dir.join(".tidstorage-verify.fs"))
        .map_err(|e| Error::io(&repo.dir, e).doing("cannot create a temporary file in"))?;
    let tmp_path = tmp.path().to_path_buf();
    let pb = progress::bar(chain.end(), format!("{id} blob records"), quiet);
    repo.stream_chain(&chain, tmp.file(), &tmp_path, &pb as &dyn Progress)?;
    pb.finish_and_clear();
    let df = DataFs::open(&tmp_path)?;
    let records = df
        .blob_records(4, df.size())
        .map_err(|e| Error::from(e).doing("cannot read the blob records"))?;
    let upto = m.point.unwrap_or(Tid(0));
    let r = crate::blobs::verify(
        &crate::blobs::BlobRepo::at(&repo.dir),
        &m,
        upto,
        Some(&records.records),
        !quick,
    )?;
    Ok((m.stamp.clone(), r))
}
