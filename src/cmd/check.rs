//! `tidstorage check`: on the live files (read only), the transactions
//! above the coherency point that are incomplete right now — tagged, and
//! absent from a storage their tag names — with their age and storages.
//! What an operator runs when the point stops moving (docs/tags.md).
//!
//! Live files grow while they are read: a commit still finishing looks
//! incomplete. So every file is read twice and only what is incomplete in
//! both reads is reported, and `--older-than` hides what is younger.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::client::DaemonClient;
use crate::cmd::{emit, Context};
use crate::cmd::{ms_time, names_text};
use crate::config::parse_duration;
use crate::datafs::extension::StorageName;
use crate::error::{CliError, Result};
use crate::exactcut::{exact_cut, read_storages, Plan, Reason, TagSummary};
use crate::statuslog::{self, ReplayOptions};
use crate::tid::Tid;

/// Output formats of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit status: 0 nothing incomplete, 1 incomplete transactions found, \
    2 usage, 3 a file could not be read.\n\nExamples:\n  \
    tidstorage check                          above the status file's point\n  \
    tidstorage check --server 127.0.0.1:9001  above the running daemon's point\n  \
    tidstorage check --older-than 1m --format json"
)]
pub struct CheckArgs {
    /// Status file to take the point from (default: [server] status_file).
    #[arg(long, value_name = "FILE")]
    pub tid_log: Option<PathBuf>,
    /// Take the point from a running daemon (HOST:PORT).
    #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["tid_log", "since"])]
    pub server: Option<String>,
    /// Use this TID as every storage's floor instead of a point.
    #[arg(long, value_name = "TID", conflicts_with = "tid_log")]
    pub since: Option<String>,
    /// Skip damaged status-file lines instead of refusing.
    #[arg(long)]
    pub lenient: bool,
    /// Check only this configured storage (repeatable); the others' tags
    /// count as outside the configuration.
    #[arg(long = "storage", value_name = "ID")]
    pub storages: Vec<String>,
    /// A storage of another host, as exported there by `tidstorage tags
    /// --format json` (repeatable).
    #[arg(long = "tags", value_name = "FILE")]
    pub tags: Vec<PathBuf>,
    /// Report only transactions whose commit started at least this long ago.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub older_than: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: CheckFormat,
}

/// One incomplete commit, over every storage that holds a part of it.
#[derive(Debug, Clone, PartialEq)]
struct Incomplete {
    commit_id: u64,
    start_ms: u64,
    /// Storage id -> TID of its part.
    present: BTreeMap<String, Tid>,
    missing: Vec<String>,
}

fn incomplete(plan: &Plan) -> BTreeMap<u64, Incomplete> {
    let mut out: BTreeMap<u64, Incomplete> = BTreeMap::new();
    for p in &plan.storages {
        for r in &p.removed {
            let (Reason::Incomplete { missing }, Some(cid), Some(ms)) =
                (&r.reason, r.commit_id, r.start_ms)
            else {
                continue;
            };
            let e = out.entry(cid).or_insert_with(|| Incomplete {
                commit_id: cid,
                start_ms: ms,
                present: BTreeMap::new(),
                missing: missing.clone(),
            });
            e.present.insert(p.storage.clone(), r.tid);
        }
    }
    out
}

/// Floors per configured storage: the point's TID, or the first tagged
/// transaction for a storage the point does not have.
fn point(a: &CheckArgs, c: &crate::config::Config) -> Result<(BTreeMap<String, Tid>, String)> {
    if let Some(s) = &a.since {
        let t: Tid = s
            .parse()
            .map_err(|e| CliError::usage(format!("--since: {e}")))?;
        let all = c.storages.iter().map(|s| (s.id.clone(), t)).collect();
        return Ok((all, format!("--since {}", t.hex())));
    }
    if let Some(addr) = &a.server {
        let p = DaemonClient::connect(addr)?.dump()?;
        return Ok((p.into_iter().collect(), format!("the daemon at {addr}")));
    }
    let path = a
        .tid_log
        .clone()
        .unwrap_or_else(|| c.server.status_file.clone());
    if !path.exists() && a.tid_log.is_none() {
        log::warn!(
            "{}: no status file; every storage is checked from its first tagged transaction",
            path.display()
        );
        return Ok((
            BTreeMap::new(),
            format!("no status file ({})", path.display()),
        ));
    }
    let r = statuslog::replay_file(&path, ReplayOptions { lenient: a.lenient })
        .map_err(|e| CliError::runtime(e.to_string()))?;
    Ok((r.point, format!("the status file {}", path.display())))
}

fn read_all(
    storages: &[&crate::config::StorageConfig],
    floors: &BTreeMap<String, Tid>,
    imported: &[TagSummary],
) -> Result<Vec<TagSummary>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for s in storages {
        match &s.data_fs {
            Some(p) => files.push((s.id.as_str(), p.as_path())),
            None => errors.push(format!(
                "storage {:?} has no data_fs in the configuration",
                s.id
            )),
        }
    }
    match read_storages(files, floors) {
        Ok(mut inputs) if errors.is_empty() => {
            inputs.extend(imported.iter().cloned());
            Ok(inputs)
        }
        Ok(_) => Err(CliError::runtime(errors.join("\n"))),
        Err(e) => {
            errors.extend(e.into_iter().map(|(id, e)| format!("storage {id:?}: {e}")));
            Err(CliError::runtime(errors.join("\n")))
        }
    }
}

pub fn run(a: CheckArgs, g: &Context) -> Result<()> {
    g.init_stderr_log();
    let c = g.load_config()?;
    let storages = c.select_storages(&a.storages)?;
    let mut imported = Vec::new();
    for path in &a.tags {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::runtime(format!("cannot read {}: {e}", path.display())))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            CliError::runtime(format!(
                "{}: not JSON ({e}); expected the output of `tidstorage tags --format json`",
                path.display()
            ))
        })?;
        imported.push(
            TagSummary::from_json(&v)
                .map_err(|e| CliError::runtime(format!("{}: {e}", path.display())))?,
        );
    }
    if storages.is_empty() && imported.is_empty() {
        return Err(CliError::usage(format!(
            "nothing to check: the {} has no [[storage]] and no --tags file was given",
            c.describe_source()
        )));
    }
    let (floors, source) = point(&a, &c)?;
    let plan_err = |e: crate::exactcut::PlanError| CliError::runtime(e.to_string());
    let first = exact_cut(&read_all(&storages, &floors, &imported)?).map_err(plan_err)?;
    let mut found = incomplete(&first);
    let mut plan = first;
    if !found.is_empty() {
        // Read again: keep only what is still incomplete (not a commit that
        // was finishing during the first read).
        let again = exact_cut(&read_all(&storages, &floors, &imported)?).map_err(plan_err)?;
        let now = incomplete(&again);
        found.retain(|cid, _| now.contains_key(cid));
        for (cid, i) in found.iter_mut() {
            *i = now[cid].clone();
        }
        plan = again;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64;
    let min_age = a.older_than.as_millis() as u64;
    let mut report: Vec<&Incomplete> = found
        .values()
        .filter(|i| now_ms.saturating_sub(i.start_ms) >= min_age)
        .collect();
    report.sort_by_key(|i| i.start_ms);
    let known: HashMap<StorageName, String> = plan
        .storages
        .iter()
        .map(|p| (StorageName::of(&p.storage), p.storage.clone()))
        .collect();
    // Transactions above the floor whose storages are unknown: they end what
    // an exact cut keeps; worth saying (old clients, a storage id mismatch).
    let mut unknown: BTreeMap<&str, BTreeMap<&'static str, u64>> = BTreeMap::new();
    for p in &plan.storages {
        for r in &p.removed {
            if matches!(
                r.reason,
                Reason::Untagged
                    | Reason::UnreadableTag(_)
                    | Reason::UnknownStorage { .. }
                    | Reason::NotNamed
                    | Reason::DuplicateCommit
            ) {
                *unknown
                    .entry(p.storage.as_str())
                    .or_default()
                    .entry(r.reason.code())
                    .or_default() += 1;
            }
        }
    }
    match a.format {
        CheckFormat::Json => {
            let v = json!({
                "source": source,
                "incomplete": report.iter().map(|i| json!({
                    "commit_id": format!("{:016x}", i.commit_id),
                    "started": ms_time(i.start_ms),
                    "age_seconds": now_ms.saturating_sub(i.start_ms) as f64 / 1000.0,
                    "present": i.present.iter().map(|(s, t)| json!({"storage": s, "tid": t.hex()})).collect::<Vec<_>>(),
                    "missing": i.missing,
                })).collect::<Vec<_>>(),
                "unknown": unknown,
                "storages": plan.storages.iter().map(|p| json!({
                    "storage": p.storage,
                    "floor_position": p.floor.position,
                    "floor_kind": p.floor.kind.as_str(),
                    "above_floor": p.kept_beyond_floor + p.removed.len() as u64,
                    "exact_cut_keeps": p.kept_beyond_floor,
                })).collect::<Vec<_>>(),
            });
            emit(&format!("{v}\n"))?;
        }
        CheckFormat::Text => {
            let mut out = format!("floors from {source}\n");
            for p in &plan.storages {
                out.push_str(&format!(
                    "{}: {} transaction(s) above the floor, {} complete before the first that is not\n",
                    p.storage,
                    p.kept_beyond_floor + p.removed.len() as u64,
                    p.kept_beyond_floor
                ));
            }
            for (s, counts) in &unknown {
                for (code, n) in counts {
                    out.push_str(&format!("{s}: {n} {code} transaction(s) above the floor (their storages are unknown)\n"));
                }
            }
            if report.is_empty() {
                out.push_str("no incomplete transaction\n");
            }
            for i in &report {
                out.push_str(&format!(
                    "INCOMPLETE commit {:016x} started {} ({:.1} s ago): on {}; missing on {}\n",
                    i.commit_id,
                    ms_time(i.start_ms),
                    now_ms.saturating_sub(i.start_ms) as f64 / 1000.0,
                    i.present
                        .iter()
                        .map(|(s, t)| format!("{s} (tid {})", t.hex()))
                        .collect::<Vec<_>>()
                        .join(", "),
                    names_text(
                        &i.missing
                            .iter()
                            .map(|m| StorageName::of(m))
                            .collect::<Vec<_>>(),
                        &known
                    ),
                ));
            }
            emit(&out)?;
        }
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(CliError::no(format!(
            "{} incomplete transaction(s) above the point: a partial commit (the client logged \
             PARTIAL COMMIT) or a storage that stopped mid-commit; `tidstorage cut` removes them \
             once the ZEO servers are stopped",
            report.len()
        )))
    }
}
