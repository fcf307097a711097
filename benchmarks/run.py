#!/usr/bin/env python3
"""benchmarks/run.py: cluster's performance measurements (issue 5), side by
side with nginx, Node.js cluster and a raw-epoll ceiling, in one run.

    python3 benchmarks/run.py            # full run, about 4 minutes on a quiet 2-core machine
    python3 benchmarks/run.py --quick    # shorter windows and fewer rounds, about 2 minutes

It builds examples/hello and benchmarks/epoll_hello in build-bench/ (a release
build: -O3, NDEBUG, with -g for the profile), then measures:

 1. server CPU time per request (server pinned to CPU 0, h2load on CPU 1,
    64 keep-alive connections, with and without 16-deep pipelining; median of
    interleaved rounds, ratios to the peers taken within each round);
 2. deterministic counts per request: callgrind instructions in the worker and
    strace system calls in the server's processes (exact_client.py sends an
    exact number of requests; two windows N1 < N2 on one warm connection,
    (count2 - count1) / (N2 - N1));
 3. throughput and latency with wrk (1 and 2 workers, with and without
    pipelining; reported only);
 4. memory: RSS and PSS per process under load (from /proc/PID/smaps_rollup);
 5. lifecycle: exec to ready line (2 workers), kill -9 of a worker to a queued
    request being answered by its replacement;
 6. messaging (issue 6): Node's cluster IPC beside cluster's;
 7. routing (issue 14): a router of 50 routes beside the plain handler;
 8-12. growth (issue 15): CPU per request at 1 to 10,000 connections,
    by response size (beside nginx with sendfile on and off), for POST
    bodies (beside Node), memory per idle connection, io_uring beside epoll.

It prints a table with the targets of issue 5 (PASS/MISS), writes the raw
figures to build-bench/bench-results.json, the table to
build-bench/bench-table.txt and the callgrind profile of the hello worker to
build-bench/bench-profile.txt. A section that fails is named at the end of
the table (exit code 1) and the others still run; the raw figures are
written after each section. It installs nothing: a missing tool is named
with the Debian package that provides it. Every process it starts is stopped
by PID at the end, also on Ctrl-C or an error. Only 127.0.0.1 is used.
"""
import argparse
import errno
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in benchmarks/
sys.path.insert(0, str(Path(__file__).resolve().parent))
from exact_client import ExactClient  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU = "0"
CLIENT_CPU = "1"
ALL_CPUS = "0,1"
PEERS = ["epoll", "nginx", "node"]
# Programs built on cluster (same flags, same ready line): examples/hello,
# benchmarks/router_hello, benchmarks/bodies, and hello built on io_uring.
CLUSTER_PROGRAMS = ("hello", "router", "bodies", "hello_uring")
SERVERS = ["hello"] + PEERS

# Tool -> Debian package that provides it.
TOOLS = {
    "h2load": "nghttp2-client",
    "wrk": "wrk",
    "nginx": "nginx-light",
    "node": "nodejs",
    "valgrind": "valgrind",
    "callgrind_control": "valgrind",
    "callgrind_annotate": "valgrind",
    "strace": "strace",
    "taskset": "util-linux",
    "nice": "coreutils",
    "meson": "meson",
    "ninja": "ninja-build",
    "cc": "gcc",
    "c++": "g++",
}

# Issue 5's targets (hello, one worker) and issue 6's messaging targets.
TARGETS = [
    # key, label, limit, direction ('le': measured <= limit), unit
    ("cpu_ka_vs_epoll", "CPU/request keep-alive vs epoll ceiling", 1.15, "le", "x"),
    ("cpu_ka_vs_nginx", "CPU/request keep-alive vs nginx", 0.9, "le", "x"),
    ("cpu_pipe_vs_nginx", "CPU/request pipelined x16 vs nginx", 0.2, "le", "x"),
    ("instr_ka", "instructions/request keep-alive", 2500, "le", ""),
    ("instr_pipe", "instructions/request pipelined x16", 1200, "le", ""),
    ("sys_ka", "syscalls/request keep-alive, 64 conns", 2.3, "le", ""),
    ("sys_pipe", "syscalls/request pipelined x16, 64 conns", 0.15, "le", ""),
    ("rss_worker", "worker RSS under load (MiB)", 3.0, "le", " MiB"),
    ("ready_2w", "exec to ready line, 2 workers (ms)", 50.0, "le", " ms"),
    ("replace", "kill -9 to replacement serving (ms)", 20.0, "le", " ms"),
    ("msg_rt_vs_node", "messaging round trips/s vs Node (issue 6)", 3.0, "ge", "x"),
    ("msg_ow_vs_node", "messaging one-way msgs/s vs Node (issue 6)", 5.0, "ge", "x"),
]

PROFILES = {
    # cpu: rounds; each window serves enough requests for cpu_target seconds
    # of server CPU time (the tick of /proc/PID/stat is 10 ms), within
    # [min_wall, max_wall] seconds of load.
    "full": dict(rounds=5, cpu_target=0.6, min_wall=1.5, max_wall=5.0, cal_ka=8000, cal_pipe=32000,
                 # callgrind: (warm-up, N1, N2, pairs of windows); Node's JIT and GC
                 # need a long warm-up and make single windows noisy: more pairs.
                 cg_ka=(2000, 1000, 5000, 2), cg_pipe=(3200, 1600, 8000, 2),
                 cg_node_ka=(2500, 200, 600, 3), cg_node_pipe=(1600, 320, 960, 2), cg_node=True,
                 st_ka=(2000, 2000, 10000), st_pipe=(3200, 3200, 16000),
                 st_load_ka=(5000, 25000), st_load_pipe=(16000, 96000),
                 wrk_seconds=4, wrk_warmup=1, ready_trials=7, kill_trials=5, msg_seconds=3.0),
    "quick": dict(rounds=3, cpu_target=0.2, min_wall=0.5, max_wall=1.5, cal_ka=4000, cal_pipe=16000,
                  cg_ka=(200, 200, 1000, 1), cg_pipe=(320, 320, 1600, 1),
                  cg_node_ka=None, cg_node_pipe=None, cg_node=False,
                  st_ka=(500, 500, 2500), st_pipe=(800, 800, 4000),
                  st_load_ka=(2000, 8000), st_load_pipe=(8000, 32000),
                  wrk_seconds=1, wrk_warmup=1, ready_trials=3, kill_trials=3, msg_seconds=1.0),
}
# The growth sections (issue 15): connection counts, response sizes, idle
# connections (rounds, the bounded wait for memory to come back after they
# close, s) and io_uring's connection counts.
PROFILES["full"].update(conn_counts=(1, 64, 1000, 10000), sizes=("12", "4k", "64k", "1m"), idle_conns=10000,
                        idle_rounds=3, idle_close_wait=3.0, uring_conns=(64, 10000))
PROFILES["quick"].update(conn_counts=(1, 64, 1000, 10000), sizes=("12", "4k", "64k", "1m"), idle_conns=10000,
                         idle_rounds=1, idle_close_wait=2.0, uring_conns=(64, 10000))


class BenchError(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# /proc helpers
# --------------------------------------------------------------------------

def proc_stat(pid):
    """(state, ppid, utime, stime, starttime) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rfind(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[11]), int(rest[12]), int(rest[19])


def process_table():
    table = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st:
                table[int(d)] = st
    return table


def process_tree(root):
    """root and all its descendants (pids), root first."""
    table = process_table()
    if root not in table:
        return []
    children = {}
    for pid, st in table.items():
        children.setdefault(st[1], []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        out.append(pid)
        todo.extend(sorted(children.get(pid, [])))
    return out


def children_of(pid):
    return sorted(p for p, st in process_table().items() if st[1] == pid)


def alive(pid, starttime=None):
    st = proc_stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    return starttime is None or st[4] == starttime


def cpu_ticks(pids):
    """(utime, stime) summed over pids, in clock ticks."""
    u = s = 0
    for pid in pids:
        st = proc_stat(pid)
        if st:
            u += st[2]
            s += st[3]
    return u, s


def sched_ns(pids):
    """Time on CPU in ns summed over every thread of pids (schedstat)."""
    total = 0
    for pid in pids:
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def cpu_busy(cpu):
    """Busy ticks of one CPU from /proc/stat (everything but idle and iowait)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    return 0


def io_counts(pids):
    """(read syscalls, write syscalls) from /proc/PID/io: read()/write()-family only."""
    r = w = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/io") as f:
                for line in f:
                    if line.startswith("syscr:"):
                        r += int(line.split()[1])
                    elif line.startswith("syscw:"):
                        w += int(line.split()[1])
        except OSError:
            pass
    return r, w


def smaps_rollup(pid):
    """(rss_kib, pss_kib) of a process."""
    rss = pss = None
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------
# processes we start: every one is registered and stopped by PID at the end
# --------------------------------------------------------------------------

REGISTRY = []


def register(obj):
    REGISTRY.append(obj)
    return obj


def cleanup_all():
    for obj in reversed(REGISTRY):
        try:
            obj.stop()
        except Exception as e:  # keep stopping the others
            log(f"cleanup: {e}")
    REGISTRY.clear()


class Child:
    """A helper process (strace, a load generator) stopped by PID."""

    def __init__(self, cmd, **kw):
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, start_new_session=True, **kw)
        register(self)
        boost(self.proc.pid)

    def stop(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self in REGISTRY:
            REGISTRY.remove(self)


class Server:
    """One server under test (hello, epoll, nginx or node), started with
    optional wrappers (nice, taskset, valgrind) that all exec, so the PID of
    the started process is the server's (master's) PID."""

    def __init__(self, kind, paths, workdir, workers=1, port=0, wrap=(), label=None, extra=(), files=None,
                 max_conns=None):
        """extra: more arguments for a cluster program or node_hello.js;
        files: for nginx, (directory, sendfile on?) to serve files from in
        place of the hello answer; max_conns: for nginx, worker_connections
        and the listen backlog raised for the growth sections (default: as
        sections 1-7 always had)."""
        self.kind = kind
        self.workers = workers
        self.paths = paths
        self.workdir = workdir
        self.label = label or kind
        self.port = port
        self.wrap = list(wrap)
        self.proc = None
        self.lines = []
        self.ready_at = None
        self.ready_event = threading.Event()
        self.reader = None
        self.t_exec = None
        self.known = {}  # pid -> starttime, for a PID-safe kill at the end
        self.stderr_path = None
        if kind in CLUSTER_PROGRAMS:
            self.cmd = [str(paths[kind]), "--host", "127.0.0.1", "--port", str(port),
                        "--workers", str(workers)] + list(extra)
            self.ready_re = re.compile(r"^cluster: master (\d+) listening on http://127\.0\.0\.1:(\d+) with")
        elif kind == "epoll":
            self.cmd = [str(paths["epoll"]), "--host", "127.0.0.1", "--port", str(port)]
            self.ready_re = re.compile(r"^epoll_hello: pid (\d+) listening on http://127\.0\.0\.1:(\d+)")
        elif kind == "node":
            self.cmd = ["node", str(BENCH / "node_hello.js"), "--host", "127.0.0.1", "--port", str(port),
                        "--workers", str(workers)] + list(extra)
            self.ready_re = re.compile(r"^node: master (\d+) listening on http://127\.0\.0\.1:(\d+) with")
        elif kind == "nginx":
            if self.port == 0:
                self.port = free_port()
            prefix = Path(tempfile.mkdtemp(prefix="nginx-", dir=workdir))
            prefix.chmod(0o755)
            (prefix / "logs").mkdir()
            conf = prefix / "nginx.conf"
            # Workers run as root when we are root: valgrind's vgdb and output
            # files belong to the user who started the master.
            user = "user root;\n" if os.geteuid() == 0 else ""
            if files is None:
                location = "    location / { default_type \"text/plain; charset=utf-8\"; return 200 \"Hello World\\n\"; }\n"
            else:
                # The same bytes as benchmarks/bodies serves, from the same files;
                # GET / (wait_ready's probe) gets the smallest of them.
                location = (f"    sendfile {'on' if files[1] else 'off'};\n    root {files[0]};\n"
                            "    location / { types { } default_type application/octet-stream; index 12; }\n")
            conns = max_conns or 4096
            backlog = f" backlog={conns}" if max_conns else ""
            limits = f"worker_rlimit_nofile {conns + 100};\n" if max_conns else ""
            conf.write_text(
                f"{user}daemon off;\nmaster_process on;\nworker_processes {workers};\n{limits}"
                f"pid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log warn;\n"
                f"events {{ worker_connections {conns}; }}\n"
                "http {\n  access_log off;\n  keepalive_requests 1000000000;\n  keepalive_timeout 300s;\n"
                f"  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n"
                f"  fastcgi_temp_path {prefix}/fastcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n"
                f"  scgi_temp_path {prefix}/scgi;\n"
                f"  server {{\n    listen 127.0.0.1:{self.port}{backlog};\n"
                + location +
                "  }\n}\n")
            self.cmd = ["nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "logs" / "error.log")]
            self.ready_re = None
        else:
            raise ValueError(kind)

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        n = sum(1 for _ in self.workdir.glob(f"{self.label}-*.err"))
        self.stderr_path = self.workdir / f"{self.label}-{n}.err"
        err = open(self.stderr_path, "wb")
        self.t_exec = time.perf_counter()
        self.proc = subprocess.Popen(self.wrap + self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=err, start_new_session=True)
        err.close()
        register(self)
        boost(self.proc.pid)
        self.reader = threading.Thread(target=self._read_stdout, daemon=True)
        self.reader.start()
        return self

    def _read_stdout(self):
        for raw in iter(self.proc.stdout.readline, b""):
            t = time.perf_counter()
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append((t, line))
            if self.ready_re and self.ready_at is None:
                m = self.ready_re.search(line)
                if m:
                    self.port = int(m.group(2))
                    self.ready_at = t
                    self.ready_event.set()

    def stderr_tail(self, n=15):
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        if self.ready_re:
            while not self.ready_event.wait(0.05):
                if self.proc.poll() is not None:
                    raise BenchError(f"{self.label} exited with {self.proc.returncode} before its ready line:\n"
                                     f"{self.stderr_tail()}")
                if time.monotonic() > deadline:
                    raise BenchError(f"{self.label}: no ready line within {timeout} s:\n{self.stderr_tail()}")
        else:
            while True:
                if self.proc.poll() is not None:
                    raise BenchError(f"{self.label} exited with {self.proc.returncode}:\n{self.stderr_tail()}")
                try:
                    c = ExactClient(self.port, timeout=5)
                    c.run(1)
                    c.close()
                    self.ready_at = time.perf_counter()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise BenchError(f"{self.label}: port {self.port} not serving within {timeout} s")
                    time.sleep(0.005)
        # Wait for the expected worker processes (nginx announces nothing).
        want = 0 if self.kind == "epoll" else self.workers
        while len(self.worker_pids()) < want:
            if time.monotonic() > deadline:
                raise BenchError(f"{self.label}: {want} workers expected, found {self.worker_pids()}")
            time.sleep(0.01)
        self.remember()
        return self

    def worker_pids(self):
        if self.kind == "epoll":
            return [self.pid]
        return [p for p in children_of(self.pid) if alive(p)]

    def tree(self):
        return process_tree(self.pid)

    def remember(self):
        for pid in self.tree():
            st = proc_stat(pid)
            if st:
                self.known[pid] = st[4]

    def stop(self, timeout=15.0):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.remember()
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.label} did not stop within {timeout} s of SIGTERM: SIGKILL")
        for pid, start in self.known.items():
            if alive(pid, start):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if self.reader:
            self.reader.join(2)
        if self in REGISTRY:
            REGISTRY.remove(self)
        self.proc = None


def nice_wrap(args):
    return ["nice", "-n", str(args.nice)] if args.nice else []


NICE = 0


def boost(pid):
    """With --nice: also give the process's autogroup that niceness. Every
    process we start is in a session of its own, and with autogroup
    scheduling plain nice only weighs within a session: other sessions'
    work would still get an equal share of the CPU."""
    if NICE:
        try:
            with open(f"/proc/{pid}/autogroup", "w") as f:
                f.write(str(NICE))
        except OSError:
            pass


def pin(cpus):
    return ["taskset", "-c", cpus]


# --------------------------------------------------------------------------
# load generators
# --------------------------------------------------------------------------

def parse_h2load(out):
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    f = re.search(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", out)
    if not m or not f:
        raise BenchError(f"cannot parse h2load output:\n{out[-2000:]}")
    secs = float(f.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[f.group(2)]
    return dict(total=int(m.group(1)), done=int(m.group(3)), succeeded=int(m.group(4)),
                failed=int(m.group(5)), errored=int(m.group(6)), timeout=int(m.group(7)),
                seconds=secs, rps=float(f.group(3)))


def run_h2load(args, port, n, depth, sample=None, timeout=120.0, path="/", conns=64, extra=()):
    """h2load --h1 with `conns` connections (64 unless said) on CLIENT_CPU,
    asking for `path` (extra: more h2load arguments, e.g. -d FILE for a
    POST body); sample() is called about every 0.2 s while it runs (memory
    sampling)."""
    cmd = nice_wrap(args) + pin(CLIENT_CPU) + ["h2load", "--h1", "-t", "1", "-c", str(conns), "-n", str(n),
                                              "-m", str(depth)] + list(extra) + [f"http://127.0.0.1:{port}{path}"]
    child = Child(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    out = ""
    while True:
        try:
            out, _ = child.proc.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if sample:
                sample()
            if time.monotonic() > deadline:
                child.stop()
                raise BenchError(f"h2load did not finish within {timeout} s")
    child.stop()
    return parse_h2load(out)


def parse_duration(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def run_wrk(args, port, depth, seconds, threads, cpus):
    cmd = nice_wrap(args) + pin(cpus) + ["wrk", "-t", str(threads), "-c", "64", "-d", f"{seconds}s",
                                        "--latency", "--timeout", "5s"]
    if depth > 1:
        cmd += ["-s", str(BENCH / "pipeline.lua"), f"http://127.0.0.1:{port}/", "--", str(depth)]
    else:
        cmd += [f"http://127.0.0.1:{port}/"]
    child = Child(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = child.proc.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        child.stop()
        raise BenchError("wrk did not finish in time")
    child.stop()
    res = {"raw": out}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    r = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m or not r:
        raise BenchError(f"cannot parse wrk output:\n{out[-1500:]}")
    res["requests"] = int(m.group(1))
    res["rps"] = float(r.group(1))
    for pct in ("50", "99"):
        p = re.search(rf"^\s+{pct}%\s+([\d.]+(?:us|ms|s|m))\s*$", out, re.M)
        res[f"p{pct}_ms"] = parse_duration(p.group(1)) if p else None
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["errors"] = (sum(int(x) for x in e.groups()) if e else 0) + (int(non2xx.group(1)) if non2xx else 0)
    # wrk 4.1 sometimes prints a 99th percentile of 0.00us under pipelining:
    # drop a percentile that cannot be (the raw output stays in the results).
    if res["p99_ms"] is not None and res["p50_ms"] and res["p99_ms"] < res["p50_ms"]:
        res["p99_ms"] = None
    return res


# --------------------------------------------------------------------------
# 1 + 4. server CPU time per request, memory under load
# --------------------------------------------------------------------------

def section_cpu(args, prof, paths, work, results):
    log("1. server CPU time per request: starting hello, epoll, nginx, node on CPU 0")
    servers = {}
    for kind in SERVERS:
        servers[kind] = Server(kind, paths, work, workers=1, wrap=nice_wrap(args) + pin(SERVER_CPU)).start()
    for s in servers.values():
        s.wait_ready(30)
    mem = {k: {} for k in SERVERS}

    def sampler(kind, tree, workers):
        def sample():
            for pid in tree:
                role = "worker" if pid in workers else "master"
                rss, pss = smaps_rollup(pid)
                if rss is None:
                    continue
                cur = mem[kind].setdefault(role, {"rss_kib": 0, "pss_kib": 0, "pids": []})
                cur["rss_kib"] = max(cur["rss_kib"], rss)
                cur["pss_kib"] = max(cur["pss_kib"], pss or 0)
                if pid not in cur["pids"]:
                    cur["pids"].append(pid)
        return sample

    modes = [("keep-alive", 1), ("pipelined x16", 16)]
    # Calibration doubles as warm-up (Node's JIT). It sizes every window: enough
    # requests for cpu_target seconds of server CPU, within [min_wall, max_wall]
    # seconds at the calibrated rate; a multiple of 64 x depth.
    sizes = {}
    for mode, depth in modes:
        for kind in SERVERS:
            cal = prof["cal_ka"] if depth == 1 else prof["cal_pipe"]
            run_h2load(args, servers[kind].port, cal, depth)
            pids = servers[kind].tree()
            ns0 = sched_ns(pids)
            r = run_h2load(args, servers[kind].port, cal, depth)
            cpu_per_req = max((sched_ns(pids) - ns0) / 1e9 / max(r["succeeded"], 1), 1e-8)
            rate = r["rps"]
            want = prof["cpu_target"] / cpu_per_req
            want = min(max(want, rate * prof["min_wall"]), rate * prof["max_wall"])
            unit = 64 * depth
            sizes[(kind, mode)] = max(unit * 8, int(want) // unit * unit)
    log("   window sizes (requests): " + ", ".join(f"{k}/{m}={n}" for (k, m), n in sizes.items()))
    rows = []
    for rnd in range(prof["rounds"]):
        order = SERVERS[rnd % len(SERVERS):] + SERVERS[:rnd % len(SERVERS)]
        for mode, depth in modes:
            for kind in order:
                s = servers[kind]
                pids = s.tree()
                n = sizes[(kind, mode)]
                t0 = time.perf_counter()
                u0, s0 = cpu_ticks(pids)
                ns0 = sched_ns(pids)
                b0 = cpu_busy(SERVER_CPU)
                io0 = io_counts(pids)
                h = run_h2load(args, s.port, n, depth, sample=sampler(kind, pids, set(s.worker_pids())))
                u1, s1 = cpu_ticks(pids)
                ns1 = sched_ns(pids)
                b1 = cpu_busy(SERVER_CPU)
                io1 = io_counts(pids)
                t1 = time.perf_counter()
                served = h["succeeded"]
                ticks = (u1 - u0) + (s1 - s0)
                wall_ticks = (t1 - t0) * CLK_TCK
                row = dict(round=rnd, server=kind, mode=mode, depth=depth, requests=n, succeeded=served,
                           failed=h["failed"] + h["errored"] + h["timeout"], client_rps=h["rps"],
                           utime_ticks=u1 - u0, stime_ticks=s1 - s0,
                           cpu_us=ticks / CLK_TCK / served * 1e6 if served else None,
                           user_us=(u1 - u0) / CLK_TCK / served * 1e6 if served else None,
                           sys_us=(s1 - s0) / CLK_TCK / served * 1e6 if served else None,
                           schedstat_us=(ns1 - ns0) / 1e3 / served if served else None,
                           server_busy=ticks / wall_ticks if wall_ticks else None,
                           cpu0_other=max(0.0, (b1 - b0 - ticks) / wall_ticks) if wall_ticks else None,
                           read_calls=io1[0] - io0[0], write_calls=io1[1] - io0[1])
                rows.append(row)
                log(f"   round {rnd + 1}/{prof['rounds']} {mode:14} {kind:5} {fmt(row['cpu_us'])} us/req "
                    f"(schedstat {fmt(row['schedstat_us'])}; {n} req in {t1 - t0:.1f} s, server busy "
                    f"{row['server_busy']:.0%}, others on CPU 0 {row['cpu0_other']:.0%})")
    for s in servers.values():
        s.stop()
    # Ratios are taken within a round, then the median over rounds.
    summary = {}
    for mode, _ in modes:
        per = {k: median([r["cpu_us"] for r in rows if r["server"] == k and r["mode"] == mode]) for k in SERVERS}
        split = {k: (median([r["user_us"] for r in rows if r["server"] == k and r["mode"] == mode]),
                     median([r["sys_us"] for r in rows if r["server"] == k and r["mode"] == mode])) for k in SERVERS}
        sched = {k: median([r["schedstat_us"] for r in rows if r["server"] == k and r["mode"] == mode])
                 for k in SERVERS}
        ratios = {}
        for peer in PEERS:
            rs = []
            for rnd in range(prof["rounds"]):
                a = [r["cpu_us"] for r in rows if r["server"] == "hello" and r["mode"] == mode and r["round"] == rnd]
                b = [r["cpu_us"] for r in rows if r["server"] == peer and r["mode"] == mode and r["round"] == rnd]
                if a and b and a[0] and b[0]:
                    rs.append(a[0] / b[0])
            ratios[peer] = median(rs)
        other = median([r["cpu0_other"] for r in rows if r["mode"] == mode])
        summary[mode] = dict(cpu_us=per, user_sys_us=split, schedstat_us=sched, hello_ratio=ratios,
                             cpu0_other_load=other)
    # h2load really pipelines? The epoll ceiling writes once per batch it reads.
    ep = [r for r in rows if r["server"] == "epoll" and r["depth"] == 16 and r["write_calls"]]
    depth_seen = median([r["succeeded"] / r["write_calls"] for r in ep])
    summary["h2load_pipeline_depth_seen_by_epoll"] = depth_seen
    results["cpu"] = dict(rows=rows, summary=summary, sizes={f"{k}/{m}": n for (k, m), n in sizes.items()})
    results["memory"] = mem


# --------------------------------------------------------------------------
# 2. deterministic counts: callgrind instructions, strace system calls
# --------------------------------------------------------------------------

def callgrind_dump(pid, cgdir):
    before = set(cgdir.glob(f"cg.{pid}.*"))
    r = subprocess.run(["callgrind_control", "-d", str(pid)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=120)
    if r.returncode != 0:
        raise BenchError(f"callgrind_control -d {pid} failed:\n{r.stdout}")
    deadline = time.monotonic() + 60
    while True:
        new = set(cgdir.glob(f"cg.{pid}.*")) - before
        if new:
            path = max(new, key=lambda p: int(p.name.rsplit(".", 1)[1]))
            text = path.read_text(errors="replace")
            m = re.search(r"^summary:\s+(\d+)", text, re.M)
            if m:
                return path, int(m.group(1))
        if time.monotonic() > deadline:
            raise BenchError(f"no callgrind dump appeared for {pid}")
        time.sleep(0.05)


def callgrind_server(args, kind, paths, work, sizes_ka, sizes_pipe, path="/"):
    """Instructions per request in the worker of `kind`, asked for `path`;
    a mode whose sizes are None is skipped."""
    # A directory of its own per call: the counts and routing sections both
    # profile hello in one run.
    cgdir = Path(tempfile.mkdtemp(prefix=f"callgrind-{kind}-", dir=work))
    cgdir.chmod(0o777)
    wrap = nice_wrap(args) + pin(ALL_CPUS) + ["valgrind", "--tool=callgrind", "--trace-children=yes",
                                              f"--callgrind-out-file={cgdir}/cg.%p", "--vgdb=yes"]
    s = Server(kind, paths, work, workers=1, wrap=wrap, label=f"{kind}-callgrind").start()
    out = {}
    try:
        s.wait_ready(300)
        worker = s.worker_pids()[0]
        client = ExactClient(s.port, timeout=300, path=path)
        client.connect()
        for mode, depth, sizes in (("keep-alive", 1, sizes_ka), ("pipelined x16", 16, sizes_pipe)):
            if sizes is None:
                continue
            warm, n1, n2, pairs = sizes
            if warm:
                client.run(warm, depth)
            client.ensure_alive()
            callgrind_dump(worker, cgdir)  # discards start-up and warm-up
            a = b = 0
            windows = []
            for _ in range(pairs):
                client.run(n1, depth)
                client.ensure_alive()
                _, ir = callgrind_dump(worker, cgdir)
                a += ir
                windows.append((n1, ir))
                client.run(n2, depth)
                client.ensure_alive()
                path_b, ir = callgrind_dump(worker, cgdir)
                b += ir
                windows.append((n2, ir))
            per = (b - a) / (pairs * (n2 - n1))
            spread = [ir / n for n, ir in windows]
            mean = (a + b) / (pairs * (n1 + n2))
            out[mode] = dict(n1=n1, n2=n2, pairs=pairs, ir1=a, ir2=b, per_request=per, windows=windows,
                             window_mean=mean, window_min=min(spread), window_max=max(spread),
                             profile_file=str(path_b))
            log(f"   callgrind {kind:5} {mode:14} {per:,.0f} instructions/request "
                f"(single windows {min(spread):,.0f} to {max(spread):,.0f})")
        client.close()
    finally:
        # The counts are already dumped: a server whose blocked epoll_wait
        # valgrind does not interrupt (epoll_hello) is killed after 15 s
        # instead of holding the run for two minutes.
        s.stop(timeout=15)
    return out


def parse_strace_summary(path):
    calls = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        t = line.split()
        if len(t) >= 5 and re.match(r"^[\d.]+$", t[0]) and t[-1] != "total":
            calls[t[-1]] = calls.get(t[-1], 0) + int(t[3])
    return calls


def strace_window(pids, client, n, depth, work, tag):
    path = work / f"strace-{tag}.txt"
    cmd = ["strace", "-c", "-f", "-o", str(path)]
    for pid in pids:
        cmd += ["-p", str(pid)]
    child = Child(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Attached once every process shows a tracer.
    deadline = time.monotonic() + 10
    while True:
        ok = True
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status") as f:
                    tracer = int(re.search(r"^TracerPid:\s+(\d+)", f.read(), re.M).group(1))
                ok = ok and tracer != 0
            except (OSError, AttributeError):
                ok = False
        if ok:
            break
        if time.monotonic() > deadline:
            child.stop()
            raise BenchError("strace did not attach")
        time.sleep(0.01)
    time.sleep(0.2)  # let strace finish attaching threads (-f)
    served = client.run(n, depth)
    child.stop(signal.SIGINT)  # detach and write the summary
    return parse_strace_summary(path), n if served is None else served


# What opening, setting up, closing and freeing a connection costs: at 10,000
# connections these calls outnumber a window's requests and vary with how the
# heap is trimmed (madvise), so they do not cancel in the difference.
CONNECTION_CALLS = frozenset({"accept", "accept4", "close", "setsockopt", "getsockopt", "ioctl", "epoll_ctl",
                              "madvise", "mmap", "munmap", "brk", "getsockname", "getpeername", "fcntl"})


def strace_pair(pids, client, n1, n2, depth, work, tag, label, exclude=frozenset()):
    """Windows of N1 then N2 requests; system calls per request, in total and
    per call: (count(N2) - count(N1)) / (N2 - N1), with the requests the
    client saw answered in place of N1 and N2 where it says."""
    a, n1 = strace_window(pids, client, n1, depth, work, f"{tag}-a")
    client.ensure_alive()
    b, n2 = strace_window(pids, client, n2, depth, work, f"{tag}-b")
    names = sorted((set(a) | set(b)) - exclude)
    per = {nm: (b.get(nm, 0) - a.get(nm, 0)) / (n2 - n1) for nm in names}
    per = {nm: v for nm, v in per.items() if abs(v) >= 0.0005}
    total = sum(b.get(nm, 0) - a.get(nm, 0) for nm in names) / (n2 - n1)
    log(f"   strace    {label} {total:.3f} syscalls/request "
        + " ".join(f"{k}={v:.2f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1])))
    return dict(n1=n1, n2=n2, calls1=a, calls2=b, per_request=total, by_syscall=per)


def strace_server(args, kind, paths, work, sizes_ka, sizes_pipe):
    s = Server(kind, paths, work, workers=1, wrap=nice_wrap(args) + pin(ALL_CPUS), label=f"{kind}-strace").start()
    out = {}
    try:
        s.wait_ready(30)
        pids = s.tree()
        client = ExactClient(s.port, timeout=60)
        client.connect()
        for mode, depth, (warm, n1, n2) in (("keep-alive", 1, sizes_ka), ("pipelined x16", 16, sizes_pipe)):
            client.run(warm, depth)
            client.ensure_alive()
            out[mode] = strace_pair(pids, client, n1, n2, depth, work, f"{kind}-{depth}", f"{kind:5} {mode:14}")
        client.close()
    finally:
        s.stop()
    return out


class H2loadClient:
    """strace_window()'s client for the loaded count: h2load, 64 connections
    unless said."""

    def __init__(self, args, port, conns=64, tolerant=False):
        self.args = args
        self.port = port
        self.conns = conns
        # 10,000 connections opening at once against a server slowed down by
        # strace: a few may fail to connect. Tolerant: count what was answered.
        self.tolerant = tolerant

    def ensure_alive(self):
        pass  # every window opens its own connections

    def run(self, n, depth):
        r = run_h2load(self.args, self.port, n, depth, timeout=300.0, conns=self.conns)
        if r["succeeded"] != n and not (self.tolerant and r["succeeded"] >= 0.8 * n):
            raise BenchError(f"h2load: {r['succeeded']} of {n} requests succeeded")
        if r["succeeded"] != n:
            log(f"   h2load: {r['succeeded']} of {n} requests answered under strace (counted as such)")
        return r["succeeded"] if self.tolerant else None


def strace_load(args, kind, paths, work, sizes_ka, sizes_pipe):
    """System calls per request under load: the server on CPU 0, h2load with
    64 keep-alive connections on CPU 1, two windows of N1 < N2 requests, each
    on fresh connections (whose accept/close costs cancel in the difference),
    (count(N2) - count(N1)) / (N2 - N1). Here epoll_wait is shared by the
    connections that are ready together, as in real service."""
    s = Server(kind, paths, work, workers=1, wrap=nice_wrap(args) + pin(SERVER_CPU), label=f"{kind}-strace-load").start()
    out = {}
    try:
        s.wait_ready(30)
        pids = s.tree()
        client = H2loadClient(args, s.port)
        for mode, depth, (n1, n2) in (("keep-alive", 1, sizes_ka), ("pipelined x16", 16, sizes_pipe)):
            client.run(n1, depth)  # warm
            out[mode] = strace_pair(pids, client, n1, n2, depth, work, f"{kind}-load-{depth}",
                                    f"{kind:5} {mode:14} under load")
    finally:
        s.stop()
    return out


def callgrind_self_costs(path, by_file=False):
    """Self cost (Ir) per function from a callgrind dump, or with `by_file`
    per source file, an inlined function's instructions counting in the file
    it is written in (fi=/fe=). (callgrind_annotate 3.19 lists the functions
    still on the stack at a mid-run dump, such as main, with their inclusive
    cost even under --inclusive=no.)"""
    names = {}
    costs = {}
    cur = file = fl = None
    after_calls = False

    def name_of(spec):
        spec = spec.strip()
        m = re.match(r"^\((\d+)\)(?:\s+(.*))?$", spec)
        if not m:
            return spec
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), spec)

    with open(path, errors="replace") as f:
        for line in f:
            c = line[:1]
            if c.isdigit() or c in "+-*":
                if after_calls:
                    after_calls = False  # the inclusive cost of a call, not self cost
                    continue
                parts = line.split()
                key = file if by_file else cur
                if len(parts) >= 2 and key is not None:
                    costs[key] = costs.get(key, 0) + int(parts[1])
            elif line.startswith("fn="):
                cur = name_of(line[3:])
                file = fl
            elif line.startswith("fl="):
                fl = file = name_of(line[3:])
            elif line.startswith(("fi=", "fe=")):
                file = name_of(line[3:])
            elif line.startswith(("cfn=", "cfi=", "cfl=")):
                name_of(line[4:])
            elif line.startswith("calls="):
                after_calls = True
    return costs


# Where a request's instructions go, by the source file they were written in
# (code inlined into a caller counts in its own file): (label, regex on the
# file name), first match wins; the rest is split into libc and other.
COST_PARTS = [
    ("llhttp state machine (llhttp.c)", r"llhttp/llhttp\.c|smmintrin\.h"),
    ("llhttp callback glue and API (api.c, http.c)", r"llhttp/(api|http)\.c"),
    ("our llhttp callbacks, spans, build_request (message_builder.hpp)", r"message_builder\.hpp"),
    ("conformance checks (request_checks.hpp)", r"request_checks\.hpp"),
    ("parser driver and input buffer (request_parser.hpp, input_buffer.hpp)", r"(request_parser|input_buffer)\.hpp"),
    ("serialize_head and status line (serialize.hpp, status_line.hpp)", r"(serialize|status_line)\.hpp"),
    ("Date line (date_cache.hpp, clock_gettime)", r"date_cache\.hpp|clock_gettime"),
    ("response writer: framing, write_now (response_writer.hpp)", r"response_writer\.hpp"),
    ("handler and dispatch (hello.cpp, response.hpp, headers.hpp, dispatch.hpp)",
     r"examples/hello\.cpp|cluster/response\.hpp|cluster/headers\.hpp|dispatch\.hpp"),
    ("connection loop, watchdog, metrics (connection.hpp, ...)",
     r"(connection|deadline_watchdog|server_state|shared_region|request)\.hpp|bits/chrono"),
    ("Asio: reactor, coroutine resumption, socket calls", r"/asio/|c\+\+/12/coroutine"),
    ("libc: memcpy, memset, strlen, recv, send, ...", r"^\./|libc\.so|sysdeps"),
]


def cost_parts(path, n):
    """[(label, Ir per request)] of a dump of n requests, by COST_PARTS."""
    parts = {}
    for file, ir in callgrind_self_costs(path, by_file=True).items():
        label = next((lab for lab, rx in COST_PARTS if re.search(rx, file)), "other (libstdc++ std::string, ...)")
        parts[label] = parts.get(label, 0) + ir
    return sorted(((lab, ir / n) for lab, ir in parts.items()), key=lambda r: -r[1])


def callgrind_total(path):
    m = re.search(r"^summary:\s+(\d+)", Path(path).read_text(errors="replace"), re.M)
    return int(m.group(1)) if m else 0


def annotate_inclusive(path):
    r = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(path)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    rows = []
    for line in r.stdout.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(\S.*)$", line)
        if m and "PROGRAM TOTALS" not in line and "events annotated" not in line:
            rows.append((int(m.group(1).replace(",", "")), m.group(3)))
    return rows


def profile_rows(path, n, top=40):
    """Top functions of a dump as (Ir per request, share of the dump, name), self and inclusive."""
    self_costs = callgrind_self_costs(path)
    total = sum(self_costs.values()) or 1
    self_rows = sorted(((ir / n, 100.0 * ir / total, name) for name, ir in self_costs.items()),
                       key=lambda r: -r[0])[:top]
    incl_rows = [(ir / n, 100.0 * ir / total, name) for ir, name in annotate_inclusive(path)][:top]
    return self_rows, incl_rows


def section_counts(args, prof, paths, work, results, out_dir):
    log("2. deterministic counts: callgrind (instructions) and strace (system calls)")
    cg, st = {}, {}
    for kind in SERVERS:
        if kind == "node":
            if not prof["cg_node"]:
                log("   callgrind node skipped in --quick (Node under valgrind takes about a minute)")
                continue
            cg[kind] = callgrind_server(args, kind, paths, work, prof["cg_node_ka"], prof["cg_node_pipe"])
        else:
            cg[kind] = callgrind_server(args, kind, paths, work, prof["cg_ka"], prof["cg_pipe"])
    st_load = {}
    for kind in SERVERS:
        st[kind] = strace_server(args, kind, paths, work, prof["st_ka"], prof["st_pipe"])
        st_load[kind] = strace_load(args, kind, paths, work, prof["st_load_ka"], prof["st_load_pipe"])
    results["callgrind"] = cg
    results["strace"] = st
    results["strace_load"] = st_load
    # Keep the hello worker's dumps and write its profile per request.
    keep = out_dir / "bench-callgrind"
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir(parents=True)
    lines = []
    prof_out = {}
    for mode, data in cg.get("hello", {}).items():
        src = Path(data["profile_file"])
        dst = keep / f"hello-{'pipelined' if 'pipe' in mode else 'keepalive'}.callgrind"
        shutil.copy(src, dst)
        data["profile_file"] = str(dst)
        self_rows, incl_rows = profile_rows(dst, data["n2"])
        prof_out[mode] = dict(self=self_rows, inclusive=incl_rows)
        lines.append(f"== hello worker, {mode}: {data['n2']} requests on one connection, "
                     f"{callgrind_total(dst) / data['n2']:,.0f} instructions/request in this window ({dst.name}) ==")
        lines.append("-- self cost by part (instructions per request, by the source file they are written in) --")
        lines += [f"{ir:10.1f}  {label}" for label, ir in cost_parts(dst, data["n2"])]
        lines.append("-- self cost (instructions per request, share, function) --")
        lines += [f"{ir:10.1f} {pct:6.2f}%  {name}" for ir, pct, name in self_rows]
        lines.append("-- inclusive cost --")
        lines += [f"{ir:10.1f} {pct:6.2f}%  {name}" for ir, pct, name in incl_rows]
        lines.append("")
    (out_dir / "bench-profile.txt").write_text("\n".join(lines) + "\n")
    results["profile"] = prof_out


# --------------------------------------------------------------------------
# 3. throughput and latency (wrk)
# --------------------------------------------------------------------------

def section_load(args, prof, paths, work, results):
    log("3. throughput and latency with wrk (reported, not used for verdicts)")
    rows = []
    for kind, workers in (("hello", 1), ("hello", 2), ("epoll", 1), ("nginx", 1), ("nginx", 2), ("node", 1),
                          ("node", 2)):
        # One worker: pinned like section 1. Two workers: nothing pinned, the
        # client gets two threads and competes with the workers.
        server_cpus, client_cpus, threads = (SERVER_CPU, CLIENT_CPU, 1) if workers == 1 else (ALL_CPUS, ALL_CPUS, 2)
        s = Server(kind, paths, work, workers=workers, wrap=nice_wrap(args) + pin(server_cpus),
                   label=f"{kind}-{workers}w-wrk").start()
        try:
            s.wait_ready(30)
            for depth in (1, 16):
                if kind == "node":  # the JIT
                    run_wrk(args, s.port, depth, prof["wrk_warmup"], threads, client_cpus)
                r = run_wrk(args, s.port, depth, prof["wrk_seconds"], threads, client_cpus)
                r.update(server=kind, workers=workers, depth=depth)
                rows.append(r)
                log(f"   {kind:5} {workers}w depth {depth:2}: {r['rps']:,.0f} req/s p50 {fmt(r['p50_ms'])} ms "
                    f"p99 {fmt(r['p99_ms'])} ms errors {r['errors']}")
        finally:
            s.stop()
    results["load"] = rows


# --------------------------------------------------------------------------
# 5. lifecycle: ready time, replacement of a killed worker
# --------------------------------------------------------------------------

def first_response(port, deadline):
    """Polls until a request to port is answered; returns the time of the answer."""
    while time.monotonic() < deadline:
        try:
            c = ExactClient(port, timeout=5)
            c.run(1)
            t = time.perf_counter()
            c.close()
            return t
        except (OSError, RuntimeError):
            time.sleep(0.0005)
    return None


def replacement_probe(port, deadline):
    """After a worker's death: connects at once and sends a request, then
    opens another connection every 20 ms (every 0.5 ms while connects are
    refused) until one of them is answered. Returns when the first answer
    came and what happened to the very first connection, which is the one
    that waited in the accept queue."""
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    sel = selectors.DefaultSelector()
    attempts, refused, lost = 0, 0, 0
    first = None
    served_at = None
    next_at = 0.0
    open_socks = []
    try:
        while served_at is None and time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_at and attempts < 3000:
                attempts += 1
                sock = socket.socket()
                sock.settimeout(1.0)
                try:
                    sock.connect(("127.0.0.1", port))  # loopback: refused or queued at once
                    sock.sendall(request)
                    sock.setblocking(False)
                    sel.register(sock, selectors.EVENT_READ, attempts)
                    open_socks.append(sock)
                    next_at = now + 0.020
                except OSError:
                    sock.close()
                    refused += 1
                    if attempts == 1:
                        first = "refused"
                    next_at = now + 0.0005
            for key, _ in sel.select(timeout=0.0005):
                try:
                    data = key.fileobj.recv(4096)
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/1.1 200"):
                    served_at = time.perf_counter()
                    if key.data == 1:
                        first = "served"
                    break
                lost += 1
                if key.data == 1:
                    first = "reset"
                sel.unregister(key.fileobj)
    finally:
        for sock in open_socks:
            sock.close()
        sel.close()
    if first is None:
        first = "unanswered"
    return dict(served_at=served_at, attempts=attempts, refused=refused, lost=lost, first=first)


def section_lifecycle(args, prof, paths, work, results):
    log("5. lifecycle: exec to ready, kill -9 of a worker to its replacement serving")
    ready = {}
    # epoll_hello (one process, no workers) shows what starting any process costs on this machine.
    for kind in ("hello", "epoll", "node", "nginx"):
        trials = []
        for _ in range(prof["ready_trials"]):
            port = free_port()
            s = Server(kind, paths, work, workers=2, port=port, wrap=nice_wrap(args) + pin(ALL_CPUS),
                       label=f"{kind}-ready").start()
            try:
                t_served = first_response(port, time.monotonic() + 30)
                s.wait_ready(30)
                trials.append(dict(
                    ready_line_ms=(s.ready_at - s.t_exec) * 1e3 if s.ready_re else None,
                    first_response_ms=(t_served - s.t_exec) * 1e3 if t_served else None))
            finally:
                s.stop()
        ready[kind] = dict(trials=trials,
                           ready_line_ms=median([t["ready_line_ms"] for t in trials]),
                           first_response_ms=median([t["first_response_ms"] for t in trials]))
        log(f"   {kind:5} 2 workers: ready line {fmt(ready[kind]['ready_line_ms'], '{:.1f}')} ms, "
            f"first response {fmt(ready[kind]['first_response_ms'], '{:.1f}')} ms (median of {len(trials)})")
    replace = {}
    for kind in ("hello", "node", "nginx"):
        # A fixed port: Node's replacement worker would listen on a new
        # ephemeral port if the port were 0.
        s = Server(kind, paths, work, workers=1, port=free_port(), wrap=nice_wrap(args) + pin(ALL_CPUS),
                   label=f"{kind}-kill").start()
        trials = []
        try:
            s.wait_ready(30)
            for _ in range(prof["kill_trials"]):
                # Older than cluster's --healthy-after (1 s), so no respawn backoff is pending.
                time.sleep(1.2)
                old = s.worker_pids()
                if len(old) != 1:
                    raise BenchError(f"{kind}: expected one worker, found {old}")
                old = old[0]
                old_start = proc_stat(old)[4]
                t0 = time.perf_counter()
                os.kill(old, signal.SIGKILL)
                deadline = time.monotonic() + 5
                while alive(old, old_start) and time.monotonic() < deadline:  # bounded spin
                    pass
                t_dead = time.perf_counter()
                probe = replacement_probe(s.port, time.monotonic() + 30)
                if probe["served_at"] is None:
                    raise BenchError(f"{kind}: no replacement served within 30 s of kill -9")
                t_served = probe["served_at"]
                new = s.worker_pids()
                s.remember()
                trials.append(dict(old_pid=old, new_pids=new, dead_ms=(t_dead - t0) * 1e3,
                                   attempts=probe["attempts"], refused=probe["refused"], lost=probe["lost"],
                                   first_connection=probe["first"],
                                   served_ms=(t_served - t0) * 1e3,
                                   served_by_new=bool(new) and old not in new))
        finally:
            s.stop()
        replace[kind] = dict(trials=trials, served_ms=median([t["served_ms"] for t in trials]),
                             all_by_new=all(t["served_by_new"] for t in trials),
                             refused=sum(t["refused"] for t in trials), lost=sum(t["lost"] for t in trials),
                             first_connection_served=sum(t["first_connection"] == "served" for t in trials))
        log(f"   {kind:5} kill -9 -> served by replacement: {replace[kind]['served_ms']:.1f} ms "
            f"(median of {len(trials)}; first connection: {', '.join(t['first_connection'] for t in trials)})")
    results["lifecycle"] = dict(ready=ready, replace=replace)


# --------------------------------------------------------------------------
# 6. messaging (issue 6)
# --------------------------------------------------------------------------

def run_messaging_program(cmd, seconds):
    child = Child(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = child.proc.communicate(timeout=seconds * 2 + 60)
    except subprocess.TimeoutExpired:
        child.stop()
        raise BenchError(f"{cmd[0]} did not finish in time")
    child.stop()
    for line in out.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"{' '.join(cmd)} printed no JSON line:\n{out}\n{err}")


def section_messaging(args, prof, paths, work, results):
    log("6. messaging: worker <-> master round trips and one-way messages")
    secs = prof["msg_seconds"]
    node = run_messaging_program(nice_wrap(args) + pin(ALL_CPUS) + ["node", str(BENCH / "node_messaging.js"),
                                                                  "--seconds", str(secs)], secs)
    log(f"   node: {node['round_trips_per_s']:,.0f} round trips/s, {node['one_way_per_s']:,.0f} one-way msgs/s")
    # ---- Issue 6: cluster's side of the messaging benchmark plugs in here. ----
    # Add benchmarks/cluster_messaging.cpp and build it in benchmarks/meson.build
    # as executable('cluster_messaging', ...): the runner builds it when the
    # source exists and runs `cluster_messaging --seconds S`, which must print
    # one JSON line with the keys of node_messaging.js (round_trips_per_s,
    # round_trip_us, one_way_per_s, ...). Ratios to Node are then checked
    # against the targets (>= 3x round trips, >= 5x one-way).
    cl = None
    if paths.get("cluster_messaging") and paths["cluster_messaging"].exists():
        cl = run_messaging_program(nice_wrap(args) + pin(ALL_CPUS) + [str(paths["cluster_messaging"]),
                                                                      "--seconds", str(secs)], secs)
        cl["peer"] = "cluster"
        log(f"   cluster: {cl['round_trips_per_s']:,.0f} round trips/s, {cl['one_way_per_s']:,.0f} one-way msgs/s")
    else:
        log("   cluster: not measured yet (benchmarks/cluster_messaging.cpp arrives with issue 6)")
    results["messaging"] = dict(node=node, cluster=cl)


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------

def fmt(v, spec="{:.2f}", none="-"):
    return none if v is None else spec.format(v)


def verdicts(results):
    v = {}
    cpu = results.get("cpu", {}).get("summary", {})
    if cpu:
        v["cpu_ka_vs_epoll"] = cpu["keep-alive"]["hello_ratio"].get("epoll")
        v["cpu_ka_vs_nginx"] = cpu["keep-alive"]["hello_ratio"].get("nginx")
        v["cpu_pipe_vs_nginx"] = cpu["pipelined x16"]["hello_ratio"].get("nginx")
    cg = results.get("callgrind", {}).get("hello", {})
    if cg:
        v["instr_ka"] = cg["keep-alive"]["per_request"]
        v["instr_pipe"] = cg["pipelined x16"]["per_request"]
    st = results.get("strace_load", {}).get("hello", {})
    if st:
        v["sys_ka"] = st["keep-alive"]["per_request"]
        v["sys_pipe"] = st["pipelined x16"]["per_request"]
    mem = results.get("memory", {}).get("hello", {})
    if mem.get("worker"):
        v["rss_worker"] = mem["worker"]["rss_kib"] / 1024
    life = results.get("lifecycle", {})
    if life:
        v["ready_2w"] = life["ready"]["hello"]["ready_line_ms"]
        v["replace"] = life["replace"]["hello"]["served_ms"]
    msg = results.get("messaging", {})
    if msg and msg.get("cluster"):
        v["msg_rt_vs_node"] = msg["cluster"]["round_trips_per_s"] / msg["node"]["round_trips_per_s"]
        v["msg_ow_vs_node"] = msg["cluster"]["one_way_per_s"] / msg["node"]["one_way_per_s"]
    out = []
    for key, label, limit, direction, unit in TARGETS:
        val = v.get(key)
        if val is None:
            verdict = "n/a"
        elif direction == "le":
            verdict = "PASS" if val <= limit else "MISS"
        else:
            verdict = "PASS" if val >= limit else "MISS"
        out.append(dict(key=key, label=label, measured=val, target=limit, direction=direction, unit=unit,
                        verdict=verdict))
    return out


def render(results):
    L = []
    env = results["environment"]
    L.append(f"cluster benchmarks ({results['profile_name']} run, {env['date']})")
    L.append(f"machine: {env['cpu']} x{env['cpus']}, Linux {env['kernel']}, load average before "
             f"{' '.join(env['loadavg_before'])}, after {' '.join(env.get('loadavg_after', '-'))}; "
             f"nice {results['settings']['nice']}")
    L.append(f"hello: {env['hello_binary']}, tree {env['hello_commit']}"
             f"{' (uncommitted changes in include/ or examples/)' if env['hello_dirty'] else ''}; {env['build']}")
    L.append(f"peers: {env['versions'].get('nginx', '?')}, node {env['versions'].get('node', '?')}, "
             f"epoll_hello (benchmarks/epoll_hello.c); load: {env['versions'].get('h2load', '?')}, "
             f"{env['versions'].get('wrk', '?')}")
    cpu = results.get("cpu")
    if cpu:
        s = cpu["summary"]
        n = len({r["round"] for r in cpu["rows"]})
        L.append("")
        L.append(f"1. Server CPU time per request, us (utime+stime of all server processes / requests; "
                 f"median of {n} interleaved rounds)")
        L.append("   server alone on CPU 0, h2load --h1 -c 64 on CPU 1; ratios taken within each round")
        L.append(f"   {'mode':15}" + "".join(f"{k:>9}" for k in SERVERS) + "  |" +
                 "".join(f"{'hello/' + p:>13}" for p in PEERS))
        for mode in ("keep-alive", "pipelined x16"):
            m = s[mode]
            L.append(f"   {mode:15}" + "".join(f"{fmt(m['cpu_us'][k]):>9}" for k in SERVERS) + "  |" +
                     "".join(f"{fmt(m['hello_ratio'][p], '{:.2f}x'):>13}" for p in PEERS))
            L.append(f"   {'  user/sys':15}" + "".join(
                " " + f"{fmt(m['user_sys_us'][k][0], '{:.1f}') + '/' + fmt(m['user_sys_us'][k][1], '{:.1f}'):>8}"
                for k in SERVERS))
            L.append(f"   {'  schedstat':15}" + "".join(f"{fmt(m['schedstat_us'][k]):>9}" for k in SERVERS) +
                     f"   (cross-check: on-CPU ns of all threads; other load on CPU 0: "
                     f"{fmt(m['cpu0_other_load'], '{:.0%}')})")
        L.append(f"   h2load -m 16 --h1 pipelining check: the epoll ceiling answered "
                 f"{fmt(s['h2load_pipeline_depth_seen_by_epoll'], '{:.1f}')} requests per write (16 = full batches)")
        failed = [r for r in cpu["rows"] if r["failed"]]
        if failed:
            L.append(f"   WARNING: {sum(r['failed'] for r in failed)} requests failed in {len(failed)} windows "
                     f"({', '.join(sorted({r['server'] + ' ' + r['mode'] for r in failed}))}); see bench-results.json")
        other = max(s[m]["cpu0_other_load"] or 0 for m in ("keep-alive", "pipelined x16"))
        if other > 0.1:
            L.append(f"   WARNING: other processes took up to {other:.0%} of CPU 0 during these windows: absolute "
                     f"figures are inflated (caches, wake-ups); compare the ratios of this run, or rerun on a "
                     f"quiet machine (or with --nice -10)")
    cg, st = results.get("callgrind"), results.get("strace")
    if cg or st:
        L.append("")
        L.append("2. Deterministic counts per request (one keep-alive connection, exact_client.py; "
                 "(count(N2) - count(N1)) / (N2 - N1))")
        L.append(f"   {'':32}" + "".join(f"{k:>10}" for k in SERVERS))
        for mode in ("keep-alive", "pipelined x16"):
            L.append(f"   {'instructions, ' + mode:32}" + "".join(
                f"{fmt(cg.get(k, {}).get(mode, {}).get('per_request'), '{:,.0f}'):>10}" for k in SERVERS))
            d = cg.get("node", {}).get(mode)
            if d:
                L.append(f"     node's single windows ranged {d['window_min']:,.0f} to {d['window_max']:,.0f}, mean "
                         f"{d['window_mean']:,.0f} (JIT and GC; the figure pools {d['pairs']} pairs of windows)")
        stl = results.get("strace_load", {})
        for title, table in (("syscalls, ", st), ("syscalls 64 conns, ", stl)):
            for mode in ("keep-alive", "pipelined x16"):
                L.append(f"   {title + mode:32}" + "".join(
                    f"{fmt(table.get(k, {}).get(mode, {}).get('per_request'), '{:.3f}'):>10}" for k in SERVERS))
        L.append("     (\"64 conns\": under h2load -c 64 with the server on CPU 0, windows of N1 < N2 requests; "
                 "epoll_wait is shared by the connections ready together)")
        for title, table in (("", st), ("64 conns ", stl)):
            for k in SERVERS:
                for mode in ("keep-alive", "pipelined x16"):
                    d = table.get(k, {}).get(mode)
                    if d:
                        parts = sorted(d["by_syscall"].items(), key=lambda kv: -kv[1])
                        L.append(f"     {k:5} {title}{mode:14} " + ", ".join(f"{nm} {v:.3f}" for nm, v in parts))
        prof = results.get("profile", {})
        for mode in ("keep-alive", "pipelined x16"):
            rows = prof.get(mode, {}).get("self", [])[:8]
            if rows:
                L.append(f"   hello worker top self costs, {mode} (instructions/request; "
                         f"full list in bench-profile.txt):")
                for ir, pct, name in rows:
                    short = re.sub(r"\s*\[.*\]$", "", name)
                    L.append(f"     {ir:8.1f}  {short[:110]}")
    load = results.get("load")
    if load:
        L.append("")
        L.append("3. Throughput and latency (wrk, 64 connections, reported only; with pipelining wrk's "
                 "latency is per batch of 16)")
        L.append(f"   {'server':8}{'workers':>8}{'depth':>7}{'req/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
        for r in load:
            L.append(f"   {r['server']:8}{r['workers']:>8}{r['depth']:>7}{r['rps']:>12,.0f}"
                     f"{fmt(r['p50_ms']):>9}{fmt(r['p99_ms']):>9}{r['errors']:>8}")
    mem = results.get("memory")
    if mem:
        L.append("")
        L.append("4. Memory under load (largest sample during section 1, from /proc/PID/smaps_rollup), MiB")
        L.append(f"   {'server':8}{'worker RSS':>12}{'worker PSS':>12}{'master RSS':>12}")
        for k in SERVERS:
            w, m = mem.get(k, {}).get("worker"), mem.get(k, {}).get("master")
            L.append(f"   {k:8}{fmt(w and w['rss_kib'] / 1024):>12}{fmt(w and w['pss_kib'] / 1024):>12}"
                     f"{fmt(m and m['rss_kib'] / 1024):>12}")
    life = results.get("lifecycle")
    if life:
        L.append("")
        L.append("5. Lifecycle, ms (medians)")
        L.append(f"   {'server':8}{'exec->ready line (2w)':>24}{'exec->first response (2w)':>28}"
                 f"{'kill -9 -> served by new worker':>34}")
        for k in ("hello", "epoll", "node", "nginx"):
            r, p = life["ready"].get(k, {}), life["replace"].get(k, {})
            note = ""
            if p:
                n = len(p["trials"])
                note += f"  (first connection served in {p['first_connection_served']}/{n}"
                if p.get("refused"):
                    note += f"; {p['refused']} connects refused"
                if p.get("lost"):
                    note += f"; {p['lost']} connections reset or never answered"
                note += ")"
            if not p.get("all_by_new", True):
                note += "  (NOT all served by a new pid!)"
            if k == "epoll":
                note = "  (one process: the cost of starting any program here)"
            L.append(f"   {k:8}{fmt(r.get('ready_line_ms'), '{:.1f}'):>24}"
                     f"{fmt(r.get('first_response_ms'), '{:.1f}'):>28}"
                     f"{fmt(p.get('served_ms'), '{:.1f}'):>34}" + note)
    msg = results.get("messaging")
    if msg:
        L.append("")
        L.append("6. Messaging, worker <-> master (issue 6)")
        for peer in ("node", "cluster"):
            d = msg.get(peer)
            if d:
                L.append(f"   {peer:8} {d['round_trips_per_s']:>12,.0f} round trips/s ({d['round_trip_us']:.1f} us)"
                         f" {d['one_way_per_s']:>12,.0f} one-way messages/s")
            else:
                L.append(f"   {peer:8} not measured yet (benchmarks/cluster_messaging.cpp, issue 6)")
    if results.get("routing"):
        L += render_routing(results["routing"])
    L += render_growth(results)
    if any(v["measured"] is not None for v in results["verdicts"]):
        L.append("")
        L.append("Targets (issue 5 and 6; hello, one worker)")
    for v in results["verdicts"] if any(v["measured"] is not None for v in results["verdicts"]) else []:
        unit = v["unit"]
        meas = v["measured"]
        if meas is None:
            ms = "-"
        elif unit == "x":
            ms = f"{meas:.2f}x"
        elif v["key"].startswith("instr"):
            ms = f"{meas:,.0f}"
        elif v["key"].startswith("sys"):
            ms = f"{meas:.3f}"
        else:
            ms = f"{meas:.2f}{unit}"
        tgt = ("<= " if v["direction"] == "le" else ">= ") + (f"{v['target']}x" if unit == "x" else
                                                               f"{v['target']:,}{unit}")
        L.append(f"   {v['label']:46}{ms:>12}   {tgt:>12}   {v['verdict']}")
    return "\n".join(L)


# --------------------------------------------------------------------------
# 7. routing (issue 14): a router of 50 routes beside the plain handler
# --------------------------------------------------------------------------

ROUTED_PATH = "/users/42"  # benchmarks/router_hello.cpp: the 50th route, GET /users/:id


def section_routing(args, prof, paths, work, results):
    """What a request spends in routing: benchmarks/router_hello (50 routes,
    the matched one last, with a parameter) against examples/hello (a plain
    handler), one worker each, in the same run: callgrind instructions per
    request on one keep-alive connection, and server CPU time per request
    under h2load, the two servers measured in alternation."""
    log("7. routing: router_hello (50 routes) beside hello, one worker each")
    targets = {"hello": "/", "router": ROUTED_PATH}
    out = dict(routes=50, path=ROUTED_PATH, instructions={}, cpu_us={}, rows=[])
    for kind, path in targets.items():
        cg = callgrind_server(args, kind, paths, work, prof["cg_ka"], prof["cg_pipe"], path=path)
        out["instructions"][kind] = {mode: d["per_request"] for mode, d in cg.items()}
    servers = {k: Server(k, paths, work, workers=1, wrap=nice_wrap(args) + pin(SERVER_CPU)).start() for k in targets}
    try:
        for s in servers.values():
            s.wait_ready(30)
        modes = [("keep-alive", 1), ("pipelined x16", 16)]
        # Windows sized as in section 1: cpu_target seconds of server CPU
        # (the tick of utime+stime is 10 ms), within [min_wall, max_wall].
        sizes = {}
        for mode, depth in modes:
            for kind, path in targets.items():
                cal = prof["cal_ka"] if depth == 1 else prof["cal_pipe"]
                run_h2load(args, servers[kind].port, cal, depth, path=path)  # warm-up
                pids = servers[kind].tree()
                ns0 = sched_ns(pids)
                r = run_h2load(args, servers[kind].port, cal, depth, path=path)
                cpu_per_req = max((sched_ns(pids) - ns0) / 1e9 / max(r["succeeded"], 1), 1e-8)
                want = min(max(prof["cpu_target"] / cpu_per_req, r["rps"] * prof["min_wall"]),
                           r["rps"] * prof["max_wall"])
                unit = 64 * depth
                sizes[(kind, mode)] = max(unit * 8, int(want) // unit * unit)
        for rnd in range(prof["rounds"] * 2):
            order = list(targets) if rnd % 2 == 0 else list(reversed(targets))
            for mode, depth in modes:
                for kind in order:
                    pids = servers[kind].tree()
                    n = sizes[(kind, mode)]
                    u0, s0 = cpu_ticks(pids)
                    ns0 = sched_ns(pids)
                    h = run_h2load(args, servers[kind].port, n, depth, path=targets[kind])
                    u1, s1 = cpu_ticks(pids)
                    ns1 = sched_ns(pids)
                    served = h["succeeded"]
                    if h["failed"] + h["errored"] + h["timeout"]:
                        raise BenchError(f"routing: {kind} failed requests under h2load: {h}")
                    row = dict(round=rnd, server=kind, mode=mode, requests=n, succeeded=served,
                               cpu_us=((u1 - u0) + (s1 - s0)) / CLK_TCK / served * 1e6 if served else None,
                               schedstat_us=(ns1 - ns0) / 1e3 / served if served else None)
                    out["rows"].append(row)
                    log(f"   round {rnd + 1}/{prof['rounds'] * 2} {mode:14} {kind:6} {fmt(row['cpu_us'])} us/req "
                        f"(schedstat {fmt(row['schedstat_us'])})")
        for mode, _ in modes:
            out["cpu_us"][mode] = {
                k: dict(ticks=median([r["cpu_us"] for r in out["rows"] if r["server"] == k and r["mode"] == mode]),
                        schedstat=median([r["schedstat_us"] for r in out["rows"]
                                          if r["server"] == k and r["mode"] == mode]))
                for k in targets}
    finally:
        for s in servers.values():
            s.stop()
    results["routing"] = out


def render_routing(r):
    L = ["", f"7. Routing (issue 14): a router of {r['routes']} routes (GET {r['path']} matches the last, "
             "a parameter) beside the plain hello handler, one worker each"]
    L.append(f"   {'':52}{'hello':>10}{'router':>10}{'routing':>10}")
    for mode in ("keep-alive", "pipelined x16"):
        ins = {k: r["instructions"].get(k, {}).get(mode) for k in ("hello", "router")}
        if ins["hello"] is not None and ins["router"] is not None:
            L.append(f"   {'instructions/request (callgrind), ' + mode:52}{ins['hello']:>10,.0f}{ins['router']:>10,.0f}"
                     f"{ins['router'] - ins['hello']:>+10,.0f}")
    for mode, per in r["cpu_us"].items():
        for source in ("ticks", "schedstat"):
            a, b = per["hello"][source], per["router"][source]
            label = f"CPU us/request ({'utime+stime' if source == 'ticks' else 'schedstat'}), {mode}"
            diff = f"{b - a:>+10.2f}" if a is not None and b is not None else f"{'-':>10}"
            L.append(f"   {label:52}{fmt(a):>10}{fmt(b):>10}{diff}")
    return L


# --------------------------------------------------------------------------
# 8-12. growth (issue 15): connections, response sizes, request bodies,
# memory per idle connection, io_uring beside epoll
# --------------------------------------------------------------------------

# Flags for every cluster program in the growth sections: room for 10,000
# connections (max_connections is 10,000 by default, the accept queue 1,024),
# and an idle timeout longer than any section, as nginx's keepalive_timeout
# 300s and Node's keepAliveTimeout 65 s are.
GROWTH_CLUSTER_ARGS = ["--max-connections", "20000", "--backlog", "4096", "--idle-timeout", "600000"]
GROWTH_NGINX_CONNS = 20000  # worker_connections; also its accept queue, capped by somaxconn
CONNECTION_COUNTS = (1, 64, 1000, 10000)
SIZE_NAMES = ("12", "4k", "64k", "1m")
SIZE_BYTES = {"12": 12, "4k": 4096, "64k": 65536, "1m": 1048576}
POST_SIZES = (("1k", 1024), ("64k", 65536))
IDLE_CONNECTIONS = 10000

# Issue 15's targets: key, label, limit, direction, unit (as TARGETS).
GROWTH_TARGETS = [
    ("conn_10k_vs_epoll", "CPU/request, 10,000 conns keep-alive vs epoll", 1.15, "le", "x"),
    ("size_64k_mem_vs_sendfile", "CPU/request 64 KiB /mem vs nginx sendfile", 1.0, "le", "x"),
    ("size_64k_file_vs_sendfile", "CPU/request 64 KiB /file vs nginx sendfile", 1.0, "le", "x"),
    ("size_1m_mem_vs_sendfile", "CPU/request 1 MiB /mem vs nginx sendfile", 1.0, "le", "x"),
    ("size_1m_file_vs_sendfile", "CPU/request 1 MiB /file vs nginx sendfile", 1.0, "le", "x"),
    # A body must not cost cluster its lead over Node: no worse a ratio than
    # hello keep-alive has (0.32x in the README's last full run), rounded
    # up. Both pay the kernel's copy of the body; what is left is each
    # one's own receive path (a body read in pieces and joined, or grown
    # buffer by buffer, shows as a ratio creeping towards Node's).
    ("post_1k_vs_node", "CPU/request POST 1 KiB vs Node", 0.35, "le", "x"),
    ("post_64k_vs_node", "CPU/request POST 64 KiB vs Node", 0.35, "le", "x"),
    ("idle_kib", "memory per idle keep-alive conn, 10,000 open (KiB)", 1.0, "le", " KiB"),
    # After the 10,000 close, what the worker keeps: allocator caches may
    # keep a little, not what the connections held (~100 B a connection).
    ("idle_kept_mib", "worker RSS kept after they close (MiB)", 1.0, "le", " MiB"),
]


def raise_fd_limit():
    """Soft RLIMIT_NOFILE up to the hard limit, for this process and every
    child (h2load, the servers, the idle client each hold up to 10,000
    sockets; each process has a limit of its own)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def need_fds(count):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < count + 200:
        raise BenchError(f"the hard descriptor limit is {hard} (ulimit -Hn): {count} connections need "
                         f"at least {count + 200}")


def window_size(prof, cpu_per_req, rps, unit):
    """Requests for cpu_target seconds of server CPU, within [min_wall,
    max_wall] seconds at the measured rate, a multiple of unit (at least one)."""
    want = prof["cpu_target"] / max(cpu_per_req, 1e-8)
    want = min(max(want, rps * prof["min_wall"]), rps * prof["max_wall"])
    return max(unit, -(-int(want) // unit) * unit)  # rounded up: 10,000 connections make a coarse unit


def cpu_window(args, server, case, n, sample=None):
    """One h2load window on `case` (path, conns, depth, extra): the server's
    utime+stime and schedstat, in us per request, and what h2load saw."""
    pids = server.tree()
    u0, s0 = cpu_ticks(pids)
    ns0 = sched_ns(pids)
    t0 = time.perf_counter()
    h = run_h2load(args, server.port, n, case["depth"], sample=sample, timeout=300.0, path=case["path"],
                   conns=case["conns"], extra=case.get("extra", ()))
    t1 = time.perf_counter()
    u1, s1 = cpu_ticks(pids)
    ns1 = sched_ns(pids)
    return dict(requests=n, succeeded=h["succeeded"], failed=h["failed"] + h["errored"] + h["timeout"],
                ticks=(u1 - u0) + (s1 - s0), ns=ns1 - ns0, seconds=t1 - t0, rps=h["rps"])


def measure_cases(args, prof, servers, groups, diff, sampler=None, tag=""):
    """Server CPU time per request for every case of every group, in
    interleaved rounds (the order of a group's cases rotates each round).
    A case is dict(key, server, path, conns, depth[, extra]). Single
    windows (diff False): CPU / requests. Difference windows (diff True):
    two windows of N1 < N2 requests on fresh connections, (CPU(N2) -
    CPU(N1)) / (N2 - N1), so that opening and closing thousands of
    connections does not count, only serving requests on them.
    Returns rows: dict(round, key, cpu_us, schedstat_us, ...)."""
    sizes = {}
    for group, cases in groups:
        for case in cases:
            s = servers[case["server"]]
            unit = case["conns"] * case["depth"]
            cal = max(unit * 2, prof["cal_ka"] if case["depth"] == 1 else prof["cal_pipe"])
            cal = -(-cal // unit) * unit
            cpu_window(args, s, case, cal)  # also the warm-up (Node's JIT, page cache, allocator)
            w = cpu_window(args, s, case, cal)
            per = w["ns"] / 1e9 / max(w["succeeded"], 1)
            if diff:
                # The cost of a request alone, without the connections' (2 x cal on
                # fresh connections against cal): what the difference windows measure.
                b = cpu_window(args, s, case, 2 * cal)
                per = max((b["ns"] - w["ns"]) / 1e9 / max(b["succeeded"] - w["succeeded"], 1), 1e-8)
            n = window_size(prof, per, w["rps"], unit)
            # Difference windows: N1 is at least 2 requests a connection, N2 - N1 the sized window.
            sizes[case["key"]] = (max(2 * unit, n // 2 // unit * unit), n) if diff else (n,)
    log(f"   {tag} window sizes (requests): " + ", ".join(f"{k}={'/'.join(map(str, v))}" for k, v in sizes.items()))
    rows = []
    for rnd in range(prof["rounds"]):
        for group, cases in groups:
            order = cases[rnd % len(cases):] + cases[:rnd % len(cases)]
            for case in order:
                s = servers[case["server"]]
                smp = sampler(case) if sampler else None
                if diff:
                    n1, n2 = sizes[case["key"]]
                    n2 = n1 + n2
                    a = cpu_window(args, s, case, n1, smp)
                    b = cpu_window(args, s, case, n2, smp)
                    served = b["succeeded"] - a["succeeded"]
                    failed = a["failed"] + b["failed"]
                    ticks, ns = b["ticks"] - a["ticks"], b["ns"] - a["ns"]
                    n = f"{n2}-{n1}"
                else:
                    b = cpu_window(args, s, case, sizes[case["key"]][0], smp)
                    served, failed, ticks, ns, n = b["succeeded"], b["failed"], b["ticks"], b["ns"], b["requests"]
                row = dict(round=rnd, group=group, key=case["key"], server=case["server"], conns=case["conns"],
                           depth=case["depth"], requests=n, succeeded=served, failed=failed,
                           cpu_us=ticks / CLK_TCK / served * 1e6 if served > 0 else None,
                           schedstat_us=ns / 1e3 / served if served > 0 else None)
                rows.append(row)
                warn = f", {failed} FAILED" if failed else ""
                log(f"   {tag} round {rnd + 1}/{prof['rounds']} {case['key']:28} {fmt(row['cpu_us'])} us/req "
                    f"(schedstat {fmt(row['schedstat_us'])}){warn}")
    return rows


def case_median(rows, key, field="cpu_us"):
    return median([r[field] for r in rows if r["key"] == key])


def round_ratio(rows, key_a, key_b, field="cpu_us"):
    """Median over rounds of a/b, each ratio taken within one round."""
    rs = []
    for rnd in sorted({r["round"] for r in rows}):
        a = [r[field] for r in rows if r["key"] == key_a and r["round"] == rnd]
        b = [r[field] for r in rows if r["key"] == key_b and r["round"] == rnd]
        if a and b and a[0] and b[0]:
            rs.append(a[0] / b[0])
    return median(rs)


def start_servers(specs):
    """specs: name -> Server (not started). Starts them all, then waits."""
    for s in specs.values():
        s.start()
    for s in specs.values():
        s.wait_ready(60)
    return specs


def stop_servers(servers):
    for s in servers.values():
        s.stop()


def section_connections(args, prof, paths, work, results):
    """CPU per request at 1, 64, 1,000 and 10,000 keep-alive connections:
    hello, the raw-epoll ceiling and nginx, difference windows."""
    log("8. connections: hello, epoll, nginx at " + ", ".join(map(str, prof["conn_counts"])) + " keep-alive connections")
    need_fds(max(prof["conn_counts"]))
    wrap = nice_wrap(args) + pin(SERVER_CPU)
    servers = {}
    try:
        servers = start_servers({
            "hello": Server("hello", paths, work, wrap=wrap, extra=GROWTH_CLUSTER_ARGS, label="hello-conns"),
            "epoll": Server("epoll", paths, work, wrap=wrap, label="epoll-conns"),
            "nginx": Server("nginx", paths, work, wrap=wrap, max_conns=GROWTH_NGINX_CONNS, label="nginx-conns")})
        groups = [(c, [dict(key=f"{k}/{c}", server=k, path="/", conns=c, depth=1) for k in ("hello", "epoll", "nginx")])
                  for c in prof["conn_counts"]]
        rows = measure_cases(args, prof, servers, groups, diff=True, tag="conns")
    finally:
        stop_servers(servers)
    summary = {}
    for c in prof["conn_counts"]:
        summary[c] = dict(cpu_us={k: case_median(rows, f"{k}/{c}") for k in ("hello", "epoll", "nginx")},
                          schedstat_us={k: case_median(rows, f"{k}/{c}", "schedstat_us")
                                        for k in ("hello", "epoll", "nginx")},
                          vs_epoll=round_ratio(rows, f"hello/{c}", f"epoll/{c}"),
                          vs_nginx=round_ratio(rows, f"hello/{c}", f"nginx/{c}"))
    results["connections"] = dict(rows=rows, summary=summary)


def write_body_files(work):
    """The files of the sizes section: SIZE_NAMES in a directory that nginx
    (maybe running as nobody) can read. Bytes that compress badly, so no
    layer could shortcut them."""
    d = work / "bodies"
    d.mkdir(exist_ok=True)
    d.chmod(0o755)
    for name in SIZE_NAMES:
        p = d / name
        p.write_bytes(os.urandom(SIZE_BYTES[name]))
        p.chmod(0o644)
    return d


def section_sizes(args, prof, paths, work, results):
    """CPU per request by response size: benchmarks/bodies from memory and
    from files beside nginx serving the same files with sendfile on and off,
    64 keep-alive connections."""
    log("9. response sizes: bodies (/mem, /file) beside nginx sendfile on/off, 64 connections")
    d = write_body_files(work)
    wrap = nice_wrap(args) + pin(SERVER_CPU)
    servers = {}
    try:
        servers = start_servers({
            "bodies": Server("bodies", paths, work, wrap=wrap, extra=["--dir", str(d)] + GROWTH_CLUSTER_ARGS),
            "nginx_sendfile": Server("nginx", paths, work, wrap=wrap, files=(d, True), label="nginx-sendfile"),
            "nginx_read": Server("nginx", paths, work, wrap=wrap, files=(d, False), label="nginx-read")})
        groups = []
        for name in prof["sizes"]:
            groups.append((name, [dict(key=f"mem/{name}", server="bodies", path=f"/mem/{name}", conns=64, depth=1),
                                  dict(key=f"file/{name}", server="bodies", path=f"/file/{name}", conns=64, depth=1),
                                  dict(key=f"sendfile/{name}", server="nginx_sendfile", path=f"/{name}", conns=64,
                                       depth=1),
                                  dict(key=f"read/{name}", server="nginx_read", path=f"/{name}", conns=64, depth=1)]))
        rows = measure_cases(args, prof, servers, groups, diff=False, tag="sizes")
    finally:
        stop_servers(servers)
    summary = {}
    for name in prof["sizes"]:
        summary[name] = dict(cpu_us={k: case_median(rows, f"{k}/{name}") for k in ("mem", "file", "sendfile", "read")},
                             ratios={f"{a}/{b}": round_ratio(rows, f"{a}/{name}", f"{b}/{name}")
                                     for a in ("mem", "file") for b in ("sendfile", "read")})
    results["sizes"] = dict(rows=rows, summary=summary)


def section_bodies(args, prof, paths, work, results):
    """CPU per request and peak worker RSS for POST bodies of 1 KiB and
    64 KiB: benchmarks/bodies' POST /echo-size beside node_hello.js --mode
    bodies, 64 keep-alive connections."""
    log("10. request bodies: POST 1 KiB and 64 KiB, bodies beside Node, 64 connections")
    d = write_body_files(work)
    post = {}
    for name, size in POST_SIZES:
        p = work / f"post-{name}"
        p.write_bytes(b"x" * size)
        post[name] = p
    wrap = nice_wrap(args) + pin(SERVER_CPU)
    servers = {}
    peak = {}

    def sampler(case):
        s = servers[case["server"]]
        workers = s.worker_pids()

        def sample():
            for pid in workers:
                rss, _ = smaps_rollup(pid)
                if rss is not None:
                    peak[case["key"]] = max(peak.get(case["key"], 0), rss)
        return sample

    try:
        servers = start_servers({
            "bodies": Server("bodies", paths, work, wrap=wrap, extra=["--dir", str(d)] + GROWTH_CLUSTER_ARGS),
            "node": Server("node", paths, work, wrap=wrap, extra=["--mode", "bodies"], label="node-bodies")})
        groups = [(name, [dict(key=f"{k}/{name}", server=k, path="/echo-size", conns=64, depth=1,
                               extra=("-d", str(post[name]))) for k in ("bodies", "node")])
                  for name, _ in POST_SIZES]
        # Each answer says how many bytes arrived: check one of each first.
        for name, size in POST_SIZES:
            for k in ("bodies", "node"):
                got = post_once(servers[k].port, post[name].read_bytes())
                if got != size:
                    raise BenchError(f"bodies: {k} answered {got!r} for a POST of {size} bytes")
        rows = measure_cases(args, prof, servers, groups, diff=False, sampler=sampler, tag="bodies")
    finally:
        stop_servers(servers)
    summary = {}
    for name, _ in POST_SIZES:
        summary[name] = dict(cpu_us={k: case_median(rows, f"{k}/{name}") for k in ("bodies", "node")},
                             ratio=round_ratio(rows, f"bodies/{name}", f"node/{name}"),
                             peak_rss_kib={k: peak.get(f"{k}/{name}") for k in ("bodies", "node")})
    results["bodies"] = dict(rows=rows, summary=summary)


def post_once(port, body):
    """POST /echo-size with body on a new connection; the number answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /echo-size HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        data = b""
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + response_length(data):
            if time.monotonic() > deadline:
                break
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    try:
        return int(rest.strip())
    except ValueError:
        return head[:80]


def response_length(data):
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", data[:data.find(b"\r\n\r\n") + 2], re.I)
    return int(m.group(1)) if m else 0


class IdleClients:
    """Holds `count` keep-alive connections to 127.0.0.1:port, each of which
    sent one GET / and read its whole answer, then stays idle. Connects at
    most `burst` at a time (so the accept queue never overflows), all in
    this process through one selector. Bounded by `timeout` seconds."""

    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    def __init__(self, port, count, timeout=60.0, burst=512):
        self.port, self.count, self.timeout, self.burst = port, count, timeout, burst
        self.socks = []

    def open(self):
        sel = selectors.DefaultSelector()
        state = {}  # sock -> received bytes
        started = answered = 0
        deadline = time.monotonic() + self.timeout
        try:
            while answered < self.count:
                while started < self.count and started - answered < self.burst:
                    s = socket.socket()
                    s.setblocking(False)
                    self.socks.append(s)
                    err = s.connect_ex(("127.0.0.1", self.port))
                    if err not in (0, errno.EINPROGRESS):
                        raise BenchError(f"idle client: connect: {os.strerror(err)}")
                    sel.register(s, selectors.EVENT_WRITE)
                    started += 1
                if time.monotonic() > deadline:
                    raise BenchError(f"idle client: {answered} of {self.count} connections answered "
                                     f"within {self.timeout} s")
                for key, ev in sel.select(timeout=0.5):
                    s = key.fileobj
                    if ev & selectors.EVENT_WRITE:
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            raise BenchError(f"idle client: connect: {os.strerror(err)}")
                        s.send(self.request)  # 36 bytes into an empty send buffer
                        state[s] = b""
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                    chunk = s.recv(65536)
                    if not chunk:
                        raise BenchError("idle client: the server closed a connection before answering")
                    data = state[s] + chunk
                    state[s] = data
                    end = data.find(b"\r\n\r\n")
                    if end >= 0 and len(data) >= end + 4 + response_length(data):
                        if not data.startswith(b"HTTP/1.1 200"):
                            raise BenchError(f"idle client: answer {data[:40]!r}")
                        sel.unregister(s)
                        answered += 1
        finally:
            sel.close()

    def still_open(self):
        """How many of the connections the server has not closed (a
        non-blocking peek finds no EOF)."""
        n = 0
        for s in self.socks:
            try:
                n += s.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                n += 1
            except OSError:
                pass
        return n

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = []


def worker_rss(server):
    """(Rss, Pss) in KiB, summed over the server's worker processes."""
    rss = pss = 0
    for pid in server.worker_pids():
        r, p = smaps_rollup(pid)
        rss += r or 0
        pss += p or 0
    return rss, pss


# A server's own housekeeping of idle connections comes first: cluster parks
# a connection idle for a heartbeat interval (0.5 s), and trims its heap.
IDLE_SETTLE_S = 1.5


def settle_rss(server, seconds, at_least=0.0):
    """Worker RSS once it stops changing (two equal samples 0.2 s apart),
    no sooner than `at_least` and at most `seconds` from now."""
    deadline = time.monotonic() + seconds
    if at_least:
        time.sleep(at_least)
    last = worker_rss(server)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        cur = worker_rss(server)
        if cur == last:
            break
        last = cur
    return last


def section_idle(args, prof, paths, work, results):
    """Memory per idle keep-alive connection: a fresh server per round,
    worker RSS before, with IDLE_CONNECTIONS idle connections (each served
    one request), and after they all closed."""
    count = prof["idle_conns"]
    log(f"11. memory per idle connection: {count:,} idle keep-alive connections to hello, nginx, node")
    need_fds(count)
    kinds = ("hello", "nginx", "node")
    rows = []
    for rnd in range(prof["idle_rounds"]):
        for kind in kinds[rnd % 3:] + kinds[:rnd % 3]:
            s = Server(kind, paths, work, wrap=nice_wrap(args) + pin(SERVER_CPU), label=f"{kind}-idle",
                       extra=GROWTH_CLUSTER_ARGS if kind == "hello" else (),
                       max_conns=GROWTH_NGINX_CONNS if kind == "nginx" else None)
            clients = IdleClients(0, count)
            try:
                s.start().wait_ready(60)
                # One request first: what every server allocates once (Node's
                # JIT, lazily built tables) is not a connection's cost.
                c = ExactClient(s.port, timeout=10)
                c.run(16)
                c.close()
                before = settle_rss(s, 2.0)
                clients.port = s.port
                t0 = time.perf_counter()
                clients.open()
                opened_s = time.perf_counter() - t0
                held = settle_rss(s, IDLE_SETTLE_S + 2.0, IDLE_SETTLE_S)
                still = clients.still_open()
                clients.close()
                after = settle_rss(s, IDLE_SETTLE_S + prof["idle_close_wait"], IDLE_SETTLE_S)
            finally:
                clients.close()
                s.stop()
            row = dict(round=rnd, server=kind, connections=count, open_seconds=opened_s, still_open=still,
                       rss_before_kib=before[0], rss_idle_kib=held[0], rss_after_close_kib=after[0],
                       pss_before_kib=before[1], pss_idle_kib=held[1], pss_after_close_kib=after[1],
                       per_conn_kib=(held[0] - before[0]) / count, kept_after_close_kib=after[0] - before[0])
            rows.append(row)
            log(f"   round {rnd + 1}/{prof['idle_rounds']} {kind:5} {row['per_conn_kib']:.2f} KiB/conn "
                f"(RSS {before[0] / 1024:.1f} -> {held[0] / 1024:.1f} -> {after[0] / 1024:.1f} MiB after close; "
                f"{still} of {count} still open before the close; opened in {opened_s:.1f} s)")
    summary = {k: dict(per_conn_kib=median([r["per_conn_kib"] for r in rows if r["server"] == k]),
                       kept_after_close_kib=median([r["kept_after_close_kib"] for r in rows if r["server"] == k]),
                       rss_before_kib=median([r["rss_before_kib"] for r in rows if r["server"] == k]),
                       rss_idle_kib=median([r["rss_idle_kib"] for r in rows if r["server"] == k]),
                       all_open=all(r["still_open"] == count for r in rows if r["server"] == k))
               for k in kinds}
    ratios = {}
    for peer in ("nginx", "node"):
        rs = []
        for rnd in range(prof["idle_rounds"]):
            a = [r["per_conn_kib"] for r in rows if r["server"] == "hello" and r["round"] == rnd]
            b = [r["per_conn_kib"] for r in rows if r["server"] == peer and r["round"] == rnd]
            if a and b and b[0] > 0:
                rs.append(a[0] / b[0])
        ratios[peer] = median(rs)
    results["idle"] = dict(rows=rows, summary=summary, hello_ratio=ratios, connections=count)


def section_uring(args, prof, paths, work, results):
    """examples/hello built on epoll (build-bench) and on io_uring
    (BUILD_DIR-uring, -Dio_uring=enabled): CPU and system calls per request
    at 64 and 10,000 connections, keep-alive and 16-deep pipelined."""
    log("12. io_uring: hello on epoll beside hello on io_uring, 64 and 10,000 connections")
    need_fds(max(prof["uring_conns"]))
    wrap = nice_wrap(args) + pin(SERVER_CPU)
    servers = {}
    try:
        servers = start_servers({
            "hello": Server("hello", paths, work, wrap=wrap, extra=GROWTH_CLUSTER_ARGS, label="hello-epoll"),
            "hello_uring": Server("hello_uring", paths, work, wrap=wrap, extra=GROWTH_CLUSTER_ARGS,
                                  label="hello-uring")})
        groups = [(f"{c}/{d}", [dict(key=f"{k}/{c}/{d}", server=k, path="/", conns=c, depth=d)
                                for k in ("hello", "hello_uring")])
                  for c in prof["uring_conns"] for d in (1, 16)]
        rows = measure_cases(args, prof, servers, groups, diff=True, tag="uring")
    finally:
        stop_servers(servers)
    syscalls = {}
    for k in ("hello", "hello_uring"):
        s = Server(k, paths, work, wrap=wrap, extra=GROWTH_CLUSTER_ARGS, label=f"{k}-uring-strace").start()
        try:
            s.wait_ready(60)
            pids = s.tree()
            for c in prof["uring_conns"]:
                client = H2loadClient(args, s.port, conns=c, tolerant=c > 64)
                for d in (1, 16):
                    # As section 2's loaded counts (strace makes every call slow),
                    # in whole rounds of one batch per connection.
                    unit = c * d
                    lo, hi = prof["st_load_ka"] if d == 1 else prof["st_load_pipe"]
                    n1 = -(-max(unit, lo) // unit) * unit
                    n2 = max(2 * n1, -(-hi // unit) * unit)
                    client.run(n1, d)  # warm
                    syscalls[f"{k}/{c}/{d}"] = strace_pair(pids, client, n1, n2, d, work, f"{k}-uring-{c}-{d}",
                                                           f"{k:11} {c:>5} conns depth {d:2}",
                                                           exclude=CONNECTION_CALLS if c > 64 else frozenset())
        finally:
            s.stop()
    summary = {}
    for c in prof["uring_conns"]:
        for d in (1, 16):
            summary[f"{c}/{d}"] = dict(
                cpu_us={k: case_median(rows, f"{k}/{c}/{d}") for k in ("hello", "hello_uring")},
                ratio=round_ratio(rows, f"hello_uring/{c}/{d}", f"hello/{c}/{d}"),
                syscalls={k: syscalls[f"{k}/{c}/{d}"]["per_request"] for k in ("hello", "hello_uring")},
                by_syscall={k: syscalls[f"{k}/{c}/{d}"]["by_syscall"] for k in ("hello", "hello_uring")})
    results["uring"] = dict(rows=rows, summary=summary)


def growth_verdicts(results):
    v = {}
    conns = results.get("connections", {}).get("summary", {})
    if conns:
        v["conn_10k_vs_epoll"] = conns.get(max(conns), {}).get("vs_epoll") if max(conns) >= 10000 else None
    sizes = results.get("sizes", {}).get("summary", {})
    for name in ("64k", "1m"):
        if name in sizes:
            v[f"size_{name}_mem_vs_sendfile"] = sizes[name]["ratios"]["mem/sendfile"]
            v[f"size_{name}_file_vs_sendfile"] = sizes[name]["ratios"]["file/sendfile"]
    bodies = results.get("bodies", {}).get("summary", {})
    for name, _ in POST_SIZES:
        if name in bodies:
            v[f"post_{name}_vs_node"] = bodies[name]["ratio"]
    idle = results.get("idle", {})
    if idle and idle.get("connections") == IDLE_CONNECTIONS:
        v["idle_kib"] = idle["summary"]["hello"]["per_conn_kib"]
        v["idle_kept_mib"] = idle["summary"]["hello"]["kept_after_close_kib"] / 1024
    return [verdict_row(key, label, limit, direction, unit, v.get(key))
            for key, label, limit, direction, unit in GROWTH_TARGETS]


def verdict_row(key, label, limit, direction, unit, val):
    if val is None:
        verdict = "n/a"
    elif direction == "le":
        verdict = "PASS" if val <= limit else "MISS"
    else:
        verdict = "PASS" if val >= limit else "MISS"
    return dict(key=key, label=label, measured=val, target=limit, direction=direction, unit=unit, verdict=verdict)


def target_text(key, results):
    """'<= 1.15x  PASS' for a row of the growth tables that has a target."""
    for row in results.get("growth_verdicts", []):
        if row["key"] == key:
            tgt = ("<= " if row["direction"] == "le" else ">= ") + f"{row['target']}{row['unit'].strip()}"
            return f"{tgt:>10}  {row['verdict']}"
    return ""


def render_growth(results):
    L = []
    c = results.get("connections")
    if c:
        n = len({r["round"] for r in c["rows"]})
        L += ["", f"8. Connections: CPU us/request at N keep-alive connections (difference windows on fresh "
                  f"connections; median of {n} rounds)",
              f"   {'conns':>7}{'hello':>9}{'epoll':>9}{'nginx':>9}{'hello/epoll':>13}{'hello/nginx':>13}"
              f"{'target':>12}  verdict"]
        for conns, d in c["summary"].items():
            key = "conn_10k_vs_epoll" if int(conns) >= 10000 else None
            L.append(f"   {int(conns):>7,}" + "".join(f"{fmt(d['cpu_us'][k]):>9}" for k in ("hello", "epoll", "nginx"))
                     + f"{fmt(d['vs_epoll'], '{:.2f}x'):>13}{fmt(d['vs_nginx'], '{:.2f}x'):>13}"
                     + (f"  {target_text(key, results)}" if key else ""))
    s = results.get("sizes")
    if s:
        L += ["", "9. Response sizes: CPU us/request, 64 keep-alive connections (bodies: /mem from memory, "
                  "/file read per request; nginx: the same files, sendfile on / off)",
              f"   {'size':>5}{'/mem':>9}{'/file':>9}{'sendfile':>10}{'read':>9}{'mem/sf':>9}{'file/sf':>9}"
              f"{'mem/read':>10}{'file/read':>11}   targets (vs sendfile)"]
        for name, d in s["summary"].items():
            cu, r = d["cpu_us"], d["ratios"]
            tg = ""
            if name in ("64k", "1m"):
                tg = (f"   mem {target_text(f'size_{name}_mem_vs_sendfile', results).strip()}; "
                      f"file {target_text(f'size_{name}_file_vs_sendfile', results).strip()}")
            L.append(f"   {name:>5}{fmt(cu['mem']):>9}{fmt(cu['file']):>9}{fmt(cu['sendfile']):>10}{fmt(cu['read']):>9}"
                     f"{fmt(r['mem/sendfile'], '{:.2f}x'):>9}{fmt(r['file/sendfile'], '{:.2f}x'):>9}"
                     f"{fmt(r['mem/read'], '{:.2f}x'):>10}{fmt(r['file/read'], '{:.2f}x'):>11}" + tg)
    b = results.get("bodies")
    if b:
        L += ["", "10. Request bodies: POST /echo-size (body read whole, its length answered), 64 keep-alive "
                  "connections; CPU us/request, peak worker RSS MiB",
              f"   {'body':>5}{'cluster':>9}{'node':>9}{'ratio':>9}{'cluster RSS':>13}{'node RSS':>10}"
              f"{'target':>12}  verdict"]
        for name, d in b["summary"].items():
            rss = d["peak_rss_kib"]
            L.append(f"   {name:>5}{fmt(d['cpu_us']['bodies']):>9}{fmt(d['cpu_us']['node']):>9}"
                     f"{fmt(d['ratio'], '{:.2f}x'):>9}{fmt(rss['bodies'] and rss['bodies'] / 1024, '{:.1f}'):>13}"
                     f"{fmt(rss['node'] and rss['node'] / 1024, '{:.1f}'):>10}  "
                     + target_text(f"post_{name}_vs_node", results))
    i = results.get("idle")
    if i:
        L += ["", f"11. Memory per idle keep-alive connection ({i['connections']:,} open, each served one request; "
                  f"worker RSS from smaps_rollup, median of {len({r['round'] for r in i['rows']})} rounds)",
              f"   {'server':8}{'KiB/conn':>10}{'RSS before':>12}{'with idle':>11}{'kept after close':>18}"
              f"{'ratio':>8}{'target':>12}  verdict"]
        for k, d in i["summary"].items():
            ratio = "" if k == "hello" else fmt(i["hello_ratio"].get(k), "{:.2f}x")
            note = "" if d["all_open"] else "  (the server closed some of them!)"
            tg = target_text("idle_kib", results) if k == "hello" else ""
            L.append(f"   {k:8}{fmt(d['per_conn_kib']):>10}{d['rss_before_kib'] / 1024:>10.1f}Mi"
                     f"{d['rss_idle_kib'] / 1024:>9.1f}Mi{d['kept_after_close_kib'] / 1024:>16.2f}Mi"
                     f"{ratio:>8}  {tg}{note}")
        L.append(f"   (ratio: hello's KiB/conn over the peer's, within each round; kept after close: "
                 f"{target_text('idle_kept_mib', results).strip()} for hello)")
    u = results.get("uring")
    if u:
        L += ["", "12. io_uring beside epoll: hello built both ways, CPU us/request (difference windows) and "
                  "system calls per request (strace -c -f under h2load; at 10,000 connections without the calls "
                  "that open, set up, close and free connections)",
              f"   {'conns':>7}{'depth':>6}{'epoll':>9}{'uring':>9}{'uring/epoll':>13}{'sys epoll':>11}{'sys uring':>11}"]
        for key, d in u["summary"].items():
            conns, depth = key.split("/")
            L.append(f"   {int(conns):>7,}{depth:>6}{fmt(d['cpu_us']['hello']):>9}{fmt(d['cpu_us']['hello_uring']):>9}"
                     f"{fmt(d['ratio'], '{:.2f}x'):>13}{fmt(d['syscalls']['hello'], '{:.3f}'):>11}"
                     f"{fmt(d['syscalls']['hello_uring'], '{:.3f}'):>11}")
            for k in ("hello", "hello_uring"):
                parts = sorted(d["by_syscall"][k].items(), key=lambda kv: -kv[1])[:5]
                L.append(f"{'':16}{'epoll' if k == 'hello' else 'uring'}: " + ", ".join(f"{nm} {v:.3f}" for nm, v in parts))
    if any(v["measured"] is not None for v in results.get("growth_verdicts", [])):
        L += ["", "Targets (issue 15)"]
        L += [verdict_line(v) for v in results["growth_verdicts"]]
    return L


def verdict_line(v):
    unit, meas = v["unit"], v["measured"]
    if meas is None:
        ms = "-"
    elif unit == "x":
        ms = f"{meas:.2f}x"
    else:
        ms = f"{meas:.2f}{unit}"
    tgt = ("<= " if v["direction"] == "le" else ">= ") + (f"{v['target']}x" if unit == "x" else f"{v['target']:,}{unit}")
    return f"   {v['label']:52}{ms:>12}   {tgt:>12}   {v['verdict']}"


# --------------------------------------------------------------------------
# setup
# --------------------------------------------------------------------------

def check_tools():
    missing = {}
    for tool, pkg in TOOLS.items():
        if shutil.which(tool) is None:
            missing[tool] = pkg
    if missing:
        lines = [f"  {t:20} (Debian package {p})" for t, p in missing.items()]
        pkgs = " ".join(sorted(set(missing.values())))
        raise BenchError("missing tools:\n" + "\n".join(lines) +
                         f"\ninstall them with:\n  apt-get update && apt-get install -y {pkgs}")


def build(args, sections):
    bdir = Path(args.build_dir)
    if not (bdir / "build.ninja").exists():
        log(f"setting up {bdir}: release build (-O3, NDEBUG, -g for the profile)")
        subprocess.run(["meson", "setup", str(bdir), "--buildtype=release", "-Db_ndebug=true", "-Ddebug=true",
                        "-Dtests=disabled", "-Dexamples=enabled", "-Dbenchmarks=enabled"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    opts = {o["name"]: o["value"] for o in json.loads((bdir / "meson-info" / "intro-buildoptions.json").read_text())}
    if opts.get("debug") is False and str(opts.get("optimization")) in ("2", "3"):
        # -g changes no generated code; it gives the profile file and line names.
        subprocess.run(["meson", "configure", str(bdir), "-Ddebug=true"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        opts = {o["name"]: o["value"]
                for o in json.loads((bdir / "meson-info" / "intro-buildoptions.json").read_text())}
    if str(opts.get("optimization")) not in ("2", "3") or opts.get("b_ndebug") not in ("true", "if-release"):
        raise BenchError(f"{bdir} is not a release build (optimization={opts.get('optimization')}, "
                         f"b_ndebug={opts.get('b_ndebug')}): remove it or pick another --build-dir")
    # Only what the chosen sections run (a cluster program takes a minute to compile).
    needs = {"hello": {"cpu", "counts", "load", "lifecycle", "routing", "connections", "idle", "uring"},
             "epoll": {"cpu", "counts", "load", "lifecycle", "connections"},
             "cluster_messaging": {"messaging"}, "router": {"routing"}, "bodies": {"sizes", "bodies"}}
    wanted = {k for k, secs in needs.items() if secs & set(sections)}
    if args.hello:
        wanted.discard("hello")
    target_of = {"hello": "examples/hello", "epoll": "benchmarks/epoll_hello",
                 "cluster_messaging": "benchmarks/cluster_messaging", "router": "benchmarks/router_hello",
                 "bodies": "benchmarks/bodies"}
    targets = [target_of[k] for k in target_of if k in wanted]
    log(f"building {', '.join(targets) or 'nothing'} in {bdir}")
    r = subprocess.run(["ninja", "-C", str(bdir)] + targets, cwd=ROOT, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True) if targets else None
    if r is not None and r.returncode != 0:
        raise BenchError(f"build failed:\n{r.stdout[-4000:]}")
    paths = {"hello": Path(args.hello).resolve() if args.hello else bdir / "examples" / "hello", "epoll": bdir / "benchmarks" / "epoll_hello",
             "cluster_messaging": bdir / "benchmarks" / "cluster_messaging",
             "router": bdir / "benchmarks" / "router_hello", "bodies": bdir / "benchmarks" / "bodies"}
    if "uring" in sections:
        paths["hello_uring"] = build_uring(bdir)
    build_desc = f"buildtype={opts.get('buildtype')}, optimization={opts.get('optimization')}, " \
                 f"b_ndebug={opts.get('b_ndebug')}, debug={opts.get('debug')}"
    return paths, build_desc


def build_uring(bdir):
    """examples/hello on io_uring in BUILD_DIR-uring: the same release
    options as BUILD_DIR, plus -Dio_uring=enabled."""
    udir = bdir.parent / (bdir.name + "-uring")
    if not (udir / "build.ninja").exists():
        log(f"setting up {udir}: release build with -Dio_uring=enabled")
        r = subprocess.run(["meson", "setup", str(udir), "--buildtype=release", "-Db_ndebug=true", "-Ddebug=true",
                            "-Dtests=disabled", "-Dexamples=enabled", "-Dbenchmarks=disabled", "-Dio_uring=enabled"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise BenchError(f"cannot set up {udir} (io_uring needs liburing-dev):\n{r.stdout[-3000:]}")
    log(f"building examples/hello in {udir}")
    r = subprocess.run(["ninja", "-C", str(udir), "examples/hello"], cwd=ROOT, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise BenchError(f"io_uring build failed:\n{r.stdout[-4000:]}")
    return udir / "examples" / "hello"


def tool_version(cmd):
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=10)
        return r.stdout.strip().splitlines()[0] if r.stdout.strip() else ""
    except Exception:
        return "?"


def environment(build_desc, paths):
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True).stdout.strip() or "?"
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "include", "examples"], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip())
    return dict(date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), cpu=cpu, cpus=os.cpu_count(),
                kernel=platform.release(), loadavg_before=open("/proc/loadavg").read().split()[:3],
                hello_commit=commit, hello_dirty=dirty, hello_binary=str(paths["hello"]), build=build_desc, clk_tck=CLK_TCK,
                versions=dict(nginx=tool_version(["nginx", "-v"]), node=tool_version(["node", "--version"]),
                              h2load=tool_version(["h2load", "--version"]),
                              wrk=tool_version(["wrk", "-v"]).split(" Copyright")[0],
                              valgrind=tool_version(["valgrind", "--version"]),
                              strace=tool_version(["strace", "-V"])))


SECTIONS = ["cpu", "counts", "load", "lifecycle", "messaging", "routing", "connections", "sizes", "bodies", "idle",
            "uring"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short run (about 2 minutes on a quiet machine)")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma-separated subset of {','.join(SECTIONS)} (memory comes with cpu)")
    ap.add_argument("--build-dir", default=str(ROOT / "build-bench"), help="release build directory")
    ap.add_argument("--hello", default=None,
                    help="measure this hello binary instead of building examples/hello (it must be a release build)")
    ap.add_argument("--out", default=None, help="results file (default BUILD_DIR/bench-results.json)")
    ap.add_argument("--nice", type=int, default=0,
                    help="niceness (and autogroup niceness) of servers and load generators, e.g. -10 when "
                         "background work disturbs the measurements; it takes CPU time from everything else "
                         "on the machine for the whole run (default 0: none)")
    args = ap.parse_args()
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    for s in sections:
        if s not in SECTIONS:
            ap.error(f"--sections: unknown section {s!r}; choose from {', '.join(SECTIONS)}")
    if os.cpu_count() < 2:
        print("benchmarks/run.py needs at least 2 CPUs (server and client are pinned apart)", file=sys.stderr)
        return 2
    prof = PROFILES["quick" if args.quick else "full"]
    global NICE
    NICE = args.nice

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # Also when started with SIGINT ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    work.chmod(0o755)
    try:
        check_tools()
        raise_fd_limit()
        paths, build_desc = build(args, sections)
        out_dir = Path(args.build_dir)
        results = dict(profile_name="quick" if args.quick else "full", environment=environment(build_desc, paths),
                       settings=dict(prof, nice=args.nice))
        # The runner itself stays off the server's CPU.
        os.sched_setaffinity(0, {int(CLIENT_CPU)})
        out = Path(args.out) if args.out else out_dir / "bench-results.json"
        # Each section in turn: one that fails (a peer that did not start, a
        # load generator past its time bound) is reported and the run goes
        # on; the figures so far are written after each section, so that an
        # interrupted run keeps them.
        runners = {"cpu": section_cpu, "counts": lambda *a: section_counts(*a, out_dir), "load": section_load,
                   "lifecycle": section_lifecycle, "messaging": section_messaging, "routing": section_routing,
                   "connections": section_connections, "sizes": section_sizes, "bodies": section_bodies,
                   "idle": section_idle, "uring": section_uring}
        failed = results["failed_sections"] = {}
        for name in SECTIONS:
            if name not in sections:
                continue
            try:
                runners[name](args, prof, paths, work, results)
            except BenchError as e:
                failed[name] = str(e)
                log(f"section {name} failed: {e}; going on with the next")
                cleanup_all()  # what the failed section left running
            out.write_text(json.dumps(results, indent=1, default=str) + "\n")
        results["environment"]["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
        results["environment"]["seconds"] = round(time.monotonic() - start, 1)
        results["verdicts"] = verdicts(results)
        results["growth_verdicts"] = growth_verdicts(results)
        table = render(results)
        for name, why in failed.items():
            table += f"\nsection {name} FAILED: {why}"
        out.write_text(json.dumps(results, indent=1, default=str) + "\n")
        (out_dir / "bench-table.txt").write_text(table + "\n")
        print(table)
        print(f"\nraw figures: {out}\ntable: {out_dir / 'bench-table.txt'}\n"
              f"profile: {out_dir / 'bench-profile.txt'}\n"
              f"took {results['environment']['seconds']:.0f} s", flush=True)
        if failed:
            return 1
        return 0
    except BenchError as e:
        print(f"benchmarks/run.py: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("benchmarks/run.py: interrupted; stopping what it started", file=sys.stderr)
        return 130
    finally:
        cleanup_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
