"""The cross-process lease (``proxy.storage.lease``) against a real redis-server: its renewers live exactly as long as
the leases they renew (issue 14 item 2), whatever the Redis latency.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from redis.asyncio import Redis

from proxy.clock import SYSTEM_CLOCK
from proxy.storage import redis_layout as layout
from proxy.storage.breaker import Guard
from proxy.storage.lease import RedisLease

pytestmark = pytest.mark.redis


class SlowRedis(Redis):
    """A real client whose every command first waits a random few milliseconds: renewals are in flight when a
    release cancels them (the case that used to leave orphan renewers)."""

    latency = random.Random(14)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        await asyncio.sleep(self.latency.uniform(0.0, 0.004))
        return await super().execute_command(*args, **options)


def lease_on(url: str, ttl: float) -> tuple[RedisLease, SlowRedis]:
    client = SlowRedis.from_url(url)
    lease = RedisLease(client, Guard("lease", SYSTEM_CLOCK), ttl=ttl, timeout=1.0, clock=SYSTEM_CLOCK)
    return lease, client


def others() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


async def test_issue14_lease_renewers_never_outlive_their_lease_under_latency(redis_url: str) -> None:
    """3,000 acquire/hold/release cycles over 30 keys with renewals every 3 ms: no task is left running."""
    lease, client = lease_on(redis_url, ttl=0.009)
    holds = random.Random(2)
    taken = 0

    async def cycles(key: str) -> None:
        nonlocal taken
        for _ in range(100):
            if await lease.acquire(key):
                taken += 1
                await asyncio.sleep(holds.uniform(0.0, 0.008))  # one, two or no renewals in flight
                await lease.release(key)

    try:
        assert others() == set()
        await asyncio.gather(*(cycles(f"k{n}") for n in range(30)))
        assert taken == 3000  # no key was still leased by an earlier cycle: every release deleted its lease
        assert lease.renewers == 0
        assert others() == set()  # checked at once: release awaited its renewer, nothing is left to wind down
        assert await client.keys(layout.lease_key("*")) == []
    finally:
        await lease.close()
        await client.aclose()


async def test_issue14_release_ends_a_renewer_whose_renewal_is_in_flight(redis_url: str) -> None:
    lease, client = lease_on(redis_url, ttl=0.03)
    gate = asyncio.Event()
    renewing = asyncio.Event()
    renew = lease._renew

    async def stuck_renew(**kwargs: Any) -> Any:
        renewing.set()
        await gate.wait()  # a renewal that does not come back until the test says so
        return await renew(**kwargs)

    lease._renew = stuck_renew  # type: ignore[method-assign]
    try:
        assert await lease.acquire("k")
        await renewing.wait()
        await lease.release("k")
        assert lease.renewers == 0
        assert others() == set()
        assert not await client.exists(layout.lease_key("k"))
    finally:
        await lease.close()
        await client.aclose()


async def test_issue14_close_ends_every_renewer(redis_url: str) -> None:
    lease, client = lease_on(redis_url, ttl=0.03)
    try:
        assert all([await lease.acquire(f"k{n}") for n in range(20)])
        assert lease.renewers == 20
    finally:
        await lease.close()
        await client.aclose()
    assert lease.renewers == 0
    assert others() == set()
