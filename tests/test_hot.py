"""The hit path at the edge (``proxy.hot``): it answers from the parsed head, and its memos are bounded and never keep
an entry the store has dropped (issue 9 §3, house rule 11).
"""

from __future__ import annotations

from typing import Any

import pytest

from proxy.app import ProxyApp
from proxy.clock import FakeClock
from proxy.config import Settings
from proxy.hot import PREPARED_BYTES, PREPARED_LIMIT, Hit, HotPath
from proxy.messages import Entry, Headers, RequestHead, ResponseHead
from proxy.storage.eviction import DEFAULT_POLICY, POLICIES

KiB = 1024


def build(budget: int, eviction: str = DEFAULT_POLICY) -> tuple[HotPath, Any, FakeClock]:
    clock = FakeClock()
    settings = Settings(upstream="http://127.0.0.1:9", memory_budget=budget, eviction=eviction)
    app = ProxyApp(settings, clock=clock)
    return app.endpoint.hot, app.runtime.stores["memory"], clock


def request(path: str, *fields: tuple[str, str]) -> RequestHead:
    return RequestHead("GET", "http", "shop.example", path, headers=Headers([("Host", "shop.example"), *fields]))


async def stored(hot: HotPath, store: Any, clock: FakeClock, path: str, size: int) -> str:
    found = hot._route_and_key(request(path))
    assert found is not None
    key = found[1]
    head = ResponseHead(200, Headers([("Cache-Control", "max-age=60")]))
    now = clock.now()
    await store.put(key, Entry(key, f"http://shop.example{path}", head, b"x" * size, now, now, 60.0), 600.0)
    return key


async def serve(hot: HotPath, path: str, *fields: tuple[str, str]) -> tuple[object, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    return await hot.serve(request(path, *fields), send), sent


async def test_hit_answered_from_the_parsed_head() -> None:
    hot, store, clock = build(1024 * KiB)
    await stored(hot, store, clock, "/a", 10)
    result, sent = await serve(hot, "/a")
    assert isinstance(result, Hit)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    blocked, nothing = await serve(hot, "/a", ("Cache-Control", "no-cache"))
    assert blocked is None and nothing == []
    ranged, nothing = await serve(hot, "/a", ("Range", "bytes=0-1"))  # a 206 is the general path's (issue 15)
    assert ranged is None and nothing == []


async def test_issue9_3_prepared_hit_dropped_when_the_store_evicts_the_entry() -> None:
    hot, store, clock = build(100 * KiB, eviction="lru")  # the policy that names /first as the victim here
    key = await stored(hot, store, clock, "/first", 60 * KiB)
    await serve(hot, "/first")
    assert key in hot._prepared
    await stored(hot, store, clock, "/second", 60 * KiB)  # over the budget: /first is evicted
    assert await store.get(key) == []
    assert key not in hot._prepared
    assert hot._prepared_bytes == 0


@pytest.mark.parametrize("eviction", sorted(POLICIES))
async def test_issue9_3_prepared_hits_only_for_entries_the_store_holds_under_every_policy(eviction: str) -> None:
    hot, store, clock = build(100 * KiB, eviction=eviction)
    for i in range(40):
        await stored(hot, store, clock, f"/p/{i}", 20 * KiB)
        await serve(hot, f"/p/{i}")
        await serve(hot, f"/p/{i % 3}")  # a few keys hit again and again: the policies disagree on the victims
    assert hot._prepared
    for key in hot._prepared:
        assert await store.get(key) != [], key
    assert hot._prepared_bytes == sum(len(p.entry.body) for p in hot._prepared.values())


async def test_issue9_3_prepared_hit_dropped_when_purged() -> None:
    hot, store, clock = build(1024 * KiB)
    key = await stored(hot, store, clock, "/purged", 10)
    await serve(hot, "/purged")
    await store.delete(key)
    assert key not in hot._prepared


async def test_house_rule_11_prepared_memo_bounded_in_entries_and_bytes() -> None:
    hot, store, clock = build(512 * 1024 * KiB)
    for i in range(PREPARED_LIMIT + 10):
        await stored(hot, store, clock, f"/n/{i}", 1)
        await serve(hot, f"/n/{i}")
    assert len(hot._prepared) <= PREPARED_LIMIT
    for i in range(PREPARED_BYTES // (512 * KiB) + 4):
        await stored(hot, store, clock, f"/big/{i}", 512 * KiB)
        await serve(hot, f"/big/{i}")
    assert hot._prepared_bytes <= PREPARED_BYTES
    assert hot._prepared_bytes == sum(len(p.entry.body) for p in hot._prepared.values())
