#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (docs/fuzzing.md).

Seeds are a few small files per target, taken from the repository's
fixtures and documentation, each prefixed with the control bytes its
target reads first. Deterministic: rerunning rewrites the same bytes.
"""

import io
import pathlib
import pickle
import re
import struct

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
FIX = ROOT / "tests" / "fixtures"


def put(target, name, data):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


# protocol: [mode, split seed, stream...]; mode bit 0 = server answers,
# bit 1 = tiny limits.
proto = FIX / "protocol"
put("protocol", "zope-client", b"\x00\x07" + (proto / "original-zope-client.bin").read_bytes())
put("protocol", "tool-client-tiny", b"\x02\x03" + (proto / "original-tool-client.bin").read_bytes())
put("protocol", "server-answers", b"\x01\x05" + (proto / "original-server-answers.bin").read_bytes())
put("protocol", "commit-none", b"\x00\x01commit\r\nt1\n2\na\nb\n5\nNone\nDUMP\nbootstraped\n")

# datafs: the file itself.
for name in ["small.fs", "undo.fs", "packed.fs", "damaged_status_c.fs", "damaged_partial_50.fs"]:
    put("datafs", name, (FIX / "datafs" / name).read_bytes())


# index: [mode, bytes...]; mode even = a pickle stream, odd = an index file.
def fast_pickles(values):
    out = io.BytesIO()
    for v in values:
        p = pickle.Pickler(out, protocol=3)
        p.fast = True  # as ZODB's fsIndex.save: no memo opcodes
        p.dump(v)
    return out.getvalue()


def bucket(entries):
    keys = b"".join(struct.pack(">H", oid & 0xFFFF) for oid, _ in entries)
    vals = b"".join(struct.pack(">Q", pos)[2:] for _, pos in entries)
    return keys + vals


index = [1160,
         (b"\0" * 6, bucket([(0, 4), (1, 167), (2, 542)])),
         (b"\0\0\0\0\0\1", bucket([(0x10000, 900)])),
         None]
put("index", "index-file", b"\x01" + fast_pickles(index))
put("index", "pickles", b"\x00" + fast_pickles([0, 255, 65535, 2**31 - 1, 2**31, 2**63, b"x" * 300, None]))

# statuslog: [buffer seed, file...]: lines from docs/status-file.md and the
# original daemon's format.
doc = (ROOT / "docs" / "status-file.md").read_text()
lines = [l.strip() for l in doc.splitlines() if re.match(r"\s+\d{10}\.\d\d [fd] \{", l)]
put("statuslog", "documented", b"\x03" + ("\n".join(lines) + "\n").encode())
put("statuslog", "original", b"\x09" + (
    "1732212345.67 f {'[[[\"127.0.0.1\", 8100]], \"1\"]': 285899593185544149L}\n"
    "1732212346.10 d {u'b': 18446744073709551615L, \"it's\": 3}\n"
    "1732212347 f {'x\\'y': 4L}\n"
    "1732212348.00 d {'b': 1").encode())

# config: the README's and the getting-started guide's configurations.
readme = (ROOT / "README.md").read_text()
put("config", "readme.toml", re.search(r"```toml\n(.*?)```", readme, re.S).group(1).encode())
guide = (ROOT / "docs" / "getting-started.md").read_text()
put("config", "getting-started.toml",
    re.search(r"cat > tidstorage.toml <<EOF\n(.*?)EOF\n", guide, re.S).group(1).encode())
