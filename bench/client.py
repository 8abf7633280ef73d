"""The Python client's cost per commit, side by side with no client.

Two local FileStorages in one multi-database (or, with --zeo, two ZEO
servers started here); every commit writes one object in each (a
two-database two-phase commit, as an application spreading its objects over
two databases does).

    python bench/client.py ADDRESS [--commits 4000] [--runs 4] [--zeo]
                                   [--baseline-src DIR] [--profile]

Three measurements, each printed with its runs:

1. Separate runs, alternating: no client, the client installed and
   connected to the daemon at ADDRESS, and with --baseline-src DIR (a client
   package's ``src`` directory, e.g. an older checkout's) that client; order
   rotated, every run a fresh process on fresh files. Per run, in µs per
   commit over the commit loop: the wall clock, the CPU time of the process
   (every thread), of the committing thread, and of the client's background
   thread. Summary: medians and what the client adds.
2. Paired, in one process per client: blocks of commits alternate between
   the hooks removed and installed (``--paired-commits`` in all, blocks of
   ``BENCH_BLOCK``, default 100); medians of the per-pair differences. On a
   shared machine the load drifts between separate runs by more than the
   client costs; adjacent blocks see the same load.
3. The client's own code, timed from inside (three instrumented runs):
   CPU time of the committing thread in both hooks (``_commitResources``
   and the adapter's ``tpc_finish``), each minus what it wraps. The timing
   itself (three clock-reading layers per commit) is included; its hot cost
   is printed.

With --profile, one extra client run under cProfile prints where the
client's time goes (its own functions only). Environment:
BENCH_COMMIT_DELAY=SECONDS sets the client's ``commit_delay``;
BENCH_REMOTE=1 makes this checkout's client treat the FileStorages as
remote, as ZEO storages are (the sender thread is woken for every BEGIN);
BENCH_DEBUG=1 prints the client's counters and, in instrumented runs, the
split between ``begin`` and ``succeeded``.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_SRC = os.path.join(HERE, "..", "clients", "python", "src")
if "--client-src" in sys.argv:
    CLIENT_SRC = sys.argv[sys.argv.index("--client-src") + 1]
sys.path.insert(0, CLIENT_SRC)

import subprocess  # noqa: E402

import transaction  # noqa: E402
import ZODB  # noqa: E402
from ZODB.FileStorage import FileStorage  # noqa: E402

import tidstorage_client  # noqa: E402


# With --zeo: the ports of the two ZEO servers the parent started.
ZEO_PORTS = []


def open_multi(workdir):
    dbs = {}
    for i, name in enumerate(("main", "other")):
        if ZEO_PORTS:
            from ZEO.ClientStorage import ClientStorage

            storage = ClientStorage([("127.0.0.1", ZEO_PORTS[i])], storage="1",
                                    wait_timeout=30)
        else:
            storage = FileStorage(os.path.join(workdir, name + ".fs"), create=True)
        ZODB.DB(storage, databases=dbs, database_name=name)
    tm = transaction.TransactionManager()
    c1 = dbs["main"].open(transaction_manager=tm)
    c2 = c1.get_connection("other")
    return dbs, tm, c1.root(), c2.root()


def instrument(client):
    """Times the client's own code in every commit (CPU time of the
    committing thread): both hooks, ``_commitResources`` and the adapter's
    ``tpc_finish``, each minus what it wraps (the two-phase commit, the
    storage's own tpc_finish); within them, ``client.begin`` (ids, tag,
    record, queueing the BEGIN) and ``client.succeeded`` (queueing the
    COMMIT) separately. Returns a function giving the seconds spent so far."""
    from transaction._transaction import Transaction
    from ZODB import mvccadapter
    from tidstorage_client import hook

    # CPU time of this thread (its system calls included): on a busy machine
    # the wall clock inside a send(2) mostly measures other processes.
    pc = time.thread_time
    # hooks (outer), wrapped code (inner), begin, succeeded, begin_due
    spent = [0.0, 0.0, 0.0, 0.0, 0.0]
    samples = {2: [], 3: [], 4: []}

    def timed(f, *slots):
        def w(*a, **k):
            t = pc()
            try:
                return f(*a, **k)
            finally:
                d = pc() - t
                for i in slots:
                    spent[i] += d
                    if i in samples:
                        samples[i].append(d)
        return w

    if os.environ.get("BENCH_DEBUG"):
        # Two more timing layers inside the hooks' (their clock reads count
        # as client code): only when the split is asked for.
        client.begin = timed(client.begin, 2)
        client.succeeded = timed(client.succeeded, 3)
        if hasattr(client.sender, "begin_due"):
            client.sender.begin_due = timed(client.sender.begin_due, 4)
    for cls, name, make in ((Transaction, "_commitResources", hook._commit_resources),
                            (mvccadapter.MVCCAdapterInstance, "tpc_finish",
                             hook._adapter_tpc_finish)):
        original = cls.__dict__[name].__wrapped__
        outer = timed(make(timed(original, 1)), 0)
        outer.__wrapped__ = original
        outer.__tidstorage_hook__ = True
        setattr(cls, name, outer)
    if os.environ.get("BENCH_DEBUG"):
        import atexit

        def report():
            sys.stderr.write("hooks %.3f s, wrapped %.3f s, begin %.3f s, succeeded %.3f s, "
                             "begin_due %.3f s (warm-up included)\n" % tuple(spent))
            for i, what in ((2, "begin"), (3, "succeeded"), (4, "begin_due")):
                xs = sorted(samples[i])
                if xs:
                    sys.stderr.write("%s: p10 %.1f p50 %.1f p90 %.1f p99 %.1f us\n" % (
                        what, *(xs[int(len(xs) * q)] * 1e6 for q in (0.1, 0.5, 0.9, 0.99))))
        atexit.register(report)
    return lambda: spent[0] - spent[1]


def layer_cost(n=20000):
    """CPU seconds of one timing layer of ``instrument`` around a call that
    does nothing (two clock reads and a frame), measured hot: a lower bound
    of what each of the three inner layers per commit adds to the figure."""
    pc = time.thread_time
    acc = [0.0]

    def noop():
        pass

    def layer():
        t = pc()
        try:
            return noop()
        finally:
            acc[0] += pc() - t

    t0 = pc()
    for _ in range(n):
        layer()
    t1 = pc()
    for _ in range(n):
        noop()
    return ((t1 - t0) - (pc() - t1)) / n


def install_client(address):
    kw = {}
    import inspect

    if os.environ.get("BENCH_COMMIT_DELAY") and \
            "commit_delay" in inspect.signature(tidstorage_client.install).parameters:
        kw["commit_delay"] = float(os.environ["BENCH_COMMIT_DELAY"])
    if os.environ.get("BENCH_REMOTE") and hasattr(tidstorage_client, "_kind"):
        tidstorage_client._kind = lambda storage, sid: tidstorage_client._REMOTE
    client = tidstorage_client.install(address, wait=5.0, **kw)
    if not client.sender.wait_connected(5.0):
        raise SystemExit("cannot connect to the daemon at %s" % address)
    return client


def check_sent(client, commits, sender_cpu=None):
    if not client.sender.flush(5.0):
        raise SystemExit("the client could not write its queue to the daemon")
    stats = client.sender.stats()
    if os.environ.get("BENCH_DEBUG"):
        sys.stderr.write("stats %r; sender thread %s us/commit\n" % (
            stats, "%.1f" % (sender_cpu / commits * 1e6) if sender_cpu is not None else "?"))
    if stats["dropped_begins"] or stats["dropped_queue_full"]:
        raise SystemExit("the client dropped notifications: %r" % stats)


def run_once(commits, client_address, profile=None, where=None, inside=False):
    workdir = tempfile.mkdtemp(prefix="tidstorage-bench-client-", dir=where)
    client = None
    try:
        if client_address:
            client = install_client(client_address)
        spent = instrument(client) if inside else None
        dbs, tm, r1, r2 = open_multi(workdir)
        # Warm up (first commits create the roots' state, fill caches).
        for i in range(50):
            r1["v"] = r2["v"] = -i
            tm.commit()
        if profile is not None:
            profile.enable()
        sender_clock = sender_cpu = None
        if client is not None and hasattr(time, "pthread_getcpuclockid"):
            thread = getattr(client.sender, "_thread", None)
            if thread is not None and thread.ident and thread.is_alive():
                sender_clock = time.pthread_getcpuclockid(thread.ident)
                sender_cpu = time.clock_gettime(sender_clock)
        t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
        s0 = spent() if spent else 0.0
        for i in range(commits):
            r1["v"] = i
            r2["v"] = i
            tm.commit()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        main_cpu = time.thread_time() - m0
        if sender_clock is not None:
            sender_cpu = time.clock_gettime(sender_clock) - sender_cpu
        if spent:
            elapsed = spent() - s0
        if profile is not None:
            profile.disable()
        if client is not None:
            check_sent(client, commits, sender_cpu)
        tm.abort()
        for db in dbs.values():
            db.close()
        per = 1e6 / commits
        return (elapsed * per, cpu * per, main_cpu * per,
                sender_cpu * per if sender_cpu is not None else 0.0)
    finally:
        if client is not None:
            tidstorage_client.uninstall(timeout=2.0)
        shutil.rmtree(workdir, ignore_errors=True)


def run_paired(commits, address, where, block):
    """One process, one client, the same files: blocks of ``block`` commits
    alternate between the hooks removed (no client) and installed, order
    rotated. Returns, per block pair, the client's added wall clock,
    process CPU and committing-thread CPU per commit (µs)."""
    from tidstorage_client import hook

    workdir = tempfile.mkdtemp(prefix="tidstorage-bench-client-", dir=where)
    client = install_client(address)
    try:
        dbs, tm, r1, r2 = open_multi(workdir)
        n = [0]

        def run_block(with_client):
            if with_client:
                hook.patch(client)
            else:
                hook.unpatch()
            t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
            for _ in range(block):
                n[0] += 1
                r1["v"] = n[0]
                r2["v"] = n[0]
                tm.commit()
            per = 1e6 / block
            return ((time.perf_counter() - t0) * per, (time.process_time() - c0) * per,
                    (time.thread_time() - m0) * per)

        run_block(True)  # warm up both
        run_block(False)
        added = []
        for i in range(max(1, commits // (2 * block))):
            first = bool(i % 2)
            a = run_block(first)
            b = run_block(not first)
            with_, without = (a, b) if first else (b, a)
            added.append([w - o for w, o in zip(with_, without)])
        hook.patch(client)
        check_sent(client, commits)
        tm.abort()
        for db in dbs.values():
            db.close()
        return added
    finally:
        tidstorage_client.uninstall(timeout=2.0)
        shutil.rmtree(workdir, ignore_errors=True)


def start_zeo(where):
    """Two ``runzeo`` servers on free ports, each serving a fresh FileStorage
    in ``where``; returns their ports and a function stopping them."""
    import socket

    workdir = tempfile.mkdtemp(prefix="tidstorage-bench-zeo-", dir=where)
    procs, ports = [], []
    for name in ("main", "other"):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "ZEO.runzeo", "-a", "127.0.0.1:%d" % port, "-f",
             os.path.join(workdir, name + ".fs")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ports.append(port)
    deadline = time.monotonic() + 60
    for port in ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the ZEO servers did not start")
                time.sleep(0.1)

    def stop():
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)
    return ports, stop


def child(mode, address, commits, client_src, where, rows=False):
    cmd = [sys.executable, os.path.abspath(__file__), address, "--child", mode,
           "--commits", str(commits), "--dir", where]
    if ZEO_PORTS:
        cmd += ["--zeo-ports", ",".join(map(str, ZEO_PORTS))]
    if client_src:
        cmd += ["--client-src", client_src]
    # BENCH_DEBUG's counters and splits go to the child's stderr: shown.
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, timeout=1800,
                         stderr=None if os.environ.get("BENCH_DEBUG") else subprocess.PIPE).stdout
    if rows:
        return [[float(x) for x in line.split()] for line in out.splitlines() if line.strip()]
    return [float(x) for x in out.split()]


def quartiles(xs):
    xs = sorted(xs)
    return xs[len(xs) // 4], statistics.median(xs), xs[(3 * len(xs)) // 4]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("address")
    p.add_argument("--commits", type=int, default=4000)
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--paired-commits", type=int, default=16000,
                   help="commits of the paired measurement, per client (0: skip it)")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--baseline-src")
    p.add_argument("--child", choices=["none", "client", "inside", "paired"])
    p.add_argument("--client-src")
    p.add_argument("--zeo", action="store_true",
                   help="commit through two ZEO servers (started here, their files in --dir) "
                        "instead of two local FileStorages")
    p.add_argument("--zeo-ports", help=argparse.SUPPRESS)
    p.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                   help="where the FileStorages live (default: /dev/shm, a tmpfs, so that "
                        "fsync's variance does not drown the client's cost)")
    a = p.parse_args()
    if a.zeo_ports:
        ZEO_PORTS[:] = [int(x) for x in a.zeo_ports.split(",")]
    if a.zeo and not a.child:
        ports, stop = start_zeo(a.dir)
        ZEO_PORTS[:] = ports
        try:
            return report(a)
        finally:
            stop()
    return report(a)


def report(a):
    if a.child == "paired":
        for row in run_paired(a.commits, a.address, a.dir,
                              int(os.environ.get("BENCH_BLOCK", 100))):
            print("%.3f %.3f %.3f" % tuple(row))
        return
    if a.child:
        print("%.3f %.3f %.3f %.3f" % run_once(
            a.commits, a.address if a.child != "none" else None, where=a.dir,
            inside=a.child == "inside"))
        return
    modes = [("none", "none", None), ("client", "client", None)]
    if a.baseline_src:
        modes.append(("baseline", "client", os.path.abspath(a.baseline_src)))
    measures = ("wall", "process cpu", "committing thread cpu", "sender thread cpu")
    res = {m: {name: [] for name, _, _ in modes} for m in measures}
    print("files in %s%s" % (a.dir or tempfile.gettempdir(),
                            ", served by two ZEO servers (ports %s)" % ",".join(map(str, ZEO_PORTS))
                            if ZEO_PORTS else ""), flush=True)
    for r in range(a.runs):
        # Rotate the order, so that no mode always runs first.
        for name, mode, src in modes[r % len(modes):] + modes[:r % len(modes)]:
            got = child(mode, a.address, a.commits, src, a.dir)
            for m, x in zip(measures, got):
                res[m][name].append(x)
            print("run %d %-8s wall %7.1f  process cpu %7.1f  committing thread cpu %7.1f  "
                  "sender thread cpu %5.1f  (us/commit)" % (r + 1, name, *got), flush=True)
    for m in measures[:3]:
        none = statistics.median(res[m]["none"])
        print("%s: none %s (median %.1f)" % (m, " ".join("%.1f" % x for x in res[m]["none"]),
                                             none))
        for name, _, _ in modes[1:]:
            xs = res[m][name]
            med = statistics.median(xs)
            pairs = [c - n for n, c in zip(res[m]["none"], xs)]
            print("%s: %s %s (median %.1f); added: %.1f us/commit (difference of medians; "
                  "per run pair: %s)"
                  % (m, name, " ".join("%.1f" % x for x in xs), med, med - none,
                     " ".join("%.1f" % x for x in pairs)))
    for name, _, _ in modes[1:]:
        xs = res["sender thread cpu"][name]
        if any(xs):
            print("sender thread cpu: %s %s (median %.1f)"
                  % (name, " ".join("%.1f" % x for x in xs), statistics.median(xs)))
    # Paired blocks in one process: the load drift cancels.
    for name, mode, src in modes[1:] if a.paired_commits else ():
        rows = child("paired", a.address, a.paired_commits, src, a.dir, rows=True)
        cols = list(zip(*rows))
        print("paired, %s (%d pairs of blocks in one process): added %s us/commit "
              "(median [first quartile, third])" % (name, len(rows), "; ".join(
                  "%s %.1f [%.1f, %.1f]" % (m, q[1], q[0], q[2])
                  for m, q in zip(measures, map(quartiles, cols)))))
    # The client's own code per commit, timed from inside.
    for name, mode, src in modes[1:]:
        runs = sorted(child("inside", a.address, a.commits, src, a.dir)[0] for _ in range(3))
        print("inside the %s's code: %.1f us/commit of CPU of the committing thread (median "
              "of 3 instrumented runs: %s; both hooks minus what they wrap)"
              % (name, runs[1], " ".join("%.1f" % x for x in runs)))
    if len(modes) > 1:
        print("  (that includes the timing itself: 3 clock-reading layers per commit, "
              "%.1f us hot)" % (3 * layer_cost() * 1e6))
    if a.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        run_once(a.commits, a.address, profile=prof, where=a.dir)
        st = pstats.Stats(prof)
        st.sort_stats("tottime")
        st.print_stats("tidstorage_client", 25)


if __name__ == "__main__":
    main()
