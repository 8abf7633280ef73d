//! The blob part of a storage's repository: a pool of blob files and one
//! manifest per backup run (layout and reasons in `docs/blobs.md`).
//!
//! ```text
//! <repository>/blobs/
//!   pool/<bushy oid path>/<tid repr>.blob   each (oid, tid) once, read-only
//!   runs/<run stamp>.blobs                  the manifest of one run
//! ```
//!
//! A manifest is text, one entry per blob file, sorted by (oid, tid). A
//! run holds the files of its own manifest plus, when it names a `base`,
//! everything its base run holds (an incremental run only adds files, so
//! its manifest lists only the new ones: disk use per run grows by the new
//! files and their lines, not by the whole tree). A full Data.fs backup
//! (after a pack: files may have gone) writes a manifest without a base.
//!
//! ```text
//! tidstorage-blobs 1
//! layout bushy                  the source directory's layout
//! point 0x03ec1a2b3c4d5e6f      the last TID of the prefix ("none": empty)
//! base 2026-12-01-10-00-00      optional: the run this one adds to
//! files 2                       entries in this file
//! 0000000000000001 03ec1a2b3c4d5e6f 1234 8a9b0c1d    oid tid size crc32
//! 0000000000000007 03ec1a2b3c4d5e70 10 00ff00ff
//! end
//! ```
//!
//! Owns: writing a run (copy the files the pool lacks, carry the rest from
//! the previous manifest without looking at them, then the manifest),
//! reading manifests, pruning. Must not: overwrite a pool file or a
//! manifest, look at a blob file the previous run already holds, or take a
//! file from `tmp/`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::layout::{read_layout, Layout};
use super::{create_dirs, sync_dir, Error, ErrorKind, Missing, Result};
use crate::datafs::blobrecords::BlobRecord;
use crate::fsutil;
use crate::tid::Tid;

const POOL: &str = "pool";
const RUNS: &str = "runs";
const MANIFEST_SUFFIX: &str = ".blobs";
const MAGIC: &str = "tidstorage-blobs 1";

/// One blob file of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub oid: u64,
    pub tid: Tid,
    pub size: u64,
    pub crc32: u32,
}

/// The manifest of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub stamp: String,
    pub layout: Layout,
    /// The last TID of the backed-up Data.fs prefix (`None`: empty file).
    pub point: Option<Tid>,
    /// Every file of the run (its base's included), sorted by (oid, tid),
    /// each pair once.
    pub entries: Vec<Entry>,
    /// The run this one's manifest file adds to (`None`: a full list).
    pub base: Option<String>,
}

/// Longest chain of incremental manifests followed (a guard against loops
/// made by hand; a real chain is as long as the runs since a full backup).
const MAX_CHAIN: usize = 100_000;

impl Manifest {
    /// The entry of (oid, tid).
    pub fn get(&self, oid: u64, tid: Tid) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| (e.oid, e.tid).cmp(&(oid, tid)))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The entries a restore at `upto` installs.
    pub fn upto(&self, upto: Tid) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(move |e| e.tid <= upto)
    }

    /// Files and bytes a restore at `upto` installs.
    pub fn totals_upto(&self, upto: Tid) -> (u64, u64) {
        self.upto(upto)
            .fold((0, 0), |(n, b), e| (n + 1, b + e.size))
    }

    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}

/// What a run holds, as the caller learned it from the Data.fs.
#[derive(Debug, Clone, Copy)]
pub enum Contents<'a> {
    /// Every blob record of the backed-up prefix (a full Data.fs backup,
    /// e.g. after a pack). Files `previous` holds are carried, not copied.
    Full {
        records: &'a [BlobRecord],
        previous: Option<&'a Manifest>,
    },
    /// An incremental Data.fs backup: the previous run's files plus the
    /// blob records of the Data.fs delta just copied.
    Incremental {
        previous: &'a Manifest,
        delta: &'a [BlobRecord],
    },
}

/// What writing a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotReport {
    pub manifest: PathBuf,
    /// Files and bytes the run holds.
    pub files: u64,
    pub bytes: u64,
    /// Files copied into the pool by this run.
    pub copied: u64,
    pub copied_bytes: u64,
    /// Of those, taken from `<blob_dir>.old` (moved there by a pack).
    pub from_old: u64,
    /// Files carried from the previous manifest (nothing read).
    pub carried: u64,
    /// Files found already in the pool (an interrupted earlier run) and
    /// checked equal to the source.
    pub already_pooled: u64,
}

/// What pruning removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub manifests: u64,
    pub files: u64,
    pub bytes: u64,
}

/// The blob part of one storage's repository.
#[derive(Debug, Clone)]
pub struct BlobRepo {
    root: PathBuf,
}

fn check_stamp(root: &Path, stamp: &str) -> Result<()> {
    if stamp.is_empty()
        || stamp.starts_with('.')
        || !stamp
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
    {
        return Err(Error::new(root, ErrorKind::BadStamp(stamp.to_string())));
    }
    Ok(())
}

impl BlobRepo {
    /// The blob part of `repository` (a storage's repozo repository).
    pub fn at(repository: &Path) -> BlobRepo {
        BlobRepo {
            root: repository.join("blobs"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the pool keeps (oid, tid).
    pub fn pool_file(&self, oid: u64, tid: Tid) -> PathBuf {
        self.root.join(POOL).join(Layout::Bushy.blob_path(oid, tid))
    }

    pub fn manifest_path(&self, stamp: &str) -> PathBuf {
        self.root
            .join(RUNS)
            .join(format!("{stamp}{MANIFEST_SUFFIX}"))
    }

    /// The stamps of the runs with a manifest, oldest first (stamps sort
    /// as times when they are repozo-style timestamps).
    pub fn stamps(&self) -> Result<Vec<String>> {
        let dir = self.root.join(RUNS);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(&dir, e))?;
            if let Some(s) = ent
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(MANIFEST_SUFFIX))
            {
                if !s.starts_with('.') {
                    out.push(s.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The newest run's manifest.
    pub fn latest(&self) -> Result<Option<Manifest>> {
        match self.stamps()?.last() {
            Some(s) => self.read_manifest(s).map(Some),
            None => Ok(None),
        }
    }

    /// The manifest of `stamp`, with the files of its base runs merged in.
    pub fn read_manifest(&self, stamp: &str) -> Result<Manifest> {
        let mut top = self.read_manifest_file(stamp)?;
        let mut base = top.base.clone();
        let mut seen = vec![stamp.to_string()];
        while let Some(b) = base {
            if seen.contains(&b) || seen.len() > MAX_CHAIN {
                let path = self.manifest_path(stamp);
                return Err(Error::new(
                    &path,
                    ErrorKind::BadManifest {
                        line: 4,
                        what: format!("the chain of base runs loops at {b}"),
                    },
                ));
            }
            let m = self.read_manifest_file(&b)?;
            top.entries.extend(m.entries);
            seen.push(b);
            base = m.base;
        }
        top.entries.sort();
        top.entries
            .dedup_by(|a, b| (a.oid, a.tid) == (b.oid, b.tid));
        Ok(top)
    }

    /// One manifest file as written (only its own entries).
    fn read_manifest_file(&self, stamp: &str) -> Result<Manifest> {
        check_stamp(&self.root, stamp)?;
        let path = self.manifest_path(stamp);
        let f = File::open(&path).map_err(|e| Error::io(&path, e))?;
        parse_manifest(&path, stamp, BufReader::new(f))
    }

    /// Writes the run `stamp` from the blob directory `blob_dir`: copies
    /// into the pool the files of `contents` that the previous manifest
    /// does not hold (from `blob_dir`, else from `<blob_dir>.old`), makes
    /// them and their directories durable, then writes the manifest (never
    /// over an existing one). A file found in neither place fails the run
    /// with [`ErrorKind::Missing`] listing every such (oid, tid), after
    /// looking for all of them; nothing is added to the pool then (the
    /// copies made are removed).
    pub fn write_snapshot(
        &self,
        stamp: &str,
        blob_dir: &Path,
        point: Option<Tid>,
        contents: Contents<'_>,
    ) -> Result<SnapshotReport> {
        check_stamp(&self.root, stamp)?;
        let manifest_path = self.manifest_path(stamp);
        if fsutil::exists(&manifest_path).map_err(|e| Error::io(&manifest_path, e))? {
            return Err(Error::io(
                &manifest_path,
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a blob manifest of this run exists; it is never overwritten",
                ),
            ));
        }
        let layout = read_layout(blob_dir)?;
        let old_dir = fsutil::sibling(blob_dir, ".old");
        // (oid, tid) -> entry when carried, None when to copy.
        let mut wanted: BTreeMap<(u64, Tid), Option<Entry>> = BTreeMap::new();
        let previous = match contents {
            Contents::Full { records, previous } => {
                for r in records {
                    wanted.insert((r.oid, r.tid), None);
                }
                previous
            }
            Contents::Incremental { previous, delta } => {
                for e in &previous.entries {
                    wanted.insert((e.oid, e.tid), Some(*e));
                }
                for r in delta {
                    wanted.entry((r.oid, r.tid)).or_insert(None);
                }
                Some(previous)
            }
        };
        let mut report = SnapshotReport {
            manifest: manifest_path.clone(),
            ..SnapshotReport::default()
        };
        let mut missing = Vec::new();
        let mut created = Vec::new();
        let mut pending = Pending::default();
        let mut buf = vec![0u8; 256 * 1024];
        let base = match contents {
            Contents::Incremental { previous, .. } => Some(previous.stamp.clone()),
            Contents::Full { .. } => None,
        };
        let mut entries = Vec::with_capacity(wanted.len());
        for ((oid, tid), have) in wanted {
            let have = have.or_else(|| previous.and_then(|p| p.get(oid, tid)).copied());
            if let Some(e) = have {
                report.carried += 1;
                entries.push(e);
                continue;
            }
            let rel = layout.blob_path(oid, tid);
            let live = blob_dir.join(&rel);
            let old = old_dir.join(&rel);
            let target = self.pool_file(oid, tid);
            let mut src = None;
            for (p, is_old) in [(&live, false), (&old, true)] {
                match File::open(p) {
                    Ok(f) => {
                        src = Some((f, p.clone(), is_old));
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(p, e)),
                }
            }
            let Some((mut f, src_path, is_old)) = src else {
                missing.push(Missing {
                    oid,
                    tid,
                    looked: vec![live, old],
                });
                continue;
            };
            if fsutil::exists(&target).map_err(|e| Error::io(&target, e))? {
                let a = crc_of(&mut f, &src_path)?;
                let mut pf = File::open(&target).map_err(|e| Error::io(&target, e))?;
                let b = crc_of(&mut pf, &target)?;
                if a != b {
                    return Err(Error::new(&target, ErrorKind::PoolConflict { oid, tid }));
                }
                report.already_pooled += 1;
                entries.push(Entry {
                    oid,
                    tid,
                    size: a.0,
                    crc32: a.1,
                });
                continue;
            }
            let dir = target.parent().unwrap_or(&self.root).to_path_buf();
            create_dirs(&dir, &mut created)?;
            let (tmp, size, crc) = copy_to_temp(&mut f, &src_path, &target, &mut buf)?;
            pending.0.push((tmp, target));
            report.copied += 1;
            report.copied_bytes += size;
            if is_old {
                report.from_old += 1;
            }
            entries.push(Entry {
                oid,
                tid,
                size,
                crc32: crc,
            });
        }
        if !missing.is_empty() {
            return Err(Error::new(blob_dir, ErrorKind::Missing(missing)));
        }
        // The copies' data durable (one syncfs, not one fsync per file)
        // before any gets its pool name; then the names and new directories
        // durable before the manifest names them. A crash before the names
        // leaves temporaries only, which the next prune removes.
        if !pending.0.is_empty() {
            syncfs(&self.root)?;
            for (tmp, target) in std::mem::take(&mut pending.0) {
                // A link never replaces a name: the target was checked absent.
                let linked = std::fs::hard_link(&tmp, &target).map_err(|e| Error::io(&target, e));
                let _ = std::fs::remove_file(&tmp);
                linked?;
            }
            syncfs(&self.root)?;
        }
        entries.sort();
        report.files = entries.len() as u64;
        report.bytes = entries.iter().map(|e| e.size).sum();
        let own = match (&base, previous) {
            (Some(_), Some(p)) => entries
                .iter()
                .filter(|e| p.get(e.oid, e.tid).is_none())
                .copied()
                .collect(),
            _ => entries,
        };
        let m = Manifest {
            stamp: stamp.to_string(),
            layout,
            point,
            entries: own,
            base,
        };
        self.write_manifest(&m)?;
        Ok(report)
    }

    fn write_manifest(&self, m: &Manifest) -> Result<()> {
        let path = self.manifest_path(&m.stamp);
        let runs = self.root.join(RUNS);
        let mut created = Vec::new();
        create_dirs(&runs, &mut created)?;
        for d in created.iter().filter_map(|d| d.parent()) {
            sync_dir(d)?;
        }
        let mut t = fsutil::TempFile::beside(&path).map_err(|e| Error::io(&path, e))?;
        {
            let mut w = BufWriter::new(t.file());
            render_manifest(m, &mut w)
                .and_then(|()| w.flush())
                .map_err(|e| Error::io(&path, e))?;
        }
        t.persist_new(&path).map_err(|e| Error::io(&path, e))
    }

    /// Removes the manifests of the runs not in `keep` (except the base
    /// runs a kept run adds to), then every pool file no kept run names
    /// (and stale temporary files).
    pub fn prune(&self, keep: &[&str]) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let mut referenced = std::collections::HashSet::new();
        let mut kept: std::collections::HashSet<String> = std::collections::HashSet::new();
        for k in keep {
            let mut cur = Some(k.to_string());
            while let Some(c) = cur {
                if !kept.insert(c.clone()) {
                    break;
                }
                cur = self.read_manifest_file(&c)?.base;
            }
        }
        for s in self.stamps()? {
            if kept.contains(&s) {
                for e in self.read_manifest_file(&s)?.entries {
                    referenced.insert((e.oid, e.tid));
                }
            } else {
                let p = self.manifest_path(&s);
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                report.manifests += 1;
            }
        }
        if report.manifests > 0 {
            sync_dir(&self.root.join(RUNS))?;
        }
        let pool = self.root.join(POOL);
        if !fsutil::exists(&pool).map_err(|e| Error::io(&pool, e))? {
            return Ok(report);
        }
        let walked = super::layout::walk(&pool, Layout::Bushy)?;
        let mut dirs = Vec::new();
        for f in walked.files {
            let gone = match f.kind {
                super::layout::FileKind::Blob(t) => !referenced.contains(&(f.oid, t)),
                _ => true,
            };
            if gone {
                let p = pool.join(&f.rel);
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                report.files += 1;
                report.bytes += f.size;
                if let Some(d) = p.parent() {
                    dirs.push(d.to_path_buf());
                }
            }
        }
        dirs.sort();
        dirs.dedup();
        for d in dirs {
            remove_empty_dirs_up_to(&d, &pool)?;
        }
        Ok(report)
    }
}

/// Removes `dir` and its parents while they are empty, stopping at `root`
/// (kept); syncs the first directory that stays.
pub(crate) fn remove_empty_dirs_up_to(dir: &Path, root: &Path) -> Result<()> {
    let mut d = dir.to_path_buf();
    while d.starts_with(root) && d != root {
        match std::fs::remove_dir(&d) {
            Ok(()) => {}
            Err(e)
                if e.raw_os_error() == Some(libc::ENOTEMPTY)
                    || e.raw_os_error() == Some(libc::EEXIST) =>
            {
                break
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&d, e)),
        }
        match d.parent() {
            Some(p) => d = p.to_path_buf(),
            None => break,
        }
    }
    sync_dir(&d)
}

/// (size, crc32) of what `f` holds from its current offset.
pub(crate) fn crc_of(f: &mut File, path: &Path) -> Result<(u64, u32)> {
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                h.update(&buf[..k]);
                n += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok((n, h.finalize()))
}

/// Temporaries copied but not yet given their pool name; removed on drop.
#[derive(Default)]
struct Pending(Vec<(PathBuf, PathBuf)>);

impl Drop for Pending {
    fn drop(&mut self) {
        for (tmp, _) in &self.0 {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// syncfs(2) of the filesystem holding `dir`: every file and directory
/// written there is durable once it returns.
pub fn syncfs(dir: &Path) -> Result<()> {
    use std::os::unix::io::AsRawFd;
    let d = File::open(dir).map_err(|e| Error::io(dir, e))?;
    // SAFETY: fd valid for the life of `d`.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(Error::io(dir, io::Error::last_os_error()));
    }
    Ok(())
}

/// Copies `src` into a new read-only temporary file beside `target`
/// (not synced: the caller syncs the filesystem, then links it to
/// `target`). Returns (temporary path, size, crc32).
fn copy_to_temp(
    src: &mut File,
    src_path: &Path,
    target: &Path,
    buf: &mut [u8],
) -> Result<(PathBuf, u64, u32)> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = None;
    for n in 0..1000u32 {
        let p = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
        {
            Ok(f) => {
                tmp = Some((f, p));
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&p, e)),
        }
    }
    let Some((mut out, tmp_path)) = tmp else {
        return Err(Error::io(
            target,
            io::Error::new(io::ErrorKind::AlreadyExists, "no free temporary name"),
        ));
    };
    let result = (|| {
        let mut h = crc32fast::Hasher::new();
        let mut n = 0u64;
        loop {
            let k = match src.read(buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(src_path, e)),
            };
            h.update(&buf[..k]);
            out.write_all(&buf[..k])
                .map_err(|e| Error::io(&tmp_path, e))?;
            n += k as u64;
        }
        out.set_permissions(std::fs::Permissions::from_mode(0o444))
            .map_err(|e| Error::io(&tmp_path, e))?;
        Ok((n, h.finalize()))
    })();
    match result {
        Ok((n, crc)) => Ok((tmp_path, n, crc)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp_path);
            Err(e)
        }
    }
}

fn render_manifest(m: &Manifest, w: &mut impl Write) -> io::Result<()> {
    writeln!(w, "{MAGIC}")?;
    writeln!(w, "layout {}", m.layout.name())?;
    match m.point {
        Some(t) => writeln!(w, "point 0x{}", t.hex())?,
        None => writeln!(w, "point none")?,
    }
    if let Some(b) = &m.base {
        writeln!(w, "base {b}")?;
    }
    writeln!(w, "files {}", m.entries.len())?;
    for e in &m.entries {
        writeln!(
            w,
            "{:016x} {:016x} {} {:08x}",
            e.oid, e.tid.0, e.size, e.crc32
        )?;
    }
    writeln!(w, "end")
}

fn parse_manifest(path: &Path, stamp: &str, r: impl BufRead) -> Result<Manifest> {
    let bad = |line: usize, what: &str| {
        Error::new(
            path,
            ErrorKind::BadManifest {
                line,
                what: what.to_string(),
            },
        )
    };
    let mut lines = r.lines().enumerate().map(|(i, l)| (i + 1, l));
    let mut next = |what: &str| -> Result<(usize, String)> {
        match lines.next() {
            Some((n, Ok(l))) => Ok((n, l)),
            Some((_, Err(e))) => Err(Error::io(path, e)),
            None => Err(bad(0, &format!("the file ends before {what}"))),
        }
    };
    let (n, l) = next("the header")?;
    if l != MAGIC {
        return Err(bad(n, "not a tidstorage blob manifest"));
    }
    let (n, l) = next("the layout")?;
    let layout = l
        .strip_prefix("layout ")
        .and_then(Layout::from_name)
        .ok_or_else(|| bad(n, "expected `layout bushy` or `layout lawn`"))?;
    let (n, l) = next("the point")?;
    let point = match l.strip_prefix("point ") {
        Some("none") => None,
        Some(h) => Some(Tid(h
            .strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or_else(|| bad(n, "bad point"))?)),
        None => return Err(bad(n, "expected `point`")),
    };
    let (mut n, mut l) = next("the file count")?;
    let mut base = None;
    if let Some(b) = l.strip_prefix("base ") {
        check_stamp(path, b).map_err(|_| bad(n, "bad base run stamp"))?;
        base = Some(b.to_string());
        (n, l) = next("the file count")?;
    }
    let count: usize = l
        .strip_prefix("files ")
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad(n, "expected `files N`"))?;
    let mut entries: Vec<Entry> = Vec::new();
    loop {
        let (n, l) = next("`end` (the manifest is truncated)")?;
        if l == "end" {
            break;
        }
        let f: Vec<&str> = l.split(' ').collect();
        let e = match f.as_slice() {
            [o, t, s, c] if o.len() == 16 && t.len() == 16 && c.len() == 8 => (|| {
                Some(Entry {
                    oid: u64::from_str_radix(o, 16).ok()?,
                    tid: Tid(u64::from_str_radix(t, 16).ok()?),
                    size: s.parse().ok()?,
                    crc32: u32::from_str_radix(c, 16).ok()?,
                })
            })(),
            _ => None,
        }
        .ok_or_else(|| bad(n, "expected `OID TID SIZE CRC32`"))?;
        if let Some(last) = entries.last() {
            if (last.oid, last.tid) >= (e.oid, e.tid) {
                return Err(bad(n, "entries not sorted by (oid, tid)"));
            }
        }
        entries.push(e);
    }
    if entries.len() != count {
        return Err(bad(
            0,
            &format!("{} entries, the header says {count}", entries.len()),
        ));
    }
    Ok(Manifest {
        stamp: stamp.to_string(),
        layout,
        point,
        entries,
        base,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(oid: u64, tid: u64) -> BlobRecord {
        BlobRecord {
            oid,
            tid: Tid(tid),
            pos: 4,
        }
    }

    fn blob_dir(root: &Path, files: &[(u64, u64, &str)]) -> PathBuf {
        let d = root.join("blobs");
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        std::fs::write(d.join(".layout"), "bushy").unwrap();
        for (oid, tid, data) in files {
            let p = d.join(Layout::Bushy.blob_path(*oid, Tid(*tid)));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        d
    }

    #[test]
    fn manifest_round_trips_and_truncation_is_damage() {
        let m = Manifest {
            stamp: "s".into(),
            layout: Layout::Lawn,
            point: Some(Tid(0x3ec)),
            base: Some("r0".into()),
            entries: vec![
                Entry {
                    oid: 1,
                    tid: Tid(2),
                    size: 3,
                    crc32: 4,
                },
                Entry {
                    oid: 1,
                    tid: Tid(5),
                    size: 0,
                    crc32: 0,
                },
            ],
        };
        let mut b = Vec::new();
        render_manifest(&m, &mut b).unwrap();
        assert_eq!(parse_manifest(Path::new("m"), "s", &b[..]).unwrap(), m);
        for cut in 0..b.len() - 1 {
            let e = parse_manifest(Path::new("m"), "s", &b[..cut]);
            assert!(e.is_err(), "prefix {cut} parsed");
        }
    }

    #[test]
    fn incremental_copies_only_new_files_and_carries_the_rest() {
        let t = tempfile::tempdir().unwrap();
        let d = blob_dir(t.path(), &[(1, 10, "a"), (2, 11, "bb")]);
        let repo = BlobRepo::at(&t.path().join("repo"));
        let r1 = repo
            .write_snapshot(
                "r1",
                &d,
                Some(Tid(11)),
                Contents::Full {
                    records: &[rec(1, 10), rec(2, 11)],
                    previous: None,
                },
            )
            .unwrap();
        assert_eq!((r1.copied, r1.carried, r1.files, r1.bytes), (2, 0, 2, 3));
        let m1 = repo.read_manifest("r1").unwrap();
        // The carried file is not looked at: remove it from the source.
        std::fs::remove_file(d.join(Layout::Bushy.blob_path(1, Tid(10)))).unwrap();
        let p = d.join(Layout::Bushy.blob_path(1, Tid(12)));
        std::fs::write(p, "ccc").unwrap();
        let r2 = repo
            .write_snapshot(
                "r2",
                &d,
                Some(Tid(12)),
                Contents::Incremental {
                    previous: &m1,
                    delta: &[rec(1, 12)],
                },
            )
            .unwrap();
        assert_eq!((r2.copied, r2.carried, r2.files), (1, 2, 3));
        assert_eq!(repo.stamps().unwrap(), vec!["r1", "r2"]);
        // r2's manifest file lists only the new file; reading it merges r1.
        let own = repo.read_manifest_file("r2").unwrap();
        assert_eq!((own.entries.len(), own.base.as_deref()), (1, Some("r1")));
        assert_eq!(repo.read_manifest("r2").unwrap().entries.len(), 3);
        // A run never overwrites a manifest.
        assert!(repo
            .write_snapshot(
                "r2",
                &d,
                None,
                Contents::Full {
                    records: &[],
                    previous: None
                }
            )
            .is_err());
        // Keeping r2 keeps its base r1 and every file.
        let pr = repo.prune(&["r2"]).unwrap();
        assert_eq!((pr.manifests, pr.files), (0, 0));
        // A full run r3 without the file of oid 2: r1 and r2 can go.
        let r3 = repo
            .write_snapshot(
                "r3",
                &d,
                None,
                Contents::Full {
                    records: &[rec(1, 12)],
                    previous: Some(&repo.read_manifest("r2").unwrap()),
                },
            )
            .unwrap();
        assert_eq!((r3.copied, r3.carried), (0, 1));
        let pr = repo.prune(&["r3"]).unwrap();
        assert_eq!((pr.manifests, pr.files), (2, 2));
        assert_eq!(repo.read_manifest("r3").unwrap().entries.len(), 1);
        // A temporary left by an interrupted run goes too.
        let stale = repo
            .pool_file(1, Tid(12))
            .with_file_name(".0x0c.blob.tmp-1-0");
        std::fs::write(&stale, "partial").unwrap();
        let pr = repo.prune(&[]).unwrap();
        assert_eq!((pr.manifests, pr.files), (1, 2));
        assert!(!stale.exists());
    }

    #[test]
    fn a_vanished_file_is_taken_from_dot_old_or_named() {
        let t = tempfile::tempdir().unwrap();
        let d = blob_dir(t.path(), &[(1, 10, "a")]);
        let old = fsutil::sibling(&d, ".old");
        let p = old.join(Layout::Bushy.blob_path(2, Tid(11)));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "old").unwrap();
        let repo = BlobRepo::at(&t.path().join("repo"));
        let r = repo
            .write_snapshot(
                "r1",
                &d,
                None,
                Contents::Full {
                    records: &[rec(1, 10), rec(2, 11)],
                    previous: None,
                },
            )
            .unwrap();
        assert_eq!(r.from_old, 1);
        let e = repo
            .write_snapshot(
                "r2",
                &d,
                None,
                Contents::Full {
                    records: &[rec(3, 12)],
                    previous: None,
                },
            )
            .unwrap_err();
        let m = e.missing().expect("missing");
        assert_eq!((m[0].oid, m[0].tid), (3, Tid(12)));
        assert!(!repo.manifest_path("r2").exists());
        assert!(e.to_string().contains("oid 0x0000000000000003"), "{e}");
    }

    #[test]
    fn a_different_file_already_pooled_is_a_conflict() {
        let t = tempfile::tempdir().unwrap();
        let d = blob_dir(t.path(), &[(1, 10, "a")]);
        let repo = BlobRepo::at(&t.path().join("repo"));
        let full = Contents::Full {
            records: &[rec(1, 10)],
            previous: None,
        };
        repo.write_snapshot("r1", &d, None, full).unwrap();
        // Same file again without a previous manifest: found in the pool.
        let r = repo.write_snapshot("r2", &d, None, full).unwrap();
        assert_eq!(r.already_pooled, 1);
        let p = d.join(Layout::Bushy.blob_path(1, Tid(10)));
        std::fs::write(&p, "different").unwrap();
        let e = repo.write_snapshot("r3", &d, None, full).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::PoolConflict { .. }), "{e}");
    }
}
