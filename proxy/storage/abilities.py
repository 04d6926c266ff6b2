"""What some stores can do beyond ``Storage``, as small explicit protocols.

Every store does ``Storage``. A few can do more, and the parts that use that say so here instead of asking a store
for an attribute at the call site (``getattr``) or asking which class it is (``isinstance(store, MemoryStorage)``).
``abilities_of`` looks once, when the stores are opened (``proxy.runtime``), and the answer is a frozen value:

- ``InstantLookup``: answers a lookup without I/O (the memory store), so the driver skips the lookup coalescing;
- ``Startable``: has work to do before serving (learn a cluster's topology, subscribe to invalidations);
- ``Leasing``: offers a cross-process single-flight lease (Redis: one fetch per key among all workers);
- ``Degradable``: can say it runs degraded (an open breaker, a lost subscription): readyz says so;
- ``ErrorCounting``: counts its failed or skipped operations by operation (a metrics counter);
- ``ConfirmingPut``: says whether it took an entry (Redis: not when it is down, timed out, or its breaker is open,
  so the answer can say ``detail=store-unavailable`` instead of ``stored``; nor when the key was invalidated after
  the fetch began, ``detail=invalidated``: the store's own record of invalidations, shared by every process);
- ``Evicting``: evicts by a policy and reports what it did (the memory store, the two-tier L1);
- ``Deferring``: queues the invalidations it could not apply and applies them when it is back (Redis), and counts
  them; ``Pooling``: holds a pool of connections and can count them (Redis). Both are metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from proxy.messages import Entry
from proxy.storage.base import PutResult, Storage
from proxy.storage.memory import EvictionStats


class Lease(Protocol):
    """A cross-process lease on a key (Redis ``SET NX PX``), held by the process that fetches it."""

    async def acquire(self, key: str) -> bool:
        """Take the lease; False when another process holds it (or the lease store is unavailable: then True)."""
        ...

    async def wait(self, key: str, timeout: float) -> None:
        """Return when the holder announces the key is done, the lease expires, or ``timeout`` passes."""
        ...

    async def release(self, key: str) -> None:
        """Give the lease up and wake the processes waiting on it."""
        ...


@runtime_checkable
class InstantLookup(Protocol):
    def get_now(self, key: str) -> list[Entry]:
        """``Storage.get`` without I/O: every stored variant of ``key``."""
        ...


@runtime_checkable
class Startable(Protocol):
    async def start(self) -> None:
        """Prepare before serving; never fails (a store that cannot prepare starts degraded)."""
        ...


@runtime_checkable
class Leasing(Protocol):
    def lease(self) -> Lease:
        """The store's lease (one per store, closed with it)."""
        ...


@runtime_checkable
class Degradable(Protocol):
    @property
    def degraded(self) -> bool:
        """True while the store works but not fully (readyz says ``degraded``)."""
        ...


@runtime_checkable
class ErrorCounting(Protocol):
    def error_counts(self) -> dict[str, int]:
        """Failed or skipped operations so far, by operation (a metrics counter per ``store, op``)."""
        ...


@runtime_checkable
class ConfirmingPut(Protocol):
    async def store(self, key: str, entry: Entry, ttl: float, *, since: float | None = None) -> PutResult:
        """``Storage.put``, saying whether the store took the entry.

        ``since``: when the fetch that produced ``entry`` began (``Clock.now`` seconds; ``None``: a plain put). The
        store refuses the entry when it recorded an invalidation of ``key`` (or of its URL key's group; by URL,
        prefix or tag) at or after that time (RFC 9111 §4.4, across processes and hosts).
        """
        ...


@runtime_checkable
class Evicting(Protocol):
    def eviction_stats(self) -> EvictionStats:
        """The eviction policy's name, its evictions per queue, and its ghost hits so far."""
        ...


@runtime_checkable
class WatchingRemovals(Protocol):
    def watch_removals(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(key)`` whenever an entry of ``key`` leaves the store (evicted, expired, purged, replaced),
        so that nothing outside the store keeps an entry alive after the store dropped it."""
        ...


@runtime_checkable
class Deferring(Protocol):
    def deferred_counts(self) -> dict[str, int]:
        """Invalidations so far by outcome: ``queued`` (failed, kept for later), ``replayed`` (applied once the store
        was back), ``collapsed`` (merged into one purge of everything when the queue was full), ``dropped``."""
        ...


@runtime_checkable
class Pooling(Protocol):
    def connection_counts(self) -> dict[str, int]:
        """This process's pooled connections to the store, by state (``idle``, ``in_use``)."""
        ...


@dataclass(frozen=True, slots=True)
class Abilities:
    """What one store can do beyond ``Storage``: each field is the store itself, typed, or ``None``."""

    instant: InstantLookup | None = None
    startable: Startable | None = None
    leasing: Leasing | None = None
    degradable: Degradable | None = None
    error_counting: ErrorCounting | None = None
    confirming: ConfirmingPut | None = None
    evicting: Evicting | None = None
    watching: WatchingRemovals | None = None
    deferring: Deferring | None = None
    pooling: Pooling | None = None


def abilities_of(store: Storage) -> Abilities:
    """Look once at what ``store`` can do (at start-up, not per request)."""
    return Abilities(
        instant=store if isinstance(store, InstantLookup) else None,
        startable=store if isinstance(store, Startable) else None,
        leasing=store if isinstance(store, Leasing) else None,
        degradable=store if isinstance(store, Degradable) else None,
        error_counting=store if isinstance(store, ErrorCounting) else None,
        confirming=store if isinstance(store, ConfirmingPut) else None,
        evicting=store if isinstance(store, Evicting) else None,
        watching=store if isinstance(store, WatchingRemovals) else None,
        deferring=store if isinstance(store, Deferring) else None,
        pooling=store if isinstance(store, Pooling) else None,
    )
