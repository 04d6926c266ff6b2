"""Redis slow or down never fails a call: misses, skipped stores, a circuit breaker, rate-limited logs.

The breaker and the guard are tested with a fake clock; the faults themselves on real servers this module starts and
kills (never the shared session server).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

import pytest
import redis as sync_redis

from proxy.clock import FakeClock
from proxy.errors import StorageError
from proxy.messages import Entry
from proxy.storage.breaker import BreakerState, CircuitBreaker, Guard
from proxy.storage.redis import RedisStorage
from tests.redis_servers import RedisServer, redis_cluster, redis_server, require_redis

MakeEntry = Callable[..., Entry]
BOUND = 1.0  # generous: a failing call must come back in about its timeout, not after retries or OS timeouts


async def fail() -> None:
    raise ConnectionError("refused")


async def succeed() -> str:
    return "ok"


def test_breaker_opens_after_5_consecutive_failures() -> None:
    breaker = CircuitBreaker(FakeClock())
    for _ in range(4):
        breaker.record_failure()
    breaker.record_success()  # not consecutive any more
    for _ in range(4):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()


def test_breaker_half_open_lets_one_probe_then_closes_on_success() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock, threshold=1, open_for=3.0)
    breaker.record_failure()
    clock.advance(2.9)
    assert not breaker.allow()
    clock.advance(0.2)
    assert breaker.allow()  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # only one probe at a time
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


def test_breaker_failed_probe_opens_again_for_a_full_period() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock, threshold=5, open_for=3.0)
    for _ in range(5):
        breaker.record_failure()
    clock.advance(3.0)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.advance(2.0)
    assert not breaker.allow()


async def test_guard_counts_per_operation_and_skips_while_open() -> None:
    guard = Guard("redis", FakeClock())
    for _ in range(5):
        assert await guard.call("get", fail, 1.0, "miss") == "miss"
    assert await guard.call("put", succeed, 1.0, "skipped") == "skipped"  # not even tried: breaker open
    assert guard.degraded
    assert guard.errors == 5
    assert guard.error_counts() == {"get": 5, "skipped": 1}


async def test_guard_logs_at_most_once_per_10s(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    guard = Guard("redis", clock, CircuitBreaker(clock, threshold=1000))
    with caplog.at_level(logging.WARNING, logger="cacheproxy.storage"):
        for _ in range(50):
            await guard.call("get", fail, 1.0, None)
        clock.advance(9.9)
        await guard.call("get", fail, 1.0, None)
        assert len(caplog.records) == 1
        clock.advance(0.1)
        await guard.call("put", fail, 1.0, None)
    assert len(caplog.records) == 2
    assert "50 similar messages suppressed" in caplog.records[1].getMessage()


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of this test's own, which it may kill, restart or put to sleep."""
    require_redis()
    with redis_server("--enable-debug-command", "local") as server:
        yield server


@pytest.mark.redis
async def test_fault_killed_redis_gets_miss_puts_skip_breaker_opens(
    own_server: RedisServer, make_entry: MakeEntry
) -> None:
    clock = FakeClock()
    store = RedisStorage.from_url(own_server.url, clock=clock)  # default timeouts: 50 ms reads, 250 ms writes
    try:
        entry = make_entry()
        await store.put("key-1", entry, 60)
        assert await store.get("key-1") == [entry]
        own_server.kill()
        for _ in range(5):
            started = time.monotonic()
            assert await store.get("key-1") == []
            assert time.monotonic() - started < BOUND
        await store.put("key-1", entry, 60)  # skipped, silently
        assert store.degraded
        assert await store.ping() is False
        assert store.error_counts() == {"get": 5, "skipped": 2}
        with pytest.raises(StorageError):
            await store.delete("key-1")  # a purge says it did not happen
    finally:
        await store.close()


@pytest.mark.redis
async def test_fault_restarted_empty_redis_recovers_after_the_open_period(
    own_server: RedisServer, make_entry: MakeEntry
) -> None:
    clock = FakeClock()
    store = RedisStorage.from_url(own_server.url, clock=clock)
    try:
        own_server.kill()
        for _ in range(5):
            await store.get("key-1")
        own_server.restart()
        assert await store.ping() is False  # still open: not even tried
        clock.advance(3.0)
        assert await store.ping() is True  # the half-open probe succeeds
        assert not store.degraded
        entry = make_entry()
        await store.put("key-1", entry, 60)
        assert await store.get("key-1") == [entry]
    finally:
        await store.close()


@pytest.mark.redis
async def test_fault_slow_redis_read_times_out_as_a_miss_and_the_link_stays_in_sync(
    own_server: RedisServer, make_entry: MakeEntry
) -> None:
    store = RedisStorage.from_url(own_server.url, read_timeout=0.05)
    sleeper = sync_redis.Redis(own_server.host, own_server.port)
    try:
        first, second = make_entry("key-1"), make_entry("key-2", "http://origin.test/b")
        await store.put("key-1", first, 60)
        await store.put("key-2", second, 60)
        sleep = asyncio.create_task(asyncio.to_thread(sleeper.execute_command, "DEBUG", "SLEEP", "0.3"))
        await asyncio.sleep(0.05)  # let the server fall asleep
        started = time.monotonic()
        assert await store.get("key-1") == []
        assert time.monotonic() - started < 0.3  # gave up before the server woke
        assert store.error_counts()["get"] == 1
        await sleep
        assert await store.get("key-2") == [second]  # not the late answer to the abandoned read
    finally:
        sleeper.close()
        await store.close()


@pytest.mark.redis
async def test_fault_cluster_node_killed_degrades_without_raising(make_entry: MakeEntry) -> None:
    require_redis()
    with redis_cluster(3) as cluster:
        store = RedisStorage.from_url(cluster.url)
        await store.start()
        try:
            entries = {f"key-{i}": make_entry(f"key-{i}") for i in range(12)}
            for key, entry in entries.items():
                await store.put(key, entry, 60)
            cluster.nodes[1].kill()
            results = [await store.get(key) for key in entries]
            assert all(found in ([], [entries[key]]) for key, found in zip(entries, results, strict=True))
            assert [] in results
            for key, entry in entries.items():
                await store.put(key, entry, 60)  # never raises
            assert store.errors > 0
        finally:
            await store.close()
