"""``@cached`` for ``async def`` functions: single-flight per key, optionally shared through Redis.

The first caller to miss a key starts the computation as a task of its own and awaits it through
``asyncio.shield``; callers that miss the same key meanwhile await the same task. So a thousand callers of a
cold key cause one call, they all get its value (or its exception, which is not cached), and cancelling any
caller (the first one included) cancels only that caller's wait, never the computation the others need.

In-flight tasks are tracked per event loop: callers in another loop (another thread) start their own.
With a store, the leader looks the key up there before computing and writes its result there afterwards;
the local ``LRUCache`` stays in front, and a value read from the store lives locally no longer than it has
left in the store. The store's client, like any redis.asyncio client, belongs to one event loop.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Coroutine, Hashable
from typing import Any, TypeVar

from proxy.memo.base import CachedFunction, P
from proxy.memo.keys import MISSING, store_key
from proxy.memo.store import RedisStore

__all__ = ["STORE_PREFIX", "AsyncCachedFunction"]

T = TypeVar("T")

STORE_PREFIX = "memo"

_Slot = tuple[asyncio.AbstractEventLoop, Hashable]


class AsyncCachedFunction(CachedFunction[P, Coroutine[Any, Any, T]]):
    """An async function wrapped by ``@cached``; single-flight per key and event loop."""

    _fn: Any

    def __init__(self, *args: Any, store: RedisStore | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._store = store
        self._flights: dict[_Slot, asyncio.Task[T]] = {}

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        key = self._key(args, kwargs)
        local = self._local(key)
        value = self.cache.get(local, MISSING)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]
        loop = asyncio.get_running_loop()
        slot = (loop, local)
        task = self._flights.get(slot)
        if task is None:
            task = loop.create_task(self._lead(slot, key, args, kwargs), name=f"memo {self._name}")
            self._flights[slot] = task
            task.add_done_callback(functools.partial(self._landed, slot))
        return await asyncio.shield(task)

    async def _lead(self, slot: _Slot, key: Hashable, args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        local = slot[1]
        try:
            value = self.cache.peek(local, MISSING)
            if value is not MISSING:
                return value  # type: ignore[no-any-return]
            name = store_key(STORE_PREFIX, self._name, key)
            if self._store is not None:
                value, ttl_left = await self._store.get(name)
                if value is not MISSING:
                    self.cache.set(local, value, ttl_left if ttl_left is not None else self._ttl)
                    return value  # type: ignore[no-any-return]
            value = await self._fn(*args, **kwargs)
            self.cache.set(local, value, self._ttl)
            if self._store is not None:
                await self._store.set(name, value, self._ttl if self._ttl is not None else self.cache.ttl)
            return value  # type: ignore[no-any-return]
        finally:
            # Forget the flight as soon as it ends, so that a caller arriving after a failure tries again.
            self._forget(slot, asyncio.current_task())

    def _forget(self, slot: _Slot, task: asyncio.Future[Any] | None) -> None:
        if task is not None and self._flights.get(slot) is task:
            del self._flights[slot]

    def _landed(self, slot: _Slot, task: asyncio.Task[T]) -> None:
        """Done callback: also covers a task cancelled before it started; marks its exception retrieved."""
        self._forget(slot, task)
        if not task.cancelled():
            task.exception()

    async def ainvalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the entry for these arguments locally and in the store; True if either had it."""
        key = self._key(args, kwargs)
        removed = self.cache.delete(self._local(key))
        if self._store is not None:
            removed = await self._store.delete(store_key(STORE_PREFIX, self._name, key)) or removed
        return removed

    async def aclose(self) -> None:
        """Close the store's client if it was made from a URL (a client passed in stays the caller's)."""
        if self._store is not None:
            await self._store.aclose()
