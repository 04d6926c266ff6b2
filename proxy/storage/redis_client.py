"""The Redis client of every Redis-backed part (store, lease, pub/sub): one server or a cluster, made one way.

It sits below ``redis``, ``lease`` and ``redis_pubsub``, so they import it and not one another.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from proxy.errors import ConfigError

Client = Redis | RedisCluster


def connect(url: str, *, connect_timeout: float = 0.25, socket_timeout: float = 1.0) -> Client:
    """A client for ``redis://``, ``rediss://`` (TLS), or ``redis+cluster://h:p[,h:p...]`` (also ``rediss+cluster``).

    Connection-level retries are off: a failure must reach the guard at once, not after backoffs. The asyncio
    timeouts of each call are the real bounds; ``socket_timeout`` is only a backstop.
    """
    parts = urlsplit(url)
    common: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout}
    if parts.scheme in ("redis", "rediss", "unix"):
        return Redis.from_url(url, retry=Retry(NoBackoff(), 0), **common)
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


def _cluster_node(item: str, url: str) -> ClusterNode:
    host, _, port = item.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"expected host:port, got {item!r} in {url!r}")
    return ClusterNode(host.strip("[]"), int(port))
