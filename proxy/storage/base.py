"""The ``Storage`` protocol: what the cache needs from a store, and nothing more.

A key holds one or more variants (RFC 9111 §4.1); ``put`` replaces the variant with the same ``Entry.variant``.
Every backend passes the one contract suite in ``tests/storage/test_contract.py``. A backend that fails (Redis down,
a timeout) raises ``StorageError``; the cache service treats that as a miss or a skipped store.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from proxy.messages import Entry

# A key is ``<url key>`` or ``<url key><GROUP_SEP><suffix>``: the URL part first (RFC 9111 §2: method and target
# URI), then, for routes whose key includes request headers or cookies, a suffix for their values. ``delete`` of a
# URL key removes the whole group, so invalidation (RFC 9111 §4.4) and purge reach every key shape.
GROUP_SEP = "."


def url_key_of(key: str) -> str | None:
    """The URL key a suffixed key belongs to, or ``None`` for a key that is a URL key itself."""
    base, sep, _ = key.partition(GROUP_SEP)
    return base if sep else None


class PutResult(StrEnum):
    """What a confirming store (``proxy.storage.abilities.ConfirmingPut``) did with a put."""

    STORED = "stored"
    UNAVAILABLE = "unavailable"  # down, timed out, breaker open: nothing raised, nothing stored
    INVALIDATED = "invalidated"  # the key was invalidated at or after the fetch began: the entry predates that


@dataclass(frozen=True)
class StoreStats:
    entries: int
    bytes: int
    budget: int | None  # None when the store does not know its limit (Redis: maxmemory is Redis's own)
    evictions: int
    server_memory: int | None = None  # a shared server's whole footprint (Redis' used_memory), not only our entries


class Storage(Protocol):
    name: str  # "memory", "redis", "redis-cluster", "two-tier": for logs, metrics and readyz

    async def get(self, key: str) -> list[Entry]:
        """Every stored variant of ``key`` (empty when none)."""
        ...

    async def put(self, key: str, entry: Entry, ttl: float) -> None:
        """Store ``entry`` under ``key`` for at most ``ttl`` seconds, replacing the variant with the same vary snapshot.

        A store may refuse silently (too large for its budget): storing is always best-effort.
        """
        ...

    async def delete(self, key: str) -> int:
        """Remove every variant of ``key`` and, when ``key`` is a URL key, of every key in its group (those
        ``key + GROUP_SEP + ...``); return how many entries were removed."""
        ...

    async def delete_tag(self, tag: str) -> int:
        """Remove every entry carrying ``tag``; return how many were removed."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every entry whose ``Entry.url`` path (the part after scheme and host) starts with ``prefix``."""
        ...

    async def stats(self) -> StoreStats: ...

    async def ping(self) -> bool:
        """True when the store is reachable (for readyz)."""
        ...

    async def close(self) -> None: ...
