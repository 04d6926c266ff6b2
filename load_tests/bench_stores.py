"""Cache hits by store: memory against Redis against Redis with a memory L1, measured in one run (issue 5).

Starts the origin, our own ``redis-server`` (free port, no persistence) and three proxies: ``--store memory``,
``--store redis://...`` and ``--store redis://... --l1-budget 32MiB``. Each proxy's ``/cached`` is warmed until it
answers a hit, then wrk loads the three in turn (interleaved over ``--rounds``, medians reported) and the ratios
against the memory store are printed. The ``upstream`` column counts requests that reached the origin during a run:
it should be 0 (a Redis read that times out counts as a miss and goes upstream).

Cores: the proxies on core 0 (one loaded at a time), wrk, the origin and redis-server on core 1.

    python -m load_tests.bench_stores --duration 10 --rounds 3
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

from load_tests.common import (
    LOAD_CPU,
    SERVER_CPU,
    Processes,
    WrkResult,
    WrkSettings,
    format_table,
    http_get,
    median_result,
    origin_counter,
    raise_fd_limit,
    run_rounds,
    settings_from,
    start_origin,
    start_proxy,
    start_redis,
    write_result,
    wrk_arguments,
)


def warm_until_hit(proxy: str, attempts: int = 50) -> None:
    """GET ``/cached`` until the proxy answers a hit (a Redis write may land a moment after the first answer)."""
    status = ""
    for _ in range(attempts):
        _code, headers, _body = http_get(f"{proxy}/cached")
        status = headers.get("cache-status", "")
        if "; hit" in status:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{proxy}/cached is not served from the cache: Cache-Status {status!r}")


def start_all(procs: Processes, pin: bool, l1_budget: str) -> tuple[str, list[tuple[str, str]]]:
    """Origin and redis-server on the load core, the three proxies on the server core; returns wrk targets."""
    server_cpu, load_cpu = (SERVER_CPU, LOAD_CPU) if pin else (None, None)
    origin = start_origin(procs, load_cpu)
    redis_url = start_redis(procs, load_cpu)
    proxies = [
        ("memory", start_proxy(procs, origin, name="proxy-memory", cpu=server_cpu)),
        ("redis", start_proxy(procs, origin, name="proxy-redis", cpu=server_cpu, store=redis_url)),
        (
            "redis+l1",
            start_proxy(procs, origin, name="proxy-l1", cpu=server_cpu, store=redis_url, l1_budget=l1_budget),
        ),
    ]
    for _name, proxy in proxies:
        warm_until_hit(proxy)
    return origin, [(name, f"{proxy}/cached") for name, proxy in proxies]


def run(settings: WrkSettings, rounds: int, warmup: float, pin: bool, l1_budget: str) -> dict[str, list[WrkResult]]:
    with Processes() as procs:
        origin, targets = start_all(procs, pin, l1_budget)
        if warmup > 0:
            run_rounds(targets, replace(settings, duration=warmup), 1)
        return run_rounds(targets, settings, rounds, origin_counter(origin))


def ratio_lines(medians: dict[str, WrkResult]) -> tuple[list[str], dict[str, float]]:
    memory = medians["memory"]
    ratios = {f"{name}/memory": result.rps / memory.rps for name, result in medians.items() if name != "memory"}
    return [f"{name:<16} {value:5.2f}" for name, value in ratios.items()], ratios


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    wrk_arguments(parser)
    parser.add_argument("--l1-budget", default="32MiB", help="the L1 of the third proxy (32MiB)")
    args = parser.parse_args(argv)
    settings = settings_from(args)
    raise_fd_limit()
    runs = run(settings, args.rounds, args.warmup, not args.no_pin, args.l1_budget)
    medians = {name: median_result(name, results) for name, results in runs.items()}
    print(f"hits on /cached by store; wrk: {settings.connections} connections, {settings.threads} thread, "
          f"{settings.duration:g} s x {args.rounds} round(s), 1 KiB bodies; medians")  # fmt: skip
    print(format_table(list(medians.values())))
    lines, ratios = ratio_lines(medians)
    print("\n".join(lines))
    payload = {"settings": settings, "rounds": args.rounds, "runs": runs, "medians": medians, "ratios": ratios}
    print(f"written: {write_result('bench_stores', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
