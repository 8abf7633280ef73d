#!/bin/bash
# Blob backup benchmark: tidstorage's blob snapshots against what
# collective.recipe.backup runs (`rsync -a --delete --link-dest`) and a
# plain `cp -a` + `sync`, side by side on one generated blob site.
#
# Usage: bench/blobs.sh [N] [NEW]   (defaults 100000 blob files, 1000 new)
#
# The site: a Data.fs with N transactions storing one blob each (ZODB's
# blob class pickle) and its bushy blob directory (files of 200-2,000
# bytes). Full: tidstorage (scan of the whole Data.fs for blob records +
# copy of every file into the pool, each fsynced, directories fsynced,
# manifest) vs `cp -a` + `sync`, and the first rsync snapshot. Then NEW
# more blobs are committed and the incremental runs: tidstorage (scan of
# the Data.fs delta + copy of the new files + manifest of the new files)
# vs `rsync -a --delete --link-dest=<previous> src/ new/`. Disk use is
# `du -sk` of the repository before and after (du counts hard links once).
# Page cache warm. Works in bench/work/blobs (gitignored), removed at the
# end. Prints a markdown table (copy it into docs/blobs.md).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
NEW=${2:-1000}
W=$PWD/bench/work/blobs
rm -rf "$W"
mkdir -p "$W"
trap 'rm -rf "$W"' EXIT
command -v rsync >/dev/null || { echo "error: rsync is needed (apt-get install rsync)" >&2; exit 1; }

cargo build --release --quiet --example blobs_bench
cargo build --release --quiet
B=target/release/examples/blobs_bench
T=$PWD/target/release/tidstorage

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l | xargs printf '%.3f'; }
kib() { du -sk "$@" | awk '{s+=$1} END {print s}'; }

echo "generating $N blobs ..." >&2
END=$($B gen "$W/site" "$N")
sync

# Full backups.
t0=$(now); FULL=$($B full "$W/repo" "$W/site" run1); t1=$(now)
OURS_FULL=$(secs "$t0" "$t1")
t0=$(now); cp -a "$W/site/blobs" "$W/cp-full"; sync; t1=$(now)
CP_FULL=$(secs "$t0" "$t1")
mkdir -p "$W/rsync"
t0=$(now); rsync -a --delete "$W/site/blobs/" "$W/rsync/run1/"; sync; t1=$(now)
RSYNC_FULL=$(secs "$t0" "$t1")
OURS_DU1=$(kib "$W/repo")
RSYNC_DU1=$(kib "$W/rsync/run1")
# The command itself (Data.fs copy with md5 and index, then the blobs).
mkdir -p "$W/cmd-repo"
printf '[[storage]]\nid = "main"\ndata_fs = "%s"\nrepository = "%s"\nblob_dir = "%s"\n' \
    "$W/site/Data.fs" "$W/cmd-repo" "$W/site/blobs" >"$W/t.toml"
t0=$(now); "$T" -q -c "$W/t.toml" backup --no-server >/dev/null; sync; t1=$(now)
CMD_FULL=$(secs "$t0" "$t1")

# NEW more blobs, then the incremental runs.
SRC_DU1=$(kib "$W/site/blobs")
$B grow "$W/site" "$NEW" >/dev/null
SRC_DU2=$(kib "$W/site/blobs")
sync
t0=$(now); INCR=$($B incr "$W/repo" "$W/site" run2 "$END"); sync; t1=$(now)
OURS_INCR=$(secs "$t0" "$t1")
t0=$(now); rsync -a --delete --link-dest="$W/rsync/run1" "$W/site/blobs/" "$W/rsync/run2/"; sync; t1=$(now)
RSYNC_INCR=$(secs "$t0" "$t1")
sleep 1   # a new second for the next backup's name
t0=$(now); CMD_OUT=$("$T" -q -c "$W/t.toml" backup --no-server); sync; t1=$(now)
CMD_INCR=$(secs "$t0" "$t1")
echo "$CMD_OUT" >&2
OURS_DU2=$(kib "$W/repo")
RSYNC_DU2=$(kib "$W/rsync/run1" "$W/rsync/run2")

echo "full (ours): $FULL" >&2
echo "incremental (ours): $INCR" >&2
echo
echo "$N blob files, $NEW new ($(nproc) cores, $(uname -r), $(df -T "$W" | awk 'NR==2 {print $2}'))"
echo
echo "| run | tidstorage (blob step) | \`tidstorage backup\` (Data.fs + blobs) | rsync -a --link-dest | cp -a + sync |"
echo "|---|---|---|---|---|"
echo "| full: seconds | $OURS_FULL | $CMD_FULL | $RSYNC_FULL | $CP_FULL |"
echo "| full: repository KiB | $OURS_DU1 | | $RSYNC_DU1 | |"
echo "| incremental: seconds | $OURS_INCR | $CMD_INCR | $RSYNC_INCR | |"
echo "| incremental: speed-up vs rsync | $(echo "$RSYNC_INCR / $OURS_INCR" | bc -l | xargs printf '%.1f')x | $(echo "$RSYNC_INCR / $CMD_INCR" | bc -l | xargs printf '%.1f')x | 1x | |"
echo "| incremental: repository growth KiB | $((OURS_DU2 - OURS_DU1)) | | $((RSYNC_DU2 - RSYNC_DU1)) | |"
echo "| the blob directory's own growth KiB (new files and their directories) | $((SRC_DU2 - SRC_DU1)) | | $((SRC_DU2 - SRC_DU1)) | |"
