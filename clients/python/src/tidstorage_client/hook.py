"""The commit hook: what a ZODB commit tells the daemon, and when.

Owns the two patches and the per-thread record of the commit in progress:

* ``transaction._transaction.Transaction._commitResources`` is wrapped. It
  runs after the before-commit hooks (so every database they joined is among
  the resources) and it *is* the two-phase commit: the commit's tag is
  written into its extension and BEGIN is sent just before it starts (no
  resource can join any more, no ``tpc_begin`` has sent the metadata),
  COMMIT or ABORT (or, for a partial commit, nothing) once it returned or
  raised.
* ``ZODB.mvccadapter.MVCCAdapterInstance.tpc_finish`` (and the undo
  adapter's) is wrapped. Every ``Connection.tpc_finish`` goes through it, and
  it hands the storage's own ``tpc_finish`` a callback that the storage calls
  with the TID it assigned, under its commit lock. That is the only exact
  source of a commit's TID: asking the storage afterwards for its last
  transaction may return another thread's.

It must never let an exception of its own reach the application, never hide
or alter one of the commit's, and never guess an outcome: a failure after
any storage began ``tpc_finish`` is reported by sending nothing more.
"""

import logging
import threading

log = logging.getLogger("tidstorage_client")

_local = threading.local()


class CommitRecord:
    """One commit in progress on this thread."""

    __slots__ = ("txn_id", "storages", "ids", "started", "finished", "client")

    def __init__(self, client, txn_id, storages, ids=None):
        self.client = client
        self.txn_id = txn_id
        # storage object id -> storage id, for the adapter hook
        self.storages = storages
        # the sorted storage ids, without repeats
        self.ids = ids if ids is not None else tuple(sorted(set(storages.values())))
        self.started = set()
        self.finished = {}

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


def _u64(tid):
    return int.from_bytes(tid, "big")


def _noop(tid):
    pass


def _adapter_tpc_finish(original):
    def tpc_finish(self, transaction, func=_noop):
        stack = getattr(_local, "stack", None)
        if not stack:
            return original(self, transaction, func)
        rec = stack[-1]
        sid = rec.storages.get(id(getattr(self, "_storage", None)))
        if sid is None:
            return original(self, transaction, func)
        rec.started.add(sid)
        captured = []

        def record(tid):
            captured.append(tid)
            func(tid)

        result = original(self, transaction, record)
        tid = captured[-1] if captured else result
        if isinstance(tid, bytes) and len(tid) == 8:
            value = _u64(tid)
            # Two connections to one storage in one transaction: the later TID.
            if value > rec.finished.get(sid, -1):
                rec.finished[sid] = value
        return result

    tpc_finish.__wrapped__ = original
    tpc_finish.__tidstorage_hook__ = True
    return tpc_finish


def _commit_resources(original):
    def _commitResources(self, *args, **kw):
        rec = None
        try:
            client = _active_client()
            if client is not None:
                rec = client.begin(self, depth=len(_stack()))
        except Exception:
            log.warning("tidstorage client: cannot report this commit's start; the commit "
                        "goes on", exc_info=True)
            rec = None
        if rec is None:
            return original(self, *args, **kw)
        _stack().append(rec)
        try:
            result = original(self, *args, **kw)
        except BaseException:
            _stack().pop()
            try:
                rec.client.failed(rec)
            except Exception:
                log.warning("tidstorage client: cannot report a failed commit", exc_info=True)
            raise
        _stack().pop()
        try:
            rec.client.succeeded(rec)
        except Exception:
            log.warning("tidstorage client: cannot report a commit", exc_info=True)
        return result

    _commitResources.__wrapped__ = original
    _commitResources.__tidstorage_hook__ = True
    return _commitResources


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
        (mvccadapter.UndoAdapterInstance, "tpc_finish", _adapter_tpc_finish),
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
