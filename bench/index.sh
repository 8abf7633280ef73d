#!/bin/sh
# Data.fs.index benchmark: ZODB's open without an index (it scans the file)
# against ZODB's open with the index we write, and our own index build,
# save, load and cut-time fix-up, on one large generated file.
# Usage: bench/index.sh [SIZE [MIX [OIDS]]] (default 2G; MIX as
# gen_datafs's --mix; OIDS distinct objects, default 100000, e.g.
# `bench/index.sh 2G 40:1 20000000` for an index of 20 million oids). Needs the test virtualenv (make venv). The file lives in
# bench/work/ (gitignored) and is deleted at the end.
set -eu
cd "$(dirname "$0")/.."
SIZE=${1:-2G}
# Mostly small objects, as in a real ERP5 Data.fs: the scan cost is per record.
MIX=${2:-200:70,2000:29,50000:1}
OIDS=${3:-100000}
PY=${TIDSTORAGE_PYTHON:-.venv/bin/python}
WORK=bench/work
FS=$WORK/Data.fs
mkdir -p "$WORK"
trap 'rm -f "$FS" "$FS.index" "$FS.lock" "$FS.tmp"' EXIT

cargo build --release --quiet --example gen_datafs --example index_bench
echo "generating $SIZE in $FS ..."
GEN=$(target/release/examples/gen_datafs "$FS" "$SIZE" --mix "$MIX" --records-per-txn 20 --oids "$OIDS")
echo "$GEN"
field() { echo "$GEN" | sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p"; }
LAST=$(field last_tid)
NEAR=$((LAST - 20 * 71582))

# Same page-cache state for both sides: read the file once first.
cat "$FS" > /dev/null

echo "--- ZODB 6.4 read-only open without .index (scan)"
rm -f "$FS.index"
"$PY" - "$FS" <<'PYEOF'
import logging, resource, sys, time
logging.disable(logging.CRITICAL)
from ZODB.FileStorage import FileStorage
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t = time.perf_counter()
fs = FileStorage(sys.argv[1], read_only=True)
print('zodb_open_scan %.6f used_index=%s oids=%d' % (time.perf_counter() - t, fs._used_index, len(fs._index)))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print('zodb_peak_rss %d bytes (%d before the open), %.1f bytes per oid'
      % (peak, base, (peak - base) / max(1, len(fs._index))))
fs.close()
PYEOF

echo "--- ours (release build); writes $FS.index"
target/release/examples/index_bench "$FS" "$NEAR"

echo "--- ZODB 6.4 read-only open with our .index"
"$PY" - "$FS" <<'PYEOF'
import logging, sys, time
logging.disable(logging.CRITICAL)
from ZODB.FileStorage import FileStorage
t = time.perf_counter()
fs = FileStorage(sys.argv[1], read_only=True)
print('zodb_open_with_our_index %.6f used_index=%s oids=%d' % (time.perf_counter() - t, fs._used_index, len(fs._index)))
assert fs._used_index, 'ZODB rebuilt the index'
fs.close()
PYEOF
