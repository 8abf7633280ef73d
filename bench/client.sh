#!/bin/sh
# The Python client's cost per commit (docs/bench-client.md): the daemon
# (release build) on a free loopback port, then bench/client.py alternating
# runs without and with the client, then paired blocks in one process, then
# instrumented runs. Arguments go to bench/client.py (default: --commits
# 4000 --runs 4; --zeo commits through two ZEO servers it starts).
# BASELINE_REV=<git revision> adds a third mode: the client package of that
# revision (e.g. main before this change), in the same alternation.
#
# Usage: [BASELINE_REV=REV] bench/client.sh [--commits N] [--runs N] [--zeo]
#                                           [--paired-commits N] [--profile]
set -eu
cd "$(dirname "$0")/.."
make --quiet venv
cargo build --quiet --release
work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
target/release/tidstorage serve --port 0 --status-file "$work/status.tid" \
    --log "$work/daemon.log" >"$work/stdout" 2>&1 &
pid=$!
i=0
while ! grep -q "listening on " "$work/stdout" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "error: the daemon did not start:" >&2; cat "$work/stdout" "$work/daemon.log" >&2 || true
        exit 3
    fi
    sleep 0.1
done
addr=$(grep -o "listening on [0-9.:]*" "$work/stdout" | head -1 | sed 's/listening on //')
echo "daemon: $(target/release/tidstorage --version) at $addr (pid $pid)"
if [ $# -eq 0 ]; then set -- --commits 4000 --runs 4; fi
if [ -n "${BASELINE_REV:-}" ]; then
    mkdir "$work/baseline"
    git archive "$BASELINE_REV" clients/python/src | tar -x -C "$work/baseline"
    echo "baseline: the client of $(git rev-parse --short "$BASELINE_REV")"
    set -- "$@" --baseline-src "$work/baseline/clients/python/src"
fi
.venv/bin/python bench/client.py "$addr" "$@"
