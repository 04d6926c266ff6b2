"""Redis Cluster faults under load (issue 5): a primary failing over, slots resharded (MOVED / ASK).

The contract is "slower, not broken" (README, Scaling out): while the cluster changes under the proxy, every request
still gets its 200 and the right body (from the origin when the store cannot answer), and once the cluster has
settled the affected keys are cached again. Real ``redis-server`` processes (tests/redis_fixtures.py), a real origin
and the real proxy under uvicorn on loopback.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from redis.crc import key_slot

from proxy.cache.keys import primary_key
from proxy.messages import RequestHead
from proxy.rules.model import Rules
from proxy.storage import redis_layout as layout
from proxy.storage.redis import RedisStorage
from tests.e2e.conftest import Proxied, run_proxy
from tests.redis_servers import RedisClusterHandle, RedisServer
from tests.support.origin import RunningOrigin

pytestmark = pytest.mark.redis

CACHED = {"Cache-Control": "max-age=60"}
PATHS = [f"/item/{i}" for i in range(12)]  # twelve keys: spread over every primary's slots


def body_of(path: str) -> str:
    return f"body of {path}"


def script(origin: RunningOrigin, paths: list[str]) -> None:
    for path in paths:
        origin.set(path, headers=CACHED, body=body_of(path))


def slot_of(proxy: Proxied, path: str) -> int:
    """The cluster slot of the entry the proxy stores for ``GET path`` (the client sends the proxy's own Host)."""
    host = proxy.url.removeprefix("http://")
    key = primary_key(RequestHead("GET", "http", host, path), Rules.builtin().default)
    return key_slot(layout.entry_key(key).encode())


def cache_status(response: httpx.Response) -> str:
    return response.headers["cache-status"]


class LoadLoop:
    """``clients`` concurrent clients cycling through ``paths`` while the ``async with`` block runs (at most ``limit``
    requests in all); every answer that is not ``200`` with the path's body, and every transport error, is kept in
    ``failures``."""

    def __init__(self, proxy: Proxied, paths: list[str], *, clients: int = 6, limit: int = 50_000) -> None:
        self.proxy = proxy
        self.paths = paths
        self.limit = limit
        self.done = 0
        self.failures: list[str] = []
        self._clients = clients
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> LoadLoop:
        self._tasks = [asyncio.create_task(self._client(offset)) for offset in range(self._clients)]
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _client(self, offset: int) -> None:
        turn = offset
        while not self._stop.is_set() and self.done < self.limit:
            path = self.paths[turn % len(self.paths)]
            turn += 1
            try:
                response = await self.proxy.client.get(path, timeout=10)
            except httpx.HTTPError as error:
                self.failures.append(f"{path}: {type(error).__name__}: {error}")
            else:
                if response.status_code != 200 or response.text != body_of(path):
                    self.failures.append(f"{path}: {response.status_code} {response.text[:60]!r}")
            self.done += 1


async def wait_store_ok(proxy: Proxied, timeout: float = 10.0) -> None:
    """Until readyz reports the store ok (the breaker closed again), bounded."""
    deadline = time.monotonic() + timeout
    while (await proxy.client.get("/_cacheproxy/readyz")).json()["store"] != "ok":
        if time.monotonic() > deadline:
            raise AssertionError(f"store still degraded {timeout}s after the cluster settled")
        await asyncio.sleep(0.1)


async def stored_then_hit(proxy: Proxied, path: str) -> tuple[str, str]:
    first = await proxy.client.get(path)
    second = await proxy.client.get(path)
    assert first.text == second.text == body_of(path)
    return cache_status(first), cache_status(second)


def fresh_path_in(proxy: Proxied, slots: set[int], prefix: str) -> str:
    """A path not requested before whose entry lands in one of ``slots``."""
    return next(p for i in range(100_000) if slot_of(proxy, p := f"{prefix}/{i}") in slots)


def slots_of(node: RedisServer, cluster: RedisClusterHandle, proxy: Proxied, paths: list[str]) -> set[int]:
    return {slot for slot in (slot_of(proxy, p) for p in paths) if cluster.owner_of(slot) is node}


async def test_issue5_primary_failover_under_load_loses_no_request(
    origin: RunningOrigin, failover_cluster: RedisClusterHandle
) -> None:
    script(origin, PATHS)
    async with run_proxy(origin, store=failover_cluster.url) as proxy:
        store = proxy.app.runtime.store
        assert isinstance(store, RedisStorage)
        for path in PATHS:
            assert "stored" in cache_status(await proxy.client.get(path))
        victim = failover_cluster.owner_of(slot_of(proxy, PATHS[0]))
        failed_slots = slots_of(victim, failover_cluster, proxy, PATHS)
        victim_paths = [p for p in PATHS if slot_of(proxy, p) in failed_slots]

        async with LoadLoop(proxy, PATHS) as load:
            await asyncio.sleep(0.3)
            errors_before = store.errors
            victim.kill()
            promoted = await asyncio.to_thread(failover_cluster.wait_for_failover, min(failed_slots), victim)
            await asyncio.sleep(2.0)  # and a while longer on the new topology

        await wait_store_ok(proxy)
        again = [await stored_then_hit(proxy, p) for p in victim_paths]
        script(origin, [fresh := fresh_path_in(proxy, failed_slots, "/fresh")])
        first, second = await stored_then_hit(proxy, fresh)

    assert load.failures == []
    assert load.done > 100
    assert store.errors > errors_before  # the proxy did feel the primary go
    assert promoted is not victim and promoted.proc.poll() is None
    assert all("hit" in later for _, later in again), again
    assert "stored" in first and "hit" in second, (first, second)


async def test_issue5_reshard_under_load_loses_no_request(
    origin: RunningOrigin, redis_cluster: RedisClusterHandle, redis_cluster_url: str
) -> None:
    script(origin, PATHS)
    async with run_proxy(origin, store=redis_cluster_url) as proxy:
        for path in PATHS:
            await proxy.client.get(path)
        moving = sorted({slot_of(proxy, p) for p in PATHS[:4]})
        homes = {slot: redis_cluster.owner_of(slot) for slot in moving}

        def reshard() -> None:
            """Each slot to the next node, then to the one after, then home: MOVED (and ASK mid-migration)."""
            for step in (1, 2, 0):
                for slot in moving:
                    home = redis_cluster.nodes.index(homes[slot])
                    redis_cluster.move_slot(slot, redis_cluster.nodes[(home + step) % len(redis_cluster.nodes)])
                    time.sleep(0.1)

        async with LoadLoop(proxy, PATHS) as load:
            await asyncio.sleep(0.3)
            before = load.done
            await asyncio.to_thread(reshard)
            during = load.done - before
            await asyncio.sleep(0.5)

        moved_paths = [p for p in PATHS if slot_of(proxy, p) in moving]
        again = [await stored_then_hit(proxy, p) for p in moved_paths]
        script(origin, [fresh := fresh_path_in(proxy, set(moving), "/fresh")])
        first, second = await stored_then_hit(proxy, fresh)

    assert load.failures == []
    assert during > 0  # the slots moved while requests were running
    assert {slot: redis_cluster.owner_of(slot) for slot in moving} == homes
    assert all("hit" in later for _, later in again), again
    assert "stored" in first and "hit" in second, (first, second)
