"""Proxy throughput against a bare ASGI app: cache hits and pass-through, measured in one run.

Starts the origin (``origin_app``), the proxy on the memory store (``python -m proxy serve``: uvicorn with uvloop and
httptools) and the bare app (``bare_app``, the same bytes as a hit), warms the cache, then loads each with wrk:
(a) the bare app, (b) proxy hits on ``/cached``, (c) proxy pass-through on ``/pass`` (``no-store``). With ``--rounds N``
the three are interleaved N times and the medians reported. Targets (issue 2 §5): hit/bare >= 0.8, pass/bare >= 0.2.

Cores: the proxy and the bare app on core 0 (one at a time under load), wrk and the origin on core 1, so the process
under test has a core of its own and pass-through is not charged for the origin's work.

    python -m load_tests.bench_proxy --duration 10 --rounds 3
    python -m load_tests.bench_proxy --duration 10 --rounds 3 --compare-eviction lru   # + hits on an LRU proxy

``--compare-eviction POLICY`` starts a second proxy with that eviction policy and adds its hits to every round
(issue 12: hits under the default S3-FIFO must be no slower than under LRU, in the same run).
"""

from __future__ import annotations

import argparse
import statistics
import sys
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
    start_bare,
    start_origin,
    start_proxy,
    write_result,
    wrk_arguments,
)

HIT_TARGET, PASS_TARGET = 0.8, 0.2


def warm_cache(proxy: str) -> None:
    """Store ``/cached`` and check that the next request is a hit (else the hit run would measure misses)."""
    for _ in range(3):
        _status, headers, _body = http_get(f"{proxy}/cached")
    status = headers.get("cache-status", "")
    if "hit" not in status:
        raise RuntimeError(f"the proxy does not serve /cached from its cache: Cache-Status {status!r}")


def ratio_lines(bare: WrkResult, hit: WrkResult, passed: WrkResult) -> tuple[list[str], dict[str, float]]:
    ratios = {"hit/bare": hit.rps / bare.rps, "pass/bare": passed.rps / bare.rps}
    lines = []
    for (name, value), target in zip(ratios.items(), (HIT_TARGET, PASS_TARGET), strict=True):
        verdict = "meets" if value >= target else "BELOW"
        lines.append(f"{name:<10} {value:5.2f}   target >= {target:.1f}: {verdict}")
    return lines, ratios


def start_all(procs: Processes, pin: bool) -> tuple[str, str, str]:
    """Origin on the load core; the proxy and the bare app on the server core. Returns their base URLs."""
    server_cpu, load_cpu = (SERVER_CPU, LOAD_CPU) if pin else (None, None)
    origin = start_origin(procs, load_cpu)
    proxy = start_proxy(procs, origin, cpu=server_cpu)
    bare = start_bare(procs, server_cpu)
    return origin, proxy, bare


def run(
    settings: WrkSettings, rounds: int, warmup: float, pin: bool, compare: str | None = None
) -> dict[str, list[WrkResult]]:
    """Start everything, warm up, run the interleaved rounds; every process is stopped by PID on the way out."""
    with Processes() as procs:
        origin, proxy, bare = start_all(procs, pin)
        warm_cache(proxy)
        targets = [("bare", f"{bare}/"), ("proxy-hit", f"{proxy}/cached"), ("proxy-pass", f"{proxy}/pass")]
        if compare:
            other = start_proxy(
                procs, origin, name=f"proxy-{compare}", cpu=SERVER_CPU if pin else None, eviction=compare
            )
            warm_cache(other)
            targets.append((f"proxy-hit-{compare}", f"{other}/cached"))
        if warmup > 0:
            run_rounds(targets, replace(settings, duration=warmup), 1)
        return run_rounds(targets, settings, rounds, origin_counter(origin))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    wrk_arguments(parser)
    parser.add_argument("--compare-eviction", metavar="POLICY", help="also measure hits on a proxy with this policy")
    args = parser.parse_args(argv)
    settings = settings_from(args)
    raise_fd_limit()
    runs = run(settings, args.rounds, args.warmup, pin=not args.no_pin, compare=args.compare_eviction)
    medians = {name: median_result(name, results) for name, results in runs.items()}
    print(f"wrk: {settings.connections} connections, {settings.threads} thread, {settings.duration:g} s x "
          f"{args.rounds} round(s), 1 KiB bodies; medians")  # fmt: skip
    print(format_table(list(medians.values())))
    lines, ratios = ratio_lines(medians["bare"], medians["proxy-hit"], medians["proxy-pass"])
    print("\n".join(lines))
    if args.rounds > 1:
        # Each round runs the three back to back: the ratio within a round shares that moment's machine speed.
        paired = {
            name: statistics.median(r.rps / b.rps for b, r in zip(runs["bare"], runs[target], strict=True))
            for name, target in (("hit/bare", "proxy-hit"), ("pass/bare", "proxy-pass"))
        }
        print("median of per-round ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in paired.items()))
        ratios = {**ratios, **{f"{k} (paired)": v for k, v in paired.items()}}
    if args.compare_eviction:
        other = f"proxy-hit-{args.compare_eviction}"
        paired_hits = statistics.median(d.rps / o.rps for d, o in zip(runs["proxy-hit"], runs[other], strict=True))
        ratios["hit/hit-" + args.compare_eviction] = paired_hits
        print(f"hits, default policy / {args.compare_eviction}: {paired_hits:.2f} (median of per-round ratios)")
    payload = {"settings": settings, "rounds": args.rounds, "runs": runs, "medians": medians, "ratios": ratios}
    print(f"written: {write_result('bench_proxy', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
