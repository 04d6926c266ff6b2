"""The Redis store beyond the shared contract: its layout, per-variant lifetimes, the codec, purges, Cluster.

Runs against real servers started by ``tests/redis_fixtures.py`` (through ``tests/storage/conftest.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import redis as sync_redis

from proxy.clock import FakeClock, SystemClock
from proxy.errors import ConfigError, StorageError
from proxy.messages import Entry
from proxy.storage import redis as redis_store
from proxy.storage import redis_layout as layout
from proxy.storage.base import PutResult
from proxy.storage.factory import open_store
from proxy.storage.memory import MemoryStorage
from proxy.storage.redis import RedisStorage
from proxy.storage.tiered import TieredStorage
from tests.redis_servers import RedisClusterHandle

pytestmark = pytest.mark.redis
MakeEntry = Callable[..., Entry]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(redis_url: str, clock: FakeClock) -> AsyncIterator[RedisStorage]:
    storage = RedisStorage.from_url(redis_url, clock=clock, read_timeout=2.0, write_timeout=2.0, keep=30.0)
    yield storage
    await storage.close()


@pytest.fixture
def raw(redis_url: str) -> sync_redis.Redis:
    return sync_redis.Redis.from_url(redis_url)


def calls(raw: sync_redis.Redis, command: str) -> int:
    stats = raw.info("commandstats").get(f"cmdstat_{command}")
    return int(stats["calls"]) if stats else 0


async def test_redis_layout_one_hash_per_key_under_its_hash_tag(
    store: RedisStorage, raw: sync_redis.Redis, clock: FakeClock, make_entry: MakeEntry
) -> None:
    await store.put("key-1", make_entry(vary=(("accept", "a"),), tags=("t1",)), 60)
    await store.put("key-1", make_entry("key-1", "http://origin.test/b", vary=(("accept", "b"),)), 60)
    shard = layout.path_shard("key-1")
    paths, by_expiry = f"cp:paths:{{{shard}}}".encode(), f"cp:paths:{{{shard}}}:exp".encode()
    assert sorted(raw.scan_iter(match="cp:*")) == [paths, by_expiry, b"cp:tagged:{t1}", b"cp:{key-1}"]
    assert raw.hget("cp:{key-1}", "~c") == b"2"
    expires = int(clock.now() * 1000) + (60 + 30) * 1000
    assert raw.zrange(paths, 0, -1, withscores=True) == [(b"/a\0key-1", 0.0), (b"/b\0key-1", 0.0)]
    assert raw.zrange(by_expiry, 0, -1, withscores=True) == [(b"/a\0key-1", expires), (b"/b\0key-1", expires)]
    assert raw.zrange("cp:tagged:{t1}", 0, -1, withscores=True) == [(b"key-1", expires)]
    for name in (paths, by_expiry, b"cp:tagged:{t1}"):  # an index outlives its last member by the grace only
        assert 60 + 30 <= raw.pttl(name) / 1000 <= 60 + 30 + layout.INDEX_GRACE_MS / 1000


async def test_redis_put_on_one_server_is_one_script_with_its_indexes(
    store: RedisStorage, raw: sync_redis.Redis, make_entry: MakeEntry
) -> None:
    raw.config_resetstat()
    await store.put("key-1", make_entry(tags=("t1", "t2")), 60)
    assert calls(raw, "evalsha") == 1  # the entry, its path shard and both tag indexes, atomically
    assert calls(raw, "zadd") == 2 + 2


async def test_redis_get_is_one_round_trip(store: RedisStorage, raw: sync_redis.Redis, make_entry: MakeEntry) -> None:
    for value in ("a", "b", "c"):
        await store.put("key-1", make_entry(vary=(("accept", value),)), 60)
    raw.config_resetstat()
    assert len(await store.get("key-1")) == 3
    commands = {name for name in raw.info("commandstats") if not name.startswith(("cmdstat_config", "cmdstat_info"))}
    assert commands == {"cmdstat_hgetall"}
    assert calls(raw, "hgetall") == 1


async def test_redis_key_ttl_is_the_longest_variant_plus_keep(
    store: RedisStorage, raw: sync_redis.Redis, make_entry: MakeEntry
) -> None:
    await store.put("key-1", make_entry(vary=(("accept", "a"),)), 10)
    await store.put("key-1", make_entry(vary=(("accept", "b"),)), 100)
    assert 100 + 30 <= raw.pttl("cp:{key-1}") / 1000 <= 100 + 30 + 1


async def test_redis_rfc9111_4_1_each_variant_expires_on_its_own(
    store: RedisStorage, clock: FakeClock, make_entry: MakeEntry
) -> None:
    short = make_entry(vary=(("accept", "a"),))
    long = make_entry(vary=(("accept", "b"),))
    await store.put("key-1", short, 10)
    await store.put("key-1", long, 100)
    clock.advance(10 + 30 + 1)  # past the short one's ttl + keep
    assert await store.get("key-1") == [long]
    await store.put("key-1", make_entry(vary=(("accept", "c"),)), 100)  # the write drops the expired field
    assert await store.delete("key-1") == 2


async def test_redis_at_most_max_variants_per_key_oldest_write_goes(redis_url: str, make_entry: MakeEntry) -> None:
    store = RedisStorage.from_url(redis_url, read_timeout=2.0, write_timeout=2.0, max_variants=4)
    try:
        entries = [make_entry(vary=(("accept", str(i)),)) for i in range(6)]
        for entry in entries:
            await store.put("key-1", entry, 60)
        assert await store.get("key-1") == entries[2:]
    finally:
        await store.close()


async def test_redis_codec_corrupt_value_is_a_miss(
    store: RedisStorage, raw: sync_redis.Redis, make_entry: MakeEntry
) -> None:
    good = make_entry(vary=(("accept", "a"),))
    await store.put("key-1", good, 60)
    await store.put("key-1", make_entry(vary=(("accept", "b"),)), 60)
    field = f"v:{layout.variant_id(make_entry(vary=(('accept', 'b'),)).variant)}"
    raw.hset("cp:{key-1}", field, b"\x01\xc1garbage")
    assert await store.get("key-1") == [good]


async def test_redis_codec_unknown_version_is_a_miss(
    store: RedisStorage, raw: sync_redis.Redis, make_entry: MakeEntry
) -> None:
    entry = make_entry()
    await store.put("key-1", entry, 60)
    field = f"v:{layout.variant_id(entry.variant)}"
    value = raw.hget("cp:{key-1}", field)
    assert value is not None
    raw.hset("cp:{key-1}", field, b"\x63" + value[1:])
    assert await store.get("key-1") == []
    assert store.errors == 0  # a bad value is a miss, not a store failure


async def test_redis_delete_tag_leaves_only_the_marks_and_the_index(
    store: RedisStorage, raw: sync_redis.Redis, make_entry: MakeEntry
) -> None:
    await store.put("key-1", make_entry(tags=("t",)), 60)
    await store.put("key-2", make_entry("key-2", tags=("t",)), 60)
    assert await store.delete_tag("t") == 2
    # The index keeps its members until they expire (removing them could race a put of the same key); they count 0.
    assert raw.zcard("cp:tagged:{t}") == 2
    assert await store.delete_tag("t") == 0
    # The entry hashes keep only when they were invalidated (``~i``, RFC 9111 §4.4), for a bounded time.
    for name in ("cp:{key-1}", "cp:{key-2}"):
        assert set(raw.hkeys(name)) <= {b"~i", b"~n"} and b"~i" in raw.hkeys(name)
        assert 0 < raw.pttl(name) <= layout.INVALIDATION_KEEP_MS + 1000


async def test_redis_delete_tag_skips_a_variant_that_lost_the_tag(store: RedisStorage, make_entry: MakeEntry) -> None:
    await store.put("key-1", make_entry(tags=("t",)), 60)
    retagged = make_entry(tags=("other",))
    await store.put("key-1", retagged, 60)  # same variant, no longer tagged "t"
    assert await store.delete_tag("t") == 0
    assert await store.get("key-1") == [retagged]


async def test_redis_purges_read_the_indexes_page_by_page_never_the_keyspace(
    store: RedisStorage, raw: sync_redis.Redis, make_entry: MakeEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store, "_PAGE", 7)  # many pages per shard
    for i in range(400):
        path = "/a/" if i % 2 else "/b/"
        await store.put(f"key-{i}", make_entry(f"key-{i}", f"http://o.test{path}{i}", tags=(path,)), 60)
    raw.config_resetstat()
    assert await store.delete_prefix("/a/") == 200
    assert await store.delete_tag("/b/") == 200
    assert calls(raw, "keys") == calls(raw, "scan") == 0
    assert calls(raw, "zrangebylex") > 200 / 7
    assert calls(raw, "zscan") > 1
    evalsha = raw.info("commandstats")["cmdstat_evalsha"]  # less the NOSCRIPT answers of a script's first use
    assert evalsha["calls"] - evalsha["failed_calls"] == 400  # one script per entry removed, none for the others
    entries = [name for name in raw.scan_iter(match="cp:{*", count=1000) if raw.hexists(name, "~c")]
    assert entries == []  # the hashes hold only their invalidation mark (``~i``)


async def test_redis_purge_reloads_scripts_the_server_forgot(
    store: RedisStorage, raw: sync_redis.Redis, make_entry: MakeEntry
) -> None:
    for i in range(3):
        await store.put(f"key-{i}", make_entry(f"key-{i}", f"http://o.test/a/{i}", tags=("t",)), 60)
    assert await store.delete_prefix("/a/1") == 1  # the script is known to the server now
    raw.script_flush()  # as after a restart: every EVALSHA of the next pipeline answers NOSCRIPT
    assert await store.delete_prefix("/a/") == 2
    raw.script_flush()
    assert await store.delete_tag("t") == 0  # the purged entries are not counted again


async def test_redis_indexes_forget_members_once_their_entries_expire(
    store: RedisStorage, raw: sync_redis.Redis, clock: FakeClock, make_entry: MakeEntry
) -> None:
    """House rule 11: an index member lives as long as the entry it was written for (expired, deleted, purged or
    replaced alike), plus the grace; later writes trim it, and nothing else is needed."""
    for i in range(300):
        await store.put(f"old-{i}", make_entry(f"old-{i}", f"http://o.test/old/{i}", tags=("old", "both")), 10)
    for i in range(0, 300, 3):
        await store.delete(f"old-{i}")
    assert await store.delete_prefix("/old/1") == 111 - 36  # /old/1, /old/1x, /old/1xx, less the deleted
    assert index_sizes(raw) == (300, 300, 300)  # purged or deleted, still listed: they count nothing
    # A tag nobody writes again goes with its index key, which Redis expires after its last member and the grace.
    assert raw.pttl(layout.tag_index("old")) <= (10 + 30) * 1000 + layout.INDEX_GRACE_MS
    clock.advance(10 + 30 + layout.INDEX_GRACE_MS / 1000 + 1)  # past every old entry's ttl + keep, and the grace
    for i in range(100):  # each write trims up to INDEX_TRIM members of its path shard and tag indexes
        await store.put(f"new-{i}", make_entry(f"new-{i}", f"http://o.test/new/{i}", tags=("new", "both")), 10)
    assert index_sizes(raw) == (100, 100, 100)
    assert await store.delete_prefix("/") == 100


def index_sizes(raw: sync_redis.Redis) -> tuple[int, int, int]:
    """Members of the path index, of its expiry twin, and of the index of the tag ``both``."""
    paths = sum(raw.zcard(layout.path_index(shard)) for shard in range(layout.INDEX_SHARDS))
    by_expiry = sum(raw.zcard(layout.path_expiry(shard)) for shard in range(layout.INDEX_SHARDS))
    return paths, by_expiry, raw.zcard(layout.tag_index("both"))


async def test_redis_delete_prefix_past_its_time_budget_raises(
    redis_url: str, raw: sync_redis.Redis, make_entry: MakeEntry
) -> None:
    store = RedisStorage.from_url(redis_url, read_timeout=2.0, write_timeout=2.0, purge_budget=0.1)
    try:
        await store.put("key-1", make_entry(), 60)
        raw.execute_command("CLIENT PAUSE", 500, "ALL")  # the server answers nobody for half a second
        with pytest.raises(StorageError):
            await store.delete_prefix("/")
        assert store.error_counts()["delete_prefix"] == 1
    finally:
        await store.close()


async def test_redis_cluster_spreads_keys_and_purges_on_every_primary(
    redis_cluster_url: str, redis_cluster: RedisClusterHandle, make_entry: MakeEntry
) -> None:
    store = RedisStorage.from_url(redis_cluster_url, read_timeout=2.0, write_timeout=2.0)
    await store.start()
    try:
        for i in range(60):
            await store.put(f"key-{i}", make_entry(f"key-{i}", f"http://o.test/p/{i}", tags=(f"t{i % 2}",)), 60)
        sizes = [node.client().dbsize() for node in redis_cluster.nodes]
        assert all(size > 0 for size in sizes), sizes
        assert len(await store.get("key-7")) == 1
        assert await store.delete_tag("t0") == 30
        assert await store.delete_prefix("/p/") == 30
        assert (await store.stats()).entries == 0
        holding = [node for node in redis_cluster.nodes if list(node.client().scan_iter(match="cp:paths:*"))]
        assert len(holding) > 1  # the path index shards, and the writes to them, spread over the primaries
    finally:
        await store.close()


async def test_redis_cluster_writes_the_indexes_before_the_entry(
    redis_cluster_url: str, make_entry: MakeEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a cluster the indexes live in other slots than the entry: they are written first, so an index write that
    fails leaves no entry behind that a purge could not find."""
    store = RedisStorage.from_url(redis_cluster_url, read_timeout=2.0, write_timeout=2.0)
    await store.start()
    try:
        assert await store.store("key-1", make_entry(tags=("t",)), 60) is PutResult.STORED
        client = store.client
        assert await client.zrange(layout.tag_index("t"), 0, -1) == [b"key-1"]
        assert await client.zrange(layout.path_index(layout.path_shard("key-1")), 0, -1) == [b"/a\0key-1"]

        async def refused(**_: object) -> None:
            raise ConnectionError("the node holding an index is down")

        monkeypatch.setattr(store, "_index", refused)
        assert await store.store("key-2", make_entry("key-2", tags=("t",)), 60) is PutResult.UNAVAILABLE
        assert await store.get("key-2") == []
    finally:
        await store.close()


async def test_redis_cluster_follows_moved_after_a_slot_migrates(
    redis_cluster_url: str, redis_cluster: RedisClusterHandle, make_entry: MakeEntry
) -> None:
    store = RedisStorage.from_url(redis_cluster_url, read_timeout=2.0, write_timeout=2.0)
    await store.start()
    try:
        entry = make_entry("moving")
        await store.put("moving", entry, 60)
        slot = store.client.keyslot(layout.entry_key("moving"))
        owner = redis_cluster.owner_of(slot)
        redis_cluster.move_slot(slot, next(n for n in redis_cluster.nodes if n is not owner))
        assert await store.get("moving") == [entry]  # MOVED followed by the client, not a miss
        assert store.errors == 0
        assert await store.delete("moving") == 1
    finally:
        await store.close()


def test_factory_memory_store(clock: FakeClock) -> None:
    store = open_store("memory", memory_budget=1024, l1_budget=None, clock=clock)
    assert isinstance(store, MemoryStorage)


async def test_factory_redis_urls_pick_the_backend() -> None:
    clock = SystemClock()
    single = open_store("redis://127.0.0.1:1/0", memory_budget=1, l1_budget=None, clock=clock)
    cluster = open_store("redis+cluster://127.0.0.1:1,127.0.0.1:2", memory_budget=1, l1_budget=None, clock=clock)
    tiered = open_store("rediss://:secret@127.0.0.1:1/2", memory_budget=1, l1_budget=1 << 20, clock=clock)
    try:
        assert (single.name, cluster.name, tiered.name) == ("redis", "redis-cluster", "two-tier")
        assert isinstance(tiered, TieredStorage)
    finally:
        for store in (single, cluster, tiered):
            await store.close()


@pytest.mark.parametrize(
    "url", ["memcached://x:1", "redis+cluster://", "redis+cluster://host-without-port", "file:///tmp/x"]
)
def test_factory_rejects_unknown_or_malformed_urls(url: str, clock: FakeClock) -> None:
    with pytest.raises(ConfigError):
        open_store(url, memory_budget=1, l1_budget=None, clock=clock)
