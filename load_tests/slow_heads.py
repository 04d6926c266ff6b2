"""Slow heads: 2,000 connections dribble unfinished request heads while a client measures latency (issue 9 §4).

Starts the origin and the proxy (default limits: head timeout 10 s, 64 KiB of fields, 4,096 connections), then:

1. baseline: one normal client sends ``GET /cached`` (a hit) on a keep-alive connection, one at a time, and records
   each latency;
2. attack: a second process opens ``--connections`` connections that each send a request line and one header name,
   then one more byte every ``--interval`` seconds, never finishing the head; when the proxy closes one (``408`` at the
   head timeout) it opens another, so the count holds. ``--flooders`` more connections each push an endless header
   line as fast as they can (the 251 MiB case), reconnecting when cut;
3. the normal client measures again for ``--duration`` seconds while the attack runs.

It prints p50/p99/max of both phases, the dribblers held open, the 408s and cuts they received, and the goal (p99
under attack < 100 ms). Everything stops by itself: the attack process has a deadline, and every process is stopped
by PID on exit. The open-files limit is raised inside this process (inherited by the proxy) so 2,000 sockets fit.

Cores: the proxy on core 0; the origin, the attackers and the measuring client on core 1.

    python -m load_tests.slow_heads
    python -m load_tests.slow_heads --connections 2000 --duration 20 --flooders 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from urllib.parse import urlsplit

from load_tests.common import LOAD_CPU, Processes, raise_fd_limit, start_origin, start_proxy, write_result

GOAL_P99_MS = 100.0
REQUEST = b"GET /cached HTTP/1.1\r\nHost: bench.test\r\n\r\n"
HALF_HEAD = b"GET /cached HTTP/1.1\r\nHost: bench.test\r\nX-Slow: "


@dataclass(frozen=True)
class Config:
    connections: int = 2000
    interval: float = 1.0  # seconds between two dribbled bytes
    flooders: int = 4
    baseline: float = 3.0
    duration: float = 20.0
    ramp_limit: float = 30.0  # the most seconds to wait for the dribblers to be open
    pin: bool = True


@dataclass
class AttackStats:
    peak_open: int = 0
    opened: int = 0
    timed_out_408: int = 0
    refused: int = 0  # connect failed or a 503 (connection cap)
    flood_cuts: int = 0
    flood_bytes: int = 0


@dataclass(frozen=True)
class Latencies:
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


# --- the attack, in its own process -------------------------------------------------------------------------------


class Attack:
    def __init__(self, host: str, port: int, config: Config, deadline: float) -> None:
        self.host, self.port, self.config, self.deadline = host, port, config, deadline
        self.stats = AttackStats()
        self.open = 0

    async def dribbler(self, start_after: float) -> None:
        await asyncio.sleep(start_after)
        while time.monotonic() < self.deadline:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                self.stats.refused += 1
                await asyncio.sleep(self.config.interval)
                continue
            self.stats.opened += 1
            self.open += 1
            self.stats.peak_open = max(self.stats.peak_open, self.open)
            try:
                await self._dribble(reader, writer)
            finally:
                self.open -= 1
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def _dribble(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answer = asyncio.ensure_future(reader.read(256))
        try:
            writer.write(HALF_HEAD)
            while time.monotonic() < self.deadline:
                done, _ = await asyncio.wait({answer}, timeout=self.config.interval)
                if done:
                    data = answer.result() if not answer.exception() else b""
                    if data.startswith(b"HTTP/1.1 408"):
                        self.stats.timed_out_408 += 1
                    elif data.startswith(b"HTTP/1.1 503"):
                        self.stats.refused += 1
                    return
                writer.write(b"a")
        except OSError:
            return
        finally:
            answer.cancel()

    async def flooder(self) -> None:
        chunk = b"a" * 65536
        while time.monotonic() < self.deadline:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            try:
                writer.write(HALF_HEAD)
                while time.monotonic() < self.deadline:
                    if writer.is_closing() or reader.at_eof():
                        self.stats.flood_cuts += 1  # the proxy cut the line at the limit
                        break
                    writer.write(chunk)
                    await writer.drain()
                    self.stats.flood_bytes += len(chunk)
            except OSError:
                self.stats.flood_cuts += 1
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def run(self, progress: Queue[object], stop: EventType) -> None:
        n = self.config.connections
        ramp = min(5.0, self.config.ramp_limit / 2)
        tasks = [asyncio.ensure_future(self.dribbler(ramp * i / n)) for i in range(n)]
        tasks += [asyncio.ensure_future(self.flooder()) for _ in range(self.config.flooders)]
        while time.monotonic() < self.deadline and not stop.is_set():
            progress.put(("open", self.open))
            await asyncio.sleep(0.5)
        self.deadline = time.monotonic()  # every connection loop ends at its next step
        await asyncio.gather(*tasks, return_exceptions=True)
        progress.put(("done", asdict(self.stats)))


def attack_process(
    host: str, port: int, config: Config, seconds: float, progress: Queue[object], stop: EventType
) -> None:
    raise_fd_limit()
    if config.pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {LOAD_CPU})
    attack = Attack(host, port, config, time.monotonic() + seconds)
    asyncio.run(attack.run(progress, stop))


# --- the measuring client -----------------------------------------------------------------------------------------


def read_response(sock: socket.socket, buffer: bytes) -> tuple[int, bytes]:
    """Read one Content-Length response; returns its status and what is left in the buffer."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buffer += chunk
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(buffer) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        buffer += chunk
    return int(head.split(b" ", 2)[1]), buffer[length:]


def measure(host: str, port: int, seconds: float) -> Latencies:
    """Sequential hits on a keep-alive connection (reconnecting if closed) for ``seconds``."""
    samples: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    sock: socket.socket | None = None
    buffer = b""
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            if sock is None:
                sock = socket.create_connection((host, port), timeout=10)
                buffer = b""
            sock.sendall(REQUEST)
            status, buffer = read_response(sock, buffer)
            if status != 200:
                errors += 1
                continue
            samples.append((time.perf_counter() - started) * 1000)
        except OSError:
            errors += 1
            if sock is not None:
                sock.close()
            sock = None
        time.sleep(0.005)
    if sock is not None:
        sock.close()
    return Latencies(
        len(samples), errors, percentile(samples, 0.5), percentile(samples, 0.99), max(samples, default=0.0)
    )


@dataclass(frozen=True)
class Result:
    baseline: Latencies
    under_attack: Latencies
    held_at_start: int  # dribblers open when the measurement under attack began
    attack: object  # the attack process's AttackStats, as a dict (None if it did not report)


def run(config: Config) -> Result:
    with Processes() as procs:
        origin = start_origin(procs)
        proxy = start_proxy(procs, origin)
        parts = urlsplit(proxy)
        host, port = parts.hostname or "127.0.0.1", int(parts.port or 80)
        measure(host, port, 0.5)  # warm the cache: every later request is a hit
        baseline = measure(host, port, config.baseline)
        context = multiprocessing.get_context("spawn")
        progress: Queue[object] = context.Queue()
        seconds = config.ramp_limit + config.duration
        stop = context.Event()
        attacker = context.Process(target=attack_process, args=(host, port, config, seconds, progress, stop))
        attacker.start()
        try:
            held = wait_for_open(progress, config)
            under_attack = measure(host, port, config.duration)
            stop.set()
            stats = final_stats(progress, attacker, config.interval + 10)
        finally:
            if attacker.is_alive():
                attacker.terminate()
            attacker.join(10)
    return Result(baseline, under_attack, held, stats)


def wait_for_open(progress: Queue[object], config: Config) -> int:
    """Until the dribblers are (nearly) all open, or ``ramp_limit`` passed; the count reached."""
    deadline = time.monotonic() + config.ramp_limit
    count = 0
    while time.monotonic() < deadline and count < config.connections * 0.98:
        with contextlib.suppress(Exception):
            kind, value = progress.get(timeout=1)
            if kind == "open":
                count = int(value)
    return count


def final_stats(progress: Queue[object], attacker: multiprocessing.process.BaseProcess, seconds: float) -> object:
    deadline = time.monotonic() + seconds + 30
    while time.monotonic() < deadline:
        try:
            kind, value = progress.get(timeout=1)
        except Exception:
            if not attacker.is_alive():
                return None
            continue
        if kind == "done":
            return value
    return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--flooders", type=int, default=4)
    parser.add_argument("--baseline", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--no-pin", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    config = Config(
        connections=args.connections, interval=args.interval, flooders=args.flooders, baseline=args.baseline,
        duration=args.duration, pin=not args.no_pin,
    )  # fmt: skip
    if config.pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {LOAD_CPU})
    result = run(config)
    base, attacked = result.baseline, result.under_attack
    print(f"slow heads: {config.connections} dribbling connections (1 byte / {config.interval:g} s), "
          f"{config.flooders} endless header lines; {config.duration:g} s measured")  # fmt: skip
    for name, lat in (("baseline", base), ("under attack", attacked)):
        print(f"  {name:<13} {lat.requests:>6} hits  p50 {lat.p50_ms:7.2f} ms  p99 {lat.p99_ms:7.2f} ms  "
              f"max {lat.max_ms:7.2f} ms  errors {lat.errors}")  # fmt: skip
    print(f"  dribblers open when measuring began: {result.held_at_start}; attack: {result.attack}")
    verdict = "met" if attacked.p99_ms < GOAL_P99_MS and attacked.errors == 0 else "NOT met"
    print(f"  goal p99 < {GOAL_P99_MS:g} ms under attack: {verdict}")
    print(f"written: {write_result('slow_heads', {'config': config, 'result': result})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
