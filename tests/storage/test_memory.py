"""The memory store's own rules, beyond the contract: byte budget under every policy, LRU order, variant cap, index
hygiene, eviction counts per queue."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest

from proxy.clock import FakeClock
from proxy.messages import Entry
from proxy.storage.eviction import POLICIES
from proxy.storage.memory import MemoryStorage, url_path
from proxy.storage.ordered import Item

MakeEntry = Callable[..., Entry]


def keyed(make_entry: MakeEntry, name: str, **kwargs: object) -> Entry:
    return make_entry(name, f"http://origin.test/{name}", **kwargs)


async def present(store: MemoryStorage, *keys: str) -> set[str]:
    return {key for key in keys if await store.get(key)}


async def test_lru_evicts_least_recently_used_and_get_refreshes(make_entry: MakeEntry) -> None:
    a, b, c, d = (keyed(make_entry, name) for name in "abcd")
    store = MemoryStorage(a.size * 3, clock=FakeClock(), eviction="lru")
    for entry in (a, b, c):
        await store.put(entry.key, entry, 60)
    await store.get("a")
    await store.put("d", d, 60)
    assert await present(store, "a", "b", "c", "d") == {"a", "c", "d"}


async def test_lru_budget_counts_bytes_so_a_big_entry_evicts_several(make_entry: MakeEntry) -> None:
    smalls = [keyed(make_entry, f"s{i}") for i in range(4)]
    overhead = smalls[0].size - len(smalls[0].body)
    big = keyed(make_entry, "sB", body=b"x" * (2 * smalls[0].size - overhead))
    assert big.size == 2 * smalls[0].size
    store = MemoryStorage(4 * smalls[0].size, clock=FakeClock(), eviction="lru")
    for entry in smalls:
        await store.put(entry.key, entry, 60)
    await store.put("sB", big, 60)
    assert await present(store, "s0", "s1", "s2", "s3", "sB") == {"s2", "s3", "sB"}
    stats = await store.stats()
    assert (stats.entries, stats.bytes, stats.evictions) == (3, 4 * smalls[0].size, 2)


@pytest.mark.parametrize("eviction", POLICIES)
async def test_budget_holds_after_many_puts(make_entry: MakeEntry, eviction: str) -> None:
    rng = random.Random(9111)
    budget = 64 * 1024
    store = MemoryStorage(budget, clock=FakeClock(), max_variants=3, eviction=eviction)
    for i in range(600):
        key = f"k{rng.randrange(80)}"
        entry = make_entry(
            key,
            f"http://origin.test/{key}",
            body=b"b" * rng.randrange(0, 8000),
            vary=(("accept", str(rng.randrange(5))),),
            tags=(f"t{i % 7}",),
        )
        await store.put(key, entry, 60)
        stats = await store.stats()
        assert stats.bytes <= budget
    live = [entry for n in range(80) for entry in await store.get(f"k{n}")]
    stats = await store.stats()
    assert stats.bytes == sum(entry.size for entry in live)
    assert stats.entries == len(live)
    assert stats.evictions > 0


async def test_eviction_counter_counts_only_lru_evictions(make_entry: MakeEntry) -> None:
    clock = FakeClock()
    entries = [keyed(make_entry, f"e{i}") for i in range(5)]
    store = MemoryStorage(entries[0].size * 2, clock=clock)
    await store.put("e0", entries[0], 60)
    await store.put("e1", entries[1], 60)
    await store.put("e2", entries[2], 60)  # evicts e0
    assert (await store.stats()).evictions == 1
    await store.delete("e1")
    await store.put("e3", entries[3], 5)
    clock.advance(10)
    assert await store.get("e3") == []  # expired, dropped on get
    assert (await store.stats()).evictions == 1


@pytest.mark.parametrize("eviction", POLICIES)
async def test_expired_victim_is_not_counted_as_an_eviction(make_entry: MakeEntry, eviction: str) -> None:
    clock = FakeClock()
    a, b, c = (keyed(make_entry, name) for name in "abc")
    store = MemoryStorage(a.size * 2, clock=clock, eviction=eviction)
    await store.put("a", a, 5)
    await store.put("b", b, 60)
    clock.advance(10)
    await store.put("c", c, 60)
    stats = await store.stats()
    assert (stats.entries, stats.evictions) == (2, 0)
    assert await present(store, "a", "b", "c") == {"b", "c"}


async def test_entry_larger_than_budget_is_not_stored(make_entry: MakeEntry) -> None:
    small = keyed(make_entry, "small")
    store = MemoryStorage(small.size * 3, clock=FakeClock())
    await store.put("small", small, 60)
    huge = keyed(make_entry, "huge", body=b"h" * (small.size * 3))
    await store.put("huge", huge, 60)
    assert await store.get("huge") == []
    assert await store.get("small") == [small]
    stats = await store.stats()
    assert (stats.entries, stats.bytes, stats.evictions) == (1, small.size, 0)


async def test_unstorable_put_still_drops_the_variant_it_supersedes(make_entry: MakeEntry) -> None:
    old = make_entry(body=b"old")
    store = MemoryStorage(old.size * 3, clock=FakeClock())
    await store.put("key-1", old, 60)
    await store.put("key-1", make_entry(body=b"n" * (old.size * 3)), 60)
    assert await store.get("key-1") == []
    assert (await store.stats()).bytes == 0


async def test_non_positive_ttl_is_not_stored(make_entry: MakeEntry) -> None:
    store = MemoryStorage(clock=FakeClock())
    await store.put("key-1", make_entry(), 0)
    assert await store.get("key-1") == []


async def test_entry_lives_until_exactly_its_ttl(make_entry: MakeEntry) -> None:
    clock = FakeClock()
    store = MemoryStorage(clock=clock)
    entry = make_entry()
    await store.put("key-1", entry, 30)
    clock.advance(29.999)
    assert await store.get("key-1") == [entry]
    clock.advance(0.001)
    assert await store.get("key-1") == []
    assert (await store.stats()).entries == 0


async def test_rfc9111_4_1_max_variants_drops_the_oldest_variant(make_entry: MakeEntry) -> None:
    store = MemoryStorage(clock=FakeClock(), max_variants=2)
    v1, v2, v3 = (make_entry(vary=(("accept", f"v{i}"),)) for i in (1, 2, 3))
    for entry in (v1, v2, v3):
        await store.put("key-1", entry, 60)
    assert sorted(e.variant for e in await store.get("key-1")) == [v2.variant, v3.variant]
    stats = await store.stats()
    assert (stats.entries, stats.bytes, stats.evictions) == (2, v2.size + v3.size, 0)


async def test_get_refreshes_every_variant_of_the_key(make_entry: MakeEntry) -> None:
    va = make_entry(vary=(("accept", "a"),))
    vb = make_entry(vary=(("accept", "b"),))
    other = keyed(make_entry, "other")
    newcomer = keyed(make_entry, "fresh")
    store = MemoryStorage(va.size + vb.size + other.size, clock=FakeClock(), eviction="lru")
    await store.put("key-1", va, 60)
    await store.put("key-1", vb, 60)
    await store.put("other", other, 60)
    await store.get("key-1")
    await store.put("fresh", newcomer, 60)
    assert await present(store, "key-1", "other", "fresh") == {"key-1", "fresh"}
    assert len(await store.get("key-1")) == 2


async def test_tag_index_is_cleaned_on_eviction(make_entry: MakeEntry) -> None:
    a = keyed(make_entry, "a", tags=("t",))
    b = keyed(make_entry, "b", tags=("t",))
    c = keyed(make_entry, "c")
    store = MemoryStorage(a.size * 2, clock=FakeClock())
    for entry in (a, b, c):
        await store.put(entry.key, entry, 60)
    assert await store.delete_tag("t") == 1
    assert await present(store, "a", "b", "c") == {"c"}
    assert (await store.stats()).entries == 1


async def test_tag_index_is_cleaned_on_replace(make_entry: MakeEntry) -> None:
    store = MemoryStorage(clock=FakeClock())
    await store.put("key-1", make_entry(tags=("t",)), 60)
    untagged = make_entry(body=b"new")
    await store.put("key-1", untagged, 60)
    assert await store.delete_tag("t") == 0
    assert await store.get("key-1") == [untagged]


async def test_deletes_count_only_live_entries(make_entry: MakeEntry) -> None:
    clock = FakeClock()
    store = MemoryStorage(clock=clock)
    await store.put("key-1", make_entry(vary=(("accept", "a"),), tags=("t",)), 5)
    await store.put("key-1", make_entry(vary=(("accept", "b"),), tags=("t",)), 60)
    clock.advance(10)
    assert await store.delete_tag("t") == 1
    assert (await store.stats()).entries == 0


async def test_close_empties_the_store(make_entry: MakeEntry) -> None:
    store = MemoryStorage(clock=FakeClock())
    await store.put("key-1", make_entry(tags=("t",)), 60)
    await store.close()
    stats = await store.stats()
    assert (stats.entries, stats.bytes) == (0, 0)
    assert await store.delete_tag("t") == 0


async def test_path_index_holds_exactly_the_stored_entries(make_entry: MakeEntry) -> None:
    """House rule 11: the ordered paths never outlive an entry: evicted, expired, replaced, capped, deleted, purged."""
    clock = FakeClock()
    store = MemoryStorage(keyed(make_entry, "0").size * 20, clock=clock, max_variants=2)

    def indexed() -> set[tuple[str, str]]:
        return {(key, variant) for _, key, variant in store._paths.starting_at(("",))}

    for i in range(60):  # past the budget: evictions
        await store.put(f"k{i}", make_entry(f"k{i}", f"http://o.test/p/{i}", tags=("t",)), 5 if i % 2 else 60)
    assert indexed() == set(store._slots) and len(store._slots) == 20
    clock.advance(10)
    for i in range(40, 60):  # expired entries are dropped when met
        await store.get(f"k{i}")
    await store.put("k50", make_entry("k50", "http://o.test/moved/50"), 60)  # replaced under another path
    for accept in "abc":  # the variant cap drops the oldest
        await store.put("v", make_entry("v", f"http://o.test/v/{accept}", vary=(("accept", accept),)), 60)
    assert indexed() == set(store._slots)
    live = {key for key, _ in store._slots if key != "v" and store._slots[(key, "")].path.startswith("/p/")}
    assert 0 < len(live) < 20
    assert await store.delete_prefix("/p/") == len(live)
    assert await store.delete_prefix("/moved/") == 1
    assert await store.delete("v") == 2
    assert indexed() == set(store._slots) == set()


async def test_purge_by_prefix_visits_only_what_it_removes(make_entry: MakeEntry) -> None:
    store = MemoryStorage(clock=FakeClock())
    for i in range(5000):
        await store.put(f"k{i}", make_entry(f"k{i}", f"http://o.test/{'hot' if i % 500 == 0 else 'cold'}/{i}"), 60)
    visited = 0
    walk = store._paths.starting_at

    def counting(first: tuple[str, ...]) -> Iterator[Item]:
        nonlocal visited
        for item in walk(first):
            visited += 1
            yield item

    store._paths.starting_at = counting  # type: ignore[method-assign]
    assert await store.delete_prefix("/hot/") == 10
    assert visited <= 11  # the ten matches, and the first path past them if there is one
    assert (await store.stats()).entries == 4990


@pytest.mark.parametrize(
    ("url", "path"),
    [
        pytest.param("http://h.test/a/b?x=1", "/a/b?x=1", id="path-and-query"),
        pytest.param("https://h.test:8443/a", "/a", id="port-is-part-of-the-authority"),
        pytest.param("http://h.test", "", id="no-path"),
        pytest.param("http://h.test/a%2Fb?", "/a%2Fb", id="percent-encoding-kept-empty-query-dropped"),
    ],
)
def test_purge_prefix_compares_the_part_after_scheme_and_host(url: str, path: str) -> None:
    assert url_path(url) == path


@pytest.mark.parametrize(
    ("budget", "max_variants"),
    [pytest.param(-1, 16, id="negative-budget"), pytest.param(1024, 0, id="no-variants")],
)
def test_constructor_rejects_impossible_limits(budget: int, max_variants: int) -> None:
    with pytest.raises(ValueError, match="must"):
        MemoryStorage(budget, max_variants=max_variants)


async def test_s3fifo_store_counts_evictions_per_queue_and_ghost_hits(make_entry: MakeEntry) -> None:
    """SOSP 2023 S3-FIFO through the store: a one-hit entry leaves from small; asked again, it comes back to main."""
    entries = [keyed(make_entry, f"e{i:02d}") for i in range(12)]
    store = MemoryStorage(entries[0].size * 10, clock=FakeClock(), eviction="s3fifo")
    for entry in entries[:11]:
        await store.put(entry.key, entry, 60)
    stats = store.eviction_stats()
    assert (stats.policy, stats.evictions, stats.ghost_hits) == ("s3fifo", {"small": 1, "main": 0}, 0)
    assert await store.get("e00") == []
    await store.put("e00", entries[0], 60)  # remembered by the ghost queue: straight to main
    stats = store.eviction_stats()
    assert (stats.evictions["small"], stats.ghost_hits) == (2, 1)
    assert (await store.stats()).evictions == 2


async def test_expired_victims_are_not_counted_per_queue_either(make_entry: MakeEntry) -> None:
    clock = FakeClock()
    a, b, c = (keyed(make_entry, name) for name in "abc")
    store = MemoryStorage(a.size * 2, clock=clock, eviction="s3fifo")
    await store.put("a", a, 5)
    await store.put("b", b, 60)
    clock.advance(10)
    await store.put("c", c, 60)
    assert store.eviction_stats().evictions == {"small": 0, "main": 0}


def test_unknown_eviction_policy_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ValueError, match=r"did you mean s3fifo\?"):
        MemoryStorage(1024, eviction="s3-fifo")
