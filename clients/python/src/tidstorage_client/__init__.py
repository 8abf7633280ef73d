"""Reports ZODB commits to the tidstorage daemon.

Owns the public API (``install``, ``uninstall``, ``Client``) and the mapping
from a commit to its notifications: which storages it touches and their ids,
its transaction id, which of BEGIN / COMMIT / ABORT / nothing it ends
with, and how soon its BEGIN must be out (queued, due before the first
``tpc_finish``, or written at once: see ``sender``). It must not block or
raise into the application: the hooks are in ``hook``, the socket and the
queue in ``sender``.

Usage::

    import tidstorage_client
    tidstorage_client.install("10.0.0.9:9001")

Storage ids (compatible with Products.TIDStorage):

* a ZEO ``ClientStorage``: ``json.dumps((addresses, storage_name))`` where
  ``addresses`` is the list of server addresses the client was given, each a
  ``[host, port]`` pair (a unix socket path stays a string), e.g.
  ``[[["10.0.0.5", 8100]], "1"]``;
* a local ``FileStorage``: the absolute path of its Data.fs.

Other storages are not tracked unless a ``storage_id`` function given to
``install`` names them.
"""

import json
import logging
import os
import socket
import threading
import weakref

from . import hook, tag, wire
from .sender import Sender

__all__ = ["install", "uninstall", "installed", "Client", "default_storage_id",
           "zeo_storage_id"]

log = logging.getLogger("tidstorage_client")

_get_ident = threading.get_ident
_NoneType = type(None)


def zeo_storage_id(addr, storage_name):
    """The id of a ZEO client of ``addr`` (as given to ClientStorage) for
    the storage named ``storage_name``; what the original product sent."""
    if isinstance(addr, int):
        addr = ("127.0.0.1", addr)
    if isinstance(addr, str) or (
            isinstance(addr, tuple) and len(addr) == 2 and isinstance(addr[1], int)):
        addr = [addr]
    addresses = [a if isinstance(a, str) else list(a) for a in addr]
    return json.dumps((addresses, storage_name))


def default_storage_id(storage):
    """The id of a base storage, or None for a storage that is not tracked."""
    try:
        from ZEO.ClientStorage import ClientStorage
    except ImportError:  # ZEO is optional
        ClientStorage = None
    if ClientStorage is not None and isinstance(storage, ClientStorage):
        return zeo_storage_id(storage._addr, storage._storage)
    from ZODB.FileStorage import FileStorage

    if isinstance(storage, FileStorage):
        return os.path.abspath(storage._file_name)
    return None


# How soon a commit's BEGIN must reach the daemon, per storage (the largest
# wins): see sender's module documentation.
_OWN = 0  # a FileStorage opened here, reported under its path: only this process writes it
_LOCAL = 1  # a FileStorage under another id
_REMOTE = 2  # anything else (ZEO): the commit waits on the network before tpc_finish


def _kind(storage, sid):
    from ZODB.FileStorage import FileStorage

    if not isinstance(storage, FileStorage):
        return _REMOTE
    # Its lock file keeps every other process from writing it, and its id is
    # its path, which no ZEO client reports.
    if not storage.isReadOnly() and sid == os.path.abspath(storage._file_name):
        return _OWN
    return _LOCAL


def default_client_id():
    """``<host>:<pid>``: unique among the processes of one site."""
    return "%s:%d" % (socket.gethostname(), os.getpid())


# Every Client, so that a forked child forgets their cached client ids (the
# pid is part of them); weak, so that uninstalled clients go away.
_clients = weakref.WeakSet()


def _forget_client_ids():
    for c in list(_clients):
        c._cid = None
        c._txns = {}
        c._frames = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_client_ids)


class Client:
    """Turns commits into notifications; one per process."""

    def __init__(self, address, client_id=None, storage_id=None,
                 reconnect_interval=1.0, max_queue_bytes=1 << 20, commit_delay=0.005,
                 max_queue=10000, max_commit_delay=0.05):
        self.sender = Sender(address, reconnect_interval=reconnect_interval,
                             max_queue_bytes=max_queue_bytes, delay=commit_delay,
                             max_queue=max_queue, max_delay=max_commit_delay)
        if client_id:
            wire.check_ids((client_id,))  # refused now, not at every commit
        self._client_id = client_id
        self._storage_id = storage_id or default_storage_id
        self._partial = 0
        self._lock = threading.Lock()
        # id(storage) -> (weak reference, storage id or None): the id of a
        # storage is computed once (json.dumps, abspath: microseconds).
        self._sids = {}
        # type of a resource's ``_storage`` -> whether the hook sees its
        # tpc_finish (hook.follows)
        self._followed = {}
        self._names = {}  # sorted storage ids -> their names in tags (checked framable)
        self._cid = None  # the default client id, computed once per process
        self._txns = {}  # (thread, depth) -> txn_of(): reset with _cid
        self._frames = {}  # (thread, depth, ids) -> frames_of(): reset with _cid
        self._tag_failed = False
        # resources (their ids) -> what ``begin`` derives from them, for
        # transactions whose resources are all ZODB connections (cached:
        # a thread commits through the same connections again and again)
        self._sets = {}
        self.sender.hold_txn = self.hold_txn
        _clients.add(self)

    @property
    def client_id(self):
        # Computed late: the pid changes in a forked child.
        if self._client_id:
            return self._client_id
        cid = self._cid
        if cid is None or not hasattr(os, "register_at_fork"):
            cid = self._cid = default_client_id()
        return cid

    def transaction_id(self, depth=0, thread=None):
        """``<client id>_<thread id hex>``: a thread reuses it for its next
        commit once this one ended, as the original product does. A commit
        nested in another one on the same thread gets a ``.<depth>`` suffix.
        ``thread``: the ``threading.get_ident()`` of the committing thread
        (default: this one)."""
        if thread is None:
            thread = threading.get_ident()
        tid = "%s_%x" % (self.client_id, thread)
        return tid if not depth else "%s.%d" % (tid, depth)

    def txn_of(self, thread, depth):
        """(transaction id, its framed bytes) of a commit of ``thread``
        nested ``depth`` deep (cached: a thread reuses its id)."""
        key = (thread, depth)
        t = self._txns.get(key)
        if t is None:
            txn_id = self.transaction_id(depth, thread)
            t = (txn_id, wire.field(txn_id))
            if len(self._txns) > 10000:  # threads come and go
                self._txns.clear()
            self._txns[key] = t
        return t

    def frames_of(self, rec):
        """``wire.frames`` of a commit record (cached: a thread commits to the
        same storages again and again)."""
        key = (rec.thread, rec.depth, rec.ids)
        f = self._frames.get(key)
        if f is None:
            f = wire.frames(self.txn_of(rec.thread, rec.depth)[1], rec.ids)
            if len(self._frames) > 10000:
                self._frames.clear()
            self._frames[key] = f
        return f

    def hold_txn(self, n):
        """The framed id of the sender's hold ``n`` (0 or 1):
        ``<client id>_hold.<n>``, which no commit's id can be (those end in
        the thread id in hex)."""
        key = ("hold", n)
        t = self._txns.get(key)
        if t is None:
            t = self._txns[key] = wire.field("%s_hold.%d" % (self.client_id, n))
        return t

    def _info(self, storage):
        """(storage id, _kind) of a base storage, or None when it is not
        tracked; computed once per storage object."""
        entry = self._sids.get(id(storage))
        if entry is not None and entry[0]() is storage:
            return entry[1]
        sid = self._storage_id(storage)
        info = None if sid is None else (sid, _kind(storage, sid))
        try:
            ref = weakref.ref(storage)
        except TypeError:  # not weakly referenceable: not cached
            return info
        if len(self._sids) > 1000:  # storages come and go (tests): forget the dead
            self._sids = {k: v for k, v in self._sids.items() if v[0]() is not None}
        self._sids[id(storage)] = (ref, info)
        return info

    def _sid(self, storage):
        info = self._info(storage)
        return None if info is None else info[0]

    def storage_id_of_resource(self, rm):
        """(base storage, id) of a resource manager, or (None, None)."""
        db = getattr(rm, "_db", None)
        storage = getattr(db, "storage", None)
        if storage is None:
            return None, None
        sid = self._sid(storage)
        return (storage, sid) if sid is not None else (None, None)

    def _derive(self, resources):
        """What ``begin`` needs of a commit's resource managers: (storage
        object id -> storage id, the sorted storage ids, their names in tags,
        the largest ``_kind``, whether one cannot be followed to its
        ``tpc_finish``), or None when no tracked storage is among them; and
        whether that may be cached (every resource a ZODB connection, whose
        database and storage adapter class never change)."""
        from ZODB.Connection import Connection

        storages = {}
        kind = _OWN
        unfollowed = False
        cacheable = True
        followed = self._followed
        for rm in resources:
            if rm.__class__ is not Connection:
                cacheable = False
            storage = getattr(getattr(rm, "_db", None), "storage", None)
            if storage is None:
                continue
            info = self._info(storage)
            if info is None:
                continue
            storages[id(storage)] = info[0]
            if info[1] > kind:
                kind = info[1]
            # The hook sees this storage's tpc_finish only through ZODB's
            # MVCC adapters (a Connection's, even while a savepoint has put a
            # TmpStore in its _storage; an undo's once begun).
            cls = type(getattr(rm, "_normal_storage", None))
            if cls is _NoneType:
                cls = type(getattr(rm, "_storage", None))
            f = followed.get(cls)
            if f is None:
                f = followed[cls] = hook.follows(cls)
            if not f:
                unfollowed = True
        if not storages:
            return None, cacheable
        ids = tuple(sorted(set(storages.values())))
        names = self._names.get(ids)
        if names is None:
            wire.check_ids(ids)  # an id that cannot be framed is refused here
            names = tag.storage_names(ids)
            if len(self._names) < 10000:
                self._names[ids] = names
        return (storages, ids, names, kind, unfollowed), cacheable

    def _remember(self, key, resources, derived):
        sets = self._sets
        if len(sets) > 10000:  # connections come and go (tests)
            sets.clear()

        def gone(_ref, key=key, sets=sets):
            sets.pop(key, None)
        try:
            # The entry goes with the first of its resources that dies, in
            # its deallocation: while the entry is there, no id in its key
            # can belong to another object.
            refs = tuple(weakref.ref(rm, gone) for rm in resources)
        except TypeError:
            return
        sets[key] = (refs, derived)

    def begin(self, txn, depth=0):
        """Called at the start of the two-phase commit of ``txn`` (no resource
        can join any more, no ``tpc_begin`` has run): writes the commit's tag
        into its extension, queues BEGIN and returns the commit record, or
        None when no tracked storage is in it."""
        # The hot path of every commit: one cache lookup for its set of
        # connections, the tag, the record, one append; no I/O unless a
        # BEGIN must leave now (sender).
        resources = txn._resources
        key = tuple(map(id, resources))
        entry = self._sets.get(key)
        if entry is not None:
            derived = entry[1]
        else:
            derived, cacheable = self._derive(resources)
            if cacheable:
                self._remember(key, resources, derived)
        if derived is None:
            return None
        storages, ids, names, kind, unfollowed = derived
        try:
            txn.extension[tag.KEY] = tag.make_named(names)
        except Exception:
            if not self._tag_failed:
                self._tag_failed = True
                log.warning("tidstorage client: cannot tag commits (their exact cut will "
                            "treat them as unknown); reporting goes on", exc_info=True)
        rec = hook.CommitRecord(self, _get_ident(), depth, storages, ids)
        if unfollowed:
            # No hook at its tpc_finish: the BEGIN leaves before the commit.
            self.sender.send_now(wire.BEGIN, rec)
            return rec
        if kind == _OWN:
            # Only this process writes these files: the sender's standing
            # hold covers the commit until its BEGIN is written.
            rec.cork = True
            if self.sender.post_own(rec):
                return rec
        # Due at the first tpc_finish (the hook writes it there if the
        # sender thread has not yet); the sender is woken for it when the
        # commit will wait on the network meanwhile.
        rec.due = True
        self.sender.post(wire.BEGIN, rec, kind == _REMOTE)
        return rec

    def succeeded(self, rec):
        # finished holds some of ids' storages: the same length is all of them.
        if len(rec.finished) != len(rec.ids):
            missing = [s for s in rec.ids if s not in rec.finished]
            # Cannot happen with ZODB's adapters; if it does, a COMMIT naming
            # fewer storages keeps the transaction in flight at the daemon,
            # which is the safe way to say "unknown".
            log.error("tidstorage client: no TID captured for %s in %s; the daemon will hold "
                      "the point until it is restarted", ", ".join(missing), rec.txn_id)
        self.sender.post(wire.COMMIT, rec)

    def failed(self, rec):
        if not rec.started:
            self.sender.post(wire.ABORT, rec)
            return
        every = set(rec.storage_ids())
        if set(rec.finished) == every:
            # Every tracked storage committed; what failed was another
            # resource manager. For the daemon the transaction is complete.
            self.sender.post(wire.COMMIT, rec)
            return
        with self._lock:
            self._partial += 1
        done = ["%s (TID %d)" % (s, rec.finished[s]) for s in sorted(rec.finished)]
        notdone = sorted(every - set(rec.finished))
        log.error(
            "tidstorage client: PARTIAL COMMIT of %s: finished on %s, not on %s. The "
            "databases are now inconsistent with each other; the daemon keeps this "
            "transaction in flight so no coherency point passes it. Stop the ZEO servers "
            "and run `tidstorage cut` to make the databases coherent again.",
            rec.txn_id, ", ".join(done) or "no storage for sure", ", ".join(notdone))

    @property
    def partial_commits(self):
        return self._partial

    def close(self, timeout=1.0):
        self.sender.close(timeout)


_install_lock = threading.Lock()


def install(address, client_id=None, storage_id=None, reconnect_interval=1.0,
            max_queue_bytes=1 << 20, wait=2.0, commit_delay=0.005, max_queue=10000,
            max_commit_delay=0.05):
    """Starts reporting this process's commits to the daemon at ``address``
    (``"host:port"`` or a pair). Replaces an earlier installation.

    ``client_id``: the ``<host>:<port-or-pid>`` part of transaction ids
    (default: host name and pid). ``storage_id``: a function from a base
    storage to its id or None (default: ``default_storage_id``).
    ``reconnect_interval``: seconds between two connection attempts.
    ``wait``: seconds to wait for the first connection attempt, so the first
    commits are not missed (0: do not wait). ``commit_delay``: seconds a
    COMMIT may wait to be written with other notifications after a quiet
    period (0: written at once); while commits keep coming that wait
    doubles at each write, up to ``max_commit_delay``. ``max_queue``: notifications the committing threads may queue
    before the background thread encodes them (a committing thread finding
    the queue full empties it itself). ``max_queue_bytes``: encoded
    notifications not written yet (while the daemon is unreachable or slow);
    when full, the oldest are dropped.
    """
    with _install_lock:
        client = Client(address, client_id=client_id, storage_id=storage_id,
                        reconnect_interval=reconnect_interval,
                        max_queue_bytes=max_queue_bytes, commit_delay=commit_delay,
                        max_queue=max_queue, max_commit_delay=max_commit_delay)
        previous = hook.patch(client)
        if previous is not None:
            previous.close(timeout=0.5)
        # Only now may BEGINs wait in the kernel (sender): nothing is written
        # on the previous connection any more to overtake them.
        client.sender.may_cork = True
    if wait:
        client.sender.wait_first_attempt(wait)
    return client


def uninstall(timeout=1.0):
    """Stops reporting (writing what is queued, bounded by ``timeout``)."""
    with _install_lock:
        previous = hook.unpatch()
    if previous is not None:
        previous.close(timeout)
    return previous


def installed():
    """The reporting client, or None."""
    return hook._active_client()


def _close_at_exit():
    client = hook._active_client()
    if client is not None:
        client.close(timeout=1.0)


import atexit  # noqa: E402  (registered once, at import)

atexit.register(_close_at_exit)
