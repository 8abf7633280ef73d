//! tidstorage's record of what one backup run stored in one repository:
//! `<RUN>.tidstorage.json` beside the repozo files, where RUN is the run's
//! timestamp (the line the run appends to the timestamp file). repozo
//! ignores the file; `restore` reads it to cut each restored Data.fs at the
//! run's coherent TID. The format is documented in docs/backup.md; fields
//! are only ever added.
//!
//! Must not: hold anything restore cannot re-check (the chain is re-read
//! from the `.dat`, and the cut position is recomputed from the TID).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Error, Repository, Result, Stamp};
use crate::fsutil;

pub const SUFFIX: &str = ".tidstorage.json";
pub const FORMAT: &str = "tidstorage-backup-manifest";

/// One storage's part of one backup run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// 1.
    pub version: u32,
    /// The run's timestamp, `YYYY-MM-DD-HH-MM-SS` (UTC).
    pub timestamp: String,
    pub storage: String,
    pub data_fs: String,
    /// `"coherent"` (point from the daemon) or `"no-server"` (to the end).
    pub mode: String,
    /// The coherent TID the repository holds the Data.fs up to (`null` in
    /// no-server mode: restore then takes it from the status file copy).
    pub tid: Option<u64>,
    pub tid_hex: Option<String>,
    pub tid_time: Option<String>,
    /// Bytes of the Data.fs that make up the backed-up state: the cut
    /// position of `tid` (no-server: the end of ZODB's valid prefix).
    pub cut_position: u64,
    /// Last TID inside `cut_position`.
    pub last_tid: Option<u64>,
    /// Size of the Data.fs when it was read.
    pub source_size: u64,
    /// `"full"`, `"incremental"` or `"unchanged"` (nothing new to copy).
    pub backup_kind: String,
    /// The file this run wrote (`null` when unchanged).
    pub backup_file: Option<String>,
    /// The files, oldest first, a restore as of `timestamp` concatenates.
    pub chain: Vec<String>,
    /// The whole coherency point the run used (storage id -> TID).
    pub point: std::collections::BTreeMap<String, u64>,
    /// Where the run copied the status file, if it did.
    pub status_file_copy: Option<String>,
}

impl Repository {
    pub fn manifest_path(&self, run: Stamp) -> PathBuf {
        self.path(&format!("{run}{SUFFIX}"))
    }

    /// Writes the manifest durably; refuses to replace an existing one.
    pub fn write_manifest(&self, m: &Manifest, run: Stamp) -> Result<PathBuf> {
        let path = self.manifest_path(run);
        let mut text = serde_json::to_string_pretty(m)
            .map_err(|e| Error::broken(&path, format!("cannot encode the manifest: {e}")))?;
        text.push('\n');
        let mut tmp = fsutil::TempFile::beside(&path).map_err(|e| Error::io(&path, e))?;
        tmp.file()
            .write_all(text.as_bytes())
            .map_err(|e| Error::io(tmp.path(), e))?;
        tmp.persist_new(&path).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }

    /// The newest manifest whose run timestamp is `<= when` (compared as
    /// strings, like repozo's dates), with its stamp.
    pub fn find_manifest(&self, when: &str) -> Result<Option<(Stamp, Manifest)>> {
        let rd = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut best: Option<Stamp> = None;
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(&self.dir, e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(root) = name.strip_suffix(SUFFIX) else {
                continue;
            };
            if let Some(st) = Stamp::parse(root) {
                if root <= when && best.map_or(true, |b| st > b) {
                    best = Some(st);
                }
            }
        }
        let Some(st) = best else { return Ok(None) };
        Ok(Some((st, read_manifest(&self.manifest_path(st))?)))
    }
}

pub fn read_manifest(path: &Path) -> Result<Manifest> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let m: Manifest = serde_json::from_str(&text).map_err(|e| {
        Error::broken(
            path,
            format!("not a tidstorage backup manifest ({e}); restore with --tid-log or --no-cut"),
        )
    })?;
    if m.format != FORMAT || m.version != 1 {
        return Err(Error::broken(
            path,
            format!(
                "manifest format {:?} version {} is not one this tidstorage reads",
                m.format, m.version
            ),
        ));
    }
    Ok(m)
}
