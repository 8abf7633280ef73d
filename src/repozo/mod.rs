//! A repozo-compatible backup repository: one directory of one storage's
//! backups, laid out exactly as ZODB 6's `repozo` writes and reads it.
//!
//! Layout (facts from `ZODB/scripts/repozo.py`, ZODB 6.4):
//!
//! | file                          | what                                          |
//! |-------------------------------|-----------------------------------------------|
//! | `YYYY-MM-DD-HH-MM-SS.fs`      | full backup: bytes `[0, end)` of the Data.fs  |
//! | `….fsz`                       | the same, gzipped                             |
//! | `….deltafs` / `….deltafsz`    | incremental: bytes `[start, end)`             |
//! | `<full root>.dat`             | one line per file of the full's chain:        |
//! |                               | `PATH START END MD5HEX` (md5 of the raw bytes)|
//! | `<root>.index`                | ZODB's fsIndex of the source at `end`         |
//!
//! Names are UTC times at one-second resolution. repozo picks the files of
//! a restore "as of" a date by comparing *strings*: every data file whose
//! name without extension is `<=` the date (a prefix like `2024-05-01`
//! sorts before every file of that day), newest first, up to and including
//! the newest full backup ([`Repository::find_chain`]). Two files named for
//! the same second break that walk (the `.fs` sorts after a `.deltafs` of
//! the same second and stops it), so this module never reuses a second
//! ([`Repository::next_stamp`]).
//!
//! Owns: names and stamps, listing, the `.dat` format ([`dat`]), copying a
//! byte range into a backup file with its md5 ([`copy`]), checking a chain
//! against its `.dat` and streaming it back ([`chain`]), tidstorage's own
//! per-run manifest ([`manifest`]), the timestamp file ([`timestamps`])
//! and the repository lock. Must not: talk to the daemon, pick coherency
//! points or cut files (`crate::storageset` does), overwrite an existing backup file, or leave a
//! partial file under a backup's name.

pub mod backup;
pub mod chain;
pub mod copy;
pub mod dat;
pub mod manifest;
pub mod timestamps;

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fsutil;

/// gzip level of `.fsz`/`.deltafsz` files. repozo uses Python's default,
/// 9, which runs ~20× slower than a plain copy for a few percent of size;
/// level 1 keeps a backup near disk speed and still shrinks Data.fs
/// pickles well (measured in docs/bench-backup.md).
pub const GZIP_LEVEL: u32 = 1;

/// The name of the per-repository lock file (a `flock`, held for a whole
/// backup or restore run). repozo ignores files it does not recognise.
pub const LOCK_FILE: &str = "tidstorage.lock";

/// A repozo file name's time: whole UTC seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(pub u64);

impl Stamp {
    pub fn now() -> Stamp {
        Stamp(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }

    pub fn next(self) -> Stamp {
        Stamp(self.0 + 1)
    }

    /// `YYYY-MM-DD-HH-MM-SS`, repozo's spelling.
    pub fn text(self) -> String {
        let days = (self.0 / 86_400) as i64;
        let secs = self.0 % 86_400;
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}-{:02}-{:02}-{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }

    /// Parses a complete `YYYY-MM-DD-HH-MM-SS`.
    pub fn parse(s: &str) -> Option<Stamp> {
        let b = s.as_bytes();
        if b.len() != 19 {
            return None;
        }
        for (i, c) in b.iter().enumerate() {
            let dash = matches!(i, 4 | 7 | 10 | 13 | 16);
            if dash != (*c == b'-') || (!dash && !c.is_ascii_digit()) {
                return None;
            }
        }
        let n = |r: std::ops::Range<usize>| s[r].parse::<u64>().ok();
        let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
        let (h, mi, se) = (n(11..13)?, n(14..16)?, n(17..19)?);
        if !(1970..=9999).contains(&y)
            || !(1..=12).contains(&mo)
            || !(1..=31).contains(&d)
            || h > 23
            || mi > 59
            || se > 59
        {
            return None;
        }
        let days = days_from_civil(y as i64, mo as u32, d as u32);
        let st = Stamp(days as u64 * 86_400 + h * 3600 + mi * 60 + se);
        // Rejects 2024-02-30 and the like: the text must round-trip.
        (st.text() == s).then_some(st)
    }

    pub fn as_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0)
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Checks a `--date` the way repozo documents it, `yyyy-mm-dd[-hh[-mm[-ss]]]`,
/// and returns it unchanged: repozo compares it to file names as a string,
/// and so do we.
pub fn check_date(s: &str) -> std::result::Result<String, String> {
    let parts: Vec<&str> = s.split('-').collect();
    let widths = [4, 2, 2, 2, 2, 2];
    let ok = (3..=6).contains(&parts.len())
        && parts
            .iter()
            .zip(widths)
            .all(|(p, w)| p.len() == w && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "invalid date {s:?}: write UTC time as yyyy-mm-dd[-hh[-mm[-ss]]], e.g. 2024-05-01-13-45-00"
        ))
    }
}

// Howard Hinnant's civil calendar algorithms (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Full or incremental.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Full,
    Incremental,
}

/// One data file of a repository (`.fs`, `.fsz`, `.deltafs`, `.deltafsz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    pub name: String,
    pub stamp: Stamp,
    pub kind: Kind,
    pub gzip: bool,
}

impl BackupFile {
    /// The name without extension (`.dat`, `.index` share it).
    pub fn root(&self) -> &str {
        &self.name[..19]
    }

    /// Recognises repozo's data file names
    /// (`\d{4}(-\d\d){5}\.(delta)?fsz?`), and only those.
    pub fn parse(name: &str) -> Option<BackupFile> {
        let (root, ext) = (name.get(..19)?, name.get(19..)?);
        let (kind, gzip) = match ext {
            ".fs" => (Kind::Full, false),
            ".fsz" => (Kind::Full, true),
            ".deltafs" => (Kind::Incremental, false),
            ".deltafsz" => (Kind::Incremental, true),
            _ => return None,
        };
        // repozo's pattern accepts any digits (e.g. month 13); such a file
        // still takes part in its string ordering, so keep it, with the
        // stamp only used to order our own names.
        let digits_ok = root.bytes().enumerate().all(|(i, c)| {
            if matches!(i, 4 | 7 | 10 | 13 | 16) {
                c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
        if !digits_ok {
            return None;
        }
        let stamp = Stamp::parse(root).unwrap_or(Stamp(0));
        Some(BackupFile {
            name: name.to_string(),
            stamp,
            kind,
            gzip,
        })
    }

    pub fn file_name(stamp: Stamp, kind: Kind, gzip: bool) -> String {
        let ext = match kind {
            Kind::Full => ".fs",
            Kind::Incremental => ".deltafs",
        };
        format!("{stamp}{ext}{}", if gzip { "z" } else { "" })
    }
}

/// A failure in a repository: which file, and what.
#[derive(Debug)]
pub struct Error {
    pub path: PathBuf,
    pub kind: ErrorKind,
}

#[derive(Debug)]
pub enum ErrorKind {
    Io(io::Error),
    /// An I/O failure with what was being done ("cannot read the
    /// timestamp file").
    IoDoing {
        doing: &'static str,
        error: io::Error,
    },
    /// A `.dat` line that is not `PATH START END MD5`.
    BadDatLine {
        line: usize,
        text: String,
    },
    /// What the chain check found wrong (already a full sentence).
    Broken(String),
    /// Another backup or restore holds the repository lock.
    Locked,
}

impl Error {
    pub fn io(path: &Path, e: io::Error) -> Error {
        Error {
            path: path.to_path_buf(),
            kind: ErrorKind::Io(e),
        }
    }

    pub fn broken(path: &Path, what: impl Into<String>) -> Error {
        Error {
            path: path.to_path_buf(),
            kind: ErrorKind::Broken(what.into()),
        }
    }

    /// An I/O failure after the file was put in place (the directory
    /// fsync): the file is there and must not be redone or removed.
    pub fn is_in_place(&self) -> bool {
        matches!(&self.kind, ErrorKind::Io(e) if crate::fsutil::in_place(e))
    }

    /// Damage in the repository (as opposed to an I/O failure or a lock).
    pub fn is_damage(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::BadDatLine { .. } | ErrorKind::Broken(_)
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.kind {
            ErrorKind::Io(e) if e.kind() == io::ErrorKind::NotFound => {
                write!(f, "{p}: missing ({e})")
            }
            ErrorKind::Io(e) => write!(f, "{p}: {e}"),
            ErrorKind::IoDoing { doing, error } => write!(f, "{doing} {p}: {error}"),
            ErrorKind::BadDatLine { line, text } => write!(
                f,
                "{p}:{line}: not a repozo .dat line (expected \"PATH START END MD5\"): {text:?}"
            ),
            ErrorKind::Broken(what) => write!(f, "{p}: {what}"),
            ErrorKind::Locked => write!(
                f,
                "{p} is held by another tidstorage backup or restore of this repository; \
                 wait for it to finish (or check for a hung process holding the lock)"
            ),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// One storage's backup directory.
#[derive(Debug, Clone)]
pub struct Repository {
    pub dir: PathBuf,
}

/// The repository lock; released on drop.
#[derive(Debug)]
pub struct RepoLock {
    _file: File,
}

impl Repository {
    pub fn new(dir: impl Into<PathBuf>) -> Repository {
        Repository { dir: dir.into() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Takes the repository's `flock`, so two tidstorage runs never write
    /// (or restore from a half-written) repository at once.
    pub fn lock(&self) -> Result<RepoLock> {
        let p = self.path(LOCK_FILE);
        match fsutil::try_lock_file(&p) {
            Ok(Some(file)) => Ok(RepoLock { _file: file }),
            Ok(None) => Err(Error {
                path: p,
                kind: ErrorKind::Locked,
            }),
            Err(e) => Err(Error::io(&p, e)),
        }
    }

    /// The data files, oldest first, in repozo's order (by name).
    pub fn list(&self) -> Result<Vec<BackupFile>> {
        let rd = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(&self.dir, e))?;
            if let Some(b) = ent.file_name().to_str().and_then(BackupFile::parse) {
                out.push(b);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The files repozo restores as of `when` (a repozo date string; `None`
    /// = now), oldest first: the newest full backup whose name is `<= when`,
    /// then every later file `<= when`. Empty when there is no such full.
    pub fn find_chain(&self, when: Option<&str>) -> Result<Vec<BackupFile>> {
        let when = when
            .map(str::to_string)
            .unwrap_or_else(|| Stamp::now().text());
        let mut needed = Vec::new();
        let mut found_full = false;
        for f in self.list()?.into_iter().rev() {
            // repozo compares the name's root with the date as strings.
            if f.root() <= when.as_str() {
                let full = f.kind == Kind::Full;
                needed.push(f);
                if full {
                    found_full = true;
                    break;
                }
            }
        }
        // repozo would restore incrementals with no full under them; that is
        // never a Data.fs, so report "nothing" instead.
        if !found_full {
            needed.clear();
        }
        needed.reverse();
        Ok(needed)
    }

    /// The newest second any file of the repository is named for (data
    /// files, `.dat`, `.index`, tidstorage manifests), if any.
    pub fn newest_stamp(&self) -> Result<Option<Stamp>> {
        let rd = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut newest = None;
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(&self.dir, e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(st) = name.get(..19).and_then(Stamp::parse) {
                if name.len() > 19 && name.as_bytes()[19] == b'.' {
                    newest = newest.max(Some(st));
                }
            }
        }
        Ok(newest)
    }

    /// The second to name a new backup file for: now, or one second after
    /// the newest name already in the repository (and after `floor`), so
    /// no two files ever share a second. The caller waits for the clock to
    /// reach it ([`wait_for`]) so names stay honest times.
    pub fn next_stamp(&self, floor: Option<Stamp>) -> Result<Stamp> {
        let now = Stamp::now();
        let taken = self.newest_stamp()?.max(floor);
        Ok(match taken {
            Some(t) if t >= now => t.next(),
            _ => now,
        })
    }

    pub fn dat_path(&self, full: &BackupFile) -> PathBuf {
        self.path(&format!("{}.dat", full.root()))
    }

    pub fn index_path(&self, f: &BackupFile) -> PathBuf {
        self.path(&format!("{}.index", f.root()))
    }
}

/// Waits until the wall clock reaches `stamp` (bounded by `max`); returns
/// false when it would take longer (the clock is behind the repository).
pub fn wait_for(stamp: Stamp, max: Duration) -> bool {
    let target = stamp.as_system_time();
    let now = SystemTime::now();
    match target.duration_since(now) {
        Err(_) => true,
        Ok(d) if d <= max => {
            std::thread::sleep(d);
            true
        }
        Ok(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        for (secs, text) in [
            (0, "1970-01-01-00-00-00"),
            (951_782_400, "2000-02-29-00-00-00"),
            (1_714_571_130, "2024-05-01-13-45-30"),
            (4_102_444_799, "2099-12-31-23-59-59"),
        ] {
            assert_eq!(Stamp(secs).text(), text);
            assert_eq!(Stamp::parse(text), Some(Stamp(secs)));
        }
        for bad in [
            "2024-02-30-00-00-00",
            "2024-13-01-00-00-00",
            "2024-05-01-24-00-00",
            "2024-05-01 13-45-30",
            "2024-05-01-13-45",
        ] {
            assert_eq!(Stamp::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_like_repozo() {
        assert!(check_date("2024-05-01").is_ok());
        assert!(check_date("2024-05-01-13").is_ok());
        assert!(check_date("2024-05-01-13-45-30").is_ok());
        assert!(check_date("2024-5-1").is_err());
        assert!(check_date("2024-05").is_err());
        assert!(check_date("2024-05-01-13-45-30-00").is_err());
    }

    #[test]
    fn data_file_names() {
        let f = BackupFile::parse("2024-05-01-13-45-30.deltafsz").unwrap();
        assert_eq!((f.kind, f.gzip), (Kind::Incremental, true));
        assert_eq!(f.root(), "2024-05-01-13-45-30");
        for bad in [
            "2024-05-01-13-45-30.dat",
            "2024-05-01-13-45-30.index",
            "2024-05-01-13-45-30.fs.tmp",
            ".2024-05-01-13-45-30.fs.tmp-1-0",
            "x024-05-01-13-45-30.fs",
        ] {
            assert!(BackupFile::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(
            BackupFile::file_name(Stamp(0), Kind::Full, true),
            "1970-01-01-00-00-00.fsz"
        );
    }

    #[test]
    fn chain_selection_follows_repozo() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "2024-01-01-00-00-00.fs",
            "2024-01-01-00-00-00.dat",
            "2024-01-02-00-00-00.deltafs",
            "2024-01-03-00-00-00.fsz",
            "2024-01-04-00-00-00.deltafsz",
            "2024-01-05-00-00-00.deltafs",
            "unrelated.txt",
        ] {
            std::fs::write(dir.path().join(n), b"").unwrap();
        }
        let r = Repository::new(dir.path());
        let names = |w: Option<&str>| -> Vec<String> {
            r.find_chain(w)
                .unwrap()
                .into_iter()
                .map(|f| f.name)
                .collect()
        };
        assert_eq!(
            names(None),
            [
                "2024-01-03-00-00-00.fsz",
                "2024-01-04-00-00-00.deltafsz",
                "2024-01-05-00-00-00.deltafs"
            ]
        );
        assert_eq!(
            names(Some("2024-01-02-12")),
            ["2024-01-01-00-00-00.fs", "2024-01-02-00-00-00.deltafs"]
        );
        // A bare day sorts before every file named in it, as in repozo.
        assert_eq!(names(Some("2024-01-04")), ["2024-01-03-00-00-00.fsz"]);
        assert!(names(Some("2023-12-31")).is_empty());
        assert_eq!(
            r.newest_stamp().unwrap(),
            Stamp::parse("2024-01-05-00-00-00")
        );
    }
}
