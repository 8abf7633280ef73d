//! Bootstrap triggers (SPEC §3.5): make every configured storage commit
//! once so the daemon sees it. Used by the daemon (bootstrap after a start)
//! and by `backup` (storages missing from the daemon's point). A trigger is a command run with the storage
//! in its environment, or an HTTP GET of `bootstrap.url` with `%s` replaced
//! by the mountpoint. Neither blocks the event loop: commands are child
//! processes reaped with `try_wait`; HTTP requests run on short-lived
//! threads with timeouts and report through a channel.
//!
//! A command also gets `TIDSTORAGE_SERVER` (the daemon's own listening
//! address), so a helper such as the Python client's `tidstorage-zodb-touch`
//! reports its commit to the daemon that asked for it, whatever port it got.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::config::{BootstrapConfig, StorageConfig};

/// How long a trigger command gets between SIGTERM and SIGKILL when its
/// owner (the daemon at shutdown, or `backup`) stops it.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// How long `backup` lets a trigger whose commit was already seen exit on
/// its own (an interpreter closing its connections) before stopping it.
pub const EXIT_GRACE: Duration = Duration::from_secs(5);

pub struct Triggers {
    cfg: BootstrapConfig,
    storages: HashMap<String, StorageConfig>,
    /// `HOST:PORT` the daemon listens on, passed to trigger commands.
    server: String,
    children: Vec<(String, Child)>,
    http_tx: mpsc::Sender<(String, Result<String, String>)>,
    http_rx: mpsc::Receiver<(String, Result<String, String>)>,
    http_in_flight: usize,
}

impl Triggers {
    pub fn new(cfg: BootstrapConfig, storages: &[StorageConfig], server: String) -> Triggers {
        let (http_tx, http_rx) = mpsc::channel();
        Triggers {
            cfg,
            storages: storages.iter().map(|s| (s.id.clone(), s.clone())).collect(),
            server,
            children: Vec::new(),
            http_tx,
            http_rx,
            http_in_flight: 0,
        }
    }

    pub fn configured(&self) -> bool {
        self.cfg.command.is_some() || self.cfg.url.is_some()
    }

    pub fn retry(&self) -> Duration {
        self.cfg.retry
    }

    /// Anything still running that `reap` should look at soon.
    pub fn busy(&self) -> bool {
        !self.children.is_empty() || self.http_in_flight > 0
    }

    /// Fires the trigger of each missing storage (skipping one whose
    /// previous trigger is still running).
    pub fn fire(&mut self, missing: &[String]) {
        if !self.configured() {
            log::warn!(
                "bootstrap: no trigger configured ([bootstrap] command or url); waiting for \
                 natural traffic on: {}",
                missing.join(", ")
            );
            return;
        }
        for id in missing {
            if self.children.iter().any(|(s, _)| s == id) {
                log::warn!("bootstrap: trigger for {id} still running; not fired again");
                continue;
            }
            let st = self.storages.get(id);
            let mountpoint = st.and_then(|s| s.mountpoint.clone()).unwrap_or_default();
            let data_fs = st.and_then(|s| s.data_fs.clone()).unwrap_or_default();
            if let Some(cmd) = &self.cfg.command {
                match Command::new(cmd)
                    .env("TIDSTORAGE_STORAGE_ID", id)
                    .env("TIDSTORAGE_MOUNTPOINT", &mountpoint)
                    .env("TIDSTORAGE_DATA_FS", &data_fs)
                    .env("TIDSTORAGE_SERVER", &self.server)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                {
                    Ok(child) => {
                        log::info!(
                            "bootstrap: ran {} for {id} (pid {})",
                            cmd.display(),
                            child.id()
                        );
                        self.children.push((id.clone(), child));
                    }
                    Err(e) => log::error!(
                        "bootstrap: cannot run {} for {id}: {e}; check [bootstrap] command",
                        cmd.display()
                    ),
                }
            } else if let Some(url) = &self.cfg.url {
                let url = url.replace("%s", &mountpoint);
                let tx = self.http_tx.clone();
                let id2 = id.clone();
                self.http_in_flight += 1;
                log::info!("bootstrap: GET {url} for {id}");
                std::thread::spawn(move || {
                    let _ = tx.send((id2, http_get(&url, Duration::from_secs(30))));
                });
            }
        }
    }

    /// Reaps finished children and HTTP results, logging each outcome.
    pub fn reap(&mut self) {
        self.children
            .retain_mut(|(id, child)| match child.try_wait() {
                Ok(Some(st)) if st.success() => {
                    log::info!("bootstrap: trigger for {id} finished");
                    false
                }
                Ok(Some(st)) => {
                    log::error!(
                        "bootstrap: trigger for {id} failed ({st}); retrying at the next period"
                    );
                    false
                }
                Ok(None) => true,
                Err(e) => {
                    log::error!("bootstrap: cannot wait for the trigger of {id}: {e}");
                    false
                }
            });
        while let Ok((id, r)) = self.http_rx.try_recv() {
            self.http_in_flight = self.http_in_flight.saturating_sub(1);
            match r {
                Ok(status) => log::info!("bootstrap: GET for {id} answered {status}"),
                Err(e) => {
                    log::error!("bootstrap: GET for {id} failed: {e}; retrying at the next period")
                }
            }
        }
    }

    /// Waits up to `limit` for running trigger commands to exit on their own.
    pub fn wait(&mut self, limit: Duration) {
        let end = std::time::Instant::now() + limit;
        self.reap();
        while !self.children.is_empty() && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
            self.reap();
        }
    }

    /// Stops trigger commands still running when their owner exits, so
    /// none outlives it (and none reports to whatever listens on the
    /// address next): SIGTERM, up to [`KILL_GRACE`] to exit, then SIGKILL.
    /// HTTP requests run on threads that end with the process.
    pub fn stop(&mut self) {
        self.reap();
        if self.children.is_empty() {
            return;
        }
        for (id, child) in &self.children {
            log::info!(
                "bootstrap: stopping the trigger for {id} (pid {}), still running",
                child.id()
            );
            // SAFETY: kill(2) on a child we spawned and have not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        let end = std::time::Instant::now() + KILL_GRACE;
        while !self.children.is_empty() && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
            self.children
                .retain_mut(|(_, c)| matches!(c.try_wait(), Ok(None)));
        }
        for (id, mut child) in self.children.drain(..) {
            log::warn!(
                "bootstrap: the trigger for {id} (pid {}) ignored SIGTERM; killed",
                child.id()
            );
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A minimal HTTP/1.0 GET returning the status line; `http://` only.
fn http_get(url: &str, timeout: Duration) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr_text = if hostport.contains(':') && !hostport.ends_with(']') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let addr = addr_text
        .to_socket_addrs()
        .map_err(|e| format!("{url}: cannot resolve {hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: {hostport} has no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{url}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let host = hostport.split(':').next().unwrap_or(hostport);
    s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: tidstorage\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .map_err(|e| format!("{url}: {e}"))?;
    let mut buf = Vec::new();
    // Only the status line matters; read a bounded amount.
    let _ = s.take(64 * 1024).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().next().unwrap_or("").to_string();
    let code = line.split_whitespace().nth(1).unwrap_or("");
    if code.starts_with('2') || code.starts_with('3') {
        Ok(line)
    } else if line.is_empty() {
        Err(format!("{url}: empty answer"))
    } else {
        Err(format!("{url}: {line}"))
    }
}
