# Helpers the benchmark scripts share (sourced, not run).

# Runs "$@" with its output discarded; prints its wall-clock seconds.
secs() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}

# A TCP port free on the loopback right now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (bounded: 10 s) until process $2 listens on loopback port $1;
# fails when the process is gone or the time is over.
wait_listening() {
    local port=$1 pid=$2
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}
