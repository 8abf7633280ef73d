"""Scrapes http://127.0.0.1:PORT/metrics every INTERVAL seconds for
DURATION seconds (bounded), like a Prometheus server would; prints one JSON
line: scrapes, failures, body bytes, latency p50/max in ms.

    metrics_scrape.py PORT DURATION [INTERVAL]
"""
import json
import socket
import sys
import time


def scrape(port):
    t = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nAccept: text/plain\r\n\r\n")
        chunks = []
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            chunks.append(b)
    data = b"".join(chunks)
    ok = data.startswith(b"HTTP/1.1 200 ")
    return ok, len(data.split(b"\r\n\r\n", 1)[-1]), (time.monotonic() - t) * 1000


def main():
    port, duration = int(sys.argv[1]), float(sys.argv[2])
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    end = time.monotonic() + duration
    lat, fails, size = [], 0, 0
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            ok, size, ms = scrape(port)
            if ok:
                lat.append(ms)
            else:
                fails += 1
        except OSError:
            fails += 1
        time.sleep(max(0.0, interval - (time.monotonic() - start)))
    lat.sort()
    print(json.dumps({
        "scrapes": len(lat), "failures": fails, "bytes": size,
        "p50_ms": lat[len(lat) // 2] if lat else None,
        "max_ms": lat[-1] if lat else None,
    }))


if __name__ == "__main__":
    main()
