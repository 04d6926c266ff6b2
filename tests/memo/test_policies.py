"""``proxy.memo.LRUCache(policy=...)``: every eviction policy of ``proxy.storage.eviction`` behind the same cache."""

from __future__ import annotations

import random

import pytest

from proxy.clock import FakeClock
from proxy.memo import LRUCache
from proxy.storage.eviction import POLICIES


@pytest.mark.parametrize("policy", POLICIES)
def test_memo_policy_bound_holds_and_counts_match(policy: str) -> None:
    rng = random.Random(5)
    cache = LRUCache(50, getsizeof=len, policy=policy)
    for _ in range(3000):
        key = rng.randrange(200)
        if cache.get(key) is None:
            cache.set(key, "x" * rng.randrange(1, 12))
        assert cache.currsize <= 50
    stats = cache.stats()
    assert stats.currsize == sum(len(cache.peek(k)) for k in range(200) if k in cache)
    assert stats.evictions > 0 and stats.hits + stats.misses == 3000
    assert cache.policy == policy


@pytest.mark.parametrize("policy", POLICIES)
def test_memo_policy_expired_entries_go_first_and_are_not_evictions(policy: str) -> None:
    clock = FakeClock()
    cache = LRUCache(2, clock=clock, policy=policy)
    cache.set("short", 1, ttl=5)
    cache.set("long", 2, ttl=60)
    clock.advance(10)
    cache.set("new", 3)
    assert ("long" in cache, "new" in cache) == (True, True)
    stats = cache.stats()
    assert (stats.evictions, stats.expirations) == (0, 1)


def test_memo_s3fifo_a_scan_of_one_hit_keys_does_not_flush_the_hot_set() -> None:
    """S3-FIFO (SOSP 2023): keys asked once leave from the small queue; LRU loses the hot set to the scan."""
    kept = {}
    for policy in ("s3fifo", "lru"):
        cache = LRUCache(100, policy=policy)
        for round_ in range(3):
            for hot in range(50):
                if cache.get(("hot", hot)) is None:
                    cache.set(("hot", hot), round_)
        for cold in range(200):
            cache.set(("scan", cold), cold)
        kept[policy] = sum(("hot", hot) in cache for hot in range(50))
    assert kept == {"s3fifo": 50, "lru": 0}


def test_memo_unknown_policy_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown eviction policy"):
        LRUCache(10, policy="mru")
