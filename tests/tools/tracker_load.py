#!/usr/bin/env python3
"""Announce latency and throughput of `shoal tracker` on 127.0.0.1.

Usage: tracker_load.py SHOAL_BINARY [--clients 8] [--seconds 5]

Starts `shoal tracker` on a free port, runs CLIENTS threads that each send
HTTP announces (one connection per announce, as BitTorrent clients do) for
SECONDS, each from its own address (127.0.0.2, .3, ...), and prints the median and 99th-percentile latency and the
announces per second. Loopback only; stops the tracker by PID.
"""
import argparse, os, random, signal, socket, subprocess, threading, time, urllib.parse


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def announce(port, n, source):
    ih = urllib.parse.quote_from_bytes(bytes([n % 256]) * 20)
    pid = urllib.parse.quote_from_bytes(os.urandom(20))
    req = (f"GET /announce?info_hash={ih}&peer_id={pid}&port={6881 + n % 1000}"
           f"&uploaded=0&downloaded=0&left=1&compact=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as s:
        s.sendall(req.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(data[:80])
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shoal")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    port = free_port()
    tracker = subprocess.Popen([a.shoal, "tracker", "--listen", f"127.0.0.1:{port}", "-q"])
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        lat, lock = [], threading.Lock()
        end = time.time() + a.seconds

        def client(k):
            n = k * 100_000
            mine = []
            while time.time() < end:
                mine.append(announce(port, n, f"127.0.0.{k + 2}"))
                n += 1
            with lock:
                lat.extend(mine)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        lat.sort()
        med = lat[len(lat) // 2] * 1000
        p99 = lat[int(len(lat) * 0.99)] * 1000
        print(f"tracker: {a.clients} clients, {len(lat)} announces in {a.seconds:.0f} s: "
              f"{len(lat) / a.seconds:.0f}/s, median {med:.2f} ms, p99 {p99:.2f} ms")
    finally:
        tracker.send_signal(signal.SIGTERM)
        tracker.wait(timeout=10)


if __name__ == "__main__":
    main()
