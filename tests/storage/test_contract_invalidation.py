"""The ``ConfirmingPut`` contract for invalidations (RFC 9111 §4.4, issue 14 §1): a store refuses an entry from a
fetch that began before the key was last invalidated (deleted, or cleared by a prefix or tag purge), so a response
fetched before a write cannot be stored after it, whichever process or host fetched it. Runs once per backend of
``conftest.BACKENDS`` (memory, Redis, Redis Cluster, two-tier).

The stores compare ``since`` with their own clock's time of the invalidation; these tests put with a ``since`` long
before any clock a backend uses (``BEFORE``) or long after it (``AFTER``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from proxy.messages import Entry
from proxy.storage.abilities import ConfirmingPut, abilities_of
from proxy.storage.base import GROUP_SEP, PutResult, Storage

MakeEntry = Callable[..., Entry]
KEY = "c:0123456789abcdef0123456789abcdef"
OTHER = "c:fedcba9876543210fedcba9876543210"
BEFORE = 1.0  # 1970: a fetch that began before every invalidation these tests make
AFTER = 100_000_000_000.0  # year 5138: one that began after them


def confirming(store: Storage) -> ConfirmingPut:
    found = abilities_of(store).confirming
    assert found is not None, f"{store.name} must say whether it took a put"
    return found


async def test_contract_rfc9111_4_4_a_fetch_older_than_a_delete_is_refused(
    store: Storage, make_entry: MakeEntry
) -> None:
    entry = make_entry(KEY)
    assert await confirming(store).store(KEY, entry, 60, since=BEFORE) is PutResult.STORED  # nothing invalidated yet
    await store.delete(KEY)
    assert await confirming(store).store(KEY, entry, 60, since=BEFORE) is PutResult.INVALIDATED
    assert await store.get(KEY) == []
    assert await confirming(store).store(KEY, entry, 60, since=AFTER) is PutResult.STORED  # began after it
    assert await store.get(KEY) == [entry]


async def test_contract_rfc9111_4_4_a_delete_of_a_key_never_stored_still_refuses(
    store: Storage, make_entry: MakeEntry
) -> None:
    await store.delete(KEY)  # the write came while the first fetch of the key was in flight
    assert await confirming(store).store(KEY, make_entry(KEY), 60, since=BEFORE) is PutResult.INVALIDATED
    assert await confirming(store).store(OTHER, make_entry(OTHER), 60, since=BEFORE) is PutResult.STORED


async def test_contract_rfc9111_4_4_a_delete_of_the_url_key_covers_its_group(
    store: Storage, make_entry: MakeEntry
) -> None:
    shaped = KEY + GROUP_SEP + "de"
    await store.put(shaped, make_entry(shaped), 60)
    await store.delete(KEY)
    assert await confirming(store).store(shaped, make_entry(shaped), 60, since=BEFORE) is PutResult.INVALIDATED
    assert await store.get(shaped) == []


@pytest.mark.parametrize("purge", ["prefix", "tag"])
async def test_contract_a_purge_marks_the_keys_it_cleared(store: Storage, make_entry: MakeEntry, purge: str) -> None:
    cleared = make_entry(KEY, "http://origin.test/a/1", tags=("t",))
    kept = make_entry(OTHER, "http://origin.test/b/1", tags=("u",))
    await store.put(KEY, cleared, 60)
    await store.put(OTHER, kept, 60)
    assert await (store.delete_prefix("/a/") if purge == "prefix" else store.delete_tag("t")) == 1
    assert await confirming(store).store(KEY, cleared, 60, since=BEFORE) is PutResult.INVALIDATED
    assert await confirming(store).store(OTHER, kept, 60, since=BEFORE) is PutResult.STORED
    assert await confirming(store).store(KEY, cleared, 60, since=AFTER) is PutResult.STORED


async def test_contract_a_plain_put_is_not_fenced(store: Storage, make_entry: MakeEntry) -> None:
    await store.delete(KEY)
    entry = make_entry(KEY)
    await store.put(KEY, entry, 60)  # no ``since``: a put from outside a fetch (tests, warmers) is taken as ever
    assert await store.get(KEY) == [entry]
