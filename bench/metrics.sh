#!/usr/bin/env bash
# The cost of metrics under load: `tidstorage serve --metrics-address`, the
# daemon benchmark's load generator (closed loop by default), with no scrape
# and with a scrape every second, side by side in one run.
#
#   bench/metrics.sh                       # 8 s per cell, 3 rounds
#   DURATION=20 REPEAT=5 STORAGES=2000 bench/metrics.sh
#
# For each storages (20, 2000) x connections (8, 64), REPEAT rounds of: a
# fresh daemon with an empty status file, metrics on a free loopback port,
# the load generator for DURATION seconds, once without and once with
# bench/metrics_scrape.py scraping /metrics every second (the two alternate,
# so machine noise hits both; the table shows the median round of each).
# Prints a table; raw JSON lines and logs stay in
# bench/work/metrics-<time>/. Everything started here is stopped on exit;
# every wait is bounded.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
DURATION=${DURATION:-8}
REPEAT=${REPEAT:-3}
CONNECTIONS=${CONNECTIONS:-"8 64"}
STORAGES=${STORAGES:-"20 2000"}
LOADGEN_ARGS=${LOADGEN_ARGS:-"--sync-begin true --pipeline 8"}
out="$root/bench/work/metrics-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"

daemon_pid=
scraper_pid=
stop_all() {
    [ -z "$scraper_pid" ] || { kill "$scraper_pid" 2>/dev/null || true; wait "$scraper_pid" 2>/dev/null || true; }
    scraper_pid=
    local pid=$daemon_pid
    daemon_pid=
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

echo "building the load generator and tidstorage (release)..." >&2
cargo build --quiet --release --example loadgen
cargo build --quiet --release --bin tidstorage
loadgen="$root/target/release/examples/loadgen"
tidstorage="$root/target/release/tidstorage"

for storages in $STORAGES; do
    for conns in $CONNECTIONS; do
        for round in $(seq "$REPEAT"); do
        for scrape in none 1s; do
            port=$(free_port)
            mport=$(free_port)
            cell="$out/s$storages-c$conns-$scrape-$round"
            mkdir -p "$cell"
            "$tidstorage" serve --address 127.0.0.1 --port "$port" \
                --metrics-address "127.0.0.1:$mport" \
                --status-file "$cell/status" --burst-period 1 \
                --full-dump-period 300 > "$cell/log" 2>&1 &
            daemon_pid=$!
            if ! wait_listening "$port" "$daemon_pid"; then
                echo "metrics.sh: the daemon did not listen on port $port within 10 s; see $cell/log" >&2
                exit 3
            fi
            if [ "$scrape" = 1s ]; then
                python3 bench/metrics_scrape.py "$mport" "$DURATION" 1 > "$cell/scrape.out" &
                scraper_pid=$!
            fi
            dump_every=$((1000 / conns))
            [ "$dump_every" -ge 10 ] || dump_every=10
            echo "$storages storages, $conns connections, scrape $scrape, round $round, ${DURATION}s..." >&2
            # shellcheck disable=SC2086
            if ! timeout $((DURATION + 600)) "$loadgen" --server "127.0.0.1:$port" \
                --connections "$conns" --storages "$storages" \
                --duration "$DURATION" --dump-every "$dump_every" --timeout 300 \
                --label "scrape-$scrape" $LOADGEN_ARGS \
                > "$cell/loadgen.out" 2> "$cell/loadgen.err"; then
                echo "metrics.sh: the load generator failed; see $cell/" >&2
                cat "$cell/loadgen.err" >&2
                exit 3
            fi
            scrape_json='{}'
            if [ -n "$scraper_pid" ]; then
                # The scraper stops by itself after DURATION seconds.
                wait "$scraper_pid" || true
                scraper_pid=
                scrape_json=$(cat "$cell/scrape.out")
            fi
            stop_all
            head -n 1 "$cell/loadgen.out" |
                python3 -c 'import json, sys; r = json.loads(sys.stdin.read()); r["scrape"] = sys.argv[1]; r["scraper"] = json.loads(sys.argv[2]); print(json.dumps(r, sort_keys=True))' \
                    "$scrape" "$scrape_json" >> "$results"
            tail -n 1 "$cell/loadgen.out" >&2
        done
        done
    done
done

python3 - "$results" "$DURATION" "$LOADGEN_ARGS" <<'PY'
import json, sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
groups = {}
for r in rows:
    groups.setdefault((r["scrape"], r["storages"], r["connections"]), []).append(r)
# The median round (by throughput) of each cell.
by = {k: sorted(v, key=lambda r: r["tx_per_s"])[len(v) // 2] for k, v in groups.items()}
cells = sorted({(r["storages"], r["connections"]) for r in rows})
print()
print("metrics cost, %s s per cell, median of the rounds, loadgen %s (bench/metrics.sh)" % (sys.argv[2], sys.argv[3]))
head = ("storages", "conns", "no scrape tx/s", "scrape 1/s tx/s", "ratio",
        "scrapes", "scrape p50 / max ms", "scrape bytes")
print("| " + " | ".join(head) + " |")
print("|" + "|".join("---:" for _ in head) + "|")
for s, c in cells:
    a, b = by.get(("none", s, c)), by.get(("1s", s, c))
    if not a or not b:
        continue
    sc = b["scraper"]
    print("| %s | %s | %.0f | %.0f | %.3f | %s | %.2f / %.2f | %s |" % (
        s, c, a["tx_per_s"], b["tx_per_s"], b["tx_per_s"] / a["tx_per_s"],
        sc.get("scrapes"), sc.get("p50_ms") or 0, sc.get("max_ms") or 0, sc.get("bytes")))
print()
print("raw results: " + sys.argv[1])
PY
