#!/usr/bin/python3
"""`shoal serve` with many torrents (issue 13), on 127.0.0.1.

    tests/tools/bench_serve.py                  both cases
    tests/tools/bench_serve.py --cases scale --counts 10,100,1000
    tests/tools/bench_serve.py --cases throughput --runs 3

Cases:

  scale       N torrents of 4 MiB each (sparse files of zeros; torrents
              written here) in one `shoal serve --watch`, announced to a
              `shoal tracker`. A first run checks the data and writes resume
              state; the measured second run is timed from start until the
              API lists all N torrents as idle (complete, no thread of their
              own), then sampled while idle for 3 s (peak RSS, threads), then
              one `shoal get` fetches one of them through the one port, and
              SIGTERM stops it (every torrent announces `stopped`).
  throughput  10 torrents of --size each (random data); 10 python3-libtorrent
              leechers, one per torrent, all at once: from one `shoal serve`,
              then from 10 `shoal seed` processes; --runs times each,
              alternately; the time until the last leecher is done.

Uses bench.py's process helpers. Nothing leaves 127.0.0.1.
"""

import argparse
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import BenchError, Helper, free_port, read_status, say, table  # noqa: E402

SHOAL = os.path.join(bench.REPO, "target", "release", "shoal")
MIB = bench.MIB
PIECE = 256 * 1024


def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, str):
        return bencode(v.encode())
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    if isinstance(v, dict):
        return b"d" + b"".join(bencode(k) + bencode(v[k]) for k in sorted(v)) + b"e"
    raise TypeError(v)


def zero_torrents(dirs, n, size, announce):
    """n sparse files of zeros in data/, their torrents in watch/."""
    zero_piece = hashlib.sha1(bytes(PIECE)).digest()
    pieces = zero_piece * (size // PIECE)
    for i in range(n):
        name = "f%04d.bin" % i
        with open(os.path.join(dirs["data"], name), "wb") as f:
            f.truncate(size)
        meta = {"announce": announce,
                "info": {"name": name, "length": size, "piece length": PIECE, "pieces": pieces}}
        with open(os.path.join(dirs["watch"], name + ".torrent"), "wb") as f:
            f.write(bencode(meta))


def api_list(api):
    with urllib.request.urlopen("http://%s/torrents" % api, timeout=5) as r:
        body = json.load(r)
    return body["torrents"] if isinstance(body, dict) else body


def start_serve(dirs, port, api, limit, extra=()):
    return Helper("shoal serve", [
        SHOAL, "serve", "--data", dirs["data"], "--watch", dirs["watch"], "--state",
        dirs["state"], "--api", api, "--port", str(port), "--bind", "127.0.0.1",
        "--no-dht", "--no-lsd"] + list(extra), limit)


def wait_all(api, n, state, deadline):
    """Polls the API until n torrents are listed, all in `state`."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            ts = api_list(api)
            if len(ts) == n and all(t["state"] == state for t in ts):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise BenchError("not all %d torrents %s within %d s" % (n, state, deadline))


def wait_port(port, within=10):
    """Waits until something accepts connections on 127.0.0.1:port."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError("nothing listens on port %d" % port)


def stop(helper):
    """SIGTERM to shoal itself; the seconds until it exits."""
    pid = helper.tool_pid()
    t0 = time.monotonic()
    if pid:
        os.kill(pid, signal.SIGTERM)
    helper.proc.wait(30)
    return time.monotonic() - t0


def case_scale(counts, workdir):
    rows = []
    for n in counts:
        dirs = {k: os.path.join(workdir, "scale%d" % n, k) for k in ("data", "watch", "state", "get")}
        for d in dirs.values():
            os.makedirs(d)
        tport = free_port()
        tracker = Helper("shoal tracker", [SHOAL, "tracker", "--listen", "127.0.0.1:%d" % tport], 3600)
        try:
            wait_port(tport)
            zero_torrents(dirs, n, 4 * MIB, "http://127.0.0.1:%d/announce" % tport)
            port, api = free_port(), "127.0.0.1:%d" % free_port()
            # Checks every torrent and writes its resume state.
            first = start_serve(dirs, port, api, 3600, ["--idle-after", "1s"])
            try:
                wait_all(api, n, "idle", 600)
            finally:
                stop(first)
            serve = start_serve(dirs, port, api, 3600)
            t0 = time.monotonic()
            try:
                wait_all(api, n, "idle", 120)
                startup = time.monotonic() - t0
                pid = serve.tool_pid()
                peak_threads, rss = 0, 0
                end = time.monotonic() + 3
                while time.monotonic() < end:
                    s = read_status(pid)
                    peak_threads = max(peak_threads, s.get("Threads", 0))
                    rss = max(rss, s.get("VmRSS", 0))
                    time.sleep(0.05)
                hwm = read_status(pid).get("VmHWM", 0)
                torrent = os.path.join(dirs["watch"], "f0000.bin.torrent")
                t1 = time.monotonic()
                got = subprocess.run(
                    [SHOAL, "get", torrent, "-o", dirs["get"], "--peer", "127.0.0.1:%d" % port,
                     "--no-listen", "--no-dht", "--no-lsd", "--timeout", "60s", "--json"],
                    capture_output=True, timeout=90)
                fetch = time.monotonic() - t1
                if got.returncode != 0:
                    raise BenchError("get from serve failed: %s" % got.stderr.decode()[-2000:])
            finally:
                down = stop(serve)
            rows.append([n, "%.2f" % startup, "%.1f" % (hwm / 1024), "%.1f" % (rss / 1024),
                         peak_threads, "%.2f" % fetch, "%.2f" % down])
        finally:
            tracker.stop()
    say("== serve: scale (4 MiB torrents, resume state present)")
    for l in table(["torrents", "start-up s", "peak RSS MiB", "idle RSS MiB", "threads idle",
                    "one get s", "SIGTERM exit s"], rows):
        say(l)
    if len(rows) >= 2:
        (n0, r0), (n1, r1) = (rows[0][0], float(rows[0][3])), (rows[-1][0], float(rows[-1][3]))
        say("idle cost per torrent: %.1f KiB ((RSS at %d - RSS at %d) / %d)"
            % ((r1 - r0) * 1024 / (n1 - n0), n1, n0, n1 - n0))
    return rows


def case_throughput(size, runs, workdir):
    n = 10
    base = os.path.join(workdir, "tp")
    dirs = {k: os.path.join(base, k) for k in ("data", "watch", "state")}
    for d in dirs.values():
        os.makedirs(d)
    torrents = []
    for i in range(n):
        path = os.path.join(dirs["data"], "t%d.bin" % i)
        with open(path, "wb") as f:
            left = size
            while left:
                chunk = min(left, 8 * MIB)
                f.write(os.urandom(chunk))
                left -= chunk
        out = os.path.join(dirs["watch"], "t%d.torrent" % i)
        subprocess.run([SHOAL, "create", path, "-o", out, "--piece-size", "1M", "-q"],
                       check=True, capture_output=True)
        torrents.append(out)
    digest = {}
    for i in range(n):
        with open(os.path.join(dirs["data"], "t%d.bin" % i), "rb") as f:
            digest[i] = hashlib.file_digest(f, "sha1").hexdigest()

    def leech(ports, tag, pids):
        """10 lt.py leechers at once; seconds until the last is done, and
        the peak of the serving processes' threads and RSS (KiB) together."""
        outs, procs = [], []
        peak = {"threads": 0, "rss": 0}
        sampling = threading.Event()

        def sample():
            while not sampling.is_set():
                st = [read_status(pid) for pid in pids]
                peak["threads"] = max(peak["threads"], sum(x.get("Threads", 0) for x in st))
                peak["rss"] = max(peak["rss"], sum(x.get("VmRSS", 0) for x in st))
                sampling.wait(0.05)

        # The same page cache for both: the source files read just before.
        for i in range(n):
            bench.warm(os.path.join(dirs["data"], "t%d.bin" % i))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        for i in range(n):
            out = os.path.join(base, "%s-%d" % (tag, i))
            os.makedirs(out)
            outs.append(out)
            procs.append(Helper("lt.py", [bench.PYTHON, bench.LT_PY, "leech", torrents[i], out,
                                          str(free_port()), "--peer", "127.0.0.1:%d" % ports[i],
                                          "--no-tracker", "--no-utp"], 600))
        try:
            for p in procs:
                p.expect("DONE", 300)
            took = time.monotonic() - t0
        finally:
            sampling.set()
            sampler.join()
            for p in procs:
                p.stop()
        for i, out in enumerate(outs):
            with open(os.path.join(out, "t%d.bin" % i), "rb") as f:
                if hashlib.file_digest(f, "sha1").hexdigest() != digest[i]:
                    raise BenchError("%s: torrent %d: bytes differ" % (tag, i))
            subprocess.run(["rm", "-rf", out])
        return took, peak["threads"], peak["rss"]

    one, many = [], []
    for r in range(runs):
        port, api = free_port(), "127.0.0.1:%d" % free_port()
        serve = start_serve(dirs, port, api, 3600)
        try:
            wait_all(api, n, "idle", 300)
            one.append(leech([port] * n, "serve%d" % r, [serve.tool_pid()]))
        finally:
            stop(serve)
        ports = [free_port() for _ in range(n)]
        seeds = [Helper("shoal seed", [SHOAL, "seed", torrents[i], dirs["data"], "--port",
                                       str(ports[i]), "--bind", "127.0.0.1", "--no-dht",
                                       "--no-lsd", "--json"], 3600) for i in range(n)]
        try:
            for s in seeds:
                s.expect('{"event":"listening"', 60)
            many.append(leech(ports, "seeds%d" % r, [x.tool_pid() for x in seeds]))
        finally:
            for s in seeds:
                stop(s)
    total = n * size / MIB
    m1, m2 = (statistics.median(x[0] for x in runs_) for runs_ in (one, many))

    def row(label, runs_, m):
        return [label, "%.2f" % m, "%.0f" % (total / m),
                max(x[1] for x in runs_), "%.1f" % (max(x[2] for x in runs_) / 1024),
                " ".join("%.2f" % x[0] for x in runs_)]

    say("== serve: throughput (10 lt.py leechers, 10 torrents of %d MiB, medians of %d)"
        % (size // MIB, runs))
    for l in table(["served by", "last done s", "together MiB/s", "peak threads",
                    "peak RSS MiB", "runs"],
                   [row("one shoal serve", one, m1), row("10 shoal seed", many, m2)]):
        say(l)
    say("serve / seeds time ratio: %.2f (goal: <= 1.0, i.e. at least as fast)" % (m1 / m2))


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="scale,throughput")
    p.add_argument("--counts", default="10,100,1000")
    p.add_argument("--size", default="64M", help="throughput: each torrent's size")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="throughput: 16 MiB torrents, 1 run")
    a = p.parse_args(argv)
    if a.quick:
        a.size, a.runs = "16M", 1
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=bench.REPO, check=True)
    with tempfile.TemporaryDirectory(prefix="shoal-bench-serve-") as workdir:
        for case in a.cases.split(","):
            if case == "scale":
                case_scale([int(x) for x in a.counts.split(",")], workdir)
            elif case == "throughput":
                case_throughput(bench.parse_size(a.size), a.runs, workdir)
            else:
                raise BenchError("unknown case %r" % case)
            say("")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        print("bench_serve.py: %s" % e, file=sys.stderr)
        sys.exit(1)
