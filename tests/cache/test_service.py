"""The cache driver (``CacheService``) without sockets: a scripted origin behind the origin port, a fake clock, the
memory store. Each test follows one request path through the driver and asserts the exact answer: status, body, Age,
``Cache-Status`` (RFC 9211), the typed reason, and what reached the origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import proxy.cache.service as service_module
from proxy.cache.answer import Answer, CacheOutcome
from proxy.cache.service import CacheService
from proxy.clock import FakeClock
from proxy.errors import UpstreamConnectError, UpstreamTimeout
from proxy.messages import Headers, RequestHead
from proxy.rfc.decisions import Reason
from proxy.rules.reload import RulesHolder
from proxy.storage.memory import MemoryStorage
from tests.support.scripted_origin import Reply, ScriptedOrigin

ETAG = ("ETag", '"v1"')


class Driver:
    """The driver under test with its scripted origin, clock and store (the built-in rules unless ``rules``)."""

    def __init__(self, rules: Path | None = None) -> None:
        self.clock = FakeClock()
        self.origin = ScriptedOrigin(self.clock)
        self.store = MemoryStorage(clock=self.clock)
        self.service = CacheService(
            rules=RulesHolder(rules),
            stores={"memory": self.store},
            default_store="memory",
            origin=self.origin,
            clock=self.clock,
        )

    async def get(self, path: str = "/a", *headers: tuple[str, str], method: str = "GET") -> Answer:
        request = RequestHead(method, "http", "example.test", path, "", Headers(headers), "127.0.0.1")
        return await self.service.handle(request, None)

    async def settle(self) -> None:
        """Let detached work (background refreshes) finish."""
        while self.service.tasks:
            await asyncio.gather(*self.service.tasks, return_exceptions=True)


@pytest.fixture
async def driver() -> AsyncIterator[Driver]:
    running = Driver()
    yield running
    await running.service.close()
    assert running.origin.all_released()


def header(answer: Answer, name: str) -> str | None:
    found = [value for key, value in answer.headers if key == name.encode()]
    return found[-1].decode("latin-1") if found else None


def cache_status(answer: Answer) -> str | None:
    return header(answer, "cache-status")


def cached(max_age: int, *more: str) -> tuple[str, str]:
    return ("Cache-Control", ", ".join([f"max-age={max_age}", *more]))


async def test_rfc9111_3_miss_is_fetched_and_stored(driver: Driver) -> None:
    driver.origin.script(Reply(headers=[cached(60), ETAG], body=b"one"))
    answer = await driver.get()
    assert (answer.status, answer.body, answer.outcome) == (200, b"one", CacheOutcome.MISS)
    assert cache_status(answer) == "cacheproxy; fwd=uri-miss; stored"
    assert answer.reason is None
    assert header(answer, "age") == "0"  # Age on every forwarded response too (RFC 9111 §4.2.3, §5.1; issue 15)
    assert answer.key is not None and len(driver.store.get_now(answer.key)) == 1
    assert [r.method for r in driver.origin.requests] == ["GET"]


async def test_rfc9111_4_2_3_hit_carries_the_exact_age_and_ttl(driver: Driver) -> None:
    driver.origin.script(Reply(headers=[cached(60), ETAG], body=b"one"))
    await driver.get()
    driver.clock.advance(10)
    answer = await driver.get()
    assert (answer.status, answer.body, answer.outcome) == (200, b"one", CacheOutcome.HIT)
    assert header(answer, "age") == "10"
    assert cache_status(answer) == "cacheproxy; hit; ttl=50"
    assert len(driver.origin.requests) == 1


async def test_rfc9111_4_2_3_age_counts_the_origins_age_and_the_transit(driver: Driver) -> None:
    driver.origin.latency = 2.0  # request_time to response_time: 2 s
    driver.origin.script(Reply(headers=[cached(60), ("Age", "5")], body=b"one"))
    await driver.get()
    driver.clock.advance(3)
    answer = await driver.get()
    assert header(answer, "age") == "10"  # corrected initial age 5 + 2 (response delay) + 3 resident
    assert cache_status(answer) == "cacheproxy; hit; ttl=50"


async def test_rfc9110_13_1_2_client_if_none_match_is_answered_304_from_the_store(driver: Driver) -> None:
    driver.origin.script(Reply(headers=[cached(60), ETAG], body=b"one"))
    await driver.get()
    driver.clock.advance(1)
    answer = await driver.get("/a", ("If-None-Match", '"v1"'))
    assert (answer.status, answer.body, answer.outcome) == (304, b"", CacheOutcome.HIT)
    assert header(answer, "etag") == '"v1"'
    assert header(answer, "age") == "1"
    assert len(driver.origin.requests) == 1


async def test_rfc9111_4_3_1_stale_entry_is_revalidated_with_its_validator(driver: Driver) -> None:
    driver.origin.script(
        Reply(headers=[cached(10), ETAG, ("X-Version", "1")], body=b"one"),
        Reply(304, headers=[cached(60), ETAG, ("X-Version", "2")]),
    )
    await driver.get()
    driver.clock.advance(15)
    answer = await driver.get()
    assert driver.origin.requests[-1].headers.get("if-none-match") == '"v1"'
    assert (answer.status, answer.body, answer.outcome) == (200, b"one", CacheOutcome.REVALIDATED)
    assert cache_status(answer) == "cacheproxy; fwd=stale; fwd-status=304; stored"
    assert header(answer, "x-version") == "2"  # RFC 9111 §4.3.4: fields updated from the 304
    assert header(answer, "age") == "0"
    driver.clock.advance(20)
    hit = await driver.get()
    assert (hit.outcome, header(hit, "age"), header(hit, "x-version")) == (CacheOutcome.HIT, "20", "2")
    assert cache_status(hit) == "cacheproxy; hit; ttl=40"
    assert len(driver.origin.requests) == 2


async def test_rfc9111_4_3_3_stale_entry_replaced_by_a_200(driver: Driver) -> None:
    driver.origin.script(
        Reply(headers=[cached(10), ETAG], body=b"old"),
        Reply(headers=[cached(60), ("ETag", '"v2"')], body=b"new"),
    )
    await driver.get()
    driver.clock.advance(11)
    answer = await driver.get()
    assert (answer.body, cache_status(answer)) == (b"new", "cacheproxy; fwd=stale; fwd-status=200; stored")
    assert (await driver.get()).body == b"new"


async def test_rfc5861_4_stale_if_error_serves_the_stale_entry_when_the_origin_is_down(driver: Driver) -> None:
    driver.origin.script(
        Reply(headers=[cached(10, "stale-if-error=60"), ETAG], body=b"good"),
        Reply(error=UpstreamConnectError("refused")),
    )
    await driver.get()
    driver.clock.advance(25)
    answer = await driver.get()
    assert (answer.status, answer.body, answer.outcome) == (200, b"good", CacheOutcome.STALE)
    assert answer.reason is Reason.STALE_IF_ERROR
    assert header(answer, "age") == "25"
    assert cache_status(answer) == "cacheproxy; fwd=stale; ttl=-15; detail=stale-if-error"


async def test_rfc5861_4_stale_if_error_stands_in_for_a_500(driver: Driver) -> None:
    driver.origin.script(
        Reply(headers=[cached(10, "stale-if-error=60")], body=b"good"),
        Reply(500, body=b"broken"),
    )
    await driver.get()
    driver.clock.advance(12)
    answer = await driver.get()
    assert (answer.status, answer.body) == (200, b"good")
    assert cache_status(answer) == "cacheproxy; fwd=stale; fwd-status=500; ttl=-2; detail=stale-if-error"


async def test_rfc5861_4_stale_if_error_window_closed_is_a_502(driver: Driver) -> None:
    driver.origin.script(
        Reply(headers=[cached(10, "stale-if-error=5"), ETAG], body=b"good"),
        Reply(error=UpstreamConnectError("refused")),
    )
    await driver.get()
    driver.clock.advance(16)
    answer = await driver.get()
    assert (answer.status, answer.outcome, answer.reason) == (502, CacheOutcome.ERROR, Reason.CONNECT_FAILED)
    assert cache_status(answer) == "cacheproxy; fwd=stale; detail=connect-failed"


async def test_rfc9111_5_2_2_2_must_revalidate_with_the_origin_down_is_504(driver: Driver) -> None:
    driver.origin.script(
        Reply(headers=[cached(10, "must-revalidate"), ETAG], body=b"x"),
        Reply(error=UpstreamConnectError("refused")),
    )
    await driver.get()
    driver.clock.advance(11)
    answer = await driver.get()
    assert answer.status == 504
    assert answer.reason is Reason.CONNECT_FAILED


async def test_rfc9211_2_8_upstream_failures_have_typed_details(driver: Driver) -> None:
    driver.origin.script(Reply(error=UpstreamTimeout("slow")))
    answer = await driver.get()
    assert (answer.status, answer.reason) == (504, Reason.UPSTREAM_TIMEOUT)
    assert cache_status(answer) == "cacheproxy; fwd=uri-miss; detail=timeout"
    assert answer.body == b"504 Gateway Timeout: the upstream did not answer in time\n"


async def test_rfc5861_3_stale_while_revalidate_serves_stale_and_refreshes_once(driver: Driver) -> None:
    gate = asyncio.Event()
    driver.origin.script(
        Reply(headers=[cached(10, "stale-while-revalidate=60"), ETAG], body=b"v1"),
        Reply(headers=[cached(60), ("ETag", '"v2"')], body=b"v2", gate=gate),
    )
    await driver.get()
    driver.clock.advance(12)
    stale = [await driver.get() for _ in range(5)]
    assert {(a.body, a.outcome, a.reason) for a in stale} == {
        (b"v1", CacheOutcome.STALE, Reason.STALE_WHILE_REVALIDATE)
    }
    assert cache_status(stale[0]) == "cacheproxy; hit; ttl=-2; detail=stale-while-revalidate"
    assert header(stale[0], "age") == "12"
    gate.set()
    await driver.settle()
    assert len(driver.origin.requests) == 2  # one background refresh for five stale hits
    assert driver.origin.requests[1].headers.get("if-none-match") == '"v1"'
    fresh = await driver.get()
    assert (fresh.body, fresh.outcome, header(fresh, "age")) == (b"v2", CacheOutcome.HIT, "0")


async def test_rfc9111_5_2_1_7_only_if_cached_miss_is_504(driver: Driver) -> None:
    answer = await driver.get("/a", ("Cache-Control", "only-if-cached"))
    assert (answer.status, answer.reason) == (504, Reason.ONLY_IF_CACHED)
    assert cache_status(answer) == "cacheproxy; fwd=miss; detail=only-if-cached"
    assert driver.origin.requests == []


async def test_rfc9111_3_private_response_is_not_stored(driver: Driver) -> None:
    driver.origin.script(Reply(headers=[("Cache-Control", "private, max-age=60")], body=b"mine"))
    answer = await driver.get()
    assert (answer.outcome, answer.reason) == (CacheOutcome.MISS, Reason.PRIVATE)
    assert cache_status(answer) == "cacheproxy; fwd=uri-miss; detail=private"
    assert answer.key is not None and driver.store.get_now(answer.key) == []


async def test_rfc9111_4_4_a_successful_post_invalidates_the_stored_get(driver: Driver) -> None:
    driver.origin.script(
        Reply(headers=[cached(60)], body=b"before"),
        Reply(201, body=b"made"),
        Reply(headers=[cached(60)], body=b"after"),
    )
    await driver.get()
    posted = await driver.get(method="POST")
    assert (posted.status, posted.outcome, posted.reason, posted.key) == (201, CacheOutcome.BYPASS, Reason.METHOD, None)
    assert cache_status(posted) == "cacheproxy; fwd=method; detail=method"
    again = await driver.get()
    assert (again.body, again.outcome) == (b"after", CacheOutcome.MISS)


async def test_single_flight_followers_share_the_leaders_entry(driver: Driver) -> None:
    gate = asyncio.Event()
    driver.origin.script(Reply(headers=[cached(60)], body=b"shared", gate=gate))
    leader = asyncio.create_task(driver.get())
    await asyncio.sleep(0)
    followers = [asyncio.create_task(driver.get()) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    first, *rest = await asyncio.gather(leader, *followers)
    assert first.outcome is CacheOutcome.MISS
    assert {(a.body, a.outcome) for a in rest} == {(b"shared", CacheOutcome.COLLAPSED)}
    assert cache_status(rest[0]) == "cacheproxy; fwd=miss; collapsed"
    assert len(driver.origin.requests) == 1


async def test_a_body_over_the_object_cap_streams_through_and_is_released(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("defaults:\n  max_object_size: 8B\n")
    driver = Driver(rules)
    driver.origin.script(Reply(headers=[cached(60)], body=b"0123456789abcdef"))
    answer = await driver.get()
    assert answer.stream is not None and answer.release is not None
    assert b"".join([chunk async for chunk in answer.stream]) == b"0123456789abcdef"
    await answer.release()
    assert answer.reason is Reason.TOO_LARGE
    assert cache_status(answer) == "cacheproxy; fwd=uri-miss; detail=too-large"
    assert driver.origin.all_released()


async def test_head_miss_fetches_the_get_and_answers_without_a_body(driver: Driver) -> None:
    driver.origin.script(Reply(headers=[cached(60)], body=b"body"))
    answer = await driver.get(method="HEAD")
    assert [r.method for r in driver.origin.requests] == ["GET"]
    assert (answer.status, answer.body) == (200, b"")
    hit = await driver.get()
    assert (hit.body, hit.outcome) == (b"body", CacheOutcome.HIT)


async def test_the_answer_is_frozen(driver: Driver) -> None:
    driver.origin.script(Reply(headers=[cached(60)], body=b"x"))
    answer = await driver.get()
    with pytest.raises(AttributeError):
        answer.status = 500  # type: ignore[misc]


async def test_one_decision_per_request(driver: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    """``decide`` runs once per request whatever path it takes: miss, hit, revalidation, stale-if-error."""
    calls: list[str] = []
    real = service_module.decide

    def counting(request: RequestHead, *args: object, **kwargs: object) -> object:
        calls.append(request.path)
        return real(request, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service_module, "decide", counting)
    driver.origin.script(
        Reply(headers=[cached(10, "stale-if-error=60"), ETAG], body=b"v1"),
        Reply(304, headers=[cached(10, "stale-if-error=60"), ETAG]),
        Reply(error=UpstreamConnectError("refused")),
    )
    await driver.get("/a")  # miss
    await driver.get("/a")  # hit
    driver.clock.advance(11)
    await driver.get("/a")  # revalidated
    driver.clock.advance(11)
    answer = await driver.get("/a")  # stale-if-error
    assert answer.reason is Reason.STALE_IF_ERROR
    assert calls == ["/a"] * 4


async def test_rfc5861_3_failed_refreshes_in_an_outage_write_one_line_per_route_and_interval(
    driver: Driver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cacheproxy.service")
    for path in ("/a", "/b", "/c"):
        driver.origin.script(Reply(headers=[cached(10, "stale-while-revalidate=600"), ETAG], body=b"v1"))
        await driver.get(path)
    driver.origin.standing = Reply(error=UpstreamConnectError("refused"))  # the origin goes down
    driver.clock.advance(12)
    first = _local_time(driver.clock.now())
    for _ in range(4):
        for path in ("/a", "/b", "/c"):
            assert (await driver.get(path)).outcome is CacheOutcome.STALE
            await driver.settle()  # the refresh fails before the next request
    assert len(driver.origin.requests) == 3 + 12
    assert caplog.messages == ["background refresh of http://example.test/a failed: refused"]
    driver.clock.advance(10)
    second = _local_time(driver.clock.now())
    await driver.get("/b")
    await driver.settle()
    driver.clock.advance(1)
    await driver.get("/c")
    await driver.settle()
    await driver.service.close()  # a count still held back is written at shutdown
    assert caplog.messages[1:] == [
        f"background refresh of http://example.test/b failed: refused (11 more since {first})",
        f"background refresh of http://example.test/c failed: refused (the last of 1 since {second})",
    ]


def _local_time(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall))


async def test_the_count_of_failed_refreshes_is_written_when_the_outage_is_over(
    driver: Driver, caplog: pytest.LogCaptureFixture
) -> None:
    """Not at the next failure (which may come hours later): the lifespan's ``report_failures`` writes it."""
    caplog.set_level(logging.WARNING, logger="cacheproxy.service")
    driver.origin.script(Reply(headers=[cached(10, "stale-while-revalidate=600"), ETAG], body=b"v1"))
    await driver.get("/a")
    driver.origin.standing = Reply(error=UpstreamConnectError("refused"))
    driver.clock.advance(12)
    first = _local_time(driver.clock.now())
    for _ in range(3):
        await driver.get("/a")
        await driver.settle()
    reporter = asyncio.create_task(driver.service.report_failures(every=0.001))
    try:
        await asyncio.sleep(0.01)
        assert len(caplog.messages) == 1  # the window is not over yet
        driver.clock.advance(10)  # the origin is back; no more failures
        for _ in range(100):
            await asyncio.sleep(0.001)
            if len(caplog.messages) == 2:
                break
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
    summary = f"background refresh of http://example.test/a failed: refused (the last of 2 since {first})"
    assert caplog.messages[1] == summary
