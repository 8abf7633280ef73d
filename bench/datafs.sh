#!/bin/sh
# Data.fs benchmark: our cut position and verification against ZODB's own
# read-only open on the same large file. Usage: bench/datafs.sh [SIZE]
# (default 4G). Needs the test virtualenv (make venv). The file lives in
# bench/work/ (gitignored) and is deleted at the end.
set -eu
cd "$(dirname "$0")/.."
SIZE=${1:-4G}
PY=${TIDSTORAGE_PYTHON:-.venv/bin/python}
WORK=bench/work
FS=$WORK/Data.fs
mkdir -p "$WORK"
trap 'rm -f "$FS" "$FS.index" "$FS.lock" "$FS.tmp"' EXIT

cargo build --release --quiet --example gen_datafs --example datafs_bench
echo "generating $SIZE in $FS ..."
t0=$(date +%s.%N)
GEN=$(target/release/examples/gen_datafs "$FS" "$SIZE")
t1=$(date +%s.%N)
echo "$GEN  (written in $(echo "$t1 - $t0" | bc) s)"
field() { echo "$GEN" | sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p"; }
LAST=$(field last_tid)
MIDDLE=$(field middle_tid)
# Near the end: a few transactions before the last.
NEAR=$((LAST - 5 * 71582))

echo "--- ours (release build)"
OURS=$(target/release/examples/datafs_bench "$FS" "$NEAR" "$MIDDLE")
echo "$OURS"

echo "--- ZODB 6.4 FileStorage(read_only=True, stop=...) without .index"
rm -f "$FS.index"
ZODB=$("$PY" - "$FS" "$NEAR" "$MIDDLE" <<'PYEOF'
import logging, os, sys, time
logging.disable(logging.CRITICAL)
from ZODB.FileStorage import FileStorage
from ZODB.utils import p64
path, near, middle = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def timed(name, **kw):
    t = time.perf_counter()
    fs = FileStorage(path, read_only=True, **kw)
    size = fs.getSize()
    fs.close()
    print(name, '%.6f' % (time.perf_counter() - t), size)
timed('zodb_near_end', stop=p64(near + 1))
timed('zodb_middle', stop=p64(middle + 1))
assert not os.path.exists(path + '.index'), 'read-only open wrote an index'
# A writable open scans the file and saves Data.fs.index ...
t = time.perf_counter()
FileStorage(path).close()
print('zodb_rw_open_writing_index', '%.6f' % (time.perf_counter() - t), os.path.getsize(path + '.index'))
# ... which makes the next read-only open skip the scan.
timed('zodb_with_index')
PYEOF
)
echo "$ZODB"

get() { echo "$1" | awk -v k="$2" '$1 == k { print $2 }'; }
ratio() { echo "scale=1; $1 / $2" | bc; }
echo
echo "| operation (file $(field size) bytes, $(field transactions) transactions) | ours (s) | ZODB (s) | ZODB / ours |"
echo "|---|---|---|---|"
for pair in "cut_near_end zodb_near_end" "cut_middle zodb_middle" "cut_near_end_forward zodb_near_end" "verify zodb_near_end"; do
    set -- $pair
    o=$(get "$OURS" "$1"); z=$(get "$ZODB" "$2")
    echo "| $1 vs $2 | $o | $z | $(ratio "$z" "$o") |"
done
echo "| (ZODB read-only open with a .index present) | | $(get "$ZODB" zodb_with_index) | |"
echo "| (ZODB writable open, scans and writes .index) | | $(get "$ZODB" zodb_rw_open_writing_index) | |"
