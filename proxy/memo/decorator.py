"""``cached``: the decorator that memoizes sync and async functions (see ``proxy/memo/__init__.py``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, ParamSpec, TypeVar, overload

import redis.asyncio as aioredis

from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.memo.aio import AsyncCachedFunction
from proxy.memo.keys import function_name
from proxy.memo.lru import LRUCache, check_ttl
from proxy.memo.store import RedisStore
from proxy.memo.sync import SyncCachedFunction

__all__ = ["cached"]

P = ParamSpec("P")
T = TypeVar("T")


class _Decorator:
    """What ``cached(...)`` returns; each decorated function gets its own cache unless ``cache=`` is set."""

    def __init__(
        self,
        ttl: float | None,
        maxsize: int,
        key: Callable[..., Hashable] | None,
        cache: LRUCache | None,
        store: aioredis.Redis | str | None,
        clock: Clock,
    ) -> None:
        self._ttl, self._maxsize, self._key = ttl, maxsize, key
        self._cache, self._store, self._clock = cache, store, clock

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, T]]) -> AsyncCachedFunction[P, T]: ...  # type: ignore[overload-overlap]

    @overload
    def __call__(self, fn: Callable[P, T]) -> SyncCachedFunction[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> AsyncCachedFunction[P, Any] | SyncCachedFunction[P, Any]:
        if not callable(fn):
            raise TypeError(f"@cached decorates a function, not {type(fn).__name__}")
        is_async = inspect.iscoroutinefunction(fn)
        if self._store is not None and not is_async:
            raise TypeError(
                f"{function_name(fn)}: store= needs an async def function (the Redis store is async-only);"
                " a sync function can use the local cache only"
            )
        config: dict[str, Any] = {
            "cache": LRUCache(self._maxsize, self._ttl, clock=self._clock) if self._cache is None else self._cache,
            "ttl": self._ttl,
            "key": self._key,
            "shared_cache": self._cache is not None,
        }
        if is_async:
            store = None if self._store is None else RedisStore(self._store)
            return AsyncCachedFunction(fn, store=store, **config)
        return SyncCachedFunction(fn, **config)


def cached(
    ttl: float | None = None,
    maxsize: int = 1024,
    *,
    key: Callable[..., Hashable] | None = None,
    cache: LRUCache | None = None,
    store: aioredis.Redis | str | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> _Decorator:
    """Memoize a sync or async function by its arguments, computing each key once however many callers ask.

    ``ttl`` seconds per entry (None: until evicted); ``maxsize`` entries in the local LRU. ``key`` builds the
    key from the call's arguments instead of the default (positional + sorted keyword arguments). ``cache``
    replaces the local LRU (then ``maxsize`` and ``clock`` are unused; keys are namespaced by function, so
    one cache can serve several). ``store`` (async functions only) is a ``redis.asyncio.Redis`` or a
    ``redis://`` URL shared by every process that computes the same function.
    """
    if callable(ttl):
        raise TypeError("use @cached() or @cached(ttl=...), with parentheses")
    check_ttl(ttl)
    if maxsize < 0:
        raise ValueError(f"maxsize must be >= 0, not {maxsize!r}")
    if store is not None and not isinstance(store, str | aioredis.Redis):
        raise TypeError(f"store must be a redis.asyncio.Redis or a redis:// URL, not {type(store).__name__}")
    return _Decorator(ttl, maxsize, key, cache, store, clock)
