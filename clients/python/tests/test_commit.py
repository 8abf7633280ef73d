"""The client against real storages (FileStorage, ZEO 6) and the real daemon
(or a recording fake one where the raw bytes matter)."""

import logging
import os
import struct
import subprocess
import sys
import threading

import pytest
import transaction
import ZODB
from ZODB.FileStorage import FileStorage

import tidharness
from tidharness import Daemon, Recorder, ZeoServer, wait_until
import tidstorage_client


def u64(b):
    return struct.unpack(">Q", b)[0]


class Multi:
    """One multi-database: name -> storage; a connection per database."""

    def __init__(self, storages):
        self.dbs = {}
        for name, st in storages.items():
            ZODB.DB(st, databases=self.dbs, database_name=name)
        self.tm = transaction.TransactionManager()
        first = next(iter(storages))
        self.root_conn = self.dbs[first].open(transaction_manager=self.tm)
        self.conns = {n: self.root_conn.get_connection(n) for n in storages}

    def write(self, names, value):
        for n in names:
            self.conns[n].root()["v"] = value

    def commit(self, names, value):
        self.write(names, value)
        self.tm.commit()

    def tid(self, name):
        return u64(self.conns[name].root()._p_serial)

    def close(self):
        self.tm.abort()
        for db in self.dbs.values():
            db.close()


def storage_id(st):
    return tidstorage_client.default_storage_id(st)


def bootstrap(daemon):
    with daemon.conn() as c:
        wait_until(c.bootstraped, what="bootstrap")



def settled(daemon):
    """The daemon's INFO once the client's hold (own FileStorages, while
    commits come: one transaction in flight, renewed at every turn of the
    background thread) ended, i.e. at most two naps of that thread after the
    last commit (bounded)."""
    sender = tidstorage_client.installed().sender
    wait_until(lambda: sender.stats()["hold"] is None and sender.flush(1.0),
               what="the client's hold ended")
    return daemon.info()

def test_commit_on_two_filestorages_and_two_zeo_storages_reports_real_tids(tmp_path):
    daemon = Daemon(str(tmp_path))
    client = tidstorage_client.install(daemon.address, reconnect_interval=0.1)
    assert client.sender.connected()
    z1 = ZeoServer(tmp_path / "z1.fs")
    z2 = ZeoServer(tmp_path / "z2.fs")
    storages = {
        "fs1": FileStorage(str(tmp_path / "a.fs")),
        "fs2": FileStorage(str(tmp_path / "b.fs")),
        "zeo1": z1.client_storage(),
        "zeo2": z2.client_storage(),
    }
    m = Multi(storages)
    try:
        # Creating the databases committed their roots: bootstrap has started.
        bootstrap(daemon)
        m.commit(storages, 1)
        expected = {storage_id(st): m.tid(n) for n, st in storages.items()}
        assert expected[z1.storage_id] == u64(storages["zeo1"].lastTransaction())
        assert str(tmp_path / "a.fs") in expected
        wait_until(lambda: daemon.dump() == expected, what="DUMP == %r" % expected)
        wait_until(lambda: settled(daemon)["in_flight"] == 0, what="nothing in flight")
        # Only two databases touched: only those two move.
        m.commit(["fs2", "zeo1"], 2)
        expected[storage_id(storages["fs2"])] = m.tid("fs2")
        expected[z1.storage_id] = m.tid("zeo1")
        wait_until(lambda: daemon.dump() == expected, what="DUMP == %r" % expected)
    finally:
        m.close()


class FailingVote:
    """A resource manager refusing the vote, sorted after the storages."""

    def sortKey(self):
        return "~zzz"

    def abort(self, txn):
        pass

    def tpc_begin(self, txn):
        pass

    def commit(self, txn):
        pass

    def tpc_vote(self, txn):
        raise RuntimeError("vote refused by the test")

    def tpc_finish(self, txn):
        raise AssertionError("not reached")

    def tpc_abort(self, txn):
        pass


def test_failure_in_vote_is_reported_as_abort(tmp_path):
    daemon = Daemon(str(tmp_path))
    tidstorage_client.install(daemon.address, reconnect_interval=0.1)
    a, b = FileStorage(str(tmp_path / "a.fs")), FileStorage(str(tmp_path / "b.fs"))
    m = Multi({"a": a, "b": b})
    try:
        bootstrap(daemon)
        m.commit(["a", "b"], 1)
        point = {storage_id(a): m.tid("a"), storage_id(b): m.tid("b")}
        wait_until(lambda: daemon.dump() == point, what="first point")
        m.write(["a", "b"], 2)
        m.tm.get().join(FailingVote())
        with pytest.raises(RuntimeError, match="vote refused"):
            m.tm.commit()
        m.tm.abort()
        # The same thread's next commit: had the failed one not been ended
        # by ABORT, its BEGIN would make an orphan that blocks for ever.
        m.commit(["a"], 3)
        point[storage_id(a)] = m.tid("a")
        wait_until(lambda: daemon.dump() == point, what="point after the abort")
        info = wait_until(lambda: (lambda i: i["in_flight"] == 0 and i)(settled(daemon)),
                          what="nothing in flight")
        assert info["counters"]["orphans"] == 0
        assert info["counters"]["unknown_transactions"] == 0
    finally:
        m.close()


def test_partial_commit_sends_nothing_more_and_keeps_the_point_below_it(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tidstorage_client")
    daemon = Daemon(str(tmp_path))
    tidstorage_client.install(daemon.address, reconnect_interval=0.1)
    a, b = FileStorage(str(tmp_path / "a.fs")), FileStorage(str(tmp_path / "b.fs"))
    m = Multi({"a": a, "b": b})
    try:
        bootstrap(daemon)
        m.commit(["a", "b"], 1)
        point = {storage_id(a): m.tid("a"), storage_id(b): m.tid("b")}
        wait_until(lambda: daemon.dump() == point, what="first point")

        def broken_finish(txn, f=None):
            raise OSError("disk gone (test)")

        # Storages finish in sortKey order (their paths): a, then b fails.
        b.tpc_finish = broken_finish
        m.write(["a", "b"], 2)
        with pytest.raises(OSError, match="disk gone"):
            m.tm.commit()
        m.tm.abort()
        del b.tpc_finish
        partial_tid = u64(a.lastTransaction())
        assert partial_tid > point[storage_id(a)]
        errors = [r for r in caplog.records if "PARTIAL COMMIT" in r.getMessage()]
        assert len(errors) == 1 and errors[0].levelno == logging.ERROR
        assert "tidstorage cut" in errors[0].getMessage()
        assert storage_id(b) in errors[0].getMessage()
        wait_until(lambda: settled(daemon)["in_flight"] == 1, what="the partial commit in flight")

        # The thread carries on: its next commit goes through and is reported...
        m.commit(["a", "b"], 3)
        wait_until(lambda: daemon.info()["counters"]["orphans"] == 1,
                   what="the partial commit kept as an orphan")
        # (The COMMIT of the next commit may wait commit_delay for company.)
        wait_until(lambda: settled(daemon)["in_flight"] == 1, what="the next commit reported")
        # ...but nothing at or past the partial commit on a is ever published.
        with daemon.conn() as c:
            info = c.info()
            assert info["in_flight"] == 1
            assert c.dump()[storage_id(a)] < partial_tid
        assert tidstorage_client.installed().partial_commits == 1
    finally:
        m.close()


def test_a_hold_cut_off_by_a_lost_connection_is_ended_on_the_next_one(tmp_path):
    # The hold's BEGIN reached the daemon on the connection that was lost;
    # the daemon keeps it in flight, so its ABORT goes out on the next
    # connection, or the point would stop on those storages for good.
    daemon = Daemon(str(tmp_path))
    client = tidstorage_client.install(daemon.address, reconnect_interval=0.1)
    sender = client.sender
    a, b = FileStorage(str(tmp_path / "a.fs")), FileStorage(str(tmp_path / "b.fs"))
    m = Multi({"a": a, "b": b})
    try:
        bootstrap(daemon)
        held = None
        for i in range(100):  # a hold ends a turn after the commits stop: catch one
            m.commit(["a", "b"], i)
            with sender._lock:
                if sender._hold is not None:
                    held = sender._hold[0][:-1].decode()
                    sender._lost_locked(OSError("connection cut by the test"))
                    break
        assert held is not None
        wait_until(lambda: sender.wait_connected(0.1), what="the client reconnected")
        m.commit(["a", "b"], 1000)
        point = {storage_id(a): m.tid("a"), storage_id(b): m.tid("b")}
        wait_until(lambda: daemon.dump() == point, what="the point at the last commit")
        info = wait_until(lambda: (lambda i: i["in_flight"] == 0 and i)(settled(daemon)),
                          what="nothing in flight, the cut-off hold %s included" % held)
        assert info["counters"]["orphans"] == 0
    finally:
        m.close()


def test_daemon_down_never_breaks_commits_and_logs_once_per_outage(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tidstorage_client")
    port = tidharness.free_port()
    tidstorage_client.install("127.0.0.1:%d" % port, reconnect_interval=0.05)
    fs = FileStorage(str(tmp_path / "a.fs"))
    m = Multi({"a": fs})

    def lines(word):
        return [r for r in caplog.records if word in r.getMessage()]

    try:
        for i in range(20):
            m.commit(["a"], i)  # nothing listens: must not raise
        assert len(lines("cannot reach")) == 1
        daemon = Daemon(str(tmp_path), port=port)
        wait_until(lambda: lines("reconnected to"), what="reconnection log line")
        for i in range(5):
            m.commit(["a"], 100 + i)
        bootstrap(daemon)
        m.commit(["a"], 200)
        wait_until(lambda: daemon.dump().get(storage_id(fs)) == m.tid("a"),
                   what="the daemon sees commits after reconnecting")
        daemon.kill()
        for i in range(30):
            m.commit(["a"], 300 + i)
        wait_until(lambda: lines("lost the connection"), what="loss log line")
        for i in range(30):
            m.commit(["a"], 400 + i)
        assert len(lines("lost the connection")) == 1
        daemon = Daemon(str(tmp_path / ".."), port=port, status_file=str(tmp_path / "s2.tid"))
        wait_until(lambda: len(lines("reconnected to")) == 2, what="second reconnection")
        assert len(lines("cannot reach")) == 1
        assert len(lines("lost the connection")) == 1
        # No reconnection storm: attempts are rate-limited, not one per commit.
        assert tidstorage_client.installed().sender.connected()
    finally:
        m.close()


def shared_id(st):
    """Another id for a local FileStorage (the daemon names storages by id)."""
    return "shared:" + tidstorage_client.default_storage_id(st)


def test_begin_lists_databases_joined_by_before_commit_hooks_and_arrives_first(tmp_path):
    rec = Recorder()
    client = tidstorage_client.install(rec.address, client_id="zope1:8080",
                                       storage_id=shared_id)
    a, b = FileStorage(str(tmp_path / "a.fs")), FileStorage(str(tmp_path / "b.fs"))
    m = Multi({"a": a, "b": b})
    try:
        n0 = len(rec.wait_commands(0))
        txn_id = "zope1:8080_%x" % threading.get_ident()
        # Set-up commits may still be arriving at the recorder: look for
        # this transaction's own BEGIN and COMMIT, not for positions.
        want_begin = ("BEGIN", txn_id, sorted([shared_id(a), shared_id(b)]))
        begin_seen_at_finish = []
        real_finish = a.tpc_finish

        def checking_finish(txn, f=None):
            # The BEGIN must be at the daemon before any storage finishes
            # (it was written before this call; the wait is its transit).
            try:
                wait_until(lambda: want_begin in rec.commands()[n0:], 5,
                           "BEGIN at the recorder")
                begin_seen_at_finish.append(True)
            except AssertionError:
                begin_seen_at_finish.append(False)
            return real_finish(txn, f)

        a.tpc_finish = checking_finish
        m.write(["a"], 1)
        m.tm.get().addBeforeCommitHook(lambda: m.write(["b"], 1))
        m.tm.commit()
        del a.tpc_finish
        want_commit = ("COMMIT", txn_id, {shared_id(a): m.tid("a"),
                                          shared_id(b): m.tid("b")})
        wait_until(lambda: want_commit in rec.commands()[n0:], 10, "COMMIT at the recorder")
        cmds = rec.commands()[n0:]
        assert want_begin in cmds
        assert cmds.index(want_begin) < cmds.index(want_commit)
        assert begin_seen_at_finish == [True]

        # The id is reused by this thread and differs on another one.
        m.commit(["a"], 2)
        other = []

        def in_thread():
            tm = transaction.TransactionManager()
            conn = m.dbs["b"].open(transaction_manager=tm)
            conn.root()["w"] = 1
            tm.commit()
            other.append("zope1:8080_%x" % threading.get_ident())
            conn.close()

        t = threading.Thread(target=in_thread)
        t.start()
        t.join(30)
        # Everything sent before our COMMIT arrived before it (one
        # connection, in order): count from just after it.
        base = n0 + cmds.index(want_commit) + 1
        cmds = rec.wait_commands(base + 4)[base:]
        assert [c[1] for c in cmds[0:2]] == [txn_id, txn_id]
        assert [c[1] for c in cmds[2:4]] == other * 2 and other[0] != txn_id
        # A commit touching no tracked storage sends nothing.
        from ZODB.MappingStorage import MappingStorage

        mdb = ZODB.DB(MappingStorage())
        with mdb.transaction() as conn:
            conn.root()["x"] = 1
        mdb.close()
        m.commit(["a"], 3)
        cmds = rec.wait_commands(base + 6)[base:]
        assert len(cmds) == 6 and cmds[4][0] == "BEGIN"
        assert client.sender.stats()["dropped_begins"] == 0
    finally:
        m.close()
        rec.close()


def test_bootstrap_helper_commits_through_zeo_and_reports_it(tmp_path):
    daemon = Daemon(str(tmp_path))
    zeo = ZeoServer(tmp_path / "z.fs")
    st = zeo.client_storage()
    db = ZODB.DB(st)
    with db.transaction() as conn:
        conn.root()["data"] = "kept"
    before = u64(st.lastTransaction())
    db.close()
    env = {"TIDSTORAGE_STORAGE_ID": zeo.storage_id, "TIDSTORAGE_MOUNTPOINT": "",
           "TIDSTORAGE_DATA_FS": str(zeo.data_fs), "TIDSTORAGE_SERVER": daemon.address}
    helper = [sys.executable, "-m", "tidstorage_client.touch", "--timeout", "20"]
    for _ in range(2):  # the first ends a transaction: bootstrap starts
        r = subprocess.run(helper, env=tidharness.python_env(env), capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    bootstrap(daemon)
    # Two more: the point is recomputed at the next transaction end.
    r = subprocess.run(helper, env=tidharness.python_env(env), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    st = zeo.client_storage()
    db = ZODB.DB(st)
    try:
        last = u64(st.lastTransaction())
        assert last > before
        wait_until(lambda: daemon.dump() == {zeo.storage_id: last}, what="helper's TID")
        with db.transaction() as conn:
            assert dict(conn.root()) == {"data": "kept"}
    finally:
        db.close()
    # The installed console script is the same program.
    script = os.path.join(os.path.dirname(sys.executable), "tidstorage-zodb-touch")
    if os.path.exists(script):
        r = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "TIDSTORAGE_STORAGE_ID" in r.stdout


def test_helper_fails_loudly_when_the_storage_is_unreachable(tmp_path):
    env = {"TIDSTORAGE_STORAGE_ID": '[[["127.0.0.1", %d]], "1"]' % tidharness.free_port(),
           "TIDSTORAGE_SERVER": "127.0.0.1:%d" % tidharness.free_port()}
    r = subprocess.run([sys.executable, "-m", "tidstorage_client.touch", "--timeout", "1"],
                       env=tidharness.python_env(env), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert "cannot" in r.stderr


# Own FileStorages: once a hold covers them, the committing thread writes
# nothing (the sender writes their BEGINs and COMMITs a batch at a time and
# renews the hold at each of its turns: with a delay of an hour, none during
# the test). With commit_delay=0 there are no holds: the committing
# thread writes each BEGIN at the first tpc_finish, with the COMMITs queued
# since, and every COMMIT is written without waiting for company.
@pytest.mark.parametrize("delay", [3600.0, 0])
def test_back_to_back_commits_cost_one_write_each(tmp_path, delay):
    rec = Recorder()
    client = tidstorage_client.install(rec.address, client_id="zope1:8080", commit_delay=delay)
    a, b = FileStorage(str(tmp_path / "a.fs")), FileStorage(str(tmp_path / "b.fs"))
    m = Multi({"a": a, "b": b})
    try:
        assert client.sender.flush(5.0)
        s0 = client.sender.stats()
        for i in range(50):
            m.commit(["a", "b"], i)
        s1 = client.sender.stats()

        # The test's own commands are the two-storage ones: a set-up commit's
        # COMMIT may reach the recorder after the flush. Holds are not theirs.
        def mine():
            return [c for c in rec.commands() if len(c[2] or ()) == 2 and "_hold." not in c[1]]
        if delay:
            # At most the first commit opens a hold (the set-up commits may
            # have); the other BEGINs wait for the sender.
            assert s1["writes"] - s0["writes"] <= 1
            assert s1["holds_opened"] - s0["holds_opened"] <= 1
            assert s1["hold"] == "zope1:8080_hold.%d" % (s1["holds_opened"] % 2)
            assert client.sender.flush(5.0)
            assert client.sender.stats()["writes"] - s0["writes"] <= 2
        else:
            assert s1["holds_opened"] == 0 and s1["hold"] is None
        cmds = wait_until(lambda: len(mine()) >= 100 and mine(), tidharness.DEADLINE,
                          "the test's 100 commands at the recorder")
        assert [c[0] for c in cmds] == ["BEGIN", "COMMIT"] * 50
        # In commit order: each storage's TIDs increase.
        for st in (a, b):
            tids = [c[2][storage_id(st)] for c in cmds[1::2]]
            assert tids == sorted(set(tids))
    finally:
        m.close()
        rec.close()
