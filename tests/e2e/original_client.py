"""A client speaking exactly as the original Products.TIDStorage 5.5.0 does,
written from its protocol description; runs under Python 2.7 and 3.

Two speakers, as in the original:

* ``ZopePatch``: the Zope-side patch. Lower-case command words; transaction
  id ``<zope ip:port>_<thread ident hex>``; storage ids
  ``json.dumps((tuple of (host, port) tuples, storage name))``; every field
  goes through ``send`` into a per-thread buffer and each command is flushed
  with one ``sendall``; it never reads. A storage without a known last TID is
  sent as the text ``None``.
* ``ToolClient``: the original's own test/dump client. Every field is written
  as two ``send`` calls (the value, then the newline) and answers are read
  one byte per ``recv``, dropping ``\\r``.

Usage: original_client.py PORT -> prints a JSON report of what it saw.
"""

import json
import socket
import sys
import threading
import time


def _b(text):
    return text if isinstance(text, bytes) else text.encode("ascii")


class ZopePatch(object):
    def __init__(self, port, zope_id):
        self.sock = socket.socket()
        self.sock.connect(("127.0.0.1", port))
        self.zope_id = zope_id
        self.buffers = {}

    def _send(self, text):
        self.buffers.setdefault(threading.current_thread().ident, []).append(_b(text))

    def _field(self, text):
        assert "\n" not in text
        self._send(text)
        self._send("\n")

    def _flush(self):
        ident = threading.current_thread().ident
        self.sock.sendall(b"".join(self.buffers.get(ident, [])))
        self.buffers[ident] = []

    def _command(self, word):
        self._field(word)
        self._field("%s_%x" % (self.zope_id, threading.current_thread().ident))

    def begin(self, storages):
        self._command("begin")
        self._field(str(len(storages)))
        for s in storages:
            self._field(s)
        self._flush()

    def commit(self, tids):
        self._command("commit")
        keys = list(tids.keys())
        self._field(str(len(keys)))
        for k in keys:
            self._field(k)
        for k in keys:
            self._field(str(tids[k]))
        self._flush()

    def abort(self):
        self._command("abort")
        self._flush()


class ToolClient(object):
    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))

    def send_field(self, text):
        self.sock.send(_b(text))
        self.sock.send(b"\n")

    def recv_field(self):
        out = []
        while True:
            c = self.sock.recv(1)
            if not c:
                raise EOFError("server closed the connection")
            if c == b"\n":
                return b"".join(out).decode("ascii")
            if c != b"\r":
                out.append(c)

    def dump(self):
        self.send_field("dump")
        keys = [self.recv_field() for _ in range(int(self.recv_field()))]
        return dict((k, int(self.recv_field())) for k in keys)

    def bootstraped(self):
        self.send_field("bootstraped")
        return int(self.recv_field())


def storage_id(host, port, name):
    # As the original: json.dumps((tuple([tuple(x) for x in storage._addr]), storage._storage))
    return json.dumps((tuple([tuple(x) for x in [(host, port)]]), name))


def main(port):
    s1 = storage_id("10.0.0.5", 8100, "1")
    s2 = storage_id("10.0.0.6", 8100, "main")
    s3 = storage_id("10.0.0.7", 8100, "catalog")
    zope = ZopePatch(port, "10.0.0.9:8080")
    tool = ToolClient(port)
    report = {"ids": [s1, s2, s3]}
    report["initial"] = tool.dump()
    zope.begin([s1])
    zope.commit({s1: 285660890981355290})
    end = time.time() + 30
    while not tool.bootstraped():
        if time.time() > end:
            raise SystemExit("bootstrap did not complete")
        time.sleep(0.05)
    mark = storage_id("10.0.0.99", 8100, "marker")
    marks = [285660890981355000]

    def synced_dump():
        # Commands on one connection apply in order: once the marker commit
        # sent after them is published, everything before it was applied.
        marks.append(marks[-1] + 1)
        zope.begin([mark])
        zope.commit({mark: marks[-1]})
        end = time.time() + 30
        while True:
            d = tool.dump()
            if d.get(mark) == marks[-1]:
                del d[mark]
                return d
            if time.time() > end:
                raise SystemExit("marker commit never published: %r" % (d,))
            time.sleep(0.02)

    zope.begin([s1, s2])
    zope.commit({s1: 285660890981355298, s2: 285660890981355301})
    report["after_commit"] = synced_dump()
    zope.begin([s2])
    zope.abort()
    report["after_abort"] = synced_dump()
    # The original sends str(None) for a storage with no known last TID.
    zope.begin([s2, s3])
    zope.commit({s2: 285660890981355400, s3: None})
    # The same Zope thread's next commit reuses its id.
    zope.begin([s1])
    zope.commit({s1: 285660890981355500})
    report["after_none"] = synced_dump()
    tool.send_field("quit")
    report["closed_after_quit"] = tool.sock.recv(1) == b""
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main(int(sys.argv[1]))
