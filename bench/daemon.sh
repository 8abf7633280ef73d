#!/usr/bin/env bash
# Side-by-side daemon benchmark: the original TIDStorage daemon (Python 2.7,
# Products.TIDStorage 5.5.0) and `tidstorage serve`, driven by the same load
# generator in one run.
#
#   bench/daemon.sh                 # 10 s per cell
#   DURATION=30 bench/daemon.sh     # longer cells
#   CONNECTIONS="1 8" STORAGES=20 DAEMONS=original bench/daemon.sh
#
# For each daemon x storages (20, 2000) x connections (1, 8, 64): a fresh
# daemon with an empty status file on a free loopback port, the load
# generator for DURATION seconds, then the daemon's peak RSS (VmHWM) and a
# clean stop. Prints a table with tidstorage/original ratios and keeps the
# raw JSON lines and daemon logs in bench/work/daemon-<time>/.
#
# tidstorage is skipped (column "pending") while its binary has no `serve`.
# Everything started here is stopped on exit; every wait is bounded.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-"1 8 64"}
STORAGES=${STORAGES:-"20 2000"}
DAEMONS=${DAEMONS:-"original tidstorage"}
LOADGEN_ARGS=${LOADGEN_ARGS:-}
out="$root/bench/work/daemon-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"

daemon_pid=
stop_daemon() {
    local pid=$daemon_pid
    daemon_pid=
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    # Bounded: 10 s for a clean exit, then SIGKILL.
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    echo "daemon.sh: pid $pid ignored SIGTERM for 10 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
trap stop_daemon EXIT
trap 'exit 130' INT TERM

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

echo "building the load generator and tidstorage (release)..." >&2
cargo build --quiet --release --example loadgen
cargo build --quiet --release --bin tidstorage
loadgen="$root/target/release/examples/loadgen"
tidstorage="$root/target/release/tidstorage"

have_serve=no
# The skeleton binary accepts anything; only a real `serve` documents its flags.
if "$tidstorage" serve --help 2>/dev/null | grep -q -- '--status-file'; then
    have_serve=yes
fi
case " $DAEMONS " in
    *" original "*) bench/original/setup.sh ;;
esac

for daemon in $DAEMONS; do
    if [ "$daemon" = tidstorage ] && [ "$have_serve" = no ]; then
        echo "tidstorage: '$tidstorage serve' does not exist yet; its column stays pending" >&2
        continue
    fi
    for storages in $STORAGES; do
        for conns in $CONNECTIONS; do
            port=$(free_port)
            cell="$out/$daemon-s$storages-c$conns"
            mkdir -p "$cell"
            case $daemon in
                original)
                    bench/original/run.sh "$port" "$cell/status" > "$cell/log" 2>&1 &
                    ;;
                tidstorage)
                    "$tidstorage" serve --address 127.0.0.1 --port "$port" \
                        --status-file "$cell/status" --burst-period 1 \
                        --full-dump-period 300 > "$cell/log" 2>&1 &
                    ;;
                *)
                    echo "daemon.sh: unknown daemon $daemon (original, tidstorage)" >&2
                    exit 2
                    ;;
            esac
            daemon_pid=$!
            if ! wait_listening "$port" "$daemon_pid"; then
                echo "daemon.sh: $daemon did not listen on port $port within 10 s; see $cell/log" >&2
                exit 3
            fi
            # In-band DUMPs every 1000 transactions in total, spread over the
            # connections, bound how far the daemon may lag (and so the
            # drain after the deadline) the same way at every connection count.
            dump_every=$((1000 / conns))
            [ "$dump_every" -ge 10 ] || dump_every=10
            echo "$daemon: $storages storages, $conns connections, ${DURATION}s..." >&2
            # shellcheck disable=SC2086
            if ! timeout $((DURATION + 600)) "$loadgen" --server "127.0.0.1:$port" \
                --connections "$conns" --storages "$storages" \
                --duration "$DURATION" --dump-every "$dump_every" --timeout 300 \
                --label "$daemon" $LOADGEN_ARGS \
                > "$cell/loadgen.out" 2> "$cell/loadgen.err"; then
                echo "daemon.sh: the load generator failed against $daemon; see $cell/" >&2
                cat "$cell/loadgen.err" >&2
                exit 3
            fi
            hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$daemon_pid/status")
            stop_daemon
            head -n 1 "$cell/loadgen.out" |
                python3 -c 'import json, sys; r = json.loads(sys.stdin.read()); r["daemon"] = sys.argv[1]; r["peak_rss_kib"] = int(sys.argv[2]); print(json.dumps(r, sort_keys=True))' \
                    "$daemon" "$hwm" >> "$results"
            tail -n 1 "$cell/loadgen.out" >&2
        done
    done
done

python3 - "$results" "$DURATION" <<'EOF'
import json, sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by = {(r["daemon"], r["storages"], r["connections"]): r for r in rows}
cells = sorted({(r["storages"], r["connections"]) for r in rows})

def fmt(r, key, spec):
    return "pending" if r is None else format(r[key], spec)

def ratio(a, b, key, higher_is_better):
    if a is None or b is None or not a[key] or not b[key]:
        return "-"
    x = a[key] / b[key]
    return "%.2fx" % x

print()
print("daemon benchmark, %s s per cell (bench/daemon.sh); ratio = tidstorage / original" % sys.argv[2])
head = ("storages", "conns", "orig tx/s", "tids tx/s", "ratio",
        "orig DUMP p50/p99 ms", "tids DUMP p50/p99 ms",
        "orig RSS MiB", "tids RSS MiB")
print("| " + " | ".join(head) + " |")
print("|" + "|".join("---" for _ in head) + "|")
for s, c in cells:
    o = by.get(("original", s, c))
    t = by.get(("tidstorage", s, c))
    def lat(r):
        return "pending" if r is None else "%.2f / %.2f" % (r["dump_p50_ms"], r["dump_p99_ms"])
    def rss(r):
        return "pending" if r is None else "%.1f" % (r["peak_rss_kib"] / 1024)
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        s, c, fmt(o, "tx_per_s", ".0f"), fmt(t, "tx_per_s", ".0f"),
        ratio(t, o, "tx_per_s", True), lat(o), lat(t), rss(o), rss(t)))
print()
print("raw results: " + sys.argv[1])
EOF
