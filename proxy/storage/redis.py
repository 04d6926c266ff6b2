"""The Redis store (one server or a Redis Cluster): entries shared by every worker and every host.

The layout and the scripts are in ``redis_layout``. A lookup is one ``HGETALL``; a store is one script that writes
the entry and its purge indexes (on a cluster, where the indexes live in other slots: the ``INDEX`` scripts first,
then the entry's), plus, for a key with a header or cookie suffix, one pipeline for its URL group's set.

Faults never fail a request: every call runs under ``breaker.Guard`` with a short timeout (``read_timeout`` for
lookups, ``write_timeout`` for stores); a failure or a timeout is counted and logged once per interval, and a lookup
becomes a miss, a store is skipped. The purges (``delete``, ``delete_tag``, ``delete_prefix``) are the exception:
they raise ``StorageError`` when they fail, so the admin endpoint can say the purge did not happen instead of
reporting 0 entries removed; once the store is started such a failure is also queued and applied when Redis is back
(``InvalidationQueued``; ``redis_recovery``, whose ``Keeper`` also owns the breaker's probe and trims idle pooled
connections). ``delete_prefix`` and ``delete_tag`` read their candidates from the purge indexes (``ZRANGEBYLEX`` over
the path shards, ``ZSCAN`` of the tag's index), so they cost what they remove, never a walk of the keyspace; both give
up with ``StorageError`` after ``purge_budget`` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.errors import InvalidationQueued, StorageError
from proxy.messages import Entry
from proxy.storage import redis_layout as layout
from proxy.storage.base import PutResult, StoreStats, url_key_of
from proxy.storage.breaker import CircuitBreaker, Guard
from proxy.storage.codec import decode_entry, encode_entry
from proxy.storage.redis_client import Client, connect, pool_counts
from proxy.storage.redis_recovery import REPLAYING, Keeper, Pending, Upkeep
from proxy.storage.urls import url_path

if TYPE_CHECKING:
    from proxy.storage.lease import RedisLease

__all__ = ["Client", "RedisStorage", "connect"]  # Client and connect live in redis_client; kept importable here
EXACT_STATS_LIMIT = 10_000  # above this many keys, ``stats().entries`` counts keys, not variants
BYTES_SAMPLE = 1_000  # entry hashes measured to estimate ``stats().bytes`` above ``EXACT_STATS_LIMIT`` keys
_CHUNK = 500  # scripts per pipeline during a purge (one server)
_PARALLEL = 32  # scripts in flight at once during a purge on a cluster (its pipelines refuse EVALSHA)
_PAGE = 1000  # index members read per shard and round trip during a purge


class RedisStorage:
    """Entries in Redis or a Redis Cluster; see the module docstring for the fault model."""

    def __init__(
        self,
        client: Client,
        *,
        clock: Clock = SYSTEM_CLOCK,
        read_timeout: float = 0.05,
        write_timeout: float = 0.25,
        keep: float = 0.0,
        max_variants: int = 16,
        purge_budget: float = 5.0,
        breaker: CircuitBreaker | None = None,
        upkeep: Upkeep | None = None,
    ) -> None:
        if max_variants < 1:
            raise ValueError(f"max_variants must be at least 1, got {max_variants}")
        self.client = client
        self._cluster = isinstance(client, RedisCluster)
        self.name = "redis-cluster" if self._cluster else "redis"
        self.guard = Guard(self.name, clock, breaker)
        self._clock = clock
        self._read_timeout = read_timeout
        self.write_timeout = write_timeout
        self._keep = keep
        self._max_variants = max_variants
        self._purge_budget = purge_budget
        self._put = client.register_script(layout.PUT)
        self._delete = client.register_script(layout.DELETE)
        self._delete_tag = client.register_script(layout.DELETE_TAG)
        self._delete_prefix = client.register_script(layout.DELETE_PREFIX)
        self._index = client.register_script(layout.INDEX)
        self._lease: RedisLease | None = None
        upkeep = upkeep or Upkeep()
        self.pending = Pending(upkeep.pending_cap, upkeep.max_attempts)
        self.keeper = Keeper(client, self.guard, self.pending, ping=self._ping, replay=self._replay, upkeep=upkeep)
        self._keeping: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStorage:
        write_timeout = kwargs.get("write_timeout", 0.25)
        return cls(connect(url, connect_timeout=write_timeout), **kwargs)

    @property
    def degraded(self) -> bool:
        """True while the breaker is not closed: readyz reports the store as degraded."""
        return self.guard.degraded

    @property
    def errors(self) -> int:
        return self.guard.errors

    def error_counts(self) -> dict[str, int]:
        return self.guard.error_counts()

    def deferred_counts(self) -> dict[str, int]:
        """Invalidations queued while Redis was unreachable, replayed, collapsed or dropped (``redis_recovery``)."""
        return dict(self.pending.counts)

    def connection_counts(self) -> dict[str, int]:
        """Pooled connections, ``idle`` and ``in_use`` (every node's, on a cluster)."""
        counts = pool_counts(self.client)
        return {"idle": counts.idle, "in_use": counts.in_use}

    async def start(self) -> None:
        """Learn the cluster's topology now (a failure only degrades; the client retries on first use), and start
        the keeper (``redis_recovery``): it owns the breaker's probe from now on."""
        if isinstance(self.client, RedisCluster):
            cluster = self.client
            await self.guard.call("start", cluster.initialize, self.write_timeout * 8, None)
        if self._keeping is None:
            self._keeping = asyncio.create_task(self.keeper.run(), name=f"cacheproxy-{self.name}-keeper")

    async def get(self, key: str) -> list[Entry]:
        return [entry for entry, _ in await self.get_timed(key)]

    async def get_timed(self, key: str) -> list[tuple[Entry, float]]:
        """Every live variant with its expiry time (``Clock.now`` seconds), oldest write first; ``[]`` on failure."""
        fields: dict[bytes, bytes] | None = await self.guard.call(
            "get", lambda: self._hgetall(layout.entry_key(key)), self._read_timeout, None
        )
        if not fields:
            return []
        now_ms = self._now_ms()
        found: list[tuple[int, Entry, float]] = []
        for name, value in fields.items():
            if not name.startswith(b"v:"):
                continue
            meta = fields.get(b"m:" + name[2:], b"").split(b" ")
            if len(meta) != 2 or not meta[0].isdigit() or not meta[1].isdigit() or int(meta[0]) <= now_ms:
                continue
            entry = decode_entry(value)  # an unknown version or a corrupt value is a miss
            if entry is not None:
                found.append((int(meta[1]), entry, int(meta[0]) / 1000))
        found.sort(key=lambda item: item[0])
        return [(entry, expires) for _, entry, expires in found]

    async def put(self, key: str, entry: Entry, ttl: float) -> None:
        """Store one variant for ``ttl`` + ``keep`` seconds (RFC 9111 §4.1: same variant replaces); best-effort."""
        await self.store(key, entry, ttl)

    async def store(self, key: str, entry: Entry, ttl: float, *, since: float | None = None) -> PutResult:
        """``put``, saying whether Redis took the entry: not when it failed, timed out or the breaker is open
        (``UNAVAILABLE``), nor when the key was invalidated at or after ``since`` (``INVALIDATED``, decided in the
        put script against the hash's ``~i``; see ``redis_layout``)."""
        args = self.put_arguments(key, entry, ttl, since=since)
        seconds = int(ttl + self._keep) + 2
        tags = entry.tags
        written = await self.guard.attempt("put", lambda: self._write(key, args, tags, seconds), self.write_timeout)
        if written is None:
            return PutResult.UNAVAILABLE
        return PutResult.INVALIDATED if written[0] < 0 else PutResult.STORED

    def put_arguments(self, key: str, entry: Entry, ttl: float, *, since: float | None = None) -> list[Any]:
        """The put script's ARGV for ``store`` (its KEYS: ``layout.put_keys``), also for loading many entries at
        once in one pipeline (``load_tests/purge_scale.py``)."""
        now_ms = self._now_ms()
        return [
            now_ms,
            layout.variant_id(entry.variant),
            encode_entry(entry),
            now_ms + int((ttl + self._keep) * 1000) if ttl > 0 else now_ms,
            layout.text(url_path(entry.url)),
            layout.text(layout.TAG_SEP.join(entry.tags)),
            self._max_variants,
            "" if since is None else int(since * 1000),
            layout.text(key),
        ]

    async def delete(self, key: str) -> int:
        """Remove every variant of ``key`` (and of its group, for a URL key); ``StorageError`` when Redis fails."""
        if url_key_of(key) is not None:
            return await self._purge(
                "delete", lambda: self._run(self._delete, layout.entry_key(key)), self.write_timeout, key
            )
        return await self._purge("delete", lambda: self._delete_group(key), self.write_timeout, key)

    async def delete_tag(self, tag: str) -> int:
        """Remove every entry carrying ``tag``, found through the tag's index; raises ``StorageError`` on failure."""
        return await self._purge("delete_tag", lambda: self._purge_tag(tag), self._purge_budget, tag)

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every entry whose URL path+query starts with ``prefix``, found through the path index;
        ``StorageError`` on failure."""
        return await self._purge("delete_prefix", lambda: self._purge_prefix(prefix), self._purge_budget, prefix)

    async def stats(self) -> StoreStats:
        """Variants and the bytes of our entries (exact up to ``EXACT_STATS_LIMIT`` keys, then estimated from a
        sample); Redis' ``used_memory`` for the whole server is ``server_memory``."""
        result = await self.guard.call("stats", self._stats, self._purge_budget, None)
        return result or StoreStats(0, 0, None, 0)

    async def ping(self) -> bool:
        """False while Redis is unreachable or the breaker is open (a ping is also the half-open probe)."""
        return bool(await self.guard.call("ping", self._ping, self.write_timeout, False))

    def lease(self) -> RedisLease:
        """The cross-process single-flight lease on this store's Redis (one per store, closed with it)."""
        if self._lease is None:
            from proxy.storage.lease import RedisLease

            # Its own breaker: a burst of lookup timeouts under load must not switch cross-process coalescing off
            # (one lease call per fetching worker and key is cheap), while a Redis that is down still trips it.
            self._lease = RedisLease(self.client, Guard(f"{self.name}-lease", self._clock), clock=self._clock)
        return self._lease

    async def close(self) -> None:
        """Stop the keeper (cancelled, and awaited until it has ended), then the lease and the client."""
        if self._keeping is not None:
            keeping, self._keeping = self._keeping, None
            keeping.cancel()
            await asyncio.wait([keeping])  # our own cancellation still reaches us; the keeper's is not re-raised
        if self._lease is not None:
            await self._lease.close()
        await self.client.aclose()

    def _now_ms(self) -> int:
        return int(self._clock.now() * 1000)

    async def _hgetall(self, name: str) -> dict[bytes, bytes]:
        # The client is made without decode_responses, so names and values are bytes.
        return cast(dict[bytes, bytes], await self.client.hgetall(name))

    async def _ping(self) -> bool:
        """PING; on a cluster every primary (a prefix purge walks them all, so readiness must see each one)."""
        if isinstance(self.client, RedisCluster):
            cluster = self.client
            # One command per node, every answer collected (redis-py's multi-node command leaves failed tasks behind).
            answers = await asyncio.gather(
                *(cluster.ping(target_nodes=node) for node in cluster.get_primaries()), return_exceptions=True
            )
            for answer in answers:
                if isinstance(answer, BaseException):
                    raise answer
            return all(answers)
        return bool(await self.client.ping())

    async def _write(self, key: str, args: list[Any], tags: tuple[str, ...], seconds: int) -> int:
        """The put script's answer (variants kept, or -1: refused as invalidated) once the group set is written."""
        group = url_key_of(key)
        since = args[7]
        if group is not None and since != "":
            # The URL key's ``~i`` lives in another slot: read it first, and the script refuses on it too (a
            # narrow window remains between this read and the script; the URL key's own puts have none).
            mark = await self.client.hget(layout.entry_key(group), layout.INVALIDATED_FIELD)
            if mark is not None and int(since) <= int(mark):
                return -1
        keys = layout.put_keys(key, tags)
        if self._cluster:
            await self._write_indexes(keys[1:], args)  # before the entry: an entry is never live unindexed
            keys = keys[:1]
        writes: list[Awaitable[Any]] = [self._put(keys=keys, args=args)]
        if group is not None:
            pipe = self.client.pipeline(transaction=False)
            name = layout.group_key(group)
            pipe.sadd(name, key)
            pipe.expire(name, seconds, nx=True)
            pipe.expire(name, seconds, gt=True)
            writes.append(pipe.execute())
        results = await asyncio.gather(*writes)
        return int(results[0])

    async def _write_indexes(self, indexes: list[str], args: list[Any]) -> None:
        """On a cluster: the ``INDEX`` script on the path shard and on each tag index (``PUT``'s own keys and ARGV)."""
        now_ms, expires, path, key = args[0], args[3], args[4], args[8]
        calls = [self._index(keys=indexes[:2], args=[now_ms, layout.path_member(path, key), expires])]
        calls += [self._index(keys=[name], args=[now_ms, key, expires]) for name in indexes[2:]]
        await asyncio.gather(*calls)

    async def _delete_group(self, key: str) -> int:
        """The URL key itself and every key its group set lists (RFC 9111 §4.4 reaches every key shape)."""
        name = layout.group_key(key)
        members = cast(set[bytes], await self.client.smembers(name))
        keys: list[str | bytes] = [layout.entry_key(key), *(layout.entry_key_bytes(member) for member in members)]
        removed = await self._run_each(self._delete, keys)
        if members:
            await self.client.srem(name, *members)
        return removed

    async def _run(self, script: Any, name: str | bytes, *extra: Any) -> int:
        return int(await script(keys=[name], args=[self._now_ms(), *extra]))

    async def _run_each(self, script: Any, names: Iterable[str | bytes], *extra: Any) -> int:
        """``script`` on every key of ``names``, ``_CHUNK`` to a pipeline on one server, ``_PARALLEL`` at a time on
        a cluster; the sum of the answers."""
        pending = list(names)
        removed = 0
        if self._cluster:
            for i in range(0, len(pending), _PARALLEL):
                chunk = pending[i : i + _PARALLEL]
                removed += sum(await asyncio.gather(*(self._run(script, name, *extra) for name in chunk)))
            return removed
        for i in range(0, len(pending), _CHUNK):
            removed += await self._run_chunk(script, pending[i : i + _CHUNK], [self._now_ms(), *extra])
        return removed

    async def _run_chunk(self, script: Any, names: list[str | bytes], args: list[Any]) -> int:
        """One pipeline of ``EVALSHA``; the scripts the server did not know yet (``NOSCRIPT``: restarted, flushed)
        run again once it has loaded them, the others are not repeated."""
        replies: dict[int, Any] = {}
        todo = list(range(len(names)))
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for at in todo:
                pipe.evalsha(script.sha, 1, names[at], *args)
            for at, reply in zip(todo, await pipe.execute(raise_on_error=False), strict=True):
                replies[at] = reply
            todo = [at for at in todo if isinstance(replies[at], NoScriptError)]
            if not todo or attempt:
                break
            await self.client.script_load(script.script)
        for reply in replies.values():
            if isinstance(reply, Exception):
                raise reply
        return sum(int(reply) for reply in replies.values())

    async def _purge(self, op: str, make: Callable[[], Awaitable[int]], timeout: float, argument: str) -> int:
        """Run one purge; on failure raise, and (started, not itself a replay) queue it for when Redis is back."""
        replaying = REPLAYING.get()
        outcome = await self.guard.attempt(op, make, timeout, probing=replaying)
        if outcome is not None:
            return outcome[0]
        state = "unavailable (circuit open)" if self.guard.degraded else "failed or timed out"
        if self._keeping is None or replaying:
            raise StorageError(f"{self.name}: {op} {state}; nothing or only part was removed")
        self.pending.add(op, argument)
        raise InvalidationQueued(f"{self.name}: {op} {state}; queued, applied when the store is back")

    async def _replay(self, op: str, argument: str) -> int:
        """One queued invalidation, again (called from the keeper's task, so ``_purge`` does not queue it)."""
        purges = {"delete": self.delete, "delete_tag": self.delete_tag, "delete_prefix": self.delete_prefix}
        return await purges[op](argument)

    async def _purge_tag(self, tag: str) -> int:
        """The script on every key the tag's index lists (``ZSCAN``: pages, and safe while writers add members),
        skipping members long expired; the script removes only live variants that still carry the tag."""
        wanted = layout.text(tag)
        floor = self._now_ms() - layout.INDEX_GRACE_MS
        removed = 0
        batch: list[bytes] = []
        async for member, expires in self.client.zscan_iter(layout.tag_index(tag), count=_PAGE):
            if expires > floor:
                batch.append(member)
            if len(batch) >= _PAGE:
                removed += await self._run_each(self._delete_tag, map(layout.entry_key_bytes, batch), wanted)
                batch = []
        return removed + await self._run_each(self._delete_tag, map(layout.entry_key_bytes, batch), wanted)

    async def _purge_prefix(self, prefix: str) -> int:
        """The script on every key the path index lists under ``prefix``: one ``ZRANGEBYLEX`` page per shard and
        round trip (one pipeline), until every shard's range is read. The script removes only live variants whose
        own path starts with the prefix, so a stale member counts nothing."""
        wanted = layout.text(prefix)
        low, high = layout.prefix_range(prefix)
        starts = dict.fromkeys(range(layout.INDEX_SHARDS), low)
        removed = 0
        while starts:
            pipe = self.client.pipeline(transaction=False)
            for shard, start in starts.items():
                pipe.zrangebylex(layout.path_index(shard), start, high, start=0, num=_PAGE)
            pages: list[list[bytes]] = await pipe.execute()
            keys = dict.fromkeys(layout.member_key(member) for page in pages for member in page)
            removed += await self._run_each(self._delete_prefix, map(layout.entry_key_bytes, keys), wanted)
            starts = {shard: b"(" + page[-1] for shard, page in zip(starts, pages, strict=True) if len(page) == _PAGE}
        return removed

    async def _stats(self) -> StoreStats:
        keys = _total(await self.client.dbsize())
        memory = await self.client.info("memory")
        counters = await self.client.info("stats")
        entries, own_bytes = await self._count_entries(keys)
        used = _field_sum(memory, "used_memory")
        return StoreStats(entries, own_bytes, None, _field_sum(counters, "evicted_keys"), server_memory=used)

    async def _count_entries(self, keys: int) -> tuple[int, int]:
        """Variants and the bytes of our entry hashes (``MEMORY USAGE … SAMPLES 0``), sampled on a big keyspace.

        Up to ``EXACT_STATS_LIMIT`` keys every entry hash is measured; beyond, the first ``BYTES_SAMPLE`` hashes a
        SCAN returns are, their mean is multiplied by the key count, and the entry count is the key count. Tag sets
        and lease keys are not entries and are left out; Redis' own figure for the whole server is reported apart.
        """
        exact = keys <= EXACT_STATS_LIMIT
        names: list[bytes] = []
        async for name in self.client.scan_iter(match=layout.SCAN_PATTERN, count=1000, _type="hash"):
            names.append(name)
            if not exact and len(names) >= BYTES_SAMPLE:
                break
        if not names:
            return (0 if exact else keys), 0
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hget(name, "~c")
            pipe.memory_usage(name, samples=0)
        replies: list[Any] = await pipe.execute()
        variants = sum(int(count or 0) for count in replies[0::2])
        # A hash without ``~c`` holds no entry, only an invalidation mark (``~i``): not our entries' bytes.
        measured = sum(int(size or 0) for count, size in zip(replies[0::2], replies[1::2], strict=True) if count)
        if exact:
            return variants, measured
        return keys, measured * keys // len(names)


def _total(value: Any) -> int:
    """A count that a cluster client may answer per node."""
    if isinstance(value, dict):
        return sum(int(v) for v in value.values())
    return int(value)


def _field_sum(info: Any, field: str) -> int:
    """``INFO`` field from one server, or summed over the nodes of a cluster (answered per node)."""
    if isinstance(info, dict) and field in info:
        return int(info[field])
    if isinstance(info, dict):
        return sum(_field_sum(node, field) for node in info.values() if isinstance(node, dict))
    return 0
