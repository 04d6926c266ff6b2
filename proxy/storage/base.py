"""The ``Storage`` protocol: what the cache needs from a store, and nothing more.

A key holds one or more variants (RFC 9111 §4.1); ``put`` replaces the variant with the same ``Entry.variant``.
Every backend passes the one contract suite in ``tests/storage/test_contract.py``. A backend that fails (Redis down,
a timeout) raises ``StorageError``; the cache service treats that as a miss or a skipped store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from proxy.messages import Entry


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
        """Remove every variant of ``key``; return how many entries were removed."""
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
