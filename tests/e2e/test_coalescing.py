"""Single-flight and stale serving in one process: no stampede reaches the origin."""

from __future__ import annotations

import asyncio
import tracemalloc

import httpx
import pytest

from proxy.cache.coalesce import Coalescer, NotShared
from proxy.rfc.decisions import Reason
from tests.e2e.conftest import Proxied, run_proxy
from tests.support.origin import run_origin


def many_client(proxy: Proxied, n: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    return httpx.AsyncClient(base_url=proxy.url, limits=limits, timeout=60)


async def test_single_flight_1000_concurrent_cold_requests_one_upstream_request(proxy: Proxied) -> None:
    proxy.origin.set("/cold", headers={"Cache-Control": "max-age=60", "ETag": '"c"'}, body="cold" * 64, delay=0.5)
    async with many_client(proxy, 1000) as client:
        responses = await asyncio.gather(*(client.get("/cold") for _ in range(1000)))
    assert proxy.origin.hits["/cold"] == 1
    assert {r.status_code for r in responses} == {200}
    assert {r.content for r in responses} == {b"cold" * 64}
    statuses = [r.headers["cache-status"] for r in responses]
    # Followers that arrived during the fetch are collapsed; later ones are plain hits.
    assert sum("fwd=uri-miss" in s for s in statuses) == 1
    assert all("collapsed" in s or "hit" in s for s in statuses if "fwd=uri-miss" not in s)


async def test_single_flight_leader_client_disconnect_still_feeds_followers(proxy: Proxied) -> None:
    proxy.origin.set("/lead", headers={"Cache-Control": "max-age=60"}, body="fed", delay=0.6)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=0.2) as impatient:
        leader = asyncio.create_task(impatient.get("/lead"))
        await asyncio.sleep(0.1)
        followers = [asyncio.create_task(proxy.client.get("/lead", timeout=10)) for _ in range(5)]
        with pytest.raises(httpx.TimeoutException):
            await leader  # the leader's client gives up and disconnects
    answers = await asyncio.gather(*followers)
    assert [r.text for r in answers] == ["fed"] * 5
    assert all("collapsed" in r.headers["cache-status"] for r in answers)
    assert proxy.origin.hits["/lead"] == 1


async def test_single_flight_private_response_not_shared_and_followers_not_serialised(proxy: Proxied) -> None:
    proxy.origin.set("/mine", headers={"Cache-Control": "private"}, body="mine", delay=0.4)
    responses = await asyncio.gather(*(proxy.client.get("/mine") for _ in range(8)))
    assert all("collapsed" not in r.headers["cache-status"] for r in responses)
    assert proxy.origin.hits["/mine"] == 8
    # The leader and then the seven followers at once: at least seven overlapped at the origin.
    assert proxy.origin.origin.max_in_flight >= 7


async def test_single_flight_set_cookie_response_not_shared(proxy: Proxied) -> None:
    proxy.origin.set("/login", headers=[("Cache-Control", "max-age=60"), ("Set-Cookie", "sid=1")], delay=0.3)
    responses = await asyncio.gather(*(proxy.client.get("/login") for _ in range(4)))
    assert proxy.origin.hits["/login"] == 4
    assert all(r.headers["set-cookie"] == "sid=1" for r in responses)


async def test_single_flight_vary_mismatch_followers_fetch_their_own(proxy: Proxied) -> None:
    proxy.origin.set("/lang", headers={"Cache-Control": "max-age=60", "Vary": "Accept-Language"}, delay=0.3)
    langs = ["en", "en", "fr", "de"]
    responses = await asyncio.gather(*(proxy.client.get("/lang", headers={"Accept-Language": x}) for x in langs))
    collapsed = [r for r in responses if "collapsed" in r.headers["cache-status"]]
    assert len(collapsed) == 1  # the second "en"
    assert proxy.origin.hits["/lang"] == 3


async def test_single_flight_too_large_releases_followers_at_headers(proxy: Proxied) -> None:
    # 20 MiB, slowly: followers must not wait for the leader's whole download.
    chunks = [b"z" * 1_048_576] * 20
    proxy.origin.set("/huge", headers={"Cache-Control": "max-age=60"}, chunks=chunks, chunk_delay=0.05)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client, client.stream("GET", "/huge") as leader:
        first = await leader.aiter_bytes().__anext__()
        assert first
        follower = await client.get("/huge")  # answered while the leader's body is still flowing
        assert "detail=too-large" in follower.headers["cache-status"]
        assert len(follower.content) == 20 * 1_048_576
    assert proxy.origin.hits["/huge"] == 2


async def test_single_flight_upstream_error_reaches_every_follower(proxy: Proxied) -> None:
    proxy.origin.set("/slowdown", delay=2.0, body="late")
    proxy.app.runtime.origin.config = type(proxy.app.runtime.origin.config)(proxy.origin.url, read_timeout=0.5)
    await proxy.app.runtime.origin.close()
    await proxy.app.runtime.origin.start()
    responses = await asyncio.gather(*(proxy.client.get("/slowdown") for _ in range(5)))
    assert [r.status_code for r in responses] == [504] * 5
    assert proxy.origin.hits["/slowdown"] == 1


async def test_stale_key_under_constant_load_refreshed_once_per_expiry() -> None:
    async with run_origin(date_header=False) as origin, run_proxy(origin) as proxy:
        origin.set("/tick", headers={"Cache-Control": "max-age=1", "ETag": '"t"'}, body="t", etag_auto=True)
        hits, served = await _constant_load(proxy, "/tick", seconds=3.2)
    # 3.2 s of max-age=1: the first fetch plus one revalidation per expiry, whatever the request rate.
    assert served > 100
    assert 3 <= hits <= 5


async def _constant_load(proxy: Proxied, path: str, seconds: float) -> tuple[int, int]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    served = 0
    async with many_client(proxy, 20) as client:

        async def worker() -> None:
            nonlocal served
            while loop.time() < deadline:
                response = await client.get(path)
                assert response.status_code == 200
                served += 1

        await asyncio.gather(*(worker() for _ in range(20)))
    return proxy.origin.hits[path], served


async def test_single_flight_10000_waiting_followers_cost_little_memory() -> None:
    coalescer = Coalescer()
    flight, leads = coalescer.join("k")
    assert leads
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]

    async def follower() -> object:
        f, lead = coalescer.join("k")
        assert not lead
        return await f.wait(30)

    tasks = [asyncio.create_task(follower()) for _ in range(10_000)]
    await asyncio.sleep(0)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    coalescer.finish(flight, NotShared(Reason.PRIVATE))
    outcomes = await asyncio.gather(*tasks)
    assert all(o == NotShared(Reason.PRIVATE) for o in outcomes)
    assert used < 40 * 1024 * 1024, f"{used / 1e6:.1f} MB for 10,000 waiting followers"
