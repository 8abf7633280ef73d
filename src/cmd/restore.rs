//! `tidstorage restore`: flags, one call of [`storageset::restore::run`]
//! (or [`storageset::restore::verify`]), and rendering. What a restore
//! does is documented there.

use std::path::PathBuf;

use crate::cmd::{emit, Context};
use crate::error::{CliError, Result};
use crate::repozo;
use crate::storageset::restore::{self, Compared, How, Installed, Outcome, RestoreOptions};

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    tidstorage restore --output-dir /srv/restored    as of the last backup run, cut coherently\n  \
    tidstorage restore --date 2024-05-01-12-00-00 --force\n  \
    tidstorage restore --check                       compare a restore with the live files\n  \
    tidstorage restore --verify                      check every repository, write nothing\n  \
    tidstorage restore --incremental --output-dir /srv/standby   keep a standby current")]
#[command(group(clap::ArgGroup::new("quick_with").args(["verify", "incremental"]).multiple(false)))]
pub struct RestoreArgs {
    /// Restore the state as of this UTC date, yyyy-mm-dd[-hh[-mm[-ss]]]
    /// (repozo's format) [default: the last line of [backup] timestamp_file, else now].
    #[arg(short = 'D', long, value_name = "DATE", value_parser = repozo::check_date)]
    pub date: Option<String>,
    /// Restore only this configured storage (repeatable).
    #[arg(long = "storage", value_name = "ID")]
    pub storages: Vec<String>,
    /// Cut at the last point of this status file instead of the backup's manifests.
    #[arg(long, value_name = "FILE", conflicts_with = "no_cut")]
    pub tid_log: Option<PathBuf>,
    /// Skip damaged status-file lines instead of refusing (with --tid-log).
    #[arg(long, requires = "tid_log")]
    pub lenient: bool,
    /// Do not cut: restore exactly what the repository holds (like repozo -R).
    #[arg(long)]
    pub no_cut: bool,
    /// Where the point comes from a status file (a --no-server run's copy,
    /// or --tid-log), cut at that point itself; by default it is a floor
    /// above which the exact cut over the restored files keeps every
    /// transaction their commit tags show complete (see tidstorage-cut(1)).
    #[arg(long, conflicts_with = "no_cut")]
    pub at_point: bool,
    /// Replace existing Data.fs files (each kept as Data.fs.before-restore-<time>)
    /// and blob directories (kept as <blob_dir>.before-restore-<unix time>).
    #[arg(long)]
    pub force: bool,
    /// Restore into this directory (the configured data_fs and blob_dir
    /// paths recreated under it) instead of over the configured files.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Restore to temporary files, compare with the live Data.fs files
    /// (and blob directories with the run's files at the same TID),
    /// change nothing (exit 1 when one differs).
    #[arg(long, conflicts_with_all = ["force", "verify"])]
    pub check: bool,
    /// Check every repository (chain contiguity, sizes, md5s, gzip included;
    /// with a blob_dir, every blob record of the newest chain has its file,
    /// right size and crc32) and write nothing, like repozo -V (exit 1 on a
    /// problem).
    #[arg(long)]
    pub verify: bool,
    /// Where an output Data.fs exists and is byte for byte a prefix of the
    /// chain being restored (checked by md5 against the .dat), append only
    /// the missing bytes, then cut at the run's point; otherwise restore it
    /// in full, replacing it as --force does (the reason is printed). A
    /// missing output is restored in full. Needs no --force.
    #[arg(long, conflicts_with = "check")]
    pub incremental: bool,
    /// With --verify: check sizes only, not md5s. With --incremental: check
    /// only the last chunk of the chain the output covers, and only when the
    /// output is unchanged since the restore that wrote it (size, mtime,
    /// ctime and inode recorded beside it); otherwise its whole prefix.
    #[arg(short = 'Q', long, requires = "quick_with")]
    pub quick: bool,
}

pub fn run(a: RestoreArgs, g: &Context) -> Result<()> {
    g.init_stderr_log();
    let c = g.load_config()?;
    if a.verify {
        return verify(
            &restore::verify(&c, &a.storages, a.quick, g.quiet())?,
            a.quick,
        );
    }
    let o = RestoreOptions {
        date: a.date,
        storages: a.storages,
        tid_log: a.tid_log,
        lenient: a.lenient,
        no_cut: a.no_cut,
        force: a.force,
        output_dir: a.output_dir,
        check: a.check,
        incremental: a.incremental,
        quick: a.quick,
        at_point: a.at_point,
        quiet: g.quiet(),
    };
    match restore::run(&c, &o)? {
        Outcome::Checked(c) => check(&c),
        Outcome::Installed { installed, failed } => {
            emit(&installed.iter().map(installed_text).collect::<String>())?;
            if failed.is_empty() {
                return Ok(());
            }
            Err(CliError::runtime(format!(
                "{} storage(s) could not be put in place (the others were):\n  {}",
                failed.len(),
                failed
                    .iter()
                    .map(|e| format!("storage {}: {e}", e.storage.as_deref().unwrap_or("?")))
                    .collect::<Vec<_>>()
                    .join("\n  ")
            )))
        }
    }
}

fn installed_text(i: &Installed) -> String {
    let mut s = String::new();
    if let How::FullBecause(why) = &i.how {
        s.push_str(&format!(
            "storage {}: full restore because: {why}\n",
            i.storage
        ));
    }
    match &i.how {
        How::Appended {
            from,
            checked,
            quick,
        } => s.push_str(&format!(
            "storage {}: appended {} bytes to {} ({from}..{}, after checking {checked} bytes of \
             it: {}",
            i.storage,
            i.size - from,
            i.target.display(),
            i.size,
            if *quick {
                "--quick, the last chunk it covers"
            } else {
                "every chunk it covers"
            }
        )),
        _ => s.push_str(&format!(
            "storage {}: restored {} ({} bytes",
            i.storage,
            i.target.display(),
            i.size
        )),
    }
    match i.tid {
        Some(t) => s.push_str(&format!(
            ", cut at coherent TID {} ({}), {} bytes removed",
            t.hex(),
            t.rfc3339(),
            i.removed
        )),
        None => s.push_str(", not cut"),
    }
    if let Some(l) = i.last_tid {
        s.push_str(&format!(", last TID {}", l.hex()));
    }
    s.push_str(&format!(
        ") from {} file(s) of {}\n",
        i.files,
        i.repository.display()
    ));
    if let Some(old) = &i.kept {
        s.push_str(&format!(
            "  the replaced file is kept as {}\n",
            old.display()
        ));
    }
    if let Some(b) = &i.blobs {
        let how = match (b.added, b.present) {
            (Some(n), _) => format!("{n} new file(s) added"),
            (None, true) => "already in place".to_string(),
            (None, false) => "rebuilt".to_string(),
        };
        s.push_str(&format!(
            "  blobs: {} ({how}): {} file(s), {} bytes, at the same TID\n",
            b.target.display(),
            b.files,
            b.bytes
        ));
        if let Some(old) = &b.kept {
            s.push_str(&format!(
                "  the replaced blob directory is kept as {}\n",
                old.display()
            ));
        }
    }
    for n in &i.notes {
        s.push_str(&format!("  note: {n}\n"));
    }
    s
}

fn check(compared: &[Compared]) -> Result<()> {
    let mut out = String::new();
    let mut differ = 0;
    for c in compared {
        match &c.verdict {
            Ok(None) => out.push_str(&format!(
                "storage {}: ok, the restored {} bytes equal the start of {}\n",
                c.storage,
                c.size,
                c.live.display()
            )),
            Ok(Some(why)) => {
                differ += 1;
                out.push_str(&format!("storage {}: DIFFERS: {why}\n", c.storage))
            }
            Err(e) => {
                differ += 1;
                out.push_str(&format!("storage {}: cannot compare: {e}\n", c.storage))
            }
        }
        match &c.blobs {
            None => {}
            Some((dir, Ok(r))) if r.same() => out.push_str(&format!(
                "storage {}: ok, the blob directory {} holds exactly the run's files at that TID\n",
                c.storage,
                dir.display()
            )),
            Some((dir, Ok(r))) => {
                differ += 1;
                out.push_str(&format!(
                    "storage {}: blob directory {} DIFFERS:",
                    c.storage,
                    dir.display()
                ));
                if let Some((run, live)) = r.layout_differs {
                    out.push_str(&format!(
                        " layout {} (the run's is {})",
                        live.name(),
                        run.name()
                    ));
                }
                let some = |v: &[String]| {
                    let mut t = v.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
                    if v.len() > 3 {
                        t.push_str(&format!(" and {} more", v.len() - 3));
                    }
                    t
                };
                if !r.missing.is_empty() {
                    let v: Vec<String> = r
                        .missing
                        .iter()
                        .map(|(o, t)| format!("oid 0x{o:016x} tid {}", t.hex()))
                        .collect();
                    out.push_str(&format!(" {} missing ({})", v.len(), some(&v)));
                }
                if !r.extra.is_empty() {
                    let v: Vec<String> = r.extra.iter().map(|p| p.display().to_string()).collect();
                    out.push_str(&format!(" {} extra ({})", v.len(), some(&v)));
                }
                if !r.differ.is_empty() {
                    let v: Vec<String> = r
                        .differ
                        .iter()
                        .map(|(o, t, why)| format!("oid 0x{o:016x} tid {}: {why}", t.hex()))
                        .collect();
                    out.push_str(&format!(" {} differ ({})", v.len(), some(&v)));
                }
                out.push('\n');
            }
            Some((dir, Err(e))) => {
                differ += 1;
                out.push_str(&format!(
                    "storage {}: cannot compare the blob directory {}: {e}\n",
                    c.storage,
                    dir.display()
                ))
            }
        }
    }
    emit(&out)?;
    if differ == 0 {
        Ok(())
    } else {
        Err(CliError::no(format!(
            "{differ} restored file(s) differ from the live files (nothing was changed)"
        )))
    }
}

fn verify(results: &[restore::Verified], quick: bool) -> Result<()> {
    let mut out = String::new();
    let mut bad = 0;
    for v in results {
        bad += v.problem_count();
        match &v.chain {
            Ok((problems, n)) if problems.is_empty() => out.push_str(&format!(
                "storage {}: ok, {n} file(s) in {} checked ({})\n",
                v.storage,
                v.repository
                    .as_deref()
                    .unwrap_or_else(|| "?".as_ref())
                    .display(),
                if quick { "sizes" } else { "sizes and md5" }
            )),
            Ok((problems, _)) => {
                out.push_str(&format!(
                    "storage {}: {} problem(s):\n",
                    v.storage,
                    problems.len()
                ));
                for p in problems {
                    out.push_str(&format!("  {p}\n"));
                }
            }
            Err(e) => out.push_str(&format!("storage {}: {e}\n", v.storage)),
        }
        for e in &v.manifests {
            out.push_str(&format!("storage {}: {e}\n", v.storage));
        }
        match &v.blobs {
            None => {}
            Some(Ok((run, r))) if r.ok() => out.push_str(&format!(
                "storage {}: ok, blob run {run}: {} file(s), {} bytes, one per blob record ({})\n",
                v.storage,
                r.checked,
                r.bytes,
                if quick { "sizes" } else { "sizes and crc32" }
            )),
            Some(Ok((run, r))) => {
                out.push_str(&format!(
                    "storage {}: blob run {run}: {} problem(s):\n",
                    v.storage,
                    r.problems.len()
                ));
                for p in r.problems.iter().take(20) {
                    out.push_str(&format!("  {}\n", blob_problem(p)));
                }
                if r.problems.len() > 20 {
                    out.push_str(&format!("  and {} more\n", r.problems.len() - 20));
                }
            }
            Some(Err(e)) => out.push_str(&format!("storage {}: blobs: {e}\n", v.storage)),
        }
    }
    emit(&out)?;
    if bad == 0 {
        Ok(())
    } else {
        Err(CliError::no(format!(
            "{bad} repository problem(s) found (see above)"
        )))
    }
}

fn blob_problem(p: &crate::blobs::restore::Problem) -> String {
    use crate::blobs::restore::Problem;
    match p {
        Problem::NotInRun { oid, tid } => format!(
            "oid 0x{oid:016x} tid {}: a blob record of the Data.fs whose file the run does not hold",
            tid.hex()
        ),
        Problem::NotARecord { oid, tid } => format!(
            "oid 0x{oid:016x} tid {}: in the run, but no blob record of the Data.fs names it",
            tid.hex()
        ),
        Problem::PoolMissing { oid, tid } => format!(
            "oid 0x{oid:016x} tid {}: its file is missing from the repository's pool",
            tid.hex()
        ),
        Problem::PoolDiffers { oid, tid, what } => {
            format!("oid 0x{oid:016x} tid {}: its pool file has {what}", tid.hex())
        }
    }
}
