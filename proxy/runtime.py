"""The long-lived objects of one process: settings, rules, stores (with their abilities), the origin client, the cache
driver and the observer. Built once when the app is made, started and closed by the lifespan.

It sits below both the ASGI app (``proxy.app``) and the admin surface (``proxy.admin``): both import it, neither
imports the other to reach it. What each store can do beyond ``Storage`` is looked up once, here
(``proxy.storage.abilities``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from proxy.cache.service import CacheService
from proxy.clock import Clock
from proxy.config import Settings
from proxy.heap import set_mmap_threshold
from proxy.origin import Origin
from proxy.rules.reload import RulesHolder
from proxy.storage.abilities import Abilities, abilities_of
from proxy.storage.base import Storage
from proxy.storage.memory import MemoryStorage
from proxy.upstream import Upstream, UpstreamConfig


class OriginClient(Origin, Protocol):
    """The origin port plus what the lifespan, readiness and metrics need from the concrete client."""

    on_busy: Callable[[], None] | None  # called when a request is shed for want of a pooled connection

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """Whether the origin answers at all (any status counts)."""
        ...


class Observing(Protocol):
    """What the lifespan needs from the observer (``proxy.admin.observe.AdminObserver``)."""

    async def flush_every(self, seconds: float) -> None: ...


def open_stores(settings: Settings, clock: Clock) -> tuple[dict[str, Storage], str]:
    """The stores routes can pick by name: always ``memory``, plus ``redis`` when ``--store`` names one."""
    stores: dict[str, Storage] = {
        "memory": MemoryStorage(settings.memory_budget, clock=clock, eviction=settings.eviction)
    }
    if settings.store == "memory":
        return stores, "memory"
    from proxy.storage.factory import open_store  # loads the Redis client only when a Redis store is configured

    stores["redis"] = open_store(
        settings.store,
        memory_budget=settings.memory_budget,
        l1_budget=settings.l1_budget or None,
        clock=clock,
        eviction=settings.eviction,
    )
    return stores, "redis"


def open_origin(settings: Settings, clock: Clock) -> OriginClient:
    """The HTTP client to the origin (the only place that names the implementation of the origin port)."""
    config = UpstreamConfig(
        settings.upstream,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        pool_size=settings.upstream_pool_size,
        pool_timeout=settings.upstream_pool_timeout,
        preserve_host=settings.preserve_host,
        ca_file=settings.upstream_ca,
    )
    return Upstream(config, clock)


_settled = False


def settle_heap() -> None:
    """Leave what the process holds at start-up (modules, the app, the rules) out of the cyclic collector's work, and
    run its youngest generation less often.

    Those objects live as long as the process, yet every full collection walked them all (about 20 ms a time, every
    few thousand requests, a pause each client in flight waited out: pass-through p99 was 2 to 3 times higher).
    ``gc.freeze`` moves them to a permanent generation. The first generation was collected every 700 net container
    allocations, a few dozen requests apart, each time walking the objects of every request in flight; at 10,000 a
    collection comes every few hundred requests (the garbage cycles waiting meanwhile are requests' leftovers, a few
    MiB at most). Done once per process: a test run starting many apps freezes only what the first one found.
    """
    global _settled
    if not _settled:
        _settled = True
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 10, 10)


@dataclass
class Runtime:
    """Everything one worker runs on; the edge and the admin surface read it."""

    settings: Settings
    clock: Clock
    rules: RulesHolder
    origin: OriginClient
    stores: dict[str, Storage]
    default_store: str
    service: CacheService
    abilities: dict[str, Abilities] = field(default_factory=dict)
    observer: Observing | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, clock: Clock, rules: RulesHolder | None = None) -> Runtime:
        holder = rules or RulesHolder(settings.rules, stores=settings.store_names)
        origin = open_origin(settings, clock)
        stores, default = open_stores(settings, clock)
        abilities = {name: abilities_of(store) for name, store in stores.items()}
        # Stores shared between processes (Redis) also coalesce fetches between processes.
        leasing = abilities[default].leasing
        service = CacheService(
            rules=holder,
            stores=stores,
            default_store=default,
            origin=origin,
            clock=clock,
            lease=None if leasing is None else leasing.lease(),
        )
        return cls(settings, clock, holder, origin, stores, default, service, abilities)

    @property
    def store(self) -> Storage:
        return self.stores[self.default_store]

    def abilities_of(self, name: str) -> Abilities:
        return self.abilities.get(name) or Abilities()

    def set_store(self, name: str, store: Storage) -> None:
        """Put ``store`` under ``name`` (tests swap in failing stores), its abilities looked up once, now."""
        self.stores[name] = store
        self.abilities[name] = abilities_of(store)

    async def start(self) -> None:
        """The lifespan's start: set the allocator and the collector, connect, prepare the stores, watch the rules,
        report the counts of rate-limited failure lines, flush the metrics."""
        set_mmap_threshold(self.settings.mmap_threshold)  # in each worker: it is a setting of the process (proxy.heap)
        settle_heap()
        await self.origin.start()
        for ability in self.abilities.values():
            if ability.startable is not None:
                await ability.startable.start()
        self.tasks.append(asyncio.create_task(self.rules.watch()))
        self.tasks.append(asyncio.create_task(self.service.report_failures()))
        if self.observer is not None:
            self.tasks.append(asyncio.create_task(self.observer.flush_every(1.0)))
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            self.rules.install_sighup(asyncio.get_running_loop())

    async def close(self) -> None:
        """The lifespan's end: stop the background tasks and the driver's, then the clients."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        await self.service.close()
        await self.origin.close()
        for store in self.stores.values():
            await store.close()
