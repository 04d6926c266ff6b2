"""The ceiling the upstream client puts on pass-through: the client alone, against the bare app's requests/s.

A proxy's uncached request costs at least what its upstream client costs. This runs, in one run and on the same
core the proxy gets in ``bench_proxy.py``, (a) wrk against the bare ASGI app and (b) the proxy's own client
configuration (``proxy.upstream.Upstream`` with its default settings) fetching ``/pass`` from the
origin as fast as it can with 64 concurrent requests, and prints two ratios to the bare app:

- ``client/bare``: the client alone;
- ``ceiling``: a proxy must do the bare app's server-side work *and* the client's work for every uncached request,
  so with nothing else at all its pass-through is at most ``1 / (1/client + 1/bare)`` requests/s, that is
  ``client / (client + bare)`` of the bare app. No proxy built on this client and this server can beat it.

    python -m load_tests.client_ceiling --duration 5 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from load_tests.common import (
    REPO,
    SERVER_CPU,
    Processes,
    pinned,
    run_wrk,
    settings_from,
    start_bare,
    start_origin,
    wrk_arguments,
)

CLIENT = """
import asyncio, sys, time
import uvloop
from proxy.upstream import Upstream, UpstreamConfig
from proxy.messages import RequestHead

async def main(origin, seconds, concurrency):
    upstream = Upstream(UpstreamConfig(origin))
    await upstream.start()
    request = RequestHead("GET", "http", "bench", "/pass")
    done = 0
    deadline = time.monotonic() + seconds
    async def worker():
        nonlocal done
        while time.monotonic() < deadline:
            response = await upstream.send(request)
            await response.release()
            done += 1
    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    print(done / (time.monotonic() - started), done)
    await upstream.close()

uvloop.install()
asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
"""

# The same loop on pyreqwest (Rust reqwest/hyper), the fastest maintained library measured in issue 11: the yardstick
# for "prefer a maintained library if it comes within 20 % of our own client". Not a dependency: install it to compare.
PYREQWEST = """
import asyncio, sys, time
import uvloop
from pyreqwest.client import ClientBuilder

async def main(origin, seconds, concurrency):
    done = 0
    deadline = time.monotonic() + seconds
    async with ClientBuilder().max_connections(256).build() as client:
        async def worker():
            nonlocal done
            while time.monotonic() < deadline:
                response = await client.get(origin + "/pass").build().send()
                await response.bytes()
                done += 1
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        print(done / (time.monotonic() - started), done)

uvloop.install()
asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
"""
CLIENTS = {"proxy": CLIENT, "pyreqwest": PYREQWEST}


def client_rps(origin: str, seconds: float, concurrency: int, pin: bool, client: str = "proxy") -> tuple[float, float]:
    """Requests/s of one client alone (the proxy's by default), in its own process on the server core, and the CPU
    time it used per request in microseconds (all its threads: a client with its own I/O threads, like pyreqwest's
    tokio runtime, gets more of a shared core than a single-threaded one, so requests/s alone would flatter it)."""
    code = CLIENTS[client]
    args = pinned(SERVER_CPU if pin else None, [sys.executable, "-c", code, origin, str(seconds), str(concurrency)])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=True, cwd=REPO, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rps, count = done.stdout.split()
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return float(rps), cpu / max(1, int(count)) * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    wrk_arguments(parser)
    parser.add_argument("--compare", action="store_true", help="also measure pyreqwest alone (if installed)")
    args = parser.parse_args(argv)
    settings = settings_from(args)
    pin = not args.no_pin
    ratios: list[float] = []
    ceilings: list[float] = []
    compared: list[float] = []
    with Processes() as procs:
        origin = start_origin(procs, settings.cpu)
        bare = start_bare(procs, SERVER_CPU if pin else None)
        for _ in range(args.rounds):
            bare_rps = run_wrk("bare", f"{bare}/", settings).rps
            client, cpu = client_rps(origin, settings.duration, settings.connections, pin)
            ratios.append(client / bare_rps)
            ceilings.append(client / (client + bare_rps))
            print(
                f"bare {bare_rps:8.0f} req/s   upstream client alone {client:8.0f} req/s   "
                f"client/bare {ratios[-1]:.2f}   ceiling {ceilings[-1]:.2f}   cpu {cpu:.0f} us/request"
            )
            if args.compare:
                other, other_cpu = client_rps(origin, settings.duration, settings.connections, pin, "pyreqwest")
                compared.append(cpu / other_cpu)
                print(f"pyreqwest alone {other:8.0f} req/s   cpu {other_cpu:.0f} us/request   ours/pyreqwest cpu "
                      f"{compared[-1]:.2f}")  # fmt: skip
            time.sleep(0.5)
    print(
        f"medians: client/bare {statistics.median(ratios):.2f}; pass-through ceiling {statistics.median(ceilings):.2f}"
        " of the bare app (server side + client side, no proxy logic at all)"
    )
    if compared:
        print(f"median CPU per request, ours / pyreqwest: {statistics.median(compared):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
