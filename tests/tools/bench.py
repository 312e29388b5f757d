#!/usr/bin/python3
"""shoal's benchmark against python3-libtorrent 2.0.8 on 127.0.0.1 (issue 6).

    make bench                          everything (several GiB under a temp dir)
    tests/tools/bench.py --quick        256 MiB only, 3 runs (no big case)
    tests/tools/bench.py --smoke        tiny, a few seconds (tests/suite/bench_smoke.rs)
    tests/tools/bench.py --cases swarm,hash --sizes 256M --pieces 4M --runs 5

Cases (--cases, comma-separated; default all of them):

  size     `cargo build --release` (and `--features tls` into target/tls, only
           to weigh it): binary sizes, and of `strip`-ed copies.
  swarm    opentracker + one lt.py seeder; `shoal get` and an lt.py leecher,
           alternately, --runs times each, per (size, piece size).
  latency  the same through a TCP proxy adding --delay-ms each way, one
           seeder reached with --peer.
  big      a --big-size torrent fetched by shoal under RLIMIT_AS = --big-as
           (`ulimit -v`), bytes checked.
  hash     `shoal check` / `shoal create` against `openssl sha1` / `sha1sum`
           on one file, page cache warm.
  encryption  `shoal get` from `shoal seed` (--enc-size, one file, --peer),
           both with --encryption off, then both with require, alternately:
           what RC4 costs the downloader and the seeder (its CPU from
           /proc/PID/stat around each download).
  utp      an lt.py leecher from `shoal seed` (--utp-size, one file, --peer),
           over uTP only (lt.py --utp-only), then over TCP only (--no-utp),
           alternately: what uTP costs in time and seeder CPU.

Measured processes (shoal, the lt.py leecher, the hash tools) are direct
children: wall time is start to exit (for lt.py: to its DONE line, see the
notes printed with the table), CPU is user+sys from wait4(), peak RSS is the
kernel's VmHWM (the last sample
before exit), and RssAnon / RssFile / Threads are sampled from
/proc/PID/status every 20 ms. They die with this script (PR_SET_PDEATHSIG)
and are killed at a deadline. Helpers (opentracker, lt.py seeders) run under
`timeout` and are stopped by PID. Every download's bytes are compared (SHA-1)
with the source; the exit status is 0 only if all of them matched.

Runs with /usr/bin/python3 (Debian's interpreter, which has libtorrent; see
../shared/INTEROP.md). Standard library only; libtorrent runs in lt.py.
Nothing leaves 127.0.0.1.
"""

import argparse
import collections
import ctypes
import datetime
import hashlib
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"
LT_PY = os.path.join(REPO, "tests", "interop", "lt.py")
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
SAMPLE_S = 0.02  # /proc sampling period
ALL_CASES = ("size", "swarm", "latency", "big", "hash", "encryption", "utp")


def utp_note(args):
    if args.lt_utp:
        return "libtorrent peers may use uTP (--lt-utp); shoal speaks TCP"
    return ("the lt.py seeder and leechers run TCP only (lt.py --no-utp), like shoal; "
            "--lt-utp lets libtorrent use uTP")


# ---------------------------------------------------------------- small helpers

def say(*words):
    print(*words, flush=True)


def parse_size(text):
    """'256K', '4M', '1G', '123' -> bytes."""
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    mult = {"K": KIB, "M": MIB, "G": GIB}.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in "KMG" else text
    return int(float(number) * mult)


def size_name(n):
    """bytes -> '256K', '4M', '1G' (exact where possible)."""
    for unit, mult in (("G", GIB), ("M", MIB), ("K", KIB)):
        if n >= mult and n % mult == 0:
            return "%d%s" % (n // mult, unit)
    return str(n)


def mib(kib_or_bytes, *, kib=False):
    if kib_or_bytes is None:
        return None
    return kib_or_bytes / (KIB if kib else MIB)


def fmt(x, digits=2):
    return "-" if x is None else "%.*f" % (digits, x)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return None if a is None or not b else a / b


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def warm(path):
    """Reads the file to the end (`cat > /dev/null`): page cache warm."""
    buf = bytearray(8 * MIB)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def sha1_file(path):
    h = hashlib.sha1()
    buf = bytearray(4 * MIB)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                return h.hexdigest()
            h.update(view[:n])


def table(headers, rows, left=2):
    """Aligned text table: the first `left` columns left-aligned, the rest
    right-aligned."""
    cells = [headers] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        out = []
        for i, c in enumerate(r):
            out.append(c.ljust(widths[i]) if i < left else c.rjust(widths[i]))
        return "  ".join(out).rstrip()

    return [line(headers)] + [line(r) for r in cells[1:]]


class BenchError(Exception):
    """A harness problem (a helper did not start, a tool failed)."""


# ------------------------------------------------- processes: the measured kind

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _child_setup(death_signal, limit_as=None):
    """preexec_fn: die with this script; optionally cap the address space."""

    def setup():
        _libc.prctl(PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0)
        if limit_as:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))

    return setup


STATUS_KEYS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads")


def cpu_seconds(pid):
    """User + system CPU a live process has used so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid):
    """{tid: (name, CPU seconds so far)} of a live process's threads."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    return out


def lt_timed(run):
    """An lt.py leecher's run, timed to its DONE line: lt.py keeps running
    after DONE to report and shut its session down, so its time is to DONE
    (interpreter start and `import libtorrent` included); `own_clock` is
    lt.py's own, from when its session was made."""
    if "DONE" in run.marks:
        run.exit_wall, run.wall = run.wall, run.marks["DONE"]
        run.own_clock = float(run.line("DONE").split()[1])
    elif run.ok:
        run.status = "no DONE line"
    return run


def thread_line(roles):
    """`main 1.23, hasher 0.61, ...`: CPU seconds by thread role, largest
    first."""
    return ", ".join("%s %.2f" % (k, v) for k, v in
                     sorted(roles.items(), key=lambda kv: -kv[1]) if v >= 0.005) or "-"


def read_status(pid):
    """The STATUS_KEYS of /proc/PID/status (kB, Threads a count)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            text = f.read()
    except OSError:
        return {}
    vals = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in STATUS_KEYS:
            vals[key] = int(rest.split()[0])
    return vals


class Measured:
    """One measured run of one process."""

    def __init__(self, argv):
        self.argv = argv
        self.wall = None        # start -> exit, seconds
        self.user = self.sys = None
        self.maxrss_kb = None   # wait4 ru_maxrss (includes the forking python: unused)
        self.peak = {}          # max over samples of each STATUS_KEYS entry
        self.last_hwm_kb = None  # VmHWM in the last sample
        self.samples = 0
        self.status = None      # exit code, or -signal
        self.timed_out = False
        self.lines = []         # (seconds since start, stdout line)
        self.marks = {}         # prefix -> seconds since start of first line
        self.stderr = ""
        self.pid = None
        self.threads = {}       # tid -> (name, CPU seconds at the last sample)

    def cpu_by_thread(self):
        """CPU seconds by role, as last sampled: `main` (shoal's
        orchestrator), thread names with their numbers as N (`peer-N` the
        peer readers, `peer-N-w` the writers), and `unsampled` (what the
        process used that no sample saw: threads' last <= 20 ms)."""
        roles = {}
        for tid, (name, cpu) in self.threads.items():
            role = "main" if tid == self.pid else re.sub(r"-\d+", "-N", name)
            roles[role] = roles.get(role, 0.0) + cpu
        if self.cpu is not None:
            roles["unsampled"] = max(0.0, self.cpu - sum(roles.values()))
        return roles

    @property
    def cpu(self):
        return None if self.user is None else self.user + self.sys

    @property
    def rss_kb(self):
        """Peak RSS: the kernel's VmHWM as last sampled (at most 20 ms before
        exit), or the largest sampled VmRSS if that is larger. Not ru_maxrss:
        Linux carries the RSS of the process that forked (this python) over
        exec into it."""
        vals = [v for v in (self.last_hwm_kb, self.peak.get("VmRSS")) if v is not None]
        return max(vals) if vals else None

    @property
    def ok(self):
        return self.status == 0 and not self.timed_out

    def line(self, prefix):
        return next((l for _, l in self.lines if l.startswith(prefix)), None)

    def describe(self):
        return "%s: exit %s%s\n--- stdout ---\n%s\n--- stderr (tail) ---\n%s" % (
            " ".join(shlex.quote(a) for a in self.argv), self.status,
            " (killed at the deadline)" if self.timed_out else "",
            "\n".join(l for _, l in self.lines[-20:]), self.stderr[-3000:])


def measure(argv, deadline, *, finish_on=None, limit_as=None, cwd=None):
    """Runs argv as a direct child and measures it (the one place for that).

    finish_on: a stdout prefix (lt.py's `DONE`): when that line arrives its
    time is recorded in .marks and stdin is closed, lt.py's cue to exit.
    deadline: seconds; then the process is killed (SIGKILL) and .timed_out.
    """
    m = Measured(argv)
    env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
    start = time.monotonic()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env,
        stdin=subprocess.PIPE if finish_on else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=_child_setup(signal.SIGKILL, limit_as))
    m.pid = proc.pid
    done = threading.Event()
    result = {}

    def waiter():
        _, status, ru = os.wait4(proc.pid, 0)
        result["end"] = time.monotonic()
        result["status"], result["ru"] = status, ru
        # We reaped it: keep Popen from trying again.
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()

    def read_stdout():
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            t = time.monotonic() - start
            m.lines.append((t, line))
            if finish_on and line.startswith(finish_on) and finish_on not in m.marks:
                m.marks[finish_on] = t
                try:
                    proc.stdin.close()
                except OSError:
                    pass

    def read_stderr():
        chunks = []
        for raw in proc.stderr:
            chunks.append(raw.decode(errors="replace"))
            if len(chunks) > 2000:
                del chunks[:1000]
        m.stderr = "".join(chunks)

    threads = [threading.Thread(target=f, daemon=True) for f in (waiter, read_stdout, read_stderr)]
    for t in threads:
        t.start()
    try:
        while not done.is_set():
            vals = read_status(proc.pid)
            for tid, seen in thread_cpu(proc.pid).items():
                if not done.is_set():
                    m.threads[tid] = seen
            if vals and not done.is_set():
                m.samples += 1
                for k, v in vals.items():
                    m.peak[k] = max(m.peak.get(k, 0), v)
                m.last_hwm_kb = vals.get("VmHWM", m.last_hwm_kb)
            if time.monotonic() - start > deadline and not m.timed_out and not done.is_set():
                m.timed_out = True
                # os.kill, not proc.kill(): Popen's poll would race the waiter.
                os.kill(proc.pid, signal.SIGKILL)
            done.wait(SAMPLE_S)
    except BaseException:  # interrupted: the child goes first
        if not done.is_set():
            os.kill(proc.pid, signal.SIGKILL)
        done.wait(5)
        raise
    for t in threads:
        t.join(10)
    if proc.stdin:
        try:
            proc.stdin.close()
        except OSError:
            pass
    ru = result["ru"]
    m.wall = result["end"] - start
    m.user, m.sys = ru.ru_utime, ru.ru_stime
    m.maxrss_kb = ru.ru_maxrss
    m.status = proc.returncode
    return m


# ------------------------------------------------ processes: helpers (timeout)

class Helper:
    """A helper under `timeout -k 5 LIMIT`, stdout lines collected, stopped
    by PID: stdin closed, then SIGTERM to `timeout` (passed on), then SIGKILL
    to its child and itself."""

    def __init__(self, name, argv, limit, cwd=None):
        self.name = name
        self.argv = ["timeout", "-k", "5", str(int(limit))] + argv
        self.proc = subprocess.Popen(
            self.argv, cwd=cwd, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            # SIGTERM, not SIGKILL: `timeout` passes it on to the tool.
            preexec_fn=_child_setup(signal.SIGTERM))
        self.lines = []
        self.cv = threading.Condition()
        self.err = []
        threading.Thread(target=self._out, daemon=True).start()
        threading.Thread(target=self._errs, daemon=True).start()

    def _out(self):
        for raw in self.proc.stdout:
            with self.cv:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.cv.notify_all()
        with self.cv:
            self.lines.append(None)  # EOF
            self.cv.notify_all()

    def _errs(self):
        for raw in self.proc.stderr:
            self.err.append(raw.decode(errors="replace"))
            del self.err[:-200]

    def tool_pid(self):
        """The PID of the tool itself (the child of `timeout`)."""
        pid = self.proc.pid
        try:
            with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        return kids[0] if kids else None

    def expect(self, prefix, within):
        end = time.monotonic() + within
        with self.cv:
            while True:
                for l in self.lines:
                    if l is None:
                        break
                    if l.startswith(prefix):
                        return l
                left = end - time.monotonic()
                if (self.lines and self.lines[-1] is None) or left <= 0:
                    raise BenchError("%s: no %r line within %.0f s\n%s"
                                     % (self.name, prefix, within, self.describe()))
                self.cv.wait(min(left, 1.0))

    def describe(self):
        return "%s: %s\n--- stdout ---\n%s\n--- stderr (tail) ---\n%s" % (
            self.name, " ".join(self.argv),
            "\n".join(l for l in self.lines[-20:] if l is not None),
            "".join(self.err)[-3000:])

    def stop(self, grace=5.0):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(3)
                except subprocess.TimeoutExpired:
                    kid = self.tool_pid()
                    if kid:
                        try:
                            os.kill(kid, signal.SIGKILL)
                        except OSError:
                            pass
                    self.proc.kill()
                    self.proc.wait()
        return self.proc.returncode


def start_opentracker(workdir, port, info_hashes, limit):
    """opentracker in whitelist mode on 127.0.0.1:PORT (TCP and UDP). As root
    it chroots into its dir and drops to `nobody`, hence the 0755 dir and the
    relative whitelist path (as in tests/common/interop.rs)."""
    d = os.path.join(workdir, "opentracker")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    with open(os.path.join(d, "whitelist"), "w") as f:
        f.write("".join(h + "\n" for h in info_hashes))
    os.chmod(os.path.join(d, "whitelist"), 0o644)
    p = str(port)
    tracker = Helper("opentracker", ["opentracker", "-i", "127.0.0.1", "-p", p, "-P", p,
                                     "-d", d, "-w", "whitelist"], limit, cwd=d)
    end = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return tracker
        except OSError:
            if time.monotonic() > end or tracker.proc.poll() is not None:
                tracker.stop(grace=0)
                raise BenchError("opentracker did not listen on 127.0.0.1:%d\n%s"
                                 % (port, tracker.describe()))
            time.sleep(0.05)


def start_seeder(torrent, data_dir, limit, size, *, no_tracker=False, utp=False):
    """lt.py seed, waiting for READY (libtorrent hashes the data first)."""
    port = free_port()
    argv = [PYTHON, LT_PY, "seed", torrent, data_dir, str(port)]
    if no_tracker:
        argv.append("--no-tracker")
    if not utp:
        argv.append("--no-utp")
    seeder = Helper("lt.py seeder", argv, limit)
    try:
        seeder.expect("READY", 60 + size / (20 * MIB))
    except BaseException:
        seeder.stop()
        raise
    seeder.port = port
    return seeder


# ------------------------------------------------------------------ the bench

class Bench:
    def __init__(self, args, workdir):
        self.args = args
        self.work = workdir
        self.shoal = args.shoal
        self.data = {}           # size -> (path, sha1)
        self.sections = []       # (title, [lines]) for the summary
        self.failures = []       # strings
        self.verified = 0        # downloads with the right bytes
        self.goals = []          # (goal, measured, met)
        self.swarm_rows = {}     # (size, piece) -> {client: medians}

    # -- data and torrents

    def source(self, size):
        """A file of `size` random bytes (made once per size): (path, sha1)."""
        if size not in self.data:
            d = os.path.join(self.work, "data", size_name(size))
            os.makedirs(d, exist_ok=True)
            path = os.path.join(d, "bench-%s.bin" % size_name(size))
            say("  making %s of random data: %s" % (size_name(size), path))
            h = hashlib.sha1()
            with open(path, "wb") as f:
                left = size
                while left:
                    chunk = os.urandom(min(4 * MIB, left))
                    h.update(chunk)
                    f.write(chunk)
                    left -= len(chunk)
            self.data[size] = (path, h.hexdigest())
        return self.data[size]

    def drop_source(self, size):
        if size in self.data:
            shutil.rmtree(os.path.dirname(self.data.pop(size)[0]), ignore_errors=True)

    def create(self, path, announce, piece, out):
        """`shoal create`: returns the info hash it prints."""
        argv = [self.shoal, "create", path, "-t", announce, "-o", out, "--no-date", "-q"]
        if piece:
            argv += ["--piece-size", size_name(piece)]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        lines = run.stdout.split()
        if run.returncode != 0 or not lines or len(lines[-1]) != 40:
            raise BenchError("shoal create failed: %s\n%s%s" % (argv, run.stdout, run.stderr))
        return lines[-1]

    # -- downloads

    def fresh_dir(self, tag):
        d = os.path.join(self.work, "out", tag)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d

    def check_bytes(self, what, run, out_dir, src):
        """Compares the download with the source; records a failure if not
        the same. Removes the output afterwards."""
        path, want = src
        got_path = os.path.join(out_dir, os.path.basename(path))
        problem = None
        if not run.ok:
            problem = "did not complete\n" + run.describe()
        elif not os.path.isfile(got_path):
            problem = "no output file %s" % got_path
        elif os.path.getsize(got_path) != os.path.getsize(path):
            problem = "output has %d bytes, source %d" % (os.path.getsize(got_path),
                                                          os.path.getsize(path))
        elif sha1_file(got_path) != want:
            problem = "output bytes differ from the source (SHA-1)"
        shutil.rmtree(out_dir, ignore_errors=True)
        if problem:
            self.failures.append("%s: %s" % (what, problem))
            say("  FAILED %s: %s" % (what, problem))
            return False
        self.verified += 1
        return True

    def get_shoal(self, torrent, out_dir, deadline, extra, limit_as=None):
        argv = [self.shoal, "get", torrent, "-o", out_dir, "-q", "--no-dht"] + extra
        return measure(argv, deadline, limit_as=limit_as)

    def get_lt(self, torrent, out_dir, deadline, extra):
        argv = [PYTHON, LT_PY, "leech", torrent, out_dir, str(free_port())] + extra
        if not self.args.lt_utp:
            argv.append("--no-utp")
        return lt_timed(measure(argv, deadline, finish_on="DONE"))

    def report_run(self, label, client, run, size, good):
        say("    %-7s %-10s wall %7.3f s %8.1f MiB/s  cpu %6.2f s (usr %.2f sys %.2f)"
            "  rss %6.1f MiB (max VmRSS %.1f)  anon %6.1f  file %6.1f  threads %3d%s  %s"
            % (label, client, run.wall, size / MIB / run.wall, run.cpu, run.user, run.sys,
               mib(run.rss_kb or 0, kib=True), mib(run.peak.get("VmRSS", 0), kib=True),
               mib(run.peak.get("RssAnon", 0), kib=True),
               mib(run.peak.get("RssFile", 0), kib=True), run.peak.get("Threads", 0),
               "  own clock %.3f s, exit %.3f s" % (run.own_clock, run.exit_wall)
               if getattr(run, "own_clock", None) else "",
               "bytes ok" if good else "FAILED"))
        say("            CPU by thread: " + thread_line(run.cpu_by_thread()))

    @staticmethod
    def medians(runs, size):
        wall = median(r.wall for r in runs)
        return {
            "wall": wall,
            "rate": size / MIB / wall if wall else None,
            "cpu": median(r.cpu for r in runs),
            "rss": median(mib(r.rss_kb, kib=True) for r in runs),
            "anon": median(mib(r.peak.get("RssAnon"), kib=True) for r in runs),
            "file": median(mib(r.peak.get("RssFile"), kib=True) for r in runs),
            "threads": median(r.peak.get("Threads") for r in runs),
            "own": median(getattr(r, "own_clock", None) for r in runs),
            "n": len(runs),
            "by_thread": {role: median(r.cpu_by_thread().get(role, 0.0) for r in runs)
                          for role in {k for r in runs for k in r.cpu_by_thread()}},
        }

    def get_aria2(self, torrent, out_dir, deadline):
        argv = ["aria2c", "--no-conf=true", "--disable-ipv6=true", "--enable-dht=false",
                "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
                "--summary-interval=0", "--file-allocation=none", "--console-log-level=warn",
                "--seed-time=0", "--bt-stop-timeout=0", "--listen-port=%d" % free_port(),
                "--dir=%s" % out_dir, torrent]
        return measure(argv, deadline)

    def compare(self, label, src, torrent, shoal_extra, lt_extra, deadline, aria2=False):
        """Alternates shoal and lt.py leechers (ABBA order), --runs each, the
        source re-read before every run; with `aria2` (and aria2c
        installed), an aria2c leecher after each pair. Returns {client:
        medians} over the runs that completed with the right bytes."""
        size = os.path.getsize(src[0])
        clients = ["shoal", "libtorrent"]
        if aria2 and shutil.which("aria2c"):
            clients.append("aria2")
        ok = {c: [] for c in clients}
        for i in range(self.args.runs):
            order = clients[:2] if i % 2 == 0 else clients[1::-1]
            for client in order + clients[2:]:
                warm(src[0])
                out = self.fresh_dir("%s-%s-%d" % (label.replace("/", "-"), client, i + 1))
                if client == "shoal":
                    run = self.get_shoal(torrent, out, deadline, shoal_extra)
                elif client == "libtorrent":
                    run = self.get_lt(torrent, out, deadline, lt_extra)
                else:
                    run = self.get_aria2(torrent, out, deadline)
                good = self.check_bytes("%s %s run %d" % (label, client, i + 1), run, out, src)
                self.report_run("run %d" % (i + 1), client, run, size, good)
                if good:
                    ok[client].append(run)
        return {c: self.medians(r, size) for c, r in ok.items() if r}

    def client_table(self, rows):
        """rows: [(case label, {client: medians})] -> table lines."""
        headers = ["case", "client", "wall s", "MiB/s", "CPU s", "RSS MiB", "anon MiB",
                   "file MiB", "threads", "wall/lt", "CPU/lt", "lt own s"]
        out = []
        for label, res in rows:
            s, l = res.get("shoal"), res.get("libtorrent")
            clients = ["shoal", "libtorrent"] + (["aria2"] if "aria2" in res else [])
            for client in clients:
                m = res.get(client)
                if not m:
                    out.append([label, client, "FAILED"] + [None] * 9)
                    continue
                vs_lt = client != "libtorrent" and l
                out.append([label, client, fmt(m["wall"]), fmt(m["rate"], 1), fmt(m["cpu"]),
                            fmt(m["rss"], 1), fmt(m["anon"], 1), fmt(m["file"], 1),
                            fmt(m["threads"], 0),
                            fmt(ratio(m["wall"], l["wall"])) if vs_lt else None,
                            fmt(ratio(m["cpu"], l["cpu"])) if vs_lt else None,
                            fmt(m["own"]) if client == "libtorrent" else None])
        return table(headers, out)

    def section(self, title, lines, notes=()):
        say("")
        say("== " + title)
        for l in lines:
            say(l)
        for n in notes:
            say("   " + n)
        self.sections.append((title, list(lines) + ["   " + n for n in notes]))

    # -- cases

    def case_size(self):
        say("\n## size: binary sizes")
        rows = []
        tls_bin = os.path.join(REPO, "target", "tls", "release", "shoal")
        if self.args.build:
            say("  building with --features tls into target/tls (only to weigh it)")
            env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(REPO, "target", "tls"))
            b = subprocess.run(["cargo", "build", "--release", "--features", "tls"], cwd=REPO,
                               env=env, capture_output=True, text=True)
            if b.returncode != 0:
                say("  TLS build failed:\n" + b.stderr[-2000:])
                tls_bin = None
        bins = [("shoal", self.shoal)]
        if tls_bin and not self.args.shoal_given:
            bins.append(("shoal --features tls", tls_bin))
        strip = shutil.which("strip")
        for name, path in bins:
            if not os.path.isfile(path):
                rows.append([name, "not built", None, None])
                continue
            size = os.path.getsize(path)
            stripped = None
            if strip:
                copy = os.path.join(self.work, "stripped-" + name.replace(" ", "_"))
                shutil.copy(path, copy)
                if subprocess.run([strip, copy]).returncode == 0:
                    stripped = os.path.getsize(copy)
                os.remove(copy)
            rows.append([name, os.path.relpath(path, REPO) if path.startswith(REPO) else path,
                         "%.2f MiB (%d)" % (size / MIB, size),
                         "%.2f MiB (%d)" % (stripped / MIB, stripped) if stripped else None])
            if name == "shoal" and not self.args.shoal_given:
                self.goals.append(("binary (no TLS) <= 2 MiB", "%.2f MiB" % (size / MIB),
                                   size <= 2 * MIB))
        self.section("binary size", table(["binary", "path", "size", "after strip"], rows),
                     ["the release profile strips symbols already; `strip` shows what is left"])

    def case_swarm(self):
        a = self.args
        say("\n## swarm: opentracker + one python3-libtorrent seeder on 127.0.0.1")
        port = free_port()
        url = "http://127.0.0.1:%d/announce" % port
        plan = []
        for size in a.sizes:
            src = self.source(size)
            for piece in a.pieces:
                label = "%s/%s" % (size_name(size), size_name(piece))
                torrent = os.path.join(self.work, "swarm-%s.torrent" % label.replace("/", "-"))
                plan.append((label, src, size, torrent, self.create(src[0], url, piece, torrent)))
        per_run = 60 + max(a.sizes) / (4 * MIB)
        limit = 600 + len(plan) * (2 * a.runs * per_run + 120)
        tracker = start_opentracker(self.work, port, [p[4] for p in plan], limit)
        rows = []
        try:
            for label, src, size, torrent, ih in plan:
                say("  %s (info hash %s): starting the seeder" % (label, ih))
                seeder = start_seeder(torrent, os.path.dirname(src[0]), limit, size,
                                      utp=a.lt_utp)
                try:
                    deadline = 60 + size / (4 * MIB)
                    res = self.compare(label, src, torrent, ["--bind", "127.0.0.1", "--port", "0"],
                                       [], deadline, aria2=True)
                finally:
                    seeder.stop()
                rows.append((label, res))
                self.swarm_rows[(size, label)] = res
        finally:
            tracker.stop(grace=0)
        self.section(
            "swarm: medians of %d runs each, one lt.py seeder behind opentracker, 127.0.0.1"
            % a.runs, self.client_table(rows),
            ["seeder page cache warm: the source file is re-read before every run; "
             "shoal and libtorrent alternate (ABBA), each into a fresh directory",
             "shoal wall = process start to exit; libtorrent wall = process start to lt.py's "
             "DONE line (python start and `import libtorrent` included, shutdown not);",
             "'lt own s' = lt.py's own clock (session made -> all pieces verified); "
             "libtorrent CPU is the whole lt.py process (python, import, shutdown)",
             utp_note(a),
             "RSS = VmHWM (kernel peak, last read <= 20 ms before exit); anon/file/threads = "
             "peaks of /proc/PID/status (RssAnon, RssFile, Threads) sampled every 20 ms"])
        self.section(
            "swarm: where the CPU goes (medians of CPU seconds by thread)",
            table(["case", "client", "CPU s", "by thread"],
                  [[label, client, fmt(m["cpu"]), thread_line(m["by_thread"])]
                   for label, res in rows for client, m in sorted(res.items())]),
            ["shoal: main = the orchestrator (storage writes, decisions), hasher = SHA-1, "
             "peer-N = a peer's reader (socket -> blocks), peer-N-w = its writer; "
             "unsampled = CPU of threads after their last 20 ms sample",
             "read from /proc/PID/task/*/stat every 20 ms; libtorrent and aria2 for scale"])
        for (size, label), res in self.swarm_rows.items():
            s, l = res.get("shoal"), res.get("libtorrent")
            if s and l:
                r = ratio(s["wall"], l["wall"])
                self.goals.append(("%s: wall <= 0.8 x libtorrent" % label, fmt(r), r <= 0.8))
                c = ratio(s["cpu"], l["cpu"])
                self.goals.append(("%s: CPU <= 0.8 x libtorrent" % label, fmt(c), c <= 0.8))
            if size >= GIB and s:
                self.goals.append(("%s: peak RSS <= 24 MiB" % label, fmt(s["rss"], 1),
                                   s["rss"] <= 24))
                self.goals.append(("%s: peak anon RSS <= 16 MiB" % label, fmt(s["anon"], 1),
                                   s["anon"] is not None and s["anon"] <= 16))

    def case_latency(self):
        a = self.args
        size, delay = a.latency_size, a.delay_ms / 1000.0
        say("\n## latency: one seeder behind a %g ms each-way delay proxy" % a.delay_ms)
        selftest = proxy_selftest(delay, a.proxy_test_size)
        say("  proxy self-test: %s" % selftest["text"])
        src = self.source(size)
        label = "%s/%s" % (size_name(size), size_name(a.latency_piece))
        torrent = os.path.join(self.work, "latency.torrent")
        # An announce URL nobody listens on: peers come from --peer only.
        dead = "http://127.0.0.1:%d/announce" % free_port()
        self.create(src[0], dead, a.latency_piece, torrent)
        deadline = 60 + size / MIB
        limit = 600 + 2 * a.runs * deadline
        seeder = start_seeder(torrent, os.path.dirname(src[0]), limit, size, no_tracker=True,
                              utp=a.lt_utp)
        proxy = DelayProxy(("127.0.0.1", seeder.port), delay)
        peer = "127.0.0.1:%d" % proxy.port
        try:
            res = self.compare(label, src, torrent, ["--peer", peer, "--no-listen"],
                               ["--peer", peer, "--no-tracker"], deadline)
        finally:
            proxy.close()
            seeder.stop()
        self.section(
            "latency: %s through a %g ms RTT proxy (%g ms each way) to one lt.py seeder, "
            "medians of %d runs" % (label, 2 * a.delay_ms, a.delay_ms, a.runs),
            self.client_table([(label, res)]),
            ["proxy alone: " + selftest["text"],
             "shoal: --peer PROXY --no-listen; libtorrent: lt.py leech --peer PROXY "
             "--no-tracker; wall as in the swarm table", utp_note(a)])
        s, l = res.get("shoal"), res.get("libtorrent")
        if s:
            self.goals.append(("latency %g ms RTT: >= 20 MiB/s" % (2 * a.delay_ms),
                               fmt(s["rate"], 1), s["rate"] >= 20))
        if s and l:
            self.goals.append(("latency: MiB/s >= libtorrent's", "%s vs %s" % (
                fmt(s["rate"], 1), fmt(l["rate"], 1)), s["rate"] >= l["rate"]))

    def from_a_shoal_seeder(self, case, src, torrent, modes, seed_args, fetch):
        """--runs rounds of the two `modes` (ABBA): for each, a fresh `shoal
        seed` of `src` with seed_args(mode), and fetch(mode, seeder address,
        out dir, deadline) -> a measured run, with the seeder's CPU during
        it. Returns {mode: [runs with the right bytes]}."""
        size = os.path.getsize(src[0])
        deadline = 60 + size / MIB
        ok = {m: [] for m in modes}
        for i in range(self.args.runs):
            for mode in (modes if i % 2 == 0 else modes[::-1]):
                warm(src[0])
                seeder = Helper("shoal seed (%s)" % mode,
                                [self.shoal, "seed", torrent, os.path.dirname(src[0]), "--no-dht",
                                 "--bind", "127.0.0.1", "--port", "0", "--json"]
                                + seed_args(mode), 2 * deadline + 60)
                try:
                    line = seeder.expect('{"event":"listening"', 60 + size / (20 * MIB))
                    pid = seeder.tool_pid()
                    before = cpu_seconds(pid)
                    out = self.fresh_dir("%s-%s-%d" % (case, mode, i + 1))
                    run = fetch(mode, json.loads(line)["addr"], out, deadline)
                    run.seeder_cpu = cpu_seconds(pid) - before
                finally:
                    seeder.stop(grace=0.1)
                good = self.check_bytes("%s %s run %d" % (case, mode, i + 1), run, out, src)
                self.report_run("run %d" % (i + 1), mode, run, size, good)
                say("    seeder cpu %.2f s" % run.seeder_cpu)
                if good:
                    ok[mode].append(run)
        return ok

    def direct_torrent(self, name, size):
        """A source of `size` and its torrent (256 KiB pieces) whose announce
        URL nobody listens on: the downloader is given --peer. Returns
        (src, label, torrent path)."""
        src = self.source(size)
        torrent = os.path.join(self.work, name + ".torrent")
        self.create(src[0], "http://127.0.0.1:%d/announce" % free_port(), 256 * KIB, torrent)
        return src, size_name(size), torrent

    def case_encryption(self):
        a = self.args
        size = a.enc_size
        say("\n## encryption: shoal seed -> shoal get, --encryption off vs require")
        src, label, torrent = self.direct_torrent("encryption", size)

        def fetch(mode, addr, out, deadline):
            return self.get_shoal(torrent, out, deadline,
                                  ["--peer", addr, "--no-listen", "--encryption", mode])

        ok = self.from_a_shoal_seeder("encryption", src, torrent, ["off", "require"],
                                      lambda mode: ["--encryption", mode], fetch)
        rows = []
        for mode, runs in ok.items():
            if not runs:
                rows.append([mode, "FAILED", None, None, None])
                continue
            m = self.medians(runs, size)
            rows.append([mode, fmt(m["wall"]), fmt(m["rate"], 1), fmt(m["cpu"]),
                         fmt(median(r.seeder_cpu for r in runs))])
        self.section(
            "encryption: %s from shoal seed to shoal get on 127.0.0.1, medians of %d runs"
            % (label, a.runs),
            table(["--encryption", "wall s", "MiB/s", "get CPU s", "seed CPU s"], rows),
            ["get: --peer SEEDER --no-listen; seed CPU is the seeder's user+sys during the "
             "download (it starts fresh for each run)"])

    def case_utp(self):
        a = self.args
        size = a.utp_size
        say("\n## utp: shoal seed -> lt.py leech, uTP only vs TCP only")
        src, label, torrent = self.direct_torrent("utp", size)

        def fetch(mode, addr, out, deadline):
            only = "--utp-only" if mode == "utp" else "--no-utp"
            argv = [PYTHON, LT_PY, "leech", torrent, out, str(free_port()), "--peer", addr,
                    "--no-tracker", only]
            return lt_timed(measure(argv, deadline, finish_on="DONE"))

        ok = self.from_a_shoal_seeder("utp", src, torrent, ["utp", "tcp"], lambda mode: [], fetch)
        rows = []
        for mode, runs in ok.items():
            if not runs:
                rows.append([mode, "FAILED", None, None, None])
                continue
            m = self.medians(runs, size)
            own = median(r.own_clock for r in runs)
            rows.append([mode, fmt(m["wall"]), fmt(own), fmt(size / MIB / own, 1),
                         fmt(median(r.seeder_cpu for r in runs))])
        self.section(
            "utp: %s from shoal seed to lt.py on 127.0.0.1, medians of %d runs" % (label, a.runs),
            table(["transport", "wall s", "lt clock s", "MiB/s", "seed CPU s"], rows),
            ["lt.py leech --peer SEEDER --no-tracker --utp-only / --no-utp; wall is to its DONE "
             "line (interpreter start included), lt clock is lt.py's own (from its session's "
             "start, ~0.5 s before it dials); seed CPU is the seeder's user+sys during the "
             "download (it starts fresh for each run)"])

    def case_big(self):
        a = self.args
        size, piece, limit_as = a.big_size, a.big_piece, a.big_as
        say("\n## big: %s torrent (%s pieces) under RLIMIT_AS %s (ulimit -v %d)"
            % (size_name(size), size_name(piece), size_name(limit_as), limit_as // KIB))
        have = shutil.disk_usage(self.work).free + (os.path.getsize(self.data[size][0])
                                                    if size in self.data else 0)
        need = 2 * size + 512 * MIB
        if have < need:
            msg = ("NOT RUN: needs %.1f GiB free under %s (data + download), only %.1f GiB"
                   % (need / GIB, self.work, have / GIB))
            say("  " + msg)
            self.section("big torrent", [msg])
            self.failures.append("big: " + msg)
            return
        say("  disk: %.1f GiB free, %.1f GiB needed" % (have / GIB, need / GIB))
        src = self.source(size)
        torrent = os.path.join(self.work, "big.torrent")
        dead = "http://127.0.0.1:%d/announce" % free_port()
        self.create(src[0], dead, piece, torrent)
        deadline = 120 + size / (4 * MIB)
        seeder = start_seeder(torrent, os.path.dirname(src[0]), 600 + a.big_runs * deadline,
                              size, no_tracker=True)
        runs = []
        try:
            for i in range(a.big_runs):
                warm(src[0])
                out = self.fresh_dir("big-%d" % (i + 1))
                run = self.get_shoal(torrent, out, deadline,
                                     ["--peer", "127.0.0.1:%d" % seeder.port, "--no-listen"],
                                     limit_as=limit_as)
                good = self.check_bytes("big run %d" % (i + 1), run, out, src)
                self.report_run("run %d" % (i + 1), "shoal", run, size, good)
                if good:
                    runs.append(run)
        finally:
            seeder.stop()
        if size >= GIB:  # 1 GiB is the hash case's default: keep smaller ones
            self.drop_source(size)
        label = "%s/%s" % (size_name(size), size_name(piece))
        m = self.medians(runs, size) if runs else None
        row = ([label, "shoal", fmt(m["wall"]), fmt(m["rate"], 1), fmt(m["cpu"]),
                fmt(m["rss"], 1), fmt(m["anon"], 1), fmt(m["file"], 1), fmt(m["threads"], 0)]
               if m else [label, "shoal", "FAILED"] + [None] * 6)
        self.section(
            "big torrent: %s, shoal get under RLIMIT_AS = %s (`ulimit -v %d`), "
            "one lt.py seeder via --peer, %d run(s)" % (size_name(size), size_name(limit_as),
                                                         limit_as // KIB, a.big_runs),
            table(["case", "client", "wall s", "MiB/s", "CPU s", "RSS MiB", "anon MiB",
                   "file MiB", "threads"], [row]),
            ["completed with the right bytes" if m else "FAILED (see above)"])
        if m:
            self.goals.append(("big %s: peak RSS <= 24 MiB" % size_name(size), fmt(m["rss"], 1),
                               m["rss"] <= 24))
            self.goals.append(("big %s: peak anon RSS <= 16 MiB" % size_name(size),
                               fmt(m["anon"], 1), m["anon"] is not None and m["anon"] <= 16))

    def case_hash(self):
        a = self.args
        size = a.hash_size
        say("\n## hash: shoal check / create against openssl sha1 and sha1sum, %s file"
            % size_name(size))
        path, want = self.source(size)
        torrent = os.path.join(self.work, "hash.torrent")
        made = os.path.join(self.work, "hash-create.torrent")
        url = "http://127.0.0.1:1/announce"
        self.create(path, url, a.hash_piece, torrent)
        info = json.loads(subprocess.run([self.shoal, "info", torrent, "--json"],
                                         capture_output=True, text=True, check=True).stdout)
        create = [self.shoal, "create", path, "-t", url, "-o", made, "--no-date", "-q"]
        if a.hash_piece:
            create += ["--piece-size", size_name(a.hash_piece)]
        tools = [
            ("shoal check", [self.shoal, "check", torrent, path, "--json"]),
            ("shoal create", create),
            ("openssl sha1", ["openssl", "sha1", path]),
            ("sha1sum", ["sha1sum", path]),
        ]
        runs = {name: [] for name, _ in tools}
        deadline = 60 + size / (10 * MIB)
        for i in range(a.runs):
            for name, argv in tools:
                warm(path)
                run = measure(argv, deadline)
                out = "\n".join(l for _, l in run.lines)
                problem = None
                if not run.ok:
                    problem = run.describe()
                elif name == "shoal check" and '"complete":true' not in out.replace(" ", ""):
                    problem = "check did not say complete: " + out
                elif name in ("openssl sha1", "sha1sum") and want not in out:
                    problem = "printed %r, the data's SHA-1 is %s" % (out, want)
                if problem:
                    self.failures.append("hash %s run %d: %s" % (name, i + 1, problem))
                    say("  FAILED %s: %s" % (name, problem))
                    continue
                runs[name].append(run)
                say("    run %d %-13s wall %6.3f s  %6.2f GiB/s  cpu %.2f s  rss %s MiB"
                    % (i + 1, name, run.wall, size / GIB / run.wall, run.cpu,
                       fmt(mib(run.rss_kb, kib=True), 1)))
        med = {n: (median(r.wall for r in rs), median(r.cpu for r in rs)) for n, rs in runs.items()}
        rows = []
        for name, _ in tools:
            wall, cpu = med[name]
            rows.append([name, fmt(wall, 3), fmt(size / GIB / wall if wall else None),
                         fmt(cpu, 2),
                         fmt(ratio(wall, med["openssl sha1"][0])),
                         fmt(ratio(wall, med["sha1sum"][0]))])
        self.section(
            "hash: %s file, page cache warm, medians of %d runs (%d pieces of %s)"
            % (size_name(size), a.runs, info["piece_count"], size_name(info["piece_length"])),
            table(["tool", "wall s", "GiB/s", "CPU s", "x openssl", "x sha1sum"], rows, left=1),
            ["x openssl / x sha1sum: wall time relative to theirs (lower is faster); "
             "the file is re-read before every run"])
        for name in ("shoal check", "shoal create"):
            r1 = ratio(med[name][0], med["openssl sha1"][0])
            r2 = ratio(med[name][0], med["sha1sum"][0])
            if r1 is not None:
                self.goals.append(("%s <= openssl sha1 time" % name, fmt(r1), r1 <= 1.0))
            if r2 is not None:
                self.goals.append(("%s <= 0.5 x sha1sum time" % name, fmt(r2), r2 <= 0.5))


# ------------------------------------------------------------- the delay proxy

class _Pipe:
    """One direction of a proxied connection: a reader thread queues chunks
    stamped `now + delay`, a writer thread sends each when due. FIFO, so
    the byte order is kept; at most `cap` bytes wait in the queue."""

    CHUNK = 256 * KIB

    def __init__(self, src, dst, delay, cap, on_close):
        self.src, self.dst, self.delay, self.cap = src, dst, delay, cap
        self.on_close = on_close
        self.q = collections.deque()
        self.queued = 0
        self.dead = False
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self):
        while True:
            try:
                data = self.src.recv(self.CHUNK)
            except OSError:
                data = b""
            with self.cv:
                while self.queued > self.cap and not self.dead:
                    self.cv.wait()
                if self.dead:
                    return
                self.q.append((time.monotonic() + self.delay, data))
                self.queued += len(data)
                self.cv.notify_all()
            if not data:
                return

    def _write(self):
        while True:
            with self.cv:
                while not self.q:
                    self.cv.wait()
                due, data = self.q[0]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with self.cv:
                self.q.popleft()
                self.queued -= len(data)
                self.cv.notify_all()
            try:
                if not data:  # EOF from src, delivered on time
                    self.dst.shutdown(socket.SHUT_WR)
                    return
                self.dst.sendall(data)
            except OSError:
                with self.cv:
                    self.dead = True
                    self.cv.notify_all()
                self.on_close()
                return


class DelayProxy:
    """127.0.0.1:PORT -> target, adding `delay` seconds each way."""

    def __init__(self, target, delay, cap=32 * MIB):
        self.target, self.delay, self.cap = target, delay, cap
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.socks = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                down, _ = self.sock.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.target, timeout=10)
                up.settimeout(None)
            except OSError:
                down.close()
                continue
            pair = (down, up)
            self.socks.extend(pair)
            for s in pair:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def close_pair(pair=pair):
                for s in pair:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

            _Pipe(down, up, self.delay, self.cap, close_pair)
            _Pipe(up, down, self.delay, self.cap, close_pair)

    def close(self):
        self.closed = True
        for s in [self.sock] + self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def proxy_selftest(delay, nbytes):
    """The proxy on its own: round-trip time (1-byte echo) and throughput of
    one stream of `nbytes` (SHA-1 checked, so order is kept) to a sink."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    sink = {}

    def serve():
        while True:
            try:
                c, _ = server.accept()
            except OSError:
                return
            with c:
                mode = c.recv(1)
                if mode == b"E":  # echo
                    while True:
                        b = c.recv(1)
                        if not b:
                            break
                        c.sendall(b)
                else:  # sink
                    h, n = hashlib.sha1(), 0
                    while True:
                        b = c.recv(1 * MIB)
                        if not b:
                            break
                        h.update(b)
                        n += len(b)
                    sink.update(end=time.monotonic(), sha1=h.hexdigest(), n=n)

    threading.Thread(target=serve, daemon=True).start()
    proxy = DelayProxy(server.getsockname(), delay)
    try:
        with socket.create_connection(("127.0.0.1", proxy.port)) as c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.sendall(b"E")
            rtts = []
            for _ in range(3):
                t = time.monotonic()
                c.sendall(b"x")
                c.recv(1)
                rtts.append(time.monotonic() - t)
        block = os.urandom(MIB + 7)  # odd length: a reordering changes the hash
        h = hashlib.sha1()
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", proxy.port)) as c:
            c.sendall(b"S")
            sent = 0
            while sent < nbytes:
                part = block[:nbytes - sent]
                c.sendall(part)
                h.update(part)
                sent += len(part)
            c.shutdown(socket.SHUT_WR)
            c.recv(1)  # the sink closes after EOF
        end = time.monotonic() + 5
        while "end" not in sink and time.monotonic() < end:
            time.sleep(0.01)
    finally:
        proxy.close()
        server.close()
    rate = nbytes / MIB / (sink["end"] - start) if "end" in sink else 0.0
    intact = sink.get("sha1") == h.hexdigest() and sink.get("n") == nbytes
    rtt = statistics.median(rtts) * 1000
    text = "RTT %.1f ms (1-byte echo, median of 3), %.0f MiB/s for %s in one stream, %s" % (
        rtt, rate, size_name(nbytes), "bytes intact" if intact else "BYTES DAMAGED")
    if not intact:
        raise BenchError("delay proxy self-test: " + text)
    return {"rtt_ms": rtt, "rate": rate, "text": text}


# ----------------------------------------------------------------- main

def host_line(shoal):
    cpu = "?"
    sha_ni = False
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu == "?":
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags") and " sha_ni" in line:
                    sha_ni = True
    except OSError:
        pass

    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                                  cwd=REPO).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    head = out(["git", "rev-parse", "--short", "HEAD"]) or "?"
    changed = out(["git", "status", "--porcelain", "--untracked-files=no"])
    dirty = " + uncommitted changes" if changed else ""
    lt_version = out([PYTHON, "-c", "import libtorrent; print(libtorrent.__version__)"])
    return [
        "host: %d cores, %s (sha_ni %s), Linux %s"
        % (os.cpu_count(), cpu, "yes" if sha_ni else "no", os.uname().release),
        "shoal: %s (commit %s%s); libtorrent %s; %s" % (shoal, head, dirty, lt_version,
                                                        out(["openssl", "version"])),
    ]


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench.py", description="Benchmark shoal against python3-libtorrent on 127.0.0.1.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--smoke", action="store_true",
                   help="tiny: 8M torrent, 1 run each, 4M latency, 8M hash (seconds)")
    p.add_argument("--quick", action="store_true",
                   help="256 MiB only, 3 runs; the big case only if named in --cases")
    p.add_argument("--cases", help="comma-separated, of: " + ",".join(ALL_CASES))
    p.add_argument("--runs", type=int, help="runs per client and case (default 5)")
    p.add_argument("--sizes", help="swarm torrent sizes (default 256M,1G)")
    p.add_argument("--pieces", help="swarm piece sizes (default 256K,1M,4M)")
    p.add_argument("--latency-size", help="default 256M")
    p.add_argument("--latency-piece", default="256K", help="default 256K")
    p.add_argument("--delay-ms", type=float, default=25.0,
                   help="proxy delay each way (default 25, i.e. 50 ms RTT)")
    p.add_argument("--proxy-test-size", help="bytes through the proxy in its self-test (64M)")
    p.add_argument("--big-size", default="4G", help="default 4G")
    p.add_argument("--big-piece", default="1M", help="default 1M")
    p.add_argument("--big-as", default="1G", help="RLIMIT_AS for the big case (default 1G)")
    p.add_argument("--big-runs", type=int, default=1, help="default 1")
    p.add_argument("--hash-size", help="file for the hash case (default 1G)")
    p.add_argument("--enc-size", help="file for the encryption case (default 256M)")
    p.add_argument("--utp-size", help="file for the utp case (default 256M)")
    p.add_argument("--hash-piece", help="piece size for check/create (default: shoal's own)")
    p.add_argument("--lt-utp", action="store_true",
                   help="let the libtorrent peers use uTP (its default: a leecher dials uTP "
                        "first and falls back to TCP ~4 s later behind the TCP-only proxy)")
    p.add_argument("--shoal", help="use this binary (no cargo build)")
    p.add_argument("--no-build", dest="build", action="store_false",
                   help="use target/release/shoal (and target/tls) as they are")
    p.add_argument("--tmp-root", help="where the temp work dir goes (default $TMPDIR or /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the work dir")
    a = p.parse_args(argv)

    default = lambda v, d: v if v is not None else d  # noqa: E731
    if a.smoke:
        a.runs = default(a.runs, 1)
        a.sizes = default(a.sizes, "8M")
        a.pieces = default(a.pieces, "256K")
        a.latency_size = default(a.latency_size, "4M")
        a.proxy_test_size = default(a.proxy_test_size, "8M")
        a.hash_size = default(a.hash_size, "8M")
        cases = default(a.cases, "size,swarm,latency,hash")
    elif a.quick:
        a.sizes = default(a.sizes, "256M")
        a.hash_size = default(a.hash_size, "256M")
        cases = default(a.cases, "size,swarm,latency,hash,encryption")
    else:
        cases = default(a.cases, ",".join(ALL_CASES))
    a.runs = default(a.runs, 5)
    a.sizes = [parse_size(s) for s in default(a.sizes, "256M,1G").split(",")]
    a.pieces = [parse_size(s) for s in default(a.pieces, "256K,1M,4M").split(",")]
    a.latency_size = parse_size(default(a.latency_size, "256M"))
    a.latency_piece = parse_size(a.latency_piece)
    a.proxy_test_size = parse_size(default(a.proxy_test_size, "64M"))
    a.big_size, a.big_piece = parse_size(a.big_size), parse_size(a.big_piece)
    a.big_as = parse_size(a.big_as)
    a.hash_size = parse_size(default(a.hash_size, "1G"))
    a.enc_size = parse_size(default(a.enc_size, "8M" if a.smoke else "256M"))
    a.utp_size = parse_size(default(a.utp_size, "8M" if a.smoke else "256M"))
    a.hash_piece = parse_size(a.hash_piece) if a.hash_piece else None
    a.cases = [c.strip() for c in cases.split(",") if c.strip()]
    for c in a.cases:
        if c not in ALL_CASES:
            p.error("unknown case %r (cases: %s)" % (c, ", ".join(ALL_CASES)))
    if a.runs < 1:
        p.error("--runs must be at least 1")
    a.shoal_given = bool(a.shoal)
    if a.shoal:
        a.shoal = os.path.abspath(a.shoal)
        a.build = False
    else:
        a.shoal = os.path.join(REPO, "target", "release", "shoal")
    return a


def check_tools(cases):
    missing = []
    if {"swarm", "latency", "big", "utp"} & set(cases):
        if subprocess.run([PYTHON, "-c", "import libtorrent"], capture_output=True).returncode:
            missing.append("python3-libtorrent (for %s)" % PYTHON)
    if "swarm" in cases and not shutil.which("opentracker"):
        missing.append("opentracker")
    if "hash" in cases:
        missing += [t for t in ("openssl", "sha1sum") if not shutil.which(t)]
    if missing:
        raise BenchError("missing: %s (tests/tools/bench.sh installs them; "
                         "apt-get install python3-libtorrent opentracker)" % ", ".join(missing))


def main(argv):
    args = parse_args(argv)
    command = " ".join(shlex.quote(x) for x in [sys.executable, sys.argv[0]] + argv)
    started = datetime.datetime.now(datetime.timezone.utc)

    def on_term(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_term)
    check_tools(args.cases)
    if args.build:
        say("## cargo build --release")
        subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
    if not os.access(args.shoal, os.X_OK):
        raise BenchError("no shoal binary at %s" % args.shoal)

    root = args.tmp_root or os.environ.get("TMPDIR") or "/tmp"
    work = tempfile.mkdtemp(prefix="shoal-bench.", dir=root)
    say("## work dir %s (removed at the end%s)" % (work, " unless --keep" if args.keep else ""))
    bench = Bench(args, work)
    try:
        for case in args.cases:
            try:
                getattr(bench, "case_" + case)()
            except BenchError as e:
                bench.failures.append("%s: %s" % (case, e))
                say("  FAILED %s: %s" % (case, e))
    finally:
        if args.keep:
            say("## kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)

    elapsed = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
    say("")
    say("=" * 30 + " shoal bench summary " + "=" * 30)
    say("command: " + command)
    say("date: %s UTC (took %.0f s)" % (started.strftime("%Y-%m-%d %H:%M"), elapsed))
    for line in host_line(args.shoal):
        say(line)
    for title, lines in bench.sections:
        say("")
        say("== " + title)
        for l in lines:
            say(l)
    if bench.goals:
        say("")
        say("== goals (issue 6)")
        for l in table(["goal", "measured", "met"],
                       [[g, m, "yes" if ok else "NO"] for g, m, ok in bench.goals], left=1):
            say(l)
    say("")
    if bench.failures:
        say("FAILED: %d problem(s); %d download(s) bytes verified:" % (len(bench.failures),
                                                                       bench.verified))
        for f in bench.failures:
            say("  - " + f.splitlines()[0])
        return 1
    say("OK: bytes verified in all %d download(s)" % bench.verified)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        print("bench.py: %s" % e, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("bench.py: interrupted", file=sys.stderr)
        sys.exit(130)
