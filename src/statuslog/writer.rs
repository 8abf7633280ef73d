//! Appends records to the status file.
//!
//! Owns the file descriptor of the status file and the guarantees readers
//! rely on: each record is one `write(2)` on an `O_APPEND` descriptor (so a
//! crash leaves at most one incomplete line, at the end), printed times are
//! strictly increasing even across restarts and log rotations, and the
//! chosen fsync policy is applied. It must not decide *when* to write
//! (`schedule.rs` does) nor what the point is (the engine does).
//!
//! A writer is meant to be the only one appending to its file (the daemon's
//! pidfile ensures it): opening repairs an interrupted last write, which
//! would be wrong under a concurrent writer.
//!
//! Opening an existing file looks at its end first:
//! - it ends with `'\n'`: nothing to repair;
//! - its last line lacks the `'\n'` but is a complete record (only the
//!   newline is missing): the newline is appended;
//! - its last line lacks the `'\n'` and is not a complete record: it is the
//!   remains of a write cut short by a crash or a full disk. It is removed
//!   (its bytes are logged at warning level), because the next record would
//!   otherwise be glued to it and turn a harmless torn last line into damage
//!   in the middle, which readers refuse without `--lenient`.
//!
//! The last time already in the file is remembered from the last line that
//! parses, so the next record gets a later one.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::reader::MAX_LINE;
use super::record::{format_noted_line, parse_record, RecordKind};
use crate::tid::Tid;

/// When records are forced to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` after every record (the default, SPEC §4): a record is on
    /// disk before the next one is computed.
    #[default]
    Always,
    /// At most one `fdatasync` per period: a record written less than the
    /// period after the previous fsync stays in the page cache until
    /// `StatusWriter::sync_deadline` passes and the owner calls `sync`, or
    /// the next record comes after the period. Text form `interval` (1 s)
    /// or `interval:DURATION` (humantime, e.g. `interval:5s`).
    Interval(Duration),
    /// Never: the kernel writes back when it likes (a host crash can lose
    /// the last tens of seconds of records).
    Never,
}

impl FsyncPolicy {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
}

/// An unknown fsync policy name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseFsyncPolicyError(pub String);

impl fmt::Display for ParseFsyncPolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid fsync policy {:?}: give always, interval, interval:DURATION (e.g. interval:5s) \
             or never",
            self.0
        )
    }
}

impl std::error::Error for ParseFsyncPolicyError {}

impl FromStr for FsyncPolicy {
    type Err = ParseFsyncPolicyError;

    fn from_str(s: &str) -> Result<FsyncPolicy, ParseFsyncPolicyError> {
        let err = || ParseFsyncPolicyError(s.to_string());
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "always" => return Ok(FsyncPolicy::Always),
            "never" => return Ok(FsyncPolicy::Never),
            "interval" => return Ok(FsyncPolicy::Interval(FsyncPolicy::DEFAULT_INTERVAL)),
            _ => {}
        }
        let d = t
            .strip_prefix("interval:")
            .or_else(|| t.strip_prefix("interval="))
            .ok_or_else(err)?
            .trim();
        let d = match d.parse::<u64>() {
            // A bare integer means seconds, as everywhere else (SPEC §6).
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => humantime::parse_duration(d).map_err(|_| err())?,
        };
        Ok(FsyncPolicy::Interval(d))
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Never => f.write_str("never"),
            FsyncPolicy::Interval(d) => write!(f, "interval:{}", humantime::format_duration(*d)),
        }
    }
}

/// The appending writer. See the module comment for its guarantees.
#[derive(Debug)]
pub struct StatusWriter {
    path: PathBuf,
    file: File,
    policy: FsyncPolicy,
    last_centis: Option<u64>,
    last_sync: Option<Instant>,
    unsynced: bool,
    /// A short write whose removal failed: (length before it, length after).
    partial: Option<(u64, u64)>,
}

impl StatusWriter {
    /// Opens (creating with mode 0640) `path` for appending, repairs an
    /// interrupted last write (see the module comment) and remembers the
    /// last time in the file.
    pub fn open(path: &Path, policy: FsyncPolicy) -> io::Result<StatusWriter> {
        let (file, last_centis) = open_file(path, policy)?;
        Ok(StatusWriter {
            path: path.to_path_buf(),
            file,
            policy,
            last_centis,
            last_sync: None,
            unsynced: false,
            partial: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn policy(&self) -> FsyncPolicy {
        self.policy
    }

    /// Time of the last record in the file (written or found at open), in
    /// hundredths of a second.
    pub fn last_centis(&self) -> Option<u64> {
        self.last_centis
    }

    /// Appends one record timed `now_unix` (seconds since the epoch),
    /// returning the time actually printed: `now_unix` rounded to 1/100 s,
    /// or the previous record's time plus 0.01 s when that is not later.
    ///
    /// The line goes out in one `write(2)`. If the kernel takes only part of
    /// it (full disk, file size limit), the partial bytes are cut off again
    /// and an error is returned; should that cut fail as well, the file ends
    /// with an incomplete line (which readers report as a torn last line),
    /// the cut is retried before the next record, and the next `open`
    /// removes it in any case. An fsync failure is returned as an error
    /// too: the record is then in the file (its time counts as used) but
    /// maybe not on disk.
    pub fn write(
        &mut self,
        kind: RecordKind,
        entries: &[(String, Tid)],
        now_unix: f64,
    ) -> io::Result<u64> {
        self.write_noted(kind, entries, now_unix, &[])
    }

    /// [`StatusWriter::write`] with the note of a `resolve` naming the
    /// transaction ids the operator declared finished (see `record.rs`).
    pub fn write_noted(
        &mut self,
        kind: RecordKind,
        entries: &[(String, Tid)],
        now_unix: f64,
        resolved: &[String],
    ) -> io::Result<u64> {
        self.remove_partial()?;
        let mut centis = unix_to_centis(now_unix);
        if let Some(last) = self.last_centis {
            if centis <= last {
                centis = last.saturating_add(1);
            }
        }
        let line = format_noted_line(centis, kind, entries, resolved);
        let before = self
            .file
            .metadata()
            .map_err(|e| self.err("cannot stat", e))?
            .len();
        let n = loop {
            match self.file.write(line.as_bytes()) {
                Ok(n) => break n,
                // Nothing was written: try again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.err("cannot append a record", e)),
            }
        };
        if n < line.len() {
            let what = match self.file.set_len(before) {
                Ok(()) => "the partial record was removed".to_string(),
                Err(e) => {
                    self.partial = Some((before, before + n as u64));
                    format!("removing the partial record failed too ({e}); it is retried before the next record")
                }
            };
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "status file {}: short write, {n} of {} bytes (is the disk full?); {what}",
                    self.path.display(),
                    line.len()
                ),
            ));
        }
        self.last_centis = Some(centis);
        match self.policy {
            FsyncPolicy::Always => self.sync()?,
            FsyncPolicy::Interval(d) => {
                if self.last_sync.map_or(true, |t| t.elapsed() >= d) {
                    self.sync()?;
                } else {
                    self.unsynced = true;
                }
            }
            FsyncPolicy::Never => {}
        }
        Ok(centis)
    }

    /// Forces written records to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file
            .sync_data()
            .map_err(|e| self.err("cannot fsync", e))?;
        self.last_sync = Some(Instant::now());
        self.unsynced = false;
        Ok(())
    }

    /// With `FsyncPolicy::Interval`, when records written since the last
    /// fsync are due to be synced; the owner calls `sync` once it passes.
    pub fn sync_deadline(&self) -> Option<Instant> {
        match (self.policy, self.unsynced, self.last_sync) {
            (FsyncPolicy::Interval(d), true, Some(t)) => Some(t + d),
            (FsyncPolicy::Interval(_), true, None) => Some(Instant::now()),
            _ => None,
        }
    }

    /// Reopens the path (after logrotate moved the file away, on SIGHUP).
    /// The old descriptor is synced first unless the policy is `never`; on
    /// failure to open, the writer keeps the old file. Times stay strictly
    /// increasing across the switch.
    pub fn reopen(&mut self) -> io::Result<()> {
        let (file, last) = open_file(&self.path, self.policy)?;
        if self.policy != FsyncPolicy::Never || self.unsynced {
            if let Err(e) = self.file.sync_data() {
                log::warn!(
                    "status file {}: fsync of the previous file before reopening failed: {e}",
                    self.path.display()
                );
            }
        }
        self.file = file;
        self.last_centis = self.last_centis.max(last);
        self.unsynced = false;
        self.partial = None;
        Ok(())
    }

    fn remove_partial(&mut self) -> io::Result<()> {
        let Some((before, after)) = self.partial else {
            return Ok(());
        };
        let len = self
            .file
            .metadata()
            .map_err(|e| self.err("cannot stat", e))?
            .len();
        // Anything else changed the file meanwhile (copytruncate): cutting
        // at an old length could destroy or invent bytes; leave it.
        if len == after {
            self.file
                .set_len(before)
                .map_err(|e| self.err("cannot remove the partial record of a short write", e))?;
        }
        self.partial = None;
        Ok(())
    }

    fn err(&self, what: &str, e: io::Error) -> io::Error {
        io::Error::new(
            e.kind(),
            format!("status file {}: {what}: {e}", self.path.display()),
        )
    }
}

impl Drop for StatusWriter {
    fn drop(&mut self) {
        if self.unsynced {
            // Best effort: nobody is left to report the failure to.
            let _ = self.file.sync_data();
        }
    }
}

/// Hundredths of a second, rounded as Python's `%.2f` rounds; times before
/// the epoch (or NaN) count as 0 so the bump rule still yields valid times.
fn unix_to_centis(now_unix: f64) -> u64 {
    if now_unix.is_nan() || now_unix <= 0.0 {
        return 0;
    }
    // `as` saturates for values beyond u64.
    (now_unix * 100.0).round() as u64
}

fn open_file(path: &Path, policy: FsyncPolicy) -> io::Result<(File, Option<u64>)> {
    let ctx = |what: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!(
                "status file {}: {what}: {e}; check that the directory exists and the daemon's \
                 user may write there",
                path.display()
            ),
        )
    };
    let existed = path.try_exists().unwrap_or(true);
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| ctx("cannot open for appending", e))?;
    if !existed && policy != FsyncPolicy::Never {
        // The new name must survive a crash too, or the records under it are lost.
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ctx("cannot fsync its directory after creating it", e))?;
    }
    repair_unterminated_tail(&file, path, policy).map_err(|e| ctx("cannot repair its end", e))?;
    let last = last_record_centis(&file).map_err(|e| ctx("cannot read its last record", e))?;
    Ok((file, last))
}

/// Reads `len` bytes at `pos` without moving the append position.
fn read_at(file: &File, pos: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, pos)?;
    Ok(buf)
}

const TAIL_CHUNK: u64 = 64 << 10;

/// Where the last line starts (just after the last `'\n'`, or 0), searching
/// backward from `len` in chunks; gives up (returning `None`) beyond
/// `MAX_LINE`, such a line is garbage anyway.
fn last_line_start(file: &File, len: u64) -> io::Result<Option<u64>> {
    let mut end = len;
    while end > 0 {
        if len - end > MAX_LINE as u64 {
            return Ok(None);
        }
        let start = end.saturating_sub(TAIL_CHUNK);
        let chunk = read_at(file, start, (end - start) as usize)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(start + i as u64 + 1));
        }
        end = start;
    }
    Ok(Some(0))
}

fn repair_unterminated_tail(file: &File, path: &Path, policy: FsyncPolicy) -> io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 || read_at(file, len - 1, 1)?[0] == b'\n' {
        return Ok(());
    }
    let start = last_line_start(file, len)?;
    let tail = match start {
        Some(s) => read_at(file, s, (len - s) as usize)?,
        None => Vec::new(),
    };
    let complete = std::str::from_utf8(&tail).is_ok_and(|t| parse_record(t).is_ok());
    if complete {
        (&*file).write_all(b"\n")?;
    } else {
        // Without a '\n' within MAX_LINE there is no line to keep: cut back
        // to the last newline at all (scanning further is bounded by the file).
        let cut = match start {
            Some(s) => s,
            None => find_last_newline_anywhere(file, len)?,
        };
        log::warn!(
            "status file {}: removing {} bytes of an interrupted write at its end (offset {cut}): \"{}\"",
            path.display(),
            len - cut,
            tail.escape_ascii()
        );
        file.set_len(cut)?;
    }
    if policy != FsyncPolicy::Never {
        file.sync_data()?;
    }
    Ok(())
}

fn find_last_newline_anywhere(file: &File, len: u64) -> io::Result<u64> {
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(TAIL_CHUNK);
        let chunk = read_at(file, start, (end - start) as usize)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Time of the last line that parses as a record, reading backward with a
/// growing window (usually one 64 KiB read).
fn last_record_centis(file: &File) -> io::Result<Option<u64>> {
    let len = file.metadata()?.len();
    let mut window = TAIL_CHUNK.min(len);
    while window > 0 {
        let start = len - window;
        let buf = read_at(file, start, window as usize)?;
        let mut lines: Vec<&[u8]> = buf.split(|&b| b == b'\n').collect();
        if start > 0 {
            // The first piece may be the end of a longer line.
            lines.remove(0);
        }
        for l in lines.iter().rev() {
            if let Some(rec) = std::str::from_utf8(l)
                .ok()
                .and_then(|t| parse_record(t).ok())
            {
                return Ok(Some(rec.centis));
            }
        }
        if start == 0 {
            break;
        }
        window = (window * 4).min(len);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policies_parse_and_print() {
        let cases = [
            ("always", FsyncPolicy::Always),
            ("NEVER", FsyncPolicy::Never),
            ("interval", FsyncPolicy::Interval(Duration::from_secs(1))),
            ("interval:5s", FsyncPolicy::Interval(Duration::from_secs(5))),
            (
                "interval=250ms",
                FsyncPolicy::Interval(Duration::from_millis(250)),
            ),
            ("interval:3", FsyncPolicy::Interval(Duration::from_secs(3))),
        ];
        for (text, want) in cases {
            let got: FsyncPolicy = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string().parse::<FsyncPolicy>().unwrap(), want);
        }
        for bad in ["", "sometimes", "interval:", "interval:soon", "always:1s"] {
            let e = bad.parse::<FsyncPolicy>().unwrap_err();
            assert!(e.to_string().contains("give always, interval"), "{e}");
        }
        assert_eq!(FsyncPolicy::default(), FsyncPolicy::Always);
    }

    #[test]
    fn centis_round_like_percent_2f() {
        assert_eq!(unix_to_centis(1732212345.674), 173221234567);
        assert_eq!(unix_to_centis(1732212345.676), 173221234568);
        assert_eq!(unix_to_centis(-3.0), 0);
        assert_eq!(unix_to_centis(f64::NAN), 0);
    }
}
