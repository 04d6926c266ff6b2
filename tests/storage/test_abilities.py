"""Optional store abilities (``proxy.storage.abilities``) are found once, by protocol, never by class or ``getattr``."""

from __future__ import annotations

from proxy.clock import FakeClock
from proxy.messages import Entry
from proxy.storage.abilities import Abilities, abilities_of
from proxy.storage.base import StoreStats
from proxy.storage.memory import MemoryStorage
from proxy.storage.redis import RedisStorage
from proxy.storage.tiered import TieredStorage


class PlainStore:
    """A store with nothing beyond ``Storage``."""

    name = "plain"

    async def get(self, key: str) -> list[Entry]:
        return []

    async def put(self, key: str, entry: Entry, ttl: float) -> None:
        return None

    async def delete(self, key: str) -> int:
        return 0

    async def delete_tag(self, tag: str) -> int:
        return 0

    async def delete_prefix(self, prefix: str) -> int:
        return 0

    async def stats(self) -> StoreStats:
        return StoreStats(0, 0, None, 0)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def test_memory_store_answers_lookups_instantly_and_nothing_more() -> None:
    store = MemoryStorage(clock=FakeClock())
    found = abilities_of(store)
    assert found.instant is store
    assert (found.startable, found.leasing, found.degradable, found.error_counting) == (None, None, None, None)


async def test_redis_store_starts_leases_and_reports_its_health() -> None:
    store = RedisStorage.from_url("redis://127.0.0.1:9")  # never connected: abilities are read, not called
    try:
        found = abilities_of(store)
        assert found.instant is None
        assert found.startable is store and found.leasing is store
        assert found.degradable is store and found.error_counting is store
    finally:
        await store.close()


async def test_two_tier_store_has_the_abilities_of_its_shared_tier() -> None:
    store = TieredStorage(RedisStorage.from_url("redis://127.0.0.1:9"), 1024 * 1024)
    try:
        found = abilities_of(store)
        assert found.leasing is store and found.startable is store and found.degradable is store
        assert found.instant is None  # its L1 is private: lookups still go through the driver's coalescing
    finally:
        await store.close()


def test_a_store_with_no_abilities_gets_none() -> None:
    assert abilities_of(PlainStore()) == Abilities()


async def test_stores_that_confirm_puts_and_stores_that_evict_by_a_policy() -> None:
    memory = MemoryStorage(clock=FakeClock())
    redis = RedisStorage.from_url("redis://127.0.0.1:9")
    tiered = TieredStorage(RedisStorage.from_url("redis://127.0.0.1:9"), 1024 * 1024)
    try:
        # Every store confirms its puts: each keeps the invalidation rule (RFC 9111 §4.4) and says when it refused.
        assert (abilities_of(memory).evicting, abilities_of(memory).confirming) == (memory, memory)
        assert (abilities_of(redis).evicting, abilities_of(redis).confirming) == (None, redis)
        assert (abilities_of(tiered).evicting, abilities_of(tiered).confirming) == (tiered, tiered)  # L1's policy
    finally:
        await redis.close()
        await tiered.close()
