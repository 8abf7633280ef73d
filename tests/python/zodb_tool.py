"""Real-ZODB helper for tidstorage's Rust integration tests.

Run with the test virtualenv's python (ZODB from PyPI). Subcommands print
JSON on stdout so the Rust side can assert on ZODB's own answers:

  write PATH N [--size BYTES]   commit N transactions to a FileStorage;
                                prints {"tids": [...int...]}
  check PATH                    open read-only like ZEO would, run fstest;
                                prints {"last_tid": int|null, "count": n,
                                        "size": bytes, "fstest": "ok"|error}
  hold PATH                     open the FileStorage read-write (takes
                                Data.fs.lock), print "ready", wait for stdin EOF
  size PATH TID                 FileStorage(read_only, stop=TID+1).getSize()
                                of a copy without Data.fs.index
  pack PATH                     pack the FileStorage to now (drops old
                                revisions); prints {"size": bytes}
"""

import json
import sys

import transaction
import ZODB
import ZODB.FileStorage
from ZODB.utils import p64, u64


def write(path, n, size=100):
    storage = ZODB.FileStorage.FileStorage(path)
    db = ZODB.DB(storage)
    conn = db.open()
    root = conn.root()
    tids = []
    for i in range(n):
        root["k%d" % (i % 7)] = b"x" * size + str(i).encode()
        transaction.get().note("transaction %d" % i)
        transaction.commit()
        tids.append(u64(storage.lastTransaction()))
    conn.close()
    db.close()
    return {"tids": tids}


def check(path):
    from ZODB.scripts import fstest
    storage = ZODB.FileStorage.FileStorage(path, read_only=True)
    last = storage.lastTransaction()
    count = sum(1 for _ in storage.iterator())
    size = storage.getSize()
    storage.close()
    try:
        fstest.check(path)
        verdict = "ok"
    except Exception as e:  # fstest raises FormatError on damage
        verdict = "%s: %s" % (type(e).__name__, e)
    return {
        "last_tid": u64(last) if last and last != b"\0" * 8 else None,
        "count": count,
        "size": size,
        "fstest": verdict,
    }


def hold(path):
    storage = ZODB.FileStorage.FileStorage(path)
    print("ready", flush=True)
    sys.stdin.read()
    storage.close()


def size(path, tid):
    # ZODB honours `stop` only while scanning: with a Data.fs.index beside
    # the file it loads the index and reports the whole file. Scan a lone
    # copy, as ZODB would after a cut removed the index.
    import os
    import shutil
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        lone = os.path.join(d, "Data.fs")
        shutil.copyfile(path, lone)
        storage = ZODB.FileStorage.FileStorage(lone, read_only=True, stop=p64(tid + 1))
        s = storage.getSize()
        storage.close()
    return {"size": s}


def pack(path):
    import time
    storage = ZODB.FileStorage.FileStorage(path)
    db = ZODB.DB(storage)
    db.pack(time.time() + 1)
    size = storage.getSize()
    db.close()
    return {"size": size}


def main(argv):
    cmd = argv[1]
    if cmd == "write":
        sz = int(argv[4]) if len(argv) > 4 else 100
        out = write(argv[2], int(argv[3]), sz)
    elif cmd == "check":
        out = check(argv[2])
    elif cmd == "hold":
        hold(argv[2])
        return
    elif cmd == "pack":
        out = pack(argv[2])
    elif cmd == "size":
        out = size(argv[2], int(argv[3]))
    else:
        raise SystemExit("unknown subcommand %r" % cmd)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)
