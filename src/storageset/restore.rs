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

use super::job::StorageJob;
use super::{point, Error, ErrorKind, Result};
use crate::config::{Config, StorageConfig};
use crate::datafs::index::{index_for_prefix, FsIndex};
use crate::datafs::DataFs;
use crate::fsutil::{self, sibling, DataFsLock};
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
    pub notes: Vec<String>,
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
}

/// One storage on its way back.
struct Job<'a> {
    job: StorageJob<'a>,
    target: PathBuf,
    tid: Option<Tid>,
    /// The manifest's expectation: (its chain, its cut position).
    expect: Option<(Vec<String>, u64)>,
    /// Directories made for `target` (deepest first), removed again if
    /// nothing is restored.
    created: Vec<PathBuf>,
}

/// A storage rebuilt into a temporary file.
struct Built<'a> {
    job: Job<'a>,
    tmp: fsutil::TempFile,
    size: u64,
    chain: Chain,
    removed: u64,
    last_tid: Option<Tid>,
    index: Option<FsIndex>,
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

    let mut built = Vec::new();
    for j in jobs {
        let id = j.job.cfg.id.clone();
        match build(j, &date, o.quiet) {
            Ok(b) => built.push(b),
            Err(e) => errors.push(e.storage(&id)),
        }
    }
    if !errors.is_empty() {
        drop(built);
        remove_created();
        return Err(Error::new(ErrorKind::Storages(errors))
            .doing("nothing was restored (the temporary files are removed)"));
    }

    if o.check {
        return Ok(Outcome::Checked(built.iter().map(compare).collect()));
    }

    let when = Stamp::now().text();
    let mut installed = Vec::new();
    let mut failed = Vec::new();
    for b in built {
        let id = b.job.job.cfg.id.clone();
        match install(b, &when) {
            Ok(i) => installed.push(i),
            Err(e) => failed.push(e.storage(&id)),
        }
    }
    Ok(Outcome::Installed { installed, failed })
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
            let rel: PathBuf = data_fs
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
    let target = if o.check {
        job.data_fs.clone()
    } else {
        target_for(&job.data_fs, o.output_dir.as_deref())
    };
    if !o.check {
        match DataFsLock::probe(&target) {
            Ok(true) => {
                return Err(Error::refused(format!(
                "{} is locked by a running ZEO server or ZODB process; stop it before restoring",
                target.display()
            )))
            }
            Ok(false) => {}
            Err(e) => return Err(Error::io(&target, e).doing("cannot check the lock of")),
        }
        if target.exists() && !o.force {
            return Err(Error::refused(format!(
                "{} exists; restore with --force to replace it (it is kept as \
                 {}.before-restore-<time>), or use --output-dir",
                target.display(),
                target.display()
            )));
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
    Ok(Job {
        job,
        target,
        tid: None,
        expect: None,
        created,
    })
}

/// Gives every job the TID to cut at: from `--tid-log`, or from the newest
/// run manifest `<= date`, which must be the same run for every storage.
fn assign_point(jobs: &mut [Job], o: &RestoreOptions, date: &str) -> Result<()> {
    if let Some(log_path) = &o.tid_log {
        let point = point::from_status_file(log_path, o.lenient)?;
        for j in jobs.iter_mut() {
            let id = &j.job.cfg.id;
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

fn build<'a>(j: Job<'a>, date: &str, quiet: bool) -> Result<Built<'a>> {
    let repo = &j.job.repo;
    let files = repo.find_chain(Some(date))?;
    if files.is_empty() {
        return Err(Error::refused(format!(
            "no full backup in {} as of {date}",
            repo.dir.display()
        )));
    }
    let chain = repo.checked_chain(files)?;
    let mut tmp = fsutil::TempFile::beside(&j.target)
        .map_err(|e| Error::io(&j.target, e).doing("cannot create a temporary file beside"))?;
    let pb = progress::bar(chain.end(), format!("{} restore", j.job.cfg.id), quiet);
    let size = repo
        .stream_chain(&chain, tmp.file(), &pb as &dyn Progress)
        .map_err(|e| {
            Error::from(e).advice(format!("nothing was written under {}", j.target.display()))
        })?;
    pb.finish_and_clear();
    let mut notes = Vec::new();
    let df = DataFs::open(tmp.path())
        .map_err(|e| Error::from(e).doing("the restored data is not a Data.fs"))?;
    let (position, last_tid, removed) = match j.tid {
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
            let cc = df.coherent_cut(tid)?;
            if cc.ends_before_tid {
                return Err(Error::refused(format!(
                    "the repository holds this storage only up to TID {}, before the coherent \
                     TID {}: transactions are missing; restore an earlier date, or --no-cut",
                    cc.cut.last_kept_tid.map(|t| t.hex()).unwrap_or_default(),
                    tid.hex()
                )));
            }
            if let Some((mchain, mpos)) = &j.expect {
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
    Ok(Built {
        job: j,
        tmp,
        size: position,
        chain,
        removed,
        last_tid,
        index,
        notes,
    })
}

fn install(b: Built, when: &str) -> Result<Installed> {
    let target = &b.job.target;
    let index_path = sibling(target, ".index");
    let mut kept = None;
    if target.exists() {
        let old = sibling(target, &format!(".before-restore-{when}"));
        std::fs::hard_link(target, &old).map_err(|e| {
            Error::io(target, e)
                .doing(format!("cannot keep as {} the old", old.display()))
                .advice("nothing replaced")
        })?;
        kept = Some(old);
    }
    // The old index describes the old file: move it away before the new
    // file arrives (a crash in between leaves no index: ZODB rebuilds).
    if index_path.exists() {
        let dest = match &kept {
            Some(old) => sibling(old, ".index"),
            None => sibling(&index_path, &format!(".before-restore-{when}")),
        };
        std::fs::rename(&index_path, &dest)
            .map_err(|e| Error::io(&index_path, e).doing("cannot move aside the old"))?;
    }
    b.tmp
        .persist(target)
        .map_err(|e| Error::io(target, e).doing("cannot put in place"))?;
    let mut notes = Vec::new();
    if let Some(ix) = &b.index {
        if let Err(e) = ix.save(b.size, &index_path) {
            notes.push(format!(
                "{} not written ({e}); ZODB rebuilds it at open",
                index_path.display()
            ));
        }
    }
    notes.extend(b.notes);
    Ok(Installed {
        storage: b.job.job.cfg.id.clone(),
        target: target.clone(),
        size: b.size,
        tid: b.job.tid,
        removed: b.removed,
        last_tid: b.last_tid,
        files: b.chain.links.len(),
        repository: b.job.job.repo.dir.clone(),
        kept,
        notes,
    })
}

/// Compares one restored file with the live one (its prefix).
fn compare(b: &Built) -> Compared {
    let live = &b.job.target;
    Compared {
        storage: b.job.job.cfg.id.clone(),
        live: live.clone(),
        size: b.size,
        verdict: compare_prefix(b.tmp.path(), live, b.size).map_err(|e| Error::io(live, e)),
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
}

impl Verified {
    /// Problems found (an unreadable repository counts as one).
    pub fn problem_count(&self) -> usize {
        let chain = match &self.chain {
            Ok((p, _)) if p.is_empty() => 0,
            _ => 1,
        };
        chain + self.manifests.len()
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
        out.push(Verified {
            storage: s.id.clone(),
            repository: Some(dir.clone()),
            chain,
            manifests,
        });
    }
    Ok(out)
}
