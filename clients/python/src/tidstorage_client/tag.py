"""The commit tag: what every commit writes about itself into its own
transaction extension, so that the Data.fs files alone tell which
transactions are complete (docs/tags.md is the on-disk reference).

Owns the key, the text of the value and the short storage names. It must
not do I/O nor depend on ZODB: the hook calls ``make`` once per commit and
tools call ``parse``.

The extension gets one more key, ``KEY``, whose value is a flat ``str``::

    "1 <commit id> <start> <storage>[ <storage>...]"

* ``1``: the format version;
* commit id: 16 lowercase hex digits, a random 64-bit number drawn for this
  commit attempt (a retried commit draws another) from a generator of its
  own, seeded from ``os.urandom`` and reseeded in forked children;
* start: the client's clock when the two-phase commit started, in
  milliseconds since the Unix epoch, lowercase hex without leading zeros;
* one short name per tracked storage the commit writes to, sorted, without
  repeats: the CRC-32 (zlib's, of the UTF-8 bytes) of the storage id the
  client sends to the daemon, as 8 lowercase hex digits.

Storage ids are 25 bytes for a ZEO storage and a whole path for a local
FileStorage; 8 hex digits keep a two-database tag at 48 bytes. A cut knows
the configured ids, hashes them the same way and refuses a configuration in
which two ids share a name.
"""

import os
import random
import time
import zlib

#: The extension key. FileStorage merges ``id``, ``time``, ``user_name``,
#: ``description`` and ``size`` into ``undoLog()`` entries; this one is not
#: among them, nor among what Zope writes (``user_name``, ``note``...).
KEY = "tidstorage"

VERSION = "1"

_names = {}
_sets = {}


def storage_name(storage_id):
    """The short name of a storage id in tags: CRC-32 of its UTF-8, 8 hex."""
    name = _names.get(storage_id)
    if name is None:
        name = "%08x" % (zlib.crc32(storage_id.encode("utf-8")) & 0xffffffff)
        if len(_names) < 10000:
            _names[storage_id] = name
    return name


def storage_names(storage_ids):
    """The sorted, space-separated names of a tuple of storage ids (cached:
    a process commits to few distinct sets)."""
    text = _sets.get(storage_ids)
    if text is None:
        text = " ".join(sorted({storage_name(s) for s in storage_ids}))
        if len(_sets) < 10000:
            _sets[storage_ids] = text
    return text


# A private generator seeded from os.urandom: an application seeding the
# module-level ``random`` (tests often do) must not make two processes draw
# the same commit ids, which would let one transaction pass for another's
# partner. Reseeded in forked children for the same reason.
_rng = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rng.seed)
_getrandbits = _rng.getrandbits
_time = time.time


def make(storage_ids):
    """A fresh tag naming ``storage_ids`` (a tuple of storage id strings)."""
    return make_named(storage_names(storage_ids))


def make_named(names):
    """A fresh tag from ``storage_names(ids)`` (the hook caches those)."""
    return "1 %016x %x %s" % (_getrandbits(64), int(_time() * 1000), names)


class Tag:
    __slots__ = ("commit_id", "start_ms", "storages")

    def __init__(self, commit_id, start_ms, storages):
        self.commit_id = commit_id
        self.start_ms = start_ms
        self.storages = storages

    def __repr__(self):
        return "Tag(%016x, %d, %r)" % (self.commit_id, self.start_ms, self.storages)


def parse(value):
    """A ``Tag`` from a tag value, or ``ValueError`` saying what is wrong.
    Mirrors the Rust reader (src/datafs/extension.rs): versions other than 1
    are refused."""
    if not isinstance(value, str):
        raise ValueError("tag is %s, not str" % type(value).__name__)
    parts = value.split(" ")
    if len(parts) < 4 or parts[0] != VERSION:
        raise ValueError("not a version 1 tag: %r" % (value,))
    cid, start, names = parts[1], parts[2], parts[3:]

    def hexnum(text, width, what):
        if not text or (width and len(text) != width) or len(text) > 16 or \
                text.strip("0123456789abcdef"):
            raise ValueError("bad %s %r in tag" % (what, text))
        return int(text, 16)

    commit_id = hexnum(cid, 16, "commit id")
    start_ms = hexnum(start, 0, "start time")
    for n in names:
        hexnum(n, 8, "storage name")
    if names != sorted(set(names)):
        raise ValueError("storage names not sorted and unique in tag: %r" % (value,))
    return Tag(commit_id, start_ms, names)
