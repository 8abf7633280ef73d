"""The client's queue (``tidstorage_client.sender``): committing threads only
append to it, a background thread writes it. Checked on the raw bytes at a
recording fake daemon: the order the daemon's floors rest on, the BEGIN that
must be out before a commit's first tpc_finish, the bounds, fork."""

import logging
import os
import threading

import pytest
import transaction
import ZODB
from persistent.mapping import PersistentMapping
from ZODB.FileStorage import FileStorage
from ZODB.utils import u64

import tidharness
from tidharness import Recorder, wait_until
import tidstorage_client
from tidstorage_client.touch import EmptyCommit


def shared_id(st):
    """Another id for a local FileStorage (the daemon names storages by id)."""
    return "shared:" + tidstorage_client.default_storage_id(st)


def own_id(st):
    return tidstorage_client.default_storage_id(st)


class Multi:
    """Two FileStorages in one multi-database; ``conns(tm)`` opens one
    connection per database for a transaction manager."""

    def __init__(self, tmp_path):
        self.storages = {n: FileStorage(str(tmp_path / ("%s.fs" % n))) for n in "ab"}
        self.dbs = {}
        for n, st in self.storages.items():
            ZODB.DB(st, databases=self.dbs, database_name=n)

    def conns(self, tm):
        c = self.dbs["a"].open(transaction_manager=tm)
        return {"a": c, "b": c.get_connection("b")}

    def close(self):
        for db in self.dbs.values():
            db.close()


def stall(sender):
    """Stops the sender's thread (as if it could never get the GIL): only
    committing threads write from now on."""
    assert sender.flush(5.0)
    sender._closed = True
    sender._wake()
    sender._thread.join(tidharness.DEADLINE)
    assert not sender._thread.is_alive()
    sender._closed = False


def floor_violations(cmds):
    """[(txn, earlier txn, storage)] for every BEGIN that reached the daemon
    after a COMMIT carrying a TID at or above the one its own COMMIT names on
    the same storage, unless, from that COMMIT until the BEGIN, another
    transaction in flight at the daemon (the client's hold) had a floor on
    that storage below the TID. Otherwise the daemon's floor for that
    transaction would be at or above a TID the transaction took (SPEC 3.1),
    with nothing else keeping the point below it, and a point could publish
    half of it. ``cmds``: ``parse_commands`` output, in arrival order; a
    BEGIN pairs with the next COMMIT of its transaction id."""
    opened, pairs = {}, []
    for i, (word, txn, payload) in enumerate(cmds):
        if word == "BEGIN":
            opened[txn] = (i, payload)
        elif word == "COMMIT" and txn in opened:
            pos, storages = opened.pop(txn)
            pairs.append((pos, txn, storages, payload))
    # lowest[k][s]: the lowest floor on s of the transactions in flight at
    # the daemon once cmds[:k] were applied (-1: one began with nothing
    # known of s); absent: none in flight on s.
    lowest, known, inflight = [], {}, {}
    for word, txn, payload in cmds:
        low = {}
        for floors in inflight.values():
            for st, f in floors.items():
                low[st] = min(low.get(st, f), f)
        lowest.append(low)
        if word == "BEGIN":
            inflight[txn] = {st: known.get(st, -1) for st in payload}
        elif word == "COMMIT":
            for st, t in payload.items():
                known[st] = max(known.get(st, -1), t)
            inflight.pop(txn, None)
        elif word == "ABORT":
            inflight.pop(txn, None)
    bad = []
    for pos, txn, storages, tids in pairs:
        for s in storages:
            if s not in tids:
                continue
            first = next((j for j, (word, _, payload) in enumerate(cmds[:pos])
                          if word == "COMMIT" and payload.get(s, -1) >= tids[s]), None)
            if first is None:
                continue
            if not all(lowest[k].get(s, tids[s]) < tids[s] for k in range(first + 1, pos + 1)):
                bad.append((txn, cmds[first][1], s))
    return bad


def test_floor_violations_finds_a_late_begin():
    # The checker itself: a BEGIN arriving after another commit's higher TID,
    # with or without a hold keeping the point below it all along.
    ok = [("BEGIN", "x", ["s"]), ("COMMIT", "y", {"s": 5}), ("COMMIT", "x", {"s": 6})]
    late = [("COMMIT", "y", {"s": 7}), ("BEGIN", "x", ["s"]), ("COMMIT", "x", {"s": 6})]
    held = [("COMMIT", "z", {"s": 5}), ("BEGIN", "h", ["s"]), ("COMMIT", "y", {"s": 7}),
            ("BEGIN", "x", ["s"]), ("ABORT", "h", None), ("COMMIT", "x", {"s": 6})]
    # The hold began once the daemon knew 7: its floor does not keep the
    # point below 6.
    held_too_late = [("COMMIT", "y", {"s": 7}), ("BEGIN", "h", ["s"]),
                     ("BEGIN", "x", ["s"]), ("COMMIT", "x", {"s": 6})]
    # The hold ended before the BEGIN arrived.
    released = [("BEGIN", "h", ["s"]), ("COMMIT", "y", {"s": 7}), ("ABORT", "h", None),
                ("BEGIN", "x", ["s"]), ("COMMIT", "x", {"s": 6})]
    # A hold on another storage.
    elsewhere = [("BEGIN", "h", ["t"]), ("COMMIT", "y", {"s": 7}),
                 ("BEGIN", "x", ["s"]), ("COMMIT", "x", {"s": 6})]
    assert floor_violations(ok) == []
    assert floor_violations(late) == [("x", "y", "s")]
    assert floor_violations(held) == []
    assert floor_violations(held_too_late) == [("x", "y", "s")]
    assert floor_violations(released) == [("x", "y", "s")]
    assert floor_violations(elsewhere) == [("x", "y", "s")]


# The three ways a BEGIN travels (sender's module documentation): a commit
# on FileStorages under their own paths (the committing thread writes it,
# corked: the daemon is on this host), under other ids (written, sent), taken
# as remote (the sender thread is woken for it).
KINDS = ["own", "local", "remote"]


def setup_kind(kind, monkeypatch):
    """The storage_id function for ``kind``; patches the client for remote."""
    if kind == "remote":
        monkeypatch.setattr(tidstorage_client, "_kind",
                            lambda storage, sid: tidstorage_client._REMOTE)
    return own_id if kind == "own" else shared_id


@pytest.mark.parametrize("kind", KINDS)
def test_threads_committing_keep_every_floor_below_its_tids(tmp_path, kind, monkeypatch):
    rec = Recorder()
    client = tidstorage_client.install(rec.address, client_id="qt:1",
                                       storage_id=setup_kind(kind, monkeypatch))
    m = Multi(tmp_path)
    threads, per_thread = 4, 25
    tm = transaction.TransactionManager()
    conns = m.conns(tm)
    for t in range(threads):
        for n in "ab":
            conns[n].root()["t%d" % t] = PersistentMapping()
    tm.commit()
    conns["a"].close()
    errors = []

    def work(t):
        try:
            tm = transaction.TransactionManager()
            conns = m.conns(tm)
            for i in range(per_thread):
                names = "ab" if i % 3 else "ab"[i % 2]
                for n in names:
                    conns[n].root()["t%d" % t][i] = i
                tm.commit()
            conns["a"].close()
        except Exception as e:  # pragma: no cover (shown by the assertion)
            errors.append(e)

    try:
        ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(tidharness.DEADLINE)
        assert not errors
        assert client.sender.flush(5.0)
        main = "qt:1_%x" % threading.get_ident()

        def workers():
            return [c for c in rec.commands() if c[1] != main and "_hold." not in c[1]]
        mine = wait_until(lambda: len(workers()) >= threads * per_thread * 2 and workers(),
                          what="every command")
        assert [c[0] for c in mine].count("BEGIN") == threads * per_thread
        # The whole stream, the set-up commits of this thread included.
        assert floor_violations(rec.commands()) == []
        stats = client.sender.stats()
        assert stats["dropped_begins"] == stats["dropped_queue_full"] == 0
    finally:
        m.close()
        rec.close()


@pytest.mark.parametrize("kind", ["local", "remote"])
def test_a_begin_is_out_before_the_first_tpc_finish_even_if_the_sender_never_runs(
        tmp_path, kind, monkeypatch):
    # What another process's commit right after this storage finishes needs:
    # the BEGIN already sent, whether or not the sender thread was asked to
    # write it. (Own FileStorages: the next test.)
    rec = Recorder()
    client = tidstorage_client.install(rec.address, client_id="qt:2",
                                       storage_id=setup_kind(kind, monkeypatch))
    m = Multi(tmp_path)
    a = m.storages["a"]
    real_finish = a.tpc_finish
    seen = []

    def commit_checking(thread_id, patience, savepoint=False):
        # Runs a two-database commit; at a's tpc_finish (storages finish in
        # sortKey order: a first), notes whether its BEGIN is at the daemon.
        want = ("BEGIN", "qt:2_%x" % thread_id, sorted(shared_id(st)
                                                       for st in m.storages.values()))

        def checking_finish(txn, f=None):
            # Sent, not waiting corked in the kernel (the kernel would send
            # it within 200 ms: the wait below would not tell).
            assert not client.sender._corked
            try:
                wait_until(lambda: want in rec.commands(), patience, "the BEGIN")
                seen.append(True)
            except AssertionError:
                seen.append(False)
            return real_finish(txn, f)

        tm = transaction.TransactionManager()
        conns = m.conns(tm)
        a.tpc_finish = checking_finish
        try:
            for n in "ab":
                conns[n].root()["v"] = thread_id
            if savepoint:
                tm.savepoint()
                conns["a"].root()["w"] = thread_id
            tm.commit()
        finally:
            del a.tpc_finish
            conns["a"].close()

    try:
        stall(client.sender)
        inline = client.sender.stats()["begins_written_inline"]
        commit_checking(threading.get_ident(), tidharness.DEADLINE)
        assert seen == [True]
        assert client.sender.stats()["begins_written_inline"] == inline + 1
        # A savepoint puts a TmpStore in the connection's _storage until
        # the commit: its BEGIN is still queued and due, not written at once.
        commit_checking(threading.get_ident(), tidharness.DEADLINE, savepoint=True)
        assert seen == [True, True]
        assert client.sender.stats()["begins_written_inline"] == inline + 2

        # The same commit without the committing thread's write (what the
        # client would do if it only trusted its sender thread): the BEGIN
        # is not at the daemon when the storage finishes.
        client.sender.begin_due = lambda rec: None
        t = threading.Thread(target=lambda: commit_checking(threading.get_ident(), 1.0))
        t.start()
        t.join(tidharness.DEADLINE)
        assert seen == [True, True, False]
    finally:
        m.close()
        rec.close()


def stalled_child_sender(control):
    """In a forked child: the installed client's sender, connected, its
    thread stalled (only what committing threads write can arrive); with
    ``control``, without those writes too (no holds, no due BEGINs)."""
    sender = tidstorage_client.installed().sender
    sender.wait_connected(10.0)
    stall(sender)
    if control:
        sender.begin_due = lambda rec: None
        sender.post_own = lambda rec: False
    return sender


def in_flight(cmds):
    """{txn: storages} of the transactions a daemon fed ``cmds`` would hold
    in flight at the end (begun, never committed nor aborted)."""
    out = {}
    for word, txn, payload in cmds:
        if word == "BEGIN":
            out[txn] = payload
        else:
            out.pop(txn, None)
    return out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("control", [False, True], ids=["", "without-the-write"])
def test_a_process_killed_in_tpc_finish_is_held_in_flight(
        tmp_path, kind, control, monkeypatch):
    # The crash this ordering is for: a process dies once a storage may hold
    # its commit; the daemon must keep the point below that commit, so the
    # commit's BEGIN must reach it, or (own FileStorages) the hold that
    # covers it. The child stalls its sender thread (so only what the
    # committing threads wrote can arrive), commits once (on own files that
    # opens a hold), then kills itself inside the first tpc_finish of a
    # second commit, on another thread. As a control, the same without the
    # committing threads' writes (no holds, no due BEGINs): then nothing
    # keeps the point below the second commit.
    rec = Recorder()
    client = tidstorage_client.install(rec.address, client_id="qt:6",
                                       storage_id=setup_kind(kind, monkeypatch))
    m = Multi(tmp_path)
    ids = sorted(setup_kind(kind, monkeypatch)(st) for st in m.storages.values())
    first = "qt:6_%x" % threading.get_ident()  # the child's main thread keeps it
    # The parent's own commits (the databases' roots) and their hold are
    # over at the recorder before the child reuses the client id.
    wait_until(lambda: client.sender.flush(1.0) and client.sender.stats()["hold"] is None
               and not in_flight(rec.commands()), what="the parent's commands ended")
    pid = os.fork()
    if pid == 0:
        try:
            stalled_child_sender(control)

            def commit(v):
                tm = transaction.TransactionManager()
                conns = m.conns(tm)
                for n in "ab":
                    conns[n].root()["v"] = v
                tm.commit()
            commit(0)

            def die(txn, f=None):
                os.kill(os.getpid(), 9)
            m.storages["a"].tpc_finish = die
            t = threading.Thread(target=commit, args=(1,))
            t.start()
            t.join(tidharness.DEADLINE)
        finally:
            os._exit(3)  # not reached: killed in tpc_finish
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
    m.close()

    # The child's connection ends (the kernel closed it): what it had
    # written, corked or not, was read before that end.
    wait_until(lambda: rec.eofs >= 1, what="the end of the child's connection")
    cmds = rec.commands()
    held = in_flight(cmds)
    second = [c[1] for c in cmds if c[0] == "BEGIN" and c[2] == ids
              and c[1] != first and "_hold." not in c[1]]
    holds = [t for t, storages in held.items() if "_hold." in t and set(ids) <= set(storages)]
    if control:
        assert second == [] and holds == []
    elif kind == "own":
        # Its BEGIN died with the process; the hold stays in flight.
        assert second == [] and len(holds) == 1
    else:
        assert len(second) == 1 and second[0] in held and holds == []
    rec.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("control", [False, True], ids=["", "without-the-hold"])
def test_the_point_never_passes_a_commit_its_killed_process_left_half_done(
        tmp_path, control):
    # The whole story, with the real daemon: a process owning two
    # FileStorages is killed between their tpc_finish (the commit is on a,
    # not on b) while its BEGIN is still queued, so only the hold can stand
    # for it; the next process opens the files and commits. The point must
    # stay below the half commit on a. As a control, the same process
    # without the hold (nor its due BEGINs): the next process's commits
    # carry the point past it, a split a cut at that point would keep.
    daemon = tidharness.Daemon(str(tmp_path))
    paths = {n: str(tmp_path / ("%s.fs" % n)) for n in "ab"}
    pid = os.fork()
    if pid == 0:
        try:
            tidstorage_client.install(daemon.address, client_id="kt:1")
            sender = stalled_child_sender(control)
            storages = {n: FileStorage(p) for n, p in paths.items()}
            dbs = {}
            for n, st in storages.items():
                ZODB.DB(st, databases=dbs, database_name=n)
            tm = transaction.TransactionManager()
            c = dbs["a"].open(transaction_manager=tm)
            conns = {"a": c, "b": c.get_connection("b")}
            for n in "ab":
                conns[n].root()["v"] = 0
            tm.commit()
            # Everything queued so far is written (the commits whole, at
            # the daemon); in the test the hold stays open.
            with sender._lock:
                sender._drain_locked()
            assert (sender._hold is None) == control

            def die(txn, f=None):
                os.kill(os.getpid(), 9)
            storages["b"].tpc_finish = die
            for n in "ab":
                conns[n].root()["v"] = 1
            tm.commit()
        finally:
            os._exit(3)  # not reached: killed in b's tpc_finish
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9

    # The next process (this one): its files now, its own client.
    client = tidstorage_client.install(daemon.address, client_id="kt:2")
    m = Multi(tmp_path)
    try:
        # The half commit: a's last transaction, whose tag b lacks.
        ids = {n: [tidstorage_client.tag.parse(t.extension["tidstorage"]).commit_id
                   for t in m.storages[n].iterator()] for n in "ab"}
        assert ids["a"][-1] not in ids["b"] and ids["a"][-2] in ids["b"]
        half = u64(m.storages["a"].lastTransaction())
        tm = transaction.TransactionManager()
        conns = m.conns(tm)
        for i in range(3):
            for n in "ab":
                conns[n].root()["v"] = 10 + i
            tm.commit()
        last_a = u64(m.storages["a"].lastTransaction())
        a_id = own_id(m.storages["a"])
        if control:
            wait_until(lambda: daemon.dump().get(a_id, 0) >= last_a,
                       what="the point past the half commit")
        else:
            wait_until(lambda: client.sender.stats()["hold"] is None
                       and client.sender.flush(1.0) and daemon.info()["in_flight"] == 1,
                       what="only the dead process's hold in flight")
            for _ in range(20):  # bounded: the point never gets there
                assert daemon.dump().get(a_id, 0) < half
        conns["a"].close()
    finally:
        m.close()
        tidstorage_client.uninstall()
        daemon.stop()


def test_a_begin_the_hook_cannot_follow_leaves_before_the_commit_starts(tmp_path):
    # A resource manager on a tracked database that does not commit through
    # a ZODB connection (the bootstrap helper's): the client cannot count on
    # seeing its tpc_finish, so its BEGIN is written before the two-phase
    # commit, by the committing thread.
    rec = Recorder()
    client = tidstorage_client.install(rec.address, client_id="qt:3", storage_id=shared_id)
    sender = client.sender
    db = ZODB.DB(FileStorage(str(tmp_path / "a.fs")))
    written = []

    class Checking(EmptyCommit):
        def tpc_begin(self, txn):
            written.append(sender.stats()["writes"])
            super().tpc_begin(txn)

    def commit():
        tm = transaction.TransactionManager()
        tm.begin()
        tm.get().join(Checking(db))
        tm.commit()

    try:
        stall(sender)
        w0 = sender.stats()["writes"]
        commit()
        assert written == [w0 + 1]
        # The same with the resource taken for one the hook follows: the
        # BEGIN waits in the queue, unwritten when the commit starts.
        client._followed[type(None)] = True
        commit()
        assert written == [w0 + 1, w0 + 1]
    finally:
        db.close()
        rec.close()


class FailingVote:
    """A resource manager refusing the vote: the commit aborts before any
    tpc_finish, so nothing drains the queue on its way."""

    def sortKey(self):
        return "~zzz"

    def abort(self, txn):
        pass

    tpc_begin = commit = tpc_finish = tpc_abort = abort

    def tpc_vote(self, txn):
        raise RuntimeError("vote refused by the test")


@pytest.mark.parametrize("kind", ["own", "local"])
def test_a_full_queue_is_emptied_by_the_committing_thread(tmp_path, kind, monkeypatch):
    # Commits failing before tpc_finish (and, on own files under a hold,
    # every commit) leave their notifications queued for the sender thread.
    rec = Recorder()
    client = tidstorage_client.install(rec.address, client_id="qt:4", max_queue=20,
                                       storage_id=setup_kind(kind, monkeypatch))
    m = Multi(tmp_path)
    sender = client.sender
    try:
        stall(sender)
        tm = transaction.TransactionManager()
        conns = m.conns(tm)
        longest = 0
        for i in range(60):
            for n in "ab":
                conns[n].root()["v"] = i
            if i < 50:
                tm.get().join(FailingVote())
                with pytest.raises(RuntimeError):
                    tm.commit()
                tm.abort()
            else:
                tm.commit()
            longest = max(longest, len(sender._inbox))
        # Memory stays bounded: never more than max_queue waiting...
        assert longest <= 20
        assert sender.stats()["queue_full_helped"] >= 4
        # ...and nothing is lost: what the committing thread emptied was
        # written, in order (each commit: BEGIN, then ABORT or COMMIT; the
        # last COMMIT is still queued; on own files, what came after the
        # last time the queue was full too).
        every = ["BEGIN", "ABORT"] * 50 + ["BEGIN", "COMMIT"] * 10

        def mine():  # the set-up commits touch one database each
            return [c[0] for c in rec.commands() if "_hold." not in c[1] and (
                c[0] == "ABORT" or len(c[2] or ()) == 2)]
        if kind == "local":
            cmds = wait_until(lambda: len(mine()) >= 119 and mine(),
                              what="the emptied notifications")
            assert cmds == every[:119]
        else:
            cmds = wait_until(lambda: len(mine()) >= 100 and mine(),
                              what="the emptied notifications")
            assert cmds == every[:len(cmds)]
            assert sender.stats()["hold"] is not None
        conns["a"].close()
    finally:
        m.close()
        rec.close()


def test_while_disconnected_the_newest_commits_wait_within_max_queue_bytes(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tidstorage_client")
    port = tidharness.free_port()
    client = tidstorage_client.install("127.0.0.1:%d" % port, client_id="qt:5", wait=0,
                                       reconnect_interval=0.2, max_queue_bytes=2000)
    m = Multi(tmp_path)
    sender = client.sender
    rec = None
    try:
        tm = transaction.TransactionManager()
        conns = m.conns(tm)
        tids = []
        for i in range(60):
            for n in "ab":
                conns[n].root()["v"] = i
            tm.commit()
            tids.append(u64(conns["a"].root()._p_serial))
        wait_until(lambda: sender.stats()["dropped_queue_full"] > 0 and not sender._inbox,
                   what="drops")
        assert sender._queued_bytes <= 2000
        waiting = sender.stats()["queued"]
        full = [r for r in caplog.records if "full" in r.getMessage()]
        assert len(full) == 1 and full[0].levelno == logging.WARNING
        rec = Recorder(port=port)
        assert sender.flush(tidharness.DEADLINE)
        cmds = wait_until(lambda: len(rec.commands()) >= waiting and rec.commands(),
                          what="the kept COMMITs")
        # Only COMMITs (BEGINs are never sent late), the newest ones, in order.
        assert {c[0] for c in cmds} == {"COMMIT"}
        kept = [c[2][own_id(m.storages["a"])] for c in cmds]
        assert 3 <= len(kept) < 60
        assert kept == tids[-len(kept):]
        conns["a"].close()
    finally:
        m.close()
        if rec is not None:
            rec.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_reports_through_its_own_connection(tmp_path):
    rec = Recorder()
    tidstorage_client.install(rec.address)
    pid = os.fork()
    if pid == 0:  # the child: its own storage, its own sender thread
        code = 2
        try:
            # Commits made before the child's own connection is up are
            # dropped, as while the daemon is down: wait for it (bounded).
            if not tidstorage_client.installed().sender.wait_connected(10.0):
                os._exit(3)
            db = ZODB.DB(FileStorage(str(tmp_path / "child.fs")))
            with db.transaction() as conn:
                conn.root()["x"] = 1
            db.close()
            code = 0 if tidstorage_client.installed().sender.flush(10.0) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    child_txn = "%s_" % tidstorage_client.default_client_id().replace(
        ":%d" % os.getpid(), ":%d" % pid)

    def childs():
        return [c for c in rec.commands() if c[1].startswith(child_txn) and "_hold." not in c[1]]
    cmds = wait_until(lambda: len(childs()) >= 4 and childs(), what="the child's commands")
    # The database's creation and the commit: BEGIN, COMMIT twice.
    assert [c[0] for c in cmds] == ["BEGIN", "COMMIT"] * 2
    assert len(rec.conns) == 2
    # The parent goes on reporting on its own connection.
    db = ZODB.DB(FileStorage(str(tmp_path / "parent.fs")))
    try:
        with db.transaction() as conn:
            conn.root()["y"] = 1
    finally:
        db.close()
    assert tidstorage_client.installed().sender.flush(10.0)
    mine = "%s_" % tidstorage_client.default_client_id()
    wait_until(lambda: any(c[1].startswith(mine) and c[0] == "COMMIT"
                           for c in rec.commands()), what="the parent's COMMIT")
    rec.close()


def test_only_a_daemon_on_this_host_is_written_corked():
    from tidstorage_client.sender import _is_loopback

    assert _is_loopback("127.0.0.1") and _is_loopback("127.8.9.1") and _is_loopback("::1")
    assert not _is_loopback("10.0.0.9") and not _is_loopback("fe80::1%eth0")
    assert not _is_loopback("db.example.org")
    # A client made without install() never corks (install allows it once
    # the previous client's connection is closed).
    client = tidstorage_client.Client("127.0.0.1:%d" % tidharness.free_port())
    try:
        assert not client.sender.may_cork
    finally:
        client.close(timeout=0)
