"""The ``Storage`` contract (proxy/storage/base.py): every backend in ``conftest.BACKENDS`` passes it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.messages import Entry, Headers, ResponseHead
from proxy.storage.base import Storage

if TYPE_CHECKING:
    from .conftest import Backend

MakeEntry = Callable[..., Entry]


def by_variant(entries: list[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: e.variant)


async def test_contract_missing_key_gets_no_candidates(store: Storage) -> None:
    assert await store.get("absent") == []


async def test_contract_put_then_get_returns_equal_entry_every_field(store: Storage) -> None:
    entry = Entry(
        key="k",
        url="http://origin.test/items/7?lang=en",
        head=ResponseHead(
            203,
            Headers(
                [
                    ("X-Zeta", "1"),
                    ("content-type", "application/json"),
                    ("Set-Cookie", "a=1"),
                    ("set-cookie", "b=2"),
                    ("ETag", '"v1"'),
                ]
            ),
        ),
        body=b'{"id": 7}\x00\xff',
        request_time=1_700_000_000.25,
        response_time=1_700_000_001.75,
        freshness=120.5,
        initial_age=3.0,
        stale_while_revalidate=30.0,
        stale_if_error=600.0,
        vary=(("accept-encoding", "gzip"), ("accept-language", None)),
        tags=("items", "item:7"),
        authorized=True,
    )
    await store.put("k", entry, 300)
    [got] = await store.get("k")
    assert got == entry
    assert type(got.body) is bytes
    assert list(got.head.headers) == list(entry.head.headers)  # order and case as stored


async def test_contract_rfc9111_4_1_each_vary_variant_is_a_candidate(store: Storage, make_entry: MakeEntry) -> None:
    gzip = make_entry(vary=(("accept-encoding", "gzip"),), body=b"gz")
    plain = make_entry(vary=(("accept-encoding", None),), body=b"plain")
    await store.put("key-1", gzip, 60)
    await store.put("key-1", plain, 60)
    assert by_variant(await store.get("key-1")) == by_variant([gzip, plain])


async def test_contract_put_of_same_variant_replaces_it(store: Storage, make_entry: MakeEntry) -> None:
    await store.put("key-1", make_entry(body=b"old"), 60)
    new = make_entry(body=b"new")
    await store.put("key-1", new, 60)
    assert await store.get("key-1") == [new]


async def test_contract_replacing_put_sets_a_new_ttl(backend: Backend, make_entry: MakeEntry) -> None:
    store = backend.store
    await store.put("key-1", make_entry(body=b"old"), backend.ttl)
    new = make_entry(body=b"new")
    await store.put("key-1", new, backend.ttl * 100)
    await backend.advance(backend.ttl * 1.5)
    assert await store.get("key-1") == [new]


async def test_contract_delete_removes_every_variant_and_counts(store: Storage, make_entry: MakeEntry) -> None:
    for value in ("gzip", "br", None):
        await store.put("key-1", make_entry(vary=(("accept-encoding", value),)), 60)
    other = make_entry("key-2", "http://origin.test/b")
    await store.put("key-2", other, 60)
    assert await store.delete("key-1") == 3
    assert await store.get("key-1") == []
    assert await store.get("key-2") == [other]
    assert await store.delete("key-1") == 0


async def test_contract_delete_tag_removes_only_tagged_entries_across_keys(
    store: Storage, make_entry: MakeEntry
) -> None:
    a = make_entry("key-a", "http://origin.test/a", tags=("users",))
    b = make_entry("key-b", "http://origin.test/b", tags=("orders", "users"))
    c = make_entry("key-c", "http://origin.test/c", tags=("orders",))
    d = make_entry("key-d", "http://origin.test/d")
    for entry in (a, b, c, d):
        await store.put(entry.key, entry, 60)
    assert await store.delete_tag("users") == 2
    assert await store.get("key-a") == []
    assert await store.get("key-b") == []
    assert await store.get("key-c") == [c]
    assert await store.get("key-d") == [d]
    assert await store.delete_tag("users") == 0
    assert await store.delete_tag("no-such-tag") == 0


async def test_contract_delete_tag_reaches_every_variant_of_a_key(store: Storage, make_entry: MakeEntry) -> None:
    await store.put("key-1", make_entry(vary=(("accept", "a"),), tags=("t",)), 60)
    untagged = make_entry(vary=(("accept", "b"),))
    await store.put("key-1", untagged, 60)
    await store.put("key-1", make_entry(vary=(("accept", "c"),), tags=("t",)), 60)
    assert await store.delete_tag("t") == 2
    assert await store.get("key-1") == [untagged]


async def put_urls(store: Storage, make_entry: MakeEntry, urls: list[str]) -> None:
    for i, url in enumerate(urls):
        await store.put(f"key-{i}", make_entry(f"key-{i}", url), 60)


async def live_urls(store: Storage, count: int) -> set[str]:
    return {entry.url for i in range(count) for entry in await store.get(f"key-{i}")}


async def test_contract_delete_prefix_compares_the_path_of_any_host(store: Storage, make_entry: MakeEntry) -> None:
    urls = [
        "http://a.test/api/users/1",
        "http://a.test/api/users?page=2",
        "https://b.test/api/users/2",
        "http://a.test/apix",
        "http://a.test/static/api/users",
        "http://api.test/other",
    ]
    await put_urls(store, make_entry, urls)
    assert await store.delete_prefix("/api/users") == 3
    assert await live_urls(store, len(urls)) == set(urls[3:])


async def test_contract_delete_prefix_does_not_match_the_host(store: Storage, make_entry: MakeEntry) -> None:
    urls = ["http://api.test/other", "http://origin.test/api"]
    await put_urls(store, make_entry, urls)
    assert await store.delete_prefix("/api") == 1
    assert await live_urls(store, len(urls)) == {"http://api.test/other"}


async def test_contract_delete_prefix_extends_into_the_query(store: Storage, make_entry: MakeEntry) -> None:
    urls = [
        "http://a.test/search?q=abc",
        "http://a.test/search?q=a",
        "http://a.test/search?q=b",
        "http://a.test/search",
    ]
    await put_urls(store, make_entry, urls)
    assert await store.delete_prefix("/search?q=a") == 2
    assert await live_urls(store, len(urls)) == set(urls[2:])
    assert await store.delete_prefix("/nothing-here") == 0


async def test_contract_entry_expires_after_its_ttl(backend: Backend, make_entry: MakeEntry) -> None:
    store = backend.store
    short = make_entry("key-short", "http://origin.test/short")
    long = make_entry("key-long", "http://origin.test/long")
    await store.put("key-short", short, backend.ttl)
    await store.put("key-long", long, backend.ttl * 100)
    await backend.advance(backend.ttl * 0.5)
    assert await store.get("key-short") == [short]
    await backend.advance(backend.ttl)
    assert await store.get("key-short") == []
    assert await store.get("key-long") == [long]


async def test_contract_stats_count_entries(store: Storage, make_entry: MakeEntry) -> None:
    empty = await store.stats()
    assert (empty.entries, empty.evictions) == (0, 0)
    await store.put("key-1", make_entry(vary=(("accept", "a"),)), 60)
    await store.put("key-1", make_entry(vary=(("accept", "b"),)), 60)
    await store.put("key-2", make_entry("key-2"), 60)
    assert (await store.stats()).entries == 3
    await store.delete("key-1")
    assert (await store.stats()).entries == 1


async def test_contract_empty_body_roundtrips(store: Storage, make_entry: MakeEntry) -> None:
    entry = make_entry(status=204, headers=(), body=b"")
    await store.put("key-1", entry, 60)
    assert await store.get("key-1") == [entry]


async def test_contract_one_mebibyte_body_roundtrips(store: Storage, make_entry: MakeEntry) -> None:
    body = bytes(range(256)) * 4096
    entry = make_entry(body=body, headers=(("Content-Length", str(len(body))),))
    await store.put("key-1", entry, 60)
    [got] = await store.get("key-1")
    assert got.body == body
    assert got == entry


async def test_contract_rfc9110_5_5_latin1_header_values_roundtrip(store: Storage, make_entry: MakeEntry) -> None:
    headers = (
        ("X-Caf\xe9", "cr\xe8me br\xfbl\xe9e"),
        ("Content-Disposition", "attachment; filename=\xff\x80\xa0"),
    )
    entry = make_entry(headers=headers, vary=(("x-lang", "fran\xe7ais"),))
    await store.put("key-1", entry, 60)
    [got] = await store.get("key-1")
    assert got.head.headers.items() == headers
    assert got == entry


async def test_contract_ping_is_true_when_reachable(store: Storage) -> None:
    assert await store.ping() is True
