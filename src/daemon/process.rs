//! The process around the daemon: pidfile lock, detaching, and dropping
//! privileges after binding.
//!
//! User and group names are read from /etc/passwd and /etc/group directly,
//! so the static binary needs no NSS modules.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::fsutil;

/// A locked pidfile; removed on drop by the process that wrote it.
pub struct PidFile {
    path: PathBuf,
    file: File,
    owner: Option<u32>,
}

impl PidFile {
    /// The lock of the status file `status` (`<status>.lock`, holding the
    /// writer's pid): one daemon writes a status file, never two, whatever
    /// their pidfiles. Does not write the pid yet.
    pub fn lock_status_file(status: &Path) -> Result<PidFile, String> {
        let path = fsutil::sibling(status, ".lock");
        match fsutil::try_lock_file(&path) {
            Ok(Some(file)) => Ok(PidFile {
                path,
                file,
                owner: None,
            }),
            Ok(None) => {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                Err(format!(
                    "another tidstorage daemon (pid {}) writes the status file {} (it holds {}); \
                     stop it first, or give this one another --status-file",
                    pid.trim(),
                    status.display(),
                    path.display()
                ))
            }
            Err(e) => Err(format!(
                "cannot open {}, the lock of the status file: {e}; check the directory is writable",
                path.display()
            )),
        }
    }

    /// Takes the lock or says who holds it. Does not write the pid yet.
    pub fn lock(path: &Path) -> Result<PidFile, String> {
        match fsutil::try_lock_file(path) {
            Ok(Some(file)) => Ok(PidFile {
                path: path.to_path_buf(),
                file,
                owner: None,
            }),
            Ok(None) => {
                let pid = std::fs::read_to_string(path).unwrap_or_default();
                Err(format!(
                    "another tidstorage daemon (pid {}) holds the pidfile {}; stop it first, \
                     or give this one another --pidfile",
                    pid.trim(),
                    path.display()
                ))
            }
            Err(e) => Err(format!(
                "cannot open the pidfile {}: {e}; check the directory exists and is writable",
                path.display()
            )),
        }
    }

    /// Writes this process's pid (call in the final process after detaching).
    pub fn write_pid(&mut self) -> io::Result<()> {
        let pid = std::process::id();
        self.file.set_len(0)?;
        let mut f = &self.file;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0))?;
        f.write_all(format!("{pid}\n").as_bytes())?;
        f.sync_all()?;
        self.owner = Some(pid);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if self.owner == Some(std::process::id()) {
            if let Err(e) = std::fs::remove_file(&self.path) {
                log::warn!("cannot remove the pidfile {}: {e}", self.path.display());
            }
        }
    }
}

/// Double fork, setsid, chdir /, umask 027, stdio to /dev/null. Returns in
/// the grandchild only; the original process exits 0 once the grandchild
/// exists (its readiness is in the log).
pub fn daemonize() -> io::Result<()> {
    // SAFETY: called before any thread is started (the loop is single
    // threaded and starts after this), so fork is sound.
    unsafe {
        match libc::fork() {
            -1 => return Err(io::Error::last_os_error()),
            0 => {}
            _ => libc::_exit(0),
        }
        if libc::setsid() == -1 {
            return Err(io::Error::last_os_error());
        }
        match libc::fork() {
            -1 => return Err(io::Error::last_os_error()),
            0 => {}
            _ => libc::_exit(0),
        }
        libc::umask(0o027);
    }
    std::env::set_current_dir("/")?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
        // SAFETY: both fds are valid; dup2 replaces stdio.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Finds `name` (or a number) in a passwd/group style file: returns
/// (id, primary gid for passwd entries).
fn lookup(file: &str, name: &str, what: &str) -> Result<(u32, Option<u32>), String> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok((n, None));
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 3 && f[0] == name {
            let id = f[2]
                .parse()
                .map_err(|_| format!("{file}: bad id for {what} {name:?}"))?;
            let gid = f.get(3).and_then(|g| g.parse().ok());
            return Ok((id, gid));
        }
    }
    Err(format!(
        "{what} {name:?} is not in {file}; give an existing name or a number"
    ))
}

/// setgroups/setgid/setuid to the given user and group (group defaults to
/// the user's primary group).
pub fn drop_privileges(user: Option<&str>, group: Option<&str>) -> Result<(), String> {
    if user.is_none() && group.is_none() {
        return Ok(());
    }
    let (uid, primary) = match user {
        Some(u) => {
            let (uid, gid) = lookup("/etc/passwd", u, "user")?;
            (Some(uid), gid)
        }
        None => (None, None),
    };
    let gid = match group {
        Some(g) => Some(lookup("/etc/group", g, "group")?.0),
        None => primary,
    };
    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        if let Some(gid) = gid {
            let groups = [gid as libc::gid_t];
            if libc::setgroups(1, groups.as_ptr()) != 0 || libc::setgid(gid) != 0 {
                return Err(format!(
                    "cannot switch to group {gid}: {} (run as root to use --group)",
                    io::Error::last_os_error()
                ));
            }
        }
        if let Some(uid) = uid {
            if libc::setuid(uid) != 0 {
                return Err(format!(
                    "cannot switch to user {uid}: {} (run as root to use --user)",
                    io::Error::last_os_error()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_names_and_numbers() {
        assert_eq!(lookup("/etc/passwd", "root", "user").unwrap(), (0, Some(0)));
        assert_eq!(lookup("/etc/passwd", "1234", "user").unwrap(), (1234, None));
        let e = lookup("/etc/passwd", "no-such-user-xyz", "user").unwrap_err();
        assert!(e.contains("not in /etc/passwd"), "{e}");
    }

    #[test]
    fn pidfile_is_exclusive_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.pid");
        let mut a = PidFile::lock(&p).unwrap();
        a.write_pid().unwrap();
        let e = PidFile::lock(&p).err().unwrap();
        assert!(e.contains(&std::process::id().to_string()), "{e}");
        drop(a);
        assert!(!p.exists());
        assert!(PidFile::lock(&p).is_ok());
    }
}
