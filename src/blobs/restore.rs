//! A blob directory rebuilt from a run, checked, or compared.
//!
//! Owns: [`restore`] (build a sibling temporary directory holding the
//! run's `.layout`, an empty `tmp/` and exactly one file per entry at or
//! below the restore TID, sync it, then rename it into place, keeping an
//! existing directory aside), [`verify`] (every blob record has its entry
//! and its pool file, right size, optionally right crc) and [`compare`]
//! (a live directory against a run). Must not change a live directory
//! except by the final renames of [`restore`].

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::layout::{self, read_layout, FileKind, LAYOUT_MARKER, TMP_DIR};
use super::snapshot::{BlobRepo, Entry, Manifest};
use super::{create_dirs, sync_dir, Error, ErrorKind, Result};
use crate::datafs::blobrecords::BlobRecord;
use crate::fsutil::{self, pid_after, process_gone};
use crate::tid::Tid;

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    pub target: PathBuf,
    pub files: u64,
    pub bytes: u64,
    /// Where the directory that was at `target` went.
    pub kept_aside: Option<PathBuf>,
}

/// Rebuilds the blob directory `target` as run `m` holds it at `upto`
/// (the TID the Data.fs is restored and cut at): `m`'s layout, an empty
/// `tmp/`, the entries with tid <= `upto`, each checked against its size
/// and crc. A non-empty `target` is refused unless `replace`, and then
/// renamed to `<target>.before-restore-<unix time>` first.
/// [`build_beside`] + [`Built::install`] in one call.
pub fn restore(
    repo: &BlobRepo,
    m: &Manifest,
    upto: Tid,
    target: &Path,
    replace: bool,
) -> Result<RestoreReport> {
    build_beside(repo, m, upto, target, replace)?.install()
}

/// A blob directory built beside its target, not yet in place (for a
/// caller that installs several files all-or-nothing). Dropped without
/// [`Built::install`], it is removed.
#[derive(Debug)]
pub struct Built {
    temp: PathBuf,
    target: PathBuf,
    replace: bool,
    created: Vec<PathBuf>,
    pub files: u64,
    pub bytes: u64,
}

/// Builds (and syncs) the directory [`restore`] installs, in a sibling
/// temporary directory `.<name>.restore-<pid>-<n>` of `target`. Refuses a
/// non-empty `target` unless `replace`, before any work.
pub fn build_beside(
    repo: &BlobRepo,
    m: &Manifest,
    upto: Tid,
    target: &Path,
    replace: bool,
) -> Result<Built> {
    let target = fsutil::resolve(target).map_err(|e| Error::io(target, e))?;
    if existing_state(&target)? == Existing::NonEmpty && !replace {
        return Err(Error::new(&target, ErrorKind::TargetExists));
    }
    let parent = target.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut created = Vec::new();
    create_dirs(&parent, &mut created)?;
    remove_stale_temp_dirs(&target);
    let temp = make_temp_dir(&target)?;
    let mut built = Built {
        temp,
        target,
        replace,
        created,
        files: 0,
        bytes: 0,
    };
    let (files, bytes) = build(repo, m, upto, &built.temp)?;
    built.files = files;
    built.bytes = bytes;
    Ok(built)
}

impl Built {
    /// The temporary directory (e.g. for `--check` to compare, or to open
    /// with ZODB before installing).
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// Renames the built directory to its target, first renaming a
    /// non-empty existing target aside (an empty one is removed), then
    /// fsyncs the parent. Between the two renames a crash leaves the old
    /// directory aside and the new one at its temporary name.
    pub fn install(self) -> Result<RestoreReport> {
        self.install_noting(&mut None)
    }

    /// [`Built::install`], noting in `placed` the target and where the old
    /// directory went as soon as the new one is in place, so that a caller
    /// undoing a failed set of installs knows even when a later fsync
    /// failed. A failure of the rename into place puts the old directory
    /// back.
    pub fn install_noting(
        mut self,
        placed: &mut Option<(PathBuf, Option<PathBuf>)>,
    ) -> Result<RestoreReport> {
        let target = self.target.clone();
        let existing = existing_state(&target)?;
        let mut kept_aside = None;
        match existing {
            Existing::Absent => {}
            Existing::Empty => {
                std::fs::remove_dir(&target).map_err(|e| Error::io(&target, e))?;
            }
            Existing::NonEmpty => {
                if !self.replace {
                    return Err(Error::new(&target, ErrorKind::TargetExists));
                }
                let aside = aside_name(&target)?;
                std::fs::rename(&target, &aside).map_err(|e| Error::io(&target, e))?;
                kept_aside = Some(aside);
            }
        }
        if let Err(e) = std::fs::rename(&self.temp, &target) {
            if let Some(aside) = &kept_aside {
                if let Err(back) = std::fs::rename(aside, &target) {
                    return Err(Error::io(
                        &target,
                        io::Error::new(
                            e.kind(),
                            format!(
                                "{e}; and the old directory could not be put back from {} \
                                 ({back})",
                                aside.display()
                            ),
                        ),
                    ));
                }
            }
            return Err(Error::io(&target, e));
        }
        // In place: nothing for drop to remove.
        self.temp = PathBuf::new();
        *placed = Some((target.clone(), kept_aside.clone()));
        let parent = target.parent().unwrap_or(Path::new("/"));
        sync_dir(parent)?;
        for d in self.created.iter().filter_map(|d| d.parent()) {
            sync_dir(d)?;
        }
        Ok(RestoreReport {
            target,
            files: self.files,
            bytes: self.bytes,
            kept_aside,
        })
    }
}

impl Drop for Built {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.temp);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    Absent,
    Empty,
    NonEmpty,
}

/// True when `dir` exists and holds anything.
pub fn non_empty(dir: &Path) -> Result<bool> {
    Ok(existing_state(dir)? == Existing::NonEmpty)
}

fn existing_state(target: &Path) -> Result<Existing> {
    match std::fs::read_dir(target) {
        Ok(mut rd) => Ok(if rd.next().is_some() {
            Existing::NonEmpty
        } else {
            Existing::Empty
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Existing::Absent),
        Err(e) => Err(Error::io(target, e)),
    }
}

/// Removes the temporary directories `.<name>.restore-<pid>-<n>` beside
/// `target` left by restores whose process is gone (killed while building
/// or installing: the rerun builds its own). Never fails the restore: what
/// cannot be removed is logged and left.
fn remove_stale_temp_dirs(target: &Path) {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "blobs".into());
    let parent = target.parent().unwrap_or(Path::new("/"));
    let prefix = format!(".{name}.restore-");
    fsutil::remove_gone_entries(parent, true, |n| pid_after(n, &prefix));
}

/// The temporary name [`install_file`] gives the file it installs at `dst`.
const INSTALL_TEMP: &str = ".tmp-restore-";

/// Whether `name` (of a file in an oid directory) is an [`install_file`]
/// temporary of a process that is gone.
pub fn is_stale_install_temp(name: &str) -> bool {
    name.rfind(INSTALL_TEMP)
        .and_then(|i| pid_after(&name[i..], INSTALL_TEMP))
        .is_some_and(process_gone)
}

fn make_temp_dir(target: &Path) -> Result<PathBuf> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "blobs".into());
    let parent = target.parent().unwrap_or(Path::new("/"));
    for n in 0..1000u32 {
        let p = parent.join(format!(".{name}.restore-{}-{n}", std::process::id()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&p, e)),
        }
    }
    Err(Error::io(
        target,
        io::Error::new(io::ErrorKind::AlreadyExists, "no free temporary name"),
    ))
}

fn aside_name(target: &Path) -> Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for n in 0..1000u32 {
        let suffix = if n == 0 {
            format!(".before-restore-{secs}")
        } else {
            format!(".before-restore-{secs}-{n}")
        };
        let p = fsutil::sibling(target, &suffix);
        if !fsutil::exists(&p).map_err(|e| Error::io(&p, e))? {
            return Ok(p);
        }
    }
    Err(Error::io(
        target,
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free name to keep it aside",
        ),
    ))
}

fn build(repo: &BlobRepo, m: &Manifest, upto: Tid, temp: &Path) -> Result<(u64, u64)> {
    let marker = temp.join(LAYOUT_MARKER);
    // ZODB writes the name without a newline.
    std::fs::write(&marker, m.layout.name()).map_err(|e| Error::io(&marker, e))?;
    let tmp = temp.join(TMP_DIR);
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut created = Vec::new();
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut buf = vec![0u8; 256 * 1024];
    for e in m.upto(upto) {
        let dst = temp.join(m.layout.blob_path(e.oid, e.tid));
        create_dirs(dst.parent().unwrap_or(temp), &mut created)?;
        bytes += copy_entry(repo, e, &dst, &mut buf)?;
        files += 1;
    }
    // One syncfs for the whole tree (data, inodes, directories) instead of
    // one fsync per file and directory.
    super::snapshot::syncfs(temp)?;
    Ok((files, bytes))
}

/// Copies the pool file of `e` to the new file `dst` (never over an
/// existing one), checking its size and crc32, read-only like ZODB's.
/// Not synced: the caller syncs the tree once.
fn copy_entry(repo: &BlobRepo, e: &Entry, dst: &Path, buf: &mut [u8]) -> Result<u64> {
    let src = repo.pool_file(e.oid, e.tid);
    let mut inp = match File::open(&src) {
        Ok(f) => f,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(Error::new(
                &src,
                ErrorKind::PoolDamaged {
                    oid: e.oid,
                    tid: e.tid,
                    what: "missing from the pool".into(),
                },
            ))
        }
        Err(err) => return Err(Error::io(&src, err)),
    };
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .map_err(|err| Error::io(dst, err))?;
    let mut h = crc32fast::Hasher::new();
    let mut n = 0u64;
    loop {
        let k = match inp.read(buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(Error::io(&src, err)),
        };
        h.update(&buf[..k]);
        out.write_all(&buf[..k])
            .map_err(|err| Error::io(dst, err))?;
        n += k as u64;
    }
    let crc = h.finalize();
    if n != e.size || crc != e.crc32 {
        return Err(Error::new(
            &src,
            ErrorKind::PoolDamaged {
                oid: e.oid,
                tid: e.tid,
                what: format!(
                    "{n} bytes with crc32 {crc:08x}, the manifest says {} bytes with {:08x}",
                    e.size, e.crc32
                ),
            },
        ));
    }
    // ZODB's blob files are read-only (set_not_writable).
    out.set_permissions(std::fs::Permissions::from_mode(0o444))
        .map_err(|err| Error::io(dst, err))?;
    Ok(n)
}

/// Adds the file of `e` to a live blob directory at `dst`: written under a
/// temporary name ZODB ignores (`*.tmp-`), then renamed. Not synced: the
/// caller syncs the tree once. Returns its size.
pub fn install_file(repo: &BlobRepo, e: &Entry, dst: &Path) -> Result<u64> {
    let tmp = fsutil::sibling(dst, &format!("{INSTALL_TEMP}{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut buf = vec![0u8; 256 * 1024];
    let r = copy_entry(repo, e, &tmp, &mut buf).and_then(|n| {
        std::fs::rename(&tmp, dst)
            .map(|()| n)
            .map_err(|err| Error::io(dst, err))
    });
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Something wrong found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A blob record of the Data.fs whose file the run does not hold.
    NotInRun { oid: u64, tid: Tid },
    /// An entry (at or below the TID) that no blob record names.
    NotARecord { oid: u64, tid: Tid },
    /// The pool file of an entry is missing.
    PoolMissing { oid: u64, tid: Tid },
    /// The pool file has another size (or, deep, another crc32).
    PoolDiffers { oid: u64, tid: Tid, what: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub checked: u64,
    pub bytes: u64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks run `m` at `upto` against the blob records of the Data.fs it
/// goes with (`records`: those of the restored prefix; records above
/// `upto` are ignored): every record has an entry, every entry a record,
/// and every entry its pool file with the right size (and, with `deep`,
/// the right crc32, reading it). Only I/O failures are errors.
pub fn verify(
    repo: &BlobRepo,
    m: &Manifest,
    upto: Tid,
    records: Option<&[BlobRecord]>,
    deep: bool,
) -> Result<VerifyReport> {
    let mut r = VerifyReport::default();
    if let Some(records) = records {
        let mut named = std::collections::HashSet::new();
        for rec in records.iter().filter(|x| x.tid <= upto) {
            named.insert((rec.oid, rec.tid));
            if m.get(rec.oid, rec.tid).is_none() {
                r.problems.push(Problem::NotInRun {
                    oid: rec.oid,
                    tid: rec.tid,
                });
            }
        }
        for e in m.upto(upto) {
            if !named.contains(&(e.oid, e.tid)) {
                r.problems.push(Problem::NotARecord {
                    oid: e.oid,
                    tid: e.tid,
                });
            }
        }
    }
    for e in m.upto(upto) {
        let p = repo.pool_file(e.oid, e.tid);
        r.checked += 1;
        r.bytes += e.size;
        let size = match std::fs::metadata(&p) {
            Ok(md) => md.len(),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                r.problems.push(Problem::PoolMissing {
                    oid: e.oid,
                    tid: e.tid,
                });
                continue;
            }
            Err(err) => return Err(Error::io(&p, err)),
        };
        if size != e.size {
            r.problems.push(Problem::PoolDiffers {
                oid: e.oid,
                tid: e.tid,
                what: format!("{size} bytes, the manifest says {}", e.size),
            });
            continue;
        }
        if deep {
            let mut f = File::open(&p).map_err(|err| Error::io(&p, err))?;
            let (_, crc) = super::snapshot::crc_of(&mut f, &p)?;
            if crc != e.crc32 {
                r.problems.push(Problem::PoolDiffers {
                    oid: e.oid,
                    tid: e.tid,
                    what: format!("crc32 {crc:08x}, the manifest says {:08x}", e.crc32),
                });
            }
        }
    }
    Ok(r)
}

/// How a live blob directory differs from a run at a TID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompareReport {
    /// The live layout, when it is not the run's.
    pub layout_differs: Option<(layout::Layout, layout::Layout)>,
    /// Entries without a live file.
    pub missing: Vec<(u64, Tid)>,
    /// Live blob files the run does not have at that TID.
    pub extra: Vec<PathBuf>,
    /// Live files of another size (or, deep, content).
    pub differ: Vec<(u64, Tid, String)>,
    /// Files in `tmp/` or temporaries in oid directories (never compared).
    pub temporary: u64,
    /// Among those, the temporaries of incremental restores whose process is
    /// gone (relative paths): nobody's, removed by the next catch-up.
    pub stale: Vec<PathBuf>,
}

impl CompareReport {
    pub fn same(&self) -> bool {
        self.layout_differs.is_none()
            && self.missing.is_empty()
            && self.extra.is_empty()
            && self.differ.is_empty()
    }
}

/// Compares the live blob directory `live` with run `m` at `upto`.
pub fn compare(m: &Manifest, upto: Tid, live: &Path, deep: bool) -> Result<CompareReport> {
    let mut r = CompareReport::default();
    let live_layout = read_layout(live)?;
    if live_layout != m.layout {
        r.layout_differs = Some((m.layout, live_layout));
    }
    let walked = layout::walk(live, live_layout)?;
    r.temporary = walked.tmp.len() as u64;
    let mut found = std::collections::HashMap::new();
    for f in walked.files {
        match f.kind {
            FileKind::Blob(t) => {
                found.insert((f.oid, t), f);
            }
            _ => {
                r.temporary += 1;
                if f.rel
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(is_stale_install_temp)
                {
                    r.stale.push(f.rel);
                }
            }
        }
    }
    for e in m.upto(upto) {
        match found.remove(&(e.oid, e.tid)) {
            None => r.missing.push((e.oid, e.tid)),
            Some(f) if f.size != e.size => r.differ.push((
                e.oid,
                e.tid,
                format!("{} bytes, the run has {}", f.size, e.size),
            )),
            Some(f) => {
                if deep {
                    let p = live.join(&f.rel);
                    let mut h = File::open(&p).map_err(|err| Error::io(&p, err))?;
                    let (_, crc) = super::snapshot::crc_of(&mut h, &p)?;
                    if crc != e.crc32 {
                        r.differ
                            .push((e.oid, e.tid, "content differs (crc32)".to_string()));
                    }
                }
            }
        }
    }
    let mut extra: Vec<PathBuf> = found.into_values().map(|f| f.rel).collect();
    extra.sort();
    r.extra = extra;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::Contents;
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf, BlobRepo, Manifest) {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("blobs");
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        std::fs::write(d.join(".layout"), "lawn").unwrap();
        let mut recs = Vec::new();
        for (oid, tid, data) in [(1u64, 10u64, "a"), (1, 12, "bb"), (2, 11, "ccc")] {
            let p = d.join(layout::Layout::Lawn.blob_path(oid, Tid(tid)));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
            recs.push(BlobRecord {
                oid,
                tid: Tid(tid),
                pos: 4,
            });
        }
        let repo = BlobRepo::at(&t.path().join("repo"));
        repo.write_snapshot(
            "r1",
            &d,
            Some(Tid(12)),
            Contents::Full {
                records: &recs,
                previous: None,
            },
        )
        .unwrap();
        let m = repo.read_manifest("r1").unwrap();
        (t, d, repo, m)
    }

    #[test]
    fn restore_at_a_tid_holds_exactly_the_files_at_or_below_it() {
        let (t, d, repo, m) = setup();
        let out = t.path().join("out/blobs");
        let r = restore(&repo, &m, Tid(11), &out, false).unwrap();
        assert_eq!((r.files, r.bytes, r.kept_aside), (2, 4, None));
        let c = compare(&m, Tid(11), &out, true).unwrap();
        assert!(c.same(), "{c:?}");
        assert_eq!(
            std::fs::read_to_string(out.join(".layout")).unwrap(),
            "lawn"
        );
        assert_eq!(std::fs::read_dir(out.join("tmp")).unwrap().count(), 0);
        // The live directory has the file above 11: compare says so.
        let c = compare(&m, Tid(11), &d, false).unwrap();
        assert_eq!(c.extra, vec![PathBuf::from("0x01/0x0c.blob")]);
        // Replacing needs asking, and keeps the old directory.
        let e = restore(&repo, &m, Tid(12), &out, false).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::TargetExists));
        let r = restore(&repo, &m, Tid(12), &out, true).unwrap();
        let aside = r.kept_aside.unwrap();
        assert!(compare(&m, Tid(11), &aside, false).unwrap().same());
        assert!(compare(&m, Tid(12), &out, false).unwrap().same());
    }

    fn dead_pid() -> u32 {
        crate::fsutil::tests::dead_pid()
    }

    #[test]
    fn only_the_temporaries_of_processes_that_are_gone_are_stale() {
        assert_eq!(
            pid_after(".blobs.restore-123-4", ".blobs.restore-"),
            Some(123)
        );
        assert_eq!(pid_after(".tmp-restore-77", ".tmp-restore-"), Some(77));
        for bad in [
            ".blobs.restore-",
            ".blobs.restore-12x-0",
            ".blobs.restore-1-",
            "x",
        ] {
            assert_eq!(pid_after(bad, ".blobs.restore-"), None, "{bad}");
        }
        let dead = dead_pid();
        assert!(process_gone(dead));
        assert!(!process_gone(std::process::id()));
        assert!(!process_gone(1)); // init: alive, whether or not it may be signalled
        assert!(is_stale_install_temp(&format!(
            "0x0a.blob.tmp-restore-{dead}"
        )));
        let mine = format!("0x0a.blob.tmp-restore-{}", std::process::id());
        assert!(!is_stale_install_temp(&mine));
        assert!(!is_stale_install_temp("0x0a.blob.tmp-abc123")); // ZODB's own
    }

    #[test]
    fn a_rebuild_removes_what_interrupted_restores_left_and_nothing_else() {
        let (t, _d, repo, m) = setup();
        let out = t.path().join("out/blobs");
        std::fs::create_dir_all(t.path().join("out")).unwrap();
        let dead = dead_pid();
        let stale = t.path().join(format!("out/.blobs.restore-{dead}-0"));
        let alive = t
            .path()
            .join(format!("out/.blobs.restore-{}-7", std::process::id()));
        let other = t.path().join(format!("out/.other.restore-{dead}-0"));
        for d in [&stale, &alive, &other] {
            std::fs::create_dir_all(d.join("0x01")).unwrap();
            std::fs::write(d.join("0x01/0x0a.blob"), "x").unwrap();
        }
        restore(&repo, &m, Tid(12), &out, false).unwrap();
        assert!(!stale.exists());
        assert!(alive.exists() && other.exists());

        // A live directory: the compare names the stale install temporary
        // (counted with the temporaries, never as a difference).
        let oid_dir = out.join(layout::Layout::Lawn.oid_dir(1));
        std::fs::write(
            oid_dir.join(format!("0x0c.blob.tmp-restore-{dead}")),
            "half",
        )
        .unwrap();
        std::fs::write(oid_dir.join("0x0d.blob.tmp-zodb"), "zodb's").unwrap();
        let c = compare(&m, Tid(12), &out, false).unwrap();
        assert!(c.same(), "{c:?}");
        assert_eq!(c.temporary, 2);
        assert_eq!(
            c.stale,
            vec![layout::Layout::Lawn
                .oid_dir(1)
                .join(format!("0x0c.blob.tmp-restore-{dead}"))]
        );
    }

    #[test]
    fn a_built_directory_not_installed_is_removed() {
        let (t, _d, repo, m) = setup();
        let out = t.path().join("out/blobs");
        let b = build_beside(&repo, &m, Tid(12), &out, false).unwrap();
        let temp = b.path().to_path_buf();
        assert!(compare(&m, Tid(12), &temp, true).unwrap().same());
        assert!(!out.exists());
        drop(b);
        assert!(!temp.exists());
        let b = build_beside(&repo, &m, Tid(12), &out, false).unwrap();
        assert_eq!(b.install().unwrap().files, 3);
        // Refused before any work when the target holds something.
        let e = build_beside(&repo, &m, Tid(12), &out, false).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::TargetExists));
    }

    #[test]
    fn damaged_pool_fails_the_restore_and_leaves_nothing() {
        let (t, _d, repo, m) = setup();
        let p = repo.pool_file(2, Tid(11));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&p, "ccX").unwrap();
        let out = t.path().join("out/blobs");
        let e = restore(&repo, &m, Tid(12), &out, false).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::PoolDamaged { .. }), "{e}");
        assert!(!out.exists());
        assert_eq!(std::fs::read_dir(t.path().join("out")).unwrap().count(), 0);
        // verify finds it only when reading the content.
        assert!(verify(&repo, &m, Tid(12), None, false).unwrap().ok());
        let v = verify(&repo, &m, Tid(12), None, true).unwrap();
        assert_eq!(v.problems.len(), 1, "{v:?}");
    }

    #[test]
    fn verify_checks_records_against_the_run() {
        let (_t, _d, repo, m) = setup();
        let rec = |oid, tid| BlobRecord {
            oid,
            tid: Tid(tid),
            pos: 4,
        };
        let v = verify(&repo, &m, Tid(11), Some(&[rec(1, 10), rec(2, 11)]), false).unwrap();
        assert!(v.ok(), "{v:?}");
        let v = verify(&repo, &m, Tid(11), Some(&[rec(1, 10), rec(3, 9)]), false).unwrap();
        assert_eq!(
            v.problems,
            vec![
                Problem::NotInRun {
                    oid: 3,
                    tid: Tid(9)
                },
                Problem::NotARecord {
                    oid: 2,
                    tid: Tid(11)
                }
            ]
        );
        std::fs::remove_file(repo.pool_file(1, Tid(10))).unwrap();
        let v = verify(&repo, &m, Tid(11), None, false).unwrap();
        assert_eq!(
            v.problems,
            vec![Problem::PoolMissing {
                oid: 1,
                tid: Tid(10)
            }]
        );
    }
}
