//! `tidstorage restore`: rebuild every configured Data.fs from its
//! repository as of a date, cut at the coherent point (SPEC §6).
//!
//! Two phases, so a failure never leaves a mixed set: first every storage
//! is rebuilt into a temporary file beside its target (chain checked
//! against the `.dat`: order, contiguity, sizes, md5s), cut with the same
//! rules as `cut` ([`crate::cmd::cut::coherent_cut`]) and indexed; only
//! when all succeeded is each one moved into place (the replaced file kept
//! as `Data.fs.before-restore-<time>`, its index beside it), then its fresh
//! `Data.fs.index` written. `--check` stops after the first phase and
//! compares with the live files; `--verify` only reads repositories.
//!
//! The point comes from the run manifests (`<RUN>.tidstorage.json`, one per
//! repository, all from the same run), from `--tid-log`, or nowhere with
//! `--no-cut` (repozo's behaviour).
//!
//! Must not: delete or truncate an existing Data.fs, or write while a ZEO
//! server holds the target's lock.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::cmd::backup::last_timestamp;
use crate::cmd::cut::coherent_cut;
use crate::cmd::emit;
use crate::cmd::progress_bar;
use crate::cmd::Context;
use crate::config::{Config, StorageConfig};
use crate::datafs::index::{index_for_prefix, FsIndex};
use crate::datafs::DataFs;
use crate::error::{CliError, Result};
use crate::fsutil;
use crate::fsutil::sibling;
use crate::repozo::chain::Chain;
use crate::repozo::copy::Progress;
use crate::repozo::manifest::read_manifest;
use crate::repozo::{self, RepoLock, Repository, Stamp};
use crate::statuslog::{self, ReplayOptions};
use crate::tid::Tid;

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    tidstorage restore --output-dir /srv/restored    as of the last backup run, cut coherently\n  \
    tidstorage restore --date 2024-05-01-12-00-00 --force\n  \
    tidstorage restore --check                       compare a restore with the live files\n  \
    tidstorage restore --verify                      check every repository, write nothing")]
pub struct RestoreArgs {
    /// Restore the state as of this UTC date, yyyy-mm-dd[-hh[-mm[-ss]]]
    /// (repozo's format) [default: the last line of [backup] timestamp_file, else now].
    #[arg(short = 'D', long, value_name = "DATE", value_parser = repozo::check_date)]
    pub date: Option<String>,
    /// Restore only this configured storage (repeatable).
    #[arg(long = "storage", value_name = "ID")]
    pub storages: Vec<String>,
    /// Cut at the last point of this status file instead of the backup's manifests.
    #[arg(long, value_name = "FILE", conflicts_with = "no_cut")]
    pub tid_log: Option<PathBuf>,
    /// Skip damaged status-file lines instead of refusing (with --tid-log).
    #[arg(long, requires = "tid_log")]
    pub lenient: bool,
    /// Do not cut: restore exactly what the repository holds (like repozo -R).
    #[arg(long)]
    pub no_cut: bool,
    /// Replace existing Data.fs files (each kept as Data.fs.before-restore-<time>).
    #[arg(long)]
    pub force: bool,
    /// Restore into this directory (the configured data_fs paths recreated
    /// under it) instead of over the configured files.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Restore to temporary files, compare with the live Data.fs files,
    /// change nothing (exit 1 when one differs).
    #[arg(long, conflicts_with_all = ["force", "verify"])]
    pub check: bool,
    /// Check every repository (chain contiguity, sizes, md5s, gzip included)
    /// and write nothing, like repozo -V (exit 1 on a problem).
    #[arg(long)]
    pub verify: bool,
    /// With --verify: check sizes only, not md5s.
    #[arg(short = 'Q', long, requires = "verify")]
    pub quick: bool,
}

/// One storage on its way back.
struct Job<'a> {
    cfg: &'a StorageConfig,
    repo: Repository,
    _lock: RepoLock,
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

pub fn run(a: RestoreArgs, g: &Context) -> Result<()> {
    g.init_stderr_log();
    let quiet = g.quiet > 0;
    let c = Config::load(g.config.as_deref())?;
    let selected = c.select_storages(&a.storages)?;
    if selected.is_empty() {
        return Err(CliError::usage(format!(
            "no storage to restore: the {} has no [[storage]]",
            c.describe_source()
        )));
    }
    if a.verify {
        return verify(&selected, &c, a.quick, quiet);
    }
    let date = match &a.date {
        Some(d) => d.clone(),
        None => match c.backup.timestamp_file.as_deref().map(last_timestamp) {
            Some(Err(e)) => return Err(e),
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
        match plan(s, &c, &a) {
            Ok(j) => jobs.push(j),
            Err(e) => errors.push(format!("storage {}: {e}", s.id)),
        }
    }
    if errors.is_empty() && !a.no_cut {
        if let Err(e) = assign_point(&mut jobs, &a, &date) {
            errors.push(e);
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
        return Err(CliError::runtime(format!(
            "nothing was restored:\n  {}",
            errors.join("\n  ")
        )));
    }

    let mut built = Vec::new();
    for j in jobs {
        let id = j.cfg.id.clone();
        match build(j, &date, quiet) {
            Ok(b) => built.push(b),
            Err(e) => errors.push(format!("storage {id}: {e}")),
        }
    }
    if !errors.is_empty() {
        drop(built);
        remove_created();
        return Err(CliError::runtime(format!(
            "nothing was restored (the temporary files are removed):\n  {}",
            errors.join("\n  ")
        )));
    }

    if a.check {
        return check(&built);
    }

    let when = Stamp::now().text();
    let mut out = String::new();
    let mut failed = Vec::new();
    for b in built {
        match install(b, &when) {
            Ok(text) => out.push_str(&text),
            Err(e) => failed.push(e),
        }
    }
    emit(&out)?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::runtime(format!(
            "{} storage(s) could not be put in place (the others were):\n  {}",
            failed.len(),
            failed.join("\n  ")
        )))
    }
}

fn target_for(data_fs: &Path, output_dir: Option<&Path>) -> PathBuf {
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

fn plan<'a>(
    s: &'a StorageConfig,
    c: &Config,
    a: &RestoreArgs,
) -> std::result::Result<Job<'a>, String> {
    let data_fs = s
        .data_fs
        .clone()
        .ok_or_else(|| format!("no data_fs in the {}", c.describe_source()))?;
    let dir = s
        .repository
        .clone()
        .ok_or_else(|| format!("no repository in the {}", c.describe_source()))?;
    let repo = Repository::new(dir);
    let lock = repo.lock().map_err(|e| e.to_string())?;
    let mut created = Vec::new();
    let target = if a.check {
        data_fs.clone()
    } else {
        target_for(&data_fs, a.output_dir.as_deref())
    };
    if !a.check {
        match fsutil::lock_is_held(&sibling(&target, ".lock")) {
            Ok(true) => {
                return Err(format!(
                "{} is locked by a running ZEO server or ZODB process; stop it before restoring",
                target.display()
            ))
            }
            Ok(false) => {}
            Err(e) => {
                return Err(format!(
                    "cannot check the lock of {}: {e}",
                    target.display()
                ))
            }
        }
        if target.exists() && !a.force {
            return Err(format!(
                "{} exists; restore with --force to replace it (it is kept as \
                 {}.before-restore-<time>), or use --output-dir",
                target.display(),
                target.display()
            ));
        }
        if let Some(parent) = target.parent() {
            created = parent
                .ancestors()
                .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
                .map(Path::to_path_buf)
                .collect();
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
    }
    Ok(Job {
        cfg: s,
        repo,
        _lock: lock,
        target,
        tid: None,
        expect: None,
        created,
    })
}

/// Gives every job the TID to cut at: from `--tid-log`, or from the newest
/// run manifest `<= date`, which must be the same run for every storage.
fn assign_point(jobs: &mut [Job], a: &RestoreArgs, date: &str) -> std::result::Result<(), String> {
    let replay = |p: &Path, lenient: bool| -> std::result::Result<BTreeMap<String, Tid>, String> {
        let r = statuslog::replay_file(p, ReplayOptions { lenient }).map_err(|e| e.to_string())?;
        if let Some((line, why)) = &r.torn_last_line {
            log::warn!(
                "{}: damaged last line {line} ignored ({why}); using the point before it",
                p.display()
            );
        }
        Ok(r.point)
    };
    if let Some(log_path) = &a.tid_log {
        let point = replay(log_path, a.lenient)?;
        for j in jobs.iter_mut() {
            j.tid = Some(*point.get(&j.cfg.id).ok_or_else(|| {
                format!(
                    "status file {} has no TID for storage {}; nothing to cut it at \
                     (use --no-cut to restore without cutting)",
                    log_path.display(),
                    j.cfg.id
                )
            })?);
        }
        return Ok(());
    }
    let mut run: Option<Stamp> = None;
    let mut problems = Vec::new();
    let mut status_copy: Option<String> = None;
    for j in jobs.iter_mut() {
        match j.repo.find_manifest(date).map_err(|e| e.to_string())? {
            None if j
                .repo
                .find_chain(Some(date))
                .map_err(|e| e.to_string())?
                .is_empty() =>
            {
                let files = j.repo.list().map_err(|e| e.to_string())?;
                problems.push(match files.first() {
                    Some(oldest) => format!(
                        "storage {}: no backup in {} as of {date}: its oldest is {}; give a \
                         later --date",
                        j.cfg.id,
                        j.repo.dir.display(),
                        oldest.name
                    ),
                    None => format!(
                        "storage {}: no backup in {}: the repository is empty; run `tidstorage \
                         backup` first, or check [[storage]] repository",
                        j.cfg.id,
                        j.repo.dir.display()
                    ),
                })
            }
            None => problems.push(format!(
                "storage {}: no tidstorage backup manifest in {} as of {date} (a repository \
                 written by repozo alone?): restore with --tid-log FILE or --no-cut",
                j.cfg.id,
                j.repo.dir.display()
            )),
            Some((st, m)) => {
                if m.storage != j.cfg.id {
                    problems.push(format!(
                        "storage {}: the manifest {} is for storage {:?}: is the repository \
                         configured for the right storage?",
                        j.cfg.id,
                        j.repo.manifest_path(st).display(),
                        m.storage
                    ));
                    continue;
                }
                match run {
                    None => run = Some(st),
                    Some(r) if r != st => problems.push(format!(
                        "storage {}: its newest backup as of {date} is from run {st}, not {r} like \
                         the others': cutting runs of different times is not coherent; restore \
                         --date {} (the older run) or use --tid-log",
                        j.cfg.id,
                        r.min(st)
                    )),
                    Some(_) => {}
                }
                match m.tid {
                    Some(t) => {
                        j.tid = Some(Tid(t));
                        j.expect = Some((m.chain.clone(), m.cut_position));
                    }
                    None => match &m.status_file_copy {
                        Some(p) => status_copy = Some(p.clone()),
                        None => problems.push(format!(
                            "storage {}: run {st} was a --no-server backup without a status \
                             file copy: restore with --tid-log FILE or --no-cut",
                            j.cfg.id
                        )),
                    },
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n  "));
    }
    if let Some(copy) = status_copy {
        // A --no-server run: its status file copy was taken before the
        // Data.fs files were read, so its last point is covered by them.
        let point = replay(Path::new(&copy), false)?;
        for j in jobs.iter_mut().filter(|j| j.tid.is_none()) {
            j.tid = Some(*point.get(&j.cfg.id).ok_or_else(|| {
                format!(
                    "the status file copy {copy} has no TID for storage {}; restore with \
                     --tid-log FILE or --no-cut",
                    j.cfg.id
                )
            })?);
        }
    }
    Ok(())
}

fn build<'a>(j: Job<'a>, date: &str, quiet: bool) -> std::result::Result<Built<'a>, String> {
    let files = j.repo.find_chain(Some(date)).map_err(|e| e.to_string())?;
    if files.is_empty() {
        return Err(format!(
            "no full backup in {} as of {date}",
            j.repo.dir.display()
        ));
    }
    let chain = j.repo.checked_chain(files).map_err(|e| e.to_string())?;
    let mut tmp = fsutil::TempFile::beside(&j.target).map_err(|e| {
        format!(
            "cannot create a temporary file beside {}: {e}",
            j.target.display()
        )
    })?;
    let pb = progress_bar(chain.end(), format!("{} restore", j.cfg.id), quiet);
    let size = j
        .repo
        .stream_chain(&chain, tmp.file(), &pb as &dyn Progress)
        .map_err(|e| format!("{e}; nothing was written under {}", j.target.display()))?;
    pb.finish_and_clear();
    let mut notes = Vec::new();
    let df =
        DataFs::open(tmp.path()).map_err(|e| format!("the restored data is not a Data.fs: {e}"))?;
    let (position, last_tid, removed) = match j.tid {
        None => {
            let v = df.valid_prefix().map_err(|e| e.to_string())?;
            if let Some(d) = &v.damage {
                notes.push(format!(
                    "the restored file is damaged after offset {}: {d}",
                    v.end
                ));
            }
            (size, v.last_tid, 0)
        }
        Some(tid) => {
            let cc = coherent_cut(&df, tid).map_err(|e| e.to_string())?;
            if cc.ends_before_tid {
                return Err(format!(
                    "the repository holds this storage only up to TID {}, before the coherent \
                     TID {}: transactions are missing; restore an earlier date, or --no-cut",
                    cc.cut.last_kept_tid.map(|t| t.hex()).unwrap_or_default(),
                    tid.hex()
                ));
            }
            if let Some((mchain, mpos)) = &j.expect {
                let names = chain.names();
                if names.starts_with(mchain) && cc.cut.position != *mpos {
                    return Err(format!(
                        "the cut position for TID {} is {}, but the backup recorded {}: the \
                         repository does not hold what the backup wrote",
                        tid.hex(),
                        cc.cut.position,
                        mpos
                    ));
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
        .and_then(|l| FsIndex::load(&j.repo.index_path(&l.file)).ok());
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
        tmp.file().set_len(position).map_err(|e| {
            format!(
                "cannot cut the temporary file {}: {e}",
                tmp.path().display()
            )
        })?;
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

fn install(b: Built, when: &str) -> std::result::Result<String, String> {
    let target = &b.job.target;
    let index_path = sibling(target, ".index");
    let mut kept = None;
    if target.exists() {
        let old = sibling(target, &format!(".before-restore-{when}"));
        std::fs::hard_link(target, &old).map_err(|e| {
            format!(
                "cannot keep the old {} as {}: {e}; nothing replaced",
                target.display(),
                old.display()
            )
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
            .map_err(|e| format!("cannot move the old {} aside: {e}", index_path.display()))?;
    }
    b.tmp
        .persist(target)
        .map_err(|e| format!("cannot put {} in place: {e}", target.display()))?;
    let mut s = format!(
        "storage {}: restored {} ({} bytes",
        b.job.cfg.id,
        target.display(),
        b.size
    );
    match b.job.tid {
        Some(t) => s.push_str(&format!(
            ", cut at coherent TID {} ({}), {} bytes removed",
            t.hex(),
            t.rfc3339(),
            b.removed
        )),
        None => s.push_str(", not cut"),
    }
    if let Some(l) = b.last_tid {
        s.push_str(&format!(", last TID {}", l.hex()));
    }
    s.push_str(&format!(
        ") from {} file(s) of {}\n",
        b.chain.links.len(),
        b.job.repo.dir.display()
    ));
    if let Some(old) = kept {
        s.push_str(&format!(
            "  the replaced file is kept as {}\n",
            old.display()
        ));
    }
    if let Some(ix) = &b.index {
        if let Err(e) = ix.save(b.size, &index_path) {
            s.push_str(&format!(
                "  note: {} not written ({e}); ZODB rebuilds it at open\n",
                index_path.display()
            ));
        }
    }
    for n in &b.notes {
        s.push_str(&format!("  note: {n}\n"));
    }
    Ok(s)
}

/// Compares each restored file with the live one (its prefix).
fn check(built: &[Built]) -> Result<()> {
    let mut out = String::new();
    let mut differ = 0;
    for b in built {
        let live = &b.job.target;
        let verdict = compare_prefix(b.tmp.path(), live, b.size);
        match verdict {
            Ok(None) => out.push_str(&format!(
                "storage {}: ok, the restored {} bytes equal the start of {}\n",
                b.job.cfg.id,
                b.size,
                live.display()
            )),
            Ok(Some(why)) => {
                differ += 1;
                out.push_str(&format!("storage {}: DIFFERS: {why}\n", b.job.cfg.id))
            }
            Err(e) => {
                differ += 1;
                out.push_str(&format!("storage {}: cannot compare: {e}\n", b.job.cfg.id))
            }
        }
    }
    emit(&out)?;
    if differ == 0 {
        Ok(())
    } else {
        Err(CliError::no(format!(
            "{differ} restored file(s) differ from the live files (nothing was changed)"
        )))
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

fn verify(selected: &[&StorageConfig], c: &Config, quick: bool, quiet: bool) -> Result<()> {
    let mut out = String::new();
    let mut bad = 0;
    for s in selected {
        let Some(dir) = &s.repository else {
            bad += 1;
            out.push_str(&format!(
                "storage {}: no repository in the {}\n",
                s.id,
                c.describe_source()
            ));
            continue;
        };
        let repo = Repository::new(dir);
        let pb = progress_bar(0, format!("{} verify", s.id), quiet);
        match repo.verify(quick, &pb as &dyn Progress) {
            Ok((problems, n)) if problems.is_empty() => out.push_str(&format!(
                "storage {}: ok, {n} file(s) in {} checked ({})\n",
                s.id,
                dir.display(),
                if quick { "sizes" } else { "sizes and md5" }
            )),
            Ok((problems, _)) => {
                bad += 1;
                out.push_str(&format!(
                    "storage {}: {} problem(s):\n",
                    s.id,
                    problems.len()
                ));
                for p in problems {
                    out.push_str(&format!("  {p}\n"));
                }
            }
            Err(e) => {
                bad += 1;
                out.push_str(&format!("storage {}: {e}\n", s.id));
            }
        }
        pb.finish_and_clear();
        // A manifest that cannot be read is a problem of the repository too.
        if let Ok(rd) = std::fs::read_dir(dir) {
            for ent in rd.flatten() {
                let name = ent.file_name().to_string_lossy().into_owned();
                if name.ends_with(repozo::manifest::SUFFIX) {
                    if let Err(e) = read_manifest(&ent.path()) {
                        bad += 1;
                        out.push_str(&format!("storage {}: {e}\n", s.id));
                    }
                }
            }
        }
    }
    emit(&out)?;
    if bad == 0 {
        Ok(())
    } else {
        Err(CliError::no(format!(
            "{bad} repository problem(s) found (see above)"
        )))
    }
}
