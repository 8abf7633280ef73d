"""The commit hook: what a ZODB commit tells the daemon, and when.

Owns the two patches and the per-thread record of the commit in progress:

* ``transaction._transaction.Transaction._commitResources`` is wrapped. It
  runs after the before-commit hooks (so every database they joined is among
  the resources) and it *is* the two-phase commit: the commit's tag is
  written into its extension and BEGIN is queued just before it starts (no
  resource can join any more, no ``tpc_begin`` has sent the metadata),
  COMMIT or ABORT (or, for a partial commit, nothing) once it returned or
  raised.
* ``ZODB.mvccadapter.MVCCAdapterInstance.tpc_finish`` (and the undo
  adapter's) is wrapped. Every ``Connection.tpc_finish`` goes through it,
  and it returns the TID the storage assigned to this commit (a Connection
  makes it the objects' ``_p_serial``); the undo adapter returns nothing,
  so there the TID is the one the storage hands its callback, under its
  commit lock. Either is exact; asking the storage afterwards for its last
  transaction may return another thread's. It is also where a BEGIN that
  is due (``CommitRecord.due``, see ``sender``) is written, if the sender
  thread has not yet, before the first storage finishes.

The hooks run on every commit of the application: they only look up cached
values, format the tag and append to the sender's queue; the encoding and
the writing happen on the sender's thread.

It must never let an exception of its own reach the application, never hide
or alter one of the commit's, and never guess an outcome: a failure after
any storage began ``tpc_finish`` is reported by sending nothing more.
"""

import logging
import threading

from .wire import COMMIT as _COMMIT

log = logging.getLogger("tidstorage_client")

_local = threading.local()


class CommitRecord:
    """One commit in progress on this thread; also the queued notification
    (the sender encodes it from these fields on its own thread)."""

    __slots__ = ("client", "thread", "depth", "_txn", "frames", "storages", "ids",
                 "started", "finished", "due", "cork")

    def __init__(self, client, thread, depth, storages, ids):
        self.client = client
        self.thread = thread  # threading.get_ident() of the committing thread
        self.depth = depth  # how many commits this one is nested in
        self._txn = None  # (transaction id, its framed bytes), when first needed
        self.frames = None  # wire.frames() of it, set by the sender when first needed
        # storage object id -> storage id, for the adapter hook
        self.storages = storages
        # the sorted storage ids, without repeats
        self.ids = ids
        # True once a tracked storage's tpc_finish began: from then on a
        # failure may leave the commit on some storage (never reported ABORT)
        self.started = False
        self.finished = {}
        # True while the BEGIN is queued and must be written before the
        # first tpc_finish (the sender clears it once written or dropped).
        self.due = False
        # True when its storages are all written by this process alone: the
        # committing thread's write of the BEGIN may stay corked (sender).
        self.cork = False

    @property
    def txn_id(self):
        return self.txn[0]

    @property
    def txn(self):
        """(transaction id, framed): formatted when first needed, by the
        sender thread usually."""
        t = self._txn
        if t is None:
            t = self._txn = self.client.txn_of(self.thread, self.depth)
        return t

    def storage_ids(self):
        return list(self.ids)


def _stack():
    s = getattr(_local, "stack", None)
    if s is None:
        s = _local.stack = []
    return s


def current_commit():
    """The innermost commit in progress on this thread, if any."""
    s = _stack()
    return s[-1] if s else None


def _noop(tid):
    pass


def _adapter_tpc_finish(original, via_callback=False):
    """Wraps an adapter's ``tpc_finish``. The MVCC adapter's returns the TID
    its storage gave (a Connection relies on it: it becomes the objects'
    ``_p_serial``); the undo adapter's returns nothing (``via_callback``):
    there the TID is the one its storage hands the callback, under its
    commit lock."""
    def tpc_finish(self, transaction, func=_noop):
        stack = getattr(_local, "stack", None)
        if not stack:  # no commit of ours on this thread
            return original(self, transaction, func)
        rec = stack[-1]
        sid = rec.storages.get(id(getattr(self, "_storage", None)))
        if sid is None:
            return original(self, transaction, func)
        if rec.due:
            # The BEGIN must be out before any storage of the commit
            # finishes; the sender thread did not get to it yet.
            rec.client.sender.begin_due(rec)
        rec.started = True
        if via_callback:
            captured = []

            def record(tid):
                captured.append(tid)
                func(tid)

            result = original(self, transaction, record)
            tid = captured[-1] if captured else result
        else:
            tid = result = original(self, transaction, func)
        if tid.__class__ is bytes and len(tid) == 8:
            value = int.from_bytes(tid, "big")
            # Two connections to one storage in one transaction: the later TID.
            if value > rec.finished.get(sid, -1):
                rec.finished[sid] = value
        return result

    tpc_finish.__wrapped__ = original
    tpc_finish.__tidstorage_hook__ = True
    return tpc_finish


def _undo_tpc_finish(original):
    return _adapter_tpc_finish(original, via_callback=True)


def _commit_resources(original):
    def _commitResources(self, *args, **kw):
        client = _installed_client
        if client is None:
            return original(self, *args, **kw)
        try:
            stack = _local.stack
        except AttributeError:
            stack = _local.stack = []
        try:
            rec = client.begin(self, len(stack))
        except Exception:
            log.warning("tidstorage client: cannot report this commit's start; the commit "
                        "goes on", exc_info=True)
            rec = None
        if rec is None:
            return original(self, *args, **kw)
        stack.append(rec)
        try:
            result = original(self, *args, **kw)
        except BaseException:
            stack.pop()
            try:
                client.failed(rec)
            except Exception:
                log.warning("tidstorage client: cannot report a failed commit", exc_info=True)
            raise
        stack.pop()
        try:
            if len(rec.finished) == len(rec.ids):  # every storage gave its TID
                client.sender.post(_COMMIT, rec)
            else:
                client.succeeded(rec)
        except Exception:
            log.warning("tidstorage client: cannot report a commit", exc_info=True)
        return result

    _commitResources.__wrapped__ = original
    _commitResources.__tidstorage_hook__ = True
    return _commitResources


def follows(cls):
    """Whether a storage of class ``cls`` (a resource manager's ``_storage``)
    commits through the adapters whose ``tpc_finish`` is hooked."""
    from ZODB import mvccadapter

    return isinstance(cls, type) and issubclass(
        cls, (mvccadapter.MVCCAdapterInstance, mvccadapter.UndoAdapterInstance))


_installed_client = None
_patch_lock = threading.Lock()


def _active_client():
    return _installed_client


def _targets():
    from transaction._transaction import Transaction
    from ZODB import mvccadapter

    return [
        (Transaction, "_commitResources", _commit_resources),
        (mvccadapter.MVCCAdapterInstance, "tpc_finish", _adapter_tpc_finish),
        (mvccadapter.UndoAdapterInstance, "tpc_finish", _undo_tpc_finish),
    ]


def patch(client):
    """Installs the hooks (once) and makes ``client`` the one reporting."""
    global _installed_client
    with _patch_lock:
        for cls, name, make in _targets():
            current = cls.__dict__.get(name)
            if current is None:
                raise RuntimeError(
                    "tidstorage client: %s.%s not found; this transaction/ZODB version is "
                    "not supported" % (cls.__name__, name))
            if not getattr(current, "__tidstorage_hook__", False):
                setattr(cls, name, make(current))
        previous, _installed_client = _installed_client, client
    return previous


def unpatch():
    """Removes the hooks; returns the client that was reporting."""
    global _installed_client
    with _patch_lock:
        for cls, name, _ in _targets():
            current = cls.__dict__.get(name)
            if getattr(current, "__tidstorage_hook__", False):
                setattr(cls, name, current.__wrapped__)
        previous, _installed_client = _installed_client, None
    return previous
