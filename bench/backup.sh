#!/bin/bash
# Backup benchmark: `tidstorage backup`/`restore` against ZODB's repozo and
# plain cp, side by side on one generated Data.fs.
#
# Usage: bench/backup.sh [SIZE] [DELTA]   (defaults 2G and 20M)
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
echo "generating $SIZE (+2 x $DELTA) ..." >&2
$G "$W/big.fs" $((S0 + 2 * D)) >/dev/null
$G "$W/Data.fs" "$S0" >/dev/null
$G "$W/mid.fs" $((S0 + D)) >/dev/null
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

secs() { # runs "$@", prints wall seconds
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}
row() { printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$(echo "scale=2; $2 / $3" | bc)"; }
grow() { # appends big.fs[$1, $2) to Data.fs
    dd if="$W/big.fs" iflag=skip_bytes,count_bytes skip="$1" count=$(($2 - $1)) bs=1M status=none >>"$W/Data.fs"
}

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
OR=$(secs $T -c "$W/t.toml" restore --no-cut --output-dir "$W/out" --date 2099-12-31)
RR=$(secs "$REPOZO" -R -r "$W/repo-r" -o "$W/r.fs")
cmp "$W/r.fs" "$W/Data.fs"
cmp "$W/out/Data.fs" "$W/Data.fs" 2>/dev/null || cmp "$W/out/"*/Data.fs "$W/Data.fs" 2>/dev/null || cmp "$(find "$W/out" -name Data.fs)" "$W/Data.fs"

echo
echo "Data.fs $L0 bytes, deltas $((L1 - L0)) and $((L2 - L1)) bytes; $(nproc) cores; warm page cache"
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
echo
echo "gzip backup sizes: ours (level 1) $(du -b "$W"/repo-tz/*.fsz | cut -f1) bytes, repozo (level 9) $(du -b "$W"/repo-rz/*.fsz | cut -f1) bytes"
