#!/bin/bash
# Exact cut benchmark: what `tidstorage cut` costs above the floor on
# multi-GB files after a crash, the exact cut (default) against the cut at
# the point (--at-point), and against ZODB's own open of the crashed files.
#
# Usage: bench/exactcut.sh [SIZE] [TAIL] [MIX]   (defaults 4G, 3000 and
# gen_datafs's default object-size mix)
# SIZE is the three databases' old history together (examples/gen_datafs,
# untagged, SIZE/3 each, MIX as its --mix, e.g. 200:70,2000:29,50000:1 for
# mostly small objects as in bench/index.sh); TAIL the tagged commits above the point
# (bench/exactcut_gen.py: real ZODB and the project's client; docs there).
# ROUNDS=N (default 3) repeats each timing, interleaved; TORN=1 also
# leaves a torn transaction at the end of one file (the crash cut a
# write in half) instead of ending it cleanly.
#
# Needs the test virtualenv (make venv). Works in bench/work/exactcut
# (gitignored), removed at the end. The page cache is warm (the files were
# just written). Prints markdown tables (docs/bench-datafs.md).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-4G}
TAIL=${2:-3000}
MIX=${3:-}
ROUNDS=${ROUNDS:-3}
TORN=${TORN:-}
PY=${TIDSTORAGE_PYTHON:-.venv/bin/python}
W=$PWD/bench/work/exactcut
rm -rf "$W"
mkdir -p "$W/a" "$W/b" "$W/c"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$W"' EXIT
# shellcheck source=bench/lib.sh
. bench/lib.sh

cargo build --release --quiet --example gen_datafs
cargo build --release --quiet
T=target/release/tidstorage
G=target/release/examples/gen_datafs
PART=$(($(numfmt --from=iec "$SIZE") / 3))

echo "generating 3 x $PART bytes of old history, then $TAIL tagged commits above the point ..." >&2
t0=$(date +%s.%N)
seed=1
for n in a b c; do
    $G "$W/$n/Data.fs" "$PART" --root --seed $seed ${MIX:+--mix "$MIX"} >/dev/null
    seed=$((seed + 1))
done
t1=$(date +%s.%N)
GEN=$("$PY" bench/exactcut_gen.py "$W" "$TAIL" ${TORN:+--torn})
t2=$(date +%s.%N)
echo "old history written in $(echo "$t1 - $t0" | bc) s, the tagged part by ZODB in $(echo "$t2 - $t1" | bc) s" >&2

{
    echo "[server]"
    echo "status_file = \"$W/status.tid\""
    for n in a b c; do
        echo
        echo "[[storage]]"
        echo "id = \"$W/$n/Data.fs\""
        echo "data_fs = \"$W/$n/Data.fs\""
    done
} >"$W/t.toml"

# What the generator says about each storage: gen FIELD STORAGE.
gen() {
    "$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["storages"][sys.argv[3]][sys.argv[2]])' "$GEN" "$1" "$2"
}
# The crashed state, to go back to after a real cut: each file's bytes
# from the point on, and its stale Data.fs.index.
for n in a b c; do
    dd if="$W/$n/Data.fs" of="$W/$n.saved" iflag=skip_bytes skip="$(gen tail_start $n)" bs=1M status=none
    cp "$W/$n/Data.fs.index" "$W/$n.index"
done
reset_files() {
    for n in a b c; do
        truncate -s "$(gen tail_start $n)" "$W/$n/Data.fs"
        cat "$W/$n.saved" >>"$W/$n/Data.fs"
        [ "$(stat -c %s "$W/$n/Data.fs")" = "$(gen size $n)" ]
        cp "$W/$n.index" "$W/$n/Data.fs.index"
        rm -f "$W/$n"/Data.fs.tail-*
    done
}

# The plans, checked before anything is timed: the exact cut keeps on
# every storage what the generator's own bookkeeping says the greatest
# consistent cut keeps; the cut at the point keeps nothing above it.
EXACT=$($T -c "$W/t.toml" cut --dry-run --format json)
ATPOINT=$($T -c "$W/t.toml" cut --dry-run --at-point --format json)
plan() { # JSON-LINES STORAGE-PATH EXPRESSION-ON-p
    "$PY" -c '
import json, sys
for line in sys.argv[1].splitlines():
    p = json.loads(line)
    if p["data_fs"] == sys.argv[2]:
        print(eval(sys.argv[3]))' "$1" "$2" "$3"
}
for n in a b c; do
    kept=$(plan "$EXACT" "$W/$n/Data.fs" 'p["exact"]["kept_beyond_point"]')
    want=$(gen kept_by_greatest_consistent_cut $n)
    if [ "$kept" != "$want" ]; then
        echo "storage $n: the exact cut keeps $kept transactions above the point, the generator's oracle $want" >&2
        exit 1
    fi
    [ "$(plan "$ATPOINT" "$W/$n/Data.fs" 'p["cut_position"]')" = "$(gen tail_start $n)" ]
done

TID_A=$(gen point_tid a)
# Interleaved rounds; the real cuts are undone after each.
declare -A SUM
for key in exact atpoint tags cut cutp; do SUM[$key]=""; done
for _ in $(seq "$ROUNDS"); do
    SUM[exact]+=" $(secs $T -c "$W/t.toml" cut --dry-run)"
    SUM[atpoint]+=" $(secs $T -c "$W/t.toml" cut --dry-run --at-point)"
    SUM[tags]+=" $(secs $T tags "$W/a/Data.fs" --since "$TID_A" --storage "$W/a/Data.fs" --format json)"
    SUM[cut]+=" $(secs $T -c "$W/t.toml" cut)"
    for n in a b c; do
        [ "$(stat -c %s "$W/$n/Data.fs")" = "$(plan "$EXACT" "$W/$n/Data.fs" 'p["cut_position"]')" ]
    done
    reset_files
    SUM[cutp]+=" $(secs $T -c "$W/t.toml" cut --at-point)"
    reset_files
done
range() { # seconds... -> "min–max ms"
    echo "$@" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk '
        NR == 1 { lo = $1 } { hi = $1 }
        END { if (lo == hi) printf "%.1f ms", lo * 1000; else printf "%.1f–%.1f ms", lo * 1000, hi * 1000 }'
}

# ZODB's own open of the crashed files (read-only, nothing written): with
# the stale Data.fs.index of the last clean restart (what a ZEO server's
# start reads: the index, then every transaction after it) and without it
# (the whole file is scanned). Seconds for the three files together.
zodb_open() { # with-index? -> seconds
    "$PY" - "$1" "$W"/{a,b,c}/Data.fs <<'PYEOF'
import logging, os, sys, time
logging.disable(logging.CRITICAL)
from ZODB.FileStorage import FileStorage
with_index = sys.argv[1] == "1"
total = 0.0
for path in sys.argv[2:]:
    if not with_index:
        os.rename(path + ".index", path + ".index.aside")
    t = time.perf_counter()
    fs = FileStorage(path, read_only=True)
    total += time.perf_counter() - t
    assert bool(fs._used_index) == with_index
    fs.close()
    if not with_index:
        os.rename(path + ".index.aside", path + ".index")
print("%.3f" % total)
PYEOF
}
ZI=$(zodb_open 1)
ZS=$(zodb_open 0)
# What a tag costs, read back by ZODB from the tail of a: the tag value's
# bytes and the whole extension pickle's, by number of storages named.
TAGBYTES=$("$PY" - "$W/a/Data.fs" "$TID_A" <<'PYEOF'
import collections, logging, sys
logging.disable(logging.CRITICAL)
from ZODB.FileStorage import FileStorage
from ZODB.utils import p64
fs = FileStorage(sys.argv[1], read_only=True)
seen = collections.defaultdict(set)
for t in fs.iterator(p64(int(sys.argv[2]) + 1)):
    tag = t.extension.get("tidstorage")
    if tag is not None:
        seen[len(tag.split(" ")) - 3].add((len(tag.encode()), len(t.extension_bytes)))
fs.close()
print("; ".join("%d storage(s): tag %s bytes, extension %s bytes" % (
    k, "/".join(str(a) for a in sorted({a for a, _ in v})),
    "/".join(str(b) for b in sorted({b for _, b in v}))) for k, v in sorted(seen.items())))
PYEOF
)

echo
total_size=0
total_tail=0
for n in a b c; do
    total_size=$((total_size + $(gen size $n)))
    total_tail=$((total_tail + $(gen tail_bytes $n)))
done
echo "3 Data.fs, $total_size bytes in all${MIX:+ (old history: mix $MIX)}, $total_tail of them above the point ($(echo "$GEN" | sed -n 's/.*"commits_above_point": \([0-9]*\).*/\1/p') commits); ${TORN:+a torn transaction ends c, }a 'c' record ends b; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); warm page cache; $ROUNDS rounds"
echo
echo "| storage | size | bytes above the point | transactions above the point | kept by the exact cut | kept by --at-point | removed by the exact cut, and why |"
echo "|---|---|---|---|---|---|---|"
for n in a b c; do
    why=$(plan "$EXACT" "$W/$n/Data.fs" '", ".join(sorted(set(r["reason"] for r in p["exact"]["removed"])))')
    echo "| $n | $(gen size $n) | $(gen tail_bytes $n) | $(gen above_point $n) | $(gen kept_by_greatest_consistent_cut $n) | 0 | $(plan "$EXACT" "$W/$n/Data.fs" 'p["transactions_removed"]') ($why) |"
done
echo
echo "| operation (all three storages) | time |"
echo "|---|---|"
echo "| \`cut --dry-run\` (exact cut: reads every storage's tags above the point) | $(range ${SUM[exact]}) |"
echo "| \`cut --dry-run --at-point\` | $(range ${SUM[atpoint]}) |"
echo "| \`cut\` (exact: saves the tails, truncates, fsyncs, extends the stale Data.fs.index) | $(range ${SUM[cut]}) |"
echo "| \`cut --at-point\` | $(range ${SUM[cutp]}) |"
echo "| \`tags FILE --since TID --format json\` (one storage's export for another host) | $(range ${SUM[tags]}) |"
echo "| ZODB \`FileStorage(read_only=True)\` of the three crashed files, with their stale Data.fs.index | $ZI s |"
echo "| the same without an index (ZODB scans every file) | $ZS s |"
echo
echo "Commit tags above the point on a, as ZODB reads them: $TAGBYTES"
