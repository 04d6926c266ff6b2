"""What sync and async ``@cached`` functions share: the key recipe, the local cache and its controls."""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Hashable
from typing import Any, Generic, ParamSpec, TypeVar

from proxy.memo.keys import checked_key, function_name, make_key
from proxy.memo.lru import CacheInfo, LRUCache

__all__ = ["CachedFunction"]

P = ParamSpec("P")
R = TypeVar("R")


class CachedFunction(Generic[P, R]):
    """A function wrapped by ``@cached``: ``cache``, ``cache_clear()``, ``cache_info()``, ``invalidate()``.

    As a method it binds like a function: ``self`` is part of the key, and
    ``Class.method.invalidate(obj, x)`` drops one entry.
    """

    cache: LRUCache
    """The local cache (shared with other functions when it was passed with ``cache=``)."""
    __wrapped__: Callable[P, Any]
    __name__: str

    def __init__(
        self,
        fn: Callable[P, Any],
        *,
        cache: LRUCache,
        ttl: float | None,
        key: Callable[..., Hashable] | None,
        shared_cache: bool,
    ) -> None:
        functools.update_wrapper(self, fn)
        self.cache = cache
        self._fn = fn
        self._ttl = ttl
        self._key_fn = key
        self._name = function_name(fn)
        # A cache passed in may serve several functions: their keys must not collide.
        self._namespace = self._name if shared_cache else None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        raise NotImplementedError

    def _key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        """The call's key, before namespacing (also the base of its name in a shared store)."""
        if self._key_fn is None:
            return make_key(self._name, args, kwargs)
        return checked_key(self._name, self._key_fn(*args, **kwargs))

    def _local(self, key: Hashable) -> Hashable:
        return key if self._namespace is None else (self._namespace, key)

    def cache_clear(self) -> None:
        """Empty the local cache (all of it, when it is shared)."""
        self.cache.clear()

    def cache_info(self) -> CacheInfo:
        """``(hits, misses, maxsize, currsize)`` of the local cache, like ``functools.lru_cache``."""
        return self.cache.cache_info()

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the local entry for these arguments; True if there was a live one."""
        return self.cache.delete(self._local(self._key(args, kwargs)))

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return self if instance is None else types.MethodType(self, instance)

    def __repr__(self) -> str:
        return f"<cached {self._name} {self.cache!r}>"
