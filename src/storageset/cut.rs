//! Cutting Data.fs files in place after a crash, so that every database
//! ends at the same coherency point.
//!
//! All-or-nothing: a [`Plan`] is made for every storage first (coherent
//! TID, current size, cut position, what goes), with every Data.fs lock
//! taken; if any storage cannot be cut, nothing is touched. Then, per file
//! ([`execute`]): the removed bytes are saved durably to
//! `Data.fs.tail-<tid hex>` (unless `discard_tail`), the file is truncated
//! and fsynced, a fresh `Data.fs.index` for the cut file replaces the stale
//! one (temp file, fsync, rename), and the directory is fsynced.
//!
//! The index is computed from the file *before* truncating (the fix-up of
//! an existing index reads the removed transactions) and written after, so
//! it never covers bytes the file does not hold. The old index is not kept:
//! it is a cache derived from the file. When no index can be made (damage
//! in the kept prefix), the stale one is removed and ZODB rebuilds it at
//! its next open, as it would have anyway.
//!
//! Truncating in place is the one exception to "temp file, then rename":
//! copying a multi-GB prefix would cost O(file), and truncation never
//! rewrites a kept byte. A crash between saving the tail and truncating
//! leaves the file untouched and the tail saved; running `cut` again is safe.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use super::{point, Error, ErrorKind, Result};
use crate::config::Config;
use crate::datafs::index::{self, FsIndex, IndexMethod};
use crate::datafs::{CutPosition, DataFs};
use crate::fsutil::{self, sibling, DataFsLock, LockError};
use crate::progress;
use crate::statuslog::Point;
use crate::tid::Tid;

/// Where the point of a cut of the configured storages comes from.
#[derive(Debug, Clone)]
pub enum PointSource {
    /// A status file (`--tid-log`, default `[server] status_file`).
    StatusFile {
        path: Option<PathBuf>,
        lenient: bool,
    },
    /// A daemon still running (`--server HOST:PORT`).
    Daemon(String),
}

/// The exact cut (the default for configured storages): the greatest
/// consistent cut above the point, from the commit tags in the files.
#[derive(Debug, Clone, Default)]
pub struct ExactOptions {
    /// A floor for every storage instead of the point (`--since`).
    pub since: Option<Tid>,
    /// Tag summaries of storages on other hosts (`--tags FILE`).
    pub tags: Vec<PathBuf>,
}

/// What the exact cut decided for one storage, for the plan.
#[derive(Debug, Clone)]
pub struct ExactStorage {
    pub floor: crate::exactcut::Floor,
    /// Transactions kept above the floor (beyond the point).
    pub kept_beyond_floor: u64,
    /// Every transaction above the floor that goes, with why.
    pub removed: Vec<crate::exactcut::Removed>,
}

/// What the caller asks of a cut (the flags).
#[derive(Debug, Clone)]
pub struct CutOptions {
    /// Cut at the exact cut above the point (None: at the point itself,
    /// `--at-point`).
    pub exact: Option<ExactOptions>,
    /// Plan only: no lock is taken, nothing is changed.
    pub dry_run: bool,
    /// Verify every kept transaction before cutting.
    pub verify: bool,
    pub quiet: bool,
}

/// What will happen to one file.
pub struct Plan {
    pub storage: Option<String>,
    pub data_fs: PathBuf,
    pub tid: Tid,
    pub current_size: u64,
    pub cut: CutPosition,
    /// Held from planning to the end so no ZODB process opens the file meanwhile.
    _lock: Option<DataFsLock>,
    pub notes: Vec<String>,
    /// How the fresh index will be made (tried first; see [`execute`]).
    pub index_method: IndexMethod,
    /// Position the existing index covers, when one is readable.
    pub index_existing: Option<u64>,
    /// The exact cut's account (None: cut at the point).
    pub exact: Option<ExactStorage>,
    /// The point's TID for this storage (the floor), when there is one.
    pub point_tid: Option<Tid>,
    /// Its blob directory's cut at the same TID (None: no blob directory
    /// configured or given).
    pub blobs: Option<crate::blobs::CutPlan>,
}

impl Plan {
    /// Bytes of the Data.fs the index computation reads.
    pub fn index_scan_bytes(&self) -> u64 {
        match self.index_method {
            IndexMethod::Built => self.cut.position - 4,
            IndexMethod::Extended { from } => self.cut.position - from,
            IndexMethod::FixedUp { from } => from - self.cut.position,
        }
    }

    /// `none` (nothing is cut), `build`, `extend` or `fix_up`.
    pub fn index_action(&self) -> &'static str {
        if self.cut.position >= self.current_size {
            return "none";
        }
        match self.index_method {
            IndexMethod::Built => "build",
            IndexMethod::Extended { .. } => "extend",
            IndexMethod::FixedUp { .. } => "fix_up",
        }
    }

    /// True when the file holds bytes after the cut position.
    pub fn cuts(&self) -> bool {
        self.cut.position < self.current_size
    }
}

/// Plans the cut of one file after `tid` (`tidstorage cut FILE TID`). A
/// TID after the file's last transaction is no loss here (the operator
/// chose it): the plan only says nothing is cut.
pub fn plan_file(
    data_fs: &Path,
    blob_dir: Option<&Path>,
    tid: Tid,
    o: &CutOptions,
) -> Result<Plan> {
    plan_one(None, data_fs, blob_dir, tid, o)
}

/// Plans the cut of the selected configured storages at the point of
/// `source`; every storage must be plannable, or nothing is returned.
pub fn plan_configured(
    c: &Config,
    storages: &[String],
    source: &PointSource,
    o: &CutOptions,
) -> Result<Vec<Plan>> {
    let storages = c
        .select_storages(storages)
        .map_err(|e| Error::config(e.message))?;
    if storages.is_empty() {
        return Err(Error::config(format!(
            "no storage to cut: the {} has no [[storage]]; give one, or use `tidstorage cut FILE TID`",
            c.describe_source()
        )));
    }
    let (point, from): (Point, String) = match source {
        PointSource::Daemon(addr) => (point::from_daemon(addr)?, format!("the daemon at {addr}")),
        PointSource::StatusFile { path, lenient } => {
            let path = path.clone().unwrap_or_else(|| c.server.status_file.clone());
            let missing = !fsutil::exists(&path)
                .map_err(|e| Error::io(&path, e).doing("cannot look for the status file"))?;
            if missing && o.exact.is_some() {
                // No floor at all: each file's history before its first
                // tagged transaction is taken as it is (the plan says so).
                log::warn!(
                    "the status file {} does not exist: no point to start from; the exact cut \
                     keeps each file's history written before its first tagged transaction \
                     (give a floor with --since TID)",
                    path.display()
                );
                (
                    Point::new(),
                    format!("the status file {} (missing)", path.display()),
                )
            } else {
                (
                    point::from_status_file(&path, *lenient)?,
                    format!("the status file {}", path.display()),
                )
            }
        }
    };
    // The exact cut reads every configured storage: a tag may name any.
    let exact = match &o.exact {
        Some(x) => Some(exact_plan(c, &point, x)?),
        None => None,
    };
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for s in storages {
        let Some(data_fs) = &s.data_fs else {
            errors.push(
                Error::config(format!("has no data_fs in the {}", c.describe_source()))
                    .storage(&format!("{:?}", s.id)),
            );
            continue;
        };
        let point_tid = point.get(&s.id).copied();
        let floor_given = o.exact.as_ref().is_some_and(|x| x.since.is_some()) || point.is_empty();
        if point_tid.is_none() && !(exact.is_some() && floor_given) {
            errors.push(
                Error::refused(format!(
                    "is not in {from}: it never had a coherency point; \
                     check the storage id, or cut that file by hand with `tidstorage cut FILE TID`"
                ))
                .storage(&format!("{:?}", s.id)),
            );
            continue;
        }
        let (tid, account) = match &exact {
            Some(plan) => {
                // Read from this very file above: always in the plan.
                let sp = plan
                    .get(&s.id)
                    .expect("every configured storage is planned");
                let account = ExactStorage {
                    floor: sp.floor,
                    kept_beyond_floor: sp.kept_beyond_floor,
                    removed: sp.removed.clone(),
                };
                (sp.cut_tid.unwrap_or(Tid(0)), Some(account))
            }
            None => (point_tid.expect("checked above"), None),
        };
        match plan_one(Some(&s.id), data_fs, s.blob_dir.as_deref(), tid, o) {
            Ok(mut p) => {
                p.exact = account;
                p.point_tid = point_tid;
                plans.push(p);
            }
            Err(e) => errors.push(e.storage(&format!("{:?}", s.id))),
        }
    }
    if !errors.is_empty() {
        let n = errors.len();
        return Err(Error::new(ErrorKind::Storages(errors))
            .doing(format!("nothing was cut, because {n} storage(s) cannot be")));
    }
    Ok(plans)
}

/// The exact cut over every configured storage (and the summaries other
/// hosts exported), each above its floor: `since`, else its TID in
/// `point`, else (no point at all) its first tagged transaction.
fn exact_plan(c: &Config, point: &Point, x: &ExactOptions) -> Result<crate::exactcut::Plan> {
    use crate::exactcut::{exact_cut, FloorSpec, TagSummary};
    let mut inputs = Vec::new();
    let mut errors = Vec::new();
    for s in &c.storages {
        let Some(data_fs) = &s.data_fs else { continue };
        let spec = match (x.since, point.get(&s.id)) {
            (Some(t), _) => FloorSpec::Tid(t),
            (None, Some(t)) => FloorSpec::Tid(*t),
            (None, None) => FloorSpec::FirstTagged,
        };
        let path =
            fsutil::resolve(data_fs).map_err(|e| Error::io(data_fs, e).doing("cannot resolve"))?;
        match TagSummary::read_file(&path, &s.id, spec) {
            Ok(t) => inputs.push(t),
            Err(e) => errors.push(Error::from(e).doing("cannot read its tags").storage(&s.id)),
        }
    }
    for f in &x.tags {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Error::io(f, e).doing("cannot read the tag summary"))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::refused(format!(
                "{}: not JSON ({e}); give what `tidstorage tags FILE --format json` printed",
                f.display()
            ))
        })?;
        let t = TagSummary::from_json(&v)
            .map_err(|e| Error::refused(format!("{}: not a tag summary: {e}", f.display())))?;
        if !c.storages.iter().any(|s| s.id == t.storage) {
            return Err(Error::refused(format!(
                "{}: the summary is of storage {:?}, which is not configured",
                f.display(),
                t.storage
            )));
        }
        inputs.push(t);
    }
    if !errors.is_empty() {
        return Err(Error::new(ErrorKind::Storages(errors)).doing("no exact cut"));
    }
    exact_cut(&inputs).map_err(|e| Error::new(ErrorKind::ExactCut(e)))
}

fn plan_one(
    storage: Option<&str>,
    data_fs: &Path,
    blob_dir: Option<&Path>,
    tid: Tid,
    o: &CutOptions,
) -> Result<Plan> {
    let data_fs =
        &fsutil::resolve(data_fs).map_err(|e| Error::io(data_fs, e).doing("cannot resolve"))?;
    if !fsutil::exists(data_fs).map_err(|e| Error::io(data_fs, e).doing("cannot look for"))? {
        return Err(Error::refused(format!(
            "{} does not exist; check the path (data_fs in the configuration, or the FILE given)",
            data_fs.display()
        )));
    }
    let refusal = |e: LockError| {
        let zodb = e.by_zodb();
        let e = Error::from(e);
        if zodb {
            e.advice("stop it before cutting")
        } else {
            e
        }
    };
    let lock = if !o.dry_run {
        Some(DataFsLock::take(data_fs).map_err(refusal)?)
    } else {
        match DataFsLock::probe(data_fs) {
            Ok(Some(held)) => return Err(refusal(held)),
            Ok(None) => None,
            Err(e) => return Err(Error::io(data_fs, e).doing("cannot check the lock of")),
        }
    };
    let df = DataFs::open(data_fs)?;
    let mut cc = df.coherent_cut_checked(tid)?;
    if let (true, Some(last)) = (cc.ends_before_tid, cc.cut.last_kept_tid) {
        cc.notes.push(match storage {
            // A point the daemon saw committed on this storage.
            Some(_) => format!(
                "the file ends at TID {} ({}), before the coherent TID {}: it lost \
                 transactions the other storages may depend on; restore it from a backup",
                last.hex(),
                last.rfc3339(),
                tid.hex()
            ),
            // The operator's own TID.
            None => format!(
                "the file ends at TID {}, before TID {}: nothing to cut",
                last.hex(),
                tid.hex()
            ),
        });
    }
    if let Some(why) = cc.below_pack_refusal(data_fs.as_ref(), tid) {
        return Err(Error::refused(why));
    }
    let (cut, mut notes) = (cc.cut, cc.notes);
    if o.verify {
        let pb = progress::bar(0, format!("verifying {}", df.path().display()), o.quiet);
        let r = df
            .verify_upto(cut.position, &mut progress::positions(&pb))
            .map_err(|e| {
                Error::from(e).advice("found by --verify inside the part that would be kept")
            })?;
        pb.finish_and_clear();
        notes.push(format!(
            "verified the {} kept transaction(s)",
            r.transactions
        ));
    }
    let index_path = sibling(data_fs, ".index");
    let index_existing = if index_path.exists() {
        match FsIndex::read_pos(&index_path) {
            Ok(pos) => Some(pos),
            Err(e) => {
                notes.push(format!("the existing index is unreadable ({e})"));
                None
            }
        }
    } else {
        None
    };
    let index_method = index::plan_method(index_existing, cut.position, df.size());
    let blobs = match blob_dir {
        None => None,
        Some(dir) => Some(
            crate::blobs::plan_cut(dir, tid)
                .map_err(|e| Error::from(e).doing("cannot plan the cut of the blob directory"))?,
        ),
    };
    Ok(Plan {
        storage: storage.map(str::to_string),
        data_fs: data_fs.to_path_buf(),
        tid,
        current_size: df.size(),
        cut,
        _lock: lock,
        notes,
        index_method,
        index_existing,
        exact: None,
        point_tid: None,
        blobs,
    })
}

/// What a cut did to one file.
#[derive(Debug)]
pub struct Outcome {
    pub data_fs: PathBuf,
    /// Where the removed bytes are kept (None with `discard_tail`).
    pub tail: Option<PathBuf>,
    /// One line about the index, for the summary (None: the Data.fs was
    /// already cut and indexed).
    pub index: Option<String>,
    /// What the cut of its blob directory did.
    pub blobs: Option<crate::blobs::CutReport>,
}

/// What [`execute`] did to every planned file.
#[derive(Debug, Default)]
pub struct CutReport {
    /// Files cut (files already at their point are not listed).
    pub cut: Vec<Outcome>,
    /// Files that could not be cut (each error names the file).
    pub failed: Vec<Error>,
}

/// Cuts every planned file, then its blob directory; a failure on one
/// file does not stop the others.
pub fn execute(plans: &[Plan], discard_tail: bool, quiet: bool) -> CutReport {
    let mut r = CutReport::default();
    for p in plans {
        let mut outcome = match execute_one(p, discard_tail, quiet) {
            Ok(o) => o,
            Err(e) => {
                r.failed.push(e);
                continue;
            }
        };
        if let Some(bp) = p.blobs.as_ref().filter(|b| !b.is_empty()) {
            match crate::blobs::execute_cut(bp, discard_tail) {
                Ok(b) => {
                    outcome
                        .get_or_insert_with(|| Outcome {
                            data_fs: p.data_fs.clone(),
                            tail: None,
                            index: None,
                            blobs: None,
                        })
                        .blobs = Some(b)
                }
                Err(e) => {
                    r.failed.push(
                        Error::from(e)
                            .doing(format!(
                                "{} is cut, but its blob directory is not",
                                p.data_fs.display()
                            ))
                            .advice("fix the cause and run the same cut again"),
                    );
                    continue;
                }
            }
        }
        r.cut.extend(outcome);
    }
    r
}

/// The fresh index of the kept prefix, computed before truncating; `Err`
/// says why there is none (the stale one is then removed).
fn fresh_index(p: &Plan, quiet: bool) -> Result<(FsIndex, String)> {
    let path = &p.data_fs;
    let df = DataFs::open(path)?;
    let index_path = sibling(path, ".index");
    let existing = match p.index_method {
        IndexMethod::Built => None,
        _ => match FsIndex::load(&index_path) {
            Ok(x) => Some(x),
            Err(e) => {
                log::warn!("{e}; building the index from scratch");
                None
            }
        },
    };
    let pb = progress::bar(0, format!("indexing {}", path.display()), quiet);
    let made =
        index::index_for_prefix(&df, p.cut.position, existing, &mut progress::positions(&pb));
    pb.finish_and_clear();
    let made = made?;
    if let Some(why) = &made.rejected {
        log::warn!(
            "{}: existing index not reused ({why}); built a fresh one",
            index_path.display()
        );
    }
    let how = match made.method {
        IndexMethod::Built => format!("built from the {} kept bytes", p.cut.position - 4),
        IndexMethod::Extended { from } => format!(
            "extended the existing index by reading {} bytes",
            p.cut.position - from
        ),
        IndexMethod::FixedUp { from } => format!(
            "fixed up the existing index by reading the {} removed bytes",
            from - p.cut.position
        ),
    };
    Ok((made.index, how))
}

/// Cuts one file; `None` when there was nothing to do (the file already
/// ends at its point and its index covers it).
fn execute_one(p: &Plan, discard_tail: bool, quiet: bool) -> Result<Option<Outcome>> {
    let path = &p.data_fs;
    let index_path = sibling(path, ".index");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e).doing("cannot open for writing"))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io(path, e).doing("cannot stat"))?
        .len();
    if size != p.current_size {
        return Err(Error::refused(format!(
            "{}: size changed from {} to {} since the plan was made; nothing done, run cut again",
            path.display(),
            p.current_size,
            size
        )));
    }
    if p.cut.position >= size {
        // Already at the point; a cut that failed after truncating may
        // have left no index, or the old one: finish that part.
        if matches!(FsIndex::read_pos(&index_path), Ok(pos) if pos == size) {
            return Ok(None);
        }
        let (ix, how) = fresh_index(p, quiet)?;
        write_index(p, &ix, &index_path)?;
        return Ok(Some(Outcome {
            data_fs: path.clone(),
            tail: None,
            index: Some(format!(
                "already cut; index written ({how}, {} oids): the earlier cut had not written it",
                ix.len()
            )),
            blobs: None,
        }));
    }
    let fresh = fresh_index(p, quiet);
    let mut tail_path = None;
    if !discard_tail {
        let mut target = sibling(path, &format!(".tail-{}", p.tid.hex()));
        let mut n = 1;
        while fsutil::exists(&target).map_err(|e| Error::io(&target, e).doing("cannot look for"))? {
            target = sibling(path, &format!(".tail-{}.{n}", p.tid.hex()));
            n += 1;
        }
        let saving = |e| Error::io(path, e).doing("cannot save the removed bytes of");
        let mut tmp = fsutil::TempFile::beside(&target)
            .map_err(|e| Error::io(path, e).doing("cannot create the tail file of"))?;
        fsutil::copy_range(&mut file, p.cut.position, size - p.cut.position, tmp.file())
            .map_err(saving)?;
        tmp.persist(&target).map_err(saving)?;
        tail_path = Some(target);
    }
    // The old index covers bytes about to go: it goes first, so no crash
    // leaves it beside the cut file (a missing index only costs a rebuild).
    match std::fs::remove_file(&index_path) {
        Ok(()) => fsutil::sync_parent_dir(&index_path)
            .map_err(|e| Error::io(path, e).doing("cannot fsync the directory of"))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::io(&index_path, e)
                .doing("cannot remove the stale index")
                .advice("nothing was cut; fix the cause and run cut again"))
        }
    }
    file.set_len(p.cut.position)
        .map_err(|e| Error::io(path, e).doing("cannot truncate"))?;
    file.sync_all()
        .map_err(|e| Error::io(path, e).doing("cannot fsync"))?;
    let index_line = match fresh {
        Ok((ix, how)) => {
            write_index(p, &ix, &index_path)?;
            format!("index written ({how}, {} oids)", ix.len())
        }
        // Damage in the kept part: no index can describe it (ZODB
        // rebuilds, or refuses, at its next open; `cut --verify` says where).
        Err(why) if why.is_damage() => {
            log::warn!(
                "{}: no fresh index ({why}); ZODB rebuilds it at its next open",
                path.display()
            );
            "stale index removed; ZODB rebuilds it at its next open".to_string()
        }
        // An I/O failure: the job is not done; the rerun writes the index.
        Err(why) => {
            fsutil::sync_parent_dir(path)
                .map_err(|e| Error::io(path, e).doing("cannot fsync the directory of"))?;
            return Err(why
                .doing(format!(
                    "{} is cut, but its index could not be made",
                    path.display()
                ))
                .advice(
                    "run the same cut again to write it (ZODB rebuilds it at open meanwhile)",
                ));
        }
    };
    fsutil::sync_parent_dir(path)
        .map_err(|e| Error::io(path, e).doing("cannot fsync the directory of"))?;
    Ok(Some(Outcome {
        data_fs: path.clone(),
        tail: tail_path,
        index: Some(index_line),
        blobs: None,
    }))
}

/// Writes the cut file's index durably; a failure is the cut's failure
/// (the rerun writes it: see the already-cut branch of [`execute_one`]).
fn write_index(p: &Plan, ix: &FsIndex, index_path: &Path) -> Result<()> {
    ix.save_owned_like(p.cut.position, index_path, Some(&p.data_fs))
        .map_err(|e| {
            Error::io(index_path, e)
                .doing(format!("{} is cut, but cannot write", p.data_fs.display()))
                .advice("run the same cut again to write it (ZODB rebuilds it at open meanwhile)")
        })
}
