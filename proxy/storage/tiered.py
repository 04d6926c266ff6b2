"""The two-tier store: a small memory L1 in each worker in front of the shared Redis L2.

Theory of operation. A lookup tries L1, then L2, and copies what L2 had (every live variant, with its remaining
lifetime) into L1. A store or a purge changes L2 and this worker's L1 (the key is dropped from L1, not written: L1
only ever holds copies of what L2 had, so a key's copy has all its variants, RFC 9111 §4.1), then publishes an
invalidation on ``cp:inval``: ``<instance>\\0<kind>\\0<argument>`` with kind ``k`` (key), ``t`` (tag), ``p`` (prefix)
or ``f`` (flush). Every instance listens in a background task (``start``) and applies the others' messages to its L1.

Coherence. A lookup that goes to L2 does not fill L1 if an invalidation of its key (or any tag, prefix or flush
invalidation) was applied while it waited: the answer may predate it. After a lost pub/sub connection L1 is
flushed (messages may have been missed), and again when the subscription is back; reconnection backs off from
0.1 s to 2 s. While Redis is unreachable, stores go to L1 alone, so this worker keeps serving its own recent
entries; the flush on reconnection drops them. Before ``start`` L1 is not used at all. A purge that L2 could not
apply is queued by L2 and applied when Redis is back (``redis_recovery``); then it is applied to L1 and published
like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.messages import Entry
from proxy.storage import redis_layout as layout
from proxy.storage.base import GROUP_SEP, PutResult, StoreStats
from proxy.storage.eviction import DEFAULT_POLICY
from proxy.storage.lease import RedisLease
from proxy.storage.memory import EvictionStats, MemoryStorage
from proxy.storage.redis import RedisStorage
from proxy.storage.redis_pubsub import Subscriber, publish

CHANNEL = layout.INVALIDATION_CHANNEL
log = logging.getLogger("cacheproxy.storage")


class TieredStorage:
    """A per-worker ``MemoryStorage`` L1 in front of a ``RedisStorage`` L2, kept coherent by pub/sub."""

    name = "two-tier"

    def __init__(
        self,
        l2: RedisStorage,
        l1_budget: int,
        *,
        clock: Clock = SYSTEM_CLOCK,
        max_variants: int = 16,
        channel: str = CHANNEL,
        backoff: tuple[float, float] = (0.1, 2.0),
        eviction: str = DEFAULT_POLICY,
    ) -> None:
        self.l2 = l2
        self.instance_id = secrets.token_hex(8)
        self.channel = channel
        self.subscribed = False  # True while the invalidation subscription is up
        self.l1_hits = 0
        self.flushes = 0  # whole-L1 flushes: on every (re)subscription and every lost subscription
        self.subscription_losses = 0
        self._l1_budget = l1_budget
        self._eviction = eviction
        self._max_variants = max_variants
        self._clock = clock
        self._backoff = backoff
        self._generation = 0  # bumped by every invalidation that is not about one key
        self._key_generation: dict[str, int] = {}  # per key with a lookup in flight: invalidations seen
        self._readers: dict[str, int] = {}  # keys with lookups in flight to L2, and how many
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._last_log: float | None = None
        self.l1 = self._new_l1()
        l2.keeper.listeners.append(self._replayed)

    @property
    def degraded(self) -> bool:
        """L2 degraded, or L1 not kept coherent because the subscription is down."""
        return self.l2.degraded or (self._task is not None and not self.subscribed)

    @property
    def errors(self) -> int:
        return self.l2.errors + self.subscription_losses

    def error_counts(self) -> dict[str, int]:
        return {**self.l2.error_counts(), "subscribe": self.subscription_losses}

    def deferred_counts(self) -> dict[str, int]:
        return self.l2.deferred_counts()

    def connection_counts(self) -> dict[str, int]:
        return self.l2.connection_counts()

    async def start(self, wait: float = 1.0) -> None:
        """Start listening for invalidations; waits up to ``wait`` s for the subscription (never fails)."""
        await self.l2.start()
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name=f"cacheproxy-l1-invalidation-{self.instance_id}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._ready.wait()

    def lease(self) -> RedisLease:
        """Single-flight across processes goes through the shared L2."""
        return self.l2.lease()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.subscribed = False
        self.l1 = self._new_l1()
        await self.l2.close()

    async def get(self, key: str) -> list[Entry]:
        if self._task is not None:
            found = await self.l1.get(key)
            if found:
                self.l1_hits += 1
                return found
        token = self._begin_read(key)
        try:
            timed = await self.l2.get_timed(key)
        finally:
            clean = self._end_read(key, token)
        if self._task is not None and timed and clean:
            now = self._clock.now()
            for entry, expires in timed:
                await self.l1.put(key, entry, expires - now)
        return [entry for entry, _ in timed]

    async def put(self, key: str, entry: Entry, ttl: float) -> None:
        await self.store(key, entry, ttl)

    async def store(self, key: str, entry: Entry, ttl: float, *, since: float | None = None) -> PutResult:
        """``put``, refused as L2 refuses it when the key was invalidated at or after ``since``. With Redis
        unreachable the entry is kept in this worker's L1 and counts as stored (as ``put`` always did)."""
        result = await self.l2.store(key, entry, ttl, since=since)
        await self._drop_local(b"k", key)
        if result is PutResult.STORED:
            await self._publish(b"k", key)
        elif result is PutResult.UNAVAILABLE and self._task is not None:
            await self.l1.put(key, entry, ttl)  # Redis unreachable: serve this worker's own entry from L1
            return PutResult.STORED
        return result

    async def delete(self, key: str) -> int:
        """Drop from L1, then L2 (``StorageError`` from L2 propagates), then tell the other instances."""
        await self._drop_local(b"k", key)
        removed = await self.l2.delete(key)
        await self._publish(b"k", key)
        return removed

    async def delete_tag(self, tag: str) -> int:
        await self._drop_local(b"t", tag)
        removed = await self.l2.delete_tag(tag)
        await self._publish(b"t", tag)
        return removed

    async def delete_prefix(self, prefix: str) -> int:
        await self._drop_local(b"p", prefix)
        removed = await self.l2.delete_prefix(prefix)
        await self._publish(b"p", prefix)
        return removed

    async def stats(self) -> StoreStats:
        """L2's numbers: that is the shared cache; L1 holds copies."""
        return await self.l2.stats()

    async def ping(self) -> bool:
        return await self.l2.ping()

    def eviction_stats(self) -> EvictionStats:
        """The L1's policy figures (they restart from zero when L1 is flushed)."""
        return self.l1.eviction_stats()

    def _new_l1(self) -> MemoryStorage:
        return MemoryStorage(
            self._l1_budget, clock=self._clock, max_variants=self._max_variants, eviction=self._eviction
        )

    def _begin_read(self, key: str) -> tuple[int, int]:
        """Note a lookup of ``key`` going to L2; the token tells ``_end_read`` what it must not have missed."""
        self._readers[key] = self._readers.get(key, 0) + 1
        return self._generation, self._key_generation.get(key, 0)

    def _end_read(self, key: str, token: tuple[int, int]) -> bool:
        """Was nothing about ``key`` invalidated while its lookup was in flight? (Then L1 may take the answer.)"""
        clean = token == (self._generation, self._key_generation.get(key, 0))
        left = self._readers[key] - 1
        if left:
            self._readers[key] = left
        else:
            del self._readers[key]
            self._key_generation.pop(key, None)
        return clean

    async def _drop_local(self, kind: bytes, argument: str) -> None:
        """Apply one invalidation to L1, and keep lookups in flight that it concerns from filling L1."""
        if kind == b"k":
            group = argument + GROUP_SEP
            for reader in [argument, *(k for k in self._readers if k.startswith(group))]:
                if reader in self._readers:
                    self._key_generation[reader] = self._key_generation.get(reader, 0) + 1
            await self.l1.delete(argument)  # a URL key takes its group along (MemoryStorage.delete)
            return
        self._generation += 1
        if kind == b"t":
            await self.l1.delete_tag(argument)
        elif kind == b"p":
            await self.l1.delete_prefix(argument)
        else:
            self._flush_l1()

    def _flush_l1(self) -> None:
        self.flushes += 1
        self._generation += 1
        self.l1 = self._new_l1()

    async def _publish(self, kind: bytes, argument: str) -> None:
        message = b"\0".join((self.instance_id.encode(), kind, argument.encode("utf-8", "surrogatepass")))
        client, channel = self.l2.client, self.channel
        await self.l2.guard.call("publish", lambda: publish(client, channel, message), self.l2.write_timeout, None)

    async def _replayed(self, op: str, argument: str) -> None:
        """L2 applied a purge it had queued during an outage: this worker's L1 and the other instances follow."""
        kind = {"delete": b"k", "delete_tag": b"t", "delete_prefix": b"p"}[op]
        await self._drop_local(kind, argument)
        await self._publish(kind, argument)

    async def _apply(self, message: bytes) -> None:
        sender, _, rest = message.partition(b"\0")
        if sender == self.instance_id.encode():
            return
        kind, _, argument = rest.partition(b"\0")
        await self._drop_local(kind, argument.decode("utf-8", "surrogatepass"))

    async def _listen(self) -> None:
        """Subscribe, apply messages, and on any failure flush L1 and resubscribe with backoff; until cancelled."""
        delay = self._backoff[0]
        while True:
            subscriber = Subscriber(self.l2.client, self.channel)
            try:
                await subscriber.subscribe(timeout=max(self.l2.write_timeout * 4, 1.0))
                self._flush_l1()  # whatever L1 took while we were not listening may be stale
                self.subscribed = True
                self._ready.set()
                delay = self._backoff[0]
                while True:
                    message = await subscriber.next_message(timeout=1.0)
                    if message is not None:
                        await self._apply(message)
            except Exception as exc:  # any failure of the link: the loop must survive it
                if self.subscribed:  # a lost subscription, not a failed attempt: messages may have been missed
                    self.subscribed = False
                    self._flush_l1()
                self._lost(exc)
            finally:
                with contextlib.suppress(Exception):
                    await subscriber.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff[1])

    def _lost(self, exc: Exception) -> None:
        """Count a lost subscription; log at most once per 10 s."""
        self.subscription_losses += 1
        now = self._clock.monotonic()
        if self._last_log is None or now - self._last_log >= 10.0:
            self._last_log = now
            log.warning(
                "store %s: invalidation subscription lost (%s: %s), L1 flushed; %d losses so far",
                self.name, type(exc).__name__, exc, self.subscription_losses,
            )  # fmt: skip
