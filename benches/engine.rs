//! Engine throughput under sustained overlapping load, for a growing number
//! of storages: the cost of an event must not grow with it.
//!
//! Run: `cargo bench --bench engine` (release profile). Prints events/s.
//! A plain `main` with `std::time`: one number per configuration is all we
//! need, no statistics crate.

use std::time::{Duration, Instant};

use tidstorage::engine::{Engine, EngineConfig, Now};
use tidstorage::tid::Tid;

enum Ev {
    Begin(String, Vec<String>),
    Commit(String, Vec<(String, Tid)>),
    Abort(String),
}

/// xorshift64*: reproducible and dependency-free.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// `txns` transactions on `storages` storages, 1 to 3 storages each, with
/// `overlap` always in flight; TIDs increase like ZODB's (one clock). One
/// commit in twenty is an abort.
fn workload(storages: usize, txns: usize, overlap: usize, base: Tid) -> Vec<Ev> {
    let names: Vec<String> = (0..storages)
        .map(|i| format!("[[[\"10.0.{}.{}\", 8100]], \"{}\"]", i / 256, i % 256, i))
        .collect();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut open: Vec<(String, Vec<String>)> = Vec::new();
    let mut evs = Vec::with_capacity(txns * 2);
    let mut tid = base.0;
    for n in 0..txns {
        let k = 1 + rng.below(3) as usize;
        let mut st: Vec<String> = (0..k)
            .map(|_| names[rng.below(storages as u64) as usize].clone())
            .collect();
        st.sort();
        st.dedup();
        let id = format!("10.0.0.7:8080_{:x}", n);
        evs.push(Ev::Begin(id.clone(), st.clone()));
        open.push((id, st));
        if open.len() > overlap {
            let (id, st) = open.remove(rng.below(4) as usize);
            if rng.below(20) == 0 {
                evs.push(Ev::Abort(id));
            } else {
                tid += 1 + rng.below(1000);
                evs.push(Ev::Commit(
                    id,
                    st.into_iter().map(|s| (s, Tid(tid))).collect(),
                ));
            }
        }
    }
    evs
}

/// CPU time of this thread: the machine is shared, and wall time would
/// count the time other processes held the core.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let unix = 1_700_000_000.0;
    let base = Tid::from_unix_seconds(unix - 86_400.0);
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // too, in debug: a small smoke run is enough there.
    let measuring = std::env::args().any(|a| a == "--bench");
    let txns = if measuring { 400_000 } else { 2_000 };
    println!("engine throughput, {txns} transactions, 16 in flight, 1-3 storages each");
    // BENCH_STORAGES=2000 runs one configuration (for `perf stat`).
    let configs: Vec<usize> = match std::env::var("BENCH_STORAGES") {
        Ok(v) => vec![v.parse().expect("BENCH_STORAGES must be an integer")],
        Err(_) => vec![20, 200, 2_000, 20_000],
    };
    for storages in configs {
        let evs = workload(storages, txns, 16, base);
        let mut e = Engine::new(EngineConfig::default());
        let now = Now {
            mono: Duration::from_secs(1),
            unix,
        };
        // Bootstrap (no configured storage) so every end recomputes.
        e.begin(now, "setup", &[]);
        e.abort(now, "setup");
        let start = Instant::now();
        let cpu0 = thread_cpu();
        for ev in &evs {
            match ev {
                Ev::Begin(id, st) => e.begin(now, id, st),
                Ev::Commit(id, t) => e.commit(now, id, t),
                Ev::Abort(id) => e.abort(now, id),
            }
            // The daemon drains after each batch; draining here costs the
            // same and keeps the queue empty.
            e.drain_notices();
        }
        let el = start.elapsed();
        let cpu = thread_cpu() - cpu0;
        let published = e.published().len();
        assert!(
            published > 0,
            "the point never advanced: the engine is broken"
        );
        let changed = e.take_changed().len();
        println!(
            "{:>6} storages: {:>9.0} events/s of CPU time ({:>9.0} by wall clock; {} events in {:.3} s CPU; {} published, {} remembered at end, {} changed)",
            storages,
            evs.len() as f64 / cpu.as_secs_f64(),
            evs.len() as f64 / el.as_secs_f64(),
            evs.len(),
            cpu.as_secs_f64(),
            published,
            e.remembered_count(),
            changed
        );
    }
}
