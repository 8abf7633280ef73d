"""The e2e workload: threads doing multi-database ZODB transactions through
ZEO, reported by tidstorage_client.

Each transaction takes a new global sequence number, picks a random
non-empty set of the databases and writes, into each of them, the sequence
number and the set (under a per-thread OOBTree, so threads never conflict).
Output lines: READY, then WINDOW <seq> each time a thread sits in the
test-only delay between two per-database tpc_finish calls, and with
--report-commits COMMITTED <seq> once a transaction's commit returned (it is
then finished in every database it touched).

Test-only knobs: --window-every K makes every K-th multi-database transaction
sleep --window-delay seconds after its first database finished;
--window-trigger PATH makes the next multi-database transaction after PATH
appears do so once (the thread that deletes PATH gets the window). It wraps
ZODB's MVCCAdapterInstance.tpc_finish around the client's own wrapper, so
the client package carries no test code.
"""

import argparse
import itertools
import os
import random
import sys
import threading
import time

import transaction
import ZODB
from BTrees.OOBTree import OOBTree
from ZEO.ClientStorage import ClientStorage
from ZODB import mvccadapter

import tidstorage_client
from tidstorage_client import hook

out_lock = threading.Lock()


def say(line):
    with out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def claim(trigger):
    """True for the one caller that removes the trigger file."""
    try:
        os.unlink(trigger)
        return True
    except FileNotFoundError:
        return False


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--zeo", required=True, help="comma-separated ports")
    p.add_argument("--dbs", default=None, help="indexes of the databases to write, e.g. 0,1")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--window-every", type=int, default=0)
    p.add_argument("--window-delay", type=float, default=0.5)
    p.add_argument("--window-trigger", default=None)
    p.add_argument("--pause", type=float, default=0.0, help="seconds between commits")
    p.add_argument("--report-commits", action="store_true")
    a = p.parse_args()
    ports = [int(x) for x in a.zeo.split(",")]
    names = ["db%d" % i for i in range(len(ports))]
    usable = [names[int(i)] for i in a.dbs.split(",")] if a.dbs else names

    tidstorage_client.install(a.server, client_id="e2e:%d" % a.seed, reconnect_interval=0.1)

    original = mvccadapter.MVCCAdapterInstance.tpc_finish
    window = threading.local()

    def delayed_finish(self, txn, func=lambda tid: None):
        r = original(self, txn, func)
        w = getattr(window, "seq", None)
        rec = hook.current_commit()
        if w is not None and rec is not None and len(rec.finished) == 1:
            say("WINDOW %d" % w)
            time.sleep(a.window_delay)
        return r

    mvccadapter.MVCCAdapterInstance.tpc_finish = delayed_finish

    dbs = {}
    for name, port in zip(names, ports):
        st = ClientStorage([("127.0.0.1", port)], storage="1", wait_timeout=30)
        ZODB.DB(st, databases=dbs, database_name=name)
    tm = transaction.TransactionManager()
    conn = dbs[names[0]].open(transaction_manager=tm)
    for n in names:
        r = conn.get_connection(n).root()
        for t in range(a.threads):
            if "w%d_%d" % (a.seed, t) not in r:
                r["w%d_%d" % (a.seed, t)] = OOBTree()
    tm.commit()
    conn.close()

    seq = itertools.count(1)
    seq_lock = threading.Lock()

    def run(t):
        rng = random.Random(a.seed * 1000 + t)
        tm = transaction.TransactionManager()
        c0 = dbs[names[0]].open(transaction_manager=tm)
        conns = {n: c0.get_connection(n) for n in names}
        key = "w%d_%d" % (a.seed, t)
        failures = 0
        while failures < 20:
            touched = sorted(rng.sample(usable, rng.randint(1, len(usable))))
            with seq_lock:
                s = next(seq)
            tag = ",".join(touched)
            try:
                tm.begin()
                # What it touched, for the test's own oracle (oracle.py).
                tm.get().note("e2e %d %s" % (s, tag))
                for n in touched:
                    conns[n].root()[key][s] = tag
                if a.window_every and len(touched) > 1 and s % a.window_every == 0:
                    window.seq = s
                if a.window_trigger and len(touched) > 1 and claim(a.window_trigger):
                    window.seq = s
                tm.commit()
                failures = 0
                if a.report_commits:
                    say("COMMITTED %d" % s)
            except Exception:
                failures += 1
                try:
                    tm.abort()
                except Exception:
                    pass
                time.sleep(0.05)
            finally:
                window.seq = None
            if a.pause:
                time.sleep(a.pause)

    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(a.threads)]
    for th in threads:
        th.start()
    say("READY")
    for th in threads:
        th.join()


if __name__ == "__main__":
    main()
