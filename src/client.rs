//! A blocking client of a running daemon, for `dump`, `bootstrap-status`,
//! `inflight`, `resolve`, `cut --server` and `backup`: connect with a
//! timeout, ask, read the answer with the protocol's response decoder.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::config::Config;
use crate::error::CliError;
use crate::protocol::answers::{InFlightAnswer, ResolveAnswer};
use crate::protocol::{self, Expect, Limits, Response, ResponseDecoder};
use crate::tid::Tid;

/// How long any single step (connect, one answer) may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The longest answer field accepted: an INFLIGHT answer of thousands of
/// transactions over thousands of storages is one (JSON) field. The daemon
/// is trusted this far; its own output limit per client is 16 MiB.
const MAX_ANSWER_FIELD: usize = 16 * 1024 * 1024;

pub struct DaemonClient {
    sock: TcpStream,
    dec: ResponseDecoder,
    addr: String,
}

/// The daemon address: `--server` or the configuration's [server]
/// address:port (a wildcard listen address means this host).
pub fn server_address(flag: Option<&str>, cfg: &Config) -> String {
    if let Some(s) = flag {
        return s.to_string();
    }
    let host = match cfg.server.address.as_str() {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" => "::1",
        h => h,
    };
    if host.contains(':') {
        format!("[{host}]:{}", cfg.server.port)
    } else {
        format!("{host}:{}", cfg.server.port)
    }
}

impl DaemonClient {
    pub fn connect(addr: &str) -> Result<DaemonClient, CliError> {
        let unreachable = |e: &dyn std::fmt::Display| {
            CliError::runtime(format!(
                "cannot reach the tidstorage daemon at {addr}: {e}; is the daemon running? \
                 check --server, or [server] address and port in the configuration"
            ))
        };
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| {
                CliError::usage(format!(
                    "invalid daemon address {addr:?}: {e}; write HOST:PORT, e.g. 127.0.0.1:9001"
                ))
            })?
            .collect();
        let mut last = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, TIMEOUT) {
                Ok(sock) => {
                    sock.set_read_timeout(Some(TIMEOUT))
                        .map_err(|e| unreachable(&e))?;
                    sock.set_write_timeout(Some(TIMEOUT))
                        .map_err(|e| unreachable(&e))?;
                    let _ = sock.set_nodelay(true);
                    return Ok(DaemonClient {
                        sock,
                        dec: ResponseDecoder::new(Limits {
                            max_field: MAX_ANSWER_FIELD,
                            ..Limits::default()
                        }),
                        addr: addr.to_string(),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => unreachable(&e),
            None => unreachable(&"no address"),
        })
    }

    fn ask(&mut self, word: &str, expect: Expect) -> Result<Response, CliError> {
        let mut b = Vec::new();
        // A fixed command word never contains a newline.
        protocol::encode_word(&mut b, word)
            .map_err(|e| CliError::runtime(format!("cannot send {word} to the daemon: {e}")))?;
        self.ask_bytes(word, &b, expect)
    }

    fn ask_bytes(&mut self, word: &str, b: &[u8], expect: Expect) -> Result<Response, CliError> {
        let fail = |e: &dyn std::fmt::Display| {
            CliError::runtime(format!(
                "the tidstorage daemon at {} did not answer {word}: {e}",
                self.addr
            ))
        };
        self.sock.write_all(b).map_err(|e| fail(&e))?;
        self.dec.expect(expect);
        let mut buf = [0u8; 64 * 1024];
        loop {
            match self.dec.next_response() {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(e) => return Err(fail(&e)),
            }
            match self.sock.read(&mut buf) {
                Ok(0) => return Err(fail(&"connection closed")),
                Ok(n) => self.dec.feed(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(&e)),
            }
        }
    }

    /// The published coherency point.
    pub fn dump(&mut self) -> Result<Vec<(String, Tid)>, CliError> {
        match self.ask("DUMP", Expect::Dump)? {
            Response::Dump(p) => Ok(p),
            r => Err(CliError::runtime(format!(
                "unexpected answer to DUMP: {r:?}"
            ))),
        }
    }

    pub fn bootstrapped(&mut self) -> Result<bool, CliError> {
        match self.ask("BOOTSTRAPED", Expect::Bootstraped)? {
            Response::Bootstraped(b) => Ok(b),
            r => Err(CliError::runtime(format!(
                "unexpected answer to BOOTSTRAPED: {r:?}"
            ))),
        }
    }

    /// The INFO extension (a JSON object).
    pub fn info(&mut self) -> Result<serde_json::Value, CliError> {
        match self.ask("INFO", Expect::Info)? {
            Response::Info(j) => serde_json::from_str(&j).map_err(|e| {
                CliError::runtime(format!(
                    "the daemon at {} sent invalid INFO JSON: {e}",
                    self.addr
                ))
            }),
            r => Err(CliError::runtime(format!(
                "unexpected answer to INFO: {r:?}"
            ))),
        }
    }

    /// The `INFLIGHT` extension: every in-flight and orphaned transaction,
    /// oldest first, typed.
    ///
    /// Each [`InFlightTransaction`](crate::protocol::answers::InFlightTransaction)
    /// carries its id, `state` (in-flight or orphan), `age_seconds`, its
    /// `storages`, whether it is `blocking`, the storages it `holds_back`
    /// (directly, or through a committed transaction it holds back that
    /// also touched them), `blocking_seconds` (how long the oldest commit
    /// it holds back has waited, in TID time), `stale`, the `client`
    /// address its BEGIN came from when known, and `blocked_because`.
    ///
    /// To name the transactions holding back storage `S` (what `backup
    /// --max-lag` reports for a storage it skips):
    ///
    /// ```no_run
    /// # fn f() -> Result<(), tidstorage::error::CliError> {
    /// let mut c = tidstorage::client::DaemonClient::connect("127.0.0.1:9001")?;
    /// let inflight = c.in_flight()?;
    /// for t in inflight.holding_back("S") {
    ///     println!("{} from {:?}, blocking for {:?}s", t.id, t.client, t.blocking_seconds);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// An empty list while the storage lags means no transaction holds it
    /// back: the daemon has seen no newer commit on it (then the lag is in
    /// the ZEO server or the clients' notifications), or bootstrap is not
    /// complete ([`DaemonClient::bootstrapped`]).
    pub fn in_flight(&mut self) -> Result<InFlightAnswer, CliError> {
        match self.ask("INFLIGHT", Expect::Json)? {
            Response::Json(j) => serde_json::from_str(&j).map_err(|e| {
                CliError::runtime(format!(
                    "the daemon at {} sent an invalid INFLIGHT answer: {e}; is it a tidstorage \
                     without the INFLIGHT extension?",
                    self.addr
                ))
            }),
            r => Err(CliError::runtime(format!(
                "unexpected answer to INFLIGHT: {r:?}"
            ))),
        }
    }

    /// The `RESOLVE` extension: declares transaction `id` finished (see
    /// `tidstorage resolve`). The answer says what was resolved, or why
    /// nothing was.
    pub fn resolve(&mut self, id: &str) -> Result<ResolveAnswer, CliError> {
        let mut b = Vec::new();
        protocol::encode_resolve(&mut b, id).map_err(|e| {
            CliError::usage(format!(
                "cannot send transaction id {id:?} to the daemon: {e}"
            ))
        })?;
        match self.ask_bytes("RESOLVE", &b, Expect::Json)? {
            Response::Json(j) => serde_json::from_str(&j).map_err(|e| {
                CliError::runtime(format!(
                    "the daemon at {} sent an invalid RESOLVE answer: {e}",
                    self.addr
                ))
            }),
            r => Err(CliError::runtime(format!(
                "unexpected answer to RESOLVE: {r:?}"
            ))),
        }
    }
}
