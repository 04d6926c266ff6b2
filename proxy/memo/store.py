"""The optional Redis store behind async ``proxy.memo.cached`` functions: shares results across processes.

Values are pickled behind a version byte and written with ``SET name value PX ttl_ms`` (no expiry when the
function has no ttl). The store never raises to the caller: any failure (connection refused, timeout, a value
that does not unpickle, a client bound to another event loop) counts as a miss or a skipped write, and is
logged at WARNING once per outage (again only after a success). Only processes that trust each other may
share the Redis: ``pickle.loads`` runs whatever the stored bytes say.
"""

from __future__ import annotations

import logging
import math
import pickle
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from proxy.memo.keys import MISSING

__all__ = ["FORMAT_VERSION", "MISSING", "RedisStore"]

log = logging.getLogger("proxy.memo")

FORMAT_VERSION: Final = 1
"""First byte of every stored value; a value with another first byte is a miss."""

URL_CLIENT_TIMEOUT: Final = 1.0
"""Connect and read timeout, in seconds, of clients made from a URL: a dead store must not stall callers."""


class RedisStore:
    """Get and set pickled values in Redis, degrading every failure to a miss.

    Built from a ``redis.asyncio.Redis`` (owned by the caller) or a URL (the client is created on first use,
    in the event loop that uses it, and closed by ``aclose``).
    """

    def __init__(self, store: aioredis.Redis | str) -> None:
        self._url = store if isinstance(store, str) else None
        self._client = None if isinstance(store, str) else store
        self._failing = False

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                str(self._url),
                socket_timeout=URL_CLIENT_TIMEOUT,
                socket_connect_timeout=URL_CLIENT_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
        return self._client

    async def get(self, name: str) -> tuple[Any, float | None]:
        """The value under ``name`` (or MISSING) and its remaining time-to-live in seconds (None: none)."""
        try:
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.get(name)
                pipe.pttl(name)
                raw, pttl = await pipe.execute()
        except Exception as exc:  # the store never fails a call; see the module docstring
            self._failed("get", name, exc)
            return MISSING, None
        self._succeeded()
        if raw is None:
            return MISSING, None
        try:
            value = decode(raw)
        except Exception as exc:
            log.warning("memo store: unreadable value under %s, recomputing: %r", name, exc)
            return MISSING, None
        return value, (pttl / 1000 if pttl > 0 else None)

    async def set(self, name: str, value: Any, ttl: float | None) -> None:
        """Store ``value`` under ``name`` for ``ttl`` seconds (rounded up to whole milliseconds)."""
        try:
            payload = encode(value)
        except Exception as exc:
            log.warning("memo store: cannot pickle the value for %s, kept locally only: %r", name, exc)
            return
        px = None if ttl is None else max(1, math.ceil(ttl * 1000))
        try:
            await self._redis().set(name, payload, px=px)
        except Exception as exc:
            self._failed("set", name, exc)
            return
        self._succeeded()

    async def delete(self, name: str) -> bool:
        try:
            removed = await self._redis().delete(name)
        except Exception as exc:
            self._failed("delete", name, exc)
            return False
        self._succeeded()
        return bool(removed)

    async def aclose(self) -> None:
        """Close the client if this store made it from a URL."""
        if self._url is not None and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _failed(self, op: str, name: str, exc: Exception) -> None:
        if self._failing:
            log.debug("memo store %s %s failed again: %r", op, name, exc)
            return
        self._failing = True
        log.warning("memo store unavailable (%s %s: %r); computing locally until it recovers", op, name, exc)

    def _succeeded(self) -> None:
        if self._failing:
            self._failing = False
            log.info("memo store recovered")


def encode(value: Any) -> bytes:
    return bytes((FORMAT_VERSION,)) + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def decode(raw: bytes) -> Any:
    if not raw or raw[0] != FORMAT_VERSION:
        raise ValueError(f"stored value has format version {raw[:1]!r}, expected {FORMAT_VERSION}")
    return pickle.loads(raw[1:])
