"""Proxy benchmark: gwcore (trio and asyncio) against nginx, a minimal proxy and no
proxy at all, one command.

Five targets, the same upstream, the same request, the same load generators:

1. ``direct``: client -> upstream (what the machine can do without a proxy);
2. ``nginx``: client -> nginx reverse proxy (one worker, ``upstream {}`` with
   ``keepalive 32``, ``proxy_http_version 1.1``, ``Connection ""``) -> upstream;
3. ``gwcore-trio`` and 4. ``gwcore-asyncio``: client -> ``gwcore serve --backend B``
   (one process each) -> upstream, on a generated table of 100 routes (prefixes, exact
   paths, templates, a regex, header matchers) where the benchmarked request matches
   route 51, in the middle; the two differ only in the adapter;
5. ``trio+h11``: ``bench/minimal_proxy.py``, a bare trio+h11 proxy (no routing,
   rewriting, timers or log): the floor of this design (HTTP/1.1 only, so no h2c row;
   ``--no-minimal`` leaves it out).

The upstream is a separate nginx answering ``return 200 "ok"``, the fastest and most
neutral thing to put behind a proxy. Every nginx runs from a config written to a temp
directory (pid, logs and temp paths there; nothing under /etc/nginx is read or
written), in the foreground, in its own session, and is stopped at the end, also on
Ctrl-C. Only 127.0.0.1 is used.

Placement on a 2-core machine: each proxy is pinned to core 1 (``taskset -c 1``; only
the one under load is busy), the load generator (wrk or h2load) to core 0; the
upstream is pinned to core 0 too by default (``--upstream-cpu``), so that the proxy has
core 1 to itself, except for the direct target, where the upstream is the server under
test and is moved to core 1. The CPU time each process group used during every run is
read from /proc, so "rps per proxy core" is requests per second per core-second the
proxy actually used, not per core it could have used (robust to a busy machine, and
to a proxy that is latency-bound rather than CPU-bound).

Two load generators, 32 requests in flight each: ``wrk --latency -c32`` (HTTP/1.1
keep-alive) and ``h2load -c4 -m8`` (HTTP/2 over cleartext with prior knowledge, h2c:
4 connections x 8 concurrent streams). Over h2c, nginx listens on a second server
block (``listen ... http2``, checked with ``nginx -V`` and ``nginx -t`` first),
gwcore on its one listener (``protocols: [http1, h2c]``), and the direct target is
a second ``http2`` port of the upstream; the proxies still talk HTTP/1.1 to the
upstream. A target this nginx cannot serve over h2c is skipped, and the output says
why.

Method: a warm-up per target and protocol, then interleaved rounds (every
target x protocol run once per round, the order rotating each round, so trio and
asyncio see the same machine state); two tables show the median round (rps, p50, p99
for wrk; mean, p50, p99 for h2load, the percentiles from its per-request log) and the
ratios to nginx, by rps and by rps per proxy core. gwcore's non-2xx responses, socket
errors and h2load failed/errored/timed-out requests are counted for both backends
(exit status 1 if any). Afterwards gwcore-trio is profiled under the HTTP/1.1 load:
py-spy (sampling, no change to the process) for where the time goes, and cProfile (a
second gwcore run by ``bench/gwcore_cprofile.py``, profiling switched on after a
warm-up; slower, but exact call counts) for calls per request.

Run: ``make bench`` (installs wrk/nginx/h2load with ``bench/setup.sh`` when missing)
or ``.venv/bin/python bench/bench_proxy.py [--quick] [--duration S] [--rounds N]
[--no-h2] [--backends trio,asyncio] [--no-minimal] [--profiler none]``. The defaults
(3 rounds of 4 s) take about 2.5 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import pstats
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from bench_router import BLOCK, service_route  # the same realistic route table

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
API_HOST = "api.example.com"
ROUTES = 100
TARGET_ROUTE = 51  # block 2, position 11: a path template plus an exact header match
REQUEST_PATH = "/svc2/orgs/acme"
REQUEST_HEADERS: tuple[tuple[str, str], ...] = (
    ("Host", API_HOST),
    ("User-Agent", "wrk/4.1 gwcore-bench"),
    ("Accept", "application/json"),
    ("X-Tenant", f"t{TARGET_ROUTE}"),
)
BODY = "ok"
PROXY_CPU = "1"
CLIENT_CPU = "0"
TRIO, ASYNCIO = "gwcore-trio", "gwcore-asyncio"
BACKENDS = {TRIO: "trio", ASYNCIO: "asyncio"}  # gwcore target -> its --backend
TARGETS = ("direct", "nginx", TRIO, ASYNCIO)
H1, H2C = "HTTP/1.1", "h2c"  # the two protocols clients speak to each target
H2_CLIENTS = 4  # h2load connections ...
H2_STREAMS = 8  # ... x concurrent streams each: 32 requests in flight, as wrk's -c32
MINIMAL = "trio+h11"  # bench/minimal_proxy.py, the floor of a trio/h11 design
REFERENCE = (
    "Reference figures for this kind of machine (from the issue): nginx ~80k rps per "
    "core, Envoy ~20k, a minimal trio+h11 proxy ~4.7k."
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ configs


def gwcore_config(upstream_port: int, listen_port: int) -> dict[str, Any]:
    """100 routes in 5 service blocks, one cluster per service (all on the upstream),
    plus three small virtual hosts so host selection does real work."""
    services = ROUTES // BLOCK
    endpoint = [f"{HOST}:{upstream_port}"]
    clusters = {f"svc{s}": {"endpoints": endpoint} for s in range(services)}
    routes = [service_route(i, f"svc{i // BLOCK}", timeout="5s") for i in range(ROUTES)]
    return {
        "listeners": [
            # http1 and h2c (prior knowledge or Upgrade) are the default; spelled out here
            {"name": "bench", "address": f"{HOST}:{listen_port}", "protocols": ["http1", "h2c"]}
        ],
        "clusters": clusters,
        "virtual_hosts": [
            {
                "name": "admin",
                "domains": ["admin.example.com"],
                "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 403}}],
            },
            {
                "name": "internal",
                "domains": ["*.svc.cluster.local", "internal.*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "svc0"}}],
            },
            {"name": "api", "domains": [API_HOST, f"*.{API_HOST}"], "routes": routes},
            {
                "name": "fallback",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 421}}],
            },
        ],
    }


def _nginx_main(prefix: Path) -> str:
    """The parts every nginx here shares: foreground, one worker, files in ``prefix``."""
    return f"""daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
"""


def _nginx_http(prefix: Path) -> str:
    return f"""    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
"""


def _servers(port: int, h2c_port: int | None, location: str) -> str:
    """A server block on ``port`` (HTTP/1.1) and, with ``h2c_port``, the same location
    in a second one that speaks cleartext HTTP/2 with prior knowledge (``http2``
    without ``ssl``: nginx then expects the h2 preface and nothing else)."""
    listens = [f"{HOST}:{port}"] + ([f"{HOST}:{h2c_port} http2"] if h2c_port else [])
    return "".join(
        f"    server {{\n        listen {listen};\n{location}    }}\n" for listen in listens
    )


def upstream_nginx_config(prefix: Path, port: int, h2c_port: int | None = None) -> str:
    location = f"""        location / {{
            default_type text/plain;
            return 200 "{BODY}";
        }}
"""
    return (
        _nginx_main(prefix)
        + "http {\n"
        + _nginx_http(prefix)
        + _servers(port, h2c_port, location)
        + "}\n"
    )


def proxy_nginx_config(
    prefix: Path, port: int, upstream_port: int, h2c_port: int | None = None
) -> str:
    """Both server blocks proxy to the upstream over HTTP/1.1 keep-alive."""
    location = """        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
"""
    return (
        _nginx_main(prefix)
        + "http {\n"
        + _nginx_http(prefix)
        + f"""    upstream backend {{
        server {HOST}:{upstream_port};
        keepalive 32;
        keepalive_requests 1000000;
    }}
"""
        + _servers(port, h2c_port, location)
        + "}\n"
    )


def nginx_h2c_support(prefix: Path) -> str | None:
    """None if this nginx can serve h2c with prior knowledge, else why not: the HTTP/2
    module must be built in (``nginx -V``) and ``nginx -t`` must accept ``listen ...
    http2`` on a cleartext port (a config like the upstream's, in ``prefix``)."""
    try:
        built = subprocess.run(["nginx", "-V"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"nginx -V failed: {error}"
    if "--with-http_v2_module" not in built.stdout + built.stderr:
        return "nginx -V shows no --with-http_v2_module: this nginx has no HTTP/2 module"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(upstream_nginx_config(prefix, free_port(), free_port()))
    argv = ["nginx", "-t", "-q", "-p", f"{prefix}/", "-e", str(prefix / "error.log")]
    try:
        test = subprocess.run([*argv, "-c", str(conf)], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"nginx -t failed: {error}"
    if test.returncode != 0:
        why = (test.stdout + test.stderr).strip().splitlines()
        return f"nginx -t rejects 'listen ... http2': {why[-1] if why else test.returncode}"
    return None


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {HOST}:{port} within 15 s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Service:
    """A server process this run started (its own session: pgid == pid)."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


class Processes:
    """Everything started, stopped in reverse order whatever happens."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: Sequence[str], *, stdout: Any = subprocess.DEVNULL, log: Path
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as err:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=err,
                start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
            )
        self.started.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait: float = 5.0) -> None:
        """Signal the process (and its group: nginx workers), then kill what is left."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # nginx workers die with their master; anything left in the group goes now.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        while self.started:
            proc = self.started.pop()
            with contextlib.suppress(Exception):
                self.stop(proc)


def _group_stats(pgid: int) -> Iterator[tuple[int, list[bytes]]]:
    """(pid, /proc/PID/stat fields from the state on) of each process in group ``pgid``."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid:
            yield int(entry.name), fields


def group_cpu_seconds(pgid: int) -> float:
    """user+system CPU seconds of every live process in process group ``pgid``."""
    ticks = sum(int(f[11]) + int(f[12]) for _pid, f in _group_stats(pgid))
    return ticks / CLK_TCK


def pin_group(pgid: int, cpus: str) -> None:
    """Move every process of group ``pgid`` (nginx master and worker) to ``cpus``
    ("0", "0,1"; "" means every CPU)."""
    wanted = {int(c) for c in cpus.split(",")} if cpus else set(range(os.cpu_count() or 1))
    for pid, _fields in _group_stats(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(pid, wanted)


# ---------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    target: str
    rps: float
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: dict[str, int]
    proxy_cpu: float  # core-seconds per wall second used by the proxy's process group
    upstream_cpu: float
    client_cpu: float = 0.0  # the same for wrk
    raw: str = ""

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"cannot read the duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(target: str, out: str, proxy_cpu: float, upstream_cpu: float) -> WrkResult:
    def grab(pattern: str) -> re.Match[str]:
        m = re.search(pattern, out, re.MULTILINE)
        if not m:
            raise ValueError(f"wrk output has no match for {pattern!r}:\n{out}")
        return m

    done = grab(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(
        target=target,
        rps=float(grab(r"^Requests/sec:\s+([\d.]+)").group(1)),
        requests=int(done.group(1)),
        seconds=_ms(done.group(2) + done.group(3)) / 1e3,
        p50_ms=_ms(grab(r"^\s+50%\s+(\S+)").group(1)),
        p99_ms=_ms(grab(r"^\s+99%\s+(\S+)").group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=(
            dict(
                zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True)
            )
            if errors
            else {}
        ),
        proxy_cpu=proxy_cpu,
        upstream_cpu=upstream_cpu,
        raw=out,
    )


def wrk_argv(port: int, seconds: float, connections: int, threads: int) -> list[str]:
    argv = ["taskset", "-c", CLIENT_CPU, "wrk", f"-t{threads}", f"-c{connections}"]
    argv += [f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s"]
    for name, value in REQUEST_HEADERS:
        argv += ["-H", f"{name}: {value}"]
    return [*argv, f"http://{HOST}:{port}{REQUEST_PATH}"]


@dataclass
class Load:
    """What one load-generator run printed, and the CPU (core-seconds per wall second)
    each side used while it ran."""

    out: str
    proxy_cpu: float
    upstream_cpu: float
    client_cpu: float


def run_load(
    argv: list[str], seconds: float, *, proxy_pgid: int | None, upstream_pgid: int | None
) -> Load:
    before = time.monotonic()
    proxy0 = group_cpu_seconds(proxy_pgid) if proxy_pgid else 0.0
    up0 = group_cpu_seconds(upstream_pgid) if upstream_pgid else 0.0
    client0 = _children_cpu_seconds()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=seconds + 30)
    finally:
        Processes.stop(proc, wait=2)
    wall = time.monotonic() - before
    proxy1 = group_cpu_seconds(proxy_pgid) if proxy_pgid else 0.0
    up1 = group_cpu_seconds(upstream_pgid) if upstream_pgid else 0.0
    client = (_children_cpu_seconds() - client0) / wall  # the client has been reaped
    if proc.returncode != 0:
        raise RuntimeError(
            f"{argv[3]} failed ({proc.returncode}): {shlex.join(argv)}\n{out.decode()}"
        )
    return Load(out.decode(), (proxy1 - proxy0) / wall, (up1 - up0) / wall, client)


def run_wrk(
    target: str,
    port: int,
    seconds: float,
    args: argparse.Namespace,
    *,
    proxy_pgid: int | None,
    upstream_pgid: int | None,
) -> WrkResult:
    argv = wrk_argv(port, seconds, args.connections, args.threads)
    load = run_load(argv, seconds, proxy_pgid=proxy_pgid, upstream_pgid=upstream_pgid)
    result = parse_wrk(target, load.out, load.proxy_cpu, load.upstream_cpu)
    result.client_cpu = load.client_cpu
    return result


# ------------------------------------------------------------------- h2load


@dataclass
class H2Result:
    target: str
    rps: float  # succeeded requests per second (h2load's req/s)
    requests: int  # done
    succeeded: int  # a response completed, whatever its status
    failed: int
    errored: int
    timeout: int
    status: dict[str, int]  # "2xx" .. "5xx"
    mean_ms: float
    p50_ms: float  # from the per-request log; nan without one
    p99_ms: float
    data_bytes: int
    protocol: str  # as h2load negotiated it: "h2c"
    proxy_cpu: float
    upstream_cpu: float
    client_cpu: float = 0.0
    raw: str = ""

    @property
    def non_2xx(self) -> int:
        return sum(n for klass, n in self.status.items() if klass != "2xx")

    @property
    def errors(self) -> int:
        return self.failed + self.errored + self.timeout + self.non_2xx


def h2load_headers() -> list[str]:
    """The wrk request's headers for h2load: ``Host`` becomes ``:authority`` (h2load would
    send ``127.0.0.1:PORT`` there, and a ``host`` that differs from ``:authority`` makes
    the request malformed), the other names lower-case (``user-agent`` replaces
    h2load's own)."""
    argv: list[str] = []
    for name, value in REQUEST_HEADERS:
        argv += ["-H", f"{':authority' if name.lower() == 'host' else name.lower()}: {value}"]
    return argv


def h2load_argv(port: int, seconds: float, args: argparse.Namespace, log: Path | None) -> list[str]:
    """h2c with prior knowledge: an ``http://`` URL and no ``--h1``/``--npn-list``."""
    argv = ["taskset", "-c", CLIENT_CPU, "h2load", "-t1"]
    argv += [f"-c{args.h2_clients}", f"-m{args.h2_streams}", f"-D{max(1, round(seconds))}"]
    if log is not None:
        argv.append(f"--log-file={log}")
    return [*argv, *h2load_headers(), f"http://{HOST}:{port}{REQUEST_PATH}"]


def parse_h2load(
    target: str, out: str, proxy_cpu: float, upstream_cpu: float, latencies_us: list[int]
) -> H2Result:
    def grab(pattern: str) -> re.Match[str]:
        m = re.search(pattern, out, re.MULTILINE)
        if not m:
            raise ValueError(f"h2load output has no match for {pattern!r}:\n{out}")
        return m

    counts = grab(
        r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout"
    )
    done, succeeded, failed, errored, timeout = map(int, counts.groups()[2:])
    codes = grab(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
    protocol = re.search(r"^Application protocol: (\S+)", out, re.MULTILINE)
    latencies_us.sort()

    def pct(q: float) -> float:
        if not latencies_us:
            return float("nan")
        return latencies_us[min(len(latencies_us) - 1, int(q * len(latencies_us)))] / 1e3

    return H2Result(
        target=target,
        rps=float(grab(r"^finished in \S+, ([\d.]+) req/s").group(1)),
        requests=done,
        succeeded=succeeded,
        failed=failed,
        errored=errored,
        timeout=timeout,
        status=dict(zip(("2xx", "3xx", "4xx", "5xx"), map(int, codes.groups()), strict=True)),
        mean_ms=_ms(grab(r"^time for request:\s+\S+\s+\S+\s+(\S+)").group(1)),
        p50_ms=pct(0.50),
        p99_ms=pct(0.99),
        data_bytes=int(grab(r"^traffic: .*\((\d+)\) data").group(1)),
        protocol=protocol.group(1) if protocol else "?",
        proxy_cpu=proxy_cpu,
        upstream_cpu=upstream_cpu,
        raw=out,
    )


def read_h2load_log(path: Path) -> list[int]:
    """Microseconds per request from ``h2load --log-file`` (start us, status, duration
    us, tab-separated). h2load appends, so the file is removed once read."""
    durations: list[int] = []
    with contextlib.suppress(FileNotFoundError), path.open() as f:
        for line in f:
            fields = line.split("\t")
            if len(fields) >= 3:
                durations.append(int(fields[2]))
    path.unlink(missing_ok=True)
    return durations


def run_h2load(
    target: str,
    port: int,
    seconds: float,
    args: argparse.Namespace,
    *,
    proxy_pgid: int | None,
    upstream_pgid: int | None,
    log: Path | None,
) -> H2Result:
    if log is not None:
        log.unlink(missing_ok=True)
    argv = h2load_argv(port, seconds, args, log)
    load = run_load(argv, seconds, proxy_pgid=proxy_pgid, upstream_pgid=upstream_pgid)
    latencies = read_h2load_log(log) if log is not None else []
    result = parse_h2load(target, load.out, load.proxy_cpu, load.upstream_cpu, latencies)
    result.client_cpu = load.client_cpu
    if result.protocol != H2C:
        raise RuntimeError(f"h2load spoke {result.protocol} to {target}, not h2c:\n{load.out}")
    return result


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------- checks


def check_request(port: int, what: str) -> dict[str, str]:
    """One request as wrk sends it: 200 and the upstream's body, or an error."""
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.putrequest("GET", REQUEST_PATH, skip_host=True, skip_accept_encoding=True)
        for name, value in REQUEST_HEADERS:
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    if response.status != 200 or body != BODY:
        raise RuntimeError(f"{what}: expected 200 {BODY!r}, got {response.status} {body!r}")
    return headers


def check_request_h2c(port: int, what: str) -> None:
    """The same request over h2c, a few streams on one connection: each 200 and the
    upstream's body, negotiated as h2c (prior knowledge), or an error."""
    n = H2_STREAMS
    argv = ["h2load", "-n", str(n), "-c1", f"-m{n}", *h2load_headers()]
    argv.append(f"http://{HOST}:{port}{REQUEST_PATH}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    out = done.stdout + done.stderr
    try:
        r = parse_h2load(what, out, 0.0, 0.0, [])
    except ValueError as error:
        raise RuntimeError(f"{what} over h2c: {error}") from None
    if (
        done.returncode != 0
        or r.protocol != H2C
        or r.succeeded != n
        or r.status["2xx"] != n
        or r.data_bytes != n * len(BODY)
    ):
        raise RuntimeError(f"{what}: expected {n} x 200 {BODY!r} over h2c; h2load said:\n{out}")


def check_route(gwcore: list[str], config: Path) -> None:
    argv = [*gwcore, "route", str(config), "--host", API_HOST, "--path", REQUEST_PATH, "--json"]
    for name, value in REQUEST_HEADERS[1:]:
        argv += ["-H", f"{name}: {value}"]
    answer = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
    if answer.get("route") != f"r{TARGET_ROUTE}":
        raise RuntimeError(f"the bench request should take route r{TARGET_ROUTE}, got {answer}")


# ------------------------------------------------------------------ reports


Result = TypeVar("Result", WrkResult, H2Result)


def _median_result(results: list[Result]) -> Result:
    return sorted(results, key=lambda r: r.rps)[len(results) // 2]


def _per_core(r: WrkResult | H2Result) -> float:
    return r.rps / max(r.proxy_cpu, 1e-9)


def _vs_nginx(r: WrkResult | H2Result, nginx: WrkResult | H2Result | None, direct: bool) -> str:
    """Ratios to nginx: of rps, and (proxies only) of rps per proxy core."""
    if nginx is None:
        return "- | -"
    per_core = "-" if direct else f"{_per_core(r) / _per_core(nginx):.3f}x"
    return f"{r.rps / nginx.rps:.3f}x | {per_core}"


def print_table(rounds: dict[str, list[WrkResult]]) -> None:
    med = {t: _median_result(rs) for t, rs in rounds.items() if rs}
    nginx = med.get("nginx")
    print(
        "| target | rps | p50 ms | p99 ms | rps per proxy core | rps vs nginx | per core vs nginx |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for target in rounds:
        if target not in med:
            continue
        r = med[target]
        direct = target == "direct"
        per_core = "-" if direct else f"{_per_core(r):,.0f}"
        print(
            f"| {target} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {per_core} "
            f"| {_vs_nginx(r, nginx, direct)} |"
        )
    print()
    print("Details (median round; CPU = core-seconds used per wall second, from /proc):")
    print()
    print(
        "| target | rounds rps | proxy CPU | upstream CPU | wrk CPU | requests "
        "| non-2xx | socket errors |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for target in rounds:
        if target not in med:
            continue
        r = med[target]
        spread = ", ".join(f"{x.rps:,.0f}" for x in rounds[target])
        proxy = "-" if target == "direct" else f"{r.proxy_cpu:.2f}"
        total_non2xx = sum(x.non_2xx for x in rounds[target])
        sock = Counter[str]()
        for x in rounds[target]:
            sock.update(x.socket_errors)
        sock_text = ", ".join(f"{k} {v}" for k, v in sock.items() if v) or "0"
        total = sum(x.requests for x in rounds[target])
        print(
            f"| {target} | {spread} | {proxy} | {r.upstream_cpu:.2f} | {r.client_cpu:.2f} "
            f"| {total:,} "
            f"| {total_non2xx} | {sock_text} |"
        )


def _notes(rounds: dict[str, list[WrkResult]]) -> None:
    med = {t: _median_result(rs) for t, rs in rounds.items() if rs}
    nginx = med.get("nginx")
    if nginx and nginx.proxy_cpu < 0.9:
        core0 = nginx.client_cpu + nginx.upstream_cpu
        limit = (
            f"core {CLIENT_CPU} (wrk + upstream used {core0:.2f} of it)"
            if core0 > 0.9
            else f"the cross-core round trips, not CPU (core {CLIENT_CPU}: wrk + upstream "
            f"used {core0:.2f}): on a VM, waking an idle vCPU costs tens of microseconds"
        )
        print(
            f"nginx used {nginx.proxy_cpu:.2f} of its core, so its rps is capped by {limit}; "
            "compare per proxy core."
        )
    minimal = med.get(MINIMAL)
    for target in BACKENDS:
        gw = med.get(target)
        if not (gw and gw.proxy_cpu):
            continue
        gw_us = 1e6 * gw.proxy_cpu / gw.rps
        if nginx and nginx.proxy_cpu:
            print(
                f"Per proxy core, {target} does {_per_core(gw) / _per_core(nginx):.3f}x "
                f"nginx's work ({gw_us:.0f} us of CPU per request vs "
                f"{1e6 * nginx.proxy_cpu / nginx.rps:.1f} us)."
            )
        if minimal and minimal.proxy_cpu:
            min_us = 1e6 * minimal.proxy_cpu / minimal.rps
            print(
                f"  vs the minimal trio+h11 proxy ({min_us:.0f} us per request): "
                f"{gw_us / min_us:.2f}x, {gw_us - min_us:.0f} us more for the same socket I/O "
                "and the same four h11 messages per request."
            )
    _backend_note(med, "")


def _backend_note(med: dict[str, Any], over: str) -> None:
    trio, aio = med.get(TRIO), med.get(ASYNCIO)
    if trio and aio and trio.proxy_cpu and aio.proxy_cpu:
        print(
            f"asyncio vs trio{over}: {aio.rps / trio.rps:.3f}x the rps, "
            f"{_per_core(aio) / _per_core(trio):.3f}x the rps per proxy core "
            f"({1e6 * aio.proxy_cpu / aio.rps:.0f} vs {1e6 * trio.proxy_cpu / trio.rps:.0f} "
            "us of CPU per request)."
        )


def _ms_text(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"  # nan: no per-request log


def print_table_h2(rounds: dict[str, list[H2Result]], skipped: dict[str, str]) -> None:
    med = {t: _median_result(rs) for t, rs in rounds.items() if rs}
    nginx = med.get("nginx")
    print(
        "| target | protocol | rps | mean / p50 ms | rps per proxy core | rps vs nginx "
        "| per core vs nginx |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for target, r in med.items():
        direct = target == "direct"
        per_core = "-" if direct else f"{_per_core(r):,.0f}"
        latency = f"{_ms_text(r.mean_ms)} / {_ms_text(r.p50_ms)}"
        print(
            f"| {target} | {r.protocol} | {r.rps:,.0f} | {latency} | {per_core} "
            f"| {_vs_nginx(r, nginx, direct)} |"
        )
    for target in skipped:
        print(f"| {target} | {H2C} | skipped | - | - | - | - |")
    print()
    for target, why in skipped.items():
        print(f"{target} over h2c skipped: {why}.")
    if skipped:
        print()
    print(
        "Details (median round; p99 from h2load's per-request log; requests and the "
        "outcome counts are summed over all rounds):"
    )
    print()
    print(
        "| target | rounds rps | p99 ms | proxy CPU | upstream CPU | h2load CPU | requests "
        "| succeeded | failed | errored | timeout | non-2xx |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for target, r in med.items():
        rs = rounds[target]
        spread = ", ".join(f"{x.rps:,.0f}" for x in rs)
        proxy = "-" if target == "direct" else f"{r.proxy_cpu:.2f}"
        print(
            f"| {target} | {spread} | {_ms_text(r.p99_ms)} | {proxy} | {r.upstream_cpu:.2f} "
            f"| {r.client_cpu:.2f} | {sum(x.requests for x in rs):,} "
            f"| {sum(x.succeeded for x in rs):,} | {sum(x.failed for x in rs)} "
            f"| {sum(x.errored for x in rs)} | {sum(x.timeout for x in rs)} "
            f"| {sum(x.non_2xx for x in rs)} |"
        )


def _notes_h2(rounds: dict[str, list[H2Result]], rounds_h1: dict[str, list[WrkResult]]) -> None:
    med = {t: _median_result(rs) for t, rs in rounds.items() if rs}
    nginx = med.get("nginx")
    if nginx and nginx.proxy_cpu < 0.9:
        print(
            f"nginx used {nginx.proxy_cpu:.2f} of its core over h2c (not CPU-bound); "
            "compare per proxy core."
        )
    for target in BACKENDS:
        gw = med.get(target)
        if not (gw and gw.proxy_cpu):
            continue
        us_h2 = 1e6 * gw.proxy_cpu / gw.rps
        if nginx and nginx.proxy_cpu:
            print(
                f"Per proxy core over h2c, {target} does "
                f"{_per_core(gw) / _per_core(nginx):.3f}x nginx's work ({us_h2:.0f} us of CPU "
                f"per request vs {1e6 * nginx.proxy_cpu / nginx.rps:.1f} us)."
            )
        h1 = _median_result(rounds_h1[target]) if rounds_h1.get(target) else None
        if h1 and h1.proxy_cpu:
            us_h1 = 1e6 * h1.proxy_cpu / h1.rps
            print(
                f"  {target} spends {us_h2:.0f} us of CPU per request over h2c and {us_h1:.0f} "
                f"us over HTTP/1.1 ({us_h2 / us_h1:.2f}x; the upstream side is HTTP/1.1 in both)."
            )
    _backend_note(med, " over h2c")


# ------------------------------------------------------------------ profile

_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("gwcore/protocol/http1", "gwcore HTTP/1.1 gate + codec (protocol/http1*.py)"),
    ("h11/", "h11"),
    ("gwcore/routing/", "routing"),
    ("gwcore/gateway/", "engine (gateway/)"),
    ("gwcore/upstream/", "upstream pool/balancer"),
    ("gwcore/", "gwcore (other)"),
    ("gwcore_trio/", "trio adapter (gwcore_trio/)"),
    ("trio/", "trio runtime (incl. socket syscalls)"),
    ("json/", "json (access log)"),
    ("datetime", "datetime (access log)"),
    ("outcome/", "trio runtime (incl. socket syscalls)"),
    ("sniffio/", "trio runtime (incl. socket syscalls)"),
)


def _category(frame: str) -> str:
    location = frame[frame.rfind("(") + 1 :]
    for needle, name in _CATEGORIES:
        if needle in location:
            return name
    return "other (stdlib, interpreter)"


def _short(frame: str) -> str:
    """``func (/long/path/site-packages/h11/_x.py:12)`` -> ``func (h11/_x.py:12)``."""
    m = re.fullmatch(r"(.*) \((.*)\)", frame)
    if not m:
        return frame
    func, location = m.groups()
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in location:
            location = location.split(marker, 1)[1]
            if marker == "/lib/python3":
                location = "stdlib:" + location.split("/", 1)[-1]
            break
    return f"{func} ({location})"


# Named steps of one exchange: a sample counts for a step when any frame of its stack
# matches (so nested work is included once). A name that no longer exists shows 0.
_STEPS: tuple[tuple[str, str], ...] = (
    ("HTTP/1.1 parse, h11 part (H11Parser.feed)", r"^H11Parser\.feed "),
    ("HTTP/1.1 serialise via h11 (H11Parser.send)", r"^H11Parser\.send "),
    ("gate head checks (http1_syntax parse_*_head)", r"^parse_(request|response)_head "),
    ("routing (RouteTable.match)", r"^RouteTable\.match "),
    ("upstream pool + balancer (gwcore/upstream/)", r"\(gwcore/upstream/"),
    ("header rewriting (gwcore/gateway/headers.py)", r"\(gwcore/gateway/headers\.py"),
    ("access log (Gateway._access_log + Server._write_log)", r"_access_log |_write_log "),
    (
        "timers (engine _start/_cancel_timer, adapter heap)",
        r"_start_timer |_cancel_timer |_compact_timers |_timer_loop ",
    ),
    ("dataclass __init__ (events, actions, messages)", r"^__create_fn__.*__init__ "),
    ("adapter writer task (Server._writer)", r"^Server\._writer "),
    ("socket send/recv syscalls (trio _nonblocking_helper)", r"_nonblocking_helper "),
    ("trio scheduler + epoll, no gwcore frame above trio's run loop", r"\((gwcore|gwcore_trio)/"),
)


def report_pyspy(raw: Path, requests: int, top: int) -> None:
    own: Counter[str] = Counter()
    cum: Counter[str] = Counter()
    cats: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    patterns = [(name, re.compile(rx)) for name, rx in _STEPS]
    outside = _STEPS[-1][0]
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        cats[_category(stack.split(";")[-1])] += count
        for f in set(frames):
            cum[f] += count
        for name, rx in patterns:
            if name == outside:
                loop = max(
                    (i for i, f in enumerate(frames) if f.startswith("unrolled_run ")), default=-1
                )
                if not any(rx.search(f) for f in frames[loop + 1 :]):
                    steps[name] += count
            elif any(rx.search(f) for f in frames):
                steps[name] += count
    if not total:
        print("py-spy recorded no samples.")
        return
    print(f"py-spy: {total} samples of gwcore on CPU (idle waits excluded), {requests:,} requests")
    print()
    print("Where the time goes, by named step (cumulative: nested work included once):")
    print()
    print("| step | cum % |")
    print("|---|---:|")
    for name, _rx in _STEPS:
        print(f"| {name} | {100 * steps[name] / total:.1f} |")
    print()
    print("Own time by layer (the leaf Python frame; C calls count for their caller):")
    print()
    print("| layer | own % |")
    print("|---|---:|")
    for name, count in cats.most_common():
        print(f"| {name} | {100 * count / total:.1f} |")
    print()
    print(f"Top {top} by own time:")
    print()
    print("| own % | cum % | function |")
    print("|---:|---:|---|")
    for frame, count in own.most_common(top):
        print(f"| {100 * count / total:.1f} | {100 * cum[frame] / total:.1f} | `{frame}` |")
    print()
    print(f"Top {top} by cumulative time (below the trio run loop):")
    print()
    print("| cum % | own % | function |")
    print("|---:|---:|---|")
    shown = 0
    for frame, count in cum.most_common():
        if count / total > 0.97:  # the run loop, main(), <module>: everything
            continue
        print(f"| {100 * count / total:.1f} | {100 * own[frame] / total:.1f} | `{frame}` |")
        shown += 1
        if shown >= top:
            break


# Called once per request: its call count is the number of requests profiled.
ONCE_PER_REQUEST = ("gateway/engine.py", "_access_log")


def report_cprofile(stats_path: Path, estimate: int, top: int) -> None:
    stats = pstats.Stats(str(stats_path))
    rows = []
    requests, source = estimate, "wrk's rate x the window"
    for (filename, line, func), (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if filename.endswith(ONCE_PER_REQUEST[0]) and func == ONCE_PER_REQUEST[1] and nc:
            requests, source = nc, f"calls to Gateway.{func}"
        location = _short(f"{func} ({filename}:{line})")
        if "_lsprof.Profiler" in location:
            continue
        rows.append((location, cc, nc, tt, ct))
    total_tt = sum(r[3] for r in rows) or 1.0
    per = max(requests, 1)
    print(
        f"cProfile: {requests:,} requests profiled (from {source}), {total_tt:.2f} s of "
        f"profiled CPU ({1e6 * total_tt / per:.0f} us per request under cProfile, "
        "which inflates small Python calls)"
    )
    print()
    print(f"Top {top} by own time (tottime):")
    print()
    print("| own % | us/req own | calls/req | cum us/req | function |")
    print("|---:|---:|---:|---:|---|")
    for location, _cc, nc, tt, ct in sorted(rows, key=lambda r: -r[3])[:top]:
        print(
            f"| {100 * tt / total_tt:.1f} | {1e6 * tt / per:.1f} | {nc / per:.2f} "
            f"| {1e6 * ct / per:.1f} | `{location}` |"
        )
    print()
    print(f"Top {top} by cumulative time (below the trio run loop):")
    print()
    print("| cum % | cum us/req | calls/req | function |")
    print("|---:|---:|---:|---|")
    shown = 0
    for location, _cc, nc, _tt, ct in sorted(rows, key=lambda r: -r[4]):
        if ct / total_tt > 0.97 or "{built-in method builtins.exec}" in location:
            continue
        print(
            f"| {100 * ct / total_tt:.1f} | {1e6 * ct / per:.1f} | {nc / per:.2f} | `{location}` |"
        )
        shown += 1
        if shown >= top:
            break


# --------------------------------------------------------------------- main


def ensure_tools(use_pyspy: bool, h2: bool) -> None:
    tools = ("wrk", "nginx", "taskset", *(("h2load",) if h2 else ()))
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        setup = ROOT / "bench" / "setup.sh"
        print(f"missing {', '.join(missing)}: running {setup}", file=sys.stderr)
        subprocess.run(["sh", str(setup)], check=True)
    if use_pyspy and _pyspy() is None:
        print("py-spy is not installed (pip install -e '.[dev]'); profiling with cProfile only")


def _pyspy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def _gwcore_argv() -> list[str]:
    local = Path(sys.executable).parent / "gwcore"
    return [str(local)] if local.exists() else [sys.executable, "-m", "gwcore"]


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so the ``finally`` stops what was started."""

    def raise_interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "?"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--quick", action="store_true", help="1 round of 3 s per target and protocol, short profile"
    )
    p.add_argument("--duration", type=float, default=4.0, help="seconds per round (default 4)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per target (default 3)")
    p.add_argument(
        "--warmup", type=float, default=1.0, help="warm-up seconds per target (default 1)"
    )
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: one core)")
    p.add_argument(
        "--no-h2", action="store_true", help="skip the h2c rounds (h2load), HTTP/1.1 only"
    )
    p.add_argument(
        "--h2-clients",
        type=int,
        default=H2_CLIENTS,
        help=f"h2load connections (default {H2_CLIENTS})",
    )
    p.add_argument(
        "--h2-streams",
        type=int,
        default=H2_STREAMS,
        help=f"h2load concurrent streams per connection (default {H2_STREAMS})",
    )
    p.add_argument(
        "--upstream-cpu",
        default=CLIENT_CPU,
        help=f"taskset CPU list for the upstream nginx (default {CLIENT_CPU}, with wrk; "
        "'' leaves it unpinned)",
    )
    p.add_argument(
        "--backends",
        default="trio,asyncio",
        help="gwcore backends to load, comma-separated (default trio,asyncio)",
    )
    p.add_argument(
        "--minimal",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"the {MINIMAL} target: bench/minimal_proxy.py (no routing, no rewriting, no "
        "log), the floor of a trio/h11 proxy on this machine (default on)",
    )
    p.add_argument(
        "--access-log",
        default=os.devnull,
        help="gwcore's access log, its stdout (default /dev/null)",
    )
    p.add_argument(
        "--profiler",
        choices=("both", "py-spy", "cprofile", "none"),
        default="both",
        help="how to profile gwcore under load afterwards (default both)",
    )
    p.add_argument(
        "--profile-seconds", type=float, default=4.0, help="seconds of each profile (default 4)"
    )
    p.add_argument("--top", type=int, default=15, help="rows in each profile table (default 15)")
    p.add_argument("--keep", action="store_true", help="keep the temp directory (configs, logs)")
    args = p.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS.values())
    if unknown or not backends:
        p.error(f"--backends: choose from {', '.join(BACKENDS.values())}")
    args.gwcore = tuple(t for t, b in BACKENDS.items() if b in backends)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 3.0, 1.0
        args.profile_seconds = min(args.profile_seconds, 3.0)
    return args


@dataclass
class Run:
    args: argparse.Namespace
    tmp: Path
    procs: Processes = field(default_factory=Processes)
    services: dict[str, Service] = field(default_factory=dict)

    def start_nginx(self, name: str, conf_text: str, port: int, cpu: str) -> Service:
        prefix = self.tmp / name
        prefix.mkdir()
        conf = prefix / "nginx.conf"
        conf.write_text(conf_text)
        log = prefix / "stderr.log"
        pin = ["taskset", "-c", cpu] if cpu else []
        argv = [*pin, "nginx", "-p", f"{prefix}/", "-e", str(prefix / "error.log"), "-c", str(conf)]
        proc = self.procs.start(argv, log=log)
        wait_listening(port, proc, f"nginx ({name})", prefix / "error.log")
        self.services[name] = Service(name, proc, port, prefix / "error.log")
        return self.services[name]

    def start_gwcore(self, name: str, config: Path, port: int) -> Service:
        log = self.tmp / f"{name}.stderr.log"
        argv = ["taskset", "-c", PROXY_CPU, *_gwcore_argv(), "serve", str(config)]
        argv += ["--listen", f"{HOST}:{port}", "--backend", BACKENDS[name]]
        with open(self.args.access_log, "ab") as access:
            proc = self.procs.start(argv, stdout=access, log=log)
        wait_listening(port, proc, name, log)
        self.services[name] = Service(name, proc, port, log)
        return self.services[name]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    use_pyspy = args.profiler in ("both", "py-spy")
    ensure_tools(use_pyspy, not args.no_h2)
    tmp = Path(tempfile.mkdtemp(prefix="gwcore-bench-"))
    tmp.chmod(0o755)  # nginx workers run as nobody when we are root
    run = Run(args, tmp)
    load_before = os.getloadavg()
    try:
        with _terminate_on_sigterm():
            return _main(run, load_before)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything started", file=sys.stderr)
        return 130
    finally:
        run.procs.stop_all()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _distinct_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _main(run: Run, load_before: tuple[float, float, float]) -> int:
    args, tmp = run.args, run.tmp
    up_port, nginx_port, up_h2c_port, nginx_h2c_port, *gw_ports = _distinct_ports(
        4 + len(args.gwcore)
    )
    gw_port = dict(zip(args.gwcore, gw_ports, strict=True))

    # h2c: gwcore's listener takes it; nginx only if built with its HTTP/2 module.
    h2c_ports: dict[str, int] = {}
    h2c_skipped: dict[str, str] = {}
    nginx_h2c = None if args.no_h2 else nginx_h2c_support(tmp / "h2c-probe")
    if not args.no_h2:
        if nginx_h2c is None:
            h2c_ports = {"direct": up_h2c_port, "nginx": nginx_h2c_port}
        else:
            h2c_skipped["direct"] = f"the upstream is nginx, which cannot serve h2c ({nginx_h2c})"
            h2c_skipped["nginx"] = nginx_h2c
        h2c_ports.update(gw_port)
        if args.minimal:
            h2c_skipped[MINIMAL] = "bench/minimal_proxy.py speaks HTTP/1.1 only"
    with_h2c = not args.no_h2 and nginx_h2c is None

    upstream = run.start_nginx(
        "upstream",
        upstream_nginx_config(tmp / "upstream", up_port, up_h2c_port if with_h2c else None),
        up_port,
        args.upstream_cpu,
    )
    run.start_nginx(
        "nginx",
        proxy_nginx_config(
            tmp / "nginx", nginx_port, up_port, nginx_h2c_port if with_h2c else None
        ),
        nginx_port,
        PROXY_CPU,
    )
    config = tmp / "gwcore.yaml"  # one config; each backend listens on its own --listen
    config.write_text(yaml.safe_dump(gwcore_config(up_port, gw_ports[0]), sort_keys=False))
    check_route(_gwcore_argv(), config)
    for target, port in gw_port.items():
        run.start_gwcore(target, config, port)

    ports: dict[str, int] = {"direct": up_port, "nginx": nginx_port, **gw_port}
    pgids: dict[str, int | None] = {"direct": None, "nginx": run.services["nginx"].pid}
    pgids.update({target: run.services[target].pid for target in gw_port})
    targets: tuple[str, ...] = ("direct", "nginx", *args.gwcore)
    if args.minimal:
        ports[MINIMAL] = free_port()
        script = ROOT / "bench" / "minimal_proxy.py"
        argv = ["taskset", "-c", PROXY_CPU, sys.executable, str(script)]
        log = tmp / "minimal.stderr.log"
        proc = run.procs.start([*argv, str(ports[MINIMAL]), str(up_port)], log=log)
        wait_listening(ports[MINIMAL], proc, MINIMAL, log)
        pgids[MINIMAL] = proc.pid
        targets = (*targets, MINIMAL)
    for target in targets:
        check_request(ports[target], target)
    for target, port in h2c_ports.items():
        check_request_h2c(port, target)

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    protocols = "HTTP/1.1 keep-alive" + ("" if args.no_h2 else ", h2c prior knowledge")
    names = " vs ".join(t for t in targets if t != "direct")
    print(f"# Proxy benchmark: direct vs {names} ({protocols})")
    print()
    tools = [_version(["nginx", "-v"]), _version(["wrk", "--version"])]
    if not args.no_h2:
        tools.append(_version(["h2load", "--version"]))
    print(
        f"Machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        + ", ".join(tools)
    )
    h2load = (
        ""
        if args.no_h2
        else f" and h2load -t1 -c{args.h2_clients} -m{args.h2_streams} (h2c, prior knowledge)"
    )
    print(
        f"Load: wrk -t{args.threads} -c{args.connections}{h2load} on core {CLIENT_CPU}; "
        f"each proxy on core {PROXY_CPU}; upstream nginx (1 worker, return 200 {BODY!r}) on "
        f"{'core ' + args.upstream_cpu if args.upstream_cpu else 'any core'} "
        f"(core {PROXY_CPU} for direct); "
        f"{args.rounds} interleaved round(s) x {args.duration:g} s per target and protocol "
        f"after {args.warmup:g} s warm-up; median round shown."
    )
    print(
        f"Request: GET {REQUEST_PATH} with {len(REQUEST_HEADERS)} headers; gwcore routes it "
        f"to r{TARGET_ROUTE} of {ROUTES} routes (path template + x-tenant exact match); "
        f"gwcore access log -> {args.access_log}; nginx access_log off. Both proxies talk "
        "HTTP/1.1 keep-alive to the upstream, whatever the client speaks."
    )
    print(f"Load average before: {' '.join(f'{x:.2f}' for x in load_before)}")
    if load_before[0] > 0.5:
        print(
            "Note: the machine was busy before the run (1-minute load average "
            f"{load_before[0]:.2f}): rps is noisy; rps per proxy core (CPU from /proc) "
            "holds up better."
        )
    print(flush=True)

    h2c_log = tmp / "h2load-requests.log"

    def once(target: str, protocol: str, seconds: float, warmup: bool) -> WrkResult | H2Result:
        # Direct: the upstream is the server under test, so it gets the proxy's core.
        pin_group(upstream.pid, PROXY_CPU if target == "direct" else args.upstream_cpu)
        if protocol == H1:
            return run_wrk(
                target,
                ports[target],
                seconds,
                args,
                proxy_pgid=pgids[target],
                upstream_pgid=upstream.pid,
            )
        return run_h2load(
            target,
            h2c_ports[target],
            seconds,
            args,
            proxy_pgid=pgids[target],
            upstream_pgid=upstream.pid,
            log=None if warmup else h2c_log,
        )

    jobs = [(t, H1) for t in targets] + [(t, H2C) for t in h2c_ports]
    for target, protocol in jobs:
        once(target, protocol, args.warmup, warmup=True)
    rounds: dict[str, list[WrkResult]] = {t: [] for t in targets}
    rounds_h2c: dict[str, list[H2Result]] = {t: [] for t in h2c_ports}
    for i in range(args.rounds):
        order = jobs[i % len(jobs) :] + jobs[: i % len(jobs)]
        for target, protocol in order:
            r = once(target, protocol, args.duration, warmup=False)
            if isinstance(r, H2Result):
                rounds_h2c[target].append(r)
                latency = f"mean {r.mean_ms:.2f} ms  p50 {_ms_text(r.p50_ms)} ms"
            else:
                rounds[target].append(r)
                latency = f"p50 {r.p50_ms:.2f} ms"
            print(
                f"  round {i + 1} {target:>14} {protocol:>8}: {r.rps:>9,.0f} rps  {latency}  "
                f"p99 {_ms_text(r.p99_ms)} ms  proxy CPU {r.proxy_cpu:.2f}  errors {r.errors}",
                file=sys.stderr,
                flush=True,
            )

    print(f"## {H1} keep-alive (wrk -t{args.threads} -c{args.connections})")
    print()
    print_table(rounds)
    print()
    _notes(rounds)
    print(REFERENCE)
    ok = True
    for target in args.gwcore:
        gw = rounds[target]
        non2xx = sum(r.non_2xx for r in gw)
        sock = sum(sum(r.socket_errors.values()) for r in gw)
        ok = ok and non2xx == 0 and sock == 0
        print(
            f"{target} errors over {len(gw)} round(s), {sum(r.requests for r in gw):,} "
            f"requests: non-2xx {non2xx}, socket errors {sock} -> "
            + ("OK" if non2xx + sock == 0 else "ERRORS")
        )
        if non2xx + sock:
            print(f"first {target} wrk output with errors:")
            print(next(r.raw for r in gw if r.errors))

    if not args.no_h2:
        print()
        print(
            f"## {H2C}, prior knowledge (h2load -t1 -c{args.h2_clients} -m{args.h2_streams}: "
            f"{args.h2_clients * args.h2_streams} streams in flight)"
        )
        print()
        print_table_h2(rounds_h2c, h2c_skipped)
        print()
        _notes_h2(rounds_h2c, rounds)
        for target in args.gwcore:
            gw2 = rounds_h2c[target]
            total = {
                "succeeded": sum(r.succeeded for r in gw2),
                "failed": sum(r.failed for r in gw2),
                "errored": sum(r.errored for r in gw2),
                "timeout": sum(r.timeout for r in gw2),
                "non-2xx": sum(r.non_2xx for r in gw2),
            }
            ok_h2c = sum(r.errors for r in gw2) == 0
            ok = ok and ok_h2c
            print(
                f"{target} over h2c, {len(gw2)} round(s), "
                f"{sum(r.requests for r in gw2):,} requests done: "
                + ", ".join(f"{k} {v:,}" for k, v in total.items())
                + f" -> {'OK' if ok_h2c else 'ERRORS'}"
            )
            if not ok_h2c:
                print(f"first {target} h2load output with errors:")
                print(next(r.raw for r in gw2 if r.errors))

    for target in args.gwcore:
        errors_log = _tail(run.services[target].log, 5)
        if errors_log.strip():
            print(f"{target} stderr (last lines):\n{errors_log}")

    if args.profiler != "none":
        profiled = args.gwcore[0]  # gwcore-trio unless only asyncio was loaded
        print()
        print(
            f"## Profile: {profiled} under the {H1} load (wrk -c{args.connections}, "
            f"{args.profile_seconds:g} s)"
        )
        if args.profiler in ("both", "py-spy") and _pyspy() is not None:
            profile_pyspy(run, profiled, ports[profiled])
        if args.profiler in ("both", "cprofile"):
            if profiled == TRIO:  # bench/gwcore_cprofile.py runs the trio adapter
                profile_cprofile(run, config)
            else:
                print("cProfile skipped: bench/gwcore_cprofile.py runs the trio adapter only")

    load_after = os.getloadavg()
    print()
    print(f"Load average after: {' '.join(f'{x:.2f}' for x in load_after)}")
    print(f"Exit status: {'0 (no gwcore errors)' if ok else '1 (gwcore errors, see above)'}")
    return 0 if ok else 1


def profile_pyspy(run: Run, target: str, port: int) -> None:
    args = run.args
    pyspy = _pyspy()
    assert pyspy is not None
    raw = run.tmp / "pyspy.txt"
    seconds = args.profile_seconds
    gw = run.services[target]
    load = subprocess.Popen(
        wrk_argv(port, seconds + 2, args.connections, args.threads),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        time.sleep(1.0)
        spy_argv = ["taskset", "-c", CLIENT_CPU, pyspy, "record", "--pid", str(gw.pid)]
        spy_argv += ["--duration", str(max(1, round(seconds))), "--rate", "200", "--function"]
        spy_argv += ["--format", "raw", "--output", str(raw)]
        spy = subprocess.run(
            spy_argv,
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        )
        out, _ = load.communicate(timeout=seconds + 30)
    finally:
        Processes.stop(load, wait=2)
    if spy.returncode != 0 or not raw.exists():
        print(f"py-spy failed ({spy.returncode}): {spy.stderr.strip()[-500:]}")
        return
    result = parse_wrk("gwcore", out.decode(), 0.0, 0.0)
    print()
    print(
        f"### py-spy (sampling at 200 Hz; the load ran at {result.rps:,.0f} rps while sampled, "
        f"non-2xx {result.non_2xx}, socket errors {sum(result.socket_errors.values())})"
    )
    print()
    report_pyspy(raw, int(result.rps * seconds), args.top)


def profile_cprofile(run: Run, config: Path) -> None:
    """A second gwcore run by ``bench/gwcore_cprofile.py``: cProfile is switched on by
    SIGUSR1 after a warm-up under load and off by SIGUSR2; SIGINT stops gwcore, and the
    stats are written on the way out."""
    args = run.args
    stats = run.tmp / "gwcore.pstats"
    port = free_port()
    runner = [sys.executable, str(ROOT / "bench" / "gwcore_cprofile.py"), str(stats)]
    log = run.tmp / "gwcore-cprofile.stderr.log"
    argv = ["taskset", "-c", PROXY_CPU, *runner, str(config), f"{HOST}:{port}"]
    with open(args.access_log, "ab") as access:
        proc = run.procs.start(argv, stdout=access, log=log)
    warmup = 1.0
    window = args.profile_seconds
    try:
        wait_listening(port, proc, "gwcore under cProfile", log)
        check_request(port, "gwcore under cProfile")
        load = subprocess.Popen(
            wrk_argv(port, warmup + window + 1, args.connections, args.threads),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            time.sleep(warmup)
            os.kill(proc.pid, signal.SIGUSR1)
            started = time.monotonic()
            time.sleep(window)
            os.kill(proc.pid, signal.SIGUSR2)
            window = time.monotonic() - started
            out, _ = load.communicate(timeout=window + 30)
        finally:
            Processes.stop(load, wait=2)
    finally:
        Processes.stop(proc, signal.SIGINT, wait=15)
    if not stats.exists():
        print(f"cProfile wrote no stats:\n{_tail(log)}")
        return
    result = parse_wrk("gwcore", out.decode(), 0.0, 0.0)
    requests = int(result.rps * window)
    print()
    print(
        f"### cProfile ({window:.1f} s window after {warmup:g} s of load; wrk saw "
        f"{result.rps:,.0f} rps over the whole run, non-2xx {result.non_2xx}, "
        f"socket errors {sum(result.socket_errors.values())})"
    )
    print()
    report_cprofile(stats, requests, args.top)


if __name__ == "__main__":
    sys.exit(main())
