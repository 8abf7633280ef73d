"""Real-ZODB blob helper for tidstorage's blob tests (tests/blobs.rs).

Run with the test virtualenv's python. Prints JSON on stdout.

  make DIR LAYOUT      FileStorage DIR/Data.fs with blob_dir DIR/blobs
                       (LAYOUT bushy or lawn); a workload that creates,
                       overwrites and deletes blobs, undoes one change and
                       stores a non-blob object naming ZODB.blob;
                       prints {"tids": [...]}
  more DIR N           N more transactions, each adding one blob
  truth DIR [STOP]     ZODB's own answer: storage.iterator() records with
                       is_blob_record(record.data), tid <= STOP;
                       prints {"records": [[oid, tid], ...]}
  read FS BLOBDIR      opens FS with blob_dir BLOBDIR through ZODB.DB and
                       reads every reachable blob and every blob record's
                       file; prints {"reachable": {name: hex}, "files":
                       {"oid tid": size}} or fails
  pack DIR KEEP_OLD    pack to now (KEEP_OLD 1/0 = pack_keep_old)
  zeo DIR              DIR/Data.fs + DIR/blobs written through a real ZEO
                       server (ZEO.server) by a ZEO client: two blobs
                       stored, one overwritten; prints {"records": n}
                       (data records ZODB's iterator yields)
  seeds                class pickles to mutate: Blob, (Blob, ()), other
                       classes, in protocols 0-5; prints {"seeds": [hex]}
  isblob               reads hex records from stdin, one a line; prints
                       {"answers": [bool]} from ZODB.blob.is_blob_record
"""

import json
import os
import sys

import transaction
import ZODB
import ZODB.FileStorage
from persistent.mapping import PersistentMapping
from ZODB.blob import Blob
from ZODB.blob import is_blob_record
from ZODB.utils import u64


def open_db(d, **kw):
    storage = ZODB.FileStorage.FileStorage(
        os.path.join(d, "Data.fs"), blob_dir=os.path.join(d, "blobs"), **kw)
    return storage, ZODB.DB(storage)


def put(root, name, data):
    b = Blob()
    with b.open("w") as f:
        f.write(data)
    root["blobs"][name] = b


def make(d, layout):
    os.makedirs(d)
    # A new Data.fs clears its blob directory: create the file first, then
    # the (deprecated) lawn layout marker, then open with blobs.
    ZODB.FileStorage.FileStorage(os.path.join(d, "Data.fs")).close()
    os.makedirs(os.path.join(d, "blobs"))
    if layout == "lawn":
        with open(os.path.join(d, "blobs", ".layout"), "w") as f:
            f.write("lawn")
    storage, db = open_db(d)
    conn = db.open()
    root = conn.root()
    tids = []

    def commit(note):
        transaction.get().note(note)
        transaction.commit()
        tids.append(u64(storage.lastTransaction()))

    root["blobs"] = PersistentMapping()
    commit("mapping")
    for i in range(3):
        put(root, "b%d" % i, b"first %d " % i * (i + 1))
    commit("three blobs")
    with root["blobs"]["b1"].open("w") as f:
        f.write(b"overwritten b1")
    commit("overwrite b1")
    del root["blobs"]["b2"]
    commit("delete b2")
    # A non-blob object whose record names ZODB.blob (a reference to b0).
    root["ref"] = PersistentMapping({"b": root["blobs"]["b0"]})
    commit("reference")
    with root["blobs"]["b0"].open("w") as f:
        f.write(b"b0 changed, to be undone")
    commit("change b0")
    undo_id = db.undoLog(0, 1)[0]["id"]
    db.undo(undo_id)
    commit("undo change b0")
    put(root, "b3", b"")
    commit("empty blob")
    conn.close()
    db.close()
    return {"tids": tids}


def more(d, n):
    storage, db = open_db(d)
    conn = db.open()
    root = conn.root()
    tids = []
    for i in range(n):
        put(root, "m%d-%d" % (len(root["blobs"]), i), b"more %d" % i)
        transaction.commit()
        tids.append(u64(storage.lastTransaction()))
    conn.close()
    db.close()
    return {"tids": tids}


def truth(d, stop=None):
    storage = ZODB.FileStorage.FileStorage(
        os.path.join(d, "Data.fs"), read_only=True)
    out = []
    for txn in storage.iterator():
        if stop is not None and u64(txn.tid) > stop:
            break
        for r in txn:
            if is_blob_record(r.data):
                out.append([u64(r.oid), u64(r.tid)])
    storage.close()
    return {"records": out}


def read(fs, blob_dir):
    storage = ZODB.FileStorage.FileStorage(fs, blob_dir=blob_dir,
                                           read_only=True)
    db = ZODB.DB(storage)
    conn = db.open()
    root = conn.root()
    reachable = {}
    for name, b in root.get("blobs", {}).items():
        with b.open("r") as f:
            reachable[name] = f.read().hex()
    files = {}
    for txn in storage.iterator():
        for r in txn:
            if is_blob_record(r.data):
                p = storage.loadBlob(r.oid, r.tid)
                files["%d %d" % (u64(r.oid), u64(r.tid))] = os.path.getsize(p)
    conn.close()
    db.close()
    return {"reachable": reachable, "files": files}


def pack(d, keep_old):
    storage, db = open_db(d, pack_keep_old=bool(int(keep_old)))
    import time
    db.pack(time.time() + 1)
    db.close()
    return {}


def zeo(d):
    import ZEO
    os.makedirs(d)
    addr, stop = ZEO.server(path=os.path.join(d, "Data.fs"),
                            blob_dir=os.path.join(d, "blobs"))
    try:
        db = ZEO.DB(addr, blob_dir=os.path.join(d, "zeocache"))
        conn = db.open()
        root = conn.root()
        root["blobs"] = PersistentMapping()
        put(root, "a", b"zeo a")
        put(root, "b", b"zeo b")
        transaction.commit()
        with root["blobs"]["a"].open("w") as f:
            f.write(b"zeo a again")
        transaction.commit()
        conn.close()
        db.close()
    finally:
        stop()
    storage = ZODB.FileStorage.FileStorage(
        os.path.join(d, "Data.fs"), read_only=True)
    n = sum(len(list(t)) for t in storage.iterator())
    storage.close()
    return {"records": n}


def seeds():
    import pickle
    from persistent.mapping import PersistentMapping
    out = []
    for proto in range(0, 6):
        for obj in (Blob, (Blob, ()), PersistentMapping,
                    (("ZODB.blob", "Blob"), None), [Blob], {"k": Blob}):
            p = pickle.dumps(obj, protocol=proto)
            out.append((p + pickle.dumps(None, protocol=proto)).hex())
    return {"seeds": out}


def isblob():
    answers = []
    for line in sys.stdin:
        line = line.strip()
        answers.append(bool(is_blob_record(bytes.fromhex(line))))
    return {"answers": answers}


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make":
        r = make(args[0], args[1])
    elif cmd == "more":
        r = more(args[0], int(args[1]))
    elif cmd == "truth":
        r = truth(args[0], int(args[1]) if len(args) > 1 else None)
    elif cmd == "read":
        r = read(args[0], args[1])
    elif cmd == "pack":
        r = pack(args[0], args[1])
    elif cmd == "zeo":
        r = zeo(args[0])
    elif cmd == "seeds":
        r = seeds()
    elif cmd == "isblob":
        r = isblob()
    else:
        raise SystemExit("unknown command %r" % cmd)
    json.dump(r, sys.stdout)


if __name__ == "__main__":
    main()
