"""RFC 9111 §4.4 against fetches in flight (issue 14 §1): a write's invalidation is never lost to a fetch that began
before it. Driven step by step: the scripted origin holds the GET's response until the test releases it.

Each test: a GET is in flight (held at the origin) → an invalidation completes (POST answered, URL, prefix or tag
purge) → a GET sent after it leads a new flight (it does not collapse onto the old one) and gets the new version →
the held GET is released: its own client gets it (it was concurrent with the write), not stored, ``detail=invalidated``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from proxy.cache.answer import Answer
from proxy.cache.invalidations import Covered, Invalidations
from proxy.rfc.decisions import Reason
from tests.cache.test_service import Driver, cache_status, cached
from tests.support.scripted_origin import Reply

URL = "http://example.test/a"
Invalidate = Callable[["Driver"], Awaitable[object]]


@pytest.fixture
async def driver() -> AsyncIterator[Driver]:
    running = Driver()
    yield running
    await running.service.close()
    assert running.origin.all_released()


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def post(driver: Driver) -> object:
    driver.origin.script(Reply(204))
    answer = await driver.get(method="POST")
    assert answer.status == 204
    return answer


async def purge_url(driver: Driver) -> object:
    return await driver.service.invalidate([URL], strict=True)


async def purge_prefix(driver: Driver) -> object:
    return await driver.service.purge("prefix", "/a")


async def purge_tag(driver: Driver) -> object:
    return await driver.service.purge("tag", "t1")


INVALIDATIONS = [
    pytest.param(post, id="rfc9111-4.4-post"),
    pytest.param(purge_url, id="purge-url"),
    pytest.param(purge_prefix, id="purge-prefix"),
    pytest.param(purge_tag, id="purge-tag"),
]


def version(body: bytes, *, gate: asyncio.Event | None = None) -> Reply:
    return Reply(headers=[cached(60), ("Surrogate-Key", "t1")], body=body, gate=gate)


def stored_bodies(driver: Driver, answer: Answer) -> list[bytes]:
    assert answer.key is not None
    return [entry.body for entry in driver.store.get_now(answer.key)]


@pytest.mark.parametrize("invalidate", INVALIDATIONS)
async def test_a_fetch_in_flight_during_an_invalidation_is_not_stored(driver: Driver, invalidate: Invalidate) -> None:
    held = asyncio.Event()
    driver.origin.script(version(b"v1", gate=held))
    old = asyncio.ensure_future(driver.get())
    await until(lambda: len(driver.origin.requests) == 1)
    await invalidate(driver)
    driver.clock.advance(1)  # the store's rule: a fetch must begin after the invalidation, not at its instant
    driver.origin.script(version(b"v2"))
    new = await driver.get()  # sent after the invalidation: leads its own flight, not collapsed onto the held one
    assert (new.body, cache_status(new)) == (b"v2", "cacheproxy; fwd=uri-miss; stored")
    held.set()
    answer = await old
    assert answer.body == b"v1"  # its own client still gets it: it was concurrent with the write
    assert answer.reason is Reason.INVALIDATED
    assert cache_status(answer) == "cacheproxy; fwd=uri-miss; detail=invalidated"
    assert stored_bodies(driver, new) == [b"v2"]
    hit = await driver.get()
    assert (hit.body, cache_status(hit)) == (b"v2", "cacheproxy; hit; ttl=60")
    assert len(driver.service.invalidations) == 0  # no fetch in flight: nothing kept


@pytest.mark.parametrize("invalidate", INVALIDATIONS)
async def test_followers_that_joined_before_the_invalidation_go_upstream_themselves(
    driver: Driver, invalidate: Invalidate
) -> None:
    held = asyncio.Event()
    driver.origin.script(version(b"v1", gate=held))
    leader = asyncio.ensure_future(driver.get())
    await until(lambda: len(driver.origin.requests) == 1)
    follower = asyncio.ensure_future(driver.get())
    for _ in range(5):
        await asyncio.sleep(0)  # the follower joins the leader's flight
    await invalidate(driver)
    driver.clock.advance(1)  # the store's rule: a fetch must begin after the invalidation, not at its instant
    driver.origin.script(version(b"v2"))
    held.set()
    answers = await asyncio.gather(leader, follower)
    assert answers[0].reason is Reason.INVALIDATED
    assert answers[1].body == b"v2"  # not handed the refused entry as if it were stored
    assert stored_bodies(driver, answers[1]) == [b"v2"]


@pytest.mark.parametrize("invalidate", INVALIDATIONS)
async def test_rfc5861_3_a_background_refresh_in_flight_during_an_invalidation_is_not_stored(
    driver: Driver, invalidate: Invalidate
) -> None:
    driver.origin.script(Reply(headers=[cached(1, "stale-while-revalidate=60"), ("Surrogate-Key", "t1")], body=b"v1"))
    await driver.get()
    driver.clock.advance(2)
    held = asyncio.Event()
    driver.origin.script(Reply(headers=[cached(60), ("Surrogate-Key", "t1")], body=b"v1-refreshed", gate=held))
    stale = await driver.get()
    assert (stale.body, stale.reason) == (b"v1", Reason.STALE_WHILE_REVALIDATE)
    await until(lambda: len(driver.origin.requests) == 2)
    await invalidate(driver)
    driver.clock.advance(1)  # the store's rule: a fetch must begin after the invalidation, not at its instant
    held.set()
    await driver.settle()
    assert stale.key is not None and driver.store.get_now(stale.key) == []
    driver.origin.script(version(b"v2"))
    after = await driver.get()
    assert (after.body, cache_status(after)) == (b"v2", "cacheproxy; fwd=uri-miss; stored")


async def test_an_invalidation_of_another_url_leaves_the_fetch_alone(driver: Driver) -> None:
    held = asyncio.Event()
    driver.origin.script(version(b"v1", gate=held))
    old = asyncio.ensure_future(driver.get())
    await until(lambda: len(driver.origin.requests) == 1)
    await driver.service.invalidate(["http://example.test/b"])
    await driver.service.purge("prefix", "/b")
    await driver.service.purge("tag", "other")
    held.set()
    answer = await old
    assert cache_status(answer) == "cacheproxy; fwd=uri-miss; stored"


def test_records_are_kept_only_while_an_older_fetch_runs() -> None:
    log = Invalidations()
    log.record(Covered(keys=frozenset({"k"})))
    assert len(log) == 0  # nothing in flight: nothing to keep
    fence = log.begin(0.0)
    log.record(Covered(keys=frozenset({"k"})))
    later = log.begin(0.0)
    log.record(Covered(prefix="/p"))
    assert len(log) == 2
    assert log.covers_since(fence.epoch, "k", "/x", ())
    assert log.covers_since(fence.epoch, "k.suffix", "/x", ())  # the URL key's group
    assert not log.covers_since(later.epoch, "k", "/x", ())
    assert log.covers_since(later.epoch, "j", "/p/1", ())
    log.end(fence)
    assert len(log) == 1  # the first record served only the first fetch
    log.end(later)
    assert (len(log), log.running) == (0, 0)


def test_records_past_the_cap_count_older_fetches_as_crossed() -> None:
    log = Invalidations(cap=8)
    fence = log.begin(0.0)
    for i in range(100):
        log.record(Covered(keys=frozenset({f"k{i}"})))
    assert len(log) == 8
    assert log.covers_since(fence.epoch, "unrelated", "/", ())  # its records are gone: not storing is safe
    newer = log.begin(0.0)
    assert not log.covers_since(newer.epoch, "unrelated", "/", ())
    log.end(fence)
    log.end(newer)
    assert len(log) == 0
