"""``tidstorage-zodb-touch``: the bootstrap helper for ``[bootstrap] command``.

Owns one job: commit one real transaction on the storage the daemon names
(``TIDSTORAGE_STORAGE_ID``), with the client installed, so the daemon sees a
COMMIT for it. The transaction is real for the storage (a new TID, a
transaction record in Data.fs) and holds no object at all, so it cannot
conflict with the application's commits or change its data. It must exit
non-zero, saying why, when it could not commit.

Storage id forms: a ZEO id ``[[[host, port], ...], name]`` is reached through
ZEO; an absolute path (or ``TIDSTORAGE_DATA_FS`` when the id is not a ZEO id)
is opened as a local FileStorage, which only works when no server holds it.
The daemon's address is ``--server``, else ``TIDSTORAGE_SERVER`` (the daemon
sets it for its trigger commands), else 127.0.0.1:9001.
"""

import argparse
import json
import logging
import os
import sys


def _zeo_target(storage_id):
    try:
        value = json.loads(storage_id)
    except ValueError:
        return None
    if (isinstance(value, list) and len(value) == 2 and isinstance(value[0], list)
            and isinstance(value[1], str) and value[0]):
        addrs = []
        for a in value[0]:
            if isinstance(a, str):
                addrs.append(a)
            elif isinstance(a, list) and len(a) == 2 and isinstance(a[1], int):
                addrs.append((a[0], a[1]))
            else:
                return None
        return addrs, value[1]
    return None


def open_storage(storage_id, data_fs, timeout):
    zeo = _zeo_target(storage_id)
    if zeo is not None:
        from ZEO.ClientStorage import ClientStorage

        addrs, name = zeo
        return ClientStorage(addrs, storage=name, wait_timeout=timeout)
    path = storage_id if os.path.isabs(storage_id) else data_fs
    if not path:
        raise SystemExit("tidstorage-zodb-touch: storage id %r is neither a ZEO id nor a path, "
                         "and TIDSTORAGE_DATA_FS is empty" % (storage_id,))
    from ZODB.FileStorage import FileStorage

    return FileStorage(path)


class EmptyCommit:
    """A resource manager committing an empty transaction on one database,
    through ZODB's MVCC adapter like a Connection (so the client's hooks see
    it and capture the TID the storage assigns)."""

    def __init__(self, db):
        self._db = db  # how the client finds the storage
        self._adapter = db._mvcc_storage.new_instance()
        self._meta = None

    def sortKey(self):
        return "tidstorage-zodb-touch:%d" % id(self)

    def abort(self, txn):
        pass

    def tpc_begin(self, txn):
        from ZODB.Connection import TransactionMetaData

        self._meta = TransactionMetaData(txn.user, txn.description, txn.extension)
        self._adapter.tpc_begin(self._meta)

    def commit(self, txn):
        pass

    def tpc_vote(self, txn):
        self._adapter.tpc_vote(self._meta)

    def tpc_finish(self, txn):
        self._adapter.tpc_finish(self._meta)
        self._adapter.release()

    def tpc_abort(self, txn):
        if self._meta is not None:
            self._adapter.tpc_abort(self._meta)
        self._adapter.release()


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="tidstorage-zodb-touch",
        description="Commit one no-op ZODB transaction on a storage and report it to the "
                    "tidstorage daemon (use as [bootstrap] command).")
    p.add_argument("--storage-id", default=os.environ.get("TIDSTORAGE_STORAGE_ID"),
                   help="storage id (default: $TIDSTORAGE_STORAGE_ID)")
    p.add_argument("--data-fs", default=os.environ.get("TIDSTORAGE_DATA_FS", ""),
                   help="Data.fs path for a local storage (default: $TIDSTORAGE_DATA_FS)")
    p.add_argument("--server", default=os.environ.get("TIDSTORAGE_SERVER") or "127.0.0.1:9001",
                   help="daemon HOST:PORT (default: $TIDSTORAGE_SERVER or 127.0.0.1:9001)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the ZEO server and the daemon (default 30)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(levelname)s: %(message)s")
    if not a.storage_id:
        p.error("no storage id: set TIDSTORAGE_STORAGE_ID or give --storage-id")

    import transaction
    import ZODB

    import tidstorage_client

    try:
        storage = open_storage(a.storage_id, a.data_fs, a.timeout)
    except SystemExit:
        raise
    except Exception as e:
        print("tidstorage-zodb-touch: cannot open storage %s: %s" % (a.storage_id, e),
              file=sys.stderr)
        return 1
    wanted = a.storage_id

    def storage_id(s):
        # Report under the exact id the daemon asked for, whatever its spacing.
        return wanted if s is storage else tidstorage_client.default_storage_id(s)

    client = tidstorage_client.install(a.server, storage_id=storage_id, wait=0)
    try:
        if not client.sender.wait_connected(a.timeout):
            print("tidstorage-zodb-touch: cannot reach the tidstorage daemon at %s"
                  % client.sender.addr_text, file=sys.stderr)
            return 1
        db = ZODB.DB(storage)
        try:
            tm = transaction.TransactionManager()
            txn = tm.begin()
            txn.note("tidstorage bootstrap")
            txn.join(EmptyCommit(db))
            tm.commit()
        finally:
            db.close()
        if not client.sender.flush(a.timeout):
            print("tidstorage-zodb-touch: committed, but could not send the COMMIT to %s"
                  % client.sender.addr_text, file=sys.stderr)
            return 1
    except Exception as e:
        print("tidstorage-zodb-touch: commit on %s failed: %s" % (a.storage_id, e),
              file=sys.stderr)
        return 1
    finally:
        tidstorage_client.uninstall(timeout=a.timeout)
    print("tidstorage-zodb-touch: committed on %s" % a.storage_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
