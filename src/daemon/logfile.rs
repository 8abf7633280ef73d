//! The server log: simplelog writing to stderr or to a file that SIGHUP
//! reopens (so logrotate can move it away).
//!
//! Owns the one global logger of the daemon. Never decides what to log.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where log lines go; cloned into simplelog, kept by the daemon to reopen.
#[derive(Clone)]
pub struct LogSink {
    inner: Arc<Mutex<Sink>>,
}

enum Sink {
    Stderr,
    File { path: PathBuf, file: File },
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

impl LogSink {
    pub fn stderr() -> LogSink {
        LogSink {
            inner: Arc::new(Mutex::new(Sink::Stderr)),
        }
    }

    pub fn file(path: &Path) -> io::Result<LogSink> {
        Ok(LogSink {
            inner: Arc::new(Mutex::new(Sink::File {
                path: path.to_path_buf(),
                file: open_append(path)?,
            })),
        })
    }

    /// Reopens the file by name (after logrotate renamed it). On failure
    /// the old file stays in use and the error is returned for logging.
    pub fn reopen(&self) -> io::Result<()> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Sink::File { path, file } = &mut *g {
            *file = open_append(path)?;
        }
        Ok(())
    }

    /// Installs this sink as the global logger at `level`.
    pub fn install(&self, level: log::LevelFilter) {
        let cfg = simplelog::ConfigBuilder::new()
            .set_target_level(log::LevelFilter::Off)
            .set_thread_level(log::LevelFilter::Off)
            // UTC timestamps: the same clock as the status file and TIDs.
            .set_time_format_rfc3339()
            .build();
        // A second install (tests calling serve twice in one process) keeps the first.
        let _ = simplelog::WriteLogger::init(level, cfg, self.clone());
    }
}

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *g {
            Sink::Stderr => io::stderr().write(buf),
            Sink::File { file, .. } => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *g {
            Sink::Stderr => io::stderr().flush(),
            Sink::File { file, .. } => file.flush(),
        }
    }
}
