"""The Python client's cost per commit, side by side with no client.

Two local FileStorages in one multi-database; every commit writes one
object in each (a two-database two-phase commit, as an application
spreading its objects over two databases does). Runs alternate: no client,
then the client installed and connected to the daemon at ADDRESS, and so
on, so that both see the same machine load. Each run commits COMMITS
transactions on fresh files and reports microseconds per commit: the wall clock of
the commit loop and the CPU time of the whole process (every thread: the
client's background thread included) over it, each / COMMITS. On a shared
machine the CPU time is the steadier measure of what the client adds.

    python bench/client.py ADDRESS [--commits 4000] [--runs 4] [--profile]
                                   [--baseline-src DIR]

Prints one line per run and a summary: the median per-commit cost of each
mode and their difference (what the client adds to every commit). With
--profile, one extra client run under cProfile prints where the client's
time goes (its own functions only). Then three instrumented runs per client
time its own code from inside (BEGIN side with the tag, COMMIT side,
tpc_finish wrapper minus the storage's own tpc_finish). With --baseline-src DIR (a client
package's ``src`` directory, e.g. an older checkout's), a third mode runs
that client in the same alternation. Every run is a fresh process.
BENCH_COMMIT_DELAY=SECONDS in the environment sets the client's
``commit_delay`` (this checkout's client only).
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


def open_multi(workdir):
    dbs = {}
    for name in ("main", "other"):
        ZODB.DB(FileStorage(os.path.join(workdir, name + ".fs"), create=True),
                databases=dbs, database_name=name)
    tm = transaction.TransactionManager()
    c1 = dbs["main"].open(transaction_manager=tm)
    c2 = c1.get_connection("other")
    return dbs, tm, c1.root(), c2.root()


def instrument(client):
    """Times the client's own code in every commit (CPU time of the
    committing thread): its BEGIN side (tag, storage ids, encoding, the
    send), its COMMIT side, and its tpc_finish wrapper minus the storage's
    own tpc_finish. Returns a function giving the seconds spent so far."""
    from ZODB import mvccadapter
    from tidstorage_client import hook

    # CPU time of this thread (its system calls included): on a busy machine
    # the wall clock inside a send(2) mostly measures other processes.
    pc = time.thread_time
    spent = [0.0, 0.0, 0.0, 0.0, 0.0]

    def timed(f, i):
        def w(*a, **k):
            t = pc()
            try:
                return f(*a, **k)
            finally:
                d = pc() - t
                spent[0] += d
                spent[i] += d
        return w

    client.begin = timed(client.begin, 2)
    client.succeeded = timed(client.succeeded, 3)
    cls = mvccadapter.MVCCAdapterInstance
    original = cls.__dict__["tpc_finish"].__wrapped__

    def inner(self, txn, func=lambda tid: None):
        t = pc()
        try:
            return original(self, txn, func)
        finally:
            spent[1] += pc() - t

    ours = hook._adapter_tpc_finish(inner)

    def outer(self, txn, func=lambda tid: None):
        t = pc()
        try:
            return ours(self, txn, func)
        finally:
            d = pc() - t
            spent[0] += d
            spent[4] += d

    outer.__wrapped__ = original
    outer.__tidstorage_hook__ = True
    cls.tpc_finish = outer
    if os.environ.get("BENCH_DEBUG"):
        import atexit
        atexit.register(lambda: sys.stderr.write("parts %r\n" % spent))
    return lambda: spent[0] - spent[1]


def run_once(commits, client_address, profile=None, where=None, inside=False):
    workdir = tempfile.mkdtemp(prefix="tidstorage-bench-client-", dir=where)
    client = None
    try:
        if client_address:
            kw = {}
            import inspect

            if os.environ.get("BENCH_COMMIT_DELAY") and \
                    "commit_delay" in inspect.signature(tidstorage_client.install).parameters:
                kw["commit_delay"] = float(os.environ["BENCH_COMMIT_DELAY"])
            client = tidstorage_client.install(client_address, wait=5.0, **kw)
            if not client.sender.wait_connected(5.0):
                raise SystemExit("cannot connect to the daemon at %s" % client_address)
        spent = instrument(client) if inside else None
        dbs, tm, r1, r2 = open_multi(workdir)
        # Warm up (first commits create the roots' state, fill caches).
        for i in range(50):
            r1["v"] = r2["v"] = -i
            tm.commit()
        if profile is not None:
            profile.enable()
        t0, c0 = time.perf_counter(), time.process_time()
        s0 = spent() if spent else 0.0
        for i in range(commits):
            r1["v"] = i
            r2["v"] = i
            tm.commit()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        if spent:
            elapsed = spent() - s0
        if profile is not None:
            profile.disable()
        if client is not None:
            if not client.sender.flush(5.0):
                raise SystemExit("the client could not write its queue to the daemon")
            stats = client.sender.stats()
            if stats["dropped_begins"] or stats["dropped_queue_full"]:
                raise SystemExit("the client dropped notifications: %r" % stats)
        tm.abort()
        for db in dbs.values():
            db.close()
        return elapsed / commits * 1e6, cpu / commits * 1e6
    finally:
        if client is not None:
            tidstorage_client.uninstall(timeout=2.0)
        shutil.rmtree(workdir, ignore_errors=True)


def child(mode, address, commits, client_src, where):
    cmd = [sys.executable, os.path.abspath(__file__), address, "--child", mode,
           "--commits", str(commits), "--dir", where]
    if client_src:
        cmd += ["--client-src", client_src]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800).stdout
    wall, cpu = out.split()
    return float(wall), float(cpu)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("address")
    p.add_argument("--commits", type=int, default=4000)
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--baseline-src")
    p.add_argument("--child", choices=["none", "client", "inside"])
    p.add_argument("--client-src")
    p.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                   help="where the FileStorages live (default: /dev/shm, a tmpfs, so that "
                        "fsync's variance does not drown the client's cost)")
    a = p.parse_args()
    if a.child:
        w, c = run_once(a.commits, a.address if a.child != "none" else None, where=a.dir,
                        inside=a.child == "inside")
        print("%.3f %.3f" % (w, c))
        return
    modes = [("none", "none", None), ("client", "client", None)]
    if a.baseline_src:
        modes.append(("baseline", "client", os.path.abspath(a.baseline_src)))
    wall = {m: [] for m, _, _ in modes}
    cpu = {m: [] for m, _, _ in modes}
    print("files in %s" % (a.dir or tempfile.gettempdir()), flush=True)
    for r in range(a.runs):
        # Rotate the order, so that no mode always runs first.
        for name, mode, src in modes[r % len(modes):] + modes[:r % len(modes)]:
            w, c = child(mode, a.address, a.commits, src, a.dir)
            wall[name].append(w)
            cpu[name].append(c)
            print("run %d %-8s wall %8.1f us/commit  cpu %8.1f us/commit" % (r + 1, name, w, c),
                  flush=True)
    for what, res in (("wall", wall), ("cpu", cpu)):
        none = statistics.median(res["none"])
        print("%s: none %s (median %.1f)"
              % (what, " ".join("%.1f" % x for x in res["none"]), none))
        for name, _, _ in modes[1:]:
            med = statistics.median(res[name])
            pairs = [c - n for n, c in zip(res["none"], res[name])]
            print("%s: %s %s (median %.1f); added: %.1f us/commit (difference of medians; "
                  "per run pair: %s)"
                  % (what, name, " ".join("%.1f" % x for x in res[name]), med, med - none,
                     " ".join("%.1f" % x for x in pairs)))
    # The client's own code per commit, timed from inside (one run each).
    for name, mode, src in modes[1:]:
        inside = statistics.median(
            child("inside", a.address, a.commits, src, a.dir)[0] for _ in range(3))
        print("inside the %s's code: %.1f us/commit of CPU (median of 3 instrumented runs: "
              "hooks, tag, ids, encoding, queue and send(2))" % (name, inside))
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
