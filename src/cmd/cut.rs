//! `tidstorage cut`: flags, the plan from [`storageset::cut`], its
//! rendering (text, JSON, TSV), and the execution. What a cut does, and
//! why it is safe to run again, is documented there.

use std::path::PathBuf;

use crate::cmd::{emit, tid_json, Context, Format};
use crate::datafs::index::IndexMethod;
use crate::error::{CliError, Result};
use crate::storageset::cut::{self, CutOptions, ExactOptions, Plan, PointSource};
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
    /// Cut at the point itself (the status file's or the daemon's), the
    /// behaviour before commit tags; by default the cut keeps, above the
    /// point, every transaction that the commit tags show complete on every
    /// storage it names (the exact cut, docs/tags.md).
    #[arg(long, conflicts_with = "file")]
    pub at_point: bool,
    /// With the exact cut: this TID is the floor known to be consistent on
    /// every storage, instead of the point (e.g. when there is no status
    /// file).
    #[arg(long, value_name = "TID", conflicts_with_all = ["file", "at_point"])]
    pub since: Option<String>,
    /// With the exact cut: the tag summary of a storage on another host
    /// (`tidstorage tags FILE --since TID --format json` there); repeatable.
    #[arg(long = "tags", value_name = "FILE", conflicts_with_all = ["file", "at_point"])]
    pub tags: Vec<PathBuf>,
    /// With FILE: its blob directory, cut at the same TID (files above it
    /// move to <DIR>.tail-<tid hex>/, tmp/ is emptied). Without it the
    /// one-file form leaves blob files alone.
    #[arg(long, value_name = "DIR", requires = "file")]
    pub blob_dir: Option<PathBuf>,
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

pub fn run(a: CutArgs, g: &Context) -> Result<()> {
    g.init_stderr_log();
    let since = match &a.since {
        Some(t) => Some(
            t.parse::<Tid>()
                .map_err(|e| CliError::usage(format!("--since: {e}")))?,
        ),
        None => None,
    };
    let o = CutOptions {
        exact: (!a.at_point).then(|| ExactOptions {
            since,
            tags: a.tags.clone(),
        }),
        dry_run: a.dry_run,
        verify: a.verify,
        quiet: g.quiet(),
    };
    let plans = if let Some(file) = &a.file {
        // `requires` guarantees the TID is present with FILE.
        let text = a.tid.as_deref().unwrap_or_default();
        let tid: Tid = text.parse().map_err(|e| CliError::usage(format!("{e}")))?;
        if a.blob_dir.is_none() {
            log::info!(
                "no --blob-dir: blob files are left alone (give the storage's blob directory \
                 to cut it at the same TID)"
            );
        }
        vec![cut::plan_file(file, a.blob_dir.as_deref(), tid, &o)?]
    } else {
        let c = g.load_config()?;
        let source = match &a.server {
            Some(addr) => PointSource::Daemon(addr.clone()),
            None => PointSource::StatusFile {
                path: a.tid_log.clone(),
                lenient: a.lenient,
            },
        };
        cut::plan_configured(&c, &a.storages, &source, &o)?
    };

    let mut out = String::new();
    for p in &plans {
        out.push_str(&render(p, &a));
    }
    if a.dry_run {
        if a.format == Format::Text {
            out.push_str("dry run: nothing was changed\n");
        }
        return emit(&out);
    }
    emit(&out)?;
    let report = cut::execute(&plans, a.discard_tail, g.quiet());
    let mut done = String::new();
    for o in &report.cut {
        if let Some(tail) = &o.tail {
            log::info!(
                "{}: cut; removed bytes kept in {}",
                o.data_fs.display(),
                tail.display()
            );
        }
        if let Some(i) = &o.index {
            done.push_str(&format!("{}: {i}\n", o.data_fs.display()));
        }
        if let Some(b) = &o.blobs {
            done.push_str(&format!(
                "{}: blob directory cut: {} file(s) ({} bytes) above the TID {}, {} temporary \
                 file(s) deleted\n",
                o.data_fs.display(),
                b.moved,
                b.moved_bytes,
                match &b.tail_dir {
                    Some(t) => format!("moved to {}", t.display()),
                    None => "deleted".into(),
                },
                b.deleted
            ));
        }
    }
    for e in &report.failed {
        log::error!("{e}");
    }
    if report.failed.is_empty() {
        if a.format == Format::Text {
            let n = plans
                .iter()
                .filter(|p| p.cuts() || p.blobs.as_ref().is_some_and(|b| !b.is_empty()))
                .count();
            emit(&format!("{done}cut {n} of {} file(s)\n", plans.len()))?;
        }
        Ok(())
    } else {
        let done: Vec<String> = report
            .cut
            .iter()
            .map(|o| o.data_fs.display().to_string())
            .collect();
        let others = if done.is_empty() {
            "no file was cut".to_string()
        } else {
            format!("cut: {}", done.join(", "))
        };
        Err(CliError::runtime(format!(
            "{} of {} cut(s) failed: {}; {others}; fix the cause and run the same cut again \
             (files already at the point are left as they are)",
            report.failed.len(),
            plans.len(),
            report
                .failed
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )))
    }
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
                "point_tid": p.point_tid.map(|t| t.0),
                "blobs": p.blobs.as_ref().map(|b| serde_json::json!({
                    "blob_dir": b.blob_dir.display().to_string(),
                    "layout": b.layout.name(),
                    "tail_dir": b.tail_dir.display().to_string(),
                    "files_above": b.blob_files(),
                    "moves": b.moves.len(),
                    "bytes_above": b.move_bytes(),
                    "tmp_files": b.tmp_files.len(),
                    "tmp_bytes": b.tmp_bytes(),
                })),
                "exact": p.exact.as_ref().map(|x| serde_json::json!({
                    "floor": {
                        "kind": x.floor.kind.as_str(),
                        "tid": x.floor.tid.map(|t| t.0),
                        "position": x.floor.position,
                    },
                    "kept_beyond_point": x.kept_beyond_floor,
                    "removed": x.removed.iter().map(|r| serde_json::json!({
                        "tid": r.tid.0,
                        "hex": r.tid.hex(),
                        "reason": r.reason.code(),
                        "why": r.reason.to_string(),
                    })).collect::<Vec<_>>(),
                })),
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
            if let Some(x) = &p.exact {
                s.push_str(&format!(
                    "  exact cut      keeps {} transaction(s) beyond the {}\n",
                    x.kept_beyond_floor,
                    match x.floor.kind {
                        crate::exactcut::FloorKind::Given => "point".to_string(),
                        crate::exactcut::FloorKind::FirstTagged => {
                            "untagged history (no point: kept as it is)".to_string()
                        }
                        crate::exactcut::FloorKind::NoTags => {
                            "file's start (no point and no tags: the whole file is kept)"
                                .to_string()
                        }
                    }
                ));
                for r in &x.removed {
                    s.push_str(&format!("  removes        {}: {}\n", r.tid.hex(), r.reason));
                }
            }
            s.push_str(&format!("  index          {}\n", index_text(p)));
            match &p.blobs {
                Some(b) if b.is_empty() => s.push_str(&format!(
                    "  blobs          {}: nothing above the TID, tmp/ empty\n",
                    b.blob_dir.display()
                )),
                Some(b) => {
                    let temps = b.moves.len() - b.blob_files();
                    s.push_str(&format!(
                        "  blobs          {}: {} file(s) above the TID ({} bytes){} to {}; {} file(s) in tmp/ ({} bytes) to delete\n",
                        b.blob_dir.display(),
                        b.blob_files(),
                        b.move_bytes(),
                        if temps > 0 { format!(" and {temps} uncommitted temporar(ies)") } else { String::new() },
                        if a.discard_tail { "delete".to_string() } else { format!("move to {}", b.tail_dir.display()) },
                        b.tmp_files.len(),
                        b.tmp_bytes()
                    ))
                }
                None if p.storage.is_none() => {
                    s.push_str("  blobs          left alone (no --blob-dir)\n")
                }
                None => {}
            }
            for n in &p.notes {
                s.push_str(&format!("  note: {n}\n"));
            }
            s
        }
    }
}

fn index_text(p: &Plan) -> String {
    if !p.cuts() {
        return "left as it is (nothing is cut)".into();
    }
    let n = p.index_scan_bytes();
    match p.index_method {
        IndexMethod::Built => format!(
            "{}build a fresh Data.fs.index by reading the {n} kept bytes",
            if p.index_existing.is_some() {
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
