//! A storage's blob directory carried through backup, restore and cut, at
//! the TID its Data.fs is cut at (docs/blobs.md).
//!
//! Owns: which blob run goes with which Data.fs backup file (the run is
//! named after the file: `2026-12-01-10-00-00.deltafs` goes with
//! `blobs/runs/2026-12-01-10-00-00.blobs`), what a backup's run lists
//! (the previous run plus the blob records of the Data.fs delta just
//! copied, or every blob record of the prefix), the directory a restore
//! builds, its check and its incremental catch-up, and the cut of a live
//! directory after its Data.fs.
//!
//! Must not: walk or stat the unchanged tree in an incremental backup, or
//! take a file from anywhere but the storage's blob directory (and
//! `<blob_dir>.old` after a pack).

use std::path::Path;

use super::{Error, Result};
use crate::blobs::snapshot::Contents;
use crate::blobs::{self, BlobRepo, Manifest, SnapshotReport};
use crate::datafs::DataFs;
use crate::fsutil;
use crate::tid::Tid;

/// Why a backup's blob run was not written.
pub(super) enum BackupFailure {
    /// Files the backed-up prefix names are in neither the blob directory
    /// nor `<blob_dir>.old` (a pack removed them, or they are lost).
    Missing(blobs::Error),
    Other(Error),
}

impl From<Error> for BackupFailure {
    fn from(e: Error) -> BackupFailure {
        BackupFailure::Other(e)
    }
}

/// The run name of a Data.fs backup file (its timestamp).
pub(super) fn run_name(backup_file: &str) -> &str {
    backup_file.get(..19).unwrap_or(backup_file)
}

/// Writes the blob run `stamp` for a Data.fs backup that copied `df` up
/// to `end` (last TID `last_tid`). `delta`: the backup was incremental,
/// from `start`, continuing the backup file named `previous`; the run then
/// lists the previous run's files plus the delta's blob records, when the
/// previous run is that file's. Otherwise every blob record of `[4, end)`
/// is listed (files the newest run holds are still not copied again).
pub(super) fn back_up(
    blob_dir: &Path,
    repository: &Path,
    df: &DataFs,
    stamp: &str,
    end: u64,
    last_tid: Option<Tid>,
    delta: Option<(u64, &str)>,
) -> std::result::Result<SnapshotReport, BackupFailure> {
    let repo = BlobRepo::at(repository);
    let latest = repo.latest().map_err(Error::from)?;
    let records_of = |from: u64| -> Result<Vec<crate::datafs::blobrecords::BlobRecord>> {
        Ok(df
            .blob_records(from, end)
            .map_err(|e| Error::from(e).doing("cannot read the blob records of the Data.fs"))?
            .records)
    };
    let incremental = match (delta, &latest) {
        (Some((start, previous)), Some(m)) if m.stamp == run_name(previous) => Some((start, m)),
        _ => None,
    };
    let written = match incremental {
        Some((start, previous)) => {
            let delta = records_of(start)?;
            repo.write_snapshot(
                stamp,
                blob_dir,
                last_tid,
                Contents::Incremental {
                    previous,
                    delta: &delta,
                },
            )
        }
        None => {
            let records = records_of(4)?;
            repo.write_snapshot(
                stamp,
                blob_dir,
                last_tid,
                Contents::Full {
                    records: &records,
                    previous: latest.as_ref(),
                },
            )
        }
    };
    match written {
        Ok(r) => Ok(r),
        Err(e) if e.missing().is_some() => Err(BackupFailure::Missing(e)),
        Err(e) => Err(BackupFailure::Other(
            Error::from(e).doing("cannot back up the blob directory"),
        )),
    }
}

/// True when the blob run of the backup file `name` exists.
pub(super) fn has_run(repository: &Path, name: &str) -> Result<bool> {
    let p = BlobRepo::at(repository).manifest_path(run_name(name));
    fsutil::exists(&p).map_err(|e| Error::io(&p, e).doing("cannot look for"))
}

/// After `--keep-full` pruned the Data.fs backups: the blob runs whose
/// backup file is gone go too, with the pool files only they named.
pub(super) fn prune(
    repository: &Path,
    kept_files: &[String],
) -> Result<blobs::snapshot::PruneReport> {
    let keep: Vec<&str> = kept_files.iter().map(|f| run_name(f)).collect();
    Ok(BlobRepo::at(repository).prune(&keep)?)
}

/// The run a restore from the chain ending with `last_file` installs.
pub(super) fn run_for(repository: &Path, last_file: &str) -> Result<Manifest> {
    let repo = BlobRepo::at(repository);
    let name = run_name(last_file);
    if !has_run(repository, last_file)? {
        return Err(Error::refused(format!(
            "the repository has no blob backup for {last_file} ({} is missing: blob_dir was \
             configured after that backup, or its blob backup failed); restore a later run \
             with --date, or restore the Data.fs alone with a configuration without blob_dir",
            repo.manifest_path(name).display()
        )));
    }
    Ok(repo.read_manifest(name)?)
}

/// A blob directory a restore will put in place with its Data.fs.
pub(super) enum Planned {
    /// Built beside the target, installed after the Data.fs.
    Built(blobs::Built),
    /// The target already holds exactly the run at this TID (a restore
    /// whose last step failed): nothing to install.
    Present,
}

/// Builds the blob directory of run `m` at `upto` beside `target`.
/// An existing non-empty target is replaced (kept aside) with `replace`;
/// without it, it must already be this result.
pub(super) fn build(
    repository: &Path,
    m: &Manifest,
    upto: Tid,
    target: &Path,
    replace: bool,
) -> Result<Planned> {
    let repo = BlobRepo::at(repository);
    if !replace && non_empty(target)? {
        let same = blobs::compare(m, upto, target, false)
            .map(|r| r.same())
            .unwrap_or(false);
        if same {
            return Ok(Planned::Present);
        }
        return Err(Error::refused(format!(
            "{} exists and is not this restore's blob directory; restore with --force to \
             replace it (it is kept as {}.before-restore-<time>), or use --output-dir",
            target.display(),
            target.display()
        )));
    }
    Ok(Planned::Built(blobs::build_beside(
        &repo, m, upto, target, replace,
    )?))
}

fn non_empty(dir: &Path) -> Result<bool> {
    blobs::restore::non_empty(dir).map_err(|e| Error::from(e).doing("cannot list"))
}

/// What an incremental restore did to a standby's blob directory.
#[derive(Debug, Clone, Default)]
pub struct CaughtUp {
    pub added: u64,
    pub added_bytes: u64,
}

/// Brings the live blob directory `target` of a standby to run `m` at
/// `upto` by adding the files it lacks, when it holds nothing else
/// (`Ok(None)` otherwise: the caller rebuilds it whole). Files above the
/// Data.fs's current end stay invisible to ZODB until the Data.fs grows.
pub(super) fn catch_up(
    repository: &Path,
    m: &Manifest,
    upto: Tid,
    target: &Path,
) -> Result<Option<CaughtUp>> {
    let repo = BlobRepo::at(repository);
    if !non_empty(target)? {
        return Ok(None);
    }
    let cmp = blobs::compare(m, upto, target, false)?;
    if cmp.layout_differs.is_some() || !cmp.extra.is_empty() || !cmp.differ.is_empty() {
        return Ok(None);
    }
    for rel in &cmp.stale {
        // A temporary of an incremental restore killed before its rename.
        let p = target.join(rel);
        match std::fs::remove_file(&p) {
            Ok(()) => log::info!(
                "removed {}: the temporary of an interrupted incremental restore",
                p.display()
            ),
            Err(e) => log::warn!("cannot remove {}: {e}; remove it by hand", p.display()),
        }
    }
    let mut r = CaughtUp::default();
    for (oid, tid) in &cmp.missing {
        let e = m.get(*oid, *tid).expect("compare lists entries of the run");
        let dir = target.join(m.layout.oid_dir(*oid));
        std::fs::create_dir_all(&dir).map_err(|err| Error::io(&dir, err).doing("cannot create"))?;
        let dest = target.join(m.layout.blob_path(*oid, *tid));
        blobs::restore::install_file(&repo, e, &dest)?;
        r.added += 1;
        r.added_bytes += e.size;
    }
    if r.added > 0 {
        blobs::snapshot::syncfs(target)?;
    }
    Ok(Some(r))
}
