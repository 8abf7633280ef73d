//! Signals delivered into the event loop: signal-hook writes a byte to a
//! socket pair registered in the same `Poll`, and sets a flag per signal.
//! The loop drains the pipe first, then acts on the flags.

use std::io::{self, Read};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};

/// What the loop was asked to do since the last drain.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub reopen: bool,
    pub dump_state: bool,
    pub stop: bool,
}

pub struct Signals {
    read: mio::net::UnixStream,
    // Kept open for the life of the daemon: signal-hook writes into it.
    _write: UnixStream,
    hup: Arc<AtomicBool>,
    usr1: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let hup = Arc::new(AtomicBool::new(false));
        let usr1 = Arc::new(AtomicBool::new(false));
        let term = Arc::new(AtomicBool::new(false));
        for (sig, flag) in [
            (SIGHUP, &hup),
            (SIGUSR1, &usr1),
            (SIGTERM, &term),
            (SIGINT, &term),
        ] {
            signal_hook::flag::register(sig, Arc::clone(flag))?;
            signal_hook::low_level::pipe::register_raw(sig, write.as_raw_fd())?;
        }
        Ok(Signals {
            read: mio::net::UnixStream::from_std(read),
            _write: write,
            hup,
            usr1,
            term,
        })
    }

    pub fn source(&mut self) -> &mut mio::net::UnixStream {
        &mut self.read
    }

    /// Drains the wake-up bytes, then takes the flags.
    pub fn drain(&mut self) -> Pending {
        let mut buf = [0u8; 64];
        // Bounded: the pipe holds at most a few bytes per delivered signal.
        for _ in 0..1024 {
            match self.read.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        Pending {
            reopen: self.hup.swap(false, Ordering::SeqCst),
            dump_state: self.usr1.swap(false, Ordering::SeqCst),
            stop: self.term.swap(false, Ordering::SeqCst),
        }
    }
}
