//! The daemon: the only owner of sockets, file descriptors, signals and the
//! clock. A hand-rolled, single-threaded `mio` loop that moves bytes from
//! sockets into the protocol decoder, commands into the engine, answers
//! back out, and drives the status-file writer and bootstrap triggers from
//! the poll timeout.
//!
//! It must not decide anything about coherency (the engine does), parse
//! frames (the codec does) or format records (the status log does).
//!
//! This file keeps start-up and the loop. Around it: `listener` (bind,
//! socket options, fd limit), `conn` (one protocol connection), `metrics`
//! (the metrics port's listener and HTTP connections), `notices`
//! (the log rate limit of engine notices), `signals`, `logfile` and
//! `process` (pidfile, detach, privileges).

mod conn;
mod listener;
mod logfile;
mod metrics;
mod notices;
mod process;
mod signals;

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use crate::bootstrap::Triggers;
use crate::config::Config;
use crate::engine::{BootstrapState, Engine, EngineConfig, InFlightInfo, NoticeKind, Now};
use crate::error::{CliError, Result};
use crate::protocol::{self, answers, Command, Limits};
use crate::statuslog::{self, RecordKind, ReplayOptions, Schedule, StatusWriter};
use crate::tid::Tid;

use conn::{Conn, ReadOutcome};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const METRICS: Token = Token(2);
/// Connection tokens start here; slot i of the slab is Token(FIRST_CONN + i).
const FIRST_CONN: usize = 16;
/// Bytes read from one connection per turn before others get theirs: small
/// enough that a DUMP waits for little else, large enough to batch.
const READ_BUDGET: usize = 64 * 1024;
/// Size of one read(2).
const READ_CHUNK: usize = 16 * 1024;
/// Connections accepted per listener event before others get a turn.
const ACCEPT_BUDGET: usize = 4096;

/// Runs the daemon until SIGTERM/SIGINT. Errors before the loop starts
/// (bad address, unreadable status file, pidfile held) are returned.
pub fn serve(cfg: Config, detach: bool, level: log::LevelFilter) -> Result<()> {
    let sc = cfg.server.clone();
    let sink = match &sc.log_file {
        Some(p) => logfile::LogSink::file(p).map_err(|e| {
            CliError::runtime(format!(
                "cannot open the server log {}: {e}; check the directory and permissions",
                p.display()
            ))
        })?,
        None => logfile::LogSink::stderr(),
    };
    sink.install(level);
    if detach && sc.log_file.is_none() {
        log::warn!("--daemon without --log: the server log is discarded once detached");
    }

    // Replay before binding: a damaged status file must stop us before
    // any client believes we are serving.
    // Before reading it: a second daemon on the same status file would
    // interleave records and publish points the other never saw.
    let mut status_lock =
        process::PidFile::lock_status_file(&sc.status_file).map_err(CliError::runtime)?;
    let replay = match statuslog::replay_file(&sc.status_file, ReplayOptions { lenient: false }) {
        Ok(r) => r,
        // First start: no file yet, nothing to replay.
        Err(statuslog::Error {
            kind: statuslog::ErrorKind::Io(e),
            ..
        }) if e.kind() == io::ErrorKind::NotFound => {
            log::info!(
                "status file {} does not exist yet; starting with an empty point",
                sc.status_file.display()
            );
            statuslog::Replay::default()
        }
        Err(e) => {
            return Err(CliError::runtime(format!(
                "{e}\n(the daemon did not start; inspect the file with `tidstorage dump \
                 --status-file {}`, move it aside or fix it)",
                sc.status_file.display()
            )))
        }
    };
    if let Some((line, why)) = &replay.torn_last_line {
        log::warn!(
            "status file {}: damaged last line {line} ignored ({why}); continuing from the point before it",
            sc.status_file.display()
        );
    }

    let (std_listener, local) = listener::open(&sc.address, sc.port).map_err(|e| match e {
        listener::ListenError::Resolve(m) => CliError::usage(m),
        listener::ListenError::Bind(addr, e) => CliError::runtime(format!(
            "cannot listen on {addr}: {e}; is another daemon running there? choose another --port"
        )),
    })?;
    let metrics_listener = match &sc.metrics_address {
        None => None,
        Some(a) => {
            let bad = || {
                CliError::usage(format!(
                    "metrics address {a:?} is not HOST:PORT; write e.g. 127.0.0.1:9002 \
                     ([server] metrics_address or --metrics-address)"
                ))
            };
            let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Some(listener::open(host, port).map_err(|e| match e {
                listener::ListenError::Resolve(m) => CliError::usage(m),
                listener::ListenError::Bind(addr, e) => CliError::runtime(format!(
                    "cannot listen for metrics on {addr}: {e}; is something else there? \
                     choose another --metrics-address"
                )),
            })?)
        }
    };

    let mut pidfile = match &sc.pidfile {
        Some(p) => Some(process::PidFile::lock(p).map_err(CliError::runtime)?),
        None => None,
    };
    if detach {
        process::daemonize().map_err(|e| CliError::runtime(format!("cannot detach: {e}")))?;
    }
    status_lock.write_pid().map_err(|e| {
        CliError::runtime(format!(
            "cannot write {}: {e}",
            status_lock.path().display()
        ))
    })?;
    if let Some(p) = &mut pidfile {
        p.write_pid().map_err(|e| {
            CliError::runtime(format!(
                "cannot write the pidfile {}: {e}",
                p.path().display()
            ))
        })?;
    }
    process::drop_privileges(sc.user.as_deref(), sc.group.as_deref()).map_err(CliError::runtime)?;

    let writer = StatusWriter::open(&sc.status_file, sc.fsync).map_err(|e| {
        CliError::runtime(format!(
            "cannot open the status file {} for appending: {e}; check the directory and permissions",
            sc.status_file.display()
        ))
    })?;

    listener::raise_fd_limit(sc.max_connections);
    // A file-size limit (ulimit -f) must fail the write with EFBIG, which
    // is logged and retried, not kill the daemon with SIGXFSZ.
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let mut d = Daemon::new(cfg, writer, sink, std_listener, local, &replay.point)
        .map_err(|e| CliError::runtime(format!("cannot set up the event loop: {e}")))?;
    d.triggers.check().map_err(CliError::usage)?;
    if let Some((l, addr)) = metrics_listener {
        let mut m = metrics::MetricsServer::new(l, addr);
        m.register(d.poll.registry(), METRICS)
            .map_err(|e| CliError::runtime(format!("cannot set up the event loop: {e}")))?;
        d.metrics = Some(m);
    }
    log::info!(
        "tidstorage {} serving; status file {} ({} record(s) replayed, {} storage(s) in the last point); pid {}",
        env!("CARGO_PKG_VERSION"),
        sc.status_file.display(),
        replay.records,
        replay.point.len(),
        std::process::id()
    );
    // Before "listening on": whoever waits for that line finds this one.
    if let Some(m) = &d.metrics {
        log::info!("metrics on http://{}/metrics", m.local);
    }
    log::info!("listening on {local}");
    if sc.log_file.is_some() && !detach {
        // The log goes to a file: say it where whoever started us looks.
        if let Some(m) = &d.metrics {
            println!("metrics on http://{}/metrics", m.local);
        }
        println!("listening on {local}");
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }
    let r = d.run();
    drop(pidfile);
    drop(status_lock);
    r.map_err(|e| CliError::runtime(format!("event loop failed: {e}")))
}

struct Daemon {
    cfg: Config,
    poll: Poll,
    listener: Option<TcpListener>,
    signals: signals::Signals,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    live: usize,
    /// Connections with unread input left by the read budget.
    again: Vec<Token>,
    /// The accept budget ran out: accept again at the next turn.
    accept_again: bool,
    /// The one read buffer, shared by every connection.
    scratch: Vec<u8>,
    engine: Engine,
    limits: Limits,
    writer: StatusWriter,
    schedule: Schedule,
    /// Published values changed since the last record (the next `d`).
    delta: BTreeMap<String, Tid>,
    /// The encoded DUMP answer for the current point; dropped whenever a
    /// published value changes (a 2,000-storage answer is 100 KB).
    dump_cache: Option<Vec<u8>>,
    status_active: bool,
    /// After a failed interval fsync, when to try again (no busy loop).
    sync_retry_at: Duration,
    notices: notices::NoticeLimiter,
    sink: logfile::LogSink,
    triggers: Triggers,
    next_bootstrap_retry: Option<Duration>,
    started: Instant,
    local: SocketAddr,
    metrics: Option<metrics::MetricsServer>,
    /// Status-file writes and fsyncs that failed (a metric).
    status_write_errors: u64,
    last_record_unix: Option<f64>,
    /// Ids resolved by the operator and not yet named in a record.
    pending_resolved: Vec<String>,
}

impl Daemon {
    fn new(
        cfg: Config,
        writer: StatusWriter,
        sink: logfile::LogSink,
        listener: StdListener,
        local: SocketAddr,
        point: &statuslog::Point,
    ) -> io::Result<Daemon> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut signals = signals::Signals::install()?;
        poll.registry()
            .register(signals.source(), SIGNALS, Interest::READABLE)?;
        let sc = &cfg.server;
        let mut engine = Engine::new(EngineConfig {
            storages: cfg.storages.iter().map(|s| s.id.clone()).collect(),
            stale_after: sc.stale_after,
            max_future: sc.max_future,
        });
        engine.load_point(point);
        let schedule = Schedule::new(sc.burst_period, sc.full_dump_period);
        let limits = Limits {
            max_field: sc.max_field,
            max_list: sc.max_list,
            max_command: sc.max_command,
        };
        let triggers = Triggers::new(cfg.bootstrap.clone(), &cfg.storages, local.to_string());
        Ok(Daemon {
            poll,
            listener: Some(listener),
            signals,
            conns: Vec::new(),
            free: Vec::new(),
            live: 0,
            again: Vec::new(),
            accept_again: false,
            scratch: vec![0; READ_CHUNK],
            engine,
            limits,
            writer,
            schedule,
            delta: BTreeMap::new(),
            dump_cache: None,
            status_active: false,
            sync_retry_at: Duration::ZERO,
            notices: notices::NoticeLimiter::new(),
            sink,
            triggers,
            next_bootstrap_retry: None,
            started: Instant::now(),
            local,
            metrics: None,
            status_write_errors: 0,
            last_record_unix: None,
            pending_resolved: Vec::new(),
            cfg,
        })
    }

    fn now(&self) -> Now {
        Now {
            mono: self.started.elapsed(),
            unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        }
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.timeout();
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            let mut stop = false;
            let again = std::mem::take(&mut self.again);
            for t in again {
                self.conn_ready(t, true, false);
            }
            if self.accept_again {
                self.accept();
            }
            if self.metrics.as_ref().is_some_and(|m| m.accept_again) {
                self.metrics_accept();
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    METRICS => self.metrics_accept(),
                    t if metrics::MetricsServer::owns(t) => self.metrics_ready(t),
                    SIGNALS => {
                        let p = self.signals.drain();
                        if p.reopen {
                            self.reopen();
                        }
                        if p.dump_state {
                            let now = self.now();
                            log::info!("engine state (SIGUSR1):\n{}", self.engine.state_dump(now));
                        }
                        stop |= p.stop;
                    }
                    t => self.conn_ready(
                        t,
                        ev.is_readable() || ev.is_read_closed(),
                        ev.is_writable(),
                    ),
                }
            }
            self.after_events();
            if stop {
                self.shutdown();
                return Ok(());
            }
        }
    }

    /// The poll timeout: the earliest deadline of every timer.
    fn timeout(&self) -> Option<Duration> {
        if !self.again.is_empty()
            || self.accept_again
            || self.metrics.as_ref().is_some_and(|m| m.accept_again)
        {
            return Some(Duration::ZERO);
        }
        let now = self.started.elapsed();
        let mut deadlines = Vec::new();
        if self.status_active {
            deadlines.extend(self.schedule.next_deadline());
        }
        deadlines.extend(self.engine.next_deadline());
        // fsync = interval: records written since the last fsync.
        deadlines.extend(self.writer.sync_deadline().map(|t| {
            t.saturating_duration_since(self.started)
                .max(self.sync_retry_at)
        }));
        deadlines.extend(self.next_bootstrap_retry);
        deadlines.extend(self.metrics.as_ref().and_then(|m| m.next_deadline()));
        let mut t = deadlines.into_iter().min().map(|d| d.saturating_sub(now));
        if self.triggers.busy() {
            let reap = Duration::from_millis(200);
            t = Some(t.map_or(reap, |t| t.min(reap)));
        }
        t
    }

    fn accept(&mut self) {
        self.accept_again = false;
        for _ in 0..ACCEPT_BUDGET {
            let Some(l) = &self.listener else { return };
            let (mut sock, peer) = match l.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: log and let the next event retry.
                    log::error!("accept on {} failed: {e}", self.local);
                    return;
                }
            };
            let allow = &self.cfg.server.allow;
            if !allow.is_empty() && !allow.iter().any(|c| c.contains(peer.ip())) {
                log::warn!("refused connection from {peer}: not in the allow list");
                continue;
            }
            if self.live >= self.cfg.server.max_connections {
                log::warn!(
                    "refused connection from {peer}: {} connections already open (max_connections)",
                    self.live
                );
                continue;
            }
            // Answers must not wait for Nagle: a DUMP is one small write.
            if let Err(e) = sock.set_nodelay(true) {
                log::debug!("{peer}: cannot set TCP_NODELAY: {e}");
            }
            let slot = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let token = Token(FIRST_CONN + slot);
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut sock, token, Interest::READABLE)
            {
                log::error!("{peer}: cannot register the connection: {e}");
                self.free.push(slot);
                continue;
            }
            self.conns[slot] = Some(Conn::new(sock, peer, protocol::Decoder::new(self.limits)));
            self.live += 1;
            log::debug!("{peer}: connected");
        }
        // Budget spent with connections possibly still queued: the listener
        // is edge-triggered, so come back without waiting for a new one.
        self.accept_again = true;
    }

    fn conn_ready(&mut self, token: Token, readable: bool, writable: bool) {
        let Some(slot) = token.0.checked_sub(FIRST_CONN) else {
            return;
        };
        // Unknown or already closed tokens are ignored.
        let Some(mut c) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let mut keep = true;
        if readable && !c.closing {
            match c.read_some(&mut self.scratch, READ_BUDGET) {
                ReadOutcome::More => self.again.push(token),
                ReadOutcome::Drained => {}
                ReadOutcome::Eof => c.peer_closed = true,
                ReadOutcome::Error(e) => {
                    log::debug!("{}: read failed: {e}; closing", c.peer);
                    keep = false;
                }
            }
            if keep {
                keep = self.process(&mut c);
            }
        }
        if keep && (writable || c.has_output()) {
            if let Err(e) = c.flush() {
                log::debug!("{}: write failed: {e}; closing", c.peer);
                keep = false;
            }
        }
        if keep && c.has_output() && c.pending_output() > self.cfg.server.max_output {
            log::warn!(
                "{}: more than {} bytes of answers unread; dropping the client (it sends DUMPs and never reads)",
                c.peer,
                self.cfg.server.max_output
            );
            keep = false;
        }
        if keep && (c.closing || c.peer_closed) && !c.has_output() {
            keep = false;
        }
        if keep {
            if let Err(e) = c.update_interest(self.poll.registry(), token) {
                log::error!("{}: cannot re-register: {e}", c.peer);
                keep = false;
            }
        }
        if keep {
            self.conns[slot] = Some(c);
        } else {
            let _ = self.poll.registry().deregister(&mut c.sock);
            log::debug!("{}: disconnected", c.peer);
            self.free.push(slot);
            self.live -= 1;
        }
    }

    /// Applies every complete command buffered on `c`; false = close it.
    fn process(&mut self, c: &mut Conn) -> bool {
        // One clock reading per batch: the commands of one read are
        // microseconds apart, and two clock calls per command showed in
        // profiles.
        let now = self.now();
        loop {
            let cmd = match c.decoder.next_command() {
                Ok(Some(cmd)) => cmd,
                Ok(None) => return true,
                Err(e) => {
                    log::warn!("{}: malformed frame: {e}; closing this connection", c.peer);
                    return false;
                }
            };
            match cmd {
                Command::Begin { txn, storages } => {
                    self.engine.begin_from(now, &txn, &storages, Some(c.peer))
                }
                Command::Commit { txn, tids } => {
                    self.engine.commit(now, &txn, &tids);
                    self.collect_changes(now);
                }
                Command::Abort { txn } => {
                    self.engine.abort(now, &txn);
                    self.collect_changes(now);
                }
                Command::Dump => {
                    if self.dump_cache.is_none() {
                        let mut answer = Vec::new();
                        let p = self.engine.published();
                        if let Err(e) = protocol::encode_dump(
                            &mut answer,
                            p.iter().map(|(s, t)| (s.as_str(), *t)),
                        ) {
                            // Only a storage id loaded from a hand-edited
                            // status file can hold a newline; the wire
                            // cannot carry it.
                            log::error!("{}: cannot answer DUMP: {e}; fix the status file", c.peer);
                            return false;
                        }
                        self.dump_cache = Some(answer);
                    }
                    // Set just above when it was empty.
                    c.out
                        .extend_from_slice(self.dump_cache.as_deref().unwrap_or_default());
                }
                Command::Bootstraped => {
                    protocol::encode_bootstraped(&mut c.out, self.engine.is_bootstrapped())
                }
                Command::Info => {
                    let info = self.info(now);
                    if let Err(e) = protocol::encode_info(&mut c.out, &info) {
                        log::error!("{}: cannot answer INFO: {e}", c.peer);
                        return false;
                    }
                }
                Command::InFlight => {
                    let answer = answers::InFlightAnswer {
                        transactions: self
                            .engine
                            .in_flight(now)
                            .into_iter()
                            .map(wire_transaction)
                            .collect(),
                    };
                    if !self.answer_json(c, &answer) {
                        return false;
                    }
                }
                Command::Resolve { txn } => {
                    let answer = self.resolve(now, txn, c.peer);
                    if !self.answer_json(c, &answer) {
                        return false;
                    }
                }
                Command::Quit => {
                    c.closing = true;
                    return true;
                }
                Command::Unknown(w) => log::debug!("{}: unknown command {w:?} ignored", c.peer),
            }
        }
    }

    /// Queues one JSON answer (INFLIGHT, RESOLVE); false = close `c`.
    fn answer_json(&self, c: &mut Conn, v: &impl serde::Serialize) -> bool {
        // Serializing plain data to a String cannot fail.
        let json = serde_json::to_string(v).unwrap_or_default();
        match protocol::encode_info(&mut c.out, &json) {
            Ok(()) => true,
            Err(e) => {
                log::error!("{}: cannot answer: {e}", c.peer);
                false
            }
        }
    }

    /// RESOLVE: the engine stops waiting for `txn` and recomputes; the
    /// resolution goes into the status file at once (an `f` record naming
    /// it), so a restart starts from the point it allowed.
    fn resolve(&mut self, now: Now, txn: String, peer: SocketAddr) -> answers::ResolveAnswer {
        let r = self.engine.resolve(now, &txn);
        self.collect_changes(now);
        let mut recorded = None;
        if r.resolved.is_empty() {
            log::info!(
                "{peer}: resolve {txn:?} refused: {}",
                r.refused.as_deref().unwrap_or("")
            );
        } else {
            self.pending_resolved.push(txn.clone());
            recorded = Some(if !self.status_active {
                "with the first record after bootstrap".to_string()
            } else if self.engine.published().is_empty() {
                "with the first record (nothing is published yet)".to_string()
            } else {
                self.write_record(RecordKind::Full, now);
                if self.pending_resolved.is_empty() {
                    "status file".to_string()
                } else {
                    "with the next record (this write failed; see the log)".to_string()
                }
            });
        }
        answers::ResolveAnswer {
            id: txn,
            resolved: r.resolved.into_iter().map(wire_transaction).collect(),
            refused: r.refused,
            recorded,
        }
    }

    fn metrics_accept(&mut self) {
        let now = self.started.elapsed();
        if let Some(m) = self.metrics.as_mut() {
            m.accept(self.poll.registry(), &self.cfg.server.allow, now);
        }
    }

    fn metrics_ready(&mut self, token: Token) {
        let now = self.now();
        let Some(m) = self.metrics.as_mut() else {
            return;
        };
        let engine = &self.engine;
        let daemon = crate::metrics::DaemonCounters {
            connections: self.live,
            status_write_errors: self.status_write_errors,
            last_record_unix: self.last_record_unix,
            uptime_seconds: now.mono.as_secs_f64(),
        };
        m.ready(self.poll.registry(), token, &mut self.scratch, || {
            crate::metrics::render(&crate::metrics::Snapshot {
                engine,
                now,
                daemon,
            })
        });
    }

    /// Engine notices: bootstrap progress acted on, then every notice to the
    /// log within the per-kind budget; at the end of a window (or with
    /// `final_roll`), the count of those left out. The engine's notices are
    /// the one record of bootstrap changes: the loop keeps no copy of its
    /// state, so each change is logged once, by the engine's line.
    fn log_notices(&mut self, now: Now, final_roll: bool) {
        for n in self.engine.drain_notices() {
            match n.kind {
                NoticeKind::BootstrapStarted => {
                    let missing = self.engine.bootstrap_missing();
                    if !missing.is_empty() {
                        self.triggers.fire(&missing);
                        self.next_bootstrap_retry = Some(now.mono + self.triggers.retry());
                    }
                }
                NoticeKind::BootstrapComplete => {
                    self.next_bootstrap_retry = None;
                    self.status_active = true;
                    self.schedule.on_opened(now.mono);
                }
                _ => {}
            }
            self.notices.log(&mut self.engine, n);
        }
        if final_roll || self.notices.window_over(now.mono) {
            self.notices.roll(&mut self.engine, now.mono);
        }
    }

    /// Takes the published values that changed from the engine: into the
    /// next `d` record, and out of the cached DUMP answer.
    fn collect_changes(&mut self, now: Now) {
        let changed = self.engine.take_changed();
        if !changed.is_empty() {
            self.delta.extend(changed);
            self.schedule.on_changed(now.mono);
            self.dump_cache = None;
        }
    }

    fn info(&self, now: Now) -> String {
        let point: serde_json::Map<String, serde_json::Value> = self
            .engine
            .published()
            .iter()
            .map(|(s, t)| (s.clone(), serde_json::Value::from(t.0)))
            .collect();
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "bootstrapped": self.engine.is_bootstrapped(),
            "bootstrap_missing": self.engine.bootstrap_missing(),
            "uptime_seconds": now.mono.as_secs_f64(),
            "connections": self.live,
            "in_flight": self.engine.in_flight_count(),
            "oldest_in_flight_age_seconds": self.engine.oldest_in_flight_age(now).map(|d| d.as_secs_f64()),
            "published": point,
            "counters": self.engine.counters(),
            "orphans": self.engine.orphans(now),
            "stale": self.engine.stale(now),
        })
        .to_string()
    }

    /// Engine notices to the log, bootstrap progress, status-file records.
    fn after_events(&mut self) {
        let now = self.now();
        if self.engine.next_deadline().is_some_and(|d| d <= now.mono) {
            self.engine.tick(now);
        }
        self.log_notices(now, false);
        self.collect_changes(now);
        self.bootstrap_retry(now);
        if let Some(m) = self.metrics.as_mut() {
            m.expire(self.poll.registry(), now.mono);
        }
        self.triggers.reap();
        if self.status_active {
            if let Some(kind) = self.schedule.due(now.mono) {
                self.write_record(kind, now);
            }
        }
        if now.mono >= self.sync_retry_at
            && self
                .writer
                .sync_deadline()
                .is_some_and(|t| t <= Instant::now())
        {
            if let Err(e) = self.writer.sync() {
                self.status_write_errors += 1;
                log::error!("{e}; retrying in a second");
                self.sync_retry_at = now.mono + Duration::from_secs(1);
            }
        }
    }

    /// Re-fires the triggers of storages still missing every
    /// `bootstrap.retry` (the first firing follows the engine's
    /// bootstrap-started notice, in `log_notices`).
    fn bootstrap_retry(&mut self, now: Now) {
        if self.engine.bootstrap_state() == BootstrapState::InProgress
            && self.next_bootstrap_retry.is_some_and(|d| d <= now.mono)
        {
            let missing = self.engine.bootstrap_missing();
            log::warn!(
                "bootstrap still incomplete: no commit seen yet on {}; firing triggers again",
                missing.join(", ")
            );
            self.triggers.fire(&missing);
            self.next_bootstrap_retry = Some(now.mono + self.triggers.retry());
        }
    }

    fn write_record(&mut self, kind: RecordKind, now: Now) {
        let entries: Vec<(String, Tid)> = match kind {
            RecordKind::Full => self
                .engine
                .published()
                .iter()
                .map(|(s, t)| (s.clone(), *t))
                .collect(),
            RecordKind::Delta => self.delta.iter().map(|(s, t)| (s.clone(), *t)).collect(),
        };
        if entries.is_empty() {
            // `{}` would stop the original's readers (they assert every
            // record names a storage): the first `f` waits for a value.
            self.schedule.point_empty();
            return;
        }
        match self
            .writer
            .write_noted(kind, &entries, now.unix, &self.pending_resolved)
        {
            Ok(_) => {
                self.schedule.written(kind, now.mono);
                self.delta.clear();
                self.pending_resolved.clear();
                self.last_record_unix = Some(now.unix);
            }
            Err(e) => {
                log::error!(
                    "cannot write to the status file {}: {e}; still serving, retrying at the next period",
                    self.cfg.server.status_file.display()
                );
                self.status_write_errors += 1;
                self.schedule.failed(now.mono);
            }
        }
    }

    fn reopen(&mut self) {
        if let Err(e) = self.sink.reopen() {
            log::error!("SIGHUP: cannot reopen the server log: {e}; still writing to the old file");
        }
        match self.writer.reopen() {
            Ok(()) => log::info!("SIGHUP: server log and status file reopened"),
            Err(e) => log::error!(
                "SIGHUP: cannot reopen the status file {}: {e}; still writing to the old file",
                self.cfg.server.status_file.display()
            ),
        }
        if self.status_active {
            let now = self.now();
            self.schedule.on_opened(now.mono);
            self.write_record(RecordKind::Full, now);
        }
    }

    fn shutdown(&mut self) {
        let now = self.now();
        self.log_notices(now, true);
        log::info!("stopping: no new connections");
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        if self.status_active {
            let now = self.now();
            self.write_record(RecordKind::Full, now);
            if let Err(e) = self.writer.sync() {
                log::error!("cannot fsync the status file: {e}");
            }
        }
        self.triggers.stop();
        log::info!(
            "stopped; {} connection(s) closed, {} transaction(s) were in flight",
            self.live,
            self.engine.in_flight_count()
        );
    }
}

/// An engine in-flight entry as the INFLIGHT and RESOLVE answers carry it.
fn wire_transaction(t: InFlightInfo) -> answers::InFlightTransaction {
    answers::InFlightTransaction {
        state: if t.orphan {
            answers::TxnState::Orphan
        } else {
            answers::TxnState::InFlight
        },
        blocking: !t.holds_back.is_empty(),
        id: t.id,
        age_seconds: t.age_seconds,
        storages: t.storages,
        holds_back: t.holds_back,
        blocking_seconds: t.blocking_seconds,
        stale: t.stale,
        client: t.client.map(|c| c.to_string()),
        blocked_because: t.blocked_because,
    }
}
