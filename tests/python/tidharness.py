"""Test harness shared by the Python client tests and the end-to-end suite.

Owns starting and stopping real processes (``tidstorage serve``, ZEO 6
``runzeo``), a blocking protocol client for DUMP/INFO/BOOTSTRAPED, and a fake
daemon that records the raw bytes clients send. Every wait is bounded and
every process started here is killed by ``stop_all()`` (called by the
pytest fixtures and at exit), so a failing test leaves nothing running.
"""

import ast
import atexit
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLIENT_SRC = os.path.join(REPO, "clients", "python", "src")
DEADLINE = 30.0


def tidstorage_bin():
    path = os.environ.get("TIDSTORAGE_BIN") or os.path.join(REPO, "target", "debug", "tidstorage")
    if not os.path.exists(path):
        raise RuntimeError("%s is missing: run `cargo build` (make test-python does)" % path)
    return path


def python_env(extra=None):
    """Environment for child pythons: this repo's client first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (CLIENT_SRC, os.path.dirname(__file__), env.get("PYTHONPATH")) if p)
    env.pop("TIDSTORAGE_CONFIG", None)
    if extra:
        env.update(extra)
    return env


_procs = []
_procs_lock = threading.Lock()


def _track(p):
    with _procs_lock:
        _procs.append(p)
    return p


def stop_all():
    with _procs_lock:
        procs, _procs[:] = list(_procs), []
    for p in procs:
        if p.poll() is None:
            p.kill()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


atexit.register(stop_all)


PYTHON2 = os.environ.get("PYTHON2") or os.path.expanduser("~/.pyenv/versions/2.7.18/bin/python")


def original_product():
    """(python2, directory) of the original Products.TIDStorage 5.5.0, as
    bench/original/setup.sh installs it from PyPI (once; it is cached in
    bench/work/). Skips the calling test when there is no Python 2.7."""
    import pytest
    if not os.path.exists(PYTHON2):
        pytest.skip("no Python 2.7 at %s (set PYTHON2): the original product needs it" % PYTHON2)
    r = subprocess.run(["sh", os.path.join(REPO, "bench", "original", "setup.sh")],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHON2=PYTHON2))
    assert r.returncode == 0, "bench/original/setup.sh failed:\n" + r.stdout + r.stderr
    return PYTHON2, os.path.join(REPO, "bench", "work", "orig-py2", "Products", "TIDStorage")


def status_point(status_file):
    """{storage id: tid} as `tidstorage dump --status-file` replays it."""
    r = subprocess.run([tidstorage_bin(), "dump", "--status-file", status_file,
                        "--format", "json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return {p["storage"]: p["tid"] for p in json.loads(r.stdout)["point"]}


def original_check_tid_log(status_file):
    """Runs the original's utils/check_tid_log.py (Python 2) on a status
    file; returns {storage id: tid} as it printed them."""
    python2, product = original_product()
    with open(status_file, "rb") as f:
        r = subprocess.run([python2, os.path.join(product, "utils", "check_tid_log.py")],
                           stdin=f, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "the original check_tid_log.py rejects %s:\n%s" % (
        status_file, r.stderr)
    point = {}
    for line in r.stdout.splitlines():
        # It prints "%r %r": a Python 2 string repr, then an int (maybe 123L).
        key, value = line.rsplit(" ", 1)
        point[ast.literal_eval(key)] = int(value.rstrip("L"))
    return point


def wait_until(pred, timeout=DEADLINE, what="condition", interval=0.02):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out after %gs waiting for %s" % (timeout, what))
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Lines:
    """Collects a child's output lines on a thread."""

    def __init__(self, stream):
        self.q = queue.Queue()
        self.lines = []
        t = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        t.start()

    def _pump(self, stream):
        for raw in iter(stream.readline, b""):
            self.q.put(raw.decode("utf-8", "replace").rstrip("\n"))
        stream.close()

    def drain(self):
        while True:
            try:
                self.lines.append(self.q.get_nowait())
            except queue.Empty:
                return self.lines

    def wait_for(self, needle, timeout=DEADLINE, start=0):
        end = time.monotonic() + timeout
        while True:
            for line in self.drain()[start:]:
                if needle in line:
                    return line
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                self.lines.append(self.q.get(timeout=min(left, 0.2)))
            except queue.Empty:
                pass


class Daemon:
    """A ``tidstorage serve`` child; ``port`` is what it listens on."""

    def __init__(self, workdir, port=0, config=None, extra=(), status_file=None, env=None):
        self.workdir = workdir
        self.status_file = status_file or os.path.join(workdir, "status.tid")
        args = [tidstorage_bin()]
        if config:
            args += ["-c", config]
        args += ["serve", "--port", str(port), "--status-file", self.status_file]
        args += list(extra)
        self.proc = _track(subprocess.Popen(
            args, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=python_env(env)))
        self.log = _Lines(self.proc.stderr)
        line = self.log.wait_for("listening on ")
        if line is None:
            self.proc.kill()
            raise AssertionError("daemon did not start:\n" + "\n".join(self.log.drain()))
        self.port = int(line.rsplit(":", 1)[1])
        self.address = "127.0.0.1:%d" % self.port

    def conn(self):
        return DaemonConn(self.port)

    def dump(self):
        with self.conn() as c:
            return c.dump()

    def info(self):
        with self.conn() as c:
            return c.info()

    def lines(self):
        return list(self.log.drain())

    def stop(self):
        """SIGTERM (final status record), bounded wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("daemon did not stop on SIGTERM")

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=DEADLINE)


class DaemonConn:
    """Blocking protocol client with a deadline on every answer."""

    def __init__(self, port, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=DEADLINE)
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def field(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("daemon closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.replace(b"\r", b"").decode()

    def dump(self):
        self.send(b"DUMP\n")
        n = int(self.field())
        keys = [self.field() for _ in range(n)]
        return {k: int(self.field()) for k in keys}

    def info(self):
        self.send(b"INFO\n")
        return json.loads(self.field())

    def bootstraped(self):
        self.send(b"BOOTSTRAPED\n")
        return self.field() == "1"


class ZeoServer:
    """A ZEO 6 ``runzeo`` child serving one FileStorage named "1"."""

    def __init__(self, data_fs, port=None, name="1"):
        self.data_fs = os.path.abspath(data_fs)
        self.name = name
        self.port = port or free_port()
        self.logfile = self.data_fs + ".zeo.log"
        self.start()

    @property
    def storage_id(self):
        # What the client computes for ClientStorage([("127.0.0.1", port)], storage="1").
        return json.dumps(([["127.0.0.1", self.port]], self.name))

    def start(self):
        with open(self.logfile, "ab") as out:
            self.proc = _track(subprocess.Popen(
                [sys.executable, "-m", "ZEO.runzeo", "-a", "127.0.0.1:%d" % self.port,
                 "-f", self.data_fs],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=python_env()))

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

    def kill9(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=DEADLINE)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.kill9()

    def client_storage(self, **kw):
        from ZEO.ClientStorage import ClientStorage

        kw.setdefault("wait_timeout", DEADLINE)
        return ClientStorage([("127.0.0.1", self.port)], storage=self.name, **kw)


def parse_commands(data):
    """Client-to-daemon bytes -> [(word, txn id, payload)]: BEGIN payload is
    the storage list, COMMIT a dict, ABORT None. Raises on a torn stream."""
    fields = data.replace(b"\r", b"").split(b"\n")
    if fields and fields[-1] == b"":
        fields.pop()
    else:
        raise ValueError("stream does not end with a newline")
    fields = [f.decode() for f in fields]
    out, i = [], 0
    while i < len(fields):
        word = fields[i].upper()
        i += 1
        if word == "BEGIN":
            txn, n = fields[i], int(fields[i + 1])
            out.append(("BEGIN", txn, fields[i + 2:i + 2 + n]))
            i += 2 + n
        elif word == "COMMIT":
            txn, n = fields[i], int(fields[i + 1])
            keys = fields[i + 2:i + 2 + n]
            vals = [int(v) for v in fields[i + 2 + n:i + 2 + 2 * n]]
            out.append(("COMMIT", txn, dict(zip(keys, vals))))
            i += 2 + 2 * n
        elif word == "ABORT":
            out.append(("ABORT", fields[i], None))
            i += 1
        else:
            raise ValueError("unexpected word %r" % word)
    return out


class Recorder:
    """A fake daemon: accepts connections and keeps every byte received."""

    def __init__(self, port=0):
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", port))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.data = b""
        self.lock = threading.Lock()
        self.conns = []
        self.eofs = 0  # connections the peer closed (everything it sent was read)
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c):
        while True:
            try:
                b = c.recv(65536)
            except OSError:
                return
            if not b:
                with self.lock:
                    self.eofs += 1
                return
            with self.lock:
                self.data += b

    def commands(self):
        """The whole commands received so far (one still arriving, split
        across reads, is left for later)."""
        with self.lock:
            data = self.data
        while data:
            data = data[:data.rfind(b"\n") + 1]
            try:
                return parse_commands(data)
            except (ValueError, IndexError):
                data = data[:-1]
        return []

    def wait_commands(self, n, timeout=DEADLINE):
        return wait_until(lambda: len(self.commands()) >= n and self.commands(), timeout,
                          "%d commands at the recorder" % n)

    def close(self):
        self.closed = True
        self.srv.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
