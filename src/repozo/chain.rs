//! A restore chain (a full backup and the incrementals after it) checked
//! against its `.dat`: every file listed in order, each starting where the
//! previous one ended, each with the recorded size and md5. repozo's restore
//! only concatenates; this module refuses a broken chain and names the file.
//!
//! Must not: write anywhere but the writer it is handed.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::copy::{self, Progress};
use super::dat::{self, DatLine};
use super::{BackupFile, Error, ErrorKind, Kind, Repository, Result};

/// One file of a chain with its `.dat` line.
#[derive(Debug, Clone)]
pub struct Link {
    pub file: BackupFile,
    pub line: DatLine,
}

/// A chain whose names and offsets agree with its `.dat` (contents not yet
/// checked: that happens while streaming or in [`Repository::verify_chain`]).
#[derive(Debug, Clone)]
pub struct Chain {
    pub dat: PathBuf,
    pub links: Vec<Link>,
}

impl Chain {
    /// Bytes of Data.fs the chain rebuilds.
    pub fn end(&self) -> u64 {
        self.links.last().map(|l| l.line.end).unwrap_or(0)
    }

    pub fn names(&self) -> Vec<String> {
        self.links.iter().map(|l| l.file.name.clone()).collect()
    }
}

/// Offsets of `lines` form one contiguous run from 0; the first line that
/// does not is reported.
fn check_contiguous(dat: &std::path::Path, lines: &[DatLine]) -> Result<()> {
    let mut expect = 0u64;
    for (i, l) in lines.iter().enumerate() {
        if l.start != expect {
            return Err(Error::broken(
                dat,
                format!(
                    "line {}: {} starts at offset {} but {} (the chain is broken there: \
                     a file is missing or was replaced); restore as of a date before it",
                    i + 1,
                    l.file_name(),
                    l.start,
                    if i == 0 {
                        "a full backup must start at 0".to_string()
                    } else {
                        format!("the previous file ends at {expect}")
                    }
                ),
            ));
        }
        expect = l.end;
    }
    Ok(())
}

impl Repository {
    /// Pairs `files` (from [`Repository::find_chain`]) with the lines of
    /// their full backup's `.dat`, checking names and contiguity.
    pub fn checked_chain(&self, files: Vec<BackupFile>) -> Result<Chain> {
        let Some(full) = files.first() else {
            return Err(Error::broken(&self.dir, "no full backup to restore from"));
        };
        if full.kind != Kind::Full {
            return Err(Error::broken(
                &self.path(&full.name),
                "a chain must start with a full backup",
            ));
        }
        let dat_path = self.dat_path(full);
        let lines = dat::read(&dat_path).map_err(|e| match e.kind {
            ErrorKind::Io(io) if io.kind() == io::ErrorKind::NotFound => Error::broken(
                &dat_path,
                format!(
                    "missing: the chain of {} cannot be checked without it \
                     (was the backup interrupted?); restore as of an earlier date",
                    full.name
                ),
            ),
            _ => e,
        })?;
        check_contiguous(&dat_path, &lines)?;
        let mut links = Vec::with_capacity(files.len());
        for (i, f) in files.into_iter().enumerate() {
            let Some(line) = lines.get(i) else {
                return Err(Error::broken(
                    &self.path(&f.name),
                    format!(
                        "not recorded in {} (it lists {} file(s)): the file does not belong \
                         to this chain; remove it or restore as of an earlier date",
                        dat_path.display(),
                        lines.len()
                    ),
                ));
            };
            if line.file_name() != f.name {
                return Err(Error::broken(
                    &self.path(&f.name),
                    format!(
                        "{} line {} names {} here: the chain is broken (a file is missing \
                         or foreign); restore as of an earlier date",
                        dat_path.display(),
                        i + 1,
                        line.file_name()
                    ),
                ));
            }
            links.push(Link {
                file: f,
                line: line.clone(),
            });
        }
        Ok(Chain {
            dat: dat_path,
            links,
        })
    }

    /// Writes the chain's raw bytes to `out` (the file at `out_path`, named
    /// in a write error), checking each file's size and md5 against the
    /// `.dat`. Returns the bytes written.
    pub fn stream_chain(
        &self,
        chain: &Chain,
        out: &mut dyn Write,
        out_path: &Path,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let mut total = 0;
        for l in &chain.links {
            let p = self.path(&l.file.name);
            let (n, sum) =
                copy::read_backup(&p, l.file.gzip, Some(&mut *out), progress).map_err(|e| {
                    if copy::is_output_error(&e) {
                        Error {
                            path: out_path.to_path_buf(),
                            kind: ErrorKind::IoDoing {
                                doing: "cannot write the restored data to",
                                error: e,
                            },
                        }
                    } else {
                        Error::io(&p, e)
                    }
                })?;
            check_link(&p, l, n, Some(&sum))?;
            total += n;
        }
        Ok(total)
    }

    /// Checks every file of every full backup's `.dat` (contiguity,
    /// presence, size, and with `!quick` the md5), and that every data file
    /// is listed in a `.dat`. Returns the problems found (empty = intact)
    /// and the number of files checked.
    pub fn verify(&self, quick: bool, progress: &dyn Progress) -> Result<(Vec<Error>, usize)> {
        let files = self.list()?;
        let mut problems = Vec::new();
        let mut listed = std::collections::BTreeSet::new();
        let mut checked = 0;
        for full in files.iter().filter(|f| f.kind == Kind::Full) {
            let dat_path = self.dat_path(full);
            let lines = match dat::read(&dat_path) {
                Ok(l) => l,
                Err(e) => {
                    problems.push(e);
                    listed.insert(full.name.clone());
                    continue;
                }
            };
            if let Err(e) = check_contiguous(&dat_path, &lines) {
                problems.push(e);
            }
            match lines.first() {
                Some(l) if l.file_name() == full.name => {}
                _ => problems.push(Error::broken(
                    &dat_path,
                    format!("its first line does not name {}", full.name),
                )),
            }
            for line in &lines {
                listed.insert(line.file_name().to_string());
                let p = self.path(line.file_name());
                let Some(bf) = BackupFile::parse(line.file_name()) else {
                    problems.push(Error::broken(
                        &dat_path,
                        format!("names {}, which is not a backup file name", line.path),
                    ));
                    continue;
                };
                checked += 1;
                let r = if quick {
                    copy::raw_size(&p, bf.gzip).map(|n| (n, None))
                } else {
                    copy::read_backup(&p, bf.gzip, None, progress).map(|(n, s)| (n, Some(s)))
                };
                match r {
                    Ok((n, sum)) => {
                        let link = Link {
                            file: bf,
                            line: line.clone(),
                        };
                        if let Err(e) = check_link(&p, &link, n, sum.as_deref()) {
                            problems.push(e);
                        }
                    }
                    Err(e) => problems.push(Error::io(&p, e)),
                }
            }
        }
        for f in &files {
            if !listed.contains(&f.name) {
                problems.push(Error::broken(
                    &self.path(&f.name),
                    "is not listed in any .dat file: no restore can use it",
                ));
            }
        }
        Ok((problems, checked))
    }
}

fn check_link(p: &std::path::Path, l: &Link, n: u64, sum: Option<&str>) -> Result<()> {
    let unz = if l.file.gzip { " (uncompressed)" } else { "" };
    if n != l.line.len() {
        return Err(Error::broken(
            p,
            format!(
                "is {n} bytes{unz}, the .dat records {} (offsets {}..{}): the file is \
                 truncated or damaged; restore as of a date before it, or take a full backup",
                l.line.len(),
                l.line.start,
                l.line.end
            ),
        ));
    }
    if let Some(s) = sum {
        if s != l.line.md5 {
            return Err(Error::broken(
                p,
                format!(
                    "has md5 {s}{unz}, the .dat records {}: the file is damaged; restore as \
                     of a date before it, or take a full backup",
                    l.line.md5
                ),
            ));
        }
    }
    Ok(())
}
