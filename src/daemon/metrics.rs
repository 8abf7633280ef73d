//! The metrics port: its listener and its HTTP connections, on the same
//! `mio` loop as the protocol port (no thread). Each connection gets one
//! request head of at most `request::MAX_REQUEST` bytes within
//! [`REQUEST_TIMEOUT`], one answer, and is closed; a bad, huge or slow
//! request closes only that connection. At most [`MAX_CONNECTIONS`] at
//! once; the protocol port's allow-list applies.
//!
//! Owns sockets only: what is answered comes from `crate::metrics`.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::config::Cidr;
use crate::metrics::request;

/// Metrics connections open at once; Prometheus scrapes with one (an HA
/// pair with two), so this only bounds misbehaving peers.
pub const MAX_CONNECTIONS: usize = 64;
/// From accept to the last byte of the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections accepted per listener event before others get a turn.
const ACCEPT_BUDGET: usize = 256;
/// Connection slot i is Token(FIRST_TOKEN + i): far above the protocol
/// connections' tokens, whatever their number.
pub const FIRST_TOKEN: usize = usize::MAX / 2;

struct HttpConn {
    sock: TcpStream,
    peer: SocketAddr,
    /// The request head received so far.
    input: Vec<u8>,
    /// The answer, once known; bytes before `sent` are written.
    out: Option<Vec<u8>>,
    sent: usize,
    deadline: Duration,
    interest: Interest,
}

pub struct MetricsServer {
    listener: TcpListener,
    pub local: SocketAddr,
    conns: Vec<Option<HttpConn>>,
    free: Vec<usize>,
    live: usize,
    /// The accept budget ran out: accept again at the next turn.
    pub accept_again: bool,
    /// Scrapes answered (200), for the log at shutdown.
    pub served: u64,
}

impl MetricsServer {
    pub fn new(listener: std::net::TcpListener, local: SocketAddr) -> MetricsServer {
        MetricsServer {
            listener: TcpListener::from_std(listener),
            local,
            conns: Vec::new(),
            free: Vec::new(),
            live: 0,
            accept_again: false,
            served: 0,
        }
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.listener, token, Interest::READABLE)
    }

    pub fn owns(token: Token) -> bool {
        token.0 >= FIRST_TOKEN
    }

    /// The earliest connection deadline.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.conns.iter().flatten().map(|c| c.deadline).min()
    }

    pub fn accept(&mut self, registry: &Registry, allow: &[Cidr], now: Duration) {
        self.accept_again = false;
        for _ in 0..ACCEPT_BUDGET {
            let (mut sock, peer) = match self.listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::error!("accept on the metrics port {} failed: {e}", self.local);
                    return;
                }
            };
            if !allow.is_empty() && !allow.iter().any(|c| c.contains(peer.ip())) {
                log::warn!("refused metrics connection from {peer}: not in the allow list");
                continue;
            }
            if self.live >= MAX_CONNECTIONS {
                log::warn!(
                    "refused metrics connection from {peer}: {MAX_CONNECTIONS} metrics \
                     connections already open"
                );
                continue;
            }
            let slot = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            if let Err(e) =
                registry.register(&mut sock, Token(FIRST_TOKEN + slot), Interest::READABLE)
            {
                log::error!("metrics: {peer}: cannot register the connection: {e}");
                self.free.push(slot);
                continue;
            }
            self.conns[slot] = Some(HttpConn {
                sock,
                peer,
                input: Vec::new(),
                out: None,
                sent: 0,
                deadline: now + REQUEST_TIMEOUT,
                interest: Interest::READABLE,
            });
            self.live += 1;
        }
        self.accept_again = true;
    }

    /// Reads the request, answers it (rendering with `metrics` only for a
    /// scrape), writes what the socket takes; closes when done or bad.
    pub fn ready(
        &mut self,
        registry: &Registry,
        token: Token,
        scratch: &mut [u8],
        metrics: impl FnOnce() -> String,
    ) {
        let slot = token.0 - FIRST_TOKEN;
        let Some(mut c) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let mut keep = true;
        if c.out.is_none() {
            // Bounded: at most MAX_REQUEST + one read before a verdict.
            loop {
                match c.sock.read(scratch) {
                    Ok(0) => {
                        log::debug!("metrics: {}: closed before a complete request", c.peer);
                        keep = false;
                        break;
                    }
                    Ok(n) => {
                        c.input.extend_from_slice(&scratch[..n]);
                        if c.input.len() > request::MAX_REQUEST {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::debug!("metrics: {}: read failed: {e}", c.peer);
                        keep = false;
                        break;
                    }
                }
            }
            if keep {
                if let Some((status, answer)) = request::respond(&c.input, metrics) {
                    match status {
                        200 => self.served += 1,
                        400 | 431 => log::warn!(
                            "metrics: {}: bad request ({status}); answered and closing this \
                             connection",
                            c.peer
                        ),
                        _ => log::debug!("metrics: {}: answered {status}", c.peer),
                    }
                    c.out = Some(answer);
                    c.input = Vec::new();
                }
            }
        }
        if keep {
            if let Some(out) = &c.out {
                while c.sent < out.len() {
                    match c.sock.write(&out[c.sent..]) {
                        Ok(0) => {
                            keep = false;
                            break;
                        }
                        Ok(n) => c.sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            log::debug!("metrics: {}: write failed: {e}", c.peer);
                            keep = false;
                            break;
                        }
                    }
                }
                if c.sent == out.len() {
                    // Answered: half-close so the peer reads to the end.
                    let _ = c.sock.shutdown(std::net::Shutdown::Write);
                    keep = false;
                }
            }
        }
        if keep {
            let want = if c.out.is_some() {
                Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if want != c.interest {
                if let Err(e) = registry.reregister(&mut c.sock, token, want) {
                    log::error!("metrics: {}: cannot re-register: {e}", c.peer);
                    keep = false;
                }
                c.interest = want;
            }
        }
        if keep {
            self.conns[slot] = Some(c);
        } else {
            self.close(registry, slot, c);
        }
    }

    fn close(&mut self, registry: &Registry, slot: usize, mut c: HttpConn) {
        let _ = registry.deregister(&mut c.sock);
        self.free.push(slot);
        self.live -= 1;
    }

    /// Closes connections past their deadline (slow or idle peers).
    pub fn expire(&mut self, registry: &Registry, now: Duration) {
        for slot in 0..self.conns.len() {
            if self.conns[slot].as_ref().is_some_and(|c| c.deadline <= now) {
                if let Some(c) = self.conns[slot].take() {
                    log::debug!(
                        "metrics: {}: no complete request or answer within {}s; closing",
                        c.peer,
                        REQUEST_TIMEOUT.as_secs()
                    );
                    self.close(registry, slot, c);
                }
            }
        }
    }
}
