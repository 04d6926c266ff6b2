"""Redis pub/sub for the two-tier store's invalidation messages, on one server or a cluster.

On a cluster this uses sharded pub/sub (Redis 7: ``SPUBLISH``/``SSUBSCRIBE``): the channel lives in one slot, so a
message travels to the shard that owns it instead of being broadcast over the whole cluster bus, and redis-py's
``ClusterPubSub`` follows the channel when its slot moves. On one server it is plain ``PUBLISH``/``SUBSCRIBE``.
A ``Subscriber`` raises on a lost connection (on one server it has a pool of its own that never retries, where
the store's client retries once; a cluster's node connections never retry), so its owner learns that messages may
have been missed; redis-py would otherwise reconnect and resubscribe silently.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from proxy.storage.redis_client import Client, unretried_pool


async def publish(client: Client, channel: str, message: bytes) -> None:
    if isinstance(client, RedisCluster):
        await client.spublish(channel, message)
    else:
        await client.publish(channel, message)


class Subscriber:
    """One subscription to ``channel``; ``subscribe`` waits for the server's confirmation."""

    def __init__(self, client: Client, channel: str) -> None:
        self._sharded = isinstance(client, RedisCluster)
        self._channel = channel
        self._pool = None if isinstance(client, RedisCluster) else unretried_pool(client)
        self._pubsub: Any = client.pubsub() if self._pool is None else Redis(connection_pool=self._pool).pubsub()

    async def subscribe(self, timeout: float) -> None:
        """Subscribe and wait until the server confirms (``TimeoutError`` after ``timeout`` seconds)."""
        async with asyncio.timeout(timeout):
            if self._sharded:
                await self._pubsub.ssubscribe(self._channel)
            else:
                await self._pubsub.subscribe(self._channel)
            while True:
                message = await self._read(0.05)
                if message is not None and message["type"] in ("subscribe", "ssubscribe"):
                    return

    async def next_message(self, timeout: float) -> bytes | None:
        """The next message's data, or ``None`` when none came within ``timeout``; raises when the link is lost."""
        message = await self._read(timeout)
        if message is None or message["type"] not in ("message", "smessage"):
            return None
        data: bytes = message["data"]
        return data

    async def close(self) -> None:
        try:
            await self._pubsub.aclose()
        finally:
            if self._pool is not None:
                await self._pool.aclose()

    async def _read(self, timeout: float) -> dict[str, Any] | None:
        if self._sharded:
            found: dict[str, Any] | None = await self._pubsub.get_sharded_message(timeout=timeout)
        else:
            found = await self._pubsub.get_message(timeout=timeout)
        if found is None and self._sharded and not self._pubsub.node_pubsub_mapping:
            # The shard subscription is gone (its slot moved, its node failed): the caller resubscribes.
            raise ConnectionError(f"sharded subscription to {self._channel!r} lost")
        return found
