"""One-way, buffered, never-blocking connection to the tidstorage daemon.

Owns the socket, the two queues of notifications not yet written, and the
background thread that encodes them, writes them, (re)connects and drains
what the kernel would not take at once. It must never block or raise in an
application thread: there, a notification is one ``deque.append`` of a
small tuple (atomic, no lock) and, at most, a one-byte write that wakes the
background thread. The encoding and the ``send(2)`` happen on the
background thread, except when a BEGIN is due before it could or a hold
must be opened (below).

The two queues, oldest first:

* the *inbox*: what the application threads appended, not encoded yet,
  each entry ``(kind, record)`` (a ``hook.CommitRecord``). Bounded by
  ``max_queue`` entries: an application thread finding it full empties it
  itself (the encoding and a non-blocking write, under the lock), which only
  happens when the background thread could not run for ``max_queue``
  notifications.
* the *output*: encoded notifications the kernel has not taken yet, each
  ``(kind, bytes)``, the first possibly half-written. Bounded by
  ``max_queue_bytes``: the oldest go first when full.

Delivery rules (why they are safe, see docs/python-client.md):

* A BEGIN gives the daemon the commit's floor on each storage (what it knew
  when the BEGIN arrived), so it must arrive before the daemon learns any
  TID those storages give after this commit's. Such a TID comes from a
  commit that took a storage's commit lock after this one released it, in
  its ``tpc_finish``, possibly in another process, possibly in the process
  that opens the files after this one died. So a BEGIN is *due*
  (``rec.due``) at the commit's first ``tpc_finish``: by then it must be in
  the kernel (a process killed after that still has it delivered). The hook
  calls ``begin_due`` there; if the background thread has not written it,
  the committing thread writes everything queued up to it. Which thread
  writes depends on the commit (``Client.begin`` classifies it):
  - remote (ZEO: ``tpc_vote`` waits on the network): the background thread
    is woken and writes it during that wait;
  - local FileStorages under another id than their path (another process
    may write them): no such wait; handing the write over would cost the
    committing thread more than making it (GIL hand-overs inside the
    commit, docs/bench-client.md), so it writes the BEGIN itself, once,
    with the notifications queued before it.
  - own FileStorages (opened here for writing under their lock file,
    reported under their path: every later TID of them comes through this
    socket, after what was queued before, or from the process that opens
    them once this one is dead): covered by the *hold* (below) while their
    BEGIN waits in the inbox, so nothing is due; ``post_own``.
  - a commit the hook cannot follow to its ``tpc_finish`` (a resource
    manager that is not a ZODB connection): ``send_now`` writes its BEGIN
    before the commit starts, as the client always did.
* The hold: a transaction of the client's own, ``<client id>_hold.<0|1>``,
  begun on the own FileStorages this process commits to, never committed.
  While the daemon holds it in flight the point stays at or below its floor
  on those storages, so any commit of this process that started after the
  hold's BEGIN was written is covered: if the process dies with that
  commit's BEGIN still in the inbox, the hold stays in flight at the daemon
  (a killed process's written bytes are delivered) and no point ever
  passes what the commit may have left on disk. Rules:
  - committing threads rely on ``_hold`` only once its BEGIN was taken by
    the kernel whole, and check it *after* appending their own BEGIN;
  - a hold is released (ABORT) only in a write after everything queued
    before the release began, so a commit that relied on it has its BEGIN
    in the kernel first;
  - the background thread renews it at every turn (``_renew_locked``: the
    next hold's BEGIN, whose floor is what the daemon knows now, then the
    old one's ABORT, so the point moves) and ends it after a turn in which
    no commit relied on it; the two names alternate;
  - the first own-file commit that finds no hold covering its storages
    writes its own BEGIN and a new hold in one ``send(2)``, corked when the
    daemon is on this host (``_open_hold``);
  - on a lost connection the hold's ABORT is kept for the next one; an
    orderly ``close`` ends it. A killed process leaves it in flight (as a
    commit killed between its storages' ``tpc_finish`` would be): the point
    stops on its storages until ``tidstorage resolve`` or a daemon restart.
* BEGINs are dropped while disconnected, and dropped from the output when
  the connection is lost, even if half-written (a BEGIN on a new
  connection could arrive after the commit finished).
* A COMMIT or ABORT is always worth sending: it ends a transaction the
  daemon may be holding in flight, and for one it never saw begin it only
  raises what the daemon knows. So they wait in the output across
  reconnects, and one cut by a lost connection is sent again whole.
* Everything leaves in the order it was appended, on one connection (a
  thread's next BEGIN reuses the id of its previous COMMIT).
* When the output is full the oldest notifications go first; dropping in
  that order never keeps a BEGIN whose COMMIT was dropped.
* Wake-ups (``post``): after something was queued the background thread
  naps ``delay`` seconds (5 ms), then, while every turn finds work, twice as
  long each time up to ``max_delay`` (50 ms): each turn costs the committing
  threads a GIL hand-over and cold caches, far more than the writing
  (docs/bench-client.md). Once a turn finds nothing it sleeps until woken.
  An urgent BEGIN (a remote commit's) wakes it unless it is awake; a
  COMMIT, an ABORT or a local commit's BEGIN wakes it only from the long
  sleep (or at once with ``delay`` 0). A COMMIT is thus written at most one
  nap after its commit, usually with other notifications in one
  ``send(2)``; holding it back only holds the point back (never unsafe).
"""

import collections
import ipaddress
import logging
import os
import select
import socket
import threading
import time
import weakref

from . import wire

log = logging.getLogger("tidstorage_client")

_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_TCP_CORK = getattr(socket, "TCP_CORK", None)  # Linux

# What the background thread is doing, read by application threads to
# decide whether to wake it.
_AWAKE = 0  # running: it looks at the inbox again before it sleeps
_NAP = 1  # sleeping at most ``delay``: only an urgent BEGIN wakes it
_SLEEP = 2  # sleeping until woken: anything wakes it

_POLLIN = select.POLLIN | select.POLLPRI
_POLLERR = select.POLLERR | select.POLLHUP | select.POLLNVAL


# Every Sender, for the fork hook (weak: closed ones go away).
_senders = weakref.WeakSet()


def _after_fork_in_child():
    for s in list(_senders):
        s._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class Sender:
    def __init__(self, address, reconnect_interval=1.0, max_queue_bytes=1 << 20,
                 connect_timeout=5.0, delay=0.005, max_queue=10000, max_delay=0.05):
        self.address = wire.parse_address(address)
        self.delay = max(0.0, float(delay))
        # The longest nap: each turn that found work doubles the nap, from
        # ``delay`` up to this (a turn costs the committing threads far more
        # than the writing: GIL hand-overs, cold caches; docs/bench-client.md).
        self.max_delay = max(self.delay, float(max_delay))
        # The deepest sleep in which a COMMIT, an ABORT or a BEGIN that is
        # not urgent leaves the thread (deeper, it is woken): with delay 0,
        # none (they are written at once).
        self._lazy = _NAP if self.delay else _AWAKE
        self.reconnect_interval = float(reconnect_interval)
        self.max_queue_bytes = int(max_queue_bytes)
        self.max_queue = max(1, int(max_queue))
        self.connect_timeout = float(connect_timeout)
        # Whether a BEGIN may wait corked in the kernel (``install`` allows it
        # once the previous client's connection is closed).
        self.may_cork = False
        # n -> the framed id of hold n (0 or 1): set by the Client, which
        # knows the client id; None: no holds (committing threads write
        # every BEGIN of a local commit themselves).
        self.hold_txn = None
        self._init_state()
        _senders.add(self)

    def _init_state(self):
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._inbox = collections.deque()  # (kind, CommitRecord), appended lock-free
        self._state = _AWAKE
        self._urgent = False  # an urgent BEGIN was appended since the thread last looked
        self._posted = False  # something was appended since the thread last looked
        self._sock = None
        self._loopback = False  # the daemon is on this host
        self._corked = False  # TCP_CORK is set on the socket: written bytes wait
        self._queue = collections.deque()  # (kind, bytes); the first may be half-sent
        self._offset = 0
        self._queued_bytes = 0
        self._ever_connected = False
        self._down_logged = False
        self._attempts = 0
        self._next_attempt = 0.0
        self._dropped_begins = 0
        self._dropped_full = 0
        self._writes = 0  # send(2) calls, for tests and benchmarks
        self._inline = 0  # BEGINs the committing thread had to write itself
        self._helped = 0  # times an application thread emptied a full inbox
        self._flush_waiters = 0  # threads in flush(): only they need a notify
        # The standing hold (see "Holds" above): (framed transaction id,
        # storage ids, their frozenset) of the hold whose BEGIN the kernel
        # has taken and whose ABORT is not queued yet, which committing
        # threads may rely on; None when there is none.
        self._hold = None
        self._hold_used = False  # a commit relied on it since it was written
        self._hold_seq = 0
        self._holds_opened = 0  # by a committing thread finding none
        self._holds_renewed = 0  # by the background thread
        self._closed = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(
            target=self._run, name="tidstorage-client", daemon=True)
        self._thread.start()

    def _after_fork(self):
        # The parent's socket, queues and thread are not ours: start afresh,
        # closing our copies of its descriptors (the parent keeps its own).
        if self._closed:
            return
        for s in (self._sock, self._wake_r, self._wake_w):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self._init_state()

    def __repr__(self):
        return "<tidstorage_client.Sender %s:%d>" % self.address

    @property
    def addr_text(self):
        return "%s:%d" % self.address

    # -- application threads -------------------------------------------------

    def post(self, kind, rec, urgent=False):
        """Queues one notification of ``rec`` (a ``hook.CommitRecord``);
        ``urgent`` for a due BEGIN the background thread should write soon
        (the commit waits on the network before its first ``tpc_finish``).
        No lock, no system call unless the background thread must be woken."""
        inbox = self._inbox
        if len(inbox) >= self.max_queue:
            self._help()
        inbox.append((kind, rec))
        self._posted = True  # keeps the thread napping while posts come
        if urgent:
            self._urgent = True
            if self._state != _AWAKE:
                self._state = _AWAKE
                self._wake()
        elif self._state > self._lazy:
            self._state = _AWAKE
            self._wake()

    def post_own(self, rec):
        """Queues the BEGIN of a commit whose storages are all this
        process's own FileStorages (``rec.cork``). When the standing hold
        covers them the commit relies on it and nothing is written here;
        otherwise its BEGIN is written at once, with a hold for the commits
        that follow. False when holds are not available (the caller then
        makes the BEGIN due as for any local commit)."""
        if self.hold_txn is None or not self.delay or not self.may_cork:
            return False
        inbox = self._inbox
        if len(inbox) >= self.max_queue:
            self._help()
        inbox.append((wire.BEGIN, rec))
        self._posted = True
        # Read after the append: a hold seen here is released only after
        # the inbox, this BEGIN included, was written (_renew_locked).
        h = self._hold
        if h is not None and h[2].issuperset(rec.ids):
            self._hold_used = True
        else:
            self._open_hold(rec)
        if self._state > self._lazy:
            # Asleep with a hold to renew or to end: wake it.
            self._state = _AWAKE
            self._wake()
        return True

    def _open_hold(self, rec):
        # No hold covers this commit: write its BEGIN now (with everything
        # queued before it) and a hold for the commits that follow, in one
        # send(2), corked as the committing thread's BEGINs are.
        try:
            with self._lock:
                old = self._hold
                if old is not None and old[2].issuperset(rec.ids):
                    # Opened by another thread after this one's append (its
                    # write took this BEGIN, or came before it: covered).
                    self._hold_used = True
                    return
                self._hold = None
                nxt = None
                extra = []
                if self._sock is not None:
                    ids = rec.ids if old is None else tuple(sorted(old[2].union(rec.ids)))
                    nxt = self._new_hold(ids)
                    extra.append((wire.BEGIN, wire.begin_frame(nxt[0], ids)))
                if old is not None:
                    extra.append((wire.ABORT, wire.abort_frame(old[0])))
                self._inline += 1
                self._holds_opened += 1
                dropped = self._dropped_full
                self._drain_locked(rec.cork, extra)
                self._settle_hold_locked(nxt, dropped)
        except Exception:
            log.debug("tidstorage client: writing a BEGIN failed", exc_info=True)

    def begin_due(self, rec):
        """Called by the committing thread at its first ``tpc_finish`` while
        ``rec.due``: writes (or drops, when disconnected) everything queued
        up to and including the commit's BEGIN, if the background thread
        has not yet."""
        try:
            with self._lock:
                if rec.due:
                    self._inline += 1
                    self._drain_locked(rec.cork)
                    # Its entry was in the inbox (appended by this thread
                    # before) and the inbox is now empty: rec.due is False,
                    # unless a bug lost it; then it was never sent.
                    rec.due = False
        except Exception:
            rec.due = False
            log.debug("tidstorage client: writing a BEGIN failed", exc_info=True)

    def send_now(self, kind, rec):
        """Queues one notification and writes everything queued from this
        thread at once (a BEGIN the hook cannot make due)."""
        try:
            with self._lock:
                self._inbox.append((kind, rec))
                self._drain_locked()
                leftover = bool(self._queue) and self._sock is not None
            if leftover:
                self._wake()
        except Exception:
            log.debug("tidstorage client: send failed", exc_info=True)

    def _help(self):
        # The inbox is full: the background thread could not run for
        # max_queue notifications. Bound the memory from this thread.
        try:
            with self._lock:
                if len(self._inbox) >= self.max_queue:
                    self._helped += 1
                    self._drain_locked()
        except Exception:
            log.debug("tidstorage client: emptying the queue failed", exc_info=True)

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
            self._flush_waiters += 1
            try:
                while not self._closed:
                    if not self._inbox and not self._queue:
                        self._push_locked()
                        return True
                    self._state = _AWAKE
                    self._wake()
                    left = end - time.monotonic()
                    if left <= 0:
                        return False
                    self._changed.wait(min(left, 0.05))
                return not self._inbox and not self._queue
            finally:
                self._flush_waiters -= 1

    def close(self, timeout=1.0):
        """Ends the hold, tries to write what is queued (bounded), then stops
        the thread."""
        try:
            with self._lock:
                self._renew_locked(keep=False)
        except Exception:
            log.debug("tidstorage client: ending the hold failed", exc_info=True)
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
        """Counters (what is still in the inbox is not counted yet)."""
        with self._lock:
            return {
                "connected": self._sock is not None,
                "queued": len(self._inbox) + len(self._queue),
                "dropped_begins": self._dropped_begins,
                "dropped_queue_full": self._dropped_full,
                "writes": self._writes,
                "begins_written_inline": self._inline,
                "queue_full_helped": self._helped,
                "holds_opened": self._holds_opened,
                "holds_renewed": self._holds_renewed,
                "hold": None if self._hold is None else self._hold[0][:-1].decode("utf-8"),
            }

    # -- under the lock ------------------------------------------------------

    def _drain_locked(self, cork=False, extra=()):
        """Encodes the inbox into the output, in order, then ``extra``
        (already encoded ``(kind, bytes)``), and writes what the kernel takes
        now (leaving it corked if ``cork`` and allowed)."""
        inbox = self._inbox
        connected = self._sock is not None
        begun = []
        items = []
        append = items.append
        try:
            while inbox:
                kind, rec = inbox.popleft()
                f = rec.frames
                if f is None:
                    f = rec.frames = rec.client.frames_of(rec)
                if kind is wire.BEGIN:
                    begun.append(rec)
                    if not connected:
                        self._dropped_begins += 1
                        continue
                    append((kind, f[0]))
                elif kind is wire.COMMIT:
                    fin = rec.finished
                    if len(fin) == len(rec.ids):
                        append((kind, f[1] + f[2] % tuple([fin[s] for s in rec.ids])))
                    else:
                        append((kind, wire.commit_frame(rec.txn[1], rec.ids, fin)))
                else:
                    append((kind, f[3]))
            items.extend(extra)
            if items:
                self._output_locked(items, cork)
        finally:
            # Only now: a committing thread seeing due False may finish.
            for rec in begun:
                rec.due = False

    def _output_locked(self, items, cork):
        """Writes ``items`` (``(kind, bytes)``, in order) after what waits in
        the output; what the kernel does not take waits there."""
        sock = self._sock
        if self._queue or sock is None:
            for kind, data in items:
                self._enqueue(kind, data)
            if sock is not None:
                self._flush_locked(cork)
            return
        # Nothing waits (the usual case): one send(2) for them all, and only
        # what the kernel left goes into the output.
        hold = cork and self.may_cork and self._loopback
        if hold and not self._corked and not self._set_cork(sock, 1):
            self._keep_after_loss(items)
            return
        buf = items[0][1] if len(items) == 1 else b"".join([d for _, d in items])
        self._writes += 1
        try:
            n = sock.send(buf, _SEND_FLAGS)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            self._lost_locked(e)
            self._keep_after_loss(items)
            return
        if n < len(buf):
            pos = 0
            for kind, data in items:
                end = pos + len(data)
                if end > n:
                    self._enqueue(kind, data)
                    if pos < n:  # the first one left, half-sent
                        self._offset = n - pos
                pos = end
        if self._corked and not hold:
            self._push_locked()

    def _keep_after_loss(self, items):
        # Written on no connection: as _lost_locked does with the output.
        for kind, data in items:
            if kind is wire.BEGIN:
                self._dropped_begins += 1
            else:
                self._enqueue(kind, data)

    def _new_hold(self, ids):
        """A fresh hold on ``ids``: its id alternates between two names (the
        previous one's ABORT is queued before the next one of its name)."""
        self._hold_seq += 1
        return (self.hold_txn(self._hold_seq & 1), ids, frozenset(ids))

    def _settle_hold_locked(self, nxt, dropped):
        """After the write of a new hold's BEGIN: the hold commits may rely
        on from now on, if the kernel took that BEGIN (the output is empty and
        nothing was dropped since ``dropped`` was read); otherwise its ABORT
        is queued at once and there is no hold (the daemon is not reading:
        committing threads write their BEGINs themselves)."""
        if nxt is None:
            return
        if not self._queue and self._dropped_full == dropped and self._sock is not None:
            self._hold = nxt
            self._hold_used = False
        else:
            self._enqueue(wire.ABORT, wire.abort_frame(nxt[0]))

    def _renew_locked(self, keep=True):
        """The background thread's turn with a hold: replaces it with a
        fresh one (whose floor is what the daemon knows now, so that the
        point moves) when commits relied on it since it was written and
        ``keep``, else ends it. Everything queued goes first: a commit that
        relied on the old hold has its BEGIN in the kernel before the hold's
        ABORT."""
        h = self._hold
        if h is None:
            return False
        # First: a commit appending from now on does not rely on h.
        self._hold = None
        used = self._hold_used
        self._hold_used = False
        nxt = None
        extra = []
        if used and keep and self._sock is not None:
            nxt = self._new_hold(h[1])
            extra.append((wire.BEGIN, wire.begin_frame(nxt[0], h[1])))
            self._holds_renewed += 1
        extra.append((wire.ABORT, wire.abort_frame(h[0])))
        dropped = self._dropped_full
        self._drain_locked(False, extra)
        self._settle_hold_locked(nxt, dropped)
        return nxt is not None

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

    def _flush_locked(self, cork=False):
        """Writes the output as far as the kernel takes it. With ``cork`` (a
        committing thread's BEGIN of a commit on its own FileStorages, the
        daemon on this host), the bytes may wait corked in the kernel: they
        are in it (a killed process still has them delivered), and the
        daemon is not woken for each commit; the next write or the
        background thread's next turn pushes them."""
        sock = self._sock
        hold = cork and self.may_cork and self._loopback
        if sock is not None and hold and not self._corked:
            if not self._set_cork(sock, 1):
                return
        while self._queue and sock is not None:
            if self._offset or len(self._queue) == 1:
                buf = memoryview(self._queue[0][1])[self._offset:]
            else:
                # Several whole notifications: one system call for all.
                buf = b"".join([d for _, d in self._queue])
            self._writes += 1
            try:
                n = sock.send(buf, _SEND_FLAGS)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self._lost_locked(e)
                return
            self._offset += n
            while self._queue and self._offset >= len(self._queue[0][1]):
                data = self._queue.popleft()[1]
                self._queued_bytes -= len(data)
                self._offset -= len(data)
            if n < len(buf):
                break  # the kernel is full: the background thread waits for it
        if self._corked and not hold and self._sock is sock:
            self._push_locked()

    def _push_locked(self):
        """Sends what waits corked in the kernel."""
        if self._corked and self._sock is not None:
            self._set_cork(self._sock, 0)

    def _set_cork(self, sock, on):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, on)
        except OSError as e:
            self._lost_locked(e)
            return False
        self._corked = bool(on)
        return True

    def _lost_locked(self, why):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._corked = False
        kept = collections.deque(
            (k, d) for k, d in self._queue if k != wire.BEGIN)
        self._dropped_begins += len(self._queue) - len(kept)
        if self._hold is not None:
            # Its BEGIN reached the kernel of the lost connection: end it on
            # the next one (the BEGINs that relied on it are dropped above,
            # as every BEGIN is on a loss).
            kept.append((wire.ABORT, wire.abort_frame(self._hold[0])))
            self._hold = None
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
        self._wake()  # lost from an application thread: the timer restarts

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
        # worked: something was queued since the last sleep (nap, not sleep)
        loop = {"worked": True, "nap": self.delay}
        while True:
            try:
                if self._step(loop):
                    return
            except Exception:
                # Never let the thread die: the application would stop
                # being reported without a word.
                log.exception("tidstorage client: internal error; reporting goes on")
                time.sleep(0.1)

    def _step(self, loop):
        """One turn of the background thread; True when closed."""
        self._urgent = False
        if self._posted:
            # Committing threads may have written it all themselves (at their
            # tpc_finish): nap on all the same, so that their next COMMIT
            # need not wake us.
            self._posted = False
            loop["worked"] = True
        with self._lock:
            if self._closed:
                return True
            if self._hold is not None:
                # Renewed (or ended) once per turn: at most one nap old.
                if self._renew_locked():
                    loop["worked"] = True
            if self._inbox:
                loop["worked"] = True
                self._drain_locked()
            # What committing threads left corked leaves now, at most one
            # nap after it was written.
            self._push_locked()
            if self._flush_waiters and not self._inbox and not self._queue:
                self._changed.notify_all()
            sock = self._sock
            want_write = sock is not None and bool(self._queue)
            now = time.monotonic()
            reconnect_in = max(0.0, self._next_attempt - now)
        if sock is None and reconnect_in <= 0:
            self._connect()
            return False
        # Announce the sleep, then look once more: an application thread
        # appending after this line sees the state and wakes us.
        if (loop["worked"] or self._hold is not None) and self.delay:
            self._state = _NAP
            timeout = loop["nap"]
            # Commits keep coming: the next nap is longer (up to max_delay);
            # a turn that found nothing starts again from delay.
            loop["nap"] = min(timeout * 2, self.max_delay) if loop["worked"] else self.delay
        else:
            loop["nap"] = self.delay
            self._state = _SLEEP
            timeout = None
        if self._urgent or (self._inbox and (timeout is None or not self.delay)):
            self._state = _AWAKE
            return False
        if sock is None:
            timeout = reconnect_in if timeout is None else min(timeout, reconnect_in)
        wake_fd = self._wake_r.fileno()
        try:
            poller = select.poll()
            poller.register(wake_fd, _POLLIN)
            if sock is not None:
                poller.register(sock, _POLLIN | (select.POLLOUT if want_write else 0))
            events = poller.poll(None if timeout is None else timeout * 1000.0)
        except (OSError, ValueError):
            events = []  # interrupted, or the socket was closed under us by a loss
        self._state = _AWAKE
        loop["worked"] = False
        for fd, ev in events:
            if fd == wake_fd:
                self._drain_wake()
            elif self._sock is sock:
                if ev & (_POLLIN | _POLLERR):
                    self._read(sock)
                if ev & select.POLLOUT:
                    with self._lock:
                        if self._sock is sock:
                            self._flush_locked()
                    loop["worked"] = True
        return False

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
            loopback = _TCP_CORK is not None and _is_loopback(sock.getpeername()[0])
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
            self._loopback = loopback
            self._corked = False
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
