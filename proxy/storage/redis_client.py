"""The Redis client of every Redis-backed part (store, lease, pub/sub): one server or a cluster, made one way.

It sits below ``redis``, ``lease`` and ``redis_pubsub``, so they import it and not one another.

How the client survives a Redis restart (issue 14 §3), with redis-py's own mechanisms: a pooled connection to the
dead server fails its next command ("Connection closed by server"), so every command is retried once, at once, on a
new connection (``Retry`` on ``ConnectionError`` only: a timed-out command is never sent twice); a connection idle
for longer than ``HEALTH_CHECK_INTERVAL`` is checked with a PING before it is used; TCP keepalive finds peers that
vanished without closing. The pool itself is trimmed by the store's background task (``trim_idle``) and emptied of
idle connections before the breaker's probe (``drop_idle``); those two reach into redis-py's pool, which has no public
call for either (tests/storage/test_recovery.py holds them to the installed version).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator, MutableSequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from proxy.errors import ConfigError

Client = Redis | RedisCluster

HEALTH_CHECK_INTERVAL = 5.0  # seconds idle after which a pooled connection is PINGed before use
RETRIES = 1  # one more try on a new connection: enough for a connection to a restarted server
_KEEPALIVE = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}  # a silent peer is found in about 25 s


def connect(url: str, *, connect_timeout: float = 0.25, socket_timeout: float = 1.0) -> Client:
    """A client for ``redis://``, ``rediss://`` (TLS), or ``redis+cluster://h:p[,h:p...]`` (also ``rediss+cluster``).

    The asyncio timeouts of each call are the real bounds; ``socket_timeout`` is only a backstop. A connection error
    is retried once without delay, so a stale pooled connection costs a reconnect, not a failure; with Redis down
    both tries fail fast (refused) and the failure reaches the guard within the call's timeout.
    """
    parts = urlsplit(url)
    common: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "socket_keepalive": True,
        "socket_keepalive_options": keepalive_options(),
    }
    if parts.scheme in ("redis", "rediss", "unix"):
        return Redis.from_url(url, retry=_retry(), **common)
    if parts.scheme not in ("redis+cluster", "rediss+cluster"):
        raise ConfigError(f"unsupported store URL scheme {parts.scheme!r} in {url!r}")
    nodes = [_cluster_node(item, url) for item in parts.netloc.rpartition("@")[2].split(",") if item]
    if not nodes:
        raise ConfigError(f"no host:port in {url!r}")
    return RedisCluster(
        startup_nodes=nodes,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl=parts.scheme == "rediss+cluster",
        **common,
    )


def _retry() -> Retry:
    """Retry once, after at most 10 ms, on a connection error only (never on a timeout: the command may have run)."""
    return Retry(ExponentialBackoff(cap=0.01, base=0.002), RETRIES, supported_errors=(RedisConnectionError,))


def unretried_pool(client: Redis) -> ConnectionPool:
    """A pool of its own for one subscription, like ``client``'s but never retrying: a lost subscription must
    raise, so its owner learns messages may have been missed (redis-py would reconnect and resubscribe silently)."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
    return ConnectionPool(connection_class=pool.connection_class, **kwargs)


def keepalive_options() -> dict[int, int]:
    """TCP keepalive timings where the platform has them (Linux), else the system's."""
    return {getattr(socket, name): value for name, value in _KEEPALIVE.items() if hasattr(socket, name)}


def _cluster_node(item: str, url: str) -> ClusterNode:
    host, _, port = item.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"expected host:port, got {item!r} in {url!r}")
    return ClusterNode(host.strip("[]"), int(port))


@dataclass(frozen=True, slots=True)
class PoolCounts:
    """Pooled connections: idle ones (kept for the next command) and those in use now."""

    idle: int
    in_use: int


def pool_counts(client: Client) -> PoolCounts:
    """How many connections the client holds, over every node of a cluster."""
    idle = in_use = 0
    for free, every in _pools(client):
        idle += len(free)
        in_use += every - len(free)
    return PoolCounts(idle, in_use)


async def drop_idle(client: Client) -> int:
    """Remove every idle connection from the pool and close it (new ones are made on demand); how many went.

    Before the breaker's probe after an outage: each was opened before the outage, or failed during it. They leave
    the pool before they are closed, so no other task (a lease, a subscription) can take one being closed.
    """
    return await trim_idle(client, idle_for=float("-inf"), keep=0)


async def trim_idle(client: Client, idle_for: float, keep: int) -> int:
    """Remove from the pool, and close, the connections idle for more than ``idle_for`` seconds, keeping the ``keep``
    most recently used on each pool; how many went. So the pool shrinks back after a burst.

    When a connection was last used is read from its health-check deadline (redis-py moves ``next_health_check``
    to ``HEALTH_CHECK_INTERVAL`` after every reply); a connection that never answered counts as idle forever. The
    removal itself has no ``await``, so no command can take a connection while it is being removed.
    """
    now = asyncio.get_running_loop().time()
    removed: list[AbstractConnection] = []
    for pool in _trimmable(client):
        if len(pool.free) <= keep:
            continue
        by_use = sorted(pool.free, key=_last_used, reverse=True)
        old = [conn for conn in by_use[keep:] if now - _last_used(conn) > idle_for]
        pool.remove(old)
        removed += old
    await asyncio.gather(*(conn.disconnect() for conn in removed), return_exceptions=True)
    return len(removed)


def _last_used(conn: AbstractConnection) -> float:
    deadline: float = conn.next_health_check
    return deadline - conn.health_check_interval if deadline > 0 else float("-inf")


def _trimmable(client: Client) -> Iterator[_Pool]:
    """Each pool whose idle connections may be removed: the client's one pool, or each cluster node's."""
    if isinstance(client, RedisCluster):
        for node in client.get_nodes():
            yield _Pool(node._free, node._connections)
    else:
        yield _Pool(client.connection_pool._available_connections, None)


@dataclass(frozen=True, slots=True)
class _Pool:
    """A pool's idle connections (a list, or a cluster node's deque) and, on a cluster node, its list of all."""

    free: MutableSequence[Any]  # of connections (redis-py types the two pools differently)
    every: list[Any] | None

    def remove(self, gone: list[AbstractConnection]) -> None:
        for conn in gone:  # connections compare by identity
            self.free.remove(conn)
            if self.every is not None:
                self.every.remove(conn)


def _pools(client: Client) -> Iterator[tuple[list[AbstractConnection], int]]:
    """Each pool's idle connections and how many connections it has in all."""
    if isinstance(client, RedisCluster):
        for node in client.get_nodes():
            yield list(node._free), len(node._connections)
    else:
        pool = client.connection_pool
        free = list(pool._available_connections)
        yield free, len(free) + len(pool._in_use_connections)
