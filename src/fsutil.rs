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

/// A temporary file beside `target`, removed on drop unless persisted.
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Creates `<dir>/.<name>.tmp-<pid>-<n>` exclusively, mode 0640 masked by
    /// the umask.
    pub fn beside(target: &Path) -> io::Result<TempFile> {
        let dir = target.parent().unwrap_or(Path::new("."));
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
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

    /// fsync, rename over `target`, fsync the directory.
    pub fn persist(mut self, target: &Path) -> io::Result<()> {
        let file = self.file.take().expect("temp file present until persisted");
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.path, target)?;
        // The rename happened: nothing left to clean up on drop.
        self.path = PathBuf::new();
        sync_parent_dir(target)
    }
}

impl TempFile {
    /// fsync, then give the file the name `target` only if nothing has it
    /// (a hard link cannot replace a file, unlike rename), then fsync the
    /// directory. `AlreadyExists` when `target` exists. Filesystems without
    /// hard links fall back to a rename after an existence check.
    pub fn persist_new(mut self, target: &Path) -> io::Result<()> {
        let file = self.file.take().expect("temp file present until persisted");
        file.sync_all()?;
        drop(file);
        match std::fs::hard_link(&self.path, target) {
            Ok(()) => {
                std::fs::remove_file(&self.path)?;
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
                if target.exists() {
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
        sync_parent_dir(target)
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
    /// Another process holds it.
    Held { data_fs: PathBuf, lock: PathBuf },
    /// The lock file could not be opened, created or probed.
    Io { lock: PathBuf, error: io::Error },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { data_fs, lock } => write!(
                f,
                "{} is locked ({} is held): a ZEO server or ZODB process has it open",
                data_fs.display(),
                lock.display()
            ),
            LockError::Io { lock, error } => write!(f, "cannot lock {}: {error}", lock.display()),
        }
    }
}

impl std::error::Error for LockError {}

impl DataFsLock {
    /// Takes the lock of `data_fs` (creating `Data.fs.lock` if needed), or
    /// says who holds it.
    pub fn take(data_fs: &Path) -> Result<DataFsLock, LockError> {
        let lock = sibling(data_fs, ".lock");
        let existed = lock.exists();
        match try_lock_file(&lock) {
            Ok(Some(f)) => Ok(DataFsLock {
                _file: f,
                path: lock,
                created: !existed,
            }),
            Ok(None) => Err(LockError::Held {
                data_fs: data_fs.to_path_buf(),
                lock,
            }),
            Err(error) => Err(LockError::Io { lock, error }),
        }
    }

    /// True when a running ZEO server or ZODB process holds the lock of
    /// `data_fs` (a missing lock file means nobody does).
    pub fn probe(data_fs: &Path) -> io::Result<bool> {
        lock_is_held(&sibling(data_fs, ".lock"))
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
mod tests {
    use super::*;

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
