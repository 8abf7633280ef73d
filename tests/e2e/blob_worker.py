"""The blob workload of test_blobs.py: threads doing multi-database ZODB
transactions through ZEO (reported by tidstorage_client) that create,
overwrite and delete blobs, and undo some of their own changes.

Each thread owns one OOBTree per database (root key ``t<thread>``) of
blobs named ``t<thread>-<n>``, so threads never conflict. A transaction
takes a global sequence number, picks a non-empty set of the databases and,
in each, creates, overwrites or deletes one to three of its blobs. A blob's
content is a function of (database, name, content id): ``content()``. What
it wrote goes into the transaction's description (``blob {json}``: the
sequence number and, per database, {name: content id, or null for a
delete}), so a test can replay any Data.fs prefix; an undo transaction
records the content ids its undo brings back and the sequence number it
undoes (``undo``).

Thread 0 also keeps ``t0-u`` in every database: every --undo-every-th of
its transactions overwrites it in some databases, and its next transaction
undoes that one with ``DB.undo`` on each of them (one multi-database undo
transaction). An undo ZODB refuses (a pack removed the revision it needs)
is aborted like any failed commit: ``FAILED <seq> undo|commit <error>``.

Output lines: READY; ``COMMITTED {json}`` once a commit returned, with the
TID each database assigned (captured from the storage's tpc_finish
callback, the only exact source); WINDOW <seq> when a transaction sits in
the --window-trigger delay (the next transaction after the trigger file
appears writes a new blob into every database and sleeps --window-delay
seconds after its first database finished); DONE after --stop-file appeared
and every thread finished its transaction.
"""

import argparse
import base64
import itertools
import json
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
from ZODB.blob import Blob
from ZODB.utils import p64, u64

import tidstorage_client

UNDO_NAME = "t0-u"


def content(db, name, cid):
    """The bytes blob `name` of database `db` holds at content id `cid`
    (empty for every 23rd id: ZODB's empty blob files are backed up too)."""
    return ("%s %s %d|" % (db, name, cid)).encode() * (cid % 23 * 7)


def note(seq, ops, undo=None):
    d = {"seq": seq, "ops": ops}
    if undo is not None:
        d["undo"] = undo
    return "blob " + json.dumps(d, sort_keys=True, separators=(",", ":"))


def parse_note(description):
    """{seq, ops, undo?} from a transaction description, or None."""
    if isinstance(description, bytes):
        description = description.decode("utf-8", "replace")
    if not description.startswith("blob {"):
        return None
    return json.loads(description[5:])


# The line-at-a-time output and the trigger claim of the plain workload.
from worker import claim, say  # noqa: E402


def write_blob(blob, data):
    with blob.open("w") as f:
        f.write(data)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--zeo", required=True, help="comma-separated ports")
    p.add_argument("--cache", required=True, help="directory for the client blob caches")
    p.add_argument("--threads", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pause", type=float, default=0.0)
    p.add_argument("--undo-every", type=int, default=6)
    p.add_argument("--stop-file", default=None)
    p.add_argument("--window-trigger", default=None)
    p.add_argument("--window-delay", type=float, default=5.0)
    a = p.parse_args()
    ports = [int(x) for x in a.zeo.split(",")]
    names = ["db%d" % i for i in range(len(ports))]

    tidstorage_client.install(a.server, client_id="blobs:%d" % a.seed, reconnect_interval=0.1)

    # Wrapped around the client's own wrappers: the TID each storage
    # assigned, per thread, and the test-only window delay.
    local = threading.local()
    storage_names = {}

    def capture(original):
        def tpc_finish(self, txn, func=lambda tid: None):
            tids = getattr(local, "tids", None)
            name = storage_names.get(id(getattr(self, "_storage", None)))

            def record(tid):
                if tids is not None and name is not None:
                    tids[name] = u64(tid)
                func(tid)

            r = original(self, txn, record)
            w = getattr(local, "window", None)
            if w is not None and tids is not None and len(tids) == 1:
                local.window = None
                say("WINDOW %d" % w)
                time.sleep(a.window_delay)
            return r

        return tpc_finish

    for cls in (mvccadapter.MVCCAdapterInstance, mvccadapter.UndoAdapterInstance):
        cls.tpc_finish = capture(cls.__dict__["tpc_finish"])

    dbs = {}
    for name, port in zip(names, ports):
        cache = os.path.join(a.cache, name)
        st = ClientStorage([("127.0.0.1", port)], storage="1", wait_timeout=30,
                           blob_dir=cache, shared_blob_dir=False)
        storage_names[id(st)] = name
        ZODB.DB(st, databases=dbs, database_name=name)
    tm = transaction.TransactionManager()
    conn = dbs[names[0]].open(transaction_manager=tm)
    for n in names:
        r = conn.get_connection(n).root()
        for t in range(a.threads):
            if "t%d" % t not in r:
                r["t%d" % t] = OOBTree()
    tm.get().note("blob set-up")
    tm.commit()
    conn.close()

    seq = itertools.count(1)
    seq_lock = threading.Lock()
    stopping = threading.Event()

    def commit(tm, s, ops, undo=None):
        """Commits with its note; returns {db: tid} or None (aborted)."""
        local.tids = {}
        try:
            tm.get().note(note(s, ops, undo))
            tm.commit()
        except Exception as e:
            try:
                tm.abort()
            except Exception:
                pass
            say("FAILED %d %s %s: %s" % (s, "undo" if undo is not None else "commit",
                                          type(e).__name__, str(e)[:200]))
            return None
        finally:
            local.window = None
        tids, local.tids = local.tids, None
        missing = [d for d in ops if d not in tids]
        if missing:
            say("FAILED %d no TID captured for %s" % (s, missing))
            return None
        return tids

    def run(t):
        rng = random.Random(a.seed * 1000 + t)
        tm = transaction.TransactionManager()
        c0 = dbs[names[0]].open(transaction_manager=tm)
        conns = {n: c0.get_connection(n) for n in names}
        key = "t%d" % t
        state = {n: {} for n in names}  # committed: name -> content id
        counter = itertools.count()
        undoable = None  # (seq, {db: tid}, {db: content id before it})
        mine = 0
        failures = 0
        while not stopping.is_set() and failures < 20:
            if a.stop_file and os.path.exists(a.stop_file):
                break
            with seq_lock:
                s = next(seq)
            tm.begin()
            mine += 1
            ops, undo = {}, None
            if t == 0 and mine == 1:
                # The blob the undos work on, in every database.
                for n in names:
                    conns[n].root()[key][UNDO_NAME] = b = Blob()
                    write_blob(b, content(n, UNDO_NAME, s * 10))
                    ops[n] = {UNDO_NAME: s * 10}
            elif undoable is not None:
                undo, tids, before = undoable
                undoable = None
                for n, tid in sorted(tids.items()):
                    dbs[n].undo(base64.encodebytes(p64(tid))[:-1], tm.get())
                    ops[n] = {UNDO_NAME: before[n]}
            elif t == 0 and a.undo_every and mine % a.undo_every == 0:
                touched = sorted(rng.sample(names, rng.randint(1, len(names))))
                for n in touched:
                    write_blob(conns[n].root()[key][UNDO_NAME], content(n, UNDO_NAME, s * 10))
                    ops[n] = {UNDO_NAME: s * 10}
            else:
                window = (a.window_trigger and len(names) > 1 and os.path.exists(a.window_trigger)
                          and claim(a.window_trigger))
                if window:
                    touched = names
                    local.window = s
                else:
                    touched = sorted(rng.sample(names, rng.randint(1, len(names))))
                for n in touched:
                    tree = conns[n].root()[key]
                    live = sorted(k for k in state[n] if k != UNDO_NAME)
                    rng.shuffle(live)
                    ops[n] = {}
                    for i in range(rng.randint(1, 3)):
                        cid = s * 10 + i
                        r = rng.random()
                        if window and i == 0 or not live or r < 0.4:
                            name = "t%d-%d" % (t, next(counter))
                            tree[name] = b = Blob()
                            write_blob(b, content(n, name, cid))
                            ops[n][name] = cid
                        elif r < 0.8:
                            name = live.pop()
                            write_blob(tree[name], content(n, name, cid))
                            ops[n][name] = cid
                        else:
                            name = live.pop()
                            del tree[name]
                            ops[n][name] = None
            tids = commit(tm, s, ops, undo)
            if tids is None:
                failures += 1
                time.sleep(0.05)
                continue
            failures = 0
            if undo is None and t == 0 and mine % a.undo_every == 0 and mine > 1:
                undoable = (s, tids, {n: state[n][UNDO_NAME] for n in ops})
            for n, changes in ops.items():
                for name, cid in changes.items():
                    if cid is None:
                        state[n].pop(name, None)
                    else:
                        state[n][name] = cid
            say("COMMITTED " + json.dumps({"seq": s, "tids": tids, "ops": ops, "undo": undo},
                                          sort_keys=True))
            if a.pause:
                time.sleep(a.pause)

    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(a.threads)]
    for th in threads:
        th.start()
    say("READY")
    for th in threads:
        th.join()
    say("DONE")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
