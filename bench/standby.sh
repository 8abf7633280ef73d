#!/bin/bash
# Incremental restore benchmark: a standby kept current with
# `restore --incremental` (with and without --quick) against a full
# `restore` and ZODB's `repozo -R`, side by side on one generated Data.fs
# that grew by one day's delta.
#
# Usage: bench/standby.sh [SIZE] [DELTA]   (defaults 2G and 20M)
#
# The steady state of a daily cron line: day 0 a full backup and two
# standbys restored from it; day 1 a delta, backed up and followed by both
# standbys (with --quick, the last chunk a standby covers is then the full
# backup: that first day costs its md5); day 2 another delta, measured.
#
# Needs the test virtualenv (make venv) for repozo. Works in bench/work/
# (gitignored), removed at the end. Warm page cache (the files were just
# written). Every result is checked byte for byte against the grown
# Data.fs. Prints a markdown table (copy it into docs/bench-standby.md).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-2G}
DELTA=${2:-20M}
PY=${TIDSTORAGE_PYTHON:-.venv/bin/python}
REPOZO=$(dirname "$PY")/repozo
W=bench/work/standby
rm -rf "$W"
mkdir -p "$W/repo"
trap 'rm -rf "$W"' EXIT

cargo build --release --quiet --example gen_datafs
cargo build --release --quiet
T=target/release/tidstorage
G=target/release/examples/gen_datafs

to_bytes() { numfmt --from=iec "$1"; }
S0=$(to_bytes "$SIZE")
D=$(to_bytes "$DELTA")
echo "generating $SIZE (+ 2 x $DELTA) ..." >&2
$G "$W/big.fs" $((S0 + 2 * D)) >/dev/null
$G "$W/mid.fs" $((S0 + D)) >/dev/null
$G "$W/Data.fs" "$S0" >/dev/null
L0=$(stat -c %s "$W/Data.fs")
L1=$(stat -c %s "$W/mid.fs")
L2=$(stat -c %s "$W/big.fs")
cmp -n "$L1" "$W/mid.fs" "$W/big.fs" >/dev/null  # the generator is deterministic: prefixes
rm "$W/mid.fs"
grow() { # appends big.fs[$1, $2) to Data.fs
    dd if="$W/big.fs" iflag=skip_bytes,count_bytes skip="$1" count=$(($2 - $1)) bs=1M status=none >>"$W/Data.fs"
}
cat >"$W/t.toml" <<EOF2
[[storage]]
id = "main"
data_fs = "Data.fs"
repository = "repo"
EOF2

# shellcheck source=bench/lib.sh
. bench/lib.sh
row() { printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$(echo "scale=1; $3 / $2" | bc)"; }
standby() { find "$W/$1" -name Data.fs; }

# Day 0: a full backup, two standbys restored from it.
$T -c "$W/t.toml" backup --no-server >/dev/null
$T -c "$W/t.toml" restore --no-cut --output-dir "$W/sb-quick" >/dev/null
$T -c "$W/t.toml" restore --no-cut --output-dir "$W/sb-check" >/dev/null
# Day 1: the database grew by DELTA; an incremental backup, both standbys follow.
sleep 1
grow "$L0" "$L1"
$T -c "$W/t.toml" backup --no-server >/dev/null
$T -c "$W/t.toml" restore --incremental --quick --no-cut --output-dir "$W/sb-quick" >/dev/null
$T -c "$W/t.toml" restore --incremental --no-cut --output-dir "$W/sb-check" >/dev/null
# Day 2, measured.
sleep 1
grow "$L1" "$L2"
$T -c "$W/t.toml" backup --no-server >/dev/null
cat "$(standby sb-quick)" "$(standby sb-check)" "$W"/repo/* >/dev/null  # same cache state

QUICK=$(secs $T -c "$W/t.toml" restore --incremental --quick --no-cut --output-dir "$W/sb-quick")
CHECK=$(secs $T -c "$W/t.toml" restore --incremental --no-cut --output-dir "$W/sb-check")
FULL=$(secs $T -c "$W/t.toml" restore --no-cut --output-dir "$W/full")
REPOZO_R=$(secs "$REPOZO" -R -r "$W/repo" -o "$W/repozo.fs")
for f in "$(standby sb-quick)" "$(standby sb-check)" "$(standby full)" "$W/repozo.fs"; do
    cmp "$f" "$W/Data.fs"
done

echo
echo "standby $L1 bytes, delta $((L2 - L1)) bytes (day 2 of a daily cron line); $(nproc) cores; warm page cache"
echo
echo "| incremental restore | seconds | full restore (s) | full / incremental |"
echo "|---|---|---|---|"
row "--incremental --quick" "$QUICK" "$FULL"
row "--incremental (md5 of the standby's prefix)" "$CHECK" "$FULL"
row "--incremental --quick vs repozo -R" "$QUICK" "$REPOZO_R"
row "--incremental vs repozo -R" "$CHECK" "$REPOZO_R"
