"""One-way, buffered, never-blocking connection to the tidstorage daemon.

Owns the socket, the queue of notifications not yet written, and the
background thread that (re)connects and drains what the kernel would not
take at once. It must never block or raise in an application thread: a
``send`` is an append plus one non-blocking ``send(2)``; everything that can
wait (connecting, waiting for the socket to drain, noticing the daemon hung
up) happens on the background thread.

Delivery rules (why they are safe, see docs/python-client.md):

* A BEGIN is only worth sending before the commit's storages finish: a late
  BEGIN would give the daemon a floor above TIDs the transaction already
  took. So BEGINs are dropped while disconnected, and dropped from the queue
  when the connection is lost, even if half-written.
* A COMMIT or ABORT is always worth sending: it ends a transaction the daemon
  may be holding in flight, and for one it never saw begin it only raises
  what the daemon knows. So they wait in a bounded queue across reconnects,
  and one cut by a lost connection is sent again whole.
* When the queue is full the oldest notifications go first; dropping in that
  order never keeps a BEGIN whose COMMIT was dropped.
* A COMMIT is not written at once (``send_later``): it waits, at most
  ``delay`` seconds (5 ms), for the next BEGIN, and both leave in one
  ``send(2)``. Back-to-back commits then cost one system call each instead
  of two. Holding a COMMIT back only holds the point back (never unsafe);
  the background thread writes it when ``delay`` passes with no BEGIN.
"""

import collections
import itertools
import logging
import os
import select
import socket
import threading
import time

from . import wire

log = logging.getLogger("tidstorage_client")

_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)


class Sender:
    def __init__(self, address, reconnect_interval=1.0, max_queue_bytes=1 << 20,
                 connect_timeout=5.0, delay=0.005):
        self.address = wire.parse_address(address)
        self.delay = max(0.0, float(delay))
        self.reconnect_interval = float(reconnect_interval)
        self.max_queue_bytes = int(max_queue_bytes)
        self.connect_timeout = float(connect_timeout)
        self._init_state()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def _init_state(self):
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._sock = None
        self._queue = collections.deque()  # (kind, bytes); the first may be half-sent
        self._pending = []  # (kind, bytes) held back by send_later, in order
        # When the background thread next queues what is pending. Set by the
        # first send_later after it fired (one wake-up per quiet period, not
        # one per commit), cleared only when it fires.
        self._deadline = None
        self._offset = 0
        self._queued_bytes = 0
        self._ever_connected = False
        self._down_logged = False
        self._attempts = 0
        self._next_attempt = 0.0
        self._dropped_begins = 0
        self._dropped_full = 0
        self._writes = 0  # send(2) calls, for tests and benchmarks
        self._flush_waiters = 0  # threads in flush(): only they need a notify
        self._closed = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(
            target=self._run, name="tidstorage-client", daemon=True)
        self._thread.start()

    def _after_fork(self):
        # The parent's socket and thread are not ours: start afresh.
        if not self._closed:
            self._init_state()

    def __repr__(self):
        return "<tidstorage_client.Sender %s:%d>" % self.address

    @property
    def addr_text(self):
        return "%s:%d" % self.address

    # -- application threads -------------------------------------------------

    def send_later(self, kind, data):
        """Holds a COMMIT back until the next ``send`` (one write for
        both) or ``delay`` seconds at the latest; never a system call here
        except to arm the background thread's timer once per quiet period."""
        if not self.delay:
            return self.send(kind, data)
        try:
            with self._lock:
                if self._closed:
                    return
                self._pending.append((kind, data))
                arm = self._deadline is None
                if arm:
                    self._deadline = time.monotonic() + self.delay
            if arm:
                self._wake()
        except Exception:
            log.debug("tidstorage client: send failed", exc_info=True)

    def send(self, kind, data):
        """Queues one notification (after those held back by ``send_later``)
        and writes what the kernel takes now, in one system call."""
        try:
            with self._lock:
                if self._closed:
                    return
                if self._pending:
                    self._promote_locked()
                if self._sock is None:
                    if kind == wire.BEGIN:
                        self._dropped_begins += 1
                        return
                    self._enqueue(kind, data)
                    return
                self._enqueue(kind, data)
                self._flush_locked()
                leftover = bool(self._queue) and self._sock is not None
            if leftover:
                self._wake()
        except Exception:
            # Never into the commit; a bug here must not cost the application.
            log.debug("tidstorage client: send failed", exc_info=True)

    def connected(self):
        with self._lock:
            return self._sock is not None

    def wait_connected(self, timeout):
        """Waits (bounded) until connected; True if so."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._sock is None and not self._closed:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return self._sock is not None

    def wait_first_attempt(self, timeout):
        """Waits (bounded) until the first connection attempt ended."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._attempts == 0 and self._sock is None and not self._closed:
                left = end - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(left)

    def flush(self, timeout):
        """Waits (bounded) until every queued notification was written."""
        end = time.monotonic() + timeout
        with self._lock:
            self._promote_locked()
        self._wake()
        with self._lock:
            self._flush_waiters += 1
            try:
                while self._queue and not self._closed:
                    left = end - time.monotonic()
                    if left <= 0:
                        return False
                    self._changed.wait(min(left, 0.05))
                return not self._queue
            finally:
                self._flush_waiters -= 1

    def close(self, timeout=1.0):
        """Tries to write what is queued (bounded), then stops the thread."""
        if timeout:
            self.flush(timeout)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._changed.notify_all()
        self._wake()
        self._thread.join(timeout=max(timeout, 1.0))
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
        self._wake_r.close()
        self._wake_w.close()

    def stats(self):
        with self._lock:
            return {
                "connected": self._sock is not None,
                "queued": len(self._queue) + len(self._pending),
                "dropped_begins": self._dropped_begins,
                "dropped_queue_full": self._dropped_full,
                "writes": self._writes,
            }

    # -- under the lock ------------------------------------------------------

    def _enqueue(self, kind, data):
        if len(data) > self.max_queue_bytes:
            self._dropped_full += 1
            return
        dropped = 0
        while self._queued_bytes + len(data) > self.max_queue_bytes:
            # A half-written first one on a live connection must be completed,
            # or the stream is desynchronised.
            idx = 1 if (self._offset and self._sock is not None) else 0
            if len(self._queue) <= idx:
                break
            old = self._queue[idx]
            del self._queue[idx]
            if idx == 0:
                self._offset = 0
            self._queued_bytes -= len(old[1])
            dropped += 1
        if self._queued_bytes + len(data) > self.max_queue_bytes:
            dropped += 1
            self._dropped_full += dropped
            return
        if dropped:
            if not self._dropped_full:
                log.warning(
                    "tidstorage client: queue for %s full (%d bytes); dropping the oldest "
                    "notifications; the daemon may keep transactions in flight until "
                    "restarted", self.addr_text, self.max_queue_bytes)
            self._dropped_full += dropped
        self._queue.append((kind, data))
        self._queued_bytes += len(data)

    def _promote_locked(self):
        """Moves what ``send_later`` held back into the queue, in order."""
        pending, self._pending = self._pending, []
        for kind, data in pending:
            self._enqueue(kind, data)

    def _flush_locked(self):
        sock = self._sock
        while self._queue and sock is not None:
            if self._offset or len(self._queue) == 1:
                buf = memoryview(self._queue[0][1])[self._offset:]
            else:
                # Several whole notifications: one system call for all.
                buf = b"".join([d for _, d in itertools.islice(self._queue, 0, 256)])
            self._writes += 1
            try:
                n = sock.send(buf, _SEND_FLAGS)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._lost_locked(e)
                return
            self._offset += n
            while self._queue and self._offset >= len(self._queue[0][1]):
                data = self._queue.popleft()[1]
                self._queued_bytes -= len(data)
                self._offset -= len(data)
            if n < len(buf):
                return  # the kernel is full: the background thread waits for it
        if not self._queue and self._flush_waiters:
            self._changed.notify_all()

    def _lost_locked(self, why):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        kept = collections.deque(
            (k, d) for k, d in self._queue if k != wire.BEGIN)
        self._dropped_begins += len(self._queue) - len(kept)
        self._queue = kept
        self._queued_bytes = sum(len(d) for _, d in kept)
        self._offset = 0
        # Not at once: a daemon being killed closes its connections before
        # its listening socket, and an immediate retry can land in between.
        self._next_attempt = time.monotonic() + self.reconnect_interval
        if not self._down_logged:
            self._down_logged = True
            log.warning(
                "tidstorage client: lost the connection to the tidstorage daemon at %s (%s); "
                "commits go on unreported; retrying every %gs",
                self.addr_text, why, self.reconnect_interval)
        self._changed.notify_all()

    # -- the background thread -----------------------------------------------

    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # full (a wake-up is pending anyway) or closed

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _run(self):
        while True:
            with self._lock:
                if self._closed:
                    return
                now = time.monotonic()
                if self._deadline is not None and now >= self._deadline:
                    self._deadline = None
                    self._promote_locked()
                    if self._sock is not None:
                        self._flush_locked()
                sock = self._sock
                want_write = sock is not None and bool(self._queue)
                delay = max(0.0, self._next_attempt - now)
                timer = 5.0 if self._deadline is None else max(0.0, self._deadline - now)
            if sock is None:
                if delay > 0:
                    try:
                        select.select([self._wake_r], [], [], min(delay, timer))
                    except (OSError, ValueError):
                        return
                    self._drain_wake()
                    continue
                self._connect()
                continue
            try:
                r, w, _ = select.select(
                    [sock, self._wake_r], [sock] if want_write else [], [], timer)
            except (OSError, ValueError):
                # The socket was closed under us by a loss in send().
                continue
            if self._wake_r in r:
                self._drain_wake()
            if sock in r:
                self._read(sock)
            if w:
                with self._lock:
                    if self._sock is sock:
                        self._flush_locked()

    def _read(self, sock):
        # The daemon answers nothing we send; readable means it hung up
        # (or sent junk, which is thrown away).
        try:
            data = sock.recv(4096)
            why = "the daemon closed the connection" if not data else None
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            why = e
        if why is not None:
            with self._lock:
                if self._sock is sock:
                    self._lost_locked(why)

    def _connect(self):
        try:
            sock = socket.create_connection(self.address, timeout=self.connect_timeout)
            if sock.getsockname() == sock.getpeername():
                # TCP self-connection: with nothing listening on a local port
                # in the ephemeral range, the kernel may pick that very port
                # as our source and "connect" the socket to itself.
                sock.close()
                raise ConnectionRefusedError("nothing listens (self-connection refused)")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
        except OSError as e:
            with self._lock:
                self._attempts += 1
                self._next_attempt = time.monotonic() + self.reconnect_interval
                if not self._down_logged:
                    self._down_logged = True
                    log.warning(
                        "tidstorage client: cannot reach the tidstorage daemon at %s (%s); "
                        "commits go on unreported; retrying every %gs",
                        self.addr_text, e, self.reconnect_interval)
                self._changed.notify_all()
            return
        with self._lock:
            self._attempts += 1
            if self._closed:
                sock.close()
                return
            self._sock = sock
            if self._ever_connected or self._down_logged:
                log.warning(
                    "tidstorage client: reconnected to the tidstorage daemon at %s%s",
                    self.addr_text,
                    "; %d BEGIN(s) were not sent meanwhile" % self._dropped_begins
                    if self._dropped_begins else "")
                self._dropped_begins = 0
            else:
                log.info("tidstorage client: connected to the tidstorage daemon at %s",
                         self.addr_text)
            self._ever_connected = True
            self._down_logged = False
            self._flush_locked()
            self._changed.notify_all()
