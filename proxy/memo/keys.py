"""Cache keys for ``proxy.memo.cached``: from call arguments to a hashable key, and to a Redis key name.

The default key is ``functools.lru_cache``'s with ``typed=False``: the positional arguments, then the keyword
arguments sorted by name, so ``f(1, b=2, a=3)`` and ``f(1, a=3, b=2)`` share an entry (but ``f(1)`` and
``f(a=1)`` do not: the function is not introspected). The Redis name hashes the key's ``repr``, which must
therefore be the same in every process: true for str, bytes, numbers, tuples and frozen dataclasses, not for
objects with the default ``<Foo object at 0x...>`` repr (pass ``key=`` for those).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Mapping
from typing import Any

__all__ = ["KWARGS_MARK", "MISSING", "checked_key", "function_name", "make_key", "store_key"]


class _KwargsMark:
    """Separates positional from keyword arguments in a key; one instance, stable repr."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<kwargs>"

    def __reduce__(self) -> str:
        return "KWARGS_MARK"


KWARGS_MARK = _KwargsMark()


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()
"""What a lookup returns for a missing key, since ``None`` is a value a function may return."""


def function_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of ``fn``: the namespace of its entries in a shared store."""
    module = getattr(fn, "__module__", None) or "?"
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{qualname}"


def make_key(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Hashable:
    """The default key of a call; a clear ``TypeError`` naming the argument when one is unhashable."""
    key: tuple[Any, ...] = args
    if kwargs:
        key = (*args, KWARGS_MARK, *sorted(kwargs.items()))
    try:
        hash(key)
    except TypeError:
        raise TypeError(_unhashable_message(name, args, kwargs)) from None
    return key


def checked_key(name: str, key: object) -> Hashable:
    """The result of a user's ``key=`` function, checked for hashability."""
    try:
        hash(key)
    except TypeError:
        raise TypeError(f"{name}: the key function returned an unhashable {type(key).__name__}") from None
    return key


def _unhashable_message(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    where = "an argument"
    for i, value in enumerate(args):
        if not _is_hashable(value):
            where = f"positional argument {i} ({type(value).__name__})"
            break
    else:
        for kw, value in sorted(kwargs.items()):
            if not _is_hashable(value):
                where = f"keyword argument {kw!r} ({type(value).__name__})"
                break
    return f"{name}: {where} is unhashable, so the call cannot be cached; pass key= to @cached to build a key"


def _is_hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def store_key(prefix: str, name: str, key: Hashable) -> str:
    """``<prefix>:<module.qualname>:<sha256 of repr(key)>``: the name of an entry in a shared store."""
    digest = hashlib.sha256(repr(key).encode("utf-8", "backslashreplace")).hexdigest()
    return f"{prefix}:{name}:{digest}"
