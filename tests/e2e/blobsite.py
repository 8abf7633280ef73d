"""Helpers of test_blobs.py: ZEO 6 servers whose FileStorage has a blob
directory (runzeo with a ZConfig file), the blob workload's process
(blob_worker.py), ZODB's own view of a Data.fs with its blob directory,
and what the workload's log says a database holds at a TID.

Every process goes through tidharness (tracked, killed by the fixtures);
every wait is bounded.
"""

import json
import os
import socket
import subprocess
import sys

import tidharness
from tidharness import ZeoServer, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))

ZEO_CONF = """\
<zeo>
  address 127.0.0.1:%(port)d
</zeo>
<filestorage 1>
  path %(data_fs)s
  blob-dir %(blob_dir)s
</filestorage>
<eventlog>
  <logfile>
    path %(log)s
  </logfile>
</eventlog>
"""


class BlobZeoServer(ZeoServer):
    """``runzeo -C`` serving one FileStorage "1" with ``blob-dir``
    ``<directory>/blobs`` (pack-keep-old: the default, so a pack moves the
    files it removes to ``blobs.old``)."""

    def __init__(self, directory):
        directory = os.path.abspath(str(directory))
        self.blob_dir = os.path.join(directory, "blobs")
        os.makedirs(self.blob_dir, exist_ok=True)
        ZeoServer.__init__(self, os.path.join(directory, "Data.fs"))

    def start(self):
        conf = self.data_fs + ".zeo.conf"
        with open(conf, "w") as f:
            f.write(ZEO_CONF % dict(port=self.port, data_fs=self.data_fs,
                                    blob_dir=self.blob_dir, log=self.logfile))
        with open(self.logfile, "ab") as out:
            self.proc = tidharness._track(subprocess.Popen(
                [sys.executable, "-m", "ZEO.runzeo", "-C", conf],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=tidharness.python_env()))

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("runzeo exited (%s); see %s" % (self.proc.returncode,
                                                                    self.logfile))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_until(up, what="ZEO server on port %d" % self.port)


def blob_cluster(tmp_path, n):
    return [BlobZeoServer(tmp_path / ("zeo%d" % i)) for i in range(n)]


class BlobWorker:
    """blob_worker.py as a child process; ``commits()`` parses its log."""

    def __init__(self, daemon_addr, servers, cache, seed, threads, extra=()):
        args = [sys.executable, os.path.join(HERE, "blob_worker.py"), "--server", daemon_addr,
                "--zeo", ",".join(str(s.port) for s in servers), "--cache", str(cache),
                "--threads", str(threads), "--seed", str(seed)] + list(extra)
        self.proc = tidharness._track(subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=tidharness.python_env()))
        self.out = tidharness._Lines(self.proc.stdout)
        self.err = tidharness._Lines(self.proc.stderr)
        if self.out.wait_for("READY", timeout=60) is None:
            self.proc.kill()
            raise AssertionError("blob workload did not start:\n" + "\n".join(self.err.drain()))

    def commits(self):
        return [json.loads(line.split(" ", 1)[1]) for line in self.out.drain()
                if line.startswith("COMMITTED ")]

    def failures(self):
        return [line for line in self.out.drain() if line.startswith("FAILED ")]

    def stop(self, stop_file):
        """Asks every thread to finish its transaction and stop (bounded)."""
        with open(str(stop_file), "w"):
            pass
        done = self.out.wait_for("DONE", timeout=30)
        self.proc.wait(timeout=30)
        assert done is not None, "the workload did not stop:\n" + "\n".join(self.err.drain())

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=30)


def under(out, path):
    """Where `restore --output-dir OUT` recreates the absolute `path`."""
    return os.path.join(str(out), os.path.abspath(path).lstrip(os.sep))


def blob_tid(filename):
    """The TID in a blob file's name (``0x03ec...blob``)."""
    return int(filename[:-len(".blob")], 16)


def scan_blob_dir(blob_dir):
    """What is on disk: {relative path: tid} of the blob files, the files
    under tmp/, the .layout text (None: missing) and any other file."""
    blobs, tmp, other, layout = {}, [], [], None
    for root, dirs, files in os.walk(blob_dir):
        rel = os.path.relpath(root, blob_dir)
        for f in files:
            p = os.path.normpath(os.path.join(rel, f))
            if p == ".layout":
                with open(os.path.join(blob_dir, p)) as fh:
                    layout = fh.read().strip()
            elif p.split(os.sep)[0] == "tmp":
                tmp.append(p)
            elif f.endswith(".blob"):
                blobs[p] = blob_tid(f)
            else:
                other.append(p)
    return dict(blobs=blobs, tmp=tmp, other=other, layout=layout,
                has_tmp=os.path.isdir(os.path.join(blob_dir, "tmp")))


def read_db(data_fs, blob_dir):
    """ZODB's view, read-only: the last TID, the workload notes of the
    transactions in the file ({seq: note}), the file of every blob record
    (ZODB's iterator + is_blob_record, named by loadBlob, which fails when
    the file is missing) and the content of every reachable blob
    ({name: bytes}, read through ZODB.DB)."""
    import ZODB
    from ZODB.blob import is_blob_record
    from ZODB.FileStorage import FileStorage
    from ZODB.utils import u64

    from blob_worker import parse_note

    st = FileStorage(data_fs, blob_dir=blob_dir, read_only=True)
    notes, records, missing = {}, {}, []
    try:
        for txn in st.iterator():
            n = parse_note(txn.description)
            if n is not None:
                notes[n["seq"]] = n
            for r in txn:
                if is_blob_record(r.data):
                    try:
                        path = st.loadBlob(r.oid, r.tid)
                    except Exception as e:  # POSKeyError: the file is missing
                        missing.append((u64(r.oid), u64(r.tid), repr(e)))
                        continue
                    records[(u64(r.oid), u64(r.tid))] = os.path.relpath(path, blob_dir)
        last = u64(st.lastTransaction())
        db = ZODB.DB(st)
        reachable, unreadable = {}, []
        try:
            conn = db.open()
            for key, tree in conn.root().items():
                if not key.startswith("t"):
                    continue
                for name, b in tree.items():
                    try:
                        with b.open("r") as f:
                            reachable[name] = f.read()
                    except Exception as e:
                        unreadable.append((name, repr(e)))
            conn.close()
        finally:
            db.close()
    finally:
        st.close()
    return dict(last=last, notes=notes, records=records, missing=missing,
                reachable=reachable, unreadable=unreadable)


def expected_at(commits, db, upto):
    """From the workload's log: ({name: content id} database `db` holds at
    TID `upto`, the sequence numbers of its commits <= upto)."""
    mine = sorted((c["tids"][db], c) for c in commits if db in c["tids"]
                  and c["tids"][db] <= upto)
    state, seqs = {}, set()
    for _, c in mine:
        seqs.add(c["seq"])
        for name, cid in c["ops"][db].items():
            if cid is None:
                state.pop(name, None)
            else:
                state[name] = cid
    return state, seqs


def replay_notes(notes, db):
    """{name: content id} from the notes of the transactions of one file
    (its own record of what each wrote), in sequence-number order; right
    for a file no pack rewrote (per thread, sequence numbers increase with
    TIDs and threads never touch each other's blobs)."""
    state = {}
    for seq in sorted(notes):
        for name, cid in notes[seq]["ops"].get(db, {}).items():
            if cid is None:
                state.pop(name, None)
            else:
                state[name] = cid
    return state


def content_problems(reachable, state, db):
    """What differs between the blobs read and the state expected."""
    from blob_worker import content

    problems = []
    for name in sorted(set(state) | set(reachable)):
        if name not in reachable:
            problems.append("%s: %s missing (content id %d)" % (db, name, state[name]))
        elif name not in state:
            problems.append("%s: %s present, deleted or never committed" % (db, name))
        elif reachable[name] != content(db, name, state[name]):
            problems.append("%s: %s holds %r..., expected content id %d" % (
                db, name, reachable[name][:40], state[name]))
    return problems
