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
time goes (its own functions only). With --baseline-src DIR (a client
package's ``src`` directory, e.g. an older checkout's), a third mode runs
that client in the same alternation. Every run is a fresh process.
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


def run_once(commits, client_address, profile=None):
    workdir = tempfile.mkdtemp(prefix="tidstorage-bench-client-")
    client = None
    try:
        if client_address:
            client = tidstorage_client.install(client_address, wait=5.0)
            if not client.sender.wait_connected(5.0):
                raise SystemExit("cannot connect to the daemon at %s" % client_address)
        dbs, tm, r1, r2 = open_multi(workdir)
        # Warm up (first commits create the roots' state, fill caches).
        for i in range(50):
            r1["v"] = r2["v"] = -i
            tm.commit()
        if profile is not None:
            profile.enable()
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(commits):
            r1["v"] = i
            r2["v"] = i
            tm.commit()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
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


def child(mode, address, commits, client_src):
    cmd = [sys.executable, os.path.abspath(__file__), address, "--child", mode,
           "--commits", str(commits)]
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
    p.add_argument("--child", choices=["none", "client"])
    p.add_argument("--client-src")
    a = p.parse_args()
    if a.child:
        w, c = run_once(a.commits, a.address if a.child == "client" else None)
        print("%.3f %.3f" % (w, c))
        return
    modes = [("none", "none", None), ("client", "client", None)]
    if a.baseline_src:
        modes.append(("baseline", "client", os.path.abspath(a.baseline_src)))
    wall = {m: [] for m, _, _ in modes}
    cpu = {m: [] for m, _, _ in modes}
    for r in range(a.runs):
        for name, mode, src in modes:
            w, c = child(mode, a.address, a.commits, src)
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
    if a.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        run_once(a.commits, a.address, profile=prof)
        st = pstats.Stats(prof)
        st.sort_stats("tottime")
        st.print_stats("tidstorage_client", 25)


if __name__ == "__main__":
    main()
