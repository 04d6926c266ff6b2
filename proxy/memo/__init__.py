"""``proxy.memo``: the proxy's caching for plain Python callers, for the applications behind the proxy.

``LRUCache`` is a thread-safe least-recently-used cache with per-entry time-to-live and hit/miss counters.
``cached`` memoizes sync and async functions by their arguments, single-flight per key (a thousand
concurrent callers of a cold key cause one call), with an optional Redis store for async functions that
shares results across processes and degrades to local computing when Redis fails.

    from proxy.memo import cached

    @cached(ttl=60, maxsize=10_000)
    async def user_profile(user_id: int) -> dict[str, str]: ...
"""

from proxy.memo.aio import AsyncCachedFunction
from proxy.memo.base import CachedFunction
from proxy.memo.decorator import cached
from proxy.memo.lru import CacheInfo, CacheStats, LRUCache
from proxy.memo.sync import SyncCachedFunction

__all__ = [
    "AsyncCachedFunction",
    "CacheInfo",
    "CacheStats",
    "CachedFunction",
    "LRUCache",
    "SyncCachedFunction",
    "cached",
]
