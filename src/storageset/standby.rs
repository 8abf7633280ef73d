//! Incremental restore (`restore --incremental`): a standby Data.fs that is
//! byte for byte a prefix of the chain being restored gets only the missing
//! bytes appended, then is cut at the run's point, instead of being
//! rebuilt whole.
//!
//! The check ([`check`]): the standby's bytes against the repository's
//! `.dat`, every chunk it covers by md5, a chunk it covers only in part
//! (an earlier restore cut it) byte for byte against the repository file.
//! With `quick`, only the last chunk it covers, and only when the standby
//! is unchanged since the restore that wrote it (the state file
//! `Data.fs.tidstorage-restore.json` beside it records its size, mtime,
//! ctime and inode). Anything else (a pack, another chain, damage, a
//! missing chunk) is a reason for a full restore, said as such.
//!
//! Never a half-written standby ([`append`], then [`publish`]): the first
//! appended transaction is written with the checkpoint status `c`, so a
//! FileStorage opened on the file at any moment (with the old
//! `Data.fs.index`, or without one) stops before the new bytes and serves
//! the old database; the file is cut at the run's point and fsynced while
//! still hidden; only then is the one status byte written back and
//! fsynced, which makes the new database visible at once; the index is
//! extended from the old one last (ZODB scans what an older index does not
//! cover). A standby killed before that byte ends in a `c` transaction at
//! its valid end: the rerun resumes from there ([`check`] treats it as an
//! interrupted append), so every storage of a run is brought to the same
//! point by running the same command again.
//!
//! Must not: change a byte of the standby's existing prefix (apart from
//! rewriting, after an interrupted append, the bytes after its valid end),
//! or show a partly appended database.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Error, Result};
use crate::datafs::index::{index_for_prefix, FsIndex};
use crate::datafs::layout::{STATUS_CHECKPOINT, STATUS_PACKED};
use crate::datafs::DataFs;
use crate::fsutil::{self, sibling};
use crate::progress::{NoProgress, Progress};
use crate::repozo::chain::{Chain, Link};
use crate::repozo::{copy, Repository};
use crate::tid::Tid;

/// The state file a restore leaves beside its output, for `--quick`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreState {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub dev: u64,
    pub ino: u64,
    /// The chain's file names when it was written.
    pub chain: Vec<String>,
}

/// What says a file is unchanged: size, mtime, ctime (ns), device, inode.
type StatKey = (u64, i128, i128, u64, u64);

fn stat_key(meta: &std::fs::Metadata) -> StatKey {
    (
        meta.len(),
        meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
        meta.dev(),
        meta.ino(),
    )
}

impl RestoreState {
    fn of(meta: &std::fs::Metadata, chain: &Chain) -> RestoreState {
        let (size, mtime_ns, ctime_ns, dev, ino) = stat_key(meta);
        RestoreState {
            size,
            mtime_ns,
            ctime_ns,
            dev,
            ino,
            chain: chain.names(),
        }
    }

    fn same_file(&self, meta: &std::fs::Metadata) -> bool {
        (self.size, self.mtime_ns, self.ctime_ns, self.dev, self.ino) == stat_key(meta)
    }
}

/// Where the state file of `target` lives.
pub fn state_path(target: &Path) -> PathBuf {
    sibling(target, ".tidstorage-restore.json")
}

/// Records `target`'s state after a restore wrote it (durably; a failure
/// only costs the next `--quick` its shortcut).
pub fn write_state(target: &Path, chain: &Chain) -> io::Result<()> {
    let meta = std::fs::metadata(target)?;
    let text =
        serde_json::to_string_pretty(&RestoreState::of(&meta, chain)).map_err(io::Error::other)?;
    let path = state_path(target);
    let mut tmp = fsutil::TempFile::beside(&path)?;
    tmp.file().write_all(text.as_bytes())?;
    tmp.persist(&path)
}

/// What the standby needs.
#[derive(Debug)]
pub enum Verdict {
    /// No output yet: a full restore.
    Missing,
    /// A prefix of the chain up to `from`; `checked` bytes were compared.
    Resume {
        from: u64,
        checked: u64,
        quick: bool,
    },
    /// Not a prefix (or not checkable): a full restore, because of this.
    Full(String),
}

/// Checks whether `target` is a prefix of `chain` that a restore cut at
/// `tid` can extend (it holds nothing after `tid`).
pub fn check(
    target: &Path,
    repo: &Repository,
    chain: &Chain,
    tid: Option<Tid>,
    quick: bool,
) -> Result<Verdict> {
    if !fsutil::exists(target).map_err(|e| Error::io(target, e).doing("cannot look for"))? {
        return Ok(Verdict::Missing);
    }
    let meta = std::fs::metadata(target).map_err(|e| Error::io(target, e).doing("cannot stat"))?;
    let df = match DataFs::open(target) {
        Ok(df) => df,
        Err(e) if e.is_damage() => return Ok(Verdict::Full(format!("it is not a Data.fs ({e})"))),
        Err(e) => return Err(Error::from(e).doing("cannot read the standby")),
    };
    let v = df.valid_prefix()?;
    let size = df.size();
    let state: Option<RestoreState> = std::fs::read(state_path(target))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    // An interrupted append: its first transaction, at the end the last
    // restore recorded, still has the `c` this module writes (the fast
    // valid-prefix walk does not look that far back). It resumes there.
    let hidden_at = |at: u64| {
        let mut status = [0u8; 1];
        at + 17 <= size
            && df.file().read_exact_at(&mut status, at + 16).is_ok()
            && status[0] == STATUS_CHECKPOINT
    };
    let from = match &state {
        Some(st) if st.size < size && hidden_at(st.size) => st.size,
        _ if v.end == size => size,
        _ if hidden_at(v.end) => v.end,
        _ => {
            return Ok(Verdict::Full(format!(
                "it is damaged after offset {} ({})",
                v.end,
                v.damage.map(|d| d.to_string()).unwrap_or_default()
            )))
        }
    };
    if let (Some(t), Some(last)) = (tid, v.last_tid) {
        if last > t {
            return Ok(Verdict::Full(format!(
                "it holds transactions after the run's point (its last is {}, the point {})",
                last.hex(),
                t.hex()
            )));
        }
    }
    if from > chain.end() {
        return Ok(Verdict::Full(format!(
            "it holds {from} bytes, more than the {} of this chain (restored from another \
             chain, or written to since)",
            chain.end()
        )));
    }
    let covered: Vec<&Link> = chain.links.iter().filter(|l| l.line.start < from).collect();
    let quick_ok = quick
        && state
            .as_ref()
            .is_some_and(|s| s.same_file(&meta) && from == size);
    if quick && !quick_ok {
        log::info!(
            "{}: changed since the restore that wrote it (or no state file): checking \
             its whole prefix, not only the last chunk",
            target.display()
        );
    }
    let to_check: Vec<&Link> = if quick_ok {
        covered.last().copied().into_iter().collect()
    } else {
        covered
    };
    let mut checked = 0;
    for l in to_check {
        let end = l.line.end.min(from);
        let p = repo.path(&l.file.name);
        let same = if end == l.line.end {
            copy::md5_range(df.file(), l.line.start, l.line.len(), &NoProgress)
                .map_err(|e| Error::io(target, e).doing("cannot read the standby"))?
                == l.line.md5
        } else {
            // The standby was cut inside this chunk: its bytes against the
            // repository file's.
            prefix_equal(
                df.file(),
                l.line.start,
                end - l.line.start,
                &p,
                l.file.gzip,
                &l.line.md5,
            )
            .map_err(|e| Error::io(&p, e).doing("cannot compare with the standby"))?
        };
        if !same {
            return Ok(Verdict::Full(format!(
                "its bytes {}..{end} differ from {} (a pack, another chain, or damage)",
                l.line.start, l.file.name
            )));
        }
        checked += end - l.line.start;
    }
    Ok(Verdict::Resume {
        from,
        checked,
        quick: quick_ok,
    })
}

/// True when `len` bytes of `standby` at `start` equal the first `len`
/// raw bytes of the backup file `path`, and that file matches `md5`.
fn prefix_equal(
    standby: &File,
    start: u64,
    len: u64,
    path: &Path,
    gzip: bool,
    md5: &str,
) -> io::Result<bool> {
    let mut cmp = Compare {
        standby,
        pos: start,
        left: len,
        equal: true,
    };
    let (_, sum) = copy::read_backup(path, gzip, Some(&mut cmp), &NoProgress)?;
    Ok(cmp.equal && cmp.left == 0 && sum == md5)
}

/// A writer comparing the first `left` bytes it is given with the
/// standby's bytes from `pos` (the rest is only hashed by the caller).
struct Compare<'a> {
    standby: &'a File,
    pos: u64,
    left: u64,
    equal: bool,
}

impl Write for Compare<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        if n > 0 && self.equal {
            let mut mine = vec![0u8; n];
            self.standby.read_exact_at(&mut mine, self.pos)?;
            self.equal = mine == buf[..n];
        }
        self.pos += n as u64;
        self.left -= n as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A standby with the chain's missing bytes appended but still hidden.
#[derive(Debug)]
pub struct Appended {
    pub target: PathBuf,
    /// Where the appended bytes start (the old end).
    pub from: u64,
    /// The new end: the cut position of the run's point.
    pub end: u64,
    /// The real status of the first appended transaction (written back
    /// by [`publish`]); None when nothing was appended.
    status: Option<u8>,
    pub last_tid: Option<Tid>,
    /// Bytes removed by the cut after appending.
    pub removed: u64,
}

/// Appends `chain`'s bytes after `from` to `target` with the first new
/// transaction hidden (status `c`), cuts them at `tid` (the chain's end
/// when None), fsyncs. On failure the standby is put back to `from`.
pub fn append(
    target: &Path,
    repo: &Repository,
    chain: &Chain,
    from: u64,
    tid: Option<Tid>,
    progress: &dyn Progress,
) -> Result<Appended> {
    let mut a = append_uncut(target, repo, chain, from, progress)?;
    a.cut_at(tid)?;
    Ok(a)
}

/// Appends `chain`'s bytes after `from` to `target` with the first new
/// transaction hidden (status `c`) and fsyncs, not cut yet (see
/// [`Appended::cut_at`]; the exact cut reads the tags first through
/// [`Appended::open_unhidden`]). On failure the standby is put back to
/// `from`.
pub fn append_uncut(
    target: &Path,
    repo: &Repository,
    chain: &Chain,
    from: u64,
    progress: &dyn Progress,
) -> Result<Appended> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(target)
        .map_err(|e| Error::io(target, e).doing("cannot open for writing"))?;
    let undo = |e: Error| undo_to(&file, from, e);
    let mut status = None;
    for l in chain.links.iter().filter(|l| l.line.end > from) {
        let p = repo.path(&l.file.name);
        let mut w = AppendAt {
            file: &file,
            link_start: l.line.start,
            link_pos: l.line.start,
            from,
            hide_at: from + 16,
            hidden: &mut status,
        };
        let (n, md5) = copy::read_backup(&p, l.file.gzip, Some(&mut w), progress).map_err(|e| {
            if copy::is_output_error(&e) {
                undo(Error::io(target, e).doing("cannot append to"))
            } else {
                undo(Error::io(&p, e).doing("cannot read"))
            }
        })?;
        if n != l.line.len() || md5 != l.line.md5 {
            return Err(undo(Error::refused(format!(
                "{} holds {n} bytes with md5 {md5}, but its .dat records {} bytes with md5 {}: \
                 the repository is damaged (tidstorage restore --verify)",
                p.display(),
                l.line.len(),
                l.line.md5
            ))));
        }
    }
    let chain_end = chain.end();
    file.set_len(chain_end)
        .and_then(|()| file.sync_all())
        .map_err(|e| undo(Error::io(target, e).doing("cannot fsync")))?;
    Ok(Appended {
        target: target.to_path_buf(),
        from,
        end: chain_end,
        status,
        last_tid: None,
        removed: 0,
    })
}

/// Puts the standby back to `from` after `e`, saying so in `e`'s advice.
fn undo_to(file: &File, from: u64, e: Error) -> Error {
    match file.set_len(from).and_then(|()| file.sync_all()) {
        Ok(()) => e.advice("the standby is as it was; fix the cause and run again"),
        Err(u) => e.advice(format!(
            "and it could not be put back ({u}): the appended bytes are hidden (status \
             'c'); run the same restore again"
        )),
    }
}

impl Appended {
    /// The appended standby as it will read once published: the hidden
    /// status byte reads as its real value (for the exact cut's tags).
    pub fn open_unhidden(&self) -> std::result::Result<DataFs, crate::datafs::Error> {
        let df = DataFs::open(&self.target)?;
        Ok(match self.status {
            Some(s) => df.reading_byte_as(self.from + 16, s),
            None => df,
        })
    }

    /// Cuts the appended bytes at `tid` (not at all when None) and fsyncs.
    /// On failure the standby is put back to `from`.
    pub fn cut_at(&mut self, tid: Option<Tid>) -> Result<()> {
        let target = self.target.clone();
        let from = self.from;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&target)
            .map_err(|e| Error::io(&target, e).doing("cannot open for writing"))?;
        let undo = |e: Error| undo_to(&file, from, e);
        let chain_end = self.end;
        // Where the run's point ends, from the appended transactions'
        // headers (the hidden status does not change their lengths).
        let df = DataFs::open(&target).map_err(|e| undo(Error::from(e)))?;
        let mut pos = from;
        let mut end = from;
        let mut last_tid = None;
        let mut next_packed = false;
        let mut reached_point = tid.is_none();
        while pos < chain_end {
            let h = df.read_txn_header(pos).map_err(|e| {
                undo(Error::from(e).doing("the appended data is not a sequence of transactions"))
            })?;
            if tid.is_some_and(|t| h.tid >= t) {
                reached_point = true;
            }
            if tid.is_some_and(|t| h.tid > t) {
                next_packed = pos != from && h.status == STATUS_PACKED
                    || pos == from && self.status == Some(STATUS_PACKED);
                break;
            }
            pos = h.end();
            end = pos;
            last_tid = Some(h.tid);
        }
        if let (Some(t), true) = (tid, next_packed) {
            return Err(undo(Error::refused(format!(
                "{} was packed after TID {}: the state as of that TID is no longer in the chain; \
                 use a point after the pack",
                target.display(),
                t.hex()
            ))));
        }
        if let (Some(t), false, true) = (tid, reached_point, end > from) {
            return Err(undo(Error::refused(format!(
                "the repository holds this storage only up to TID {}, before the coherent TID {}: \
                 transactions are missing; restore an earlier date, or --no-cut",
                last_tid.map(|t| t.hex()).unwrap_or_default(),
                t.hex()
            ))));
        }
        drop(df);
        if end < chain_end {
            file.set_len(end)
                .and_then(|()| file.sync_all())
                .map_err(|e| undo(Error::io(&target, e).doing("cannot cut")))?;
        }
        if end == from {
            // Nothing of the delta is at or below the point: as it was.
            file.set_len(from)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io(&target, e).doing("cannot cut"))?;
            self.status = None;
        }
        self.end = end;
        self.last_tid = last_tid;
        self.removed = chain_end - end;
        Ok(())
    }
}

/// Writes a link's raw bytes at their offsets, from `from` on, with the
/// status byte at `hide_at` replaced by `c` (its real value kept).
struct AppendAt<'a> {
    file: &'a File,
    link_start: u64,
    link_pos: u64,
    from: u64,
    hide_at: u64,
    hidden: &'a mut Option<u8>,
}

impl Write for AppendAt<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let start = self.link_pos;
        let end = start + buf.len() as u64;
        self.link_pos = end;
        debug_assert!(start >= self.link_start);
        if end <= self.from {
            return Ok(buf.len());
        }
        let skip = self.from.saturating_sub(start) as usize;
        let at = start + skip as u64;
        let mut chunk = buf[skip..].to_vec();
        if (at..end).contains(&self.hide_at) {
            let i = (self.hide_at - at) as usize;
            *self.hidden = Some(chunk[i]);
            chunk[i] = STATUS_CHECKPOINT;
        }
        self.file.write_all_at(&chunk, at)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Appended {
    /// Puts the standby back as it was (before [`publish`]).
    pub fn undo(&self) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(&self.target)?;
        f.set_len(self.from)?;
        f.sync_all()
    }
}

/// Makes an appended standby visible (the one status byte), then writes
/// its index (extended from the old one) and its state file.
pub fn publish(a: &Appended, chain: &Chain) -> Result<Vec<String>> {
    let target = &a.target;
    let mut notes = Vec::new();
    if let Some(status) = a.status {
        let f = OpenOptions::new()
            .write(true)
            .open(target)
            .map_err(|e| Error::io(target, e).doing("cannot open for writing"))?;
        f.write_all_at(&[status], a.from + 16)
            .and_then(|()| f.sync_all())
            .map_err(|e| {
                Error::io(target, e)
                    .doing("cannot make the appended transactions visible in")
                    .advice("they stay hidden; run the same restore again")
            })?;
    }
    let df = DataFs::open(target)?;
    let index_path = sibling(target, ".index");
    let existing = FsIndex::load(&index_path).ok();
    let made = index_for_prefix(&df, a.end, existing, &mut |_, _| {})?;
    if let Some(why) = &made.rejected {
        notes.push(format!(
            "the old index was not reused ({why}); built a fresh one"
        ));
    }
    made.index.save(a.end, &index_path).map_err(|e| {
        Error::io(&index_path, e)
            .doing(format!(
                "{} is restored, but cannot write",
                target.display()
            ))
            .advice("run the same restore again to write it; ZODB rebuilds it at open meanwhile")
    })?;
    if let Err(e) = write_state(target, chain) {
        notes.push(format!(
            "the state file {} was not written ({e}): the next --quick checks the whole prefix",
            state_path(target).display()
        ));
    }
    Ok(notes)
}
