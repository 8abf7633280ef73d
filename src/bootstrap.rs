//! Bootstrap triggers (SPEC §3.5): make every configured storage commit
//! once so the daemon sees it. Used by the daemon (bootstrap after a start)
//! and by `backup` (storages missing from the daemon's point). A trigger is a command run with the storage
//! in its environment, or an HTTP GET of `bootstrap.url` with `%s` replaced
//! by the mountpoint. Neither blocks the event loop: commands are child
//! processes reaped with `try_wait`; HTTP requests run on short-lived
//! threads with timeouts and report through a channel.
//!
//! The GET is `ureq`'s (http and https; rustls with the bundled Mozilla
//! roots, or only the certificates of `[bootstrap] ca_file` when set; no
//! proxy: the Zope to trigger is on the site's own network). Any answer
//! below 400 counts as fired: the commit it causes is what bootstrap waits
//! for, not the answer.
//!
//! A command also gets `TIDSTORAGE_SERVER` (the daemon's own listening
//! address), so a helper such as the Python client's `tidstorage-zodb-touch`
//! reports its commit to the daemon that asked for it, whatever port it got.

use std::collections::HashMap;
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
    /// The HTTP client, built once (its TLS set-up reads `ca_file`); the
    /// error says what is wrong with the configuration.
    agent: Result<ureq::Agent, String>,
}

/// How long one trigger GET may take, connect to last byte.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP client of the triggers: timeouts, no proxy, a private CA when
/// `ca_file` names one.
fn agent(cfg: &BootstrapConfig) -> Result<ureq::Agent, String> {
    let mut b = ureq::Agent::config_builder()
        .timeout_global(Some(HTTP_TIMEOUT))
        .http_status_as_error(false)
        .proxy(None)
        .user_agent(format!("tidstorage/{}", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            format!(
                "cannot read [bootstrap] ca_file {}: {e}; check the path and permissions",
                path.display()
            )
        })?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => {
                    return Err(format!(
                        "[bootstrap] ca_file {} is not valid PEM: {e}",
                        path.display()
                    ))
                }
            }
        }
        if certs.is_empty() {
            return Err(format!(
                "[bootstrap] ca_file {} holds no certificate (expected PEM \
                 \"-----BEGIN CERTIFICATE-----\" blocks)",
                path.display()
            ));
        }
        b = b.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build(),
        );
    }
    Ok(b.build().into())
}

impl Triggers {
    pub fn new(cfg: BootstrapConfig, storages: &[StorageConfig], server: String) -> Triggers {
        let (http_tx, http_rx) = mpsc::channel();
        let agent = match &cfg.url {
            Some(_) => agent(&cfg),
            None => Err("no [bootstrap] url".to_string()),
        };
        Triggers {
            agent,
            cfg,
            storages: storages.iter().map(|s| (s.id.clone(), s.clone())).collect(),
            server,
            children: Vec::new(),
            http_tx,
            http_rx,
            http_in_flight: 0,
        }
    }

    /// What is wrong with the trigger configuration that only shows when
    /// files are read (an unreadable `ca_file`): the daemon refuses to start
    /// on it rather than fail at the first bootstrap.
    pub fn check(&self) -> Result<(), String> {
        match (&self.cfg.url, &self.agent) {
            (Some(_), Err(e)) => Err(e.clone()),
            _ => Ok(()),
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
                let agent = match &self.agent {
                    Ok(a) => a.clone(),
                    Err(e) => {
                        log::error!("bootstrap: cannot GET {url} for {id}: {e}");
                        continue;
                    }
                };
                let tx = self.http_tx.clone();
                let id2 = id.clone();
                self.http_in_flight += 1;
                log::info!("bootstrap: GET {url} for {id}");
                std::thread::spawn(move || {
                    let _ = tx.send((id2, http_get(&agent, &url)));
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

/// GETs `url`; `Ok` with the status line for an answer below 400.
fn http_get(agent: &ureq::Agent, url: &str) -> Result<String, String> {
    let resp = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let line = format!(
        "{:?} {} {}",
        resp.version(),
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_string();
    // The body is not needed; dropping the response closes the connection.
    if status.as_u16() < 400 {
        Ok(line)
    } else {
        Err(format!("{url}: {line}"))
    }
}
