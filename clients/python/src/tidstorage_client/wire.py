"""The client half of the tidstorage wire protocol (SPEC §2).

Owns the bytes of BEGIN, COMMIT and ABORT, and the parsing of a daemon
address. It must not do any I/O: the sender moves the bytes.

A field is text up to ``\\n``; a list is a count field then that many
fields; a dict is the list of keys then as many value fields (no second
count). Ids that contain a newline cannot be framed and are refused here,
before anything is sent.
"""

BEGIN = "BEGIN"
COMMIT = "COMMIT"
ABORT = "ABORT"


class FramingError(ValueError):
    """An id that cannot be sent (it contains a newline)."""


def field(text):
    """The framed bytes of one id, or FramingError."""
    if "\n" in text or "\r" in text:
        raise FramingError("id %r contains a line break; it cannot be framed" % (text,))
    return text.encode("utf-8") + b"\n"


_field = field
_lists = {}


def _list(storage_ids):
    """The framed list of a tuple of storage ids (cached: a process commits
    to few distinct sets of storages, and framing is most of the cost)."""
    data = _lists.get(storage_ids)
    if data is None:
        data = b"%d\n" % len(storage_ids) + b"".join(_field(s) for s in storage_ids)
        if len(_lists) < 10000:
            _lists[storage_ids] = data
    return data


def check_ids(storage_ids):
    """Raises FramingError now for a tuple of storage ids that cannot be
    framed (cached, as ``_list``), so that the sender never meets one."""
    _list(storage_ids)


# The sender's forms: ``txn``, a transaction id already framed by ``field``
# (the client caches it per thread); ``ids``, a sorted tuple of storage ids.

def begin_frame(txn, ids):
    return b"BEGIN\n" + txn + _list(ids)


def commit_frame(txn, ids, tids):
    """``tids``: storage id -> TID (int) for some or all of ``ids``; sent
    sorted by storage id."""
    if len(tids) != len(ids):
        ids = tuple(sorted(tids))
    return b"COMMIT\n" + txn + _list(ids) + b"".join([b"%d\n" % tids[s] for s in ids])


def abort_frame(txn):
    return b"ABORT\n" + txn


def frames(txn, ids):
    """What a commit of ``txn`` on ``ids`` sends, ready for the sender's
    loop: (its BEGIN, its COMMIT up to the TIDs, the format of the TIDs
    (``%`` a tuple of them in ``ids`` order), its ABORT)."""
    head = txn + _list(ids)
    return (b"BEGIN\n" + head, b"COMMIT\n" + head, b"%d\n" * len(ids), b"ABORT\n" + txn)


def encode_begin(txn_id, storage_ids):
    return begin_frame(_field(txn_id), tuple(storage_ids))


def encode_commit(txn_id, tids):
    """``tids``: a dict storage id -> TID (int), or (storage id, TID) pairs;
    sent sorted by storage id."""
    tids = dict(tids)
    return commit_frame(_field(txn_id), tuple(sorted(tids)), tids)


def encode_abort(txn_id):
    return abort_frame(_field(txn_id))


def parse_address(address, default_port=9001):
    """``"host:port"``, ``"[v6]:port"``, ``"host"`` or a ``(host, port)`` pair."""
    if isinstance(address, (tuple, list)):
        host, port = address
        return str(host), int(port)
    text = str(address).strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError("invalid tidstorage daemon address %r; write HOST:PORT" % (address,))
    try:
        port = int(port) if port else default_port
    except ValueError:
        raise ValueError(
            "invalid port in tidstorage daemon address %r; write HOST:PORT" % (address,)
        ) from None
    if not 0 < port < 65536:
        raise ValueError("port out of range in tidstorage daemon address %r" % (address,))
    return host, port
