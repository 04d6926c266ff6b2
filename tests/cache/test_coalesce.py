"""The single-flight table: one leader per key, outcomes published once, hit-for-miss memory."""

from __future__ import annotations

import asyncio

from proxy.cache.coalesce import Coalescer, NotShared, Shared
from proxy.clock import FakeClock
from proxy.messages import Entry, ResponseHead
from proxy.rfc.decisions import Reason


def entry() -> Entry:
    return Entry("k", "http://h/", ResponseHead(200), b"x", 0.0, 0.0, 60.0)


async def test_first_joiner_leads_the_rest_follow() -> None:
    coalescer = Coalescer(FakeClock())
    flight, leads = coalescer.join("k")
    again, follows = coalescer.join("k")
    assert leads
    assert not follows
    assert again is flight


async def test_only_the_first_outcome_counts_and_followers_get_it() -> None:
    coalescer = Coalescer(FakeClock())
    flight, _ = coalescer.join("k")
    waiter = asyncio.create_task(flight.wait(5))
    flight.publish(Shared(entry()))
    coalescer.finish(flight, NotShared(Reason.NOT_STORED))
    assert await waiter == Shared(entry())
    assert coalescer.current("k") is None


async def test_follower_wait_is_bounded() -> None:
    coalescer = Coalescer(FakeClock())
    flight, _ = coalescer.join("k")
    assert await flight.wait(0.01) is None


async def test_hit_for_miss_remembers_unshared_keys_until_it_expires() -> None:
    clock = FakeClock()
    coalescer = Coalescer(clock, hit_for_miss=10.0)
    flight, _ = coalescer.join("k")
    coalescer.finish(flight, NotShared(Reason.PRIVATE))
    assert coalescer.is_unshared("k")
    clock.advance(10.0)
    assert not coalescer.is_unshared("k")


async def test_hit_for_miss_is_forgotten_once_a_response_is_shared() -> None:
    coalescer = Coalescer(FakeClock())
    first, _ = coalescer.join("k")
    coalescer.finish(first, NotShared(Reason.SET_COOKIE))
    second, _ = coalescer.join("k")
    second.publish(Shared(entry()))
    coalescer.finish(second, NotShared(Reason.NOT_STORED))
    assert not coalescer.is_unshared("k")


async def test_hit_for_miss_memory_is_bounded() -> None:
    coalescer = Coalescer(FakeClock(), memory=3)
    for key in "abcde":
        flight, _ = coalescer.join(key)
        coalescer.finish(flight, NotShared(Reason.PRIVATE))
    assert [k for k in "abcde" if coalescer.is_unshared(k)] == ["c", "d", "e"]
