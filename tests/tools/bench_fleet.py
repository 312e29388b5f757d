#!/usr/bin/python3
"""A swarm of hosts in network namespaces: one seeder and N leechers started
together, each on its own shaped link; the time until the LAST one is done,
against the physical lower bound (the performance issue, part 2).

    make bench-fleet                                  N = 4, 8, 16; 16 MiB; 10 Mbit/s; 3 runs
    tests/tools/bench_fleet.py --quick                N = 4; 16 MiB; 1 run
    tests/tools/bench_fleet.py --ns 16 --size 128M --rate 100mbit --runs 5

The defaults fit a 2-core machine: 16 leechers at 100 Mbit/s would need
more CPU than it has (the figure would measure the CPU, not the protocol;
it is printed, and said above 70 %). 16 MiB at 10 Mbit/s has the F/u and
the piece count (1,024, `shoal create`'s choice) of 128 MiB at 80 Mbit/s,
with an eighth of the bytes to move.

Topology (made here, deleted on every exit path): a "switch" namespace
SHF-br with a bridge (10.88.0.254, where `shoal tracker` runs), and hosts
SHF-h0 (the seeder) .. SHF-hN, each with a veth pair (eth0 inside, pI on the
bridge), 10.88.0.(I+1)/24, `lo` up, IPv6 off, no route anywhere else
(SHF = `shf<pid>`). Each link is shaped both ways: a tbf at --rate on the
host's eth0 (its upload) and on its bridge port pI (its download), with a
queue of --queue-ms, and a netem delay of --delay-ms on both if the kernel
has sch_netem (it is said loudly when it does not).

For each N, --runs times, shoal and python3-libtorrent alternate (ABBA) in
the same namespaces: a fresh tracker, the seeder on h0 (page cache warm;
both clients super-seed unless --no-super-seed),
then N leechers started together on h1..hN (time 0 = just before the first
is started). A leecher is done at its `seeding` JSON event (shoal, which
keeps seeding with --seed-time) or its `DONE` line (lt.py, which keeps
seeding until stdin closes); times are taken by this script as the lines
arrive. When the last is done (or the deadline passes) all are stopped by
PID: SIGTERM for shoal (its final `done` event carries `uploaded`), stdin
closed for lt.py (`UPLOADED n`). Every leecher's file is compared (SHA-1)
with the source. The machine's CPU busy % comes from /proc/stat sampled
between time 0 and the last leecher done (and, before each swarm, for 1 s
with nothing of ours running: the other work on the machine).

The bound: with every link at rate u (bytes/s of payload at --rate) and
file size F, no leecher finishes before F/u, and the swarm as a whole needs
N*F/((N+1)*u) (N copies through N+1 uploads); the larger is printed (it is
F/u for every N). TCP/IP and Ethernet headers take ~4.4 % of the wire
(1448 bytes of payload per 1514-byte frame), so ~1.046 x the bound is what
a perfect client gets.

Runs as root (namespaces and tc) with /usr/bin/python3; standard library
only (libtorrent runs in tests/interop/lt.py); reuses bench.py's helpers.
DHT, LSD and uTP are off for both clients; nothing leaves the namespaces.
"""

import argparse
import collections
import ctypes
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import BenchError, fmt, parse_size, say, sha1_file, size_name, table, warm  # noqa: E402

MIB = bench.MIB
SUBNET = "10.88.0"
TRACKER_IP = SUBNET + ".254"
TRACKER_PORT = 6969
PEER_PORT = 6881
PREFIX = "shf%d" % os.getpid()
SWITCH = PREFIX + "-br"
CPU_LIMIT = 70.0  # % busy above which the figure measures the CPU

_libc = ctypes.CDLL(None, use_errno=True)


# ------------------------------------------------------------ every process

class Proc:
    """A process started in a namespace (`ip netns exec` execs, so the PID is
    the program's), its stdout lines timestamped as they arrive. Registered
    in PROCS so that every exit path kills it by PID."""

    def __init__(self, name, ns, argv, stdin=False):
        self.name = name
        self.argv = ["ip", "netns", "exec", ns] + argv
        self.lines = []            # (monotonic time, line)
        self.cv = threading.Condition()
        self.err = collections.deque(maxlen=200)
        self.eof = False
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            # Dies with this script (started from the main thread only).
            preexec_fn=lambda: _libc.prctl(1, int(signal.SIGKILL), 0, 0, 0))
        self.pid = self.proc.pid
        PROCS.append(self)
        threading.Thread(target=self._out, daemon=True).start()
        threading.Thread(target=self._errs, daemon=True).start()

    def _out(self):
        for raw in self.proc.stdout:
            t = time.monotonic()
            with self.cv:
                self.lines.append((t, raw.decode(errors="replace").rstrip("\n")))
                self.cv.notify_all()
        with self.cv:
            self.eof = True
            self.cv.notify_all()

    def _errs(self):
        for raw in self.proc.stderr:
            self.err.append(raw.decode(errors="replace"))

    def first(self, pred):
        """(time, line) of the first stdout line with pred(line), or None."""
        with self.cv:
            return next(((t, l) for t, l in self.lines if pred(l)), None)

    def wait_line(self, pred, within):
        end = time.monotonic() + within
        with self.cv:
            while True:
                hit = next(((t, l) for t, l in self.lines if pred(l)), None)
                if hit or self.eof or time.monotonic() > end:
                    return hit
                self.cv.wait(min(0.2, max(0.01, end - time.monotonic())))

    def signal(self, sig):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, sig)
            except OSError:
                pass

    def close_stdin(self):
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def wait(self, within):
        try:
            self.proc.wait(within)
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill(self):
        self.signal(signal.SIGKILL)
        self.wait(5)

    def describe(self):
        with self.cv:
            out = "\n".join(l for _, l in self.lines[-15:])
        return "%s: %s (exit %s)\n--- stdout (tail) ---\n%s\n--- stderr (tail) ---\n%s" % (
            self.name, " ".join(self.argv), self.proc.poll(), out, "".join(self.err)[-2000:])


PROCS = []


def kill_all():
    """Every process this script started, by PID: SIGTERM, then SIGKILL."""
    live = [p for p in PROCS if p.proc.poll() is None]
    for p in live:
        p.signal(signal.SIGTERM)
    end = time.monotonic() + 3
    for p in live:
        if not p.wait(max(0.0, end - time.monotonic())):
            p.kill()
    PROCS.clear()


# ------------------------------------------------------------- the network

def run(argv, check=True):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise BenchError("%s: %s" % (" ".join(argv), r.stderr.strip()))
    return r


def ns_name(i):
    return "%s-h%d" % (PREFIX, i)


def host_ip(i):
    return "%s.%d" % (SUBNET, i + 1)


def delete_namespaces():
    """Every namespace whose name starts with this run's prefix (also the
    ones a failed setup left half made); their veth ends go with them."""
    listing = run(["ip", "netns", "list"], check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        if name == SWITCH or name.startswith(PREFIX + "-h"):
            r = run(["ip", "netns", "del", name], check=False)
            if r.returncode != 0:
                say("  cleanup: ip netns del %s: %s" % (name, r.stderr.strip()))


def has_netem():
    """Whether this kernel has sch_netem (tried on the switch's lo)."""
    r = run(["ip", "netns", "exec", SWITCH, "tc", "qdisc", "add", "dev", "lo", "root",
             "netem", "delay", "1ms"], check=False)
    if r.returncode == 0:
        run(["ip", "netns", "exec", SWITCH, "tc", "qdisc", "del", "dev", "lo", "root"],
            check=False)
    return r.returncode == 0


def shape(ns, dev, args, delay):
    """tbf at args.rate (queue of args.queue_ms) on ns/dev; under it, a netem
    delay when there is one."""
    burst = max(64 * 1024, args.rate_bytes // 250)  # >= a GSO packet, >= rate/HZ
    run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "handle", "1:",
         "tbf", "rate", args.rate, "burst", str(burst), "latency", "%gms" % args.queue_ms])
    if delay:
        limit = int(args.rate_bytes * (args.delay_ms + args.queue_ms) / 1000 / 1500) + 100
        run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "parent", "1:1",
             "handle", "10:", "netem", "delay", "%gms" % args.delay_ms, "limit", str(limit)])


def make_network(hosts, args):
    """The switch and `hosts` hosts (h0 = the seeder). Returns whether the
    links have the netem delay."""
    sysctl = ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
              "net.ipv6.conf.default.disable_ipv6=1"]
    run(["ip", "netns", "add", SWITCH])
    run(["ip", "netns", "exec", SWITCH] + sysctl)
    run(["ip", "-n", SWITCH, "link", "set", "lo", "up"])
    run(["ip", "-n", SWITCH, "link", "add", "br0", "type", "bridge"])
    run(["ip", "-n", SWITCH, "addr", "add", TRACKER_IP + "/24", "dev", "br0"])
    run(["ip", "-n", SWITCH, "link", "set", "br0", "up"])
    delay = args.delay_ms > 0 and has_netem()
    for i in range(hosts):
        ns = ns_name(i)
        run(["ip", "netns", "add", ns])
        run(["ip", "netns", "exec", ns] + sysctl)
        # Both ends made in their namespaces: nothing touches the root one.
        run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name",
             "p%d" % i, "netns", SWITCH])
        run(["ip", "-n", SWITCH, "link", "set", "p%d" % i, "master", "br0"])
        run(["ip", "-n", SWITCH, "link", "set", "p%d" % i, "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", ns, "addr", "add", host_ip(i) + "/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        shape(ns, "eth0", args, delay)          # the host's upload
        shape(SWITCH, "p%d" % i, args, delay)   # the host's download
    return delay


def rtt_ms(a, b):
    """Median TCP connect time from host a to a listener on host b (ms)."""
    code = ("import socket,time,statistics,sys\n"
            "ts=[]\n"
            "for _ in range(5):\n"
            "  s=socket.socket(); t=time.monotonic(); s.connect((sys.argv[1],%d));"
            " ts.append(time.monotonic()-t); s.close(); time.sleep(0.05)\n"
            "print(statistics.median(ts)*1000)\n" % (PEER_PORT + 1))
    server = Proc("rtt listener", ns_name(b), [
        bench.PYTHON, "-c",
        "import socket,sys\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,"
        "socket.SO_REUSEADDR,1);s.bind((sys.argv[1],%d));s.listen(16);print('up',flush=True)\n"
        "while True: s.accept()[0].close()" % (PEER_PORT + 1), host_ip(b)])
    try:
        server.wait_line(lambda l: l == "up", 10)
        r = run(["ip", "netns", "exec", ns_name(a), bench.PYTHON, "-c", code, host_ip(b)])
        return float(r.stdout.strip())
    finally:
        server.kill()
        PROCS.remove(server)


# ---------------------------------------------------------------- CPU load

def cpu_times():
    """(total, idle + iowait, nice) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    return sum(vals[:8]), vals[3] + vals[4], vals[1]


def busy_between(a, b):
    """Busy % of the machine between two cpu_times(), not counting niced
    work (others' background jobs at nice 19 yield to ours)."""
    total, idle, nice = (y - x for x, y in zip(a, b))
    return 100.0 * (total - idle - nice) / total if total else None


def proc_cpu(pid):
    """User + system CPU seconds of a live process (None once gone)."""
    try:
        return bench.cpu_seconds(pid)
    except (OSError, IndexError, ValueError):
        return None


def idle_load(seconds=1.0):
    """The machine's busy % while nothing of ours runs (other work)."""
    a = cpu_times()
    time.sleep(seconds)
    return busy_between(a, cpu_times())


# ---------------------------------------------------------------- a swarm

class Fleet:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.shoal = args.shoal
        self.announce = "http://%s:%d/announce" % (TRACKER_IP, TRACKER_PORT)
        self.failures = []
        self.timelines = []      # for --dump

    def make_source(self):
        a = self.args
        d = os.path.join(self.work, "src")
        os.makedirs(d)
        self.src = os.path.join(d, "fleet-%s.bin" % size_name(a.size_bytes))
        h = hashlib.sha1()
        with open(self.src, "wb") as f:
            left = a.size_bytes
            while left:
                chunk = os.urandom(min(4 * MIB, left))
                h.update(chunk)
                f.write(chunk)
                left -= len(chunk)
        self.src_sha1 = h.hexdigest()
        self.torrent = os.path.join(self.work, "fleet.torrent")
        argv = [self.shoal, "create", self.src, "-t", self.announce, "-o", self.torrent,
                "--no-date", "-q"]
        if a.piece:
            argv += ["--piece-size", a.piece]
        run(argv)
        info = json.loads(run([self.shoal, "info", self.torrent, "--json"]).stdout)
        self.pieces = info["piece_count"]
        self.piece_len = info["piece_length"]

    def start_tracker(self):
        t = Proc("shoal tracker", SWITCH, [self.shoal, "tracker", "--listen",
                                            "%s:%d" % (TRACKER_IP, TRACKER_PORT), "--no-udp"])
        time.sleep(0.2)
        if t.proc.poll() is not None:
            raise BenchError("the tracker did not start\n" + t.describe())
        return t

    def tracker_has_seeder(self, within):
        """Scrapes from h0 until the tracker counts one seeder."""
        end = time.monotonic() + within
        while time.monotonic() < end:
            r = run(["ip", "netns", "exec", ns_name(0), self.shoal, "info", self.torrent,
                     "--json", "--scrape", "--timeout", "2s"], check=False)
            try:
                if json.loads(r.stdout)["scrape"][0].get("seeders", 0) >= 1:
                    return True
            except (ValueError, KeyError, IndexError):
                pass
            time.sleep(0.2)
        return False

    def start_seeder(self, client):
        src_dir = os.path.dirname(self.src)
        if client == "shoal":
            s = Proc("shoal seed", ns_name(0), [
                self.shoal, "seed", self.torrent, src_dir, "--bind", host_ip(0), "--port",
                str(PEER_PORT), "--json", "--no-dht", "--no-lsd"] + self.args.shoal_args
                + self.args.seeder_args)
            ok = s.wait_line(lambda l: '"event":"listening"' in l, 60) and \
                self.tracker_has_seeder(30)
        else:
            argv = [bench.PYTHON, bench.LT_PY, "seed", self.torrent, src_dir, str(PEER_PORT),
                    "--host", host_ip(0)]
            if not self.args.lt_utp:
                argv.append("--no-utp")
            if self.args.super_seed:
                argv.append("--super-seed")
            s = Proc("lt.py seed", ns_name(0), argv, stdin=True)
            ok = s.wait_line(lambda l: l == "READY", 60)
        if not ok:
            raise BenchError("%s seeder not ready\n%s" % (client, s.describe()))
        return s

    def start_leecher(self, client, i, out):
        if client == "shoal":
            return Proc("shoal get h%d" % i, ns_name(i), [
                self.shoal, "get", self.torrent, "-o", out, "--bind", host_ip(i), "--port",
                str(PEER_PORT), "--json", "--no-dht", "--no-lsd", "--seed-time", "1h"]
                + self.args.shoal_args)
        argv = [bench.PYTHON, bench.LT_PY, "leech", self.torrent, out, str(PEER_PORT),
                "--host", host_ip(i)]
        if not self.args.lt_utp:
            argv.append("--no-utp")
        return Proc("lt.py leech h%d" % i, ns_name(i), argv, stdin=True)

    @staticmethod
    def done_pred(client):
        if client == "shoal":
            return lambda l: '"event":"seeding"' in l or '"event":"done"' in l
        return lambda l: l.startswith("DONE ")

    @staticmethod
    def stop(p, client):
        """Stops a client so that it reports: returns its uploaded bytes."""
        if client == "shoal":
            p.signal(signal.SIGTERM)
        else:
            p.close_stdin()
        if not p.wait(15):
            p.kill()
        p.wait(2)
        time.sleep(0.05)  # the reader thread takes the last lines
        if client == "shoal":
            hit = p.first(lambda l: '"event":"done"' in l or '"event":"stopped"' in l)
            return json.loads(hit[1]).get("uploaded") if hit else None
        hit = p.first(lambda l: l.startswith("UPLOADED "))
        return int(hit[1].split()[1]) if hit else None

    def swarm(self, client, n, label):
        """One swarm: returns a dict of figures (None where it failed)."""
        a = self.args
        outs = []
        for i in range(1, n + 1):
            d = os.path.join(self.work, "out", "h%d" % i)
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            outs.append(d)
        tracker = self.start_tracker()
        leechers = []
        seeder = None
        try:
            warm(self.src)
            seeder = self.start_seeder(client)
            other = idle_load(1.0)
            deadline = 60 + 20 * a.bound
            sample = [cpu_times()]
            seed_cpu0 = proc_cpu(seeder.pid)
            t0 = time.monotonic()
            for i in range(1, n + 1):
                leechers.append(self.start_leecher(client, i, outs[i - 1]))
            pred = self.done_pred(client)
            done_at = [None] * n
            while time.monotonic() - t0 < deadline:
                for k, p in enumerate(leechers):
                    if done_at[k] is None:
                        hit = p.first(pred)
                        if hit:
                            done_at[k] = hit[0] - t0
                if all(d is not None for d in done_at):
                    break
                if any(p.proc.poll() is not None and done_at[k] is None
                       for k, p in enumerate(leechers)):
                    break  # one died without finishing
                time.sleep(0.05)
            sample.append(cpu_times())
            window = time.monotonic() - t0
            cpu = busy_between(*sample)
            used = [proc_cpu(p.pid) for p in leechers + [seeder]]
            ours = sum(u for u in used if u is not None) - (seed_cpu0 or 0)
            ours = 100.0 * ours / window / os.cpu_count()
            ups = [self.stop(p, client) for p in leechers]
            seed_up = self.stop(seeder, client)
        finally:
            for p in leechers + [seeder, tracker]:
                if p is not None:
                    p.kill()
            for p in leechers + [seeder, tracker]:
                if p in PROCS:
                    PROCS.remove(p)
        good = 0
        for k, out in enumerate(outs):
            path = os.path.join(out, os.path.basename(self.src))
            if done_at[k] is None:
                self.failures.append("%s %s h%d: not done within %.0f s\n%s"
                                     % (label, client, k + 1, deadline, leechers[k].describe()))
            elif not os.path.isfile(path) or sha1_file(path) != self.src_sha1:
                self.failures.append("%s %s h%d: bytes differ from the source" % (label, client, k + 1))
                done_at[k] = None
            else:
                good += 1
            shutil.rmtree(out, ignore_errors=True)
        self.timelines.append(self.timeline(client, n, label, leechers, seeder, t0, done_at, ups, seed_up))
        times = sorted(d for d in done_at if d is not None)
        full = len(times) == n
        res = {
            "first": times[0] if times else None,
            "median": statistics.median(times) if full else None,
            "last": times[-1] if full else None,
            "seed_copies": seed_up / a.size_bytes if seed_up is not None else None,
            "cpu": cpu, "other": other, "ours": ours, "ok": full, "times": times,
            "leech_up": ups,
        }
        say("    %-10s %s  first %s  median %s  last %s s  (bound %.2f)  seeder up %s copies"
            "  leechers up %s copies  CPU %s %% (ours %s %%, before: %s %%)%s"
            % (client, label, fmt(res["first"]), fmt(res["median"]), fmt(res["last"]), a.bound,
               fmt(res["seed_copies"]),
               fmt(sum(u for u in ups if u) / a.size_bytes), fmt(cpu, 0), fmt(ours, 0),
               fmt(other, 0),
               "" if full else "  FAILED (%d of %d done)" % (len(times), n)))
        if a.verbose:
            for k, d in enumerate(done_at):
                say("      h%-3d done %s s  uploaded %s MiB" % (
                    k + 1, fmt(d), fmt(ups[k] / MIB if ups[k] is not None else None, 1)))
        return res

    def timeline(self, client, n, label, leechers, seeder, t0, done_at, ups, seed_up):
        """Per leecher, and for the seeder: (t, pieces, peers, down rate, up
        rate) from shoal's progress lines (1 s apart)."""
        def points(p):
            out = []
            with p.cv:
                lines = list(p.lines)
            for t, l in lines:
                if client == "shoal" and l.startswith('{"event":"progress"'):
                    try:
                        o = json.loads(l)
                        out.append((round(t - t0, 2), o["have"], o.get("peers"),
                                    o.get("rate"), o.get("up_rate")))
                    except ValueError:
                        pass
            return out
        per = [{"host": k + 1, "done": done_at[k], "uploaded": ups[k], "progress": points(p)}
               for k, p in enumerate(leechers)]
        return {"client": client, "n": n, "label": label, "seeder_uploaded": seed_up,
                "seeder": points(seeder) if seeder else [], "leechers": per}


# ------------------------------------------------------------------ report

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def report(fleet, results, args, rtt, delay):
    bound = args.bound
    say("")
    say("== fleet: one seeder + N leechers in network namespaces, %s each way per host, "
        "%s, %s, piece %s (%d pieces); medians of %d runs"
        % (args.rate, "netem %g ms per link direction" % args.delay_ms if delay
           else "no added delay (kernel without sch_netem)",
           size_name(args.size_bytes), size_name(fleet.piece_len), fleet.pieces, args.runs))
    rows = []
    for n in args.ns:
        for client in args.clients:
            runs = results.get((n, client), [])
            ok = [r for r in runs if r["ok"]]
            m = {k: med(r[k] for r in ok) for k in ("first", "median", "last", "seed_copies")}
            cpu = med(r["cpu"] for r in runs)
            ours = med(r["ours"] for r in runs)
            other = med(r["other"] for r in runs)
            b = bound
            rows.append([str(n), client, fmt(m["first"]), fmt(m["median"]), fmt(m["last"]),
                         fmt(b), fmt(bench.ratio(m["first"], b)),
                         fmt(bench.ratio(m["median"], b)), fmt(bench.ratio(m["last"], b)),
                         fmt(m["seed_copies"]), fmt(cpu, 0), fmt(ours, 0), fmt(other, 0),
                         "%d/%d" % (len(ok), len(runs))])
            results[(n, client, "medians")] = m
    for line in table(["N", "client", "first s", "median s", "last s", "bound s", "first/b",
                       "median/b", "last/b", "seed up (copies)", "CPU %", "ours %", "other %",
                       "ok"],
                      rows):
        say(line)
    F, u = args.size_bytes, args.rate_bytes
    say("   bound = max(F/u, N*F/((N+1)*u)) = F/u = %d B / %.3f MB/s = %.2f s for every N "
        "(u = %s of payload; headers take ~4.4 %% of the wire, so ~%.2f s is the real floor)"
        % (F, u / 1e6, bound, args.rate, bound * 1514 / 1448))
    say("   times from a common start (just before the N leechers are started) to each "
        "leecher's completion line (shoal: `seeding` event; lt.py: DONE, python start and "
        "`import libtorrent` included); leechers keep seeding until the last is done")
    say("   seed up = the seeder's uploaded payload / F (its final report after SIGTERM / "
        "stdin closed)")
    say("   CPU %% = the whole machine's busy share (/proc/stat, all %d cores = 100 %%, niced "
        "work of others left out: it yields to ours) from the start to the last leecher "
        "done; ours %% = the seeder's and leechers' own user+sys CPU over the same window "
        "(the kernel's softirq work for the links is not in it); other %% = the machine for "
        "1 s before the leechers start (our seeder idle). Over %d %% the figure measures "
        "the CPU, not the protocol." % (os.cpu_count(), CPU_LIMIT))
    say("   TCP connect time h1 -> h2 (idle links): %.2f ms" % rtt)
    high = [r for r in rows if r[10] != "-" and float(r[10]) > CPU_LIMIT]
    say("   load average at the end: %s" % open("/proc/loadavg").read().strip())
    if high:
        say("   WARNING: CPU over %d %% in %s: lower --rate or N" % (
            CPU_LIMIT, ", ".join("N=%s %s" % (r[0], r[1]) for r in high)))
    # Goals, for the largest N.
    n = max(args.ns)
    s = results.get((n, "shoal", "medians"))
    lt_m = results.get((n, "libtorrent", "medians"))
    if s:
        say("")
        say("== goals (N = %d)" % n)
        goals = [("last <= 1.15 x bound", bench.ratio(s["last"], bound), 1.15),
                 ("median <= 1.05 x bound", bench.ratio(s["median"], bound), 1.05),
                 ("seeder uploads <= 1.5 copies", s["seed_copies"], 1.5)]
        for name, val, lim in goals:
            say("   %-32s %8s  %s" % (name, fmt(val), "met" if val is not None and val <= lim
                                       else "NOT met"))
        if lt_m:
            for k in ("first", "median", "last", "seed_copies"):
                a, b = s[k], lt_m[k]
                say("   %-32s %8s  %s" % ("%s ahead of libtorrent" % k,
                                          "%s vs %s" % (fmt(a), fmt(b)),
                                          "met" if a is not None and b is not None and a < b
                                          else "NOT met"))


# -------------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ns", help="leecher counts, comma-separated (default 4,8,16)")
    p.add_argument("--size", help="file size (default 16M)")
    p.add_argument("--piece", help="piece size (default: shoal create's choice)")
    p.add_argument("--rate", default="10mbit", help="each way per host, tc units (10mbit)")
    p.add_argument("--delay-ms", type=float, default=10.0,
                   help="netem delay per link direction, if the kernel has netem (10)")
    p.add_argument("--queue-ms", type=float, default=25.0, help="tbf queue length in ms (25)")
    p.add_argument("--runs", type=int, help="runs per client and N (default 3)")
    p.add_argument("--clients", default="shoal,libtorrent", help="shoal,libtorrent")
    p.add_argument("--quick", action="store_true", help="N = 4, 32 MiB, 1 run")
    p.add_argument("--lt-utp", action="store_true", help="let libtorrent use uTP")
    p.add_argument("--shoal", help="this binary (default: build target/release/shoal)")
    p.add_argument("--shoal-arg", dest="shoal_args", action="append", default=[],
                   help="an extra argument for every shoal seed/get (repeatable)")
    p.add_argument("--seeder-arg", dest="seeder_args", action="append", default=[],
                   help="an extra argument for the shoal seeder only (repeatable)")
    p.add_argument("--no-super-seed", dest="super_seed", action="store_false",
                   help="both seeders without super-seeding (shoal's --super-seed, "
                   "libtorrent's super_seeding flag)")
    p.add_argument("--dump", help="write per-leecher timelines (JSON) to this file")
    p.add_argument("-v", "--verbose", action="store_true", help="per-leecher figures")
    a = p.parse_args(argv)
    a.ns = [int(x) for x in (a.ns or ("4" if a.quick else "4,8,16")).split(",")]
    a.size_bytes = parse_size(a.size or "16M")
    a.runs = a.runs or (1 if a.quick else 3)
    a.clients = [c.strip() for c in a.clients.split(",") if c.strip()]
    for c in a.clients:
        if c not in ("shoal", "libtorrent"):
            p.error("unknown client %r" % c)
    if a.super_seed:
        a.seeder_args.append("--super-seed")
    a.rate_bytes = rate_bytes(a.rate)
    a.bound = a.size_bytes / a.rate_bytes
    return a


def rate_bytes(text):
    """tc rate ('100mbit', '12mbps', '1gbit') -> bytes per second."""
    t = text.lower()
    for suffix, mult in (("gbit", 1e9 / 8), ("mbit", 1e6 / 8), ("kbit", 1e3 / 8),
                         ("gbps", 1e9), ("mbps", 1e6), ("kbps", 1e3), ("bit", 1 / 8),
                         ("bps", 1)):
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * mult)
    raise SystemExit("bench_fleet.py: cannot read the rate %r (e.g. 100mbit)" % text)


def preflight(a):
    problems = []
    if os.geteuid() != 0:
        problems.append("it must run as root (network namespaces and tc)")
    for tool in ("ip", "tc"):
        if not shutil.which(tool):
            problems.append("`%s` is missing (package iproute2)" % tool)
    if "libtorrent" in a.clients and subprocess.run(
            [bench.PYTHON, "-c", "import libtorrent"], capture_output=True).returncode != 0:
        problems.append("python3-libtorrent is missing for %s (apt-get install "
                        "python3-libtorrent, or --clients shoal)" % bench.PYTHON)
    if problems:
        sys.stderr.write("bench_fleet.py: refusing to run: %s\n" % "; ".join(problems))
        sys.exit(2)


def main(argv):
    a = parse_args(argv)
    preflight(a)
    if not a.shoal:
        say("building shoal (cargo build --release)")
        subprocess.run(["cargo", "build", "--release"], cwd=bench.REPO, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(bench.REPO, "target"))
        a.shoal = os.path.join(target, "release", "shoal")
    a.shoal = os.path.abspath(a.shoal)

    def on_signal(sig, _frame):
        raise KeyboardInterrupt("signal %d" % sig)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    work = tempfile.mkdtemp(prefix="shoal-fleet-")
    os.chmod(work, 0o755)
    results = {}
    try:
        hosts = max(a.ns) + 1
        say("fleet: %d hosts (%s-*), %s each way per host, %s; work dir %s"
            % (hosts, PREFIX, a.rate, size_name(a.size_bytes), work))
        delay = make_network(hosts, a)
        if a.delay_ms > 0 and not delay:
            say("  NOTE: this kernel has no sch_netem (CONFIG_NET_SCH_NETEM): the links have "
                "the tbf rate and queue only, no added delay")
        rtt = rtt_ms(1, 2)
        say("  TCP connect time h1 -> h2: %.2f ms" % rtt)
        fleet = Fleet(a, work)
        fleet.make_source()
        say("  %s, %d pieces of %s; bound F/u = %.2f s"
            % (size_name(a.size_bytes), fleet.pieces, size_name(fleet.piece_len), a.bound))
        for n in a.ns:
            say("\n## N = %d leechers" % n)
            for r in range(a.runs):
                order = a.clients if r % 2 == 0 else list(reversed(a.clients))
                for client in order:
                    res = fleet.swarm(client, n, "N=%d run %d" % (n, r + 1))
                    results.setdefault((n, client), []).append(res)
        report(fleet, results, a, rtt, delay)
        if a.dump:
            with open(a.dump, "w") as f:
                json.dump(fleet.timelines, f)
            say("   timelines: %s" % a.dump)
        if fleet.failures:
            say("\nFAILURES:")
            for fl in fleet.failures:
                say("  " + fl)
            return 1
        return 0
    except KeyboardInterrupt as e:
        say("\ninterrupted (%s): cleaning up" % (e or "Ctrl-C"))
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        kill_all()
        delete_namespaces()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
