"""Recovering from a Redis restart (issue 14 §3): how soon after Redis returns do purges succeed and readyz say ok,
and do the two agree?

    python -m load_tests.redis_recovery --outage 20 --after 30 --workers 2

It starts the soak's versioned origin, our own ``redis-server`` on a free port (never 6379) and ``python -m proxy serve
--store redis://… --workers N``, sends steady traffic (GETs over many keys) and during the warm-up a purge and a burst
of ``--burst`` concurrent GETs every second (so every worker opens many pooled Redis connections), kills Redis for
``--outage`` seconds while a prefix purge is sent every second, starts it again on the same port, and then polls
``readyz`` and a prefix purge every ``--interval`` seconds for ``--after`` seconds (several requests per poll, so each
worker is asked). It prints, counted from Redis' return: the first successful purge, the first ``readyz`` ok, the last
purge answered 503, and every poll where ``readyz`` said ok but a purge answered 503 (a disagreement). Exit status 1
when a purge failed more than ``--agree`` seconds after Redis returned (5 s by default, the issue's target).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field

import httpx

from load_tests.common import raise_fd_limit
from load_tests.soak import Checker, OriginServer, ProxyProcess, RedisProcess, Report, client_loop
from load_tests.soak_origin import SoakOrigin, Versions


@dataclass
class Poll:
    at: float  # seconds since Redis returned
    ready: list[str] = field(default_factory=list)  # "ok" / "degraded" per readyz answer
    purges: list[int] = field(default_factory=list)  # status per purge answer


@dataclass
class Outcome:
    polls: list[Poll] = field(default_factory=list)
    outage_purges: list[int] = field(default_factory=list)
    traffic: int = 0
    traffic_errors: int = 0

    def first(self, test: str) -> float | None:
        for poll in self.polls:
            if test == "purge" and poll.purges and all(s == 200 for s in poll.purges):
                return poll.at
            if test == "ready" and poll.ready and all(s == "ok" for s in poll.ready):
                return poll.at
        return None

    def last_failed_purge(self) -> float | None:
        failed = [poll.at for poll in self.polls if any(s != 200 for s in poll.purges)]
        return failed[-1] if failed else None

    def disagreements(self) -> list[float]:
        return [p.at for p in self.polls if "ok" in p.ready and any(s != 200 for s in p.purges)]


async def traffic(url: str, stop: asyncio.Event, outcome: Outcome, clients: int) -> None:
    async def client(n: int) -> None:
        rng = random.Random(n)
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            while not stop.is_set():
                try:
                    response = await http.get(f"/v/{rng.randrange(500)}")
                    outcome.traffic_errors += response.status_code >= 500
                except httpx.HTTPError:
                    outcome.traffic_errors += 1
                outcome.traffic += 1

    await asyncio.gather(*(client(n) for n in range(clients)))


async def poll_once(http: httpx.AsyncClient, at: float, asks: int) -> Poll:
    poll = Poll(at)
    for _ in range(asks):
        with contextlib.suppress(httpx.HTTPError):
            ready = await http.get("/_cacheproxy/readyz")
            poll.ready.append(ready.json()["store"])
        try:
            purge = await http.post("/_cacheproxy/purge", json={"prefix": "/v/"})
            poll.purges.append(purge.status_code)
        except httpx.HTTPError:
            poll.purges.append(0)
    return poll


async def run(config: argparse.Namespace) -> Outcome:
    raise_fd_limit()
    outcome = Outcome()
    with tempfile.TemporaryDirectory(prefix="redis-recovery-") as directory:
        versions = Versions()
        origin = OriginServer(SoakOrigin(versions))
        await origin.start()
        redis = RedisProcess(directory)
        proxy = await asyncio.to_thread(ProxyProcess, origin.url, redis.url, config.workers, directory)
        stop = asyncio.Event()
        soak = Report(0, "redis", config.workers)
        if config.soak_traffic:  # the soak's clients stop at a deadline of their own
            checker = Checker(versions, soak)
            end = time.monotonic() + config.warmup + config.outage + config.after + 5
            load = asyncio.gather(*(client_loop(n, proxy.url, checker, end, 200, random.Random(n))
                                    for n in range(config.clients)))  # fmt: skip
        else:
            load = asyncio.gather(*[traffic(proxy.url, stop, outcome, config.clients)])
        try:
            async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
                warm_until = time.monotonic() + config.warmup
                while time.monotonic() < warm_until:  # a purge, then a burst: many pooled Redis connections
                    with contextlib.suppress(httpx.HTTPError):
                        await http.post("/_cacheproxy/purge", json={"prefix": "/v/"})
                        await asyncio.gather(*(http.get(f"/v/{n}") for n in range(config.burst)))
                    await asyncio.sleep(1.0)
                redis.kill()
                down = time.monotonic()
                while time.monotonic() - down < config.outage:
                    with contextlib.suppress(httpx.HTTPError):
                        response = await http.post("/_cacheproxy/purge", json={"prefix": "/v/2"})
                        outcome.outage_purges.append(response.status_code)
                    await asyncio.sleep(1.0)
                await asyncio.to_thread(redis.start)
                back = time.monotonic()
                while (now := time.monotonic()) - back < config.after:
                    outcome.polls.append(await poll_once(http, now - back, config.asks))
                    await asyncio.sleep(config.interval)
        finally:
            stop.set()
            await load
            if config.soak_traffic:
                outcome.traffic = soak.responses
                outcome.traffic_errors = sum(n for status, n in soak.statuses.items() if status[0] in "05")
            await asyncio.to_thread(proxy.stop)
            redis.kill()
            await origin.stop()
    return outcome


def report(outcome: Outcome, config: argparse.Namespace) -> int:
    def at(value: float | None) -> str:
        return "never" if value is None else f"+{value:.2f} s"

    print(f"redis down {config.outage:.0f} s, {config.workers} worker(s), {config.clients} clients, "
          f"{outcome.traffic:,} requests ({outcome.traffic_errors} errors)")  # fmt: skip
    print(f"purges during the outage: {sorted(set(outcome.outage_purges))}")
    print(f"after Redis returned: first purge ok {at(outcome.first('purge'))}, first readyz ok "
          f"{at(outcome.first('ready'))}, last purge 503 {at(outcome.last_failed_purge())}")  # fmt: skip
    disagree = outcome.disagreements()
    print(f"readyz ok while a purge failed: {len(disagree)} polls" + (f" (at {disagree})" if disagree else ""))
    last = outcome.last_failed_purge()
    return 1 if last is not None and last > config.agree else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage", type=float, default=20.0, help="seconds Redis stays down (default 20)")
    parser.add_argument("--after", type=float, default=30.0, help="seconds polled after it returns (default 30)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8, help="concurrent GET clients (default 8)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of traffic before the kill (default 5)")
    parser.add_argument("--burst", type=int, default=64, help="concurrent GETs each second of the warm-up (64)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between polls (default 0.5)")
    parser.add_argument("--asks", type=int, default=3, help="readyz and purge requests per poll (default 3)")
    parser.add_argument("--soak-traffic", action="store_true", help="the soak's mixed clients instead of GETs")
    parser.add_argument("--agree", type=float, default=5.0, help="purges must succeed this soon (default 5 s)")
    config = parser.parse_args()
    sys.exit(report(asyncio.run(run(config)), config))


if __name__ == "__main__":
    main()
