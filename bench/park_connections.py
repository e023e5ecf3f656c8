#!/usr/bin/env python3
"""Parks N requests on a sluice instance and reports its resident memory (for scripts/bench.sh
proxy). Opens N connections to HOST:PORT, sends one scheduled request on each (without reading
the answer), waits until the admin listener's /admin/state shows them parked, then prints one
line: `parked=P rss_kib=R`, where R is VmRSS of PID. Closes every connection before exiting.

Usage: park_connections.py HOST PORT ADMIN_PORT PID N
Bounded: gives up after 120 s. Needs `ulimit -n` above N.
"""
import json
import socket
import sys
import time
import urllib.request

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")

def parked(host, admin_port):
    with urllib.request.urlopen(f"http://{host}:{admin_port}/admin/state", timeout=10) as r:
        return json.load(r)["totals"]["parked"]

def main():
    host, port, admin_port, pid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
        int(sys.argv[4]), int(sys.argv[5])
    body = b'{"model":"mistral","prompt":"hi","options":{"num_predict":1}}'
    deadline = time.monotonic() + 120
    socks = []
    try:
        for i in range(n):
            s = socket.create_connection((host, port), timeout=10)
            req = (f"POST /api/generate HTTP/1.1\r\nHost: {host}\r\nX-User-Id: u{i % 1000}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                   ).encode() + body
            s.sendall(req)
            socks.append(s)
        p = parked(host, admin_port)
        while p < n and time.monotonic() < deadline:
            time.sleep(0.1)
            p = parked(host, admin_port)
        time.sleep(0.5)  # let allocations settle
        print(f"parked={p} rss_kib={rss_kib(pid)}", flush=True)
    finally:
        for s in socks:
            s.close()

if __name__ == "__main__":
    main()
