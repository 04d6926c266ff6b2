"""``proxy.memo.LRUCache``: recency order, per-entry time-to-live, weights, counters and thread safety."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from proxy.clock import FakeClock
from proxy.memo import CacheInfo, CacheStats, LRUCache


def test_memo_lru_evicts_least_recently_used() -> None:
    cache = LRUCache(3)
    for key in "abc":
        cache.set(key, key.upper())
    assert cache.get("a") == "A"  # a is now the most recent; b the least
    cache.set("d", "D")
    assert "b" not in cache
    assert [k for k in "acd" if k in cache] == ["a", "c", "d"]
    cache.set("c", "C2")  # overwriting refreshes recency too
    cache.set("e", "E")
    assert "a" not in cache
    assert cache.get("c") == "C2"
    assert cache.stats().evictions == 2


def test_memo_lru_peek_leaves_order_and_counters() -> None:
    cache = LRUCache(2)
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.peek("a") == 1
    assert cache.peek("zz", "dflt") == "dflt"
    cache.set("c", 3)
    assert "a" not in cache
    assert (cache.hits, cache.misses) == (0, 0)


def test_memo_lru_ttl_expires_exactly_at_deadline(clock: FakeClock) -> None:
    cache = LRUCache(10, ttl=30, clock=clock)
    cache.set("k", "v")
    clock.advance(29)
    assert cache.get("k") == "v"
    clock.advance(1)
    assert cache.get("k") is None
    assert cache.stats().expirations == 1


def test_memo_lru_per_entry_ttl_overrides_default(clock: FakeClock) -> None:
    cache = LRUCache(10, ttl=30, clock=clock)
    cache.set("short", 1, ttl=5)
    cache.set("default", 2)
    forever = LRUCache(10, clock=clock)
    forever.set("eternal", 3)
    forever.set("brief", 4, ttl=1)
    clock.advance(5)
    assert ("short" in cache, "default" in cache) == (False, True)
    clock.advance(25)
    assert "default" not in cache
    clock.advance(10**9)
    assert ("eternal" in forever, "brief" in forever) == (True, False)


def test_memo_lru_contains_and_len_ignore_expired(clock: FakeClock) -> None:
    cache = LRUCache(10, clock=clock)
    cache.set("a", 1, ttl=1)
    cache.set("b", 2, ttl=2)
    cache.set("c", 3)
    assert len(cache) == 3
    clock.advance(1)
    assert "a" not in cache
    assert len(cache) == 2
    clock.advance(1)
    assert len(cache) == 1
    assert cache.stats().length == 1
    assert cache.currsize == 1


def test_memo_lru_expired_entries_are_evicted_before_live_ones(clock: FakeClock) -> None:
    cache = LRUCache(2, clock=clock)
    cache.set("old-but-live", 1)
    cache.set("recent-but-expired", 2, ttl=1)
    clock.advance(1)
    cache.set("new", 3)
    assert "old-but-live" in cache
    assert cache.stats().evictions == 0
    assert cache.stats().expirations == 1


def test_memo_lru_counters_and_stats(clock: FakeClock) -> None:
    cache = LRUCache(2, ttl=10, clock=clock)
    cache.set("a", None)  # a stored None is a hit, not a miss
    assert cache.get("a", "missing") is None
    assert cache.get("b") is None
    cache.set("b", 2)
    cache.set("c", 3)
    clock.advance(10)
    assert cache.get("c") is None
    assert (cache.hits, cache.misses) == (1, 2)
    stats = cache.stats()
    assert stats == CacheStats(hits=1, misses=2, evictions=1, expirations=2, length=0, currsize=0, maxsize=2)
    assert stats.hit_ratio == pytest.approx(1 / 3)
    assert cache.cache_info() == CacheInfo(hits=1, misses=2, maxsize=2, currsize=0)


def test_memo_lru_delete_and_clear() -> None:
    cache = LRUCache(4)
    cache.set("a", 1)
    cache.set("b", 2)
    cache.get("a")
    assert cache.delete("a") is True
    assert cache.delete("a") is False
    cache.clear()
    assert len(cache) == 0
    assert "b" not in cache
    assert cache.hits == 1  # counters survive clear()


def test_memo_lru_delete_of_expired_entry_is_false(clock: FakeClock) -> None:
    cache = LRUCache(4, clock=clock)
    cache.set("a", 1, ttl=1)
    clock.advance(1)
    assert cache.delete("a") is False


def test_memo_lru_getsizeof_weight_budget() -> None:
    cache = LRUCache(10, getsizeof=len)
    cache.set("a", "xxxx")
    cache.set("b", "xxxx")
    assert cache.currsize == 8
    cache.set("c", "xxx")  # 11 > 10: a goes
    assert ("a" in cache, "b" in cache, "c" in cache) == (False, True, True)
    assert cache.currsize == 7


def test_memo_lru_value_heavier_than_budget_is_not_stored() -> None:
    cache = LRUCache(10, getsizeof=len)
    cache.set("a", "small")
    cache.set("a", "x" * 11)
    assert "a" not in cache
    assert cache.currsize == 0
    assert cache.stats().evictions == 0


def test_memo_lru_maxsize_zero_stores_nothing() -> None:
    cache = LRUCache(0)
    cache.set("a", 1)
    assert len(cache) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"maxsize": -1}, "maxsize", id="memo-lru-negative-maxsize"),
        pytest.param({"ttl": 0}, "ttl", id="memo-lru-zero-ttl"),
        pytest.param({"ttl": -5}, "ttl", id="memo-lru-negative-ttl"),
        pytest.param({"ttl": float("nan")}, "ttl", id="memo-lru-nan-ttl"),
        pytest.param({"ttl": float("inf")}, "ttl", id="memo-lru-infinite-ttl"),
    ],
)
def test_memo_lru_rejects_bad_configuration(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LRUCache(**kwargs)


def test_memo_lru_rejects_bad_entry_ttl() -> None:
    cache = LRUCache()
    with pytest.raises(ValueError, match="ttl"):
        cache.set("a", 1, ttl=0)
    with pytest.raises(ValueError, match="negative size"):
        LRUCache(getsizeof=lambda v: -1).set("a", 1)


def test_memo_lru_deadline_heap_stays_bounded_under_overwrites(clock: FakeClock) -> None:
    cache = LRUCache(4, ttl=3600, clock=clock)
    for i in range(10_000):
        cache.set(i % 3, i)
    assert len(cache._deadlines) <= 2 * 3 + 64 + 1
    assert [cache.get(k) for k in range(3)] == [9999, 9997, 9998]


def test_memo_lru_user_code_never_runs_under_the_lock() -> None:
    seen: list[bool] = []
    cache: LRUCache

    def lock_is_free() -> bool:
        free = cache._lock.acquire(blocking=False)
        if free:
            cache._lock.release()
        return free

    class Value:
        def __del__(self) -> None:
            seen.append(lock_is_free())

    def getsizeof(value: object) -> int:
        seen.append(lock_is_free())
        return 1

    cache = LRUCache(1, getsizeof=getsizeof)
    cache.set("a", Value())
    cache.set("b", Value())  # evicts a: its destructor runs here
    cache.set("b", 1)  # replaces b
    assert seen == [True, True, True, True, True]


def test_memo_lru_sixteen_threads_leave_a_consistent_cache() -> None:
    cache = LRUCache(32, getsizeof=lambda v: 1 + v % 3)
    gets = [0] * 16
    barrier = threading.Barrier(16)

    def hammer(n: int) -> None:
        rng = random.Random(n)
        barrier.wait()
        for _ in range(5_000):
            key = rng.randrange(64)
            op = rng.random()
            if op < 0.5:
                cache.set(key, rng.randrange(100))
            elif op < 0.9:
                cache.get(key)
                gets[n] += 1
            else:
                cache.delete(key)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = cache.stats()
    assert stats.hits + stats.misses == sum(gets)
    assert stats.currsize == sum(1 + item.value % 3 for item in cache._data.values())
    assert stats.currsize <= 32
    assert stats.length == len(cache._data) == sum(1 for k in range(64) if k in cache)
