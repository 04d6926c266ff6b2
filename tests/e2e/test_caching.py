"""RFC 9111 shared-cache behaviour end to end: what reaches the origin (count and headers) and what the client sees."""

from __future__ import annotations

import asyncio
import time

import httpx

from proxy.clock import FakeClock
from tests.e2e.conftest import Proxied, run_proxy
from tests.support.origin import RunningOrigin


def status(response: httpx.Response) -> str:
    return response.headers["cache-status"]


async def test_rfc9111_miss_then_hit_with_age_and_cache_status(proxy: Proxied) -> None:
    proxy.origin.set("/a", headers={"Cache-Control": "max-age=60", "ETag": '"v1"'}, body="hello")
    first = await proxy.client.get("/a")
    second = await proxy.client.get("/a")
    assert status(first) == "cacheproxy; fwd=uri-miss; stored"
    assert int(first.headers["age"]) >= 0  # RFC 9111 §5.1: Age on every response, forwarded ones too
    assert status(second).startswith("cacheproxy; hit; ttl=")
    assert int(second.headers["age"]) >= 0
    assert second.text == "hello"
    assert proxy.origin.hits["/a"] == 1


async def test_rfc9110_13_1_2_if_none_match_answered_304_from_cache(proxy: Proxied) -> None:
    proxy.origin.set(
        "/e", headers={"Cache-Control": "max-age=60", "ETag": '"v1"', "Content-Type": "text/plain"}, body="x"
    )
    await proxy.client.get("/e")
    response = await proxy.client.get("/e", headers={"If-None-Match": 'W/"v0", W/"v1"'})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == '"v1"'
    assert response.headers["cache-control"] == "max-age=60"
    assert "content-type" not in response.headers
    assert proxy.origin.hits["/e"] == 1


async def test_rfc9110_13_1_3_if_modified_since_answered_304(proxy: Proxied) -> None:
    lm = "Mon, 02 Nov 2026 10:00:00 GMT"
    proxy.origin.set("/lm", headers={"Cache-Control": "max-age=60", "Last-Modified": lm}, body="x")
    await proxy.client.get("/lm")
    assert (await proxy.client.get("/lm", headers={"If-Modified-Since": lm})).status_code == 304
    older = "Sun, 01 Nov 2026 10:00:00 GMT"
    assert (await proxy.client.get("/lm", headers={"If-Modified-Since": older})).status_code == 200


async def test_client_conditional_on_a_miss_is_stripped_upstream_and_answered_304(proxy: Proxied) -> None:
    proxy.origin.set("/c", headers={"Cache-Control": "max-age=60", "ETag": '"v1"'}, body="x")
    response = await proxy.client.get("/c", headers={"If-None-Match": '"v1"'})
    assert response.status_code == 304
    assert proxy.origin.requests[-1].headers.get("if-none-match") is None
    assert (await proxy.client.get("/c")).text == "x"
    assert proxy.origin.hits["/c"] == 1


async def test_rfc9111_head_answered_from_stored_get(proxy: Proxied) -> None:
    proxy.origin.set("/h", headers={"Cache-Control": "max-age=60"}, body="body")
    await proxy.client.get("/h")
    response = await proxy.client.head("/h")
    assert response.status_code == 200
    assert response.headers["content-length"] == "4"
    assert "hit" in status(response)
    assert proxy.origin.hits["/h"] == 1


async def test_rfc9111_head_miss_fetches_and_stores_the_get(proxy: Proxied) -> None:
    proxy.origin.set("/h2", headers={"Cache-Control": "max-age=60"}, body="body")
    response = await proxy.client.head("/h2")
    assert response.status_code == 200 and response.content == b""
    assert proxy.origin.requests[-1].method == "GET"
    assert (await proxy.client.get("/h2")).text == "body"
    assert proxy.origin.hits["/h2"] == 1


async def test_rfc9111_4_1_vary_keeps_several_variants(proxy: Proxied) -> None:
    proxy.origin.set("/v", headers={"Cache-Control": "max-age=60", "Vary": "Accept-Language"}, body="v")
    for lang in ("en", "fr", "en", "fr", "EN"):
        await proxy.client.get("/v", headers={"Accept-Language": lang})
    assert proxy.origin.hits["/v"] == 2
    miss = await proxy.client.get("/v", headers={"Accept-Language": "de"})
    assert status(miss).startswith("cacheproxy; fwd=vary-miss")


async def test_rfc9111_4_1_vary_star_never_served(proxy: Proxied) -> None:
    proxy.origin.set("/star", headers={"Cache-Control": "max-age=60", "Vary": "*"}, body="s")
    await proxy.client.get("/star")
    await proxy.client.get("/star")
    assert proxy.origin.hits["/star"] == 2


async def test_rfc9111_3_5_authorization_request_not_stored_without_public(proxy: Proxied) -> None:
    proxy.origin.set("/auth", headers={"Cache-Control": "max-age=60"}, body="secret")
    first = await proxy.client.get("/auth", headers={"Authorization": "Bearer a"})
    assert "detail=authorization" in status(first)
    await proxy.client.get("/auth", headers={"Authorization": "Bearer b"})
    assert proxy.origin.hits["/auth"] == 2


async def test_rule_authorization_never_served_an_anonymous_entry(proxy: Proxied) -> None:
    proxy.origin.set("/pub", headers={"Cache-Control": "max-age=60"}, body="anon")
    await proxy.client.get("/pub")
    response = await proxy.client.get("/pub", headers={"Authorization": "Bearer a"})
    assert "hit" not in status(response)
    assert proxy.origin.hits["/pub"] == 2


async def test_rule_set_cookie_not_stored_by_default(proxy: Proxied) -> None:
    proxy.origin.set("/sc", headers=[("Cache-Control", "max-age=60"), ("Set-Cookie", "s=1")], body="c")
    first = await proxy.client.get("/sc")
    assert status(first) == "cacheproxy; fwd=uri-miss; detail=set-cookie"
    second = await proxy.client.get("/sc")
    assert second.headers["set-cookie"] == "s=1"
    assert proxy.origin.hits["/sc"] == 2


async def test_rfc9111_3_private_and_no_store_not_stored(proxy: Proxied) -> None:
    proxy.origin.set("/p", headers={"Cache-Control": "private, max-age=60"}, body="p")
    proxy.origin.set("/ns", headers={"Cache-Control": "no-store"}, body="n")
    assert status(await proxy.client.get("/p")).endswith("detail=private")
    assert status(await proxy.client.get("/ns")).endswith("detail=no-store")
    await proxy.client.get("/p")
    await proxy.client.get("/ns")
    assert proxy.origin.hits["/p"] == 2 and proxy.origin.hits["/ns"] == 2


async def test_rfc9213_cdn_cache_control_wins_and_passes_on(proxy: Proxied) -> None:
    proxy.origin.set("/cdn", headers={"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=60"}, body="c")
    first = await proxy.client.get("/cdn")
    second = await proxy.client.get("/cdn")
    assert "stored" in status(first)
    assert "hit" in status(second)
    assert second.headers["cdn-cache-control"] == "max-age=60"


async def test_rfc9111_5_2_1_7_only_if_cached_504(proxy: Proxied) -> None:
    response = await proxy.client.get("/never", headers={"Cache-Control": "only-if-cached"})
    assert response.status_code == 504
    assert proxy.origin.hits["/never"] == 0


async def test_rfc9111_5_2_1_4_request_no_cache_revalidates(proxy: Proxied) -> None:
    proxy.origin.set("/nc", headers={"Cache-Control": "max-age=60", "ETag": '"v1"'}, body="x", etag_auto=True)
    await proxy.client.get("/nc")
    response = await proxy.client.get("/nc", headers={"Cache-Control": "no-cache"})
    assert response.status_code == 200 and response.text == "x"
    assert proxy.origin.requests[-1].headers.get("if-none-match") == '"v1"'
    assert status(response) == "cacheproxy; fwd=stale; fwd-status=304; stored"


async def test_rfc9111_4_3_stale_entry_revalidated_with_304_and_refreshed(clocked: Proxied, clock: FakeClock) -> None:
    proxy = clocked
    proxy.origin.set(
        "/r", headers={"Cache-Control": "max-age=1", "ETag": '"v1"', "X-Version": "1"}, body="x", etag_auto=True
    )
    await proxy.client.get("/r")
    clock.advance(2)
    proxy.origin.set(
        "/r", headers={"Cache-Control": "max-age=60", "ETag": '"v1"', "X-Version": "2"}, body="x", etag_auto=True
    )
    response = await proxy.client.get("/r")
    assert response.text == "x"
    assert status(response) == "cacheproxy; fwd=stale; fwd-status=304; stored"
    assert response.headers["x-version"] == "2"  # RFC 9111 §4.3.4: headers refreshed from the 304
    hit = await proxy.client.get("/r")
    assert "hit" in status(hit) and hit.headers["x-version"] == "2"
    assert proxy.origin.hits["/r"] == 2


async def test_rfc9111_4_3_stale_entry_replaced_by_a_200(clocked: Proxied, clock: FakeClock) -> None:
    proxy = clocked
    proxy.origin.set("/r2", headers={"Cache-Control": "max-age=1", "ETag": '"v1"'}, body="old", etag_auto=True)
    await proxy.client.get("/r2")
    clock.advance(2)
    proxy.origin.set("/r2", headers={"Cache-Control": "max-age=60", "ETag": '"v2"'}, body="new", etag_auto=True)
    response = await proxy.client.get("/r2")
    assert response.text == "new"
    assert status(response) == "cacheproxy; fwd=stale; fwd-status=200; stored"
    assert (await proxy.client.get("/r2")).text == "new"


async def stale_with_origin_down(origin: RunningOrigin, path: str) -> httpx.Response:
    """Store ``path``, let it go stale (max-age=1, 2 s on the fake clock), take the origin down, ask again."""
    clock = FakeClock(time.time())
    async with run_proxy(origin, clock=clock) as proxy:
        await proxy.client.get(path)
        clock.advance(2)
        await origin.server.stop()
        try:
            return await proxy.client.get(path)
        finally:
            await origin.server.start()


async def test_rfc9111_5_2_2_2_must_revalidate_upstream_down_is_504(origin: RunningOrigin) -> None:
    origin.set("/mr", headers={"Cache-Control": "max-age=1, must-revalidate", "ETag": '"v"'}, body="x")
    response = await stale_with_origin_down(origin, "/mr")
    assert response.status_code == 504


async def test_rfc5861_4_stale_if_error_serves_stale_on_500(clocked: Proxied, clock: FakeClock) -> None:
    proxy = clocked
    proxy.origin.set("/sie", headers={"Cache-Control": "max-age=1, stale-if-error=60"}, body="good")
    await proxy.client.get("/sie")
    clock.advance(2)
    proxy.origin.set("/sie", status=500, body="broken")
    response = await proxy.client.get("/sie")
    assert response.status_code == 200 and response.text == "good"
    assert "detail=stale-if-error" in status(response)
    assert "fwd-status=500" in status(response)


async def test_rfc5861_4_stale_if_error_serves_stale_when_upstream_down(origin: RunningOrigin) -> None:
    origin.set("/sie2", headers={"Cache-Control": "max-age=1, stale-if-error=60", "ETag": '"e"'}, body="good")
    response = await stale_with_origin_down(origin, "/sie2")
    assert response.status_code == 200 and response.text == "good"


async def test_rfc5861_3_stale_while_revalidate_serves_stale_and_refreshes_once(
    clocked: Proxied, clock: FakeClock
) -> None:
    proxy = clocked
    proxy.origin.set("/swr", headers={"Cache-Control": "max-age=1, stale-while-revalidate=60"}, body="v1")
    await proxy.client.get("/swr")
    clock.advance(2)
    proxy.origin.set("/swr", headers={"Cache-Control": "max-age=60"}, body="v2", delay=0.3)
    stale = await asyncio.gather(*(proxy.client.get("/swr") for _ in range(20)))
    assert {r.text for r in stale} == {"v1"}
    assert all("detail=stale-while-revalidate" in status(r) for r in stale)
    for _ in range(50):
        if (await proxy.client.get("/swr")).text == "v2":
            break
        await asyncio.sleep(0.1)
    assert proxy.origin.hits["/swr"] == 2  # one background refresh for 20 stale hits


async def test_rfc9111_4_4_unsafe_method_invalidates_uri_and_location(proxy: Proxied) -> None:
    proxy.origin.set("/items/1", headers={"Cache-Control": "max-age=60"}, body="one")
    proxy.origin.set("/items", headers={"Cache-Control": "max-age=60"}, body="list")
    await proxy.client.get("/items/1")
    await proxy.client.get("/items")
    proxy.origin.set("/items", status=201, headers={"Location": "/items/1"}, body="made")
    await proxy.client.post("/items", content=b"{}")
    proxy.origin.set("/items", headers={"Cache-Control": "max-age=60"}, body="list")
    await proxy.client.get("/items/1")
    await proxy.client.get("/items")
    assert proxy.origin.hits["/items/1"] == 2
    assert proxy.origin.hits["/items"] == 3  # GET, POST, GET again


async def test_rfc9111_4_4_error_response_does_not_invalidate(proxy: Proxied) -> None:
    proxy.origin.set("/keep", headers={"Cache-Control": "max-age=60"}, body="k")
    await proxy.client.get("/keep")
    proxy.origin.set("/keep", status=409, body="conflict")
    await proxy.client.delete("/keep")
    proxy.origin.set("/keep", headers={"Cache-Control": "max-age=60"}, body="k")
    assert "hit" in status(await proxy.client.get("/keep"))


async def test_rfc9111_4_2_2_heuristic_freshness_from_last_modified(proxy: Proxied) -> None:
    proxy.origin.set("/heur", headers={"Last-Modified": "Mon, 02 Nov 2026 10:00:00 GMT"}, body="h")
    await proxy.client.get("/heur")
    assert "hit" in status(await proxy.client.get("/heur"))


async def test_rfc9111_3_no_freshness_not_stored(proxy: Proxied) -> None:
    await proxy.client.get("/plain")
    response = await proxy.client.get("/plain")
    assert status(response) == "cacheproxy; fwd=uri-miss; detail=no-freshness"


async def test_coalescing_concurrent_misses_reach_origin_once(proxy: Proxied) -> None:
    proxy.origin.set("/hot", headers={"Cache-Control": "max-age=60"}, body="hot", delay=0.3)
    responses = await asyncio.gather(*(proxy.client.get("/hot") for _ in range(50)))
    assert {r.text for r in responses} == {"hot"}
    assert proxy.origin.hits["/hot"] == 1
    collapsed = [r for r in responses if "collapsed" in status(r)]
    assert len(collapsed) == 49
    assert status(collapsed[0]) == "cacheproxy; fwd=miss; collapsed"
