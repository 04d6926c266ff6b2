"""``@cached`` for plain functions: one computation per key however many threads ask at once.

The first thread to miss a key becomes its leader and calls the function; threads that miss the same key
meanwhile wait on the leader's ``threading.Event`` and take its value, or its exception (which is not cached).
Nothing is held locked while the function runs.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Hashable
from typing import Any, TypeVar

from proxy.memo.base import CachedFunction, P
from proxy.memo.keys import MISSING

__all__ = ["SyncCachedFunction"]

T = TypeVar("T")


class _Call:
    """One computation in flight; followers wait on ``done``."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def result(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


class SyncCachedFunction(CachedFunction[P, T]):
    """A sync function wrapped by ``@cached``; thread-safe, single-flight per key."""

    _fn: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call] = {}

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        key = self._local(self._key(args, kwargs))
        value = self.cache.get(key, MISSING)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
        if not leader:
            return call.result()  # type: ignore[no-any-return]
        return self._lead(key, call, args, kwargs)

    def _lead(self, key: Hashable, call: _Call, args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        try:
            # A leader that finished between our miss and our taking the lock has already stored the value.
            value = self.cache.peek(key, MISSING)
            if value is MISSING:
                value = self._fn(*args, **kwargs)
                _refuse_awaitable(self._name, value)
                self.cache.set(key, value, self._ttl)
            call.value = value
            return value  # type: ignore[no-any-return]
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()


def _refuse_awaitable(name: str, value: object) -> None:
    """An awaitable can be awaited once: caching one is always a bug (a sync def returning a coroutine)."""
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()
        raise TypeError(f"{name} returned an awaitable: @cached handles async functions declared `async def`")
