"""Open the store named by ``--store``: ``memory``, ``redis://``, ``rediss://`` or ``redis+cluster://h:p[,h:p]``.

With an ``l1_budget`` a Redis store gets a memory L1 in front (the two-tier store). The caller awaits ``start()`` where
the store has one (the Redis ones) before serving, and ``close()`` at shutdown.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from proxy.clock import Clock
from proxy.errors import ConfigError
from proxy.storage.base import Storage
from proxy.storage.eviction import DEFAULT_POLICY
from proxy.storage.memory import MemoryStorage
from proxy.storage.redis import RedisStorage
from proxy.storage.tiered import TieredStorage

REDIS_SCHEMES = frozenset({"redis", "rediss", "unix", "redis+cluster", "rediss+cluster"})


def open_store(
    url: str,
    *,
    memory_budget: int,
    l1_budget: int | None,
    clock: Clock,
    read_timeout: float = 0.05,
    write_timeout: float = 0.25,
    keep: float = 0.0,
    eviction: str = DEFAULT_POLICY,
) -> Storage:
    """Build (without connecting) the store ``url`` names; ``ConfigError`` for anything else.

    ``keep`` is added to every time-to-live in Redis, so entries outlive their stale windows long enough to be
    revalidated with a 304 (the memory store keeps them while its budget allows instead). ``l1_budget`` is ignored
    for the memory store, which is already in process. ``eviction`` is the policy of the memory store or the L1.
    """
    if url in ("memory", "memory://"):
        return MemoryStorage(memory_budget, clock=clock, eviction=eviction)
    scheme = urlsplit(url).scheme
    if scheme not in REDIS_SCHEMES:
        raise ConfigError(f"--store: expected memory, redis://, rediss:// or redis+cluster://, got {url!r}")
    if read_timeout <= 0 or write_timeout <= 0 or keep < 0:
        raise ConfigError("store timeouts must be positive and the keep window not negative")
    l2 = RedisStorage.from_url(url, clock=clock, read_timeout=read_timeout, write_timeout=write_timeout, keep=keep)
    if l1_budget:
        return TieredStorage(l2, l1_budget, clock=clock, eviction=eviction)
    return l2
