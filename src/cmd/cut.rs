//! `tidstorage cut`: after a crash, make every Data.fs coherent in place.
//!
//! All-or-nothing: a plan is made for every storage first (coherent TID,
//! current size, cut position, what goes), with every Data.fs lock taken;
//! if any storage cannot be cut, nothing is touched. Then, per file: the
//! removed bytes are saved durably to `Data.fs.tail-<tid hex>` (unless
//! `--discard-tail`), the file is truncated and fsynced, a fresh
//! `Data.fs.index` for the cut file replaces the stale one (temp file,
//! fsync, rename), and the directory is fsynced.
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

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::client::DaemonClient;
use crate::cmd::Context;
use crate::cmd::{emit, tid_json, Format};
use crate::config::Config;
use crate::datafs::index::{self, FsIndex, IndexMethod};
use crate::datafs::{CutPosition, DataFs};
use crate::error::{CliError, Result};
use crate::fsutil;
use crate::fsutil::sibling;
use crate::statuslog::{self, ReplayOptions};
use crate::tid::Tid;

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    tidstorage cut --dry-run              plan the cut of every configured storage\n  \
    tidstorage cut                        cut them at the status file's last point\n  \
    tidstorage cut /srv/zeo1/var/Data.fs 0x03f1b1a2cb5c4e00\n                                        \
    cut one file after that TID\n\n\
    The stale Data.fs.index is replaced by the index of the cut file (the existing one \
    fixed up from the removed transactions, extended, or rebuilt: the plan's `index` line \
    says which), so ZODB opens the file without re-reading it.")]
pub struct CutArgs {
    /// Cut only this Data.fs (needs TID) instead of the configured storages.
    #[arg(value_name = "FILE", requires = "tid")]
    pub file: Option<PathBuf>,
    /// Keep transactions up to this TID (decimal, hex, base64 or UTC time).
    #[arg(value_name = "TID")]
    pub tid: Option<String>,
    /// Status file to take the point from (default: [server] status_file).
    #[arg(long, value_name = "FILE", conflicts_with = "file")]
    pub tid_log: Option<PathBuf>,
    /// Take the point from a daemon still running (HOST:PORT): fresher than
    /// the status file when only the ZEO servers crashed.
    #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["file", "tid_log"])]
    pub server: Option<String>,
    /// Skip damaged status-file lines instead of refusing.
    #[arg(long)]
    pub lenient: bool,
    /// Cut only this configured storage (repeatable).
    #[arg(long = "storage", value_name = "ID", conflicts_with = "file")]
    pub storages: Vec<String>,
    /// Print the plan and change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Do not keep the removed bytes in Data.fs.tail-<tid hex>.
    #[arg(long)]
    pub discard_tail: bool,
    /// Also verify every kept transaction (fstest-style, reads the whole
    /// file) before cutting; without it only the transactions around the
    /// cut are checked, which costs O(bytes removed).
    #[arg(long)]
    pub verify: bool,
    /// Output format of the plan. TSV rows: storage, data_fs, tid, tid hex,
    /// current size, cut position, bytes removed, transactions removed,
    /// index action.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// What will happen to one file.
struct Plan {
    storage: Option<String>,
    data_fs: PathBuf,
    tid: Tid,
    current_size: u64,
    cut: CutPosition,
    /// Held from planning to the end so no ZODB process opens the file meanwhile.
    _lock: Option<LockGuard>,
    notes: Vec<String>,
    /// How the fresh index will be made (tried first; see `execute`).
    index_method: IndexMethod,
    /// Position the existing index covers, when one is readable.
    index_existing: Option<u64>,
}

impl Plan {
    /// Bytes of the Data.fs the index computation reads.
    fn index_scan_bytes(&self) -> u64 {
        match self.index_method {
            IndexMethod::Built => self.cut.position - 4,
            IndexMethod::Extended { from } => self.cut.position - from,
            IndexMethod::FixedUp { from } => from - self.cut.position,
        }
    }

    fn index_action(&self) -> &'static str {
        if self.cut.position >= self.current_size {
            return "none";
        }
        match self.index_method {
            IndexMethod::Built => "build",
            IndexMethod::Extended { .. } => "extend",
            IndexMethod::FixedUp { .. } => "fix_up",
        }
    }

    fn index_text(&self) -> String {
        if self.cut.position >= self.current_size {
            return "left as it is (nothing is cut)".into();
        }
        let n = self.index_scan_bytes();
        match self.index_method {
            IndexMethod::Built => format!(
                "{}build a fresh Data.fs.index by reading the {n} kept bytes",
                if self.index_existing.is_some() {
                    "replace the existing index (unusable here): "
                } else {
                    ""
                }
            ),
            IndexMethod::Extended { from } => {
                format!("extend the existing index (covers {from} bytes) by reading {n} bytes")
            }
            IndexMethod::FixedUp { from } => format!(
                "fix up the existing index (covers {from} bytes) by reading the {n} removed bytes"
            ),
        }
    }
}

/// The `Data.fs.lock` we hold; removes it on drop if we created it.
struct LockGuard {
    _file: File,
    path: PathBuf,
    created: bool,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn lock_data_fs(data_fs: &Path) -> std::result::Result<LockGuard, String> {
    let lock = sibling(data_fs, ".lock");
    let existed = lock.exists();
    match fsutil::try_lock_file(&lock) {
        Ok(Some(f)) => Ok(LockGuard {
            _file: f,
            path: lock,
            created: !existed,
        }),
        Ok(None) => Err(format!(
            "{} is locked ({} is held): a ZEO server or ZODB process has it open; \
             stop it before cutting",
            data_fs.display(),
            lock.display()
        )),
        Err(e) => Err(format!("cannot lock {}: {e}", lock.display())),
    }
}

/// fstest-style check of every transaction before `end`.
fn verify_prefix(df: &DataFs, end: u64) -> std::result::Result<u64, String> {
    let mut count = 0u64;
    let mut last: Option<Tid> = None;
    let inside = |e: crate::datafs::Error| {
        format!("{e} (found by --verify inside the part that would be kept)")
    };
    let mut bar = crate::cmd::Progress::new(format!("verifying {}", df.path().display()));
    for h in df.iter_forward(4) {
        let h = h.map_err(inside)?;
        if h.pos >= end {
            break;
        }
        bar.update(h.pos, end);
        if last.is_some_and(|l| h.tid <= l) {
            return Err(format!(
                "{}: offset {}: transaction id {} is not above the previous one; the kept part is \
                 damaged: restore this file from a backup",
                df.path().display(),
                h.pos,
                h.tid.hex()
            ));
        }
        df.verify_transaction(&h).map_err(inside)?;
        last = Some(h.tid);
        count += 1;
    }
    Ok(count)
}

/// Where a file must be cut for a coherent TID, and what an operator
/// should be told about it. Shared by `cut` and `restore` so both cut
/// restored and live files by the same rules.
pub struct CoherentCut {
    pub cut: CutPosition,
    pub notes: Vec<String>,
    /// The file ends before `tid` although `tid` was committed to it: it
    /// lost transactions the other storages may depend on.
    pub ends_before_tid: bool,
}

pub fn coherent_cut(
    df: &DataFs,
    tid: Tid,
) -> std::result::Result<CoherentCut, crate::datafs::Error> {
    let cut = df.cut_position(tid)?;
    let mut notes = Vec::new();
    if let Some(d) = &cut.damage {
        notes.push(format!(
            "the file is damaged from offset {} ({d}); the damaged bytes are removed with the tail",
            cut.valid_end
        ));
    }
    let mut ends_before_tid = false;
    if cut.position == cut.valid_end && cut.transactions_removed == 0 {
        if let Some(last) = cut.last_kept_tid {
            if last < tid {
                ends_before_tid = true;
                notes.push(format!(
                    "the file ends at TID {} ({}), before the coherent TID {}: it lost \
                     transactions the other storages may depend on; restore it from a backup",
                    last.hex(),
                    last.rfc3339(),
                    tid.hex()
                ));
            }
        }
    }
    Ok(CoherentCut {
        cut,
        notes,
        ends_before_tid,
    })
}

fn plan_one(
    storage: Option<&str>,
    data_fs: &Path,
    tid: Tid,
    take_lock: bool,
    verify: bool,
) -> std::result::Result<Plan, String> {
    let lock = if take_lock {
        Some(lock_data_fs(data_fs)?)
    } else {
        match fsutil::lock_is_held(&sibling(data_fs, ".lock")) {
            Ok(true) => {
                return Err(format!(
                    "{} is locked by a running ZEO server or ZODB process; stop it before cutting",
                    data_fs.display()
                ))
            }
            Ok(false) => None,
            Err(e) => {
                return Err(format!(
                    "cannot check the lock of {}: {e}",
                    data_fs.display()
                ))
            }
        }
    };
    let df = DataFs::open(data_fs).map_err(|e| e.to_string())?;
    let CoherentCut { cut, mut notes, .. } = coherent_cut(&df, tid).map_err(|e| e.to_string())?;
    if verify {
        let n = verify_prefix(&df, cut.position)?;
        notes.push(format!("verified the {n} kept transaction(s)"));
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
    })
}

pub fn run(a: CutArgs, g: &Context) -> Result<()> {
    g.init_stderr_log();
    let take_lock = !a.dry_run;
    let plans = if let Some(file) = &a.file {
        // `requires` guarantees the TID is present with FILE.
        let text = a.tid.as_deref().unwrap_or_default();
        let tid: Tid = text.parse().map_err(|e| CliError::usage(format!("{e}")))?;
        vec![plan_one(None, file, tid, take_lock, a.verify).map_err(CliError::runtime)?]
    } else {
        plan_configured(&a, g, take_lock)?
    };

    let mut out = String::new();
    for p in &plans {
        out.push_str(&render(p, &a));
    }
    emit(&out)?;
    if a.dry_run {
        return Ok(());
    }
    let mut failed = Vec::new();
    let mut done = String::new();
    for p in &plans {
        match execute(p, a.discard_tail) {
            Ok(Some(outcome)) => {
                if let Some(tail) = &outcome.tail {
                    log::info!(
                        "{}: cut; removed bytes kept in {}",
                        p.data_fs.display(),
                        tail.display()
                    );
                }
                done.push_str(&format!("{}: {}\n", p.data_fs.display(), outcome.index));
            }
            Ok(None) => {}
            Err(e) => {
                log::error!("{e}");
                failed.push(e);
            }
        }
    }
    if failed.is_empty() {
        if a.format == Format::Text {
            let n = plans
                .iter()
                .filter(|p| p.cut.position < p.current_size)
                .count();
            emit(&format!("{done}cut {n} of {} file(s)\n", plans.len()))?;
        }
        Ok(())
    } else {
        Err(CliError::runtime(format!(
            "{} of {} cut(s) failed: {}; the other files are cut; fix the cause and run the \
             same cut again (files already at the point are left as they are)",
            failed.len(),
            plans.len(),
            failed.join("; ")
        )))
    }
}

fn plan_configured(a: &CutArgs, g: &Context, take_lock: bool) -> Result<Vec<Plan>> {
    let c = Config::load(g.config.as_deref())?;
    let storages = c.select_storages(&a.storages)?;
    if storages.is_empty() {
        return Err(CliError::usage(format!(
            "no storage to cut: the {} has no [[storage]]; give one, or use `tidstorage cut FILE TID`",
            c.describe_source()
        )));
    }
    let (point, source): (statuslog::Point, String) = match &a.server {
        Some(addr) => {
            let p = DaemonClient::connect(addr)?.dump()?;
            (p.into_iter().collect(), format!("the daemon at {addr}"))
        }
        None => {
            let log_path = a
                .tid_log
                .clone()
                .unwrap_or_else(|| c.server.status_file.clone());
            let replay = statuslog::replay_file(&log_path, ReplayOptions { lenient: a.lenient })
                .map_err(|e| CliError::runtime(e.to_string()))?;
            if let Some((line, why)) = &replay.torn_last_line {
                log::warn!(
                    "{}: damaged last line {line} ignored ({why}); using the point before it",
                    log_path.display()
                );
            }
            (
                replay.point,
                format!("the status file {}", log_path.display()),
            )
        }
    };
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for s in storages {
        let Some(data_fs) = &s.data_fs else {
            errors.push(format!(
                "storage {:?} has no data_fs in the {}",
                s.id,
                c.describe_source()
            ));
            continue;
        };
        let Some(tid) = point.get(&s.id) else {
            errors.push(format!(
                "storage {:?} is not in {source}: it never had a coherency point; \
                 check the storage id, or cut that file by hand with `tidstorage cut FILE TID`",
                s.id
            ));
            continue;
        };
        match plan_one(Some(&s.id), data_fs, *tid, take_lock, a.verify) {
            Ok(p) => plans.push(p),
            Err(e) => errors.push(format!("storage {:?}: {e}", s.id)),
        }
    }
    if !errors.is_empty() {
        return Err(CliError::runtime(format!(
            "nothing was cut, because {} storage(s) cannot be:\n  {}",
            errors.len(),
            errors.join("\n  ")
        )));
    }
    Ok(plans)
}

fn render(p: &Plan, a: &CutArgs) -> String {
    let removed = p.current_size - p.cut.position;
    match a.format {
        Format::Json => {
            let v = serde_json::json!({
                "storage": p.storage,
                "data_fs": p.data_fs.display().to_string(),
                "tid": p.tid.0,
                "tid_hex": p.tid.hex(),
                "tid_base64": p.tid.base64(),
                "tid_time": p.tid.rfc3339(),
                "last_kept": p.cut.last_kept_tid.map(tid_json),
                "current_size": p.current_size,
                "cut_position": p.cut.position,
                "bytes_removed": removed,
                "transactions_removed": p.cut.transactions_removed,
                "damage": p.cut.damage.as_ref().map(|d| d.to_string()),
                "index": {
                    "action": p.index_action(),
                    "existing_covers": p.index_existing,
                    "bytes_read": if p.index_action() == "none" { 0 } else { p.index_scan_bytes() },
                },
                "notes": p.notes,
                "dry_run": a.dry_run,
            });
            format!("{v}\n")
        }
        Format::Tsv => format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            p.storage.as_deref().unwrap_or("").replace('\t', "\\t"),
            p.data_fs.display().to_string().replace('\t', "\\t"),
            p.tid.0,
            p.tid.hex(),
            p.current_size,
            p.cut.position,
            removed,
            p.cut.transactions_removed,
            p.index_action()
        ),
        Format::Text => {
            let mut s = match &p.storage {
                Some(id) => format!("storage {id}\n  data_fs        {}\n", p.data_fs.display()),
                None => format!("file {}\n", p.data_fs.display()),
            };
            s.push_str(&format!(
                "  coherent TID   {} 0x{} {}\n  current size   {}\n  cut position   {}\n  removes        {} bytes, {} transaction(s)\n",
                p.tid.0,
                p.tid.hex(),
                p.tid.rfc3339(),
                p.current_size,
                p.cut.position,
                removed,
                p.cut.transactions_removed
            ));
            s.push_str(&format!("  index          {}\n", p.index_text()));
            for n in &p.notes {
                s.push_str(&format!("  note: {n}\n"));
            }
            s
        }
    }
}

/// What a cut did to one file.
struct Outcome {
    tail: Option<PathBuf>,
    /// One line about the index, for the summary.
    index: String,
}

/// The fresh index of the kept prefix, computed before truncating; `Err`
/// says why there is none (the stale one is then removed).
fn fresh_index(p: &Plan) -> std::result::Result<(FsIndex, String), String> {
    let path = &p.data_fs;
    let df = DataFs::open(path).map_err(|e| e.to_string())?;
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
    let mut bar = crate::cmd::Progress::new(format!("indexing {}", path.display()));
    let made = index::index_for_prefix(&df, p.cut.position, existing, &mut |done, total| {
        bar.update(done, total)
    });
    bar.finish();
    let made = made.map_err(|e| e.to_string())?;
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

/// Cuts one file; `None` when there was nothing to cut.
fn execute(p: &Plan, discard_tail: bool) -> std::result::Result<Option<Outcome>, String> {
    let path = &p.data_fs;
    let ctx = |what: &str, e: std::io::Error| format!("{}: {what}: {e}", path.display());
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| ctx("cannot open for writing", e))?;
    let size = file.metadata().map_err(|e| ctx("cannot stat", e))?.len();
    if size != p.current_size {
        return Err(format!(
            "{}: size changed from {} to {} since the plan was made; nothing done, run cut again",
            path.display(),
            p.current_size,
            size
        ));
    }
    if p.cut.position >= size {
        return Ok(None);
    }
    let fresh = fresh_index(p);
    let mut tail_path = None;
    if !discard_tail {
        let mut target = sibling(path, &format!(".tail-{}", p.tid.hex()));
        let mut n = 1;
        while target.exists() {
            target = sibling(path, &format!(".tail-{}.{n}", p.tid.hex()));
            n += 1;
        }
        let mut tmp =
            fsutil::TempFile::beside(&target).map_err(|e| ctx("cannot create the tail file", e))?;
        fsutil::copy_range(&mut file, p.cut.position, size - p.cut.position, tmp.file())
            .map_err(|e| ctx("cannot save the removed bytes", e))?;
        tmp.persist(&target)
            .map_err(|e| ctx("cannot save the removed bytes", e))?;
        tail_path = Some(target);
    }
    file.set_len(p.cut.position)
        .map_err(|e| ctx("cannot truncate", e))?;
    file.sync_all().map_err(|e| ctx("cannot fsync", e))?;
    let index_path = sibling(path, ".index");
    let written = fresh.and_then(|(ix, how)| {
        ix.save_owned_like(p.cut.position, &index_path, Some(path))
            .map(|()| format!("index written ({how}, {} oids)", ix.len()))
            .map_err(|e| format!("cannot write {}: {e}", index_path.display()))
    });
    let index_line = match written {
        Ok(line) => line,
        Err(why) => {
            log::warn!(
                "{}: no fresh index ({why}); ZODB rebuilds it at its next open",
                path.display()
            );
            match std::fs::remove_file(&index_path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Harmless: ZODB ignores an index covering more than the
                // file holds (`_check_sanity`), and the old one does.
                Err(e) => log::warn!(
                    "{}: the stale index could not be removed ({e}); ZODB will ignore it",
                    index_path.display()
                ),
            }
            "stale index removed; ZODB rebuilds it at its next open".to_string()
        }
    };
    fsutil::sync_parent_dir(path).map_err(|e| ctx("cannot fsync the directory", e))?;
    Ok(Some(Outcome {
        tail: tail_path,
        index: index_line,
    }))
}
