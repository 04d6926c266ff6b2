"""The soak: mixed traffic and faults against a real proxy, every response checked against what the origin produced.

    python -m load_tests.soak --duration 600 --store memory --workers 1
    python -m load_tests.soak --duration 600 --store redis --workers 2

It starts the versioned origin (``load_tests/soak_origin.py``) in this process, our own ``redis-server`` on a free
port when ``--store redis``, and ``python -m proxy serve`` with the default settings (access log to a temporary file).
Traffic: ``--concurrency`` clients pick keys from a Zipf distribution and send GETs, conditional GETs, POSTs (a new
version), requests they hang up on, and a prefix purge every 10 s. Faults, spread over the run unless ``--no-faults``:
Redis killed and restarted (``--store redis``), one worker SIGKILLed (``--workers`` > 1), the origin stopped and
started again.

The checker holds every response against the origin's record (``Versions``):

- ``wrong-key`` / ``unknown-version``: the body is not one the origin produced for that key;
- ``too-old``: the version had been superseded for longer than the route's lifetime and stale windows allow;
- ``write-lost``: a GET sent after a POST to the same key had answered returned a version older than the POST's;
- ``private-leak`` / ``vary-leak``: a body made for another client, or for another variant;
- ``unexpected-error``: a 5xx or a transport error outside a fault window (and not on the ``/fail/`` route);
- ``purge-readiness``: from 5 s after Redis is back, ``readyz`` or an admin purge (asked side by side every quarter
  second for 15 s) did not succeed.

Process figures (RSS and open descriptors of the proxy's process tree, and its asyncio tasks from
``cacheproxy_asyncio_tasks``) are sampled through the run and again after ``--idle`` seconds without traffic; more than
``TASK_SLACK`` tasks per worker above the start is a ``task-leak``. Exit status 1 on any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field, fields
from pathlib import Path

import httpx
import uvicorn

from load_tests.common import HOST, REPO, free_port, raise_fd_limit, wait_http
from load_tests.soak_origin import CACHE_CONTROL, SoakOrigin, Versions

BODY = re.compile(
    r"key=(?P<key>\S+) version=(?P<version>\d+)(?: client=(?P<client>\S+))?(?: variant=(?P<variant>\S+))?"
)
KINDS = ("v", "v", "v", "v", "swr", "swr", "vary", "private", "slow", "fail")
SLACK = 1.5  # whole-second Age and scheduling: a version may be served this much past its window
TASK_SLACK = 3  # per worker: asyncio tasks that come and go at idle (the scrape's own request, a timer's callback)


def allowance(kind: str, origin_down: bool) -> float:
    """How long after a version was superseded a shared cache may still serve it on this route."""
    directives = dict(part.strip().partition("=")[::2] for part in CACHE_CONTROL[kind].split(",") if "=" in part)
    if kind == "private":
        return 0.0
    total = float(directives.get("max-age", 0)) + float(directives.get("stale-while-revalidate", 0))
    if origin_down:
        total += float(directives.get("stale-if-error", 0))
    return total


@dataclass
class Window:
    kind: str
    start: float
    end: float = float("inf")

    def covers(self, start: float, end: float, margin: float) -> bool:
        return start <= self.end + margin and end >= self.start


@dataclass
class Report:
    duration: float
    store: str
    workers: int
    responses: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    cache_status: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    exempt: int = 0
    faults: list[str] = field(default_factory=list)
    samples: list[dict[str, float]] = field(default_factory=list)
    idle: dict[str, float] = field(default_factory=dict)
    origin_requests: int = 0
    recovery: dict[str, float] = field(default_factory=dict)  # after Redis' return: seconds to ok (see agreement)

    def violate(self, kind: str, text: str) -> None:
        self.violations[kind] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {text}")


class Checker:
    def __init__(self, versions: Versions, report: Report) -> None:
        self.versions = versions
        self.report = report
        self.windows: list[Window] = []
        self.writes: dict[str, list[tuple[float, int]]] = {}  # key -> (answered at, version) of POSTs via the proxy

    def in_fault(self, start: float, end: float, kinds: tuple[str, ...], margin: float = 5.0) -> bool:
        return any(w.kind in kinds and w.covers(start, end, margin) for w in self.windows)

    def wrote(self, key: str, answered_at: float, body: str) -> None:
        found = BODY.match(body)
        if found:
            self.writes.setdefault(key, []).append((answered_at, int(found["version"])))

    def check(self, key: str, kind: str, sent: float, received: float, status: int, body: str,
              client: str, variant: str) -> None:  # fmt: skip
        report = self.report
        report.responses += 1
        report.statuses[str(status)] += 1
        if status >= 500 or status == 0:
            if kind == "fail" or self.in_fault(sent, received, ("origin", "redis", "worker")):
                report.exempt += 1
            else:
                report.violate("unexpected-error", f"{status} for {key} at {sent:.2f}")
            return
        if status != 200:
            return
        found = BODY.match(body)
        if found is None or found["key"] != key:
            report.violate("wrong-key", f"{key} got {body[:80]!r}")
            return
        version = int(found["version"])
        if not self.versions.exists(key, version):
            report.violate("unknown-version", f"{key} version {version}")
            return
        if kind == "private" and found["client"] != client:
            report.violate("private-leak", f"{key}: {client} got {found['client']}'s body")
        if kind == "vary" and found["variant"] != variant:
            report.violate("vary-leak", f"{key}: variant {variant} got {found['variant']}")
        store_fault = self.in_fault(sent - 1, received, ("redis", "worker"))
        superseded = self.versions.superseded_at(key, version)
        limit = allowance(kind, self.in_fault(sent - 30, received, ("origin",), margin=0))
        if superseded is not None and superseded < sent - limit - SLACK:
            if store_fault:
                report.exempt += 1
            else:
                report.violate("too-old", f"{key} v{version} superseded {sent - superseded:.2f}s before the GET")
        for answered_at, written in self.writes.get(key, ()):
            if answered_at < sent and version < written:
                if store_fault:
                    report.exempt += 1
                else:
                    report.violate("write-lost", f"{key}: v{version} after the write of v{written} answered "
                                   f"{sent - answered_at:.2f}s earlier")  # fmt: skip
                break


class OriginServer:
    """The versioned origin under uvicorn in this loop; stop and start again on the same port (an outage)."""

    def __init__(self, app: SoakOrigin) -> None:
        self.app = app
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> None:
        config = uvicorn.Config(self.app, host=HOST, port=self.port, log_level="error", lifespan="off",
                                timeout_keep_alive=5)  # fmt: skip
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._server, self._task = server, asyncio.create_task(server.serve())
        while not server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        self._server = self._task = None


class ProxyProcess:
    """``python -m proxy serve`` with the default settings (access log on, to a file), stopped by its PID."""

    def __init__(self, upstream: str, store: str, workers: int, directory: str) -> None:
        self.port = free_port()
        rules = Path(directory) / "rules.yaml"
        rules.write_text("defaults:\n  stale_if_error: 0s\nroutes: []\n")
        self.log = open(Path(directory) / "proxy.log", "wb")  # noqa: SIM115 (closed in stop)
        args = [sys.executable, "-m", "proxy", "serve", "--upstream", upstream, "--host", HOST, "--port",
                str(self.port), "--store", store, "--workers", str(workers), "--rules", str(rules)]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEPROXY_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        wait_http(f"{self.url}/_cacheproxy/healthz", self.proc, timeout=60)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def tree(self) -> list[int]:
        pids = [self.proc.pid]
        for pid in list(pids):
            with contextlib.suppress(OSError):
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                pids.extend(int(c) for c in children)
        return pids

    def workers(self) -> list[int]:
        return self.tree()[1:]

    def sample(self) -> dict[str, float]:
        rss = fds = 0
        for pid in self.tree():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                fds += len(os.listdir(f"/proc/{pid}/fd"))
        return {"rss_mib": round(rss / 1024, 1), "fds": fds}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class RedisProcess:
    """Our own redis-server on a free port (never 6379); ``kill`` and ``start`` again on the same port."""

    def __init__(self, directory: str) -> None:
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
                "--dir", self.directory]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                import socket

                with socket.create_connection((HOST, self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def zipf_key(rng: random.Random, keys: int) -> int:
    """A key index with Zipf-like popularity (s ≈ 1)."""
    return min(int(keys ** rng.random()) - 1, keys - 1)


async def client_loop(
    number: int, proxy: str, checker: Checker, deadline: float, keys: int, rng: random.Random
) -> None:
    name = f"c{number}"
    etags: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=proxy, timeout=20) as http:
        while time.monotonic() < deadline:
            kind = rng.choice(KINDS)
            key = f"/{kind}/{zipf_key(rng, keys)}"
            roll = rng.random()
            variant = rng.choice(("a", "b", "c"))
            headers = {"X-Client": name, "X-Variant": variant}
            if roll < 0.07:
                sent = time.monotonic()
                with contextlib.suppress(httpx.HTTPError):
                    response = await http.post(key, content=b"new version")
                    if response.status_code == 200:
                        checker.wrote(key, time.monotonic(), response.text)
                continue
            if roll < 0.10 and kind == "slow":
                task = asyncio.create_task(http.get(key, headers=headers))
                await asyncio.sleep(0.1)
                task.cancel()  # the client hangs up mid-request
                with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                    await task
                continue
            if roll < 0.20 and key in etags:
                headers["If-None-Match"] = etags[key]
            sent = time.monotonic()
            try:
                response = await http.get(key, headers=headers)
            except httpx.HTTPError:
                checker.check(key, kind, sent, time.monotonic(), 0, "", name, variant)
                continue
            checker.report.cache_status[_outcome(response.headers.get("cache-status", ""))] += 1
            if "etag" in response.headers:
                etags[key] = response.headers["etag"]
            checker.check(key, kind, sent, time.monotonic(), response.status_code, response.text, name, variant)


def _outcome(line: str) -> str:
    parts = [p.strip() for p in line.split(";")[1:]]
    return ";".join(p for p in parts if not p.startswith("ttl=") and not p.startswith("fwd-status")) or "-"


async def purge_loop(proxy: str, deadline: float, keys: int, rng: random.Random) -> None:
    async with httpx.AsyncClient(base_url=proxy, timeout=10) as http:
        while time.monotonic() < deadline:
            await asyncio.sleep(10)
            with contextlib.suppress(httpx.HTTPError):
                await http.post("/_cacheproxy/purge", json={"prefix": f"/v/{rng.randrange(keys)}"})


async def faults(
    config: argparse.Namespace, checker: Checker, origin: OriginServer, proxy: ProxyProcess,
    redis: RedisProcess | None, started: float,
) -> None:  # fmt: skip
    """The fault schedule, scaled to the run: Redis down at 25 %, a worker killed at 50 %, the origin down at 70 %."""
    duration = config.duration
    plan: list[tuple[float, str]] = []
    if redis is not None:
        plan.append((0.25, "redis"))
    if config.workers > 1:
        plan.append((0.5, "worker"))
    plan.append((0.7, "origin"))
    probe: asyncio.Task[None] | None = None
    for share, kind in plan:
        await asyncio.sleep(max(0.0, started + share * duration - time.monotonic()))
        outage = min(20.0 if kind == "redis" else 10.0, duration / 6)
        window = Window(kind, time.monotonic())
        checker.windows.append(window)
        if kind == "redis" and redis is not None:
            redis.kill()
            await asyncio.sleep(outage)
            await asyncio.to_thread(redis.start)
            probe = asyncio.create_task(agreement(proxy.url, checker.report, time.monotonic()))
        elif kind == "worker":
            workers = proxy.workers()
            if workers:
                os.kill(workers[0], signal.SIGKILL)
            await asyncio.sleep(2)
        else:
            await origin.stop()
            await asyncio.sleep(outage)
            await origin.start()
        window.end = time.monotonic()
        checker.report.faults.append(f"{kind} at {window.start - started:.0f}s for {window.end - window.start:.1f}s")
    if probe is not None:
        await probe


AGREE_WITHIN = 5.0  # seconds after Redis is back by which readiness and the admin purge must both say ok


async def agreement(proxy: str, report: Report, returned: float, span: float = 15.0) -> None:
    """After Redis is back: ``readyz`` and an admin purge, asked side by side every quarter second for ``span``
    seconds. From ``AGREE_WITHIN`` seconds on, both must succeed; each poll where they differ is counted."""
    first_ok: dict[str, float] = {}
    disagreed: list[float] = []
    async with httpx.AsyncClient(base_url=proxy, timeout=5) as http:
        while (since := time.monotonic() - returned) < span:
            ready, purge = await asyncio.gather(
                _status(http.get("/_cacheproxy/readyz")),
                _status(http.post("/_cacheproxy/purge", json={"prefix": "/soak-probe/"})),
            )
            for name, ok in (("readyz", ready == 200), ("purge", purge == 200)):
                if ok:
                    first_ok.setdefault(name, since)
                elif since >= AGREE_WITHIN:
                    report.violate("purge-readiness", f"{name} answered {ready if name == 'readyz' else purge} "
                                   f"{since:.1f}s after Redis was back")  # fmt: skip
            if (ready == 200) != (purge == 200):
                disagreed.append(since)
            await asyncio.sleep(0.25)
    report.recovery = {
        "readyz_ok": first_ok.get("readyz", -1.0),
        "purge_ok": first_ok.get("purge", -1.0),
        "disagreements": float(len(disagreed)),
        "last_disagreement": max(disagreed, default=-1.0),
    }


async def _status(request: Awaitable[httpx.Response]) -> int:
    try:
        return (await request).status_code
    except httpx.HTTPError:
        return 0


async def sampler(proxy: ProxyProcess, report: Report, deadline: float) -> None:
    async with httpx.AsyncClient(base_url=proxy.url, timeout=5) as http:
        while time.monotonic() < deadline:
            report.samples.append({**proxy.sample(), **await _tasks(http)})
            await asyncio.sleep(2)


async def _tasks(http: httpx.AsyncClient) -> dict[str, float]:
    """The proxy's asyncio task count, from its metrics when it exposes ``cacheproxy_asyncio_tasks`` (one series per
    worker with several: summed), and how many workers it came from."""
    with contextlib.suppress(httpx.HTTPError):
        text = (await http.get("/_cacheproxy/metrics")).text
        values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith("cacheproxy_asyncio_tasks")]
        if values:  # a worker's series reads 0 until it has counted its tasks once
            return {"tasks": sum(values), "reporting": sum(value > 0 for value in values)}
    return {}


async def _baseline(proxy: ProxyProcess, workers: int, timeout: float = 15.0) -> dict[str, float]:
    """The first sample, once every worker has reported its task count (a worker reports a second after it starts)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=proxy.url, timeout=5) as http:
        while True:
            tasks = await _tasks(http)
            if tasks.get("reporting", workers) >= workers or time.monotonic() > deadline:
                return {**proxy.sample(), **tasks}
            await asyncio.sleep(0.2)


def check_idle(report: Report) -> None:
    """After ``--idle`` seconds without traffic the proxy's asyncio tasks are back near where they started: a task
    that outlives its request (a fetch, a refresh, a connection's reader) would show as a count that only grows."""
    start, idle = report.samples[0].get("tasks"), report.idle.get("tasks")
    if start is None or idle is None:
        return
    if idle > start + TASK_SLACK * report.workers:
        report.violate("task-leak", f"{idle:.0f} asyncio tasks after the idle time, {start:.0f} at the start")


async def run_soak(config: argparse.Namespace) -> Report:
    raise_fd_limit()
    report = Report(config.duration, config.store, config.workers)
    versions = Versions()
    checker = Checker(versions, report)
    rng = random.Random(config.seed)
    with tempfile.TemporaryDirectory(prefix="soak-") as directory:
        origin = OriginServer(SoakOrigin(versions))
        await origin.start()
        redis = RedisProcess(directory) if config.store == "redis" else None
        store = redis.url if redis is not None else "memory"
        proxy = await asyncio.to_thread(ProxyProcess, origin.url, store, config.workers, directory)
        try:
            report.samples.append(await _baseline(proxy, config.workers))
            started = time.monotonic()
            deadline = started + config.duration
            jobs = [client_loop(n, proxy.url, checker, deadline, config.keys, random.Random(rng.random()))
                    for n in range(config.concurrency)]  # fmt: skip
            jobs += [purge_loop(proxy.url, deadline, config.keys, rng), sampler(proxy, report, deadline)]
            if not config.no_faults:
                jobs.append(faults(config, checker, origin, proxy, redis, started))
            await asyncio.gather(*jobs)
            await asyncio.sleep(config.idle)
            async with httpx.AsyncClient(base_url=proxy.url, timeout=5) as http:
                report.idle = {**proxy.sample(), **await _tasks(http)}
            check_idle(report)
            report.origin_requests = versions.requests
        finally:
            await asyncio.to_thread(proxy.stop)
            if redis is not None:
                redis.kill()
            await origin.stop()
    return report


def print_report(report: Report) -> None:
    first, peak = report.samples[0], max(report.samples, key=lambda s: s["rss_mib"])
    print(f"soak: {report.duration:.0f}s, store={report.store}, workers={report.workers}")
    print(f"responses checked: {report.responses:,}  origin requests: {report.origin_requests:,}  "
          f"exempt (in a fault window): {report.exempt:,}")  # fmt: skip
    print("statuses: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(report.statuses.items())))
    print("cache-status: " + ", ".join(f"{k}: {v:,}" for k, v in report.cache_status.most_common(8)))
    print("faults: " + ("; ".join(report.faults) or "none"))
    print(f"{'':12} {'start':>10} {'peak':>10} {'after idle':>10}")
    for name in ("rss_mib", "fds", "tasks"):
        if name in first:
            print(f"{name:12} {first[name]:>10} {peak.get(name, '-'):>10} {report.idle.get(name, '-'):>10}")
    if report.recovery:
        r = report.recovery
        print(f"after Redis returned: readyz ok at +{r['readyz_ok']:.2f}s, purge ok at +{r['purge_ok']:.2f}s, "
              f"{r['disagreements']:.0f} polls disagreed (last at +{r['last_disagreement']:.2f}s)")  # fmt: skip
    total = sum(report.violations.values())
    print(f"violations: {total}" + (": " + dict(report.violations).__repr__() if total else ""))
    for example in report.examples:
        print("  " + example)


def report_json(report: Report) -> str:
    """The report as JSON. Not ``dataclasses.asdict``: it rebuilds a ``Counter`` from (key, count) pairs, which
    counts the pairs themselves (``{("200", 5): 1}``), and JSON refuses tuple keys."""
    return json.dumps({f.name: getattr(report, f.name) for f in fields(report)}, indent=2, default=str)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (default 60)")
    parser.add_argument("--store", choices=("memory", "redis"), default="memory")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16, help="clients sending at once (default 16)")
    parser.add_argument("--keys", type=int, default=200, help="keys per route (default 200)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds without traffic before the last sample")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    config = parser.parse_args(argv)
    if config.workers > 1 and config.store == "memory":
        parser.error("--workers > 1 needs --store redis (memory stores are per worker, so writes in one are unseen)")
    report = asyncio.run(run_soak(config))
    print_report(report)
    if config.json:
        config.json.write_text(report_json(report))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
