//! Writing one backup into a repository: deciding full vs incremental the
//! way repozo does, copying the bytes, recording them in the `.dat`, and
//! pruning old chains.
//!
//! repozo's decision (`do_backup`), kept here with one change: the source
//! is compared with the repository's recorded state file by file. Default
//! mode: the repository's concatenated bytes must equal the source's prefix
//! of the same length; repozo hashes both whole, this module checks each
//! file against its `.dat` md5 from both sides (the source range and the
//! backup file, on two threads), which proves the same and names the file
//! that differs. `quick`: only the last file's source range against its
//! `.dat` md5. A shorter source (pack), a differing prefix (pack), a broken
//! chain or no full backup means a full backup.
//!
//! Must not: pick the end position (the caller gives it: the coherent cut
//! position, or the valid end), or ever replace an existing file.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::chain::Chain;
use super::copy::{self, Progress};
use super::dat::{self, DatLine};
use super::manifest::SUFFIX;
use super::{BackupFile, Error, ErrorKind, Kind, Repository, Result, Stamp};
use crate::fsutil;

/// What a backup has to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A new chain, and why.
    Full(String),
    /// Append `[start, end)` to the current chain.
    Incremental { start: u64 },
    /// The repository already holds exactly `[0, end)`.
    Unchanged,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub file: BackupFile,
    pub line: DatLine,
    /// The chain now ending with `file`, oldest first.
    pub chain: Vec<String>,
}

impl Repository {
    /// Decides full vs incremental for copying `[0, end)` of `src`.
    /// Returns the decision and the current chain (when there is one).
    pub fn decide(
        &self,
        src: &File,
        end: u64,
        force_full: bool,
        quick: bool,
        progress: &dyn Progress,
    ) -> Result<(Decision, Option<Chain>)> {
        if force_full {
            return Ok((Decision::Full("full backup requested".into()), None));
        }
        let files = self.find_chain(None)?;
        if files.is_empty() {
            return Ok((Decision::Full("no full backup yet".into()), None));
        }
        let chain = match self.checked_chain(files) {
            Ok(c) => c,
            Err(e) if e.is_damage() => {
                return Ok((
                    Decision::Full(format!("the current chain cannot be extended: {e}")),
                    None,
                ))
            }
            Err(e) => return Err(e),
        };
        // An incremental is appended to the .dat: it must list exactly the
        // chain, or the new line would not follow the last file.
        let dat_len = dat::read(&chain.dat)?.len();
        if dat_len != chain.links.len() {
            return Ok((
                Decision::Full(format!(
                    "{} lists {dat_len} file(s) but {} are in the repository up to now",
                    chain.dat.display(),
                    chain.links.len()
                )),
                None,
            ));
        }
        let reposz = chain.end();
        if end < reposz {
            return Ok((
                Decision::Full(format!(
                    "the data to back up ends at {end}, before the repository's {reposz} \
                     (the Data.fs was packed?)"
                )),
                None,
            ));
        }
        let links: Vec<_> = if quick {
            chain.links.last().into_iter().collect()
        } else {
            chain.links.iter().collect()
        };
        let (src_check, repo_check) = std::thread::scope(|s| {
            let src_side = s.spawn(|| -> std::result::Result<Option<String>, Error> {
                for l in &links {
                    let sum = copy::md5_range(src, l.line.start, l.line.len(), progress)
                        .map_err(|e| Error::io(&self.dir, e))?;
                    if sum != l.line.md5 {
                        return Ok(Some(format!(
                            "the Data.fs bytes {}..{} differ from {} (the Data.fs was packed?)",
                            l.line.start, l.line.end, l.file.name
                        )));
                    }
                }
                Ok(None)
            });
            // `quick` trusts the repository files, like repozo's -Q.
            let repo_side = if quick {
                Ok(None)
            } else {
                let mut found = None;
                for l in &links {
                    let p = self.path(&l.file.name);
                    match copy::read_backup(&p, l.file.gzip, None, &copy::NoProgress) {
                        Ok((n, sum)) if n == l.line.len() && sum == l.line.md5 => {}
                        Ok(_) => {
                            found = Some(format!("{} does not match its .dat line", p.display()));
                            break;
                        }
                        Err(e) => {
                            found = Some(format!("{} cannot be read: {e}", p.display()));
                            break;
                        }
                    }
                }
                Ok::<_, Error>(found)
            };
            // The scoped thread cannot panic except on a bug; propagate it.
            (src_side.join().expect("md5 thread"), repo_side)
        });
        if let Some(why) = src_check? {
            return Ok((Decision::Full(why), None));
        }
        if let Some(why) = repo_check? {
            return Ok((
                Decision::Full(format!("the repository is damaged: {why}")),
                None,
            ));
        }
        let d = if end == reposz {
            Decision::Unchanged
        } else {
            Decision::Incremental { start: reposz }
        };
        Ok((d, Some(chain)))
    }

    /// Copies `[start, end)` of `src` into a new file named for `stamp` and
    /// records it in the `.dat` (a new one for a full backup). The file
    /// appears under its name only once complete and fsynced; an existing
    /// name is never replaced.
    #[allow(clippy::too_many_arguments)]
    pub fn write_backup(
        &self,
        src: &File,
        start: u64,
        end: u64,
        chain: Option<&Chain>,
        stamp: Stamp,
        gzip: bool,
        progress: &dyn Progress,
    ) -> Result<Written> {
        let kind = if chain.is_some() {
            Kind::Incremental
        } else {
            Kind::Full
        };
        let name = BackupFile::file_name(stamp, kind, gzip);
        let target = self.path(&name);
        let mut tmp = fsutil::TempFile::beside(&target).map_err(|e| Error::io(&target, e))?;
        let md5 = copy::copy_range(src, start, end - start, tmp.file(), gzip, progress)
            .map_err(|e| Error::io(&target, e))?;
        // Once the file has its name it must end up listed by the `.dat`
        // (repozo restores by name: an unlisted newer file would join its
        // chains): a directory fsync failing after the link does not stop
        // the `.dat` from being written; the failure is reported after.
        let mut unsynced = None;
        if let Err(e) = tmp.persist_new(&target) {
            if !fsutil::in_place(&e) {
                return Err(Error::io(&target, e));
            }
            unsynced = Some(e);
        }
        let file = BackupFile::parse(&name).expect("names we build parse");
        let line = DatLine {
            path: dat::line_path(&self.dir, &name),
            start,
            end,
            md5,
        };
        let (dat_path, mut lines, mut names) = match chain {
            Some(c) => (
                c.dat.clone(),
                c.links.iter().map(|l| l.line.clone()).collect(),
                c.names(),
            ),
            None => (self.dat_path(&file), Vec::new(), Vec::new()),
        };
        lines.push(line.clone());
        names.push(name);
        if let Err(e) = dat::write(&dat_path, &lines) {
            if matches!(&e.kind, ErrorKind::Io(io) if fsutil::in_place(io)) {
                // The new `.dat` is in place and lists the file: both stay.
                return Err(e);
            }
            // Without its .dat line the file is unusable: take it back
            // rather than leave a file that breaks the next restore. If
            // even that fails, the next backup sets it aside.
            return Err(match self.set_aside(&target) {
                Ok(()) => e,
                Err(rm) => Error::broken(
                    &target,
                    format!(
                        "{e}; and this file, which no .dat lists, could not be removed \
                         ({rm}): the next backup sets it aside"
                    ),
                ),
            });
        }
        if let Some(e) = unsynced {
            return Err(Error::io(&target, e));
        }
        Ok(Written {
            file,
            line,
            chain: names,
        })
    }

    /// Takes a data file no `.dat` lists out of repozo's sight: removed
    /// when this run wrote it (nothing else refers to it).
    fn set_aside(&self, target: &Path) -> std::io::Result<()> {
        std::fs::remove_file(target)?;
        fsutil::sync_parent_dir(target)
    }

    /// Renames every data file that no `.dat` lists to `<name>.unlisted`
    /// (a name repozo and tidstorage ignore, kept for the operator), and
    /// returns their new paths. Such a file is what a backup killed (or
    /// failed) between naming its file and listing it leaves; repozo's
    /// restore picks files by name, so left in place it would join later
    /// chains.
    pub fn set_aside_unlisted(&self) -> Result<Vec<PathBuf>> {
        let files = self.list()?;
        let mut listed = std::collections::HashSet::new();
        for f in files.iter().filter(|f| f.kind == Kind::Full) {
            let dat = self.dat_path(f);
            match dat::read(&dat) {
                Ok(lines) => listed.extend(lines.iter().map(|l| l.file_name().to_string())),
                // A full without its `.dat`: a backup killed before it
                // wrote it. Unlisted like its file; the next backup is full.
                Err(e)
                    if matches!(&e.kind, ErrorKind::Io(io)
                        if io.kind() == std::io::ErrorKind::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        let mut moved = Vec::new();
        for f in files.iter().filter(|f| !listed.contains(&f.name)) {
            let from = self.path(&f.name);
            let to = fsutil::sibling(&from, ".unlisted");
            std::fs::rename(&from, &to).map_err(|e| Error::io(&from, e))?;
            moved.push(to);
        }
        if !moved.is_empty() {
            fsutil::sync_parent_dir(&self.path("x")).map_err(|e| Error::io(&self.dir, e))?;
        }
        Ok(moved)
    }

    /// Removes everything older than the `keep`-th newest full backup: data
    /// files, `.dat`, `.index`, manifests and set-aside (`.unlisted`) files
    /// named before it. With `keep` fulls or fewer, what is older than the
    /// oldest full is removed (what a prune killed half-way left: it is of
    /// no use without its full). Returns the oldest kept full's stamp
    /// (`None` when the repository has no full) and the removed paths.
    pub fn prune(&self, keep: usize) -> Result<(Option<Stamp>, Vec<PathBuf>)> {
        let fulls: Vec<BackupFile> = self
            .list()?
            .into_iter()
            .filter(|f| f.kind == Kind::Full)
            .collect();
        let oldest_kept = match fulls.len() {
            0 => return Ok((None, Vec::new())),
            n if keep > 0 && n > keep => &fulls[n - keep],
            _ => &fulls[0],
        };
        let cutoff = oldest_kept.root().to_string();
        let mut removed = Vec::new();
        let rd = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut names: Vec<String> = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(&self.dir, e))?;
            if let Some(n) = ent.file_name().to_str() {
                names.push(n.to_string());
            }
        }
        names.sort();
        for n in names {
            let ours = BackupFile::parse(&n).is_some()
                || n.get(19..).is_some_and(|ext| {
                    ext == ".dat" || ext == ".index" || ext == SUFFIX || ext.ends_with(".unlisted")
                });
            if ours && n[..19] < *cutoff && Stamp::parse(&n[..19]).is_some() {
                let p = self.path(&n);
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                removed.push(p);
            }
        }
        if !removed.is_empty() {
            fsutil::sync_parent_dir(&self.path("x")).map_err(|e| Error::io(&self.dir, e))?;
        }
        Ok((Some(oldest_kept.stamp), removed))
    }
}
