"""Shared plumbing of the load tests: processes pinned to cores, free ports, wrk runs and their parsing, results.

Every process a benchmark starts goes through ``Processes``: it is started under ``taskset -c CPU`` (when taskset
exists), bound to 127.0.0.1 on a free port, waited for with a bounded poll, and stopped by its own PID (SIGTERM, then
SIGKILL) when the ``with`` block ends, also on Ctrl-C or an error. Nothing is ever stopped by name.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SERVER_CPU, LOAD_CPU = 0, 1  # the process under test gets core 0; wrk, the clients and the backends core 1
UVICORN_FAST = ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def raise_fd_limit(wanted: int = 65536) -> None:
    """Lift the soft open-files limit (inherited by the children) so a thousand sockets fit on each side."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def pinned(cpu: int | None, args: Sequence[str]) -> list[str]:
    """``args`` under ``taskset -c cpu``; unpinned when ``cpu`` is None or taskset is missing."""
    if cpu is None or shutil.which("taskset") is None:
        return list(args)
    return ["taskset", "-c", str(cpu), *args]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """One GET on a fresh connection (urllib, so it needs nothing installed): status, lower-cased headers, body."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            return int(response.status), headers, response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), {k.lower(): v for k, v in error.headers.items()}, error.read()


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Poll ``url`` until it answers with any status; fail early when ``proc`` exits, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            http_get(url, timeout=1.0)
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@dataclass
class Processes:
    """The processes one benchmark run started; a context manager that stops them all by PID on exit."""

    started: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = field(default_factory=list)
    directories: list[str] = field(default_factory=list)

    def start(
        self, name: str, args: Sequence[str], *, cpu: int | None, ready_url: str | None = None, root: Path = REPO
    ) -> None:
        """Start ``args`` from the source tree ``root`` (its working directory, first on ``PYTHONPATH``): another
        checkout's proxy can run beside this one's."""
        log = tempfile.TemporaryFile(prefix=f"loadtest-{name}-")  # noqa: SIM115 (closed by stop_all)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEPROXY_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        proc = subprocess.Popen(pinned(cpu, args), stdout=log, stderr=log, cwd=root, env=env)
        self.started.append((name, proc, log))
        if ready_url is not None:
            try:
                wait_http(ready_url, proc)
            except (RuntimeError, TimeoutError) as error:
                raise RuntimeError(f"{name} did not start: {error}\n{self.output(name)}") from error

    def output(self, name: str, limit: int = 4000) -> str:
        for started_name, _proc, log in self.started:
            if started_name == name:
                log.seek(0)
                return log.read()[-limit:].decode("utf-8", "replace")
        return ""

    def stop_all(self) -> None:
        for _name, proc, _log in reversed(self.started):
            if proc.poll() is None:
                proc.terminate()
        for _name, proc, log in reversed(self.started):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            log.close()
        self.started.clear()
        for directory in self.directories:
            shutil.rmtree(directory, ignore_errors=True)
        self.directories.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop_all()


def start_origin(procs: Processes, cpu: int | None = LOAD_CPU, *, date_header: bool = True) -> str:
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "load_tests.origin_app:app", "--host", HOST, "--port", str(port)]
    args += [*UVICORN_FAST, *([] if date_header else ["--no-date-header"])]
    procs.start("origin", args, cpu=cpu, ready_url=f"http://{HOST}:{port}/count")
    return f"http://{HOST}:{port}"


def start_bare(procs: Processes, cpu: int | None = SERVER_CPU) -> str:
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "load_tests.bare_app:app", "--host", HOST, "--port", str(port)]
    args += [*UVICORN_FAST, "--no-server-header", "--no-date-header"]
    procs.start("bare", args, cpu=cpu, ready_url=f"http://{HOST}:{port}/")
    return f"http://{HOST}:{port}"


def start_proxy(
    procs: Processes, upstream: str, *, name: str = "proxy", cpu: int | None = SERVER_CPU, store: str = "memory",
    l1_budget: str | None = None, workers: int = 1, eviction: str | None = None, access_log: bool = True,
) -> str:  # fmt: skip
    """``python -m proxy serve`` (uvicorn with uvloop and httptools, as the CLI runs it) on a free port.

    The default settings, as users run it: the access log is on (written to the process's log file).
    """
    port = free_port()
    args = [sys.executable, "-m", "proxy", "serve", "--upstream", upstream, "--host", HOST, "--port", str(port)]
    args += ["--store", store, "--workers", str(workers), *([] if access_log else ["--no-access-log"])]
    if l1_budget:
        args += ["--l1-budget", l1_budget]
    if eviction:
        args += ["--eviction", eviction]
    procs.start(name, args, cpu=cpu, ready_url=f"http://{HOST}:{port}/_cacheproxy/healthz")
    return f"http://{HOST}:{port}"


def start_redis(procs: Processes, cpu: int | None = LOAD_CPU) -> str:
    """Our own ``redis-server`` on a free port (never 6379), persistence off, in a temporary directory."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    directory = tempfile.mkdtemp(prefix="loadtest-redis-")
    procs.directories.append(directory)
    args = ["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    args += ["--daemonize", "no", "--dir", directory]
    procs.start("redis", args, cpu=cpu)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return f"redis://{HOST}:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server on port {port} did not answer PING\n{procs.output('redis')}")


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles in milliseconds, and anything that went wrong."""

    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int = 0
    non_2xx: int = 0
    socket_errors: int = 0
    upstream: int | None = None  # requests that reached the origin during the run, when counted


TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(value: str, unit: str) -> float:
    return float(value) * TIME_UNITS[unit]


def parse_wrk(name: str, text: str) -> WrkResult:
    """Parse wrk's ``--latency`` report: ``Requests/sec``, the 50% and 99% lines, errors; ``ValueError`` if absent."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    if rps is None or p50 is None or p99 is None:
        raise ValueError(f"not a wrk --latency report:\n{text[-2000:]}")
    total = re.search(r"^\s*(\d+) requests in", text, re.M)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return WrkResult(
        name=name,
        rps=float(rps.group(1)),
        p50_ms=_ms(*p50.groups()),
        p99_ms=_ms(*p99.groups()),
        requests=int(total.group(1)) if total else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sock.groups()) if sock else 0,
    )


@dataclass(frozen=True)
class WrkSettings:
    connections: int = 64
    threads: int = 1
    duration: float = 10.0
    cpu: int | None = LOAD_CPU

    def command(self, url: str) -> list[str]:
        seconds = f"{max(1, round(self.duration))}s"
        args = ["wrk", "-t", str(self.threads), "-c", str(self.connections), "-d", seconds, "--latency", url]
        return pinned(self.cpu, args)


def run_wrk(name: str, url: str, settings: WrkSettings) -> WrkResult:
    """Run wrk once against ``url`` (bounded by its duration plus a margin) and parse its report."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    done = subprocess.run(
        settings.command(url), capture_output=True, text=True, timeout=settings.duration + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    return parse_wrk(name, done.stdout)


Counter = Callable[[], int]


def origin_counter(origin: str) -> Counter:
    """A function reading how many requests the origin has counted (``/count``), to spot misses during hit runs."""

    def count() -> int:
        _status, _headers, body = http_get(f"{origin}/count")
        return int(json.loads(body)["total"])

    return count


def settled(counter: Counter, tries: int = 20) -> int:
    """The origin's count once it stops moving (requests still in flight when wrk stopped land first)."""
    last = counter()
    for _ in range(tries):
        time.sleep(0.1)
        now = counter()
        if now == last:
            return now
        last = now
    return last


def run_rounds(
    targets: Sequence[tuple[str, str]], settings: WrkSettings, rounds: int, counter: Counter | None = None
) -> dict[str, list[WrkResult]]:
    """Interleave the targets round by round (a, b, c, a, b, c...), so drift on a noisy machine hits them alike."""
    runs: dict[str, list[WrkResult]] = {name: [] for name, _url in targets}
    for _round in range(rounds):
        for name, url in targets:
            before = settled(counter) if counter else None
            result = run_wrk(name, url, settings)
            if counter is not None and before is not None:
                result = WrkResult(**{**asdict(result), "upstream": settled(counter) - before})
            runs[name].append(result)
    return runs


def median_result(name: str, results: Sequence[WrkResult]) -> WrkResult:
    """The median of each figure across rounds (requests and errors are summed)."""
    upstream = [r.upstream for r in results if r.upstream is not None]
    return WrkResult(
        name=name,
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        requests=sum(r.requests for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        upstream=sum(upstream) if upstream else None,
    )


def format_table(rows: Sequence[WrkResult]) -> str:
    lines = [f"{'target':<14}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}{'errors':>8}{'upstream':>10}"]
    for r in rows:
        upstream = "-" if r.upstream is None else str(r.upstream)
        lines.append(
            f"{r.name:<14}{r.rps:>10.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.requests:>10}"
            f"{r.non_2xx + r.socket_errors:>8}{upstream:>10}"
        )
    return "\n".join(lines)


def write_result(kind: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the time and the machine's core count) to ``load_tests/results/<kind>-<time>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = RESULTS / f"{kind}-{stamp}.json"
    payload = {"kind": kind, "time": stamp, "cpus": os.cpu_count(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    return path


def _jsonable(value: object) -> object:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def wrk_arguments(parser: argparse.ArgumentParser) -> None:
    """The wrk flags every throughput benchmark shares."""
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; medians are reported (default 1)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load per target first")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores with taskset")


def settings_from(args: argparse.Namespace) -> WrkSettings:
    if args.duration <= 0 or args.rounds < 1 or args.connections < 1:
        raise SystemExit("--duration, --rounds and --connections must be positive")
    return WrkSettings(connections=args.connections, duration=args.duration, cpu=None if args.no_pin else LOAD_CPU)
