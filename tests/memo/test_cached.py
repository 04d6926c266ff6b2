"""``proxy.memo.cached``: keys, expiry, single-flight for threads and tasks, and the Redis store."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import pytest
import redis.asyncio as aioredis

from proxy.clock import FakeClock
from proxy.memo import LRUCache, cached
from proxy.memo.keys import function_name
from proxy.memo.store import FORMAT_VERSION, decode, encode

from .conftest import RedisServer


class Boom(Exception):
    pass


async def until(predicate: Callable[[], bool]) -> None:
    """Yield to the loop until ``predicate()`` holds; fails instead of spinning forever."""
    for _ in range(100_000):
        if predicate():
            return
        await asyncio.sleep(0)
    pytest.fail("condition never reached")


# --- keys -------------------------------------------------------------------------------------------------


def test_memo_cached_keys_by_positional_and_sorted_keyword_arguments() -> None:
    calls: list[tuple[Any, ...]] = []

    @cached()
    def f(x: float, *, a: int = 0, b: int = 0) -> float:
        calls.append((x, a, b))
        return x + a + b

    assert f(1, a=2, b=3) == f(1, b=3, a=2) == f(1.0, a=2, b=3) == 6  # typed=False: 1 == 1.0
    assert f(2) == 2
    assert calls == [(1, 2, 3), (2, 0, 0)]
    assert f.cache_info().hits == 2


def test_memo_cached_unhashable_argument_is_a_clear_type_error() -> None:
    @cached()
    def f(x: object, *, opts: object = None) -> object:
        return x

    with pytest.raises(TypeError, match=r"positional argument 0 \(list\) is unhashable.*key="):
        f([1, 2])
    with pytest.raises(TypeError, match=r"keyword argument 'opts' \(dict\) is unhashable"):
        f(1, opts={})


def test_memo_cached_key_function_replaces_the_default_key() -> None:
    calls = []

    @cached(key=lambda items: tuple(sorted(items)))
    def total(items: list[int]) -> int:
        calls.append(items)
        return sum(items)

    assert total([2, 1]) == total([1, 2]) == 3
    assert len(calls) == 1
    assert total.invalidate([1, 2]) is True

    @cached(key=lambda x: [x])  # type: ignore[arg-type, return-value]
    def bad(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="key function returned an unhashable list"):
        bad(1)


def test_memo_cached_functions_sharing_a_cache_do_not_collide() -> None:
    shared = LRUCache(16)

    @cached(cache=shared)
    def double(x: int) -> int:
        return 2 * x

    @cached(cache=shared)
    def triple(x: int) -> int:
        return 3 * x

    assert (double(5), triple(5)) == (10, 15)
    assert len(shared) == 2
    assert double.cache is triple.cache is shared


# --- sync -------------------------------------------------------------------------------------------------


def test_memo_cached_sync_ttl_expiry_with_fake_clock(clock: FakeClock) -> None:
    calls = []

    @cached(ttl=60, clock=clock)
    def f(x: int) -> int:
        calls.append(x)
        return len(calls)

    assert (f(1), f(1)) == (1, 1)
    clock.advance(59)
    assert f(1) == 1
    clock.advance(1)
    assert f(1) == 2
    assert f.cache.ttl == 60


def test_memo_cached_sync_caches_none_and_controls_work() -> None:
    calls = []

    @cached(maxsize=8)
    def f(x: int) -> None:
        calls.append(x)

    f(1)
    f(1)
    assert calls == [1]
    assert f.cache_info() == (1, 1, 8, 1)
    assert f.invalidate(1) is True
    assert f.invalidate(1) is False
    f(1)
    f.cache_clear()
    f(1)
    assert calls == [1, 1, 1]
    assert f.__name__ == "f"
    assert f.__wrapped__ is not None


def test_memo_cached_sync_exception_is_not_cached() -> None:
    results: list[Any] = [Boom("first"), 42]

    @cached()
    def f() -> int:
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        return int(result)

    with pytest.raises(Boom):
        f()
    assert f() == 42
    assert f() == 42


def test_memo_cached_method_binds_self_into_the_key() -> None:
    class Repo:
        def __init__(self, base: int) -> None:
            self.base = base
            self.calls = 0

        @cached()
        def get(self, x: int) -> int:
            self.calls += 1
            return self.base + x

    one, two = Repo(100), Repo(200)
    assert (one.get(1), one.get(1), two.get(1)) == (101, 101, 201)
    assert (one.calls, two.calls) == (1, 1)
    assert Repo.get.invalidate(one, 1) is True
    assert one.get.cache_info().currsize == 1


@pytest.mark.parametrize("error", [False, True], ids=["memo-sync-single-flight", "memo-sync-error-to-all"])
def test_memo_cached_eight_threads_one_key_call_once(error: bool) -> None:
    release = threading.Event()
    calls = []
    cache = LRUCache(8)

    @cached(cache=cache)
    def slow(x: int) -> object:
        calls.append(x)
        release.wait()
        if error:
            raise Boom("upstream broke")
        return object()

    results: list[Any] = [None] * 8

    def call(n: int) -> None:
        try:
            results[n] = slow(7)
        except Boom as exc:
            results[n] = exc

    threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for _ in range(10_000):  # until every thread has missed: each would call without single-flight
        if cache.misses == 8:
            break
        release.wait(0.001)
    release.set()
    for t in threads:
        t.join()
    assert cache.misses == 8
    assert calls == [7]
    assert all(r is results[0] for r in results)
    assert isinstance(results[0], Boom) is error
    assert len(cache) == (0 if error else 1)


def test_memo_cached_rejects_misuse_at_decoration_time() -> None:
    with pytest.raises(TypeError, match="store= needs an async def"):

        @cached(store="redis://127.0.0.1:1/0")
        def sync_with_store() -> int:
            return 1

    with pytest.raises(TypeError, match="parentheses"):
        cached(lambda: 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis or a redis:// URL"):
        cached(store=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl"):
        cached(ttl=0)


def test_memo_cached_sync_function_returning_a_coroutine_is_refused() -> None:
    async def work() -> int:
        return 1

    @cached()
    def looks_sync() -> Awaitable[int]:
        return work()

    with pytest.raises(TypeError, match="returned an awaitable"):
        looks_sync()
    assert len(looks_sync.cache) == 0


# --- async ------------------------------------------------------------------------------------------------


async def test_memo_cached_async_memoizes_and_expires(clock: FakeClock) -> None:
    calls = []

    @cached(ttl=10, clock=clock)
    async def f(x: int) -> int:
        calls.append(x)
        return x * 2

    assert (await f(2), await f(2)) == (4, 4)
    clock.advance(10)
    assert await f(2) == 4
    assert calls == [2, 2]
    assert f.invalidate(2) is True


def _gated(
    calls: list[int], release: asyncio.Event, error: bool = False
) -> Callable[[int], Coroutine[Any, Any, object]]:
    async def fetch(x: int) -> object:
        calls.append(x)
        await release.wait()
        if error:
            raise Boom("origin down")
        return {"value": x}

    return fetch


async def test_memo_cached_thousand_concurrent_callers_one_call() -> None:
    calls: list[int] = []
    release = asyncio.Event()
    fetch = cached(ttl=60)(_gated(calls, release))
    tasks = [asyncio.create_task(fetch(1)) for _ in range(1000)]
    await until(lambda: fetch.cache.misses == 1000 and len(calls) > 0)  # all missed, one is computing
    release.set()
    results = await asyncio.gather(*tasks)
    assert calls == [1]
    assert all(r is results[0] for r in results)
    assert results[0] == {"value": 1}
    assert await fetch(1) is results[0]


async def test_memo_cached_exception_reaches_every_caller_and_is_not_cached() -> None:
    calls: list[int] = []
    release = asyncio.Event()
    fetch = cached(ttl=60)(_gated(calls, release, error=True))
    tasks = [asyncio.create_task(fetch(1)) for _ in range(1000)]
    await until(lambda: fetch.cache.misses == 1000 and len(calls) > 0)  # all missed, one is computing
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert calls == [1]
    assert all(isinstance(r, Boom) for r in results)
    with pytest.raises(Boom):
        await fetch(1)
    assert calls == [1, 1]


async def test_memo_cached_cancelled_first_caller_does_not_break_the_others() -> None:
    calls: list[int] = []
    release = asyncio.Event()
    fetch = cached()(_gated(calls, release))
    first = asyncio.create_task(fetch(1))
    await until(lambda: calls == [1])
    followers = [asyncio.create_task(fetch(1)) for _ in range(10)]
    await until(lambda: fetch.cache.misses == 11)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()
    assert await asyncio.gather(*followers) == [{"value": 1}] * 10
    assert calls == [1]


async def test_memo_cached_computation_outlives_all_cancelled_callers() -> None:
    calls: list[int] = []
    release = asyncio.Event()
    fetch = cached()(_gated(calls, release))
    only = asyncio.create_task(fetch(3))
    await until(lambda: calls == [3])
    only.cancel()
    with pytest.raises(asyncio.CancelledError):
        await only
    release.set()
    await until(lambda: len(fetch.cache) == 1)
    assert await fetch(3) == {"value": 3}
    assert calls == [3]


# --- Redis store ------------------------------------------------------------------------------------------


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(port=redis_server.port)
    yield client
    await client.aclose()


def _make(store: aioredis.Redis | str, calls: list[int], ttl: float = 60) -> Any:
    """A fresh wrapper of the same function: what another process holding it would have."""

    @cached(ttl=ttl, store=store)
    async def lookup(x: int) -> dict[str, int]:
        calls.append(x)
        return {"x": x}

    return lookup


@pytest.mark.redis
async def test_memo_store_second_instance_reads_redis_without_calling(redis_client: aioredis.Redis) -> None:
    calls: list[int] = []
    first, second = _make(redis_client, calls), _make(redis_client, calls)
    assert await first(5) == {"x": 5}
    assert await second(5) == {"x": 5}
    assert calls == [5]
    assert second.cache_info().currsize == 1  # now held locally too
    assert await second.ainvalidate(5) is True
    assert await _make(redis_client, calls)(5) == {"x": 5}
    assert calls == [5, 5]


@pytest.mark.redis
async def test_memo_store_entry_format_name_and_ttl(redis_client: aioredis.Redis) -> None:
    lookup = _make(redis_client, [], ttl=30)
    await lookup(5)
    name = f"memo:{function_name(lookup.__wrapped__)}:{hashlib.sha256(repr((5,)).encode()).hexdigest()}"
    raw = await redis_client.get(name)
    assert isinstance(raw, bytes)
    assert raw[0] == FORMAT_VERSION
    assert decode(raw) == {"x": 5}
    assert 29_000 < await redis_client.pttl(name) <= 30_000


@pytest.mark.redis
async def test_memo_store_by_url_and_unreadable_value_is_recomputed(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    calls: list[int] = []
    lookup = _make(redis_server.url, calls)
    try:
        await lookup(1)
        (name,) = await redis_client.keys("memo:*")
        await redis_client.set(name, b"\x09garbage")
        assert await _make(redis_client, calls)(1) == {"x": 1}
        assert calls == [1, 1]
        rewritten = await redis_client.get(name)
        assert isinstance(rewritten, bytes)
        assert decode(rewritten) == {"x": 1}
        assert encode({"x": 1})[0] == FORMAT_VERSION
    finally:
        await lookup.aclose()


@pytest.mark.redis
async def test_memo_store_thousand_callers_one_call(redis_client: aioredis.Redis) -> None:
    calls: list[int] = []
    release = asyncio.Event()
    fetch = cached(ttl=60, store=redis_client)(_gated(calls, release))
    tasks = [asyncio.create_task(fetch(1)) for _ in range(1000)]
    await until(lambda: fetch.cache.misses == 1000 and calls == [1])
    release.set()
    results = await asyncio.gather(*tasks)
    assert calls == [1]
    assert all(r is results[0] for r in results)


@pytest.mark.redis
async def test_memo_store_down_computes_locally_and_logs_once(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []
    lookup = _make(redis_server.url, calls)
    try:
        assert await lookup(1) == {"x": 1}
        redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="proxy.memo"):
            assert await lookup(2) == {"x": 2}
            assert await lookup(3) == {"x": 3}
        assert calls == [1, 2, 3]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "unavailable" in warnings[0].getMessage()
    finally:
        await lookup.aclose()
