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
use std::path::PathBuf;

use super::chain::Chain;
use super::copy::{self, Progress};
use super::dat::{self, DatLine};
use super::manifest::SUFFIX;
use super::{BackupFile, Error, Kind, Repository, Result, Stamp};
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
        tmp.persist_new(&target)
            .map_err(|e| Error::io(&target, e))?;
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
            // Without its .dat line the file is unusable: take it back
            // rather than leave a file that breaks the next restore.
            let _ = std::fs::remove_file(&target);
            return Err(e);
        }
        Ok(Written {
            file,
            line,
            chain: names,
        })
    }

    /// Removes everything older than the `keep`-th newest full backup: data
    /// files, `.dat`, `.index` and manifests named before it. Returns the
    /// kept full's stamp (`None` when there are `keep` fulls or fewer) and
    /// the removed paths.
    pub fn prune(&self, keep: usize) -> Result<(Option<Stamp>, Vec<PathBuf>)> {
        let fulls: Vec<BackupFile> = self
            .list()?
            .into_iter()
            .filter(|f| f.kind == Kind::Full)
            .collect();
        if keep == 0 || fulls.len() <= keep {
            return Ok((None, Vec::new()));
        }
        let oldest_kept = &fulls[fulls.len() - keep];
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
                || n.get(19..)
                    .is_some_and(|ext| ext == ".dat" || ext == ".index" || ext == SUFFIX);
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
