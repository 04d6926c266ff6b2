"""Synthetic request traces for ``cacheproxy simulate``: API-like Zipf traffic with scans, and a loop.

Both write the CSV ``simulate`` reads (``timestamp,key,size``); the generator is committed, not the traces. Every
trace is a pure function of its parameters and seed.

- ``zipf``: object popularity follows Zipf(alpha) over ``objects`` keys; every ``scan_every`` requests a scan of
  ``scan_length`` keys never seen before (a crawler, a batch export) passes through; object sizes are lognormal
  (median ``size_median``, shape ``size_sigma``), fixed per object. ``shift_every`` (0: never) moves the hot set:
  popularity ranks rotate by a tenth of the objects.
- ``loop``: ``objects`` keys requested in the same order ``rounds`` times: the textbook case where LRU and FIFO
  hit nothing once the loop is slightly larger than the cache, and a policy that keeps part of it hits that part.

    python -m load_tests.traces zipf --requests 1000000 --out /tmp/zipf.csv
    python -m load_tests.traces loop --objects 1000 --rounds 50 --out /tmp/loop.csv
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import sys
from collections.abc import Iterator
from pathlib import Path

Request = tuple[float, str, int]  # timestamp, key, size


def zipf(
    *,
    objects: int = 100_000,
    requests: int = 1_000_000,
    alpha: float = 0.9,
    scan_every: int = 100_000,
    scan_length: int = 10_000,
    shift_every: int = 0,
    size_median: int = 4096,
    size_sigma: float = 1.0,
    max_size: int = 1 << 20,
    rate: float = 1000.0,
    seed: int = 1,
) -> Iterator[Request]:
    """Zipf popularity with periodic scans and lognormal sizes; ``rate`` requests per second of trace time."""
    rng = random.Random(seed)
    sizes = [
        min(max_size, max(1, round(rng.lognormvariate(math.log(size_median), size_sigma)))) for _ in range(objects)
    ]
    cumulative = list(itertools.accumulate(1.0 / (rank + 1) ** alpha for rank in range(objects)))
    offset = scans = 0
    sent = 0
    batch = 4096
    while sent < requests:
        for rank in rng.choices(range(objects), cum_weights=cumulative, k=min(batch, requests - sent)):
            obj = (rank + offset) % objects
            yield sent / rate, f"/api/items/{obj}", sizes[obj]
            sent += 1
            if shift_every and sent % shift_every == 0:
                offset += objects // 10
            if scan_every and sent % scan_every == 0:
                for i in range(scan_length):
                    if sent >= requests:
                        break
                    yield sent / rate, f"/api/scan/{scans}/{i}", sizes[i % objects]
                    sent += 1
                scans += 1
                break  # draw a fresh batch: the scan may have ended on a shift boundary


def loop(*, objects: int = 1000, rounds: int = 50, size: int = 1000, rate: float = 1000.0) -> Iterator[Request]:
    """``objects`` keys of ``size`` bytes, requested in the same order ``rounds`` times."""
    for n in range(objects * rounds):
        yield n / rate, f"/loop/{n % objects}", size


def write_csv(trace: Iterator[Request], out: Path) -> int:
    """Write ``timestamp,key,size`` lines (with a header); returns the number of requests."""
    count = 0
    with out.open("w", encoding="utf-8") as stream:
        stream.write("timestamp,key,size\n")
        for timestamp, key, size in trace:
            stream.write(f"{timestamp:.3f},{key},{size}\n")
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests.traces", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    z = sub.add_parser("zipf", help="Zipf popularity, periodic scans, lognormal sizes")
    z.add_argument("--objects", type=int, default=100_000)
    z.add_argument("--requests", type=int, default=1_000_000)
    z.add_argument("--alpha", type=float, default=0.9)
    z.add_argument("--scan-every", type=int, default=100_000)
    z.add_argument("--scan-length", type=int, default=10_000)
    z.add_argument("--shift-every", type=int, default=0)
    z.add_argument("--size-median", type=int, default=4096)
    z.add_argument("--seed", type=int, default=1)
    lp = sub.add_parser("loop", help="the same keys in the same order, round after round")
    lp.add_argument("--objects", type=int, default=1000)
    lp.add_argument("--rounds", type=int, default=50)
    lp.add_argument("--size", type=int, default=1000)
    for p in (z, lp):
        p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.kind == "zipf":
        trace = zipf(
            objects=args.objects, requests=args.requests, alpha=args.alpha, scan_every=args.scan_every,
            scan_length=args.scan_length, shift_every=args.shift_every, size_median=args.size_median, seed=args.seed,
        )  # fmt: skip
    else:
        trace = loop(objects=args.objects, rounds=args.rounds, size=args.size)
    count = write_csv(trace, args.out)
    print(f"{args.out}: {count:,} requests", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
