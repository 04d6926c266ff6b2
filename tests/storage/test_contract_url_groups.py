"""The ``Storage`` contract for URL groups (RFC 9111 §4.4, purge by URL): deleting a URL key removes the entries of
every key of that URL, also those whose key includes request headers or cookies (``key + GROUP_SEP + suffix``).
Runs once per backend of ``conftest.BACKENDS`` (memory, Redis, Redis Cluster, two-tier)."""

from __future__ import annotations

from collections.abc import Callable

from proxy.messages import Entry
from proxy.storage.base import GROUP_SEP, Storage, url_key_of

MakeEntry = Callable[..., Entry]
URL_KEY = "c:0123456789abcdef0123456789abcdef"
OTHER_URL_KEY = "c:fedcba9876543210fedcba9876543210"


def shaped(suffix: str, base: str = URL_KEY) -> str:
    return base + GROUP_SEP + suffix


def test_contract_url_key_of_a_suffixed_key() -> None:
    assert url_key_of(shaped("aa")) == URL_KEY
    assert url_key_of(URL_KEY) is None


async def test_contract_rfc9111_4_4_delete_url_key_reaches_every_key_shape(
    store: Storage, make_entry: MakeEntry
) -> None:
    await store.put(URL_KEY, make_entry(URL_KEY), 60)
    for suffix in ("de", "en"):
        for value in ("gzip", None):
            entry = make_entry(shaped(suffix), vary=(("accept-encoding", value),))
            await store.put(shaped(suffix), entry, 60)
    other = make_entry(shaped("de", OTHER_URL_KEY), "http://origin.test/b")
    await store.put(shaped("de", OTHER_URL_KEY), other, 60)
    assert await store.delete(URL_KEY) == 5
    assert await store.get(URL_KEY) == []
    assert await store.get(shaped("de")) == []
    assert await store.get(shaped("en")) == []
    assert await store.get(shaped("de", OTHER_URL_KEY)) == [other]
    assert await store.delete(URL_KEY) == 0


async def test_contract_delete_url_key_with_only_suffixed_keys(store: Storage, make_entry: MakeEntry) -> None:
    await store.put(shaped("a"), make_entry(shaped("a")), 60)
    await store.put(shaped("b"), make_entry(shaped("b")), 60)
    assert await store.delete(URL_KEY) == 2
    assert await store.get(shaped("a")) == await store.get(shaped("b")) == []


async def test_contract_delete_suffixed_key_removes_only_that_shape(store: Storage, make_entry: MakeEntry) -> None:
    kept = make_entry(shaped("b"))
    await store.put(shaped("a"), make_entry(shaped("a")), 60)
    await store.put(shaped("b"), kept, 60)
    assert await store.delete(shaped("a")) == 1
    assert await store.get(shaped("b")) == [kept]
    assert await store.delete(URL_KEY) == 1


async def test_contract_group_forgets_keys_once_emptied(store: Storage, make_entry: MakeEntry) -> None:
    await store.put(shaped("a"), make_entry(shaped("a")), 60)
    assert await store.delete(shaped("a")) == 1
    fresh = make_entry(shaped("a"), body=b"again")
    await store.put(shaped("a"), fresh, 60)
    assert await store.get(shaped("a")) == [fresh]
    assert await store.delete(URL_KEY) == 1


async def test_memory_group_index_bounded_by_what_is_stored(make_entry: MakeEntry) -> None:
    """House rule 11: the URL-group index never outlives the entries (filled past the budget, then evicted)."""
    from proxy.storage.memory import MemoryStorage

    store = MemoryStorage(budget=make_entry(shaped("0")).size * 3)
    for i in range(50):
        await store.put(shaped(str(i)), make_entry(shaped(str(i))), 60)
    live = {key for key, _ in store._slots}
    assert len(live) == 3
    assert store._groups == {URL_KEY: live}
    assert await store.delete(URL_KEY) == 3
    assert store._groups == {}
