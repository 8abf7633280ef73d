"""ZODB's answers about Data.fs.index files, for tidstorage's index tests.

Run with the test virtualenv's python. Each subcommand prints one JSON
object; an index is {"pos": int, "index": {"<oid as decimal>": offset}}.

  write PATH            a Data.fs exercising the index: oids in several
                        6-byte prefixes, many transactions, undo (back
                        pointers, an undone creation), a pack, then more
                        commits; ZODB writes Data.fs.index when it closes.
                        Prints {"tids": [...]} (every transaction's tid)
  dump INDEX            fsIndex.load(INDEX)
  scan PATH...          {PATH: the index ZODB builds by reading a copy of
                        PATH without any .index (read-only open), or
                        {"error": text} when ZODB refuses the file}
  reindex PATH          open PATH read-write and close it: ZODB writes its
                        Data.fs.index (rebuilding it if it has none)
  open PATH             FileStorage(PATH, read_only=True) with whatever
                        .index is beside it: {"used_index": bool (ZODB's own
                        test marker: True when it did not rebuild), "pos":
                        getSize(), "index": ..., "loads": {oid: tid hex or
                        the exception name of storage.load(oid)}}
  loads PATH            "loads" as above for a copy of PATH without .index
"""

import json
import logging
import os
import shutil
import sys
import tempfile

import transaction
import ZODB
from persistent.mapping import PersistentMapping
from ZODB.FileStorage import FileStorage
from ZODB.fsIndex import fsIndex
from ZODB.utils import p64, u64


def index_json(pos, index):
    return {
        "pos": int(pos),
        "index": {str(u64(k)): int(v) for k, v in index.items()},
    }


def write(path):
    storage = FileStorage(path)
    db = ZODB.DB(storage)
    conn = db.open()
    root = conn.root()
    tids = []

    def commit(note):
        transaction.get().note(note)
        transaction.commit()
        tids.append(u64(storage.lastTransaction()))

    # Oids across bucket (6-byte prefix) boundaries: jump the counter.
    for jump in (None, 0xFFF0, 0x2_0000, 0x1_0000_0000_0000):
        if jump is not None:
            storage.set_max_oid(p64(jump))
        key = "group-%s" % jump
        root[key] = PersistentMapping()
        for i in range(30):
            root[key][i] = PersistentMapping({"v": i})
        commit("create %s" % key)
    # Many small transactions modifying a few objects each.
    for n in range(60):
        root["group-None"][n % 30]["v"] = n
        root["group-65520"][(n * 7) % 30]["v"] = n
        commit("modify %d" % n)
    conn.close()
    # Pack away the history so far (packed transactions), then keep writing.
    db.pack(t=None, days=0)
    conn = db.open()
    root = conn.root()
    for n in range(20):
        root["group-131072"][n % 30]["v"] = -n
        commit("after pack %d" % n)
    # Undo: of a modification (back pointers to older records) and of a
    # creation (a record with a zero back pointer: the object is gone but
    # stays in the index).
    root["undone"] = PersistentMapping({"x": 1})
    commit("create undone")
    undo_creation = db.undoLog(0, 1)[0]["id"]
    modif = [d["id"] for d in db.undoLog(0, 40)
             if d["description"] == "after pack 10"]
    db.undo(modif[0])
    commit("undo after pack 10")
    db.undo(undo_creation)
    commit("undo create undone")
    root["group-None"][0]["v"] = "last"
    commit("last")
    conn.close()
    db.close()
    s = FileStorage(path, read_only=True)
    tids = [u64(t.tid) for t in s.iterator()]
    s.close()
    return {"tids": tids}


def loads(storage, oids):
    out = {}
    for oid in oids:
        try:
            _, serial = storage.load(oid)
            out[str(u64(oid))] = serial.hex()
        except Exception as e:  # POSKeyError for an undone creation
            out[str(u64(oid))] = type(e).__name__
    return out


def lone_copy(path, d):
    lone = os.path.join(d, "Data.fs")
    shutil.copyfile(path, lone)
    return lone


def scan(path):
    with tempfile.TemporaryDirectory() as d:
        s = FileStorage(lone_copy(path, d), read_only=True)
        assert not s._used_index
        out = index_json(s.getSize(), s._index)
        s.close()
    return out


def open_(path):
    s = FileStorage(path, read_only=True)
    out = index_json(s.getSize(), s._index)
    out["used_index"] = bool(s._used_index)
    out["loads"] = loads(s, list(s._index.keys()))
    s.close()
    return out


def loads_fresh(path):
    with tempfile.TemporaryDirectory() as d:
        s = FileStorage(lone_copy(path, d), read_only=True)
        out = {"loads": loads(s, list(s._index.keys()))}
        s.close()
    return out


def main(argv):
    logging.disable(logging.CRITICAL)
    cmd = argv[1]
    if cmd == "write":
        out = write(argv[2])
    elif cmd == "dump":
        info = fsIndex.load(argv[2])
        out = index_json(info["pos"], info["index"])
    elif cmd == "scan":
        out = {}
        for path in argv[2:]:
            try:
                out[path] = scan(path)
            except Exception as e:
                out[path] = {"error": "%s: %s" % (type(e).__name__, e)}
    elif cmd == "reindex":
        FileStorage(argv[2]).close()
        out = {}
    elif cmd == "open":
        out = open_(argv[2])
    elif cmd == "loads":
        out = loads_fresh(argv[2])
    else:
        raise SystemExit("unknown subcommand %r" % cmd)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)
