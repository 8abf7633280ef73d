//! Load generator for a TIDStorage daemon (ours or the original Python one:
//! same protocol).
//!
//! Each connection behaves like the threads of a Zope process: it notifies
//! BEGIN with 1-3 storages out of `--storages K`, then COMMIT with TIDs from
//! one shared counter (so commit order is consistent across storages), and
//! every `--dump-every` transactions sends DUMP and times the round trip
//! until the whole answer is read. At the end every connection sends a last
//! DUMP and waits for it: the daemon answers only after applying everything
//! sent before, so the transactions counted are transactions processed.
//!
//!     cargo run --release --example loadgen -- --server 127.0.0.1:9001 \
//!         --connections 8 --storages 20 --duration 10s
//!
//! Output: one JSON line (machine-readable), then one human line.
//!
//! As Zope does, a transaction's BEGIN is written before its TID exists
//! (Zope flushes BEGIN before the two-phase commit). In Zope the two-phase
//! commit's round trips to the ZEO servers (milliseconds) always let the
//! BEGIN reach the daemon before the storages assign TIDs; here nothing
//! stands in between, so by default (`--sync-begin`) each batch's BEGINs
//! are followed by a BOOTSTRAPED round trip, and TIDs are taken only once
//! the daemon answered (it applied the BEGINs). Without it
//! (`--sync-begin false`) a BEGIN written on one connection and a later
//! TID's COMMIT on another race inside the daemon's read loop, and every
//! lost race is a "decreasing update" (real traffic cannot produce them at
//! that rate).

use clap::Parser;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tidstorage::protocol::{
    encode_begin, encode_commit, encode_word, Expect, Limits, Response, ResponseDecoder,
};
use tidstorage::tid::Tid;

#[derive(Parser, Debug, Clone)]
#[command(about = "Drive a TIDStorage daemon with Zope-like BEGIN/COMMIT traffic")]
struct Args {
    /// Daemon address.
    #[arg(long, default_value = "127.0.0.1:9001")]
    server: String,
    /// Concurrent connections (one thread each).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Number of distinct storage ids; each transaction uses 1-3 of them.
    #[arg(long, default_value_t = 20)]
    storages: usize,
    /// Stop sending after this long (humantime: 10s, 1m; a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Stop after this many transactions in total (whichever comes first).
    #[arg(long)]
    transactions: Option<u64>,
    /// Each connection sends DUMP after this many of its transactions and
    /// waits for the answer (0: only the final one). This bounds how far the
    /// daemon may lag behind (TCP buffers alone hold seconds of traffic); it
    /// also costs a round trip per batch, which real Zope clients never pay,
    /// so keep it large.
    #[arg(long, default_value_t = 1000)]
    dump_every: u64,
    /// Transactions per batch: a batch is one write of their BEGINs, then
    /// (TIDs allocated) one write of their COMMITs, so above 1 that many
    /// transactions are in flight at once on the connection, like Zope
    /// threads sharing it.
    #[arg(long, default_value_t = 1)]
    pipeline: u64,
    /// Wait for the daemon to apply each batch's BEGINs (a BOOTSTRAPED
    /// round trip) before taking its TIDs, as the two-phase commit's
    /// round trips to the storages guarantee in real traffic.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sync_begin: bool,
    /// An extra connection sends only DUMP, waiting this long between an
    /// answer and the next DUMP, as a backup tool would (0: no observer).
    /// Its round trips are the `dump_*` figures; the load connections' own
    /// DUMPs (which wait for their backlog) are the `inband_dump_*` ones.
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    observe_every: Duration,
    /// Give up on a DUMP answer (or a connect) after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Label copied into the JSON line (e.g. the daemon's name).
    #[arg(long, default_value = "")]
    label: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// What one connection measured.
#[derive(Default)]
struct Report {
    commits: u64,
    dump_rtts: Vec<Duration>,
    last_point_len: usize,
}

/// Small xorshift generator: the storage choice must be cheap and
/// reproducible per connection, not cryptographic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Shared {
    args: Args,
    storage_ids: Vec<String>,
    next_tid: AtomicU64,
    /// Transactions not yet claimed, when `--transactions` is given.
    budget: AtomicU64,
    stop: AtomicBool,
    /// Set once every load connection got its final DUMP answer.
    load_done: AtomicBool,
}

impl Shared {
    /// Claims up to `n` transactions; 0 means stop.
    fn claim(&self, n: u64, deadline: Instant) -> u64 {
        if self.stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            return 0;
        }
        if self.args.transactions.is_none() {
            return n;
        }
        let mut left = self.budget.load(Ordering::Relaxed);
        loop {
            let take = left.min(n);
            if take == 0 {
                return 0;
            }
            match self.budget.compare_exchange_weak(
                left,
                left - take,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return take,
                Err(now) => left = now,
            }
        }
    }
}

/// Sends DUMP and reads the whole answer; returns its size.
fn dump(
    stream: &mut TcpStream,
    decoder: &mut ResponseDecoder,
    buf: &mut [u8],
) -> Result<usize, String> {
    let mut out = Vec::new();
    encode_word(&mut out, "DUMP").map_err(|e| e.to_string())?;
    stream
        .write_all(&out)
        .map_err(|e| format!("sending DUMP: {e}"))?;
    decoder.expect(Expect::Dump);
    // Bounded by the socket read timeout: every pass either reads bytes or
    // fails.
    loop {
        match decoder.next_response() {
            Ok(Some(Response::Dump(point))) => return Ok(point.len()),
            Ok(Some(other)) => return Err(format!("expected a DUMP answer, got {other:?}")),
            Ok(None) => {}
            Err(e) => return Err(format!("bad DUMP answer: {e}")),
        }
        let n = stream
            .read(buf)
            .map_err(|e| format!("reading the DUMP answer: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection before answering DUMP".into());
        }
        decoder.feed(&buf[..n]);
    }
}

/// Waits for the answer to a BOOTSTRAPED already sent: everything written
/// before it was applied.
fn barrier(
    stream: &mut TcpStream,
    decoder: &mut ResponseDecoder,
    buf: &mut [u8],
) -> Result<(), String> {
    decoder.expect(Expect::Bootstraped);
    // Bounded by the socket read timeout: every pass either reads bytes or
    // fails.
    loop {
        match decoder.next_response() {
            Ok(Some(Response::Bootstraped(_))) => return Ok(()),
            Ok(Some(other)) => return Err(format!("expected a BOOTSTRAPED answer, got {other:?}")),
            Ok(None) => {}
            Err(e) => return Err(format!("bad BOOTSTRAPED answer: {e}")),
        }
        let n = stream
            .read(buf)
            .map_err(|e| format!("reading the BOOTSTRAPED answer: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection before answering BOOTSTRAPED".into());
        }
        decoder.feed(&buf[..n]);
    }
}

/// Opens a connection with the socket options every client here uses.
fn connect(args: &Args) -> Result<TcpStream, String> {
    let addr = args
        .server
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", args.server))?
        .next()
        .ok_or_else(|| format!("{} resolves to no address", args.server))?;
    let stream = TcpStream::connect_timeout(&addr, args.timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    stream
        .set_read_timeout(Some(args.timeout))
        .map_err(|e| format!("read timeout: {e}"))?;
    stream
        .set_write_timeout(Some(args.timeout))
        .map_err(|e| format!("write timeout: {e}"))?;
    Ok(stream)
}

/// The backup tool's view: DUMP round trips on an otherwise idle connection
/// while the load runs.
fn observer(shared: &Shared, mut stream: TcpStream) -> Result<Vec<Duration>, String> {
    let mut decoder = ResponseDecoder::new(Limits::DEFAULT);
    let mut buf = vec![0u8; 64 * 1024];
    let mut rtts = Vec::new();
    // Bounded: the load connections end by their deadline or budget, and
    // each DUMP is bounded by the read timeout.
    while !shared.load_done.load(Ordering::Relaxed) && !shared.stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        dump(&mut stream, &mut decoder, &mut buf)?;
        rtts.push(t.elapsed());
        std::thread::sleep(shared.args.observe_every);
    }
    Ok(rtts)
}

fn connection(
    id: usize,
    shared: &Shared,
    mut stream: TcpStream,
    deadline: Instant,
) -> Result<Report, String> {
    let args = &shared.args;
    let local = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| format!("conn{id}"));

    let pipeline = args.pipeline.max(1);
    // One id per in-flight slot, reused like a Zope thread reuses its own.
    let txn_ids: Vec<String> = (0..pipeline)
        .map(|slot| format!("{local}_{:x}", 0x7f00_0000 + slot))
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1).wrapping_mul(0xff51_afd7));
    let mut decoder = ResponseDecoder::new(Limits::DEFAULT);
    let mut buf = vec![0u8; 64 * 1024];
    let mut report = Report::default();
    let mut since_dump = 0;
    let mut out = Vec::new();
    let mut picks: Vec<Vec<&str>> = vec![Vec::new(); pipeline as usize];

    loop {
        let n = shared.claim(pipeline, deadline);
        if n == 0 {
            break;
        }
        out.clear();
        for slot in 0..n as usize {
            let chosen = &mut picks[slot];
            chosen.clear();
            let want = (1 + rng.below(3)).min(shared.storage_ids.len());
            while chosen.len() < want {
                let s = shared.storage_ids[rng.below(shared.storage_ids.len())].as_str();
                if !chosen.contains(&s) {
                    chosen.push(s);
                }
            }
            encode_begin(&mut out, &txn_ids[slot], chosen).map_err(|e| e.to_string())?;
        }
        // Like Zope: BEGIN is flushed before the two-phase commit, where
        // the storages assign TIDs; COMMIT is flushed after it.
        if args.sync_begin {
            encode_word(&mut out, "BOOTSTRAPED").map_err(|e| e.to_string())?;
        }
        stream
            .write_all(&out)
            .map_err(|e| format!("sending BEGINs: {e}"))?;
        if args.sync_begin {
            barrier(&mut stream, &mut decoder, &mut buf)?;
        }
        out.clear();
        for slot in 0..n as usize {
            commit(shared, &mut out, &txn_ids[slot], &picks[slot])?;
        }
        stream
            .write_all(&out)
            .map_err(|e| format!("sending transactions: {e}"))?;
        report.commits += n;
        since_dump += n;
        if args.dump_every > 0 && since_dump >= args.dump_every {
            since_dump = 0;
            let t = Instant::now();
            report.last_point_len = dump(&mut stream, &mut decoder, &mut buf)?;
            report.dump_rtts.push(t.elapsed());
        }
    }
    // The barrier that makes the count honest: everything sent before this
    // DUMP was applied when its answer arrives.
    report.last_point_len = dump(&mut stream, &mut decoder, &mut buf)?;
    let mut bye = Vec::new();
    encode_word(&mut bye, "QUIT").map_err(|e| e.to_string())?;
    // The daemon hangs up on QUIT; a failure here changes no figure.
    let _ = stream.write_all(&bye);
    Ok(report)
}

fn commit(shared: &Shared, out: &mut Vec<u8>, txn: &str, storages: &[&str]) -> Result<(), String> {
    // One TID per transaction, shared by its storages: each storage sees
    // TIDs increasing in commit order, and no two transactions commit in
    // opposite orders on two storages.
    let tid = Tid(shared.next_tid.fetch_add(1, Ordering::Relaxed));
    let tids: Vec<(&str, Tid)> = storages.iter().map(|s| (*s, tid)).collect();
    encode_commit(out, txn, &tids).map_err(|e| e.to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1].as_secs_f64() * 1000.0
}

/// Milliseconds rounded to microseconds, for the JSON line.
fn ms3(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.connections == 0 || args.storages == 0 {
        eprintln!("loadgen: --connections and --storages must be at least 1");
        return ExitCode::from(2);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    // Storage ids shaped like the original Zope patch's json.dumps((addr, name)).
    let storage_ids = (0..args.storages)
        .map(|i| {
            format!(
                "[[[\"10.0.{}.{}\", {}]], \"{}\"]",
                i / 250,
                i % 250 + 1,
                8100 + i % 16,
                i
            )
        })
        .collect();
    let shared = Arc::new(Shared {
        budget: AtomicU64::new(args.transactions.unwrap_or(u64::MAX)),
        next_tid: AtomicU64::new(Tid::from_unix_seconds(now).0),
        storage_ids,
        stop: AtomicBool::new(false),
        load_done: AtomicBool::new(false),
        args: args.clone(),
    });
    // Connect one at a time and prove each connection is served (a DUMP
    // round trip) before any load starts: the original daemon listens with a
    // backlog of 5 and resets connections that overflow it. Connect time is
    // not counted.
    let observing = !args.observe_every.is_zero();
    let mut streams = Vec::new();
    for _ in 0..args.connections + usize::from(observing) {
        match connect(&args).and_then(|mut s| {
            let mut buf = vec![0u8; 64 * 1024];
            dump(&mut s, &mut ResponseDecoder::new(Limits::DEFAULT), &mut buf)?;
            Ok(s)
        }) {
            Ok(s) => streams.push(s),
            Err(e) => {
                eprintln!("loadgen: {}: {e}", args.server);
                return ExitCode::from(3);
            }
        }
    }
    let observer_stream = if observing { streams.pop() } else { None };
    let t0 = Instant::now();
    let deadline = t0 + args.duration;
    let mut handles = Vec::new();
    for (id, stream) in streams.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        handles.push(std::thread::spawn(move || {
            let r = connection(id, &shared, stream, deadline);
            if r.is_err() {
                shared.stop.store(true, Ordering::Relaxed);
            }
            r
        }));
    }
    let observer_handle = observer_stream.map(|stream| {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            let r = observer(&shared, stream);
            if r.is_err() {
                shared.stop.store(true, Ordering::Relaxed);
            }
            r
        })
    });
    let mut reports = Vec::new();
    let mut failed = false;
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => reports.push(r),
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("a connection thread panicked".into()),
        }
    }
    // One line per distinct failure: 64 connections timing out alike say
    // one thing.
    let mut distinct = std::collections::BTreeMap::<String, usize>::new();
    for e in errors {
        *distinct.entry(e).or_default() += 1;
    }
    for (e, n) in &distinct {
        if *n > 1 {
            eprintln!("loadgen: {}: {e} (on {n} connections)", args.server);
        } else {
            eprintln!("loadgen: {}: {e}", args.server);
        }
        failed = true;
    }
    let secs = t0.elapsed().as_secs_f64();
    shared.load_done.store(true, Ordering::Relaxed);
    let mut observed = match observer_handle.map(|h| h.join()) {
        None => Vec::new(),
        Some(Ok(Ok(rtts))) => rtts,
        Some(Ok(Err(e))) => {
            eprintln!("loadgen: {} (observer): {e}", args.server);
            failed = true;
            Vec::new()
        }
        Some(Err(_)) => {
            eprintln!("loadgen: the observer thread panicked");
            failed = true;
            Vec::new()
        }
    };
    observed.sort_unstable();
    if failed {
        return ExitCode::from(3);
    }
    let commits: u64 = reports.iter().map(|r| r.commits).sum();
    let mut rtts: Vec<Duration> = reports.iter().flat_map(|r| r.dump_rtts.clone()).collect();
    rtts.sort_unstable();
    let point = reports.iter().map(|r| r.last_point_len).max().unwrap_or(0);
    let tps = commits as f64 / secs;
    let json = serde_json::json!({
        "label": args.label,
        "server": args.server,
        "connections": args.connections,
        "storages": args.storages,
        "pipeline": args.pipeline,
        "sync_begin": args.sync_begin,
        "dump_every": args.dump_every,
        "transactions": commits,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "tx_per_s": tps.round(),
        "dumps": observed.len(),
        "dump_p50_ms": ms3(percentile(&observed, 50.0)),
        "dump_p99_ms": ms3(percentile(&observed, 99.0)),
        "dump_max_ms": ms3(percentile(&observed, 100.0)),
        "inband_dumps": rtts.len(),
        "inband_dump_p50_ms": ms3(percentile(&rtts, 50.0)),
        "inband_dump_p99_ms": ms3(percentile(&rtts, 99.0)),
        "final_point_storages": point,
    });
    println!("{json}");
    let label = if args.label.is_empty() {
        String::new()
    } else {
        format!("{}: ", args.label)
    };
    let inband = if rtts.is_empty() {
        String::new()
    } else {
        format!(
            " (in-band every {} transactions: p50 {:.3} ms, p99 {:.3} ms)",
            args.dump_every,
            percentile(&rtts, 50.0),
            percentile(&rtts, 99.0)
        )
    };
    println!(
        "{label}{} connections, {} storages: {commits} transactions in {secs:.2}s = {tps:.0} tx/s; \
         DUMP p50 {:.3} ms, p99 {:.3} ms over {} dumps{inband}; final point has {point} storages",
        args.connections,
        args.storages,
        percentile(&observed, 50.0),
        percentile(&observed, 99.0),
        observed.len(),
    );
    ExitCode::SUCCESS
}
