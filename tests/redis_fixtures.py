"""pytest fixtures over ``tests/redis_servers.py``, and the Redis backends of the storage contract suite.

Use them by importing the fixtures into a conftest (``from tests.redis_fixtures import redis_url  # noqa: F401``),
as ``tests/storage/conftest.py`` does. The servers are session-scoped; the function-scoped ``redis_url`` and
``redis_cluster_url`` flush them (``FLUSHALL``, ``CONFIG RESETSTAT``) before each test, and restart a server that a
test killed. Every fixture calls ``require_redis()`` first (skip without the binaries, fail when ``CI`` is set).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import pytest

from proxy.clock import SYSTEM_CLOCK
from proxy.storage.base import Storage
from proxy.storage.redis import RedisStorage
from proxy.storage.tiered import TieredStorage
from tests import redis_servers as servers

B = TypeVar("B")
Advance = Callable[[float], Awaitable[None]]

# Contract runs are about behaviour, not latency: generous timeouts keep a busy CI machine from failing them.
CONTRACT_TIMEOUTS: dict[str, Any] = {"read_timeout": 2.0, "write_timeout": 2.0}
CONTRACT_TTL = 1.2  # real time passes on a real server: short, with whole-second rounding caught


@pytest.fixture(scope="session")
def redis_server() -> Iterator[servers.RedisServer]:
    servers.require_redis()
    with servers.redis_server() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: servers.RedisServer) -> str:
    """The URL of the session's server, emptied for this test (restarted if a test killed it)."""
    if redis_server.proc.poll() is not None:
        redis_server.restart()
    with redis_server.client() as client:
        client.flushall()
        client.config_resetstat()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[servers.RedisClusterHandle]:
    servers.require_redis()
    with servers.redis_cluster(3) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: servers.RedisClusterHandle) -> str:
    """``redis+cluster://`` URL of the session's 3-node cluster, emptied for this test."""
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture(scope="session")
def redis_cluster_replicated() -> Iterator[servers.RedisClusterHandle]:
    """3 primaries with one replica each and ``cluster-node-timeout`` 1 s, so a killed primary is failed over fast."""
    servers.require_redis()
    with servers.redis_cluster(3, replicas=1, node_timeout_ms=1000) as cluster:
        yield cluster


@pytest.fixture
def failover_cluster(redis_cluster_replicated: servers.RedisClusterHandle) -> servers.RedisClusterHandle:
    """The replicated cluster, healed (nodes a test killed restarted; they rejoin as replicas) and emptied."""
    redis_cluster_replicated.heal()
    redis_cluster_replicated.flushall()
    return redis_cluster_replicated


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def register_redis_backends(
    backends: MutableMapping[str, Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[B]]],
    marks: MutableMapping[str, tuple[pytest.MarkDecorator, ...]],
    make: Callable[[Storage, float, Advance], B],
) -> None:
    """Add "redis", "redis-cluster" and "two-tier" to a contract registry; ``make(store, ttl, advance)``."""

    def factory(fixture: str, tiered: bool) -> Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[B]]:
        @asynccontextmanager
        async def open_backend(request: pytest.FixtureRequest) -> AsyncIterator[B]:
            url = request.getfixturevalue(fixture)
            l2 = RedisStorage.from_url(url, clock=SYSTEM_CLOCK, **CONTRACT_TIMEOUTS)
            store: RedisStorage | TieredStorage = TieredStorage(l2, 8 * 1024 * 1024) if tiered else l2
            await store.start()
            try:
                yield make(store, CONTRACT_TTL, _sleep)
            finally:
                await store.close()

        return open_backend

    backends["redis"] = factory("redis_url", tiered=False)
    backends["redis-cluster"] = factory("redis_cluster_url", tiered=False)
    backends["two-tier"] = factory("redis_url", tiered=True)
    for name in ("redis", "redis-cluster", "two-tier"):
        marks[name] = (pytest.mark.redis,)
