"""The crashed databases bench/exactcut.sh cuts: three FileStorages in one
multi-database whose recent history the project's client tagged, a status
file whose point lags behind a tail of tagged commits, and a crash in the
middle of the last commits.

Usage (with the test virtualenv's python, which has ZODB and the client):

    bench/exactcut_gen.py DIR TAIL [--below N] [--torn] [--seed S]

DIR holds a/Data.fs, b/Data.fs and c/Data.fs, the old, untagged history
(bench/exactcut.sh writes them with examples/gen_datafs). Real ZODB writes
everything else, with the real client installed (tidstorage_client.install;
storage ids are its defaults, the absolute paths of the Data.fs files):

1. each storage is opened and closed once, as a ZEO server's last clean
   restart would: ZODB scans the old history and saves Data.fs.index;
2. ``--below`` tagged commits (default 500), then the point: the status
   file DIR/status.tid gets one full record with every storage's last TID,
   as the daemon writes it;
3. TAIL tagged commits above the point, as if the daemon had been down
   since (the client keeps the application running without it): each
   touches one, two or three of the databases (1/2, 1/3, 1/6), creating
   or changing one or two objects of 100 B to 50 KB in each;
4. the crash, four threads in flight: a commit on a and b that finished on
   a and failed on b (its tpc_finish raised: ZODB truncated b's part),
   five complete commits behind it, a commit on b and c that finished on c
   and was only voted on b (its 'c' checkpoint record ends b), and with
   ``--torn`` a commit on a and c that finished on a and was cut in the
   middle of its write on c (a torn tail ends c). Then the process dies
   (os._exit: no close, so every Data.fs.index is the stale one of step 1).

Prints one JSON object: per storage, the file's size, the point's TID and
the position where the tail starts (the committed end at the point), the
transactions above the point and, from this script's own bookkeeping (the
description of every commit says which databases it touched, not its
tag), how many of them the greatest consistent cut keeps.
"""

import argparse
import json
import logging
import os
import random
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "clients", "python", "src"))

import persistent  # noqa: E402
import transaction  # noqa: E402
import ZODB  # noqa: E402
import ZODB.FileStorage.FileStorage as fsmodule  # noqa: E402
from ZODB.Connection import TransactionMetaData  # noqa: E402
from ZODB.FileStorage import FileStorage  # noqa: E402
from ZODB.utils import u64, z64  # noqa: E402

import tidstorage_client  # noqa: E402
from tidstorage_client import tag as tagmod  # noqa: E402

NAMES = "abc"
# Object sizes (bytes) and weights: examples/gen_datafs's mix without its
# rare 1.5 MB objects.
MIX = [(100, 400), (500, 400), (3000, 150), (50000, 45)]


class Payload(persistent.Persistent):
    def __init__(self, data):
        self.data = data


def status_line(point):
    """A full record as the daemon writes it (docs/status-file.md)."""
    body = "{%s}" % ", ".join("%r: %d" % (k, point[k]) for k in sorted(point))
    line = "%.2f f %s" % (time.time(), body)
    return "%s #crc32=%08x\n" % (line, zlib.crc32(line.encode("utf-8")) & 0xffffffff)


def greatest_consistent_cut(present):
    """present: {storage: [commit seq numbers above the point, in file
    order]}, touched: seq -> set of storages (module global). How many of
    each storage's transactions the greatest consistent cut keeps."""
    index = {s: {q: i for i, q in enumerate(seqs)} for s, seqs in present.items()}
    limit = {s: len(seqs) for s, seqs in present.items()}
    changed = True
    while changed:
        changed = False
        for s, seqs in present.items():
            for i in range(limit[s]):
                q = seqs[i]
                if any(q not in index[p] or index[p][q] >= limit[p] for p in TOUCHED[q]):
                    limit[s] = i
                    changed = True
                    break
    return limit


TOUCHED = {}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("tail", type=int)
    ap.add_argument("--below", type=int, default=500)
    ap.add_argument("--torn", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    logging.disable(logging.CRITICAL)
    # No fsync at every commit: the bytes written are the same, and the
    # generator is not the thing measured.
    fsmodule.fsync = None
    rng = random.Random(a.seed)
    paths = {n: os.path.abspath(os.path.join(a.dir, n, "Data.fs")) for n in NAMES}

    # 1. The last clean restart: scan, save the index.
    for p in paths.values():
        FileStorage(p).close()

    # 2. The multi-database, the client, the tagged history below the point.
    storages = {n: FileStorage(p) for n, p in paths.items()}
    dbs = {}
    for n, st in storages.items():
        ZODB.DB(st, databases=dbs, database_name=n)
    tm = transaction.TransactionManager()
    root = dbs["a"].open(transaction_manager=tm)
    conns = {n: root.get_connection(n) for n in NAMES}
    tidstorage_client.install("127.0.0.1:9", wait=0, reconnect_interval=3600)
    ids = {n: tidstorage_client.default_storage_id(st) for n, st in storages.items()}
    objects = {n: [] for n in NAMES}
    total_weight = sum(w for _, w in MIX)
    seq = [0]
    present = None  # {storage: [seq...]} once above the point

    def size():
        pick = rng.randrange(total_weight)
        for s, w in MIX:
            if pick < w:
                return s
            pick -= w
        return MIX[-1][0]

    def touch(n):
        for _ in range(rng.choice((1, 2))):
            if objects[n] and rng.random() < 0.4:
                rng.choice(objects[n]).data = os.urandom(size())
            else:
                o = Payload(os.urandom(size()))
                conns[n].add(o)
                objects[n].append(o)

    def pick():
        r = rng.random()
        k = 1 if r < 1 / 2 else 2 if r < 5 / 6 else 3
        return "".join(sorted(rng.sample(NAMES, k)))

    def write(names):
        seq[0] += 1
        TOUCHED[seq[0]] = set(names)
        for n in names:
            touch(n)
        t = tm.get()
        t.user = "/erp5/acl_users zope"
        t.note("/erp5/bench/%d/edit (touches %s)" % (seq[0], names))
        return seq[0]

    def committed(q, names):
        if present is not None:
            for n in names:
                present[n].append(q)

    def commit(names):
        q = write(names)
        tm.commit()
        committed(q, names)

    for _ in range(a.below):
        commit(pick())
    point = {ids[n]: u64(st.lastTransaction()) for n, st in storages.items()}
    floor = {n: os.path.getsize(p) for n, p in paths.items()}
    with open(os.path.join(a.dir, "status.tid"), "w") as f:
        f.write(status_line(point))

    # 3. The tail above the point.
    present = {n: [] for n in NAMES}
    for _ in range(a.tail):
        commit(pick())

    # 4. The crash. A commit on a and b: a finishes, b's tpc_finish fails.
    def broken_finish(txn, f=None):
        raise OSError("the disk under b is gone (bench)")

    storages["b"].tpc_finish = broken_finish
    q = write("ab")
    try:
        tm.commit()
    except OSError:
        pass
    tm.abort()
    del storages["b"].tpc_finish
    committed(q, "a")
    for _ in range(5):
        commit(pick())
    tidstorage_client.uninstall(timeout=0)

    def low_level(names, finish, torn=False):
        """A commit written with the storage API, tagged as the client tags
        (its tag function), finished only on ``finish``."""
        seq[0] += 1
        TOUCHED[seq[0]] = set(names)
        value = tagmod.make(tuple(ids[n] for n in names))
        for n in names:
            st = storages[n]
            meta = TransactionMetaData(
                "/erp5/acl_users zope", "/erp5/bench/%d/edit (touches %s)" % (seq[0], names),
                {tagmod.KEY: value})
            st.tpc_begin(meta)
            start = os.path.getsize(paths[n])
            st.store(st.new_oid(), z64, os.urandom(20000), "", meta)
            st.tpc_vote(meta)
            if n in finish:
                st.tpc_finish(meta)
                committed(seq[0], n)
            elif torn:
                os.truncate(paths[n], start + (os.path.getsize(paths[n]) - start) // 2)

    low_level("bc", finish="c")  # b keeps its 'c' record: the end of b
    if a.torn:
        low_level("ac", finish="a", torn=True)  # c ends torn
    for st in storages.values():
        st._file.flush()

    kept = greatest_consistent_cut(present)
    out = {"storages": {}}
    for n in NAMES:
        out["storages"][n] = {
            "id": ids[n],
            "data_fs": paths[n],
            "size": os.path.getsize(paths[n]),
            "point_tid": point[ids[n]],
            "tail_start": floor[n],
            "tail_bytes": os.path.getsize(paths[n]) - floor[n],
            "above_point": len(present[n]),
            "kept_by_greatest_consistent_cut": kept[n],
        }
    out["commits_above_point"] = seq[0] - a.below
    print(json.dumps(out, sort_keys=True))
    sys.stdout.flush()
    # Dies without closing anything, as a crash does.
    os._exit(0)


if __name__ == "__main__":
    main()
