//! `tidstorage tags FILE [--since TID]`: the commit tags of one Data.fs
//! above a floor, as text for people or as the JSON summary a cut, backup
//! or restore on another host takes with `--tags FILE` (docs/tags.md).
//! Reads only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::cmd::{emit, ms_time, names_text, Context};
use crate::datafs::extension::StorageName;
use crate::error::{CliError, Result};
use crate::exactcut::{FloorKind, FloorSpec, TagState, TagSummary};
use crate::tid::Tid;

/// Output formats of `tags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TagsFormat {
    /// One line per transaction, for people.
    Text,
    /// The summary other hosts import (`cut/restore/check --tags FILE`).
    Json,
}

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    tidstorage tags /srv/zeo1/var/Data.fs --since 0x040d2b184daeb8aa\n  \
    tidstorage tags /srv/zeo1/var/Data.fs --since 0x040d2b184daeb8aa --format json > zeo1.tags.json\n  \
    tidstorage tags /srv/zeo1/var/Data.fs --storage '[[[\"10.0.0.5\", 8100]], \"1\"]'")]
pub struct TagsArgs {
    /// The Data.fs to read (read only; a live file is fine).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The floor: list only transactions above this TID (the storage's
    /// coherency point, a backup's). Without it the floor is the file's
    /// first tagged transaction (what was written before tagging began is
    /// taken as it is).
    #[arg(long, value_name = "TID")]
    pub since: Option<String>,
    /// The configured storage id of FILE [default: the [[storage]] whose
    /// data_fs is FILE].
    #[arg(long, value_name = "ID")]
    pub storage: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: TagsFormat,
}

/// `--since` as a floor.
pub fn floor_spec(since: Option<&str>) -> Result<FloorSpec> {
    match since {
        None => Ok(FloorSpec::FirstTagged),
        Some(s) => s
            .parse::<Tid>()
            .map(FloorSpec::Tid)
            .map_err(|e| CliError::usage(format!("--since: {e}"))),
    }
}

/// The configured id of the storage whose data_fs is `file`.
fn storage_of(file: &Path, g: &Context) -> Result<String> {
    let c = g.load_config()?;
    let want = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    for s in &c.storages {
        if let Some(d) = &s.data_fs {
            if std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()) == want {
                return Ok(s.id.clone());
            }
        }
    }
    Err(CliError::usage(format!(
        "{} is not the data_fs of any [[storage]] in the {}; name its storage id with --storage ID",
        file.display(),
        c.describe_source()
    )))
}

pub fn run(a: TagsArgs, g: &Context) -> Result<()> {
    g.init_stderr_log();
    let spec = floor_spec(a.since.as_deref())?;
    let storage = match &a.storage {
        Some(s) => s.clone(),
        None => storage_of(&a.file, g)?,
    };
    let summary = TagSummary::read_file(&a.file, &storage, spec)
        .map_err(|e| CliError::runtime(e.to_string()))?;
    match a.format {
        TagsFormat::Json => emit(&format!("{}\n", summary.to_json())),
        TagsFormat::Text => {
            let names: HashMap<StorageName, String> = g
                .load_config()
                .map(|c| {
                    c.storages
                        .iter()
                        .map(|s| (StorageName::of(&s.id), s.id.clone()))
                        .collect()
                })
                .unwrap_or_default();
            emit(&text(&summary, &names))
        }
    }
}

fn text(s: &TagSummary, known: &HashMap<StorageName, String>) -> String {
    let mut out = format!(
        "storage {}\nfile {} (size {}, valid end {})\n",
        s.storage, s.data_fs, s.size, s.valid_end
    );
    if let Some(d) = &s.damage {
        out.push_str(&format!("damaged tail (counts as absent): {d}\n"));
    }
    let floor_tid = s
        .floor
        .tid
        .map(|t| format!("{} ({})", t.hex(), t.rfc3339()))
        .unwrap_or_else(|| "none".into());
    out.push_str(&match s.floor.kind {
        FloorKind::Given => format!("floor: tid {floor_tid}, position {}\n", s.floor.position),
        FloorKind::FirstTagged => format!(
            "floor: no tid given; the first tagged transaction is at {} (last before it: {floor_tid})\n",
            s.floor.position
        ),
        FloorKind::NoTags => format!(
            "floor: no tid given and no tagged transaction: the whole file ({floor_tid}) is kept as it is\n"
        ),
    });
    out.push_str(&format!(
        "{} transaction(s) above the floor\n",
        s.transactions.len()
    ));
    if !s.transactions.is_empty() {
        out.push_str(&format!(
            "{:<16}  {:<27}  {:>12}  {:<16}  {:<24}  STORAGES\n",
            "TID", "TIME", "POSITION", "COMMIT", "STARTED"
        ));
    }
    for t in &s.transactions {
        let (cid, started, what) = match &t.tag {
            TagState::Tagged(tag) => (
                format!("{:016x}", tag.commit_id),
                ms_time(tag.start_ms),
                names_text(&tag.storages, known),
            ),
            TagState::Untagged => ("-".into(), "-".into(), "untagged".into()),
            TagState::Unreadable(why) => ("-".into(), "-".into(), format!("unreadable tag: {why}")),
        };
        out.push_str(&format!(
            "{}  {:<27}  {:>12}  {cid:<16}  {started:<24}  {what}\n",
            t.tid.hex(),
            t.tid.rfc3339(),
            t.pos
        ));
    }
    out
}
