//! Durable file operations: the only way tidstorage replaces or shortens a
//! user's file.
//!
//! Every rewrite goes temp file -> fsync -> rename -> fsync of the directory,
//! so a crash at any moment leaves either the old file or the new one, never
//! a mix. Owns advisory-lock probing of ZODB's `Data.fs.lock` too. Nothing
//! here decides *what* to write.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// `path` with `suffix` appended to its file name: `Data.fs` ->
/// `Data.fs.index`, `Data.fs.lock`, `Data.fs.tail-...`.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// fsync the directory holding `path`, so a rename or create in it is durable.
pub fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// The error of a rename or link that happened, followed by a directory
/// fsync that failed: the new file is in place (a rerun must not redo or
/// undo it) but may not survive a crash until the directory is synced.
/// Carried inside an `io::Error`; [`in_place`] tells it apart.
#[derive(Debug)]
pub struct NotSynced {
    pub path: PathBuf,
    pub error: io::Error,
}

impl std::fmt::Display for NotSynced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is in place, but its directory could not be synced ({}): it may not \
             survive a crash until the directory is synced (run `sync`)",
            self.path.display(),
            self.error
        )
    }
}

impl std::error::Error for NotSynced {}

/// True when `e` is a [`NotSynced`]: the file it names is in place.
pub fn in_place(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|r| r.is::<NotSynced>())
}

/// fsync of `target`'s directory after it was renamed or linked into
/// place; a failure is a [`NotSynced`].
fn sync_placed(target: &Path) -> io::Result<()> {
    sync_parent_dir(target).map_err(|error| {
        io::Error::new(
            error.kind(),
            NotSynced {
                path: target.to_path_buf(),
                error,
            },
        )
    })
}

/// Whether `path` exists. Unlike `Path::exists`, an error while looking
/// (EIO, EACCES on the directory) is an error, never "absent": deciding
/// that a user's file is not there must not rest on a failed look.
pub fn exists(path: &Path) -> io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The real path of a user's file reached through symlinks, so that its
/// siblings (`.lock`, `.index`, `.tail-*`, temporary files) are the real
/// file's: a lock probed beside a symlink would miss the running ZODB's.
/// A missing file resolves through its directory; a missing directory
/// leaves the path as it is.
pub fn resolve(path: &Path) -> io::Result<PathBuf> {
    match std::fs::canonicalize(path) {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => {
                match std::fs::canonicalize(dir) {
                    Ok(d) => Ok(d.join(name)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path.to_path_buf()),
                    Err(e) => Err(e),
                }
            }
            _ => Ok(path.to_path_buf()),
        },
        Err(e) => Err(e),
    }
}

/// Whether process `pid` is gone, so that what is named after it is
/// nobody's: kill(2) with signal 0 answers ESRCH. This process, and any that
/// cannot be asked, counts as alive.
pub fn process_gone(pid: u32) -> bool {
    if pid == 0 || pid == std::process::id() || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// The pid in a name `<prefix><pid>` or `<prefix><pid>-<n>` (digits only).
pub fn pid_after(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, n) = rest.split_once('-').unwrap_or((rest, "0"));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(n) {
        return None;
    }
    pid.parse().ok()
}

/// Removes the files `.<name>.tmp-<pid>-<n>` of `dir` (what
/// [`TempFile::beside`] names a temporary of `name`) whose process is gone.
/// Never fails: what cannot be read or removed is left, a removal that
/// fails logged.
fn remove_stale_temps(dir: &Path, name: &str) {
    remove_stale(dir, Some(name));
}

/// Removes every temporary file [`TempFile::beside`] made in `dir`, for any
/// name (`.<name>.tmp-<pid>-<n>`), whose process is gone: for a directory
/// only tidstorage writes such names in (a repository). Never fails.
pub fn remove_stale_temps_in(dir: &Path) {
    remove_stale(dir, None);
}

fn remove_stale(dir: &Path, only: Option<&str>) {
    remove_gone_entries(dir, false, |n| {
        let at = n.rfind(".tmp-")?;
        let name = n[..at].strip_prefix('.').filter(|m| !m.is_empty())?;
        if only.is_some_and(|o| o != name) {
            return None;
        }
        pid_after(&n[at..], ".tmp-")
    });
}

/// Removes the entries of `dir` (directories, whole, with `dirs`; else
/// files) whose name `pid_of` maps to the pid of a process that is gone:
/// what a killed run left under a name made of its pid. Never fails: what
/// cannot be read or removed is left, a removal that fails logged.
pub fn remove_gone_entries(dir: &Path, dirs: bool, pid_of: impl Fn(&str) -> Option<u32>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for ent in rd.flatten() {
        let file_name = ent.file_name();
        let Some(pid) = file_name.to_str().and_then(&pid_of) else {
            continue;
        };
        let kind_ok = ent
            .file_type()
            .map(|t| if dirs { t.is_dir() } else { t.is_file() })
            .unwrap_or(false);
        if !kind_ok || !process_gone(pid) {
            continue;
        }
        let p = ent.path();
        let r = if dirs {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match r {
            Ok(()) => log::info!(
                "removed {}: left by an interrupted run (pid {pid}, gone)",
                p.display()
            ),
            Err(e) => log::warn!(
                "cannot remove {}, left by an interrupted run (pid {pid}, gone): {e}; remove it \
                 by hand",
                p.display()
            ),
        }
    }
}

/// A temporary file beside `target`, removed on drop unless persisted.
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Creates `<dir>/.<name>.tmp-<pid>-<n>` exclusively, mode 0640 masked by
    /// the umask, first removing the temporaries of `target` that processes
    /// now gone left (a killed run's partial copy, which can be as large as
    /// the file itself).
    pub fn beside(target: &Path) -> io::Result<TempFile> {
        let dir = target.parent().unwrap_or(Path::new("."));
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        remove_stale_temps(dir, &name);
        for n in 0..1000u32 {
            let path = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
            match OpenOptions::new()
                .write(true)
                .read(true)
                .create_new(true)
                .mode(0o640)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file: Some(file),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("no free temporary name beside {}", target.display()),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&mut self) -> &mut File {
        // Only `persist` takes the file, and it consumes self.
        self.file
            .as_mut()
            .expect("temp file present until persisted")
    }

    /// fsync, rename over `target`, fsync the directory. A failure after
    /// the rename is a [`NotSynced`] (see [`in_place`]).
    pub fn persist(mut self, target: &Path) -> io::Result<()> {
        let file = self.file.take().expect("temp file present until persisted");
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.path, target)?;
        // The rename happened: nothing left to clean up on drop.
        self.path = PathBuf::new();
        sync_placed(target)
    }
}

impl TempFile {
    /// fsync, then give the file the name `target` only if nothing has it
    /// (a hard link cannot replace a file, unlike rename), then fsync the
    /// directory. `AlreadyExists` when `target` exists. Filesystems without
    /// hard links fall back to a rename after an existence check. A failure
    /// once the name is given is a [`NotSynced`] (see [`in_place`]).
    pub fn persist_new(mut self, target: &Path) -> io::Result<()> {
        let file = self.file.take().expect("temp file present until persisted");
        file.sync_all()?;
        drop(file);
        match std::fs::hard_link(&self.path, target) {
            Ok(()) => {
                // The name is given; the temporary name is only clutter now.
                let temp = std::mem::take(&mut self.path);
                if let Err(error) = std::fs::remove_file(&temp) {
                    return Err(io::Error::new(
                        error.kind(),
                        NotSynced {
                            path: target.to_path_buf(),
                            error,
                        },
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} already exists; it is never overwritten",
                        target.display()
                    ),
                ))
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EPERM) | Some(libc::EOPNOTSUPP) | Some(libc::EXDEV)
                ) =>
            {
                if exists(target)? {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!(
                            "{} already exists; it is never overwritten",
                            target.display()
                        ),
                    ));
                }
                std::fs::rename(&self.path, target)?;
            }
            Err(e) => return Err(e),
        }
        self.path = PathBuf::new();
        sync_placed(target)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Gives `file` the owner, group and permission bits (execute dropped) of
/// `like`. Changing the owner needs root: without it (EPERM) the file keeps
/// ours, which is then the same user as `like`'s or a deliberate choice.
pub fn copy_owner_and_mode(like: &Path, file: &File) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::metadata(like)?;
    // SAFETY: fd valid for the life of `file`.
    let rc = unsafe { libc::fchown(file.as_raw_fd(), m.uid(), m.gid()) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EPERM) {
            return Err(e);
        }
    }
    file.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o666))
}

/// Copies `len` bytes from `src` at `offset` into `dst`, returning the count.
pub fn copy_range(src: &mut File, offset: u64, len: u64, dst: &mut impl Write) -> io::Result<u64> {
    src.seek(SeekFrom::Start(offset))?;
    let copied = io::copy(&mut (&mut *src).take(len), dst)?;
    if copied != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("file ended after {copied} of {len} bytes"),
        ));
    }
    Ok(copied)
}

/// The `Data.fs.lock` of a FileStorage, the one lock type every command
/// uses to keep out of a running ZEO server's or ZODB process's way:
/// [`DataFsLock::take`] holds it while a file is changed (cut),
/// [`DataFsLock::probe`] only asks (restore, backup, `cut --dry-run`).
///
/// Taking it also keeps ZODB from opening the file meanwhile: zc.lockfile
/// refuses to open a storage whose lock is held. A lock file we created is
/// removed again when the lock is dropped.
#[derive(Debug)]
pub struct DataFsLock {
    _file: File,
    path: PathBuf,
    created: bool,
}

/// Why a Data.fs lock could not be taken or probed.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it; `by` is what the lock file says of it
    /// (zc.lockfile writes its pid; tidstorage writes `tidstorage PID`).
    Held {
        data_fs: PathBuf,
        lock: PathBuf,
        by: Holder,
    },
    /// The lock file could not be opened, created or probed.
    Io { lock: PathBuf, error: io::Error },
}

/// Who holds a Data.fs lock, as far as its lock file tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Another tidstorage command (cut), with its pid.
    Tidstorage(String),
    /// A ZEO server or ZODB process, with the pid zc.lockfile wrote if any.
    Zodb(Option<String>),
}

impl Holder {
    fn read(lock: &Path) -> Holder {
        let text = std::fs::read_to_string(lock).unwrap_or_default();
        let text = text.trim();
        match text.strip_prefix("tidstorage ") {
            Some(pid) => Holder::Tidstorage(pid.to_string()),
            // zc.lockfile writes " PID" (and optionally the host name).
            None => Holder::Zodb(text.split_whitespace().next().map(str::to_string)),
        }
    }
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { data_fs, lock, by } => {
                write!(
                    f,
                    "{} is locked ({} is held): ",
                    data_fs.display(),
                    lock.display()
                )?;
                match by {
                    Holder::Tidstorage(pid) => write!(
                        f,
                        "another tidstorage command (pid {pid}) is working on it; wait for it"
                    ),
                    Holder::Zodb(Some(pid)) => {
                        write!(f, "a ZEO server or ZODB process (pid {pid}) has it open")
                    }
                    Holder::Zodb(None) => write!(f, "a ZEO server or ZODB process has it open"),
                }
            }
            LockError::Io { lock, error } => write!(f, "cannot lock {}: {error}", lock.display()),
        }
    }
}

impl std::error::Error for LockError {}

impl LockError {
    /// True when a ZEO server or ZODB process (not tidstorage) holds it.
    pub fn by_zodb(&self) -> bool {
        matches!(
            self,
            LockError::Held {
                by: Holder::Zodb(_),
                ..
            }
        )
    }
}

impl DataFsLock {
    /// Takes the lock of `data_fs` (creating `Data.fs.lock` if needed), or
    /// says who holds it.
    pub fn take(data_fs: &Path) -> Result<DataFsLock, LockError> {
        let lock = sibling(data_fs, ".lock");
        let existed = exists(&lock).map_err(|error| LockError::Io {
            lock: lock.clone(),
            error,
        })?;
        match try_lock_file(&lock) {
            Ok(Some(mut f)) => {
                // Say who holds it, the way zc.lockfile writes its pid, so a
                // refused second command can name us. Best effort: the lock
                // is what protects, not the text.
                let _ = f.set_len(0).and_then(|()| {
                    f.write_all(format!("tidstorage {}\n", std::process::id()).as_bytes())
                });
                Ok(DataFsLock {
                    _file: f,
                    path: lock,
                    created: !existed,
                })
            }
            Ok(None) => {
                let by = Holder::read(&lock);
                Err(LockError::Held {
                    data_fs: data_fs.to_path_buf(),
                    lock,
                    by,
                })
            }
            Err(error) => Err(LockError::Io { lock, error }),
        }
    }

    /// Whether another process holds the lock of `data_fs`: `Some(LockError::Held)`
    /// naming the holder (a missing lock file means nobody does).
    pub fn probe(data_fs: &Path) -> io::Result<Option<LockError>> {
        let lock = sibling(data_fs, ".lock");
        if !lock_is_held(&lock)? {
            return Ok(None);
        }
        let by = Holder::read(&lock);
        Ok(Some(LockError::Held {
            data_fs: data_fs.to_path_buf(),
            lock,
            by,
        }))
    }
}

impl Drop for DataFsLock {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Is the advisory lock of a ZODB `.lock` file held by another process?
///
/// ZODB (zc.lockfile) takes a non-blocking exclusive `fcntl`/`flock`-style
/// lock on `Data.fs.lock` for as long as a FileStorage is open read-write.
/// We probe with `F_SETLK` on a byte range like zc.lockfile does (lockf)
/// and release at once. A missing lock file means nobody holds it.
fn lock_is_held(lock_path: &Path) -> io::Result<bool> {
    let file = match OpenOptions::new().read(true).write(true).open(lock_path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 1;
    // SAFETY: fd is valid for the life of `file`; `fl` is a valid flock.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut fl) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if fl.l_type != libc::F_UNLCK as libc::c_short {
        return Ok(true);
    }
    // F_GETLK does not see flock(2) locks; probe those too.
    // SAFETY: as above.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(true);
        }
        return Err(e);
    }
    // SAFETY: as above; we hold the flock we just took.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
    Ok(false)
}

/// Takes an exclusive, non-blocking `flock` on `path` (created if needed)
/// and keeps it while the returned file lives. `Ok(None)` = held elsewhere.
pub fn try_lock_file(path: &Path) -> io::Result<Option<File>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)?;
    // SAFETY: fd valid for the life of `file`.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(file))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A pid no process has: near the top of the range, where pids are
    /// rarely given. (Not a spawned and reaped child: a fork while another
    /// test holds a flock would hold it too until the exec.)
    pub(crate) fn dead_pid() -> u32 {
        let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(32768);
        (1..1000)
            .map(|k| max - k)
            .find(|&p| process_gone(p))
            .expect("a free pid")
    }

    #[test]
    fn only_the_temporaries_of_processes_that_are_gone_are_removed() {
        assert_eq!(pid_after(".x.tmp-123-4", ".x.tmp-"), Some(123));
        assert_eq!(pid_after(".tmp-restore-77", ".tmp-restore-"), Some(77));
        for bad in [".x.tmp-", ".x.tmp-12x-0", ".x.tmp-1-", "x", ".x.tmp-1-2-3"] {
            assert_eq!(pid_after(bad, ".x.tmp-"), None, "{bad}");
        }
        let dead = dead_pid();
        assert!(process_gone(dead));
        assert!(!process_gone(std::process::id()));
        assert!(!process_gone(1)); // init: there, whether or not it may be signalled

        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("Data.fs");
        let p = |n: &str| dir.path().join(n);
        let stale = format!(".Data.fs.tmp-{dead}-0");
        let kept = [
            format!(".Data.fs.tmp-{}-3", std::process::id()), // alive (this process)
            format!(".Other.fs.tmp-{dead}-0"),                // another file's
            format!("Data.fs.tmp-{dead}-0"),                  // not our name
            format!(".Data.fs.tmp-{dead}-0.old"),
        ];
        std::fs::write(p(&stale), "a killed run's copy").unwrap();
        for k in &kept {
            std::fs::write(p(k), "kept").unwrap();
        }
        std::fs::create_dir(p(&format!(".Data.fs.tmp-{dead}-9"))).unwrap(); // not a file
        let t = TempFile::beside(&target).unwrap();
        assert!(!p(&stale).exists());
        for k in &kept {
            assert!(p(k).exists(), "{k}");
        }
        assert!(p(&format!(".Data.fs.tmp-{dead}-9")).is_dir());
        drop(t);

        // A repository: any name of ours, of a process that is gone.
        let any = [
            format!(".2026-12-01-10-00-00.fs.tmp-{dead}-0"),
            format!(".x.dat.tmp-{dead}-1"),
        ];
        for a in &any {
            std::fs::write(p(a), "a killed backup's").unwrap();
        }
        std::fs::write(p(&format!("..tmp-{dead}-0")), "no name").unwrap();
        remove_stale_temps_in(dir.path());
        for a in &any {
            assert!(!p(a).exists(), "{a}");
        }
        for k in &kept[..1] {
            assert!(p(k).exists(), "{k}");
        }
        assert!(!p(&format!(".Other.fs.tmp-{dead}-0")).exists());
        assert!(p(&format!("Data.fs.tmp-{dead}-0")).exists());
        assert!(p(&format!("..tmp-{dead}-0")).exists());
    }

    #[test]
    fn temp_file_is_removed_unless_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x");
        let t = TempFile::beside(&target).unwrap();
        let p = t.path().to_path_buf();
        assert!(p.exists());
        drop(t);
        assert!(!p.exists());
        let mut t = TempFile::beside(&target).unwrap();
        t.file().write_all(b"hello").unwrap();
        t.persist(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"hello");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn persist_new_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x");
        let mut t = TempFile::beside(&target).unwrap();
        t.file().write_all(b"one").unwrap();
        t.persist_new(&target).unwrap();
        let mut t = TempFile::beside(&target).unwrap();
        t.file().write_all(b"two").unwrap();
        let e = t.persist_new(&target).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&target).unwrap(), b"one");
        // The temporary file went with the failed attempt.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn flock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let held = try_lock_file(&p).unwrap().expect("first lock");
        // flock locks are per open file description: a second open conflicts.
        assert!(try_lock_file(&p).unwrap().is_none());
        assert!(lock_is_held(&p).unwrap());
        drop(held);
        assert!(!lock_is_held(&p).unwrap());
    }
}
