"""A stampede on one cold key: N clients at once, and the origin must see one request (issue 4).

Starts a slow origin (``/slow?ms=200``, ``max-age``) and the proxy, opens N connections first, then sends N requests for
one cold key at the same instant on raw asyncio sockets, and prints how many reached the origin (its ``/count``), the
Cache-Status mix and the latency of the leader and the followers. ``--workers 4 --store redis`` runs the proxy with four
workers on our own ``redis-server`` (free port, no persistence) to show coalescing across processes.

``--expire`` instead holds a key hot with a short ``max-age`` under constant load from ``--clients`` keep-alive
connections for ``--duration`` seconds, and prints the upstream requests against the expiry periods that passed:
a stale hot key is refreshed once per expiry, not once per client. The origin sends no ``Date``, so ages are exact.

Cores: the proxy (all its workers) on core 0; the origin, redis-server and this client on core 1.

    python -m load_tests.stampede --requests 1000
    python -m load_tests.stampede --workers 4 --store redis
    python -m load_tests.stampede --expire --duration 10 --max-age 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from load_tests.common import (
    HOST,
    LOAD_CPU,
    SERVER_CPU,
    Processes,
    http_get,
    raise_fd_limit,
    start_origin,
    start_proxy,
    start_redis,
    write_result,
)

StreamPair = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True)
class Config:
    requests: int = 1000
    delay_ms: int = 200
    max_age: int = 3600
    swr: int = 0
    workers: int = 1
    store: str = "memory"  # memory, or redis: our own redis-server
    l1_budget: str | None = None
    pin: bool = True
    timeout: float = 60.0  # the whole stampede, connections included


@dataclass(frozen=True)
class Answer:
    status: int
    cache_status: str
    body: bytes
    latency_ms: float


@dataclass(frozen=True)
class Outcome:
    target: str
    upstream: int
    answers: list[Answer]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response: Content-Length, chunked, or read to EOF."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    if "chunked" in headers.get("transfer-encoding", ""):
        body = bytearray()
        while size := int((await reader.readline()).split(b";")[0], 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")
        return status, headers, bytes(body)
    return status, headers, await reader.read()


def request_bytes(target: str, port: int, keep_alive: bool = False) -> bytes:
    connection = "keep-alive" if keep_alive else "close"
    return f"GET {target} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: {connection}\r\n\r\n".encode()


async def one_request(pair: StreamPair, payload: bytes, go: asyncio.Event) -> Answer:
    reader, writer = pair
    await go.wait()
    started = time.perf_counter()
    writer.write(payload)
    await writer.drain()
    status, headers, body = await read_response(reader)
    latency = (time.perf_counter() - started) * 1000
    writer.close()
    return Answer(status, headers.get("cache-status", ""), body, latency)


async def stampede(port: int, target: str, n: int) -> list[Answer]:
    """Connect ``n`` sockets, then release ``n`` requests for ``target`` at once; all sockets closed on the way out."""
    pairs: list[StreamPair] = []
    try:
        for start in range(0, n, 200):  # connect in batches, so the accept backlog never overflows
            batch = [asyncio.open_connection(HOST, port) for _ in range(start, min(n, start + 200))]
            pairs += await asyncio.gather(*batch)
        go = asyncio.Event()
        payload = request_bytes(target, port)
        tasks = [asyncio.ensure_future(one_request(pair, payload, go)) for pair in pairs]
        await asyncio.sleep(0)
        go.set()
        return list(await asyncio.gather(*tasks))
    finally:
        await close_all([writer for _reader, writer in pairs])


async def close_all(writers: Sequence[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    await asyncio.gather(*(writer.wait_closed() for writer in writers), return_exceptions=True)


def upstream_count(origin: str, target: str) -> int:
    _status, _headers, body = http_get(f"{origin}/count?target={target.replace('&', '%26')}")
    return int(json.loads(body)["count"])


def wait_for_workers(proxy: str, workers: int, timeout: float = 30.0) -> None:
    """With ``--workers N``, poll ``stats.json`` on fresh connections until N distinct worker PIDs have answered."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < workers and time.monotonic() < deadline:
        _status, _headers, body = http_get(f"{proxy}/_cacheproxy/stats.json")
        seen.add(int(json.loads(body)["worker"]))
        time.sleep(0.02)
    if len(seen) < workers:
        raise RuntimeError(f"only {len(seen)} of {workers} workers answered within {timeout} s")


def start_servers(procs: Processes, config: Config) -> tuple[str, str]:
    """The slow origin (no Date header, so ages are exact) and the proxy; redis-server first when asked for."""
    server_cpu, load_cpu = (SERVER_CPU, LOAD_CPU) if config.pin else (None, None)
    origin = start_origin(procs, load_cpu, date_header=False)
    store = start_redis(procs, load_cpu) if config.store == "redis" else config.store
    proxy = start_proxy(procs, origin, cpu=server_cpu, store=store, l1_budget=config.l1_budget, workers=config.workers)
    if config.workers > 1:
        wait_for_workers(proxy, config.workers)
    return origin, proxy


def slow_target(config: Config) -> str:
    """A key no earlier run has stored: a fresh ``run`` parameter each time."""
    swr = f"&swr={config.swr}" if config.swr else ""
    return f"/slow?ms={config.delay_ms}&max_age={config.max_age}{swr}&run={uuid.uuid4().hex[:12]}"


def run_stampede(config: Config) -> Outcome:
    """Start the servers, fire the stampede, count what reached the origin; every process stopped by PID."""
    with Processes() as procs:
        origin, proxy = start_servers(procs, config)
        target = slow_target(config)
        port = urlsplit(proxy).port or 80
        answers = asyncio.run(asyncio.wait_for(stampede(port, target, config.requests), config.timeout))
        return Outcome(target, upstream_count(origin, target), answers)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def cache_status_kind(value: str) -> str:
    """``cacheproxy; hit; ttl=41`` → ``hit``: the parameters that vary per response (ttl) dropped."""
    parts = [p.strip() for p in value.split(";")[1:] if not p.strip().startswith("ttl=")]
    return "; ".join(parts) or "(none)"


def summarize(outcome: Outcome) -> list[str]:
    answers = outcome.answers
    statuses = Counter(a.status for a in answers)
    kinds = Counter(cache_status_kind(a.cache_status) for a in answers)
    leaders = [a.latency_ms for a in answers if "stored" in a.cache_status]
    followers = [a.latency_ms for a in answers if "stored" not in a.cache_status]
    lines = [
        f"upstream requests: {outcome.upstream}   (target: 1)",
        f"answers: {len(answers)}, status {dict(statuses)}, identical bodies: {len({a.body for a in answers}) == 1}",
        "cache-status: " + ", ".join(f"{kind}: {n}" for kind, n in kinds.most_common()),
        f"{'latency ms':<12}{'n':>6}{'p50':>9}{'p99':>9}{'max':>9}",
    ]
    for name, values in (("leader", leaders), ("followers", followers), ("all", leaders + followers)):
        top = max(values) if values else 0.0
        lines.append(
            f"{name:<12}{len(values):>6}{percentile(values, 0.5):>9.1f}{percentile(values, 0.99):>9.1f}{top:>9.1f}"
        )
    return lines


async def hot_load(port: int, target: str, clients: int, duration: float) -> list[Answer]:
    """``clients`` keep-alive connections asking for ``target`` back to back until ``duration`` has passed."""
    deadline = time.monotonic() + duration
    payload = request_bytes(target, port, keep_alive=True)

    async def client() -> list[Answer]:
        reader, writer = await asyncio.open_connection(HOST, port)
        out: list[Answer] = []
        try:
            while time.monotonic() < deadline and len(out) < 1_000_000:
                started = time.perf_counter()
                writer.write(payload)
                await writer.drain()
                status, headers, body = await read_response(reader)
                latency = (time.perf_counter() - started) * 1000
                out.append(Answer(status, headers.get("cache-status", ""), body, latency))
        finally:
            await close_all([writer])
        return out

    results = await asyncio.gather(*(client() for _ in range(clients)))
    return [answer for answers in results for answer in answers]


def run_expire(config: Config, clients: int, duration: float) -> Outcome:
    """Hold one key hot past several expiries; the upstream count is to be compared with the expiry periods."""
    with Processes() as procs:
        origin, proxy = start_servers(procs, config)
        target = slow_target(config)
        port = urlsplit(proxy).port or 80
        answers = asyncio.run(asyncio.wait_for(hot_load(port, target, clients, duration), duration + config.timeout))
        return Outcome(target, upstream_count(origin, target), answers)


def summarize_expire(outcome: Outcome, config: Config, duration: float) -> list[str]:
    cycle = config.max_age + config.delay_ms / 1000  # fresh for max-age, then one refetch of ms milliseconds
    expected = 1 + int(duration // cycle)
    lines = summarize(outcome)
    lines[0] = (
        f"upstream requests: {outcome.upstream} over {duration:g} s at max-age={config.max_age}"
        f"{f', stale-while-revalidate={config.swr}' if config.swr else ''}"
        f" (one per expiry: about {expected}; {len(outcome.answers)} requests served)"
    )
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="concurrent requests in the stampede (1000)")
    parser.add_argument("--ms", type=int, default=200, help="the origin's delay in milliseconds (200)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--store", choices=("memory", "redis"), default="memory", help="redis: start our own")
    parser.add_argument("--l1-budget", default=None, help="with --store redis, e.g. 32MiB")
    parser.add_argument("--expire", action="store_true", help="a hot key under constant load across expiries")
    parser.add_argument("--clients", type=int, default=32, help="--expire: keep-alive clients (32)")
    parser.add_argument("--duration", type=float, default=10.0, help="--expire: seconds of load (10)")
    parser.add_argument("--max-age", type=int, default=2, help="--expire: the key's max-age in seconds (2)")
    parser.add_argument("--swr", type=int, default=0, help="--expire: stale-while-revalidate seconds (0)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores with taskset")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.clients < 1 or args.workers < 1 or not 0 < args.duration <= 600:
        parser.error("--requests, --clients and --workers must be positive, --duration in (0, 600]")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {LOAD_CPU})  # this client shares the load core with the origin
    config = Config(
        requests=args.requests, delay_ms=args.ms, max_age=args.max_age if args.expire else 3600, swr=args.swr,
        workers=args.workers, store=args.store, l1_budget=args.l1_budget, pin=not args.no_pin,
    )  # fmt: skip
    l1 = f" + L1 {config.l1_budget}" if config.l1_budget else ""
    setup = f"proxy: {config.workers} worker(s), store {config.store}{l1}"
    if args.expire:
        outcome = run_expire(config, args.clients, args.duration)
        print(f"hot key {outcome.target}, {args.clients} clients for {args.duration:g} s; {setup}")
        lines = summarize_expire(outcome, config, args.duration)
    else:
        outcome = run_stampede(config)
        print(f"stampede: {config.requests} concurrent GET {outcome.target} (cold key); {setup}")
        lines = summarize(outcome)
    print("\n".join(lines))
    payload = {"config": config, "mode": "expire" if args.expire else "stampede", "summary": lines}
    print(f"written: {write_result('stampede', {**payload, 'upstream': outcome.upstream})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
