"""The Python client's cost per commit, side by side with no client.

Two local FileStorages in one multi-database; every commit writes one
object in each (a two-database two-phase commit, as an application
spreading its objects over two databases does). Runs alternate: no client,
then the client installed and connected to the daemon at ADDRESS, and so
on, so that both see the same machine load. Each run commits COMMITS
transactions on fresh files and reports microseconds per commit (wall
clock of the commit loop / COMMITS).

    python bench/client.py ADDRESS [--commits 4000] [--runs 4] [--profile]

Prints one line per run and a summary: the median per-commit cost of each
mode and their difference (what the client adds to every commit). With
--profile, one extra client run under cProfile prints where the client's
time goes (its own functions only).
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "clients", "python", "src"))

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
        t0 = time.perf_counter()
        for i in range(commits):
            r1["v"] = i
            r2["v"] = i
            tm.commit()
        elapsed = time.perf_counter() - t0
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
        return elapsed / commits * 1e6
    finally:
        if client is not None:
            tidstorage_client.uninstall(timeout=2.0)
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("address")
    p.add_argument("--commits", type=int, default=4000)
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--profile", action="store_true")
    a = p.parse_args()
    results = {"none": [], "client": []}
    for r in range(a.runs):
        for mode in ("none", "client"):
            us = run_once(a.commits, a.address if mode == "client" else None)
            results[mode].append(us)
            print("run %d %-6s %8.1f us/commit" % (r + 1, mode, us), flush=True)
    none = statistics.median(results["none"])
    cli = statistics.median(results["client"])
    print("none:   %s us/commit (median %.1f)"
          % (" ".join("%.1f" % x for x in results["none"]), none))
    print("client: %s us/commit (median %.1f)"
          % (" ".join("%.1f" % x for x in results["client"]), cli))
    pairs = [c - n for n, c in zip(results["none"], results["client"])]
    print("added by the client: median %.1f us/commit (per run pair: %s)"
          % (cli - none, " ".join("%.1f" % x for x in pairs)))
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
