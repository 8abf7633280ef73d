#!/bin/bash
# Backup benchmark: `tidstorage backup`/`restore` against ZODB's repozo and
# plain cp, side by side on one generated Data.fs.
#
# Usage: bench/backup.sh [SIZE] [DELTA] [MIX]   (defaults 2G, 20M and
# gen_datafs's default object-size mix; MIX as gen_datafs's --mix, e.g.
# 200:70,2000:29,50000:1 for mostly small objects as in bench/index.sh)
# FLOOR_ROUNDS=N (default 3): rounds of the full copy against its floors
# (the last table), each round md5sum, cp + sync, a full backup and its
# restore (twice: see floor_rounds), one after the other on the same file.
#
# Needs the test virtualenv (make venv) for repozo. Works in bench/work/
# (gitignored), removed at the end. Every tool starts without a
# Data.fs.index (repozo then scans the file to write its .index; we build
# ours on a second thread during the copy). The page cache is warm (the
# file was just written): these are CPU/memory-bound figures, the best
# case for cp. Prints a markdown table (copy it into docs/bench-backup.md).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-2G}
DELTA=${2:-20M}
MIX=${3:-}
FLOOR_ROUNDS=${FLOOR_ROUNDS:-3}
PY=${TIDSTORAGE_PYTHON:-.venv/bin/python}
REPOZO=$(dirname "$PY")/repozo
W=bench/work/backup
rm -rf "$W"
mkdir -p "$W"
trap 'rm -rf "$W"' EXIT

cargo build --release --quiet --example gen_datafs --example gzip_levels
cargo build --release --quiet
T=target/release/tidstorage
G=target/release/examples/gen_datafs

to_bytes() { numfmt --from=iec "$1"; }
S0=$(to_bytes "$SIZE")
D=$(to_bytes "$DELTA")
GEN_ARGS=()
if [ -n "$MIX" ]; then GEN_ARGS=(--mix "$MIX"); fi
echo "generating $SIZE (+2 x $DELTA) ..." >&2
BIG=$($G "$W/big.fs" $((S0 + 2 * D)) "${GEN_ARGS[@]}")
$G "$W/Data.fs" "$S0" "${GEN_ARGS[@]}" >/dev/null
$G "$W/mid.fs" $((S0 + D)) "${GEN_ARGS[@]}" >/dev/null
L0=$(stat -c %s "$W/Data.fs")
L1=$(stat -c %s "$W/mid.fs")
L2=$(stat -c %s "$W/big.fs")
cmp -n "$L1" "$W/mid.fs" "$W/big.fs" >/dev/null  # generator is deterministic: prefixes
rm "$W/mid.fs"
mkdir -p "$W/repo-t" "$W/repo-r" "$W/repo-tz" "$W/repo-rz" "$W/out"
cat >"$W/t.toml" <<EOF
[[storage]]
id = "main"
data_fs = "Data.fs"
repository = "repo-t"
EOF
sed 's/repo-t/repo-tz/' "$W/t.toml" >"$W/tz.toml"
sed 's/repo-t/repo-f/' "$W/t.toml" >"$W/f.toml"

# shellcheck source=bench/lib.sh
. bench/lib.sh
# The full copy against its floors, side by side: md5sum (a repozo .dat
# needs the md5 of every byte) and cp + sync (the bytes made durable), then
# a full backup and the restore of that backup, on the file as it is now,
# whose pages are cached (the generator just wrote it). The
# restore runs twice: on the repository file as the backup left it (not
# cached: the backup keeps what it writes out of the page cache, so the
# restore reads it from the disk while it writes), then with that file
# read into the page cache first, like the floors' source. One markdown
# row per round; ratios are to the slower floor of the same round.
floor_rounds() {
    local r load md5 cps floor fb fr frw
    for r in $(seq "$FLOOR_ROUNDS"); do
        load=$(cut -d' ' -f1 /proc/loadavg)
        md5=$(secs md5sum "$W/Data.fs")
        cps=$(secs sh -c "cp $W/Data.fs $W/cp.fs && sync $W/cp.fs")
        rm "$W/cp.fs"
        floor=$(echo "if ($md5 > $cps) $md5 else $cps" | bc)
        rm -rf "$W/repo-f" "$W/out-f" "$W/Data.fs.index"
        mkdir -p "$W/repo-f" "$W/out-f"
        fb=$(secs $T -c "$W/f.toml" backup --no-server --full)
        fr=$(secs $T -c "$W/f.toml" restore --no-cut --output-dir "$W/out-f" --date 2099-12-31)
        cmp "$(find "$W/out-f" -name Data.fs)" "$W/Data.fs"
        rm -rf "$W/out-f"
        mkdir -p "$W/out-f"
        cat "$W"/repo-f/*.fs >/dev/null
        frw=$(secs $T -c "$W/f.toml" restore --no-cut --output-dir "$W/out-f" --date 2099-12-31)
        printf '| %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n' "$r" "$load" \
            "$md5" "$cps" "$fb" "$(echo "scale=3; $fb / $floor" | bc)" \
            "$fr" "$(echo "scale=3; $fr / $floor" | bc)" \
            "$frw" "$(echo "scale=3; $frw / $floor" | bc)"
    done
    rm -rf "$W/repo-f" "$W/out-f" "$W/Data.fs.index"
}
row() { printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$(echo "scale=2; $2 / $3" | bc)"; }
grow() { # appends big.fs[$1, $2) to Data.fs
    dd if="$W/big.fs" iflag=skip_bytes,count_bytes skip="$1" count=$(($2 - $1)) bs=1M status=none >>"$W/Data.fs"
}

FLOORS=$(floor_rounds)
CP=$(secs cp "$W/Data.fs" "$W/cp.fs")
rm "$W/cp.fs"
CPS=$(secs sh -c "cp $W/Data.fs $W/cp.fs && sync $W/cp.fs")
rm "$W/cp.fs"
MD5=$(secs md5sum "$W/Data.fs")
OF=$(secs $T -c "$W/t.toml" backup --no-server --full)
RF=$(secs "$REPOZO" -B -F -r "$W/repo-r" -f "$W/Data.fs")
rm -f "$W/Data.fs.index"
OZ=$(secs $T -c "$W/tz.toml" backup --no-server --full --gzip)
RZ=$(secs "$REPOZO" -B -F -z -r "$W/repo-rz" -f "$W/Data.fs")
rm -f "$W/Data.fs.index"
sleep 1
grow "$L0" "$L1"
OI=$(secs $T -c "$W/t.toml" backup --no-server)
RI=$(secs "$REPOZO" -B -r "$W/repo-r" -f "$W/Data.fs")
rm -f "$W/Data.fs.index"
sleep 1
grow "$L1" "$L2"
OQ=$(secs $T -c "$W/t.toml" backup --no-server --quick)
RQ=$(secs "$REPOZO" -B -Q -r "$W/repo-r" -f "$W/Data.fs")
# The floors of a restore of the grown file: hashing it, copying it durably.
MD5R=$(secs md5sum "$W/Data.fs")
CPSR=$(secs sh -c "cp $W/Data.fs $W/cp.fs && sync $W/cp.fs")
rm "$W/cp.fs"
OR=$(secs $T -c "$W/t.toml" restore --no-cut --output-dir "$W/out" --date 2099-12-31)
RR=$(secs "$REPOZO" -R -r "$W/repo-r" -o "$W/r.fs")
cmp "$W/r.fs" "$W/Data.fs"
RESTORED=$(find "$W/out" -name Data.fs)
cmp "$RESTORED" "$W/Data.fs"

# ZODB's read-only open of the restored file (as in bench/index.sh): with
# the Data.fs.index restore wrote, then without it (ZODB scans the file).
zodb_open() { # FILE EXPECT_USED_INDEX -> "seconds oids"
    "$PY" - "$1" "$2" <<'PYEOF'
import logging, sys, time
logging.disable(logging.CRITICAL)
from ZODB.FileStorage import FileStorage
t = time.perf_counter()
fs = FileStorage(sys.argv[1], read_only=True)
secs = time.perf_counter() - t
assert bool(fs._used_index) == (sys.argv[2] == "1"), "_used_index is %r" % fs._used_index
print("%.3f %d" % (secs, len(fs._index)))
fs.close()
PYEOF
}
test -f "$RESTORED.index"
cat "$RESTORED" >/dev/null  # same page-cache state for both opens
read -r OPEN_IX OIDS_IX < <(zodb_open "$RESTORED" 1)
mv "$RESTORED.index" "$W/restored.index"
read -r OPEN_SCAN OIDS_SCAN < <(zodb_open "$RESTORED" 0)
[ "$OIDS_IX" = "$OIDS_SCAN" ]  # our index holds every oid ZODB's scan finds
# The restored file is the whole of big.fs (Data.fs grew into it).
TXNS=$(echo "$BIG" | sed -n 's/.*"transactions": *\([0-9]*\).*/\1/p')

echo
echo "Data.fs $L0 bytes, deltas $((L1 - L0)) and $((L2 - L1)) bytes${MIX:+, mix $MIX}; $(nproc) cores; warm page cache"
echo
echo "| operation | tidstorage (s) | reference (s) | ratio |"
echo "|---|---|---|---|"
row "full backup vs cp" "$OF" "$CP"
row "full backup vs cp + sync" "$OF" "$CPS"
row "full backup vs md5sum (hashing floor)" "$OF" "$MD5"
row "full backup vs repozo -B -F" "$OF" "$RF"
row "full gzip backup vs repozo -B -F -z" "$OZ" "$RZ"
row "incremental vs repozo -B" "$OI" "$RI"
row "incremental --quick vs repozo -B -Q" "$OQ" "$RQ"
row "restore vs repozo -R" "$OR" "$RR"
row "restore vs md5sum of the restored size (hashing floor)" "$OR" "$MD5R"
row "restore vs cp + sync of the restored size" "$OR" "$CPSR"
echo
echo "gzip backup sizes: ours (level 1) $(du -b "$W"/repo-tz/*.fsz | cut -f1) bytes, repozo (level 9) $(du -b "$W"/repo-rz/*.fsz | cut -f1) bytes"
echo
echo "ZODB read-only open of the restored file ($(stat -c %s "$RESTORED") bytes, $TXNS transactions, $OIDS_IX oids):"
echo "with the Data.fs.index restore wrote (_used_index = 1): $OPEN_IX s; without it (scan): $OPEN_SCAN s"

echo
echo "The full copy against its floors, $FLOOR_ROUNDS rounds on the $L0-byte Data.fs (load: 1-minute load average when the round started; ratios to max(md5sum, cp + sync) of the same round):"
echo
echo "| round | load | md5sum (s) | cp + sync (s) | full backup (s) | / floor | restore, repository file not cached (s) | / floor | restore, cached (s) | / floor |"
echo "|---|---|---|---|---|---|---|---|---|---|"
echo "$FLOORS"
