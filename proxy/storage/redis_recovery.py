"""Getting the Redis store back after an outage, and keeping its pool small: the store's one background task.

Theory of operation. From ``RedisStorage.start`` to ``close`` the ``Keeper`` runs and owns the breaker's half-open
probe (``CircuitBreaker.probed_by_owner``): no request is ever the probe. Every ``tick`` it looks at the breaker:

- open for ``probe_every`` seconds (1 s: the probe is one PING from one task, so it need not wait out the 3 s that
  keep request traffic off a dead Redis): the probe. First every idle pooled connection is closed (each was opened
  before the outage or failed during it: one to the dead server would fail its next command), then one PING on a
  new connection, then the invalidations that failed while Redis was unreachable (``Pending``) are applied in order.
  All of that happens half-open, so no lookup reads what they are about to remove and readiness still says
  degraded; only then does the breaker close, and readyz and the purge endpoint both see the store back. Any failure
  opens the breaker again, and what was not applied stays queued.
- closed with invalidations pending (one failed without the breaker opening, or came in during the probe): they are
  applied now (after a failed replay, ``probe_every`` later).
- every ``trim_every`` seconds, pooled connections idle for more than ``idle_timeout`` are closed, keeping the
  ``keep_idle`` most recently used (the pool shrinks back after a burst).

``Pending`` is a bounded, ordered, de-duplicated queue of ``(op, argument)``: ``("delete", key)``,
``("delete_tag", tag)``, ``("delete_prefix", prefix)``, each the store method that failed. Past ``cap`` entries
the queue collapses into one prefix purge of ``/``, every entry: removing too much is always safe, forgetting one
invalidation is not. An invalidation whose replay failed ``max_attempts`` times is dropped and logged. Every step is
counted (``counts``, the metric ``cacheproxy_store_deferred_invalidations_total{store,outcome}``). The queue lives
in the worker's memory: a worker that dies takes its queue with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass

from proxy.errors import StorageError
from proxy.storage.breaker import BreakerState, Guard
from proxy.storage.redis_client import Client, drop_idle, trim_idle

log = logging.getLogger("cacheproxy.storage")

Invalidation = tuple[str, str]  # (the store method, its argument)
EVERYTHING: Invalidation = ("delete_prefix", "/")
OUTCOMES = ("queued", "replayed", "collapsed", "dropped")

# Set in the keeper's task only: the store's purge methods, called from there, are steps of the probe (made
# whatever the breaker says) and are not queued again when they fail.
REPLAYING: ContextVar[bool] = ContextVar("cacheproxy_redis_replaying", default=False)


@dataclass(frozen=True, slots=True)
class Upkeep:
    """The keeper's timings and bounds (seconds, connections, invalidations)."""

    tick: float = 0.1
    probe_every: float = 1.0
    trim_every: float = 5.0
    idle_timeout: float = 30.0
    keep_idle: int = 4
    pending_cap: int = 1024
    max_attempts: int = 3
    probe_timeout: float = 1.0


class Pending:
    """The invalidations the store could not apply, in order, each once; see the module docstring."""

    def __init__(self, cap: int = 1024, max_attempts: int = 3) -> None:
        if cap < 1 or max_attempts < 1:
            raise ValueError("the pending cap and max_attempts must be at least 1")
        self._cap = cap
        self._max_attempts = max_attempts
        self._items: dict[Invalidation, tuple[int, int]] = {}  # -> (sequence number of its last add, failed replays)
        self._seq = 0
        self.counts = dict.fromkeys(OUTCOMES, 0)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, op: str, argument: str) -> None:
        """Queue one failed invalidation (again: it moves to the end, a replay in flight does not take it off)."""
        self.counts["queued"] += 1
        self._seq += 1
        item = (op, argument)
        if EVERYTHING in self._items and item != EVERYTHING:
            self.counts["collapsed"] += 1  # the purge of everything still to come covers it
            return
        attempts = self._items.pop(item, (0, 0))[1]
        if len(self._items) >= self._cap:
            self.counts["collapsed"] += len(self._items) + 1
            log.warning("%d invalidations queued: collapsed into one purge of every entry", len(self._items) + 1)
            self._items = {}
            item, attempts = EVERYTHING, 0
        self._items[item] = (self._seq, attempts)

    def take(self) -> list[tuple[Invalidation, int]]:
        """What is queued now, oldest first, each with the sequence number ``done`` and ``failed`` check."""
        return [(item, seq) for item, (seq, _) in self._items.items()]

    def done(self, item: Invalidation, seq: int) -> None:
        self.counts["replayed"] += 1
        if self._items.get(item, (None, 0))[0] == seq:
            del self._items[item]

    def failed(self, item: Invalidation, seq: int) -> None:
        found = self._items.get(item)
        if found is None or found[0] != seq:
            return
        attempts = found[1] + 1
        if attempts < self._max_attempts:
            self._items[item] = (seq, attempts)
            return
        del self._items[item]
        self.counts["dropped"] += 1
        log.warning("invalidation %s(%r) dropped after %d failed replays", item[0], item[1], attempts)


Replay = Callable[[str, str], Awaitable[int]]
Replayed = Callable[[str, str], Awaitable[None]]


class Keeper:
    """The Redis store's background task (see the module docstring); ``run`` until cancelled."""

    def __init__(
        self,
        client: Client,
        guard: Guard,
        pending: Pending,
        *,
        ping: Callable[[], Awaitable[bool]],
        replay: Replay,
        upkeep: Upkeep,
    ) -> None:
        self.client = client
        self.guard = guard
        self.pending = pending
        self.upkeep = upkeep
        self.listeners: list[Replayed] = []  # told of each replayed invalidation once the breaker is closed
        self.probes = 0
        self.trimmed = 0  # connections closed for idleness
        self._ping = ping
        self._replay = replay
        self._last_error_log: float | None = None
        self._retry_at = 0.0  # loop time before which a failed replay is not tried again (breaker closed)

    async def run(self) -> None:
        """Probe, replay, trim, every tick, until cancelled; the breaker's probe is ours meanwhile."""
        loop = asyncio.get_running_loop()
        breaker = self.guard.breaker
        breaker.probed_by_owner = True
        token = REPLAYING.set(True)
        next_trim = loop.time() + self.upkeep.trim_every
        try:
            while True:
                await asyncio.sleep(self.upkeep.tick)
                try:
                    await self.step()
                    if loop.time() >= next_trim:
                        next_trim = loop.time() + self.upkeep.trim_every
                        self.trimmed += await trim_idle(self.client, self.upkeep.idle_timeout, self.upkeep.keep_idle)
                except Exception:  # a bug must not stop recovery for good; CancelledError still ends the task
                    self._log_error(loop.time())
        finally:
            breaker.probed_by_owner = False
            REPLAYING.reset(token)

    async def step(self) -> None:
        state = self.guard.breaker.state
        if state is BreakerState.OPEN and self.guard.breaker.begin_probe(self.upkeep.probe_every):
            await self.probe()
        elif state is BreakerState.CLOSED and self.pending and asyncio.get_running_loop().time() >= self._retry_at:
            replayed = await self._apply_pending()
            if replayed is None:  # not again at the next tick: a Redis that is slow right now needs a moment
                self._retry_at = asyncio.get_running_loop().time() + self.upkeep.probe_every
            await self._tell(replayed)

    async def probe(self) -> None:
        """The half-open probe: stale connections out, PING, queued invalidations in; then close the breaker."""
        self.probes += 1
        await drop_idle(self.client)
        if await self.guard.attempt("ping", self._ping, self.upkeep.probe_timeout, probing=True) is None:
            return
        replayed = await self._apply_pending()
        if replayed is None:
            return  # a replay failed: the breaker is open again
        self.guard.breaker.record_success()
        log.info("store %s: reachable again; %d queued invalidations applied", self.guard.name, len(replayed))
        await self._tell(replayed)

    async def _apply_pending(self) -> list[Invalidation] | None:
        """Apply what is queued, in order (a few rounds: more may be queued meanwhile); None when one failed."""
        applied: list[Invalidation] = []
        for _ in range(3):
            batch = self.pending.take()
            if not batch:
                break
            for item, seq in batch:
                try:
                    await self._replay(*item)
                except StorageError:
                    self.pending.failed(item, seq)
                    return None
                self.pending.done(item, seq)
                applied.append(item)
        return applied

    async def _tell(self, replayed: list[Invalidation] | None) -> None:
        for item in replayed or ():
            for listener in self.listeners:
                await listener(*item)

    def _log_error(self, now: float) -> None:
        if self._last_error_log is None or now - self._last_error_log >= 10.0:
            self._last_error_log = now
            log.exception("store %s: the keeper's step failed", self.guard.name)
