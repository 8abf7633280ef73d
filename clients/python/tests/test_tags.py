"""The commit tag (docs/tags.md) with real ZODB and ZEO: every commit is
tagged, the tag names its storages as the daemon's configuration does, and
it survives repozo, copyTransactionsFrom and pack. Where the tidstorage
binary is built, its reading (`tidstorage tags`) is checked against
ZODB's own."""

import json
import os
import shutil
import subprocess
import sys
import time
import zlib

import pytest
import transaction
import ZODB
from persistent.mapping import PersistentMapping
from ZODB.FileStorage import FileStorage
from ZODB.serialize import referencesf
from ZODB.utils import u64

import tidharness
from tidharness import ZeoServer
import tidstorage_client
from tidstorage_client import tag as tagmod


def tags_of(path):
    """[(tid, status, extension dict)] as ZODB reads the file."""
    fs = FileStorage(path, read_only=True)
    try:
        return [(u64(t.tid), t.status, t.extension) for t in fs.iterator()]
    finally:
        fs.close()


def binary_tags(path, storage="x"):
    """`tidstorage tags PATH --since 0 --format json`, or None without a binary."""
    try:
        exe = tidharness.tidstorage_bin()
    except RuntimeError:
        return None
    r = subprocess.run([exe, "tags", path, "--storage", storage, "--since", "0", "--format",
                        "json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return {int(t["tid"], 16): t["tag"] for t in json.loads(r.stdout)["transactions"]}


def install_without_daemon():
    # Nothing listens there: the tags are written all the same.
    return tidstorage_client.install("127.0.0.1:%d" % tidharness.free_port(), wait=0,
                                     reconnect_interval=3600)


class Multi:
    def __init__(self, storages):
        self.dbs = {}
        for name, st in storages.items():
            ZODB.DB(st, databases=self.dbs, database_name=name)
        self.tm = transaction.TransactionManager()
        first = next(iter(storages))
        c = self.dbs[first].open(transaction_manager=self.tm)
        self.conns = {n: c.get_connection(n) for n in storages}
        self.n = 0

    def commit(self, names):
        """One commit writing a new object in each named database (so every
        transaction keeps live records through a pack)."""
        self.n += 1
        for name in names:
            root = self.conns[name].root()
            root["o%d" % self.n] = PersistentMapping(v=self.n)
        self.tm.get().note("touches %s" % ",".join(names))
        self.tm.commit()

    def close(self):
        self.tm.abort()
        for db in self.dbs.values():
            db.close()


def test_every_commit_is_tagged_with_its_storages(tmp_path):
    client = install_without_daemon()
    a, b = FileStorage(str(tmp_path / "a.fs")), FileStorage(str(tmp_path / "b.fs"))
    ida, idb = [tidstorage_client.default_storage_id(s) for s in (a, b)]
    before = int(time.time() * 1000)
    m = Multi({"a": a, "b": b})
    try:
        m.commit("ab")
        m.commit("a")
        m.commit("b")
        m.commit("ab")
        after = int(time.time() * 1000)
        undo = a.undoLog(0, 2)
    finally:
        m.close()
    # No daemon: BEGINs dropped (by the sender thread, soon), tags not.
    tidharness.wait_until(lambda: client.sender.stats()["dropped_begins"] > 0,
                          what="BEGINs dropped")
    seen = {}
    for path, sid in ((tmp_path / "a.fs", ida), (tmp_path / "b.fs", idb)):
        txns = tags_of(str(path))
        # Every commit, the databases' creation included, is tagged.
        tagged = [(tid, ext[tagmod.KEY]) for tid, _, ext in txns if tagmod.KEY in ext]
        assert len(tagged) == len(txns) == 4
        for tid, value in tagged:
            t = tagmod.parse(value)
            assert before <= t.start_ms <= after
            assert tagmod.storage_name(sid) in t.storages
            seen.setdefault(t.commit_id, []).append((sid, t.storages))
        ours = binary_tags(str(path))
        if ours is not None:
            assert ours == {tid: ext.get(tagmod.KEY) for tid, _, ext in txns}
    # 2 root creations and 4 commits, 6 commit ids; a two-database commit has
    # one id on both files and names both storages; the names are CRC-32 of
    # the daemon's ids.
    assert len(seen) == 6
    both = sorted([tagmod.storage_name(ida), tagmod.storage_name(idb)])
    assert sorted(len(v) for v in seen.values()) == [1, 1, 1, 1, 2, 2]
    for parts in seen.values():
        names = parts[0][1]
        assert names == (both if len(parts) == 2 else [tagmod.storage_name(parts[0][0])])
    assert tagmod.storage_name(ida) == "%08x" % zlib.crc32(ida.encode())
    # The tag does not clobber the keys undoLog() merges.
    assert {"id", "time", "user_name", "description", "size"} <= set(undo[0])
    assert undo[0]["description"] == b"touches a,b"
    assert tagmod.KEY in undo[0]
    # Tens of bytes: the two-storage value and the whole extension pickle.
    values = [ext[tagmod.KEY] for _, _, ext in tags_of(str(tmp_path / "a.fs"))]
    assert [len(v) for v in values] == [39, 48, 39, 48]
    fs = FileStorage(str(tmp_path / "a.fs"), read_only=True)
    try:
        assert [len(t.extension_bytes) for t in fs.iterator()] == [70, 79, 70, 79]
    finally:
        fs.close()


def test_a_retried_commit_gets_a_new_commit_id(tmp_path):
    install_without_daemon()
    a = FileStorage(str(tmp_path / "a.fs"))
    m = Multi({"a": a})
    try:
        class FailVoteOnce:
            calls = 0

            def sortKey(self):
                return "~"

            def abort(self, txn):
                pass

            tpc_begin = commit = tpc_abort = abort

            def tpc_vote(self, txn):
                raise RuntimeError("refused once")

        m.conns["a"].root()["x"] = 1
        t = m.tm.get()
        t.join(FailVoteOnce())
        with pytest.raises(RuntimeError):
            m.tm.commit()
        first = t.extension[tagmod.KEY]
        m.tm.abort()
        m.conns["a"].root()["x"] = 2
        m.tm.commit()
    finally:
        m.close()
    on_disk = [ext[tagmod.KEY] for _, _, ext in tags_of(str(tmp_path / "a.fs"))
               if tagmod.KEY in ext]
    # The root's creation, then the second attempt only, with a new id.
    assert len(on_disk) == 2 and first not in on_disk
    assert tagmod.parse(on_disk[1]).commit_id != tagmod.parse(first).commit_id


def test_commits_through_zeo_reach_the_server_file_tagged(tmp_path):
    install_without_daemon()
    z = ZeoServer(tmp_path / "z.fs")
    st = z.client_storage()
    m = Multi({"z": st, "f": FileStorage(str(tmp_path / "f.fs"))})
    try:
        m.commit(["z", "f"])
        m.commit(["z"])
    finally:
        m.close()
        z.stop()
    tagged = [tagmod.parse(ext[tagmod.KEY]) for _, _, ext in tags_of(str(z.data_fs))
              if tagmod.KEY in ext]
    assert len(tagged) == 3  # the root's creation, then ours
    tagged = tagged[1:]
    # The ZEO storage is named after the id the client sends the daemon.
    name = tagmod.storage_name(z.storage_id)
    assert all(name in t.storages for t in tagged)
    assert len(tagged[0].storages) == 2 and tagged[1].storages == [name]


def test_tags_survive_copy_transactions_from_pack_and_repozo(tmp_path):
    install_without_daemon()
    src = str(tmp_path / "src.fs")
    m = Multi({"a": FileStorage(src)})
    try:
        for _ in range(5):
            m.commit("a")
        time.sleep(0.05)
    finally:
        m.close()
    tidstorage_client.uninstall(timeout=0)
    original = {tid: ext.get(tagmod.KEY) for tid, _, ext in tags_of(src)}
    assert sum(v is not None for v in original.values()) == 6  # the root's creation + 5

    # copyTransactionsFrom
    copy = str(tmp_path / "copy.fs")
    s, d = FileStorage(src, read_only=True), FileStorage(copy)
    try:
        d.copyTransactionsFrom(s)
    finally:
        s.close()
        d.close()
    assert {tid: ext.get(tagmod.KEY) for tid, _, ext in tags_of(copy)} == original

    # pack: every transaction keeps a live record, so all stay, marked 'p'.
    packed = str(tmp_path / "packed.fs")
    shutil.copyfile(src, packed)
    fs = FileStorage(packed)
    try:
        fs.pack(time.time(), referencesf)
    finally:
        fs.close()
    after = tags_of(packed)
    kept = {tid: ext.get(tagmod.KEY) for tid, _, ext in after}
    # Pack drops the root's creation (its only record was superseded); every
    # transaction it keeps keeps its tag, and each of ours has a live object.
    assert kept.items() <= original.items()
    assert len(kept) == 5 and min(original) not in kept
    assert {status for _, status, _ in after} == {"p"}
    ours = binary_tags(packed)
    if ours is not None:
        assert ours == kept

    # repozo: a full backup, more commits, an incremental, a restore.
    repo = tmp_path / "repo"
    repo.mkdir()
    live = str(tmp_path / "live.fs")
    shutil.copyfile(src, live)

    def repozo(*args):
        r = subprocess.run([sys.executable, "-m", "ZODB.scripts.repozo", *args],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr

    repozo("-B", "-F", "-r", str(repo), "-f", live)
    install_without_daemon()
    m = Multi({"a": FileStorage(live)})
    try:
        m.commit("a")
        m.commit("a")
    finally:
        m.close()
    tidstorage_client.uninstall(timeout=0)
    time.sleep(1.1)  # repozo names backups by the second
    repozo("-B", "-r", str(repo), "-f", live)
    restored = str(tmp_path / "restored.fs")
    repozo("-R", "-r", str(repo), "-o", restored)
    want = {tid: ext.get(tagmod.KEY) for tid, _, ext in tags_of(live)}
    assert sum(v is not None for v in want.values()) == 8
    assert {tid: ext.get(tagmod.KEY) for tid, _, ext in tags_of(restored)} == want
    ours = binary_tags(restored)
    if ours is not None:
        assert ours == want
    for p in (src, copy, packed, live, restored):
        for suffix in (".index", ".lock", ".tmp", ".old"):
            if os.path.exists(p + suffix):
                os.remove(p + suffix)


def test_tag_format():
    v = tagmod.make(('[[["10.0.0.5", 8100]], "1"]', "/srv/zodb/main/Data.fs"))
    t = tagmod.parse(v)
    assert v == "1 %016x %x %s" % (t.commit_id, t.start_ms, " ".join(t.storages))
    assert t.storages == sorted(["%08x" % zlib.crc32(b'[[["10.0.0.5", 8100]], "1"]'),
                                 "%08x" % zlib.crc32(b"/srv/zodb/main/Data.fs")])
    for bad in ["2 0000000000000000 1 00000000", "1 000 1 00000000", "1 0000000000000000 1",
                "1 0000000000000000 1 0000000g", "1 0000000000000000 1 00000002 00000001"]:
        with pytest.raises(ValueError):
            tagmod.parse(bad)
    # Each attempt draws its own id, whatever the application does with the
    # module-level generator...
    import random

    random.seed(7)
    first = [tagmod.parse(tagmod.make(("x",))).commit_id for _ in range(1000)]
    random.seed(7)
    again = [tagmod.parse(tagmod.make(("x",))).commit_id for _ in range(1000)]
    assert len(set(first + again)) == 2000


def test_forked_children_draw_different_commit_ids():
    # ...and in forked children (a preforking server): the generator is
    # reseeded after fork.
    import os

    r, w = os.pipe()
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.write(w, b"%s\n" % tagmod.make(("x",)).split()[1].encode())
            os._exit(0)
        pids.append(pid)
    os.close(w)
    for pid in pids:
        os.waitpid(pid, 0)
    with os.fdopen(r) as f:
        ids = f.read().split()
    assert len(ids) == 2 and ids[0] != ids[1]


def test_a_forked_child_reports_with_its_own_pid():
    import os

    client = install_without_daemon()
    parent = client.transaction_id()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, client.transaction_id().encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r) as f:
        child = f.read()
    assert parent.split("_")[0].endswith(":%d" % os.getpid())
    assert child.split("_")[0].endswith(":%d" % pid)
