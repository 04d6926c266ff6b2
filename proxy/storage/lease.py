"""Cross-process single-flight: a short lease per cache key in Redis, so that one process of many fetches a key.

The leader takes ``cp:{K}:lease`` with ``SET NX PX`` (the hash tag puts it in the entry's slot) and renews it while
its fetch runs; when done it deletes the lease (only if still its own) and publishes the key on ``cp:lease-done``.
Other processes wait for that message, checking every ``check_interval`` whether the lease still exists, so a leader
that crashed delays them by at most the lease's time-to-live. Redis trouble never blocks anyone: a lease that cannot
be taken or checked counts as free, and the process fetches for itself.

Each held lease has one renewer task, owned by the lease: ``release`` (and ``close``) tells it to stop, cancels it and
awaits its end, so no renewer outlives its lease. The renewer stops on its own signal even if a cancellation were
lost inside the Redis client, and it never swallows ``CancelledError``: a Redis error that arrives together with a
cancellation ends the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass

from redis.exceptions import RedisError

from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.storage import redis_layout as layout
from proxy.storage.breaker import Guard
from proxy.storage.redis_client import Client
from proxy.storage.redis_pubsub import Subscriber, publish

log = logging.getLogger("cacheproxy.lease")

CHANNEL = layout.LEASE_DONE_CHANNEL
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_ERRORS = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class _Renewal:
    """The renewer of one held lease: its stop signal and its task."""

    stop: asyncio.Event
    task: asyncio.Task[None]

    async def end(self) -> None:
        """Stop the renewer and wait until it has ended (whatever it was doing)."""
        self.stop.set()
        self.task.cancel()
        await asyncio.wait([self.task])
        if not self.task.cancelled() and (error := self.task.exception()) is not None:
            log.debug("lease renewer ended with %r", error)


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class RedisLease:
    def __init__(
        self,
        client: Client,
        guard: Guard,
        *,
        ttl: float = 5.0,
        timeout: float = 1.0,
        check_interval: float = 0.25,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.client = client
        self.guard = guard  # with Redis down the breaker opens: lease calls then fail at once, not after a timeout
        self.ttl = ttl
        self.timeout = timeout
        self.check_interval = check_interval
        self.clock = clock
        self.token = secrets.token_hex(8)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._held: dict[str, _Renewal] = {}  # key -> the renewer of the lease we hold on it
        self._waiting: dict[str, asyncio.Event] = {}
        self._listener: asyncio.Task[None] | None = None

    async def acquire(self, key: str) -> bool:
        """Take the lease; False when another process holds it. A Redis failure counts as taken (fetch anyway)."""

        async def take() -> bool:
            return bool(await self.client.set(layout.lease_key(key), self.token, nx=True, px=int(self.ttl * 1000)))

        taken = await self.guard.call("lease", take, self.timeout, None)
        if taken is None:
            return True
        if not taken:
            return False
        previous = self._held.pop(key, None)
        if previous is not None:  # never two renewers for one key
            await previous.end()
        stop = asyncio.Event()
        self._held[key] = _Renewal(stop, asyncio.create_task(self._keep_renewed(key, stop), name=f"lease-renew:{key}"))
        return True

    async def _keep_renewed(self, key: str, stop: asyncio.Event) -> None:
        """Renew every third of the lease's life until ``stop`` is set (or the task is cancelled)."""
        while not stop.is_set():
            try:
                async with asyncio.timeout(self.ttl / 3):
                    await stop.wait()
                return
            except TimeoutError:
                if _being_cancelled():
                    raise asyncio.CancelledError from None
            await self._renew_once(key)

    async def _renew_once(self, key: str) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self._renew(keys=[layout.lease_key(key)], args=[self.token, int(self.ttl * 1000)])
        except _ERRORS as error:
            if _being_cancelled():  # the error came with our cancellation: end, do not renew again
                raise asyncio.CancelledError from error
            log.debug("lease on %s not renewed (%s): it may expire", key, error)

    async def release(self, key: str) -> None:
        renewal = self._held.pop(key, None)
        if renewal is None:
            return
        await renewal.end()
        try:
            async with asyncio.timeout(self.timeout):
                await self._release(keys=[layout.lease_key(key)], args=[self.token])
                await publish(self.client, CHANNEL, key.encode())
        except _ERRORS as error:
            log.debug("lease on %s not released (%s): it expires by itself", key, error)

    async def wait(self, key: str, timeout: float) -> None:
        """Until the holder is done, its lease expires, or ``timeout``; woken by pub/sub, checked periodically."""
        self._ensure_listener()
        event = self._waiting.setdefault(key, asyncio.Event())
        deadline = self.clock.monotonic() + timeout
        try:
            while (left := deadline - self.clock.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, self.check_interval)):
                        await event.wait()
                    return
                if not await self._exists(key):
                    return
        finally:
            if self._waiting.get(key) is event:
                del self._waiting[key]

    async def _exists(self, key: str) -> bool:
        async def exists() -> bool:
            return bool(await self.client.exists(layout.lease_key(key)))

        return await self.guard.call("lease", exists, self.timeout, False)

    def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        """Wake local waiters when any process announces a key done; on a lost link, waiters fall back to checks."""
        subscriber = Subscriber(self.client, CHANNEL)
        try:
            await subscriber.subscribe(2.0)
            while True:
                data = await subscriber.next_message(1.0)
                if data is not None and (event := self._waiting.get(data.decode())) is not None:
                    event.set()
        except asyncio.CancelledError:
            raise
        except _ERRORS as error:
            log.debug("lease notifications lost (%s): waiters poll the lease", error)
        finally:
            with contextlib.suppress(*_ERRORS):
                await subscriber.close()

    @property
    def renewers(self) -> int:
        """Renewer tasks alive (one per lease held)."""
        return sum(not renewal.task.done() for renewal in self._held.values())

    async def close(self) -> None:
        held, self._held = list(self._held.values()), {}
        for renewal in held:
            await renewal.end()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
