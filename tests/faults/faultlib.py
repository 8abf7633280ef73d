"""Fault injection over every file-changing system call of `cut`, `backup`
and `restore` (issue 13), with strace, on a site with a blob directory
(issue 9).

The real binary runs under ``strace -f -e inject=SYSCALL:...:when=N``:
the N-th call of SYSCALL fails with EIO or ENOSPC, or the process is
killed with SIGKILL on entry to it (the call is not made). strace counts
``when=N`` per thread, so the calls are enumerated the same way first (one
traced, un-faulted run per command: every call of the traced syscalls,
numbered per thread) and a case is one (syscall, N) whose N-th call, in
some thread, touches a file of the site (the blob directory, its tail,
restore's directory being built and the repository's pool and manifests
included). After each case the promises are checked (docs/faults.md):

- ``data intact``: the user's Data.fs and blob directory are unchanged,
  or exactly the correct result (backup and a restore elsewhere never
  change them; a cut never touches a blob file at or below the point);
- ``removed bytes kept``: cut's tail file and tail directory, restore's
  ``Data.fs.before-restore-*`` and ``blobs.before-restore-*``;
- ``nothing partial``: nothing partial or stale under a final name (every
  backup file listed by a ``.dat`` line and matching its md5, every
  ``.dat`` line naming a file that is there, no truncated Data.fs or tail,
  no index describing other bytes than the file beside it, the timestamp
  file naming only runs that have a manifest and a blob run, every pool
  file and blob manifest whole, every manifest's pool files there, a
  restored or standby blob directory holding only whole files of the run);
- ``all or nothing``: a restore that fails (not killed) leaves the Data.fs
  and its blob directory both as they were or both restored;
- ``exit 0 = done``: exit status 0 only when the whole job was done and
  can be verified (the same checks as after a clean run);
- ``rerun succeeds``: the same command run again at once (same second, no
  sleep) exits 0, and the result equals an un-faulted run's;
- ``verify after rerun``: ``restore --verify`` passes.

Everything here is small: a Data.fs of 11 ZODB transactions (8 KB) with
8 blob files, one storage, a repository with a full and an incremental
backup. Every child is bounded by a timeout and killed with its process
group.
"""

import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path[:0] = [os.path.join(REPO, "clients", "python", "src"), os.path.join(REPO, "tests", "python")]

import tidharness  # noqa: E402

# ZODB warns on stderr when it ignores a stale index; the checks say it.
logging.getLogger("ZODB").setLevel(logging.ERROR)

STRACE = os.environ.get("STRACE", "/usr/bin/strace")
RUN_TIMEOUT = 60

# Calls that change a file, and calls that only look at one (failed with
# EIO only: an error while looking is still an error, issue 13 item 0).
CHANGING = {
    "write", "pwrite64", "writev", "pwritev", "pwritev2", "fsync", "fdatasync", "syncfs",
    "ftruncate", "truncate", "rename", "renameat", "renameat2", "link", "linkat",
    "unlink", "unlinkat", "mkdir", "mkdirat", "rmdir", "copy_file_range",
    "sendfile", "fchmod", "fchmodat", "fchown", "fchownat", "chmod", "chown",
}
INSPECTING = {"statx", "newfstatat"}
TRACED = sorted(CHANGING | INSPECTING | {"openat"})
# Calls whose quoted arguments are paths (elsewhere they are buffers).
PATH_CALLS = {
    "openat", "statx", "newfstatat", "rename", "renameat", "renameat2", "link",
    "linkat", "unlink", "unlinkat", "mkdir", "mkdirat", "rmdir", "truncate",
    "fchmodat", "fchownat", "chmod", "chown",
}
WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")
FAULTS = ("EIO", "ENOSPC", "SIGKILL")

LINE = re.compile(r"^(\d+)\s+([a-z0-9_]+)\((.*)$")
FD_PATH = re.compile(r"\d+<([^>]*)>")
# The arguments of a path call, in order: AT_FDCWD (strace -y adds the
# cwd), a descriptor with its path, a quoted string.
ARG = re.compile(r'(?P<cwd>AT_FDCWD)(?:<[^>]*>)?|\d+<(?P<fd>[^>]*)>|"(?P<q>(?:[^"\\]|\\.)*)"')
STAMP = re.compile(r"\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d")
TMP = re.compile(r"\.tmp-\d+-\d+")
TIDHEX = re.compile(r"(?<=\.tail-)[0-9a-f]{16}")
PIDS = re.compile(r"(\.tmp-restore-|\.restore-)\d+(-\d+)?")
BUSHY = re.compile(r"(?:0x[0-9a-f]{2}/){7}0x[0-9a-f]{2}")
TIDREPR = re.compile(r"0x[0-9a-f]{2,16}(?=\.blob|crashed)")
UNIXTIME = re.compile(r"(?<=blobs\.)before-restore-\d{9,}")
TAIL_NAME = re.compile(r"^Data\.fs\.tail-[0-9a-f]{16}(\.\d+)?$")
KEPT_NAME = re.compile(r"^Data\.fs\.before-restore-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d$")
DATA_NAME = re.compile(r"^\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d\.(fs|fsz|deltafs|deltafsz)$")


def bin_path():
    return tidharness.tidstorage_bin()


# ---------------------------------------------------------------- processes

def run(args, cwd, strace=None, timeout=RUN_TIMEOUT):
    """Runs the binary (under `strace` args when given) in `cwd`; returns
    (exit status, stdout, stderr). A child that outlives `timeout` is
    killed with its process group and reported as status None."""
    cmd = (strace or []) + [bin_path()] + args
    env = dict(os.environ)
    env.pop("TIDSTORAGE_CONFIG", None)
    p = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate(timeout=10)
        return None, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def tid(site, *args, **kw):
    return run(["-c", "t.toml"] + list(args), site, **kw)


def ok(site, *args):
    rc, out, err = tid(site, *args)
    if rc != 0:
        raise AssertionError("tidstorage %s failed (%s):\n%s%s" % (" ".join(args), rc, out, err))
    return out


def first_line(text, n=2):
    """The first `n` non-blank lines of a message, joined (a summary line
    is often followed by the line naming the cause)."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    return " / ".join(lines[:n])[:300]


# ---------------------------------------------------------------- the world

# The blob side of the workload: transaction number (1-based, over the
# whole history) -> (blob name, created or overwritten). Transactions 1-4
# are the template's full backup, 5-7 its incremental, 9 the point, 10-11
# what a cut removes; so every step meets blob records: a full and an
# incremental run in the template's repository, two new files for the
# next backup (8, 9), history (b0 and b1 overwritten), two files above
# the point (b2's second revision, a new oid b4) for the cut.
BLOB_STEPS = {1: "b0", 2: "b1", 4: "b0", 6: "b2", 8: "b1", 9: "b3", 10: "b2", 11: "b4"}


def blob_bytes(number, name):
    """The content of the blob `name` written by transaction `number`."""
    k = int(name[1:])
    return (b"%s written by transaction %d; " % (name.encode(), number)) * (3 + 7 * k)


def zodb_write(path, n, blob_dir):
    """Commits `n` small transactions with the real ZODB (FileStorage with
    `blob_dir`), creating or overwriting the blobs BLOB_STEPS names;
    returns their TIDs."""
    import transaction
    import ZODB
    import ZODB.FileStorage
    from ZODB.blob import Blob
    from ZODB.utils import u64
    storage = ZODB.FileStorage.FileStorage(path, blob_dir=blob_dir)
    db = ZODB.DB(storage)
    conn = db.open()
    root = conn.root()
    tids = []
    start = root.get("n", 0)  # transactions written so far
    for i in range(n):
        number = start + i + 1
        root["k%d" % ((number - 1) % 5)] = b"x" * 100 + str(number - 1).encode()
        root["n"] = number
        name = BLOB_STEPS.get(number)
        if name is not None:
            if name not in root:
                root[name] = Blob()
            with root[name].open("w") as f:
                f.write(blob_bytes(number, name))
        transaction.get().note("transaction %d" % (number - 1))
        transaction.commit()
        tids.append(u64(storage.lastTransaction()))
    conn.close()
    db.close()
    for side in (".tmp",):
        if os.path.exists(path + side):
            os.remove(path + side)
    return tids


def crash_leftovers(blob_dir, oid, tid):
    """What a ZODB client killed in the middle of a blob upload leaves: an
    uncommitted file in `tmp/` (Blob.open("w")'s BUC*) and one of
    `blob_mkstemp`'s temporaries (`<tid repr>XXXXXXXX.tmp`) in the
    directory of `oid`, for an uncommitted `tid`. A cut deletes the first
    and moves the second to the tail; nothing else looks at them."""
    from ZODB.blob import FilesystemHelper
    from ZODB.utils import p64, tid_repr
    with open(os.path.join(blob_dir, "tmp", "BUCcrashed"), "wb") as f:
        f.write(b"an upload that never committed")
    helper = FilesystemHelper(blob_dir)
    d = helper.getPathForOID(p64(oid))
    with open(os.path.join(d, tid_repr(p64(tid)) + "crashed0.tmp"), "wb") as f:
        f.write(b"a store that never committed")


CONFIG = """\
[server]
status_file = "status.tid"
address = "127.0.0.1"
port = %d
[backup]
timestamp_file = "timestamps.log"
status_file_backup_dir = "status-copies"
[[storage]]
id = "main"
data_fs = "var/Data.fs"
blob_dir = "var/blobs"
repository = "repo"
"""


def snapshot(root):
    """{relative path: bytes} of every file under `root` (locks left out:
    their content is a pid)."""
    out = {}
    for d, _dirs, files in os.walk(root):
        for f in files:
            if f in ("tidstorage.lock", "Data.fs.lock"):
                continue
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[short(root, p)] = fh.read()
    return out


def tree(root):
    """A blob directory as it is: {relative path: (mode, bytes)} for a
    file, {relative path/: None} for a directory; None when `root` is
    absent. Everything under it counts (temporaries too): a blob
    directory is compared whole."""
    if not os.path.isdir(root):
        return None
    out = {}
    for d, dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        for n in dirs:
            out[os.path.normpath(os.path.join(rel, n)) + "/"] = None
        for n in files:
            p = os.path.join(d, n)
            with open(p, "rb") as fh:
                out[os.path.normpath(os.path.join(rel, n))] = (
                    stat.S_IMODE(os.lstat(p).st_mode), fh.read())
    return out


def settled(t):
    """A `tree` as a finished job is compared: temporaries a killed run
    left (BLOB_TEMP: never a final name, ZODB ignores them) and
    directories holding no file (an oid directory a failed cut emptied
    and its rerun, with nothing to move, leaves) are not counted; `tmp/`
    is."""
    if t is None:
        return None
    files = {k: v for k, v in t.items()
             if v is not None and not BLOB_TEMP.search(os.path.basename(k))}
    dirs = {k: None for k in t if t[k] is None
            and (k == "tmp/" or any(f.startswith(k) for f in files))}
    files.update(dirs)
    return files


def tree_files(t):
    """The files of a `tree` (its directories left out): {path: bytes}."""
    return {k: v[1] for k, v in (t or {}).items() if v is not None}


def tree_diff(got, want):
    """A short description of how blob directory `got` differs from
    `want` (both `tree`s): what is missing, extra, different."""
    if got is None:
        return "absent"
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differ = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    parts = []
    for label, names in (("missing", missing), ("extra", extra), ("different", differ)):
        if names:
            more = " and %d more" % (len(names) - 3) if len(names) > 3 else ""
            parts.append("%s %s%s" % (label, ", ".join(_n(n) for n in names[:3]), more))
    for k in differ:
        g, w = got[k], want[k]
        if g is not None and w is not None:
            if g[1] != w[1]:
                parts.append("%s holds %d bytes, not %d" % (_n(k), len(g[1]), len(w[1])))
            elif g[0] != w[0]:
                parts.append("%s has mode %o, not %o" % (_n(k), g[0], w[0]))
            break
    return "; ".join(parts)


# Temporaries a killed run may leave (never a final name): backup's pool
# and manifest temporaries `.NAME.tmp-PID-N`, restore's blob directory
# being built `.NAME.restore-PID-N`, an incremental restore's
# `NAME.tmp-restore-PID` in a standby's oid directory.
BLOB_TEMP = re.compile(r"(\.tmp-\d+-\d+$|\.tmp-restore-\d+$|^\.[^/]*\.restore-\d+-\d+$)")


def parse_blob_manifest(text):
    """A blob run's manifest file (format: src/blobs/snapshot.rs) as
    {"layout", "point", "base", "entries": {(oid, tid): (size, crc32)}};
    raises ValueError for anything but a whole manifest."""
    lines = text.decode("ascii").split("\n")
    if lines[-1] != "" or lines[-2] != "end":
        raise ValueError("does not end with `end`")
    lines = lines[:-2]
    if lines[0] != "tidstorage-blobs 1":
        raise ValueError("no header")
    layout = lines[1].partition("layout ")[2]
    point = lines[2].partition("point ")[2]
    rest = lines[3:]
    base = None
    if rest and rest[0].startswith("base "):
        base = rest[0][5:]
        rest = rest[1:]
    count = int(rest[0].partition("files ")[2])
    entries = {}
    for ln in rest[1:]:
        o, t, size, crc = ln.split(" ")
        entries[(int(o, 16), int(t, 16))] = (int(size), int(crc, 16))
    if count != len(entries) or count != len(rest) - 1:
        raise ValueError("says %d files, lists %d" % (count, len(rest) - 1))
    return {"layout": layout, "point": None if point == "none" else int(point, 16),
            "base": base, "entries": entries}


def blob_run(site, stamp):
    """The manifest of run `stamp` with its base runs merged (ValueError or
    OSError when one is missing or not whole)."""
    runs = sp(site, "repo/blobs/runs")
    m = parse_blob_manifest(open(os.path.join(runs, stamp + ".blobs"), "rb").read())
    merged = dict(m["entries"])
    base, seen = m["base"], {stamp}
    while base is not None:
        if base in seen:
            raise ValueError("the chain of base runs loops at " + base)
        seen.add(base)
        b = parse_blob_manifest(open(os.path.join(runs, base + ".blobs"), "rb").read())
        merged.update(b["entries"])
        base = b["base"]
    m["merged"] = merged
    return m


def bushy(oid, tid):
    """(oid directory, file name) of a blob file in the bushy layout."""
    from ZODB.utils import p64, tid_repr
    d = "/".join("0x%02x" % b for b in p64(oid))
    return d, tid_repr(p64(tid)) + ".blob"


def index_content(path):
    """(pos, sorted items) of a Data.fs.index as ZODB loads it, or raises."""
    from ZODB.fsIndex import fsIndex
    d = fsIndex.load(path)
    return d["pos"], sorted(d["index"].items())


def zodb_opens(path):
    """Opens the file as ZEO would (read-only) and reads every transaction;
    returns (last tid, transaction count)."""
    from ZODB.FileStorage import FileStorage
    from ZODB.utils import u64
    st = FileStorage(path, read_only=True)
    try:
        n = 0
        for t in st.iterator():
            for _r in t:
                pass
            n += 1
        return u64(st.lastTransaction()), n
    finally:
        st.close()


def zodb_blobs(path, blob_dir):
    """Opens the Data.fs with its blob directory through ZODB.DB
    (read-only) and reads every reachable blob and every blob record's
    file; returns ({blob name: bytes}, {(oid, tid): bytes})."""
    import ZODB
    from ZODB.blob import is_blob_record
    from ZODB.FileStorage import FileStorage
    from ZODB.utils import u64
    st = FileStorage(path, blob_dir=blob_dir, read_only=True)
    db = ZODB.DB(st)
    try:
        conn = db.open()
        root = conn.root()
        reachable = {}
        for name in sorted(set(BLOB_STEPS.values())):
            if name in root:
                with root[name].open("r") as f:
                    reachable[name] = f.read()
        files = {}
        for t in st.iterator():
            for r in t:
                if r.data and is_blob_record(r.data):
                    with open(st.loadBlob(r.oid, r.tid), "rb") as f:
                        files[(u64(r.oid), u64(r.tid))] = f.read()
        conn.close()
        return reachable, files
    finally:
        db.close()


# Blob file names carry their TIDs; reports name them by transaction
# (`t9.blob`) so that sweeps compare. Filled by World.
TID_LABELS = {}


class World:
    """The templates every case copies, the daemon backups ask, and what
    clean runs give (the results a faulted run is compared with).

    `T` (Data.fs of 11 transactions with its ZODB index and lock file, its
    blob directory (BLOB_STEPS: 8 blob files of 5 blobs, two overwritten,
    plus a crashed upload's leftovers), a repository holding a full and an
    incremental backup of the first 7 with their blob runs, a status file
    whose point is the 9th TID, so a cut removes 2 transactions and 2 blob
    files): the template of cut and backup. `R`: T after a clean coherent
    backup, the template of restore. `S`: R with a standby (and its blob
    directory) restored from the first run, for `restore --incremental`.
    """

    def __init__(self, base):
        from ZODB.utils import p64, tid_repr
        self.base = base
        self._n = 0
        t = os.path.join(base, "T")
        os.makedirs(os.path.join(t, "var"))
        os.makedirs(os.path.join(t, "repo"))
        with open(os.path.join(t, "t.toml"), "w") as f:
            f.write(CONFIG % 1)
        data_fs = os.path.join(t, "var", "Data.fs")
        blob_dir = os.path.join(t, "var", "blobs")
        tids = zodb_write(data_fs, 4, blob_dir)
        ok(t, "backup", "--no-server")
        tids += zodb_write(data_fs, 3, blob_dir)
        ok(t, "backup", "--no-server")
        tids += zodb_write(data_fs, 4, blob_dir)
        self.tids = tids
        self.point = tids[8]
        TID_LABELS.clear()
        TID_LABELS.update({tid_repr(p64(x)): "t%d" % (i + 1) for i, x in enumerate(tids)})
        # The blob files ZODB wrote: (oid, tid) -> bytes, by what it reads.
        reachable, self.blob_files = zodb_blobs(data_fs, blob_dir)
        assert len(self.blob_files) == len(BLOB_STEPS), self.blob_files
        assert reachable == {n: blob_bytes(max(k for k, v in BLOB_STEPS.items() if v == n), n)
                             for n in set(BLOB_STEPS.values())}, reachable
        self.blob_oid = {}  # blob name -> oid
        for number, name in BLOB_STEPS.items():
            self.blob_oid.setdefault(name, [o for (o, x), _ in self.blob_files.items()
                                            if x == tids[number - 1]][0])
        TID_LABELS[tid_repr(p64(tids[-1] + 1))] = "t12"
        crash_leftovers(blob_dir, self.blob_oid["b1"], tids[-1] + 1)
        self.T_blobs = tree(blob_dir)
        with open(os.path.join(t, "status.tid"), "w") as f:
            f.write("1700000000.00 f {'main': %d}\n" % self.point)
        shutil.copy(os.path.join(t, "status.tid"), os.path.join(base, "daemon.tid"))
        self.daemon = Daemon(base, os.path.join(base, "daemon.tid"))
        with open(os.path.join(t, "t.toml"), "w") as f:
            f.write(CONFIG % self.daemon.port)
        assert self.daemon.dump() == {"main": self.point}, self.daemon.dump()
        self.T = t
        self.T_files = snapshot(t)
        self.data = self.T_files["var/Data.fs"]
        self.index = self.T_files["var/Data.fs.index"]
        self.status = self.T_files["status.tid"]
        self.timestamps = self.T_files["timestamps.log"].decode().split()
        self.T_chain = self.manifest(t, self.timestamps[-1])["chain"]
        self.T_runs = sorted(n[:-6] for n in os.listdir(os.path.join(t, "repo/blobs/runs")))
        assert self.T_runs == [c[:19] for c in self.T_chain], (self.T_runs, self.T_chain)

        # The clean cut.
        c = self.fresh("T", "ref-cut")
        ok(c, "cut")
        self.cut = read(c, "var/Data.fs")
        assert len(self.cut) < len(self.data) and self.data.startswith(self.cut)
        self.tail = self.data[len(self.cut):]
        self.cut_index = index_content(os.path.join(c, "var/Data.fs.index"))
        self.tail_name = "blobs.tail-%016x" % self.point
        self.cut_blobs = tree(os.path.join(c, "var/blobs"))
        self.cut_tail_blobs = tree(os.path.join(c, "var", self.tail_name))
        # Exactly the files at or below the point stay (tmp/ emptied);
        # the two above it and the crashed temporary went to the tail.
        below = {k for k in self.blob_files if k[1] <= self.point}
        assert len(below) == 6 and len([f for f in tree_files(self.cut_blobs)
                                        if f.endswith(".blob")]) == 6, self.cut_blobs
        assert len(tree_files(self.cut_tail_blobs)) == 4, self.cut_tail_blobs  # 2 + temp + .layout
        self._check_blobs_with_zodb(os.path.join(c, "var/Data.fs"),
                                    os.path.join(c, "var/blobs"), below)

        # R: a clean coherent (incremental) backup.
        r = os.path.join(base, "R")
        shutil.copytree(t, r, symlinks=True)
        ok(r, "backup")
        self.R = r
        self.R_files = snapshot(r)
        self.R_timestamps = self.R_files["timestamps.log"].decode().split()
        stamp = self.manifest(r, self.R_timestamps[-1])["chain"][-1][:19]
        self.R_run = blob_run(r, stamp)
        assert set(self.R_run["merged"]) == below, self.R_run

        # The clean restore: exactly the cut file, with the same index, and
        # the cut's blob files in a fresh blob directory.
        c = self.fresh("R", "ref-restore")
        ok(c, "restore", "--output-dir", "out")
        self.restored = read(c, "out/var/Data.fs")
        assert self.restored == self.cut, "a clean restore differs from a clean cut"
        self.restored_index = index_content(sp(c, "out/var/Data.fs.index"))
        self.restored_blobs = tree(sp(c, "out/var/blobs"))
        assert ({k: v for k, v in tree_files(self.restored_blobs).items() if k.endswith(".blob")}
                == {k: v for k, v in tree_files(self.cut_blobs).items() if k.endswith(".blob")})
        assert self.restored_blobs["tmp/"] is None and self.restored_blobs[".layout"][1] == b"bushy"
        self._check_blobs_with_zodb(sp(c, "out/var/Data.fs"), sp(c, "out/var/blobs"), below)

        # S: R with a standby in out/ restored from the first (full) backup
        # run: `restore --incremental` appends the rest and cuts it.
        st = os.path.join(base, "S")
        shutil.copytree(r, st, symlinks=True)
        ok(st, "restore", "--no-cut", "--date", self.timestamps[0], "--output-dir", "out")
        self.S = st
        self.standby = read(st, "out/var/Data.fs")
        assert self.restored.startswith(self.standby) and len(self.standby) < len(self.restored)
        self.standby_count = zodb_opens(sp(st, "out/var/Data.fs"))[1]
        self.restored_count = zodb_opens(sp(c, "out/var/Data.fs"))[1]
        self.standby_blobs = tree(sp(st, "out/var/blobs"))
        assert 0 < len(tree_files(self.standby_blobs)) < len(tree_files(self.restored_blobs))

    def _check_blobs_with_zodb(self, data_fs, blob_dir, records):
        """ZODB reads every blob record's file of a clean result, each the
        bytes it wrote (so a faulted run equal to this result is right)."""
        before = tree(blob_dir)
        _reachable, files = zodb_blobs(data_fs, blob_dir)
        assert files == {k: self.blob_files[k] for k in records}, sorted(files)
        assert tree(blob_dir) == before, "ZODB changed the blob directory it read"

    def fresh(self, template, name=None):
        """A new copy of template `T`, `R` or `S`."""
        self._n += 1
        d = os.path.join(self.base, "cases", name or "c%05d" % self._n)
        if os.path.exists(d):
            shutil.rmtree(d)
        src = getattr(self, template)  # T, R or S
        shutil.copytree(src, d, symlinks=True)
        if template == "S":
            # The standby sits under out/<its site's absolute path>/.
            old = os.path.join(d, "out", src.lstrip("/"))
            new = os.path.join(d, "out", d.lstrip("/"))
            os.makedirs(os.path.dirname(new), exist_ok=True)
            os.rename(old, new)
        # The standby's paths (the state file records its inode) are the
        # copy's own: `--quick` would not trust them, the default checks all.
        return d

    @staticmethod
    def manifest(site, run_name):
        with open(os.path.join(site, "repo", run_name + ".tidstorage.json")) as f:
            return json.load(f)

    def close(self):
        self.daemon.stop()
        shutil.rmtree(self.base, ignore_errors=True)


class Daemon:
    """`tidstorage serve` on a free port, replaying `status_file` (so it
    publishes its point at once). Its own, not tidharness's: the e2e
    suite's fixtures stop every process tidharness started."""

    def __init__(self, workdir, status_file):
        self.proc = subprocess.Popen(
            [bin_path(), "serve", "--port", "0", "--status-file", status_file], cwd=workdir,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=tidharness.python_env())
        self.log = tidharness._Lines(self.proc.stderr)
        line = self.log.wait_for("listening on ", timeout=30)
        if line is None:
            self.stop()
            raise AssertionError("daemon did not start:\n" + "\n".join(self.log.drain()))
        self.port = int(line.rsplit(":", 1)[1])

    def dump(self):
        with tidharness.DaemonConn(self.port) as c:
            return c.dump()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def sp(site, rel):
    """The real path of a site-relative name. `restore --output-dir DIR`
    recreates each configured data_fs's absolute path under DIR, so the
    suite's short names `out/var/...` (and `done-check/var/...`) stand for
    `out/<site>/var/...`."""
    for d in ("out/", "done-check/"):
        if rel.startswith(d):
            return os.path.join(site, d, site.lstrip("/"), rel[len(d):])
    return os.path.join(site, rel)


def short(site, p):
    """The site-relative short name of an absolute path (see `sp`)."""
    r = os.path.relpath(p, site)
    for d in ("out/", "done-check/"):
        long = d + site.lstrip("/") + "/"
        if r.startswith(long):
            return d + r[len(long):]
        if r + "/" == long:
            return d.rstrip("/")
    return r


def read(site, rel):
    with open(sp(site, rel), "rb") as f:
        return f.read()


def maybe(site, rel):
    p = sp(site, rel)
    if not os.path.exists(p):
        return None
    with open(p, "rb") as f:
        return f.read()


def listdir(site, rel):
    p = sp(site, rel)
    return sorted(os.listdir(p)) if os.path.isdir(p) else []


# ---------------------------------------------------------------- promises

def check_index_beside(site, rel_data, rel_index, problems, label):
    """An index under its final name must describe the bytes beside it."""
    p = sp(site, rel_index)
    if not os.path.exists(p):
        return
    data = maybe(site, rel_data)
    try:
        pos, _ = index_content(p)
    except Exception as e:  # a truncated pickle, anything ZODB rejects
        problems.append((label, "%s cannot be loaded (%s)" % (rel_index, type(e).__name__)))
        return
    if data is None:
        problems.append((label, "%s exists without %s" % (rel_index, rel_data)))
    elif pos != len(data):
        problems.append((label, "%s covers %d bytes but %s holds %d (stale index)"
                         % (rel_index, pos, rel_data, len(data))))


def check_repository(w, site, problems, label="nothing partial"):
    """Every data file listed by one .dat line and matching it; every line
    naming a file that is there; manifests readable with their chain
    present; the timestamp file's runs all with a manifest; status-file
    copies complete; .index files loadable."""
    repo = os.path.join(site, "repo")
    names = listdir(site, "repo")
    listed = {}
    for n in names:
        if not n.endswith(".dat"):
            continue
        with open(os.path.join(repo, n)) as f:
            lines = f.read().splitlines()
        for ln, text in enumerate(lines, 1):
            parts = text.split()
            if len(parts) != 4:
                problems.append((label, "%s:%d is not a .dat line: %r" % (_n(n), ln, text)))
                continue
            fname = os.path.basename(parts[0])
            start, end, md5 = int(parts[1]), int(parts[2]), parts[3]
            listed.setdefault(fname, []).append(n)
            fp = os.path.join(repo, fname)
            if not os.path.exists(fp):
                problems.append((label, "%s lists %s, which does not exist" % (_n(n), _n(fname))))
                continue
            raw = read(repo, fname)
            if fname.endswith("z"):
                try:
                    raw = gzip.decompress(raw)
                except Exception as e:
                    problems.append((label, "%s is not a whole gzip file (%s)" % (_n(fname), e)))
                    continue
            if len(raw) != end - start or hashlib.md5(raw).hexdigest() != md5:
                problems.append((label, "%s holds %d bytes, not the %d (md5) its .dat line says"
                                 % (_n(fname), len(raw), end - start)))
    for n in names:
        if DATA_NAME.match(n):
            owners = listed.get(n, [])
            if not owners:
                problems.append((label, "backup file %s is listed by no .dat (restore --verify "
                                 "fails on it)" % _n(n)))
            elif len(owners) > 1:
                problems.append((label, "%s is listed by %d .dat files" % (_n(n), len(owners))))
        elif n.endswith(".index"):
            try:
                index_content(os.path.join(repo, n))
            except Exception as e:
                problems.append((label, "%s cannot be loaded (%s)" % (_n(n), type(e).__name__)))
        elif n.endswith(".tidstorage.json"):
            try:
                with open(os.path.join(repo, n)) as f:
                    m = json.load(f)
            except Exception as e:
                problems.append((label, "manifest %s is not JSON (%s)" % (_n(n), e)))
                continue
            for c in m.get("chain") or []:
                if c not in names:
                    problems.append((label, "manifest %s names %s, which does not exist"
                                     % (_n(n), _n(c))))
    ts = maybe(site, "timestamps.log")
    if ts is not None:
        for run_name in ts.decode("utf-8", "replace").split():
            if run_name + ".tidstorage.json" not in names:
                problems.append((label, "the timestamp file names run %s, which has no "
                                 "manifest" % _n(run_name)))
    for n in listdir(site, "status-copies"):
        if n.startswith("."):
            continue
        if read(site, "status-copies/" + n) != w.status:
            problems.append((label, "status-copies/%s is not a whole copy of the status file"
                             % _n(n)))


def _pool_key(rel):
    """(oid, tid) of a pool file's relative path (bushy), or None."""
    parts = rel.split("/")
    m = re.match(r"^0x([0-9a-f]+)\.blob$", parts[-1])
    if len(parts) != 9 or not m or not all(re.match(r"^0x[0-9a-f]{2}$", x) for x in parts[:8]):
        return None
    return int("".join(x[2:] for x in parts[:8]), 16), int(m.group(1), 16)


def check_blob_repository(w, site, problems, label="nothing partial"):
    """The blob part of the repository: every pool file under its final
    name whole (the bytes ZODB wrote for its (oid, tid); one no manifest
    names is allowed, a partial one never); every manifest under its final
    name whole, its base runs there, each entry's pool file there with the
    entry's size and crc32; every run the timestamp file names has the
    blob run of its chain's last file. Temporaries (`.NAME.tmp-PID-N`) are
    not counted."""
    pool = sp(site, "repo/blobs/pool")
    for d, _dirs, files in os.walk(pool):
        for n in files:
            if BLOB_TEMP.search(n):
                continue
            rel = os.path.relpath(os.path.join(d, n), pool)
            key = _pool_key(rel)
            if key not in w.blob_files:
                problems.append((label, "repo/blobs/pool/%s is not a blob file of the site"
                                 % _n(rel)))
                continue
            with open(os.path.join(d, n), "rb") as f:
                b = f.read()
            if b != w.blob_files[key]:
                problems.append((label, "pool file %s holds %d bytes, not the %d ZODB wrote"
                                 % (_n(rel), len(b), len(w.blob_files[key]))))
    runs = listdir(site, "repo/blobs/runs")
    for n in runs:
        if BLOB_TEMP.search(n):
            continue
        if not n.endswith(".blobs"):
            problems.append((label, "repo/blobs/runs/%s is not a blob manifest" % _n(n)))
            continue
        try:
            m = parse_blob_manifest(read(site, "repo/blobs/runs/" + n))
        except (ValueError, IndexError, UnicodeDecodeError) as e:
            problems.append((label, "blob manifest %s is not whole (%s)" % (_n(n), e)))
            continue
        if m["base"] is not None and m["base"] + ".blobs" not in runs:
            problems.append((label, "blob manifest %s adds to run %s, which has no manifest"
                             % (_n(n), _n(m["base"]))))
        for (oid, t), (size, crc) in sorted(m["entries"].items()):
            d, f = bushy(oid, t)
            b = maybe(site, "repo/blobs/pool/%s/%s" % (d, f))
            if b is None:
                problems.append((label, "blob manifest %s names pool file %s, which does not "
                                 "exist" % (_n(n), _n(d + "/" + f))))
            elif len(b) != size or zlib.crc32(b) != crc:
                problems.append((label, "pool file %s does not match its entry in %s"
                                 % (_n(d + "/" + f), _n(n))))
    ts = maybe(site, "timestamps.log")
    for run_name in (ts or b"").decode("utf-8", "replace").split():
        try:
            last = w.manifest(site, run_name)["chain"][-1]
        except (OSError, ValueError, KeyError, IndexError):
            continue  # check_repository says it
        if last[:19] + ".blobs" not in runs:
            problems.append((label, "run %s: its Data.fs backup %s has no blob run (a restore "
                             "of it refuses)" % (_n(run_name), _n(last))))


def check_pool_read_only(site, problems):
    pool = sp(site, "repo/blobs/pool")
    for d, _dirs, files in os.walk(pool):
        for n in files:
            mode = stat.S_IMODE(os.lstat(os.path.join(d, n)).st_mode)
            if not BLOB_TEMP.search(n) and mode & 0o222:
                problems.append("pool file %s is writable (mode %o)"
                                % (_n(os.path.relpath(os.path.join(d, n), pool)), mode))


def _n(name):
    """A name with its run second, pids and TIDs replaced, so reports
    group and sweeps compare: a bushy oid path `0x00/.../0x05` is `oid5`,
    a blob file `0x03f1...blob` is named after its transaction (`t9.blob`),
    `blobs.before-restore-<unix time>` is `blobs.before-restore-TIME`."""
    name = TMP.sub(".tmp-PID-N", name)
    name = PIDS.sub(lambda m: m.group(1) + "PID" + ("-N" if m.group(2) else ""), name)
    name = BUSHY.sub(lambda m: "oid%d" % int(m.group(0).replace("0x", "").replace("/", ""), 16),
                     name)
    name = TIDREPR.sub(lambda m: TID_LABELS.get(m.group(0), m.group(0)), name)
    name = UNIXTIME.sub("before-restore-TIME", name)
    return TIDHEX.sub("TID", STAMP.sub("STAMP", name))


class Command:
    """One command of the sweep: its template, its arguments, the checks of
    the state it may leave and of a finished job."""

    # Whether the command names files after the current second (backup's
    # runs and status copies, restore --force's kept files): only then
    # must a case start early in a second (`start_early_in_a_second`).
    per_second = True

    def __init__(self, name, template, args):
        self.name, self.template, self.args = name, template, args

    def state(self, w, site):
        raise NotImplementedError

    def done(self, w, site, faulted=True):
        """What is missing for the job to be done (empty: done)."""
        raise NotImplementedError

    def failed(self, w, site):
        """What an error exit (not a kill) must not leave, beyond `state`."""
        return []


class Cut(Command):
    per_second = False  # the tails are named after the TID

    def __init__(self):
        super().__init__("cut", "T", ["cut"])

    def state(self, w, site):
        p = []
        data = maybe(site, "var/Data.fs")
        if data not in (w.data, w.cut):
            p.append(("data intact", "Data.fs is %s bytes, neither the original (%d) nor the "
                      "cut (%d)" % (None if data is None else len(data), len(w.data), len(w.cut))))
        tails = [n for n in listdir(site, "var") if TAIL_NAME.match(n)]
        for n in tails:
            b = read(site, "var/" + n)
            if b != w.tail:
                p.append(("nothing partial", "var/%s holds %d bytes, not the %d removed"
                          % (n, len(b), len(w.tail))))
        if data == w.cut and not any(read(site, "var/" + n) == w.tail for n in tails):
            p.append(("removed bytes kept", "Data.fs is cut but no Data.fs.tail-* holds the "
                      "removed bytes"))
        check_index_beside(site, "var/Data.fs", "var/Data.fs.index", p, "nothing partial")
        self._blob_state(w, site, p)
        return p

    @staticmethod
    def _blob_state(w, site, p):
        """Every blob file above the point (and the crashed temporary) is
        in the blob directory or in the tail, whole; files at or below it
        are untouched; the files of tmp/ are there or gone; nothing else."""
        live = tree(sp(site, "var/blobs")) or {}
        tail = tree(sp(site, "var/" + w.tail_name)) or {}
        moved = tree_files(w.cut_tail_blobs)
        for rel, v in w.T_blobs.items():
            if v is None:
                continue  # directories: an emptied oid directory goes
            if rel in moved and rel != ".layout":
                if live.get(rel) is None and tail.get(rel) is None:
                    p.append(("removed bytes kept", "%s is in neither var/blobs nor the tail"
                              % _n(rel)))
                for where, t in (("var/blobs", live), ("the tail", tail)):
                    if t.get(rel) is not None and t[rel] != v:
                        p.append(("nothing partial", "%s in %s is not the file it was (%s)"
                                  % (_n(rel), where, tree_diff({rel: t[rel]}, {rel: v}))))
            elif rel.startswith("tmp/"):
                if live.get(rel) not in (None, v):
                    p.append(("nothing partial", "var/blobs/%s changed" % _n(rel)))
            elif live.get(rel) != v:
                p.append(("data intact", "var/blobs/%s, at or below the point, %s"
                          % (_n(rel), "is gone" if live.get(rel) is None else "changed")))
        for rel, v in live.items():
            if v is not None and rel not in w.T_blobs:
                p.append(("nothing partial", "var/blobs/%s was not there before" % _n(rel)))
        for rel, v in tail.items():
            if v is None:
                continue
            if rel == ".layout":
                if v != w.cut_tail_blobs[".layout"]:
                    p.append(("nothing partial", "the tail's .layout holds %r, not %r"
                              % (v[1], w.cut_tail_blobs[".layout"][1])))
            elif re.match(r"\.\.layout\.tmp-", rel):
                # The marker's temporary, under no final name; a killed
                # cut leaves it and the rerun removes it (see `done`).
                continue
            elif rel not in moved:
                p.append(("nothing partial", "the tail holds %s, which is no file a cut moves"
                          % _n(rel)))

    def done(self, w, site, faulted=True):
        p = []
        if maybe(site, "var/Data.fs") != w.cut:
            p.append("Data.fs is not cut")
            return p
        for rel, want in (("var/blobs", w.cut_blobs), ("var/" + w.tail_name, w.cut_tail_blobs)):
            got, want = settled(tree(sp(site, rel))), settled(want)
            if got != want:
                p.append("%s is not a clean cut's (%s)" % (_n(rel), tree_diff(got, want)))
        if not os.path.exists(os.path.join(site, "var/Data.fs.index")):
            p.append("no Data.fs.index beside the cut file")
        else:
            try:
                if index_content(os.path.join(site, "var/Data.fs.index")) != w.cut_index:
                    p.append("Data.fs.index differs from a clean cut's")
            except Exception as e:
                p.append("Data.fs.index cannot be loaded (%s)" % type(e).__name__)
        last, _count = zodb_opens(os.path.join(site, "var/Data.fs"))
        if last != w.point:
            p.append("ZODB's last TID is %d, not the point %d" % (last, w.point))
        return p


class Backup(Command):
    def __init__(self, name, args, ext, full):
        super().__init__(name, "T", args)
        self.ext, self.full = ext, full

    def state(self, w, site):
        p = []
        if maybe(site, "var/Data.fs") != w.data:
            p.append(("data intact", "backup changed the Data.fs"))
        if maybe(site, "var/Data.fs.index") != w.index:
            p.append(("data intact", "backup changed the Data.fs.index"))
        live = tree(sp(site, "var/blobs"))
        if live != w.T_blobs:
            p.append(("data intact", "backup changed the blob directory (%s)"
                      % tree_diff(live, w.T_blobs)))
        check_repository(w, site, p)
        check_blob_repository(w, site, p)
        return p

    def done(self, w, site, faulted=True):
        p = []
        lines = (maybe(site, "timestamps.log") or b"").decode().split()
        if len(lines) <= len(w.timestamps) or lines[:len(w.timestamps)] != w.timestamps:
            return ["no new run in the timestamp file"]
        run_name = lines[-1]
        try:
            m = w.manifest(site, run_name)
        except (OSError, ValueError) as e:
            return ["run %s has no readable manifest (%s)" % (_n(run_name), e)]
        chain = m.get("chain") or []
        new = [c for c in chain if c not in w.T_chain]
        full_ext = ".fsz" if self.ext.endswith("z") else ".fs"
        new_full = len(chain) == 1 and len(new) == 1 and new[0].endswith(full_ext)
        if self.full:
            shape = new_full
        else:
            # After a fault, a new full chain is a right answer too: an
            # unreadable backup file is a reason for a full backup.
            shape = (chain[:len(w.T_chain)] == w.T_chain and len(new) == 1
                     and new[0].endswith(self.ext)) or (faulted and new_full)
        if not shape:
            p.append("the run's chain is %s, not %s" % (
                [_n(c) for c in chain],
                "one new full" if self.full else "the template's chain and one new file"))
        for c in new:
            ix = os.path.join(site, "repo", c.split(".")[0] + ".index")
            if not os.path.exists(ix):
                p.append("no .index beside the new backup file %s" % _n(c))
        sc = m.get("status_file_copy")
        if not sc:
            p.append("the run's manifest records no status file copy")
        elif maybe(site, sc) != w.status:
            p.append("the run's status file copy %s is missing or partial" % _n(sc))
        try:
            run = blob_run(site, chain[-1][:19]) if chain else None
        except (OSError, ValueError, IndexError, UnicodeDecodeError) as e:
            p.append("the new backup file has no whole blob run (%s)" % e)
        else:
            if run is None:
                pass
            elif run["merged"] != w.R_run["merged"]:
                p.append("the blob run lists %d files, not the clean run's %d"
                         % (len(run["merged"]), len(w.R_run["merged"])))
            elif (run["layout"], run["point"]) != (w.R_run["layout"], w.R_run["point"]):
                p.append("the blob run says layout %s point %s, not %s %s"
                         % (run["layout"], run["point"], w.R_run["layout"], w.R_run["point"]))
        check_pool_read_only(site, p)
        rep = []
        check_repository(w, site, rep)
        check_blob_repository(w, site, rep)
        p.extend(d for _, d in rep)
        rc, out, err = tid(site, "restore", "--verify")
        if rc != 0:
            p.append("restore --verify exits %s: %s" % (rc, first_line(_problem_line(out) or err)))
        chk = os.path.join(site, "done-check")
        shutil.rmtree(chk, ignore_errors=True)
        rc, out, err = tid(site, "restore", "--output-dir", "done-check")
        if rc != 0:
            p.append("a default restore exits %s: %s" % (rc, first_line(err)))
        elif maybe(site, "done-check/var/Data.fs") != w.restored:
            p.append("a default restore does not give the backed-up state")
        else:
            got = settled(tree(sp(site, "done-check/var/blobs")))
            if got != settled(w.restored_blobs):
                p.append("a default restore does not give the backed-up blob directory (%s)"
                         % tree_diff(got, w.restored_blobs))
        shutil.rmtree(chk, ignore_errors=True)
        return p


class Restore(Command):
    def __init__(self, name, args, target, force):
        super().__init__(name, "R", args)
        self.target, self.force = target, force
        self.per_second = force  # only a replaced file or directory is named by time

    def state(self, w, site):
        p = []
        repo_now = {k: v for k, v in snapshot(site).items() if k.startswith("repo/")}
        repo_then = {k: v for k, v in w.R_files.items() if k.startswith("repo/")}
        if repo_now != repo_then:
            changed = sorted(set(repo_now.items()) ^ set(repo_then.items()))
            p.append(("data intact", "restore changed the repository (%s)"
                      % ", ".join(sorted({_n(k) for k, _ in changed}))))
        data = maybe(site, self.target)
        d = os.path.dirname(self.target)
        if self.force:
            if data not in (w.data, w.restored):
                p.append(("data intact", "Data.fs is %s bytes, neither the old file (%d) nor "
                          "the restored one (%d)" % (None if data is None else len(data),
                                                      len(w.data), len(w.restored))))
            kept = [n for n in listdir(site, d) if KEPT_NAME.match(n)]
            for n in kept:
                if read(site, d + "/" + n) not in (w.data, w.restored):
                    p.append(("nothing partial", "%s/%s is not a whole Data.fs" % (d, _n(n))))
            if data != w.data and not any(read(site, d + "/" + n) == w.data for n in kept):
                p.append(("removed bytes kept", "Data.fs was replaced and the old file is "
                          "kept nowhere (no Data.fs.before-restore-* holds it)"))
        else:
            if data is not None and data != w.restored:
                p.append(("nothing partial", "%s is %d bytes, not the restored %d"
                          % (self.target, len(data), len(w.restored))))
            if maybe(site, "var/Data.fs") != w.data:
                p.append(("data intact", "a restore elsewhere changed var/Data.fs"))
        check_index_beside(site, self.target, self.target + ".index", p, "nothing partial")
        self._blob_state(w, site, p)
        return p

    def _blobs(self):
        return os.path.dirname(self.target) + "/blobs"

    def _kept_blobs(self, site):
        """The kept-aside blob directories beside the target: {name: tree}."""
        d = os.path.dirname(self.target)
        return {n: tree(sp(site, d + "/" + n)) for n in listdir(site, d)
                if n.startswith("blobs.before-restore-")}

    def _blob_state(self, w, site, p):
        """The target blob directory is absent, the old one, or exactly the
        restored one; a replaced one is kept whole."""
        target = self._blobs()
        got = tree(sp(site, target))
        if not self.force:
            if got is not None and got != w.restored_blobs:
                p.append(("nothing partial", "%s is neither absent nor the restored blob "
                          "directory (%s)" % (target, tree_diff(got, w.restored_blobs))))
            if tree(sp(site, "var/blobs")) != w.T_blobs:
                p.append(("data intact", "a restore elsewhere changed var/blobs"))
            return
        kept = self._kept_blobs(site)
        for n, t in sorted(kept.items()):
            if t not in (w.T_blobs, w.restored_blobs):
                p.append(("nothing partial", "var/%s is not a whole blob directory (%s)"
                          % (_n(n), tree_diff(t, w.T_blobs))))
        if got is not None and got not in (w.T_blobs, w.restored_blobs):
            p.append(("data intact", "var/blobs is neither the old blob directory nor the "
                      "restored one (%s)" % tree_diff(got, w.restored_blobs)))
        if got != w.T_blobs and w.T_blobs not in kept.values():
            p.append(("removed bytes kept", "var/blobs was replaced and the old one is kept "
                      "nowhere (no blobs.before-restore-* holds it)"))

    def failed(self, w, site):
        """After an error exit (not a kill): all or nothing, the Data.fs
        and its blob directory both as they were or both restored (with
        --force, an old Data.fs beside the restored blobs lacks the files
        above the point, and beside no blob directory lacks every one)."""
        old = (w.data, w.T_blobs) if self.force else (None, None)
        pair = (maybe(site, self.target), tree(sp(site, self._blobs())))
        if pair in (old, (w.restored, w.restored_blobs)):
            return []

        def which(x, was, new):
            return "absent" if x is None else "old" if x == was else \
                "restored" if x == new else "other"
        return [("all or nothing", "the failed restore left %s %s and %s %s" % (
            self.target, which(pair[0], old[0], w.restored),
            self._blobs(), which(pair[1], old[1], w.restored_blobs)))]

    def done(self, w, site, faulted=True):
        p = []
        if maybe(site, self.target) != w.restored:
            return ["%s is not the restored file" % self.target]
        if self.force:
            d = os.path.dirname(self.target)
            if not any(KEPT_NAME.match(n) and read(site, d + "/" + n) == w.data
                       for n in listdir(site, d)):
                p.append("the replaced Data.fs is not kept")
        ix = sp(site, self.target + ".index")
        if not os.path.exists(ix):
            p.append("no Data.fs.index beside the restored file")
        else:
            try:
                if index_content(ix) != w.restored_index:
                    p.append("Data.fs.index differs from a clean restore's")
            except Exception as e:
                p.append("Data.fs.index cannot be loaded (%s)" % type(e).__name__)
        last, _count = zodb_opens(sp(site, self.target))
        if last != w.point:
            p.append("ZODB's last TID is %d, not the point %d" % (last, w.point))
        got, want = settled(tree(sp(site, self._blobs()))), settled(w.restored_blobs)
        if got != want:
            p.append("%s is not the restored blob directory (%s)"
                     % (self._blobs(), tree_diff(got, want)))
        if self.force and w.T_blobs not in self._kept_blobs(site).values():
            p.append("the replaced blob directory is not kept")
        return p


class Incremental(Restore):
    """`restore --incremental` of a standby (template S): at every moment
    FileStorage sees the old standby or the restored database, never a mix;
    the bytes before the standby's end are never changed. A finished job is
    a restore's (`Restore.done`)."""

    def __init__(self):
        super().__init__("restore-incremental",
                         ["restore", "--incremental", "--output-dir", "out"],
                         "out/var/Data.fs", False)
        self.template = "S"

    def state(self, w, site):
        p = []
        repo_now = {k: v for k, v in snapshot(site).items() if k.startswith("repo/")}
        repo_then = {k: v for k, v in w.R_files.items() if k.startswith("repo/")}
        if repo_now != repo_then:
            p.append(("data intact", "restore changed the repository"))
        data = maybe(site, self.target)
        self._standby_blobs(w, site, data, p)
        if data is None:
            return p + [("data intact", "the standby is gone")]
        if data == w.restored:
            # Visible; the old index may still be beside it until the rerun
            # writes the new one: a prefix index ZODB extends by a scan.
            self._index_covers(w, site, p, (len(w.standby), len(w.restored)))
            return p
        elif not data.startswith(w.standby):
            p.append(("data intact", "the standby's old bytes changed"))
        else:
            # Old bytes plus hidden appended ones: FileStorage must see the
            # old database (a partly appended one would be neither).
            _last, count = zodb_opens(sp(site, self.target))
            if count != w.standby_count:
                p.append(("nothing partial", "FileStorage sees %d transactions: neither the "
                          "standby's %d nor the restore's %d"
                          % (count, w.standby_count, w.restored_count)))
            # The old index still describes what FileStorage sees.
            self._index_covers(w, site, p, (len(w.standby),))
            return p
        check_index_beside(site, self.target, self.target + ".index", p, "nothing partial")
        return p

    def failed(self, w, site):
        # A standby's blob directory gets its new files first, invisible
        # until the Data.fs grows: `state` checks that.
        return []

    def _standby_blobs(self, w, site, data, p):
        """The standby's blob directory never loses a file it had; what
        else it holds is a whole file of the run (temporaries aside); once
        the appended database is visible, every file of it is there."""
        target = self._blobs()
        got = tree(sp(site, target))
        if got is None:
            p.append(("data intact", "the standby's blob directory is gone"))
            return
        for rel, v in w.standby_blobs.items():
            if rel not in got or got[rel] != v:
                p.append(("data intact", "the standby's %s/%s %s" % (
                    target, _n(rel), "is gone" if rel not in got else "changed")))
        for rel, v in got.items():
            if rel in w.standby_blobs or BLOB_TEMP.search(os.path.basename(rel.rstrip("/"))):
                continue
            if w.restored_blobs.get(rel, False) != v:
                p.append(("nothing partial", "%s/%s is not a whole file of the run (%s)"
                          % (target, _n(rel), "not in the run" if rel not in w.restored_blobs
                             else tree_diff({rel: v}, {rel: w.restored_blobs[rel]}))))
        if data == w.restored:
            lacking = sorted(set(tree_files(w.restored_blobs)) - set(tree_files(got)))
            if lacking:
                p.append(("nothing partial", "the appended database is visible but its blob "
                          "files %s are missing" % ", ".join(_n(x) for x in lacking)))

    def _index_covers(self, w, site, p, allowed):
        """The index beside the standby, if any, covers one of `allowed`."""
        ix = sp(site, self.target + ".index")
        if not os.path.exists(ix):
            return
        try:
            pos, _ = index_content(ix)
        except Exception as e:
            p.append(("nothing partial", "the index cannot be loaded (%s)" % type(e).__name__))
            return
        if pos not in allowed:
            p.append(("nothing partial", "the index covers %d bytes, not one of %s"
                      % (pos, "/".join(str(a) for a in allowed))))


COMMANDS = [
    Cut(),
    Backup("backup-full", ["backup", "--full"], ".fs", True),
    Backup("backup-incremental", ["backup"], ".deltafs", False),
    Backup("backup-gzip", ["backup", "--gzip"], ".deltafsz", False),
    Restore("restore-new", ["restore", "--output-dir", "out"], "out/var/Data.fs", False),
    Restore("restore-force", ["restore", "--force"], "var/Data.fs", True),
    Incremental(),
]
BY_NAME = {c.name: c for c in COMMANDS}


# ---------------------------------------------------------------- the calls

class Call:
    """The N-th call of a syscall in one thread, as traced."""

    def __init__(self, syscall, n, desc, changing):
        self.syscall, self.n, self.desc, self.changing = syscall, n, desc, changing

    def __repr__(self):
        return "%s#%d %s" % (self.syscall, self.n, self.desc)


def _site_paths(syscall, args, site):
    """The site files a traced call touches, relative to the site."""
    found = []
    if syscall in PATH_CALLS:
        # The first two quoted strings are paths (statx's struct is not
        # quoted); a relative one is relative to the directory descriptor
        # before it (`unlinkat(5</x/.blobs.restore-1-0>, "tmp", ...)`, as
        # remove_dir_all calls it), or to the cwd (the site). An empty one
        # (AT_EMPTY_PATH) names the descriptor itself.
        call, _, result = args.rpartition(") = ")
        if not call:
            call, result = args, ""
        base, quoted = site, 0
        for m in ARG.finditer(call):
            if m.group("cwd") is not None:
                base = site
            elif m.group("fd") is not None:
                base = m.group("fd")
            else:
                quoted += 1
                if quoted > 2:
                    continue
                q = m.group("q")
                found.append(os.path.normpath(os.path.join(base, q)) if q else base)
        found += FD_PATH.findall(result)  # openat's descriptor: the file opened
    else:
        found = FD_PATH.findall(args)
    out = []
    for p in found:
        if p.startswith(site + "/"):
            out.append(short(site, p))
    seen = []
    for o in out:
        if o not in seen:
            seen.append(o)
    return seen


def parse_trace(text, site):
    """[(pid, syscall, n, desc, changing, relevant)] for every call in a
    `strace -f -y -o` log, n counted per thread as strace's `when=` does."""
    counts = {}
    calls = []
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        pid, syscall, args = m.group(1), m.group(2), m.group(3)
        key = (pid, syscall)
        counts[key] = counts.get(key, 0) + 1
        n = counts[key]
        paths = _site_paths(syscall, args, site)
        if syscall == "openat":
            flags = args.split(",")[2] if args.count(",") >= 2 else ""
            changing = any(f in flags for f in WRITE_FLAGS)
        else:
            changing = syscall in CHANGING
        shown = [_n(p) for p in paths]
        if syscall in ("rename", "renameat", "renameat2", "link", "linkat") and len(shown) == 2:
            desc = "%s -> %s" % tuple(shown)
        else:
            desc = " ".join(shown)
        if syscall == "openat" and paths:
            desc += " (write)" if changing else " (read)"
        calls.append((pid, syscall, n, desc, changing, bool(paths)))
    return calls


def enumerate_calls(w, command):
    """Runs `command` once, un-faulted, under strace; returns its calls
    that touch the site, one per (syscall, n), in trace order."""
    site = w.fresh(command.template)
    log = site + ".trace"
    strace = [STRACE, "-f", "-qq", "-y", "-o", log, "-e", "trace=" + ",".join(TRACED), "--"]
    rc, out, err = tid(site, *command.args, strace=strace)
    if rc != 0:
        raise AssertionError("the un-faulted %s failed under strace (%s):\n%s%s"
                             % (command.name, rc, out, err))
    problems = command.state(w, site)
    problems += [("exit 0 = done", d) for d in command.done(w, site, faulted=False)]
    if problems:
        raise AssertionError("the un-faulted %s breaks promises: %s" % (command.name, problems))
    with open(log) as f:
        text = f.read()
    out, seen = [], {}
    for _pid, syscall, n, desc, changing, relevant in parse_trace(text, site):
        if not relevant:
            continue
        key = (syscall, n)
        if key in seen:
            c = seen[key]
            if desc not in c.desc.split(" | "):
                c.desc += " | " + desc
            c.changing = c.changing or changing
            continue
        c = Call(syscall, n, desc, changing)
        seen[key] = c
        out.append(c)
    shutil.rmtree(site, ignore_errors=True)
    os.remove(log)
    return out


def faults_for(call):
    return FAULTS if call.changing else ("EIO",)


# ---------------------------------------------------------------- one case

class Result:
    def __init__(self, command, call, fault):
        self.command, self.call, self.fault = command, call, fault
        self.broken = []  # (promise, detail)
        self.exit = None
        self.rerun_exit = None
        self.landed = True
        self.message = ""

    def line(self):
        head = "%-18s %-18s %-44s %-7s exit=%-4s rerun=%-4s" % (
            self.command.name, "%s#%d" % (self.call.syscall, self.call.n),
            self.call.desc[:44], self.fault, self.exit, self.rerun_exit)
        if not self.landed:
            head += " (injection did not land where planned)"
        if not self.broken:
            return head + " ok"
        return head + " BROKEN " + "; ".join("%s: %s" % b for b in self.broken)


def start_early_in_a_second(room=0.6):
    """Sleeps into the next wall-clock second (less than `room` seconds)
    when fewer than `room` seconds are left in this one, so that a faulted
    run and its immediate rerun fall in the same second, as an operator's
    quick rerun would.
    Names are per second (repozo's), so whether they do decides whether
    the rerun meets the names the failed run left (issue 13 item 1); left
    to chance, those cases would pass or fail from one sweep to the next."""
    frac = time.time() % 1.0
    if frac > 1.0 - room:
        time.sleep(1.0 - frac + 0.005)


def run_case(w, command, call, fault, room=0.6):
    """Injects `fault` at `call`, checks every promise, reruns, checks
    again. A command that names files per second starts its faulted run
    with at least `room` seconds left in the current second."""
    r = Result(command, call, fault)
    site = w.fresh(command.template)
    if command.per_second:
        start_early_in_a_second(room)
    log = site + ".trace"
    if fault == "SIGKILL":
        inject = "inject=%s:signal=SIGKILL:when=%d" % (call.syscall, call.n)
    else:
        inject = "inject=%s:error=%s:when=%d" % (call.syscall, fault, call.n)
    strace = [STRACE, "-f", "-qq", "-y", "-o", log, "-e", "trace=" + call.syscall, "-e", inject,
              "--"]
    rc, out, err = tid(site, *command.args, strace=strace)
    r.exit = "kill" if rc in (-9, 137) else rc
    r.message = first_line(err)
    with open(log) as f:
        traced = parse_trace(f.read(), site)
    nth = {d for _p, s, n, d, _c, _r in traced if s == call.syscall and n == call.n}
    r.landed = any(d in nth for d in call.desc.split(" | "))
    os.remove(log)

    for promise, detail in command.state(w, site):
        # A kill between naming a complete backup file and listing it in
        # the .dat cannot be made atomic (two files): the file is whole and
        # a valid continuation (repozo -R, which picks by name, restores
        # right), and the promise is that the next run sets it aside. It is
        # checked after the rerun below.
        if fault == "SIGKILL" and "is listed by no .dat" in detail:
            continue
        r.broken.append((promise, detail))
    if rc not in (0, -9, 137, None):
        r.broken.extend(command.failed(w, site))
    if rc == 0:
        for d in command.done(w, site):
            r.broken.append(("exit 0 = done", d))

    if rc == 0:
        # Said done: what the operator does next is not a rerun (a restore
        # elsewhere rightly refuses to replace its output then).
        r.rerun_exit = "-"
    else:
        rc2, out2, err2 = tid(site, *command.args)
        r.rerun_exit = rc2
        if rc2 != 0:
            r.broken.append(("rerun succeeds", "the rerun exits %s: %s"
                             % (rc2, first_line(err2))))
        for promise, detail in command.state(w, site):
            b = (promise, detail + " (after the rerun)")
            if (promise, detail) not in r.broken:
                r.broken.append(b)
        if rc2 == 0:
            for d in command.done(w, site):
                r.broken.append(("rerun succeeds", "rerun exit 0 but " + d))
    rc3, out3, err3 = tid(site, "restore", "--verify")
    if rc3 != 0:
        r.broken.append(("verify after rerun", "restore --verify exits %s: %s"
                         % (rc3, first_line(_problem_line(out3) or err3))))
    shutil.rmtree(site, ignore_errors=True)
    return r


def _problem_line(out):
    lines = [l for l in out.splitlines() if l.strip() and not l.startswith("storage")]
    return "\n".join(lines)


def make_world():
    base = tempfile.mkdtemp(prefix="tidstorage-faults-")
    return World(base)
