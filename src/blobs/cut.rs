//! Cutting a live blob directory at a TID (after its Data.fs was cut).
//!
//! Owns: the plan (every blob file with a tid above T, committed or not,
//! every temporary in an oid directory (uncommitted data, whatever its tid),
//! every file under `tmp/`; counts and bytes) and its execution: the blob
//! files and oid-directory temporaries move to `<blob_dir>.tail-<T hex>/`
//! under the same relative paths (or are deleted with `discard`), the
//! files under `tmp/` are deleted, oid directories left empty are removed,
//! every changed directory is fsynced. Rerunning is harmless: a second
//! plan is empty, and a file already moved (same size and content) is not
//! moved twice. Must not touch a file at or below T.

use std::io;
use std::path::{Path, PathBuf};

use super::layout::{self, read_layout, FileKind, Found, Layout, LAYOUT_MARKER, TMP_DIR};
use super::snapshot::{crc_of, remove_empty_dirs_up_to};
use super::{create_dirs, sync_dir, Error, ErrorKind, Result};
use crate::fsutil;
use crate::tid::Tid;

/// What a cut at `upto` would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutPlan {
    pub blob_dir: PathBuf,
    pub layout: Layout,
    pub upto: Tid,
    /// `<blob_dir>.tail-<upto hex>`.
    pub tail_dir: PathBuf,
    /// Blob files above `upto` and oid-directory temporaries, to move.
    pub moves: Vec<Found>,
    /// Files under `tmp/`, to delete (relative to the blob directory).
    pub tmp_files: Vec<(PathBuf, u64)>,
}

impl CutPlan {
    pub fn blob_files(&self) -> usize {
        self.moves
            .iter()
            .filter(|f| matches!(f.kind, FileKind::Blob(_)))
            .count()
    }

    pub fn move_bytes(&self) -> u64 {
        self.moves.iter().map(|f| f.size).sum()
    }

    pub fn tmp_bytes(&self) -> u64 {
        self.tmp_files.iter().map(|(_, s)| *s).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.moves.is_empty() && self.tmp_files.is_empty()
    }
}

/// What a cut did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutReport {
    pub moved: u64,
    pub moved_bytes: u64,
    pub deleted: u64,
    pub deleted_bytes: u64,
    /// Where the moved files are (None with `discard` or nothing moved).
    pub tail_dir: Option<PathBuf>,
}

/// The plan of a cut of `blob_dir` at `upto` (walks the directory; the
/// dry run of `cut` stops here).
pub fn plan_cut(blob_dir: &Path, upto: Tid) -> Result<CutPlan> {
    let blob_dir = fsutil::resolve(blob_dir).map_err(|e| Error::io(blob_dir, e))?;
    let layout = read_layout(&blob_dir)?;
    let walked = layout::walk(&blob_dir, layout)?;
    let moves = walked
        .files
        .into_iter()
        .filter(|f| layout::removed_by_cut(f.kind, upto))
        .collect();
    let tail_dir = fsutil::sibling(&blob_dir, &format!(".tail-{}", upto.hex()));
    Ok(CutPlan {
        blob_dir,
        layout,
        upto,
        tail_dir,
        moves,
        tmp_files: walked.tmp,
    })
}

/// Carries out `plan`. With `discard`, files above the TID are deleted
/// instead of moved.
pub fn execute_cut(plan: &CutPlan, discard: bool) -> Result<CutReport> {
    let mut r = CutReport::default();
    let mut created = Vec::new();
    let mut touched: Vec<PathBuf> = Vec::new();
    if !discard && !plan.moves.is_empty() {
        create_dirs(&plan.tail_dir, &mut created)?;
        // Like ZODB's `<blob_dir>.old`, the tail is a blob directory.
        let marker = plan.tail_dir.join(LAYOUT_MARKER);
        let current = match std::fs::read_to_string(&marker) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&marker, e)),
        };
        // Written whole or not at all (a failed write must not leave an
        // empty marker a rerun would take as written); a temporary left by
        // a killed cut goes.
        let stale = format!(".{LAYOUT_MARKER}.tmp-");
        for ent in std::fs::read_dir(&plan.tail_dir).map_err(|e| Error::io(&plan.tail_dir, e))? {
            let ent = ent.map_err(|e| Error::io(&plan.tail_dir, e))?;
            if ent.file_name().to_string_lossy().starts_with(&stale) {
                std::fs::remove_file(ent.path()).map_err(|e| Error::io(&ent.path(), e))?;
            }
        }
        if current.as_deref().map(str::trim) != Some(plan.layout.name()) {
            let write = || -> io::Result<()> {
                let mut tmp = fsutil::TempFile::beside(&marker)?;
                std::io::Write::write_all(tmp.file(), plan.layout.name().as_bytes())?;
                tmp.persist(&marker)
            };
            write().map_err(|e| Error::io(&marker, e))?;
        }
        touched.push(plan.tail_dir.clone());
        r.tail_dir = Some(plan.tail_dir.clone());
    }
    let mut emptied = Vec::new();
    for f in &plan.moves {
        let src = plan.blob_dir.join(&f.rel);
        if !fsutil::exists(&src).map_err(|e| Error::io(&src, e))? {
            continue; // gone since the plan (a rerun, or ZODB aborted it)
        }
        if discard {
            std::fs::remove_file(&src).map_err(|e| Error::io(&src, e))?;
            r.deleted += 1;
            r.deleted_bytes += f.size;
        } else {
            let dst = plan.tail_dir.join(&f.rel);
            let dir = dst.parent().unwrap_or(&plan.tail_dir).to_path_buf();
            create_dirs(&dir, &mut created)?;
            if fsutil::exists(&dst).map_err(|e| Error::io(&dst, e))? {
                // Moved by an earlier cut at the same TID, then written
                // again? Only an identical file may be dropped.
                if !same_content(&src, &dst)? {
                    return Err(Error::new(&src, ErrorKind::TailConflict { other: dst }));
                }
                std::fs::remove_file(&src).map_err(|e| Error::io(&src, e))?;
            } else {
                std::fs::rename(&src, &dst).map_err(|e| Error::io(&src, e))?;
            }
            touched.push(dir);
            r.moved += 1;
            r.moved_bytes += f.size;
        }
        if let Some(d) = src.parent() {
            emptied.push(d.to_path_buf());
        }
    }
    for (rel, size) in &plan.tmp_files {
        let p = plan.blob_dir.join(rel);
        match std::fs::remove_file(&p) {
            Ok(()) => {
                r.deleted += 1;
                r.deleted_bytes += size;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&p, e)),
        }
        if let Some(d) = p.parent() {
            touched.push(d.to_path_buf());
        }
    }
    for d in created.iter().filter_map(|d| d.parent()) {
        touched.push(d.to_path_buf());
    }
    touched.sort();
    touched.dedup();
    for d in &touched {
        sync_dir(d)?;
    }
    emptied.sort();
    emptied.dedup();
    let tmp = plan.blob_dir.join(TMP_DIR);
    for d in emptied {
        if d == tmp {
            continue;
        }
        // Syncs the first directory that stays (the source of the moves).
        remove_empty_dirs_up_to(&d, &plan.blob_dir)?;
    }
    Ok(r)
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let mut fa = std::fs::File::open(a).map_err(|e| Error::io(a, e))?;
    let mut fb = std::fs::File::open(b).map_err(|e| Error::io(b, e))?;
    Ok(crc_of(&mut fa, a)? == crc_of(&mut fb, b)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(d: &Path, rel: &Path, data: &str) {
        let p = d.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    #[test]
    fn cut_moves_what_is_above_deletes_tmp_and_reruns_harmlessly() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("blobs");
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        std::fs::write(d.join(".layout"), "bushy").unwrap();
        let l = Layout::Bushy;
        write(&d, &l.blob_path(1, Tid(10)), "keep");
        write(&d, &l.blob_path(1, Tid(12)), "above");
        write(&d, &l.blob_path(2, Tid(13)), "new oid");
        write(&d, &l.oid_dir(1).join("0x0bXyz12345.tmp"), "tmp in oid dir");
        write(&d, Path::new("tmp/BUCabc"), "uncommitted");
        let plan = plan_cut(&d, Tid(11)).unwrap();
        assert_eq!(plan.blob_files(), 2);
        assert_eq!(plan.moves.len(), 3);
        assert_eq!(plan.tmp_files.len(), 1);
        assert_eq!(plan.move_bytes(), 5 + 7 + 14);
        let r = execute_cut(&plan, false).unwrap();
        assert_eq!((r.moved, r.deleted), (3, 1));
        let tail = fsutil::sibling(&d, &format!(".tail-{}", Tid(11).hex()));
        assert_eq!(
            std::fs::read_to_string(tail.join(l.blob_path(1, Tid(12)))).unwrap(),
            "above"
        );
        assert_eq!(read_layout(&tail).unwrap(), Layout::Bushy);
        // What stays: exactly the file at or below 11, and an empty tmp/.
        let w = layout::walk(&d, l).unwrap();
        assert_eq!(
            w.files.iter().map(|f| f.rel.clone()).collect::<Vec<_>>(),
            vec![l.blob_path(1, Tid(10))]
        );
        assert!(w.tmp.is_empty());
        assert!(d.join("tmp").is_dir());
        // oid 2's directories went with its only file.
        assert!(!d.join(l.oid_dir(2)).exists());
        // Rerun: nothing to do.
        let again = plan_cut(&d, Tid(11)).unwrap();
        assert!(again.is_empty());
        assert_eq!(execute_cut(&again, false).unwrap(), CutReport::default());
    }

    #[test]
    fn discard_deletes_and_a_conflicting_tail_file_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("blobs");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(".layout"), "lawn").unwrap();
        let l = Layout::Lawn;
        write(&d, &l.blob_path(1, Tid(12)), "above");
        let tail = fsutil::sibling(&d, &format!(".tail-{}", Tid(11).hex()));
        write(&tail, &l.blob_path(1, Tid(12)), "other");
        let plan = plan_cut(&d, Tid(11)).unwrap();
        let e = execute_cut(&plan, false).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::TailConflict { .. }), "{e}");
        assert!(d.join(l.blob_path(1, Tid(12))).exists());
        let r = execute_cut(&plan, true).unwrap();
        assert_eq!((r.moved, r.deleted, r.tail_dir), (0, 1, None));
        assert!(!d.join(l.blob_path(1, Tid(12))).exists());
    }
}
