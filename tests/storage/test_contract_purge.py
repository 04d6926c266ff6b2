"""Purge by prefix and by tag remove exactly the live entries they name, and count exactly those (issue 14 §4).

The stores find the candidates through indexes (memory: ordered paths and tag sets; Redis: sorted sets beside the
entries) that may still list entries gone since (replaced, deleted, expired): these tests hold that such leftovers
are never removed or counted, and that an entry stored again after a purge is found by the next one. Runs once per
backend of ``conftest.BACKENDS`` (memory with each eviction policy, Redis, Redis Cluster, two-tier).
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.messages import Entry
from proxy.storage.base import Storage
from tests.storage.conftest import Backend

MakeEntry = Callable[..., Entry]


async def test_contract_purge_after_an_overwrite_follows_the_new_path_and_tags(
    store: Storage, make_entry: MakeEntry
) -> None:
    await store.put("key-1", make_entry("key-1", "http://o.test/old/1", tags=("old",)), 60)
    moved = make_entry("key-1", "http://o.test/new/1", tags=("new",))
    await store.put("key-1", moved, 60)  # the same variant, now under another path and tag
    assert await store.delete_prefix("/old/") == 0
    assert await store.delete_tag("old") == 0
    assert await store.get("key-1") == [moved]
    assert await store.delete_prefix("/new/") == 1
    assert await store.get("key-1") == []


async def test_contract_purge_counts_no_expired_entry(backend: Backend, make_entry: MakeEntry) -> None:
    store = backend.store
    await store.put("short", make_entry("short", "http://o.test/p/short", tags=("t",)), backend.ttl)
    await store.put("long", make_entry("long", "http://o.test/p/long", tags=("t",)), backend.ttl * 100)
    await store.put("tagged", make_entry("tagged", "http://o.test/q/tagged", tags=("t",)), backend.ttl * 100)
    await backend.advance(backend.ttl * 1.5)
    assert await store.delete_prefix("/p/") == 1
    assert await store.delete_tag("t") == 1
    assert [await store.get(key) for key in ("short", "long", "tagged")] == [[], [], []]


async def test_contract_an_entry_stored_again_after_a_purge_is_purged_again(
    store: Storage, make_entry: MakeEntry
) -> None:
    for purge in (lambda: store.delete_prefix("/again/"), lambda: store.delete_tag("again")):
        for _ in range(2):
            await store.put("key-1", make_entry("key-1", "http://o.test/again/1", tags=("again",)), 60)
            assert await purge() == 1
            assert await purge() == 0
    await store.put("key-1", make_entry("key-1", "http://o.test/again/1", tags=("again",)), 60)
    assert await store.delete("key-1") == 1  # deleted by URL: the indexes may still list it, the purges count 0
    assert await store.delete_prefix("/again/") == 0
    assert await store.delete_tag("again") == 0


async def test_contract_prefix_purge_takes_only_the_variants_under_the_prefix(
    store: Storage, make_entry: MakeEntry
) -> None:
    """One key, two variants under different paths (a route whose key ignores part of the query)."""
    kept = make_entry("key-1", "http://o.test/list?page=2", vary=(("accept", "b"),))
    await store.put("key-1", make_entry("key-1", "http://o.test/list?page=1", vary=(("accept", "a"),)), 60)
    await store.put("key-1", kept, 60)
    assert await store.delete_prefix("/list?page=1") == 1
    assert await store.get("key-1") == [kept]


async def test_contract_prefix_and_tag_purges_among_many_entries(store: Storage, make_entry: MakeEntry) -> None:
    """Enough entries that Redis spreads them over every index shard; every 25th is under ``/hot/`` and tagged."""
    for i in range(400):
        hot = i % 25 == 0
        url = f"http://o.test/{'hot' if hot else 'cold'}/{i}"
        await store.put(f"key-{i}", make_entry(f"key-{i}", url, tags=("hot",) if hot else ("cold",)), 60)
    assert await store.delete_tag("hot") == 16
    for i in range(0, 400, 25):
        await store.put(f"key-{i}", make_entry(f"key-{i}", f"http://o.test/hot/{i}"), 60)
    assert await store.delete_prefix("/hot/") == 16
    assert await store.delete_prefix("/hot/") == 0
    assert (await store.stats()).entries == 384
    assert await store.delete_prefix("/") == 384
