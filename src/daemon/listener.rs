//! Listening sockets: resolving the configured address, `bind` with the
//! socket options the daemon needs (raw `sockaddr` code, since std's
//! `TcpListener::bind` has neither SO_REUSEADDR control nor a backlog), and
//! the open-files limit every accepted client counts against.
//!
//! Used for the protocol port and the metrics port alike. Owns no
//! connection and no poll registration: the loop in `mod.rs` does.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::os::unix::io::FromRawFd;

/// The listen(2) backlog (the kernel clamps it to net.core.somaxconn).
const BACKLOG: i32 = 4096;

/// Why a listening socket could not be opened.
#[derive(Debug)]
pub enum ListenError {
    /// The host does not resolve (or resolves to nothing).
    Resolve(String),
    /// The address resolved, the socket could not be bound or listened on.
    Bind(SocketAddr, io::Error),
}

/// Resolves `host:port`, binds and listens; returns the listener (already
/// non-blocking) and the address it got (the port chosen for port 0).
pub fn open(host: &str, port: u16) -> Result<(StdListener, SocketAddr), ListenError> {
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| ListenError::Resolve(format!("cannot resolve listen address {host}: {e}")))?
        .next()
        .ok_or_else(|| ListenError::Resolve(format!("listen address {host} has no address")))?;
    let l = bind(addr).map_err(|e| ListenError::Bind(addr, e))?;
    let local = l.local_addr().map_err(|e| ListenError::Bind(addr, e))?;
    Ok((l, local))
}

/// Binds with SO_REUSEADDR and a large backlog (std's is 128, too small for
/// a thousand Zope threads reconnecting at once).
pub fn bind(addr: SocketAddr) -> io::Result<StdListener> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket syscalls; the fd is owned by the listener on
    // success and closed on every error path.
    unsafe {
        let fd = libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let listener = StdListener::from_raw_fd(fd);
        let one: libc::c_int = 1;
        if libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        let (storage, len) = sockaddr(&addr);
        if libc::bind(fd, &storage as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::listen(fd, BACKLOG) != 0 {
            return Err(io::Error::last_os_error());
        }
        listener.set_nonblocking(true)?;
        Ok(listener)
    }
}

fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; zeroed is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Raises the soft open-files limit to the hard one: each client is a
/// descriptor, and the default soft limit (often 1024) is below the
/// default `max_connections`.
pub fn raise_fd_limit(max_connections: usize) {
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return;
        }
        if rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
            let _ = libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        }
        // A few descriptors go to the listener, the log, the status file.
        if (rl.rlim_cur as usize) < max_connections + 32 {
            log::warn!(
                "open-files limit {} is below max_connections {} (+ a few): clients beyond it \
                 are refused at accept; raise `ulimit -n` (LimitNOFILE= under systemd)",
                rl.rlim_cur,
                max_connections
            );
        }
    }
}
