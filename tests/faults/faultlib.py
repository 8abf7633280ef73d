"""Fault injection over every file-changing system call of `cut`, `backup`
and `restore` (issue 13), with strace.

The real binary runs under ``strace -f -e inject=SYSCALL:...:when=N``:
the N-th call of SYSCALL fails with EIO or ENOSPC, or the process is
killed with SIGKILL on entry to it (the call is not made). strace counts
``when=N`` per thread, so the calls are enumerated the same way first (one
traced, un-faulted run per command: every call of the traced syscalls,
numbered per thread) and a case is one (syscall, N) whose N-th call, in
some thread, touches a file of the site. After each case the promises are
checked (docs/faults.md):

- ``data intact``: the user's Data.fs is byte-identical, or exactly the
  correct result (backup and a restore elsewhere never change it);
- ``removed bytes kept``: cut's tail file, restore's
  ``Data.fs.before-restore-*``;
- ``nothing partial``: nothing partial or stale under a final name (every
  backup file listed by a ``.dat`` line and matching its md5, every
  ``.dat`` line naming a file that is there, no truncated Data.fs or tail,
  no index describing other bytes than the file beside it, the timestamp
  file naming only runs that have a manifest);
- ``exit 0 = done``: exit status 0 only when the whole job was done and
  can be verified (the same checks as after a clean run);
- ``rerun succeeds``: the same command run again at once (same second, no
  sleep) exits 0, and the result equals an un-faulted run's;
- ``verify after rerun``: ``restore --verify`` passes.

Everything here is small: a Data.fs of 11 ZODB transactions (6 KB), one
storage, a repository with a full and an incremental backup. Every child
is bounded by a timeout and killed with its process group.
"""

import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

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
    "write", "pwrite64", "writev", "pwritev", "pwritev2", "fsync", "fdatasync",
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
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
STAMP = re.compile(r"\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d")
TMP = re.compile(r"\.tmp-\d+-\d+")
TIDHEX = re.compile(r"(?<=\.tail-)[0-9a-f]{16}")
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

def zodb_write(path, n):
    """Commits `n` small transactions with the real ZODB; returns their TIDs."""
    import transaction
    import ZODB
    import ZODB.FileStorage
    from ZODB.utils import u64
    storage = ZODB.FileStorage.FileStorage(path)
    db = ZODB.DB(storage)
    conn = db.open()
    root = conn.root()
    tids = []
    start = len(root)
    for i in range(n):
        root["k%d" % ((start + i) % 5)] = b"x" * 100 + str(start + i).encode()
        transaction.get().note("transaction %d" % (start + i))
        transaction.commit()
        tids.append(u64(storage.lastTransaction()))
    conn.close()
    db.close()
    for side in (".tmp",):
        if os.path.exists(path + side):
            os.remove(path + side)
    return tids


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


class World:
    """The templates every case copies, the daemon backups ask, and what
    clean runs give (the results a faulted run is compared with).

    `T` (Data.fs of 11 transactions with its ZODB index and lock file, a
    repository holding a full and an incremental backup of the first 7, a
    status file whose point is the 9th TID, so a cut removes 2): the
    template of cut and backup. `R`: T after a clean coherent backup, the
    template of restore.
    """

    def __init__(self, base):
        self.base = base
        self._n = 0
        t = os.path.join(base, "T")
        os.makedirs(os.path.join(t, "var"))
        os.makedirs(os.path.join(t, "repo"))
        with open(os.path.join(t, "t.toml"), "w") as f:
            f.write(CONFIG % 1)
        data_fs = os.path.join(t, "var", "Data.fs")
        zodb_write(data_fs, 4)
        ok(t, "backup", "--no-server")
        zodb_write(data_fs, 3)
        ok(t, "backup", "--no-server")
        tids = zodb_write(data_fs, 4)
        self.point = tids[1]
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

        # The clean cut.
        c = self.fresh("T", "ref-cut")
        ok(c, "cut")
        self.cut = read(c, "var/Data.fs")
        assert len(self.cut) < len(self.data) and self.data.startswith(self.cut)
        self.tail = self.data[len(self.cut):]
        self.cut_index = index_content(os.path.join(c, "var/Data.fs.index"))

        # R: a clean coherent (incremental) backup.
        r = os.path.join(base, "R")
        shutil.copytree(t, r, symlinks=True)
        ok(r, "backup")
        self.R = r
        self.R_files = snapshot(r)
        self.R_timestamps = self.R_files["timestamps.log"].decode().split()

        # The clean restore: exactly the cut file, with the same index.
        c = self.fresh("R", "ref-restore")
        ok(c, "restore", "--output-dir", "out")
        self.restored = read(c, "out/var/Data.fs")
        assert self.restored == self.cut, "a clean restore differs from a clean cut"
        self.restored_index = index_content(sp(c, "out/var/Data.fs.index"))

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


def _n(name):
    """A name with its run second replaced, so reports group."""
    return TIDHEX.sub("TID", STAMP.sub("STAMP", TMP.sub(".tmp-PID-N", name)))


class Command:
    """One command of the sweep: its template, its arguments, the checks of
    the state it may leave and of a finished job."""

    def __init__(self, name, template, args):
        self.name, self.template, self.args = name, template, args

    def state(self, w, site):
        raise NotImplementedError

    def done(self, w, site, faulted=True):
        """What is missing for the job to be done (empty: done)."""
        raise NotImplementedError


class Cut(Command):
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
        return p

    def done(self, w, site, faulted=True):
        p = []
        if maybe(site, "var/Data.fs") != w.cut:
            p.append("Data.fs is not cut")
            return p
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
        check_repository(w, site, p)
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
        rep = []
        check_repository(w, site, rep)
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
        shutil.rmtree(chk, ignore_errors=True)
        return p


class Restore(Command):
    def __init__(self, name, args, target, force):
        super().__init__(name, "R", args)
        self.target, self.force = target, force

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
        return p

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
    out = []
    for p in FD_PATH.findall(args):
        if p.startswith(site + "/"):
            out.append(short(site, p))
    if syscall in PATH_CALLS:
        # The first quoted strings are paths (statx's struct is not quoted).
        for q in QUOTED.findall(args)[:2]:
            if not q:
                continue
            if q.startswith("/"):
                if q.startswith(site + "/"):
                    out.append(short(site, q))
            else:
                out.append(short(site, os.path.normpath(os.path.join(site, q))))
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
    again. The faulted run starts with at least `room` seconds left in
    the current second."""
    r = Result(command, call, fault)
    site = w.fresh(command.template)
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
