"""Issue 15 items 3, 8 and 11 over the wire: 304 selection (RFC 9111 §4.3.3, §4.3.4), HEAD freshening a stored GET
(§4.3.5), and the optional behaviours of §4.1, §4.3.2 and RFC 9110 §9.3.3."""

from __future__ import annotations

import time

from proxy.rfc.dates import format_http_date
from tests.e2e.conftest import Proxied, run_proxy
from tests.support.origin import run_origin

STALE_ON_ARRIVAL = {"Cache-Control": "max-age=60", "Age": "100"}  # stale by 40 s as it arrives


async def test_rfc9111_4_3_4_304_without_validators_freshens_the_one_stored_response(proxy: Proxied) -> None:
    proxy.origin.set("/v", headers={**STALE_ON_ARRIVAL, "ETag": '"v1"', "X-Version": "1"}, body="body")
    await proxy.client.get("/v")
    proxy.origin.set("/v", status=304, headers={"Cache-Control": "max-age=600", "X-Version": "2"})
    revalidated = await proxy.client.get("/v")
    assert proxy.origin.requests[-1].headers.get("if-none-match") == '"v1"'
    assert revalidated.status_code == 200 and revalidated.text == "body"
    assert revalidated.headers["cache-status"] == "cacheproxy; fwd=stale; fwd-status=304; stored"
    assert revalidated.headers["x-version"] == "2"
    hit = await proxy.client.get("/v")
    assert hit.headers["cache-status"].startswith("cacheproxy; hit") and hit.text == "body"
    assert proxy.origin.hits["/v"] == 2


async def test_rfc9111_4_3_4_304_with_another_etag_is_not_used(proxy: Proxied) -> None:
    proxy.origin.set("/w", headers={**STALE_ON_ARRIVAL, "ETag": '"v1"'}, body="body")
    await proxy.client.get("/w")
    proxy.origin.set("/w", status=304, headers={"Cache-Control": "max-age=600", "ETag": '"v2"'})
    await proxy.client.get("/w")
    # the 304 selected nothing: the proxy asked again without conditions
    assert proxy.origin.hits["/w"] == 3
    assert proxy.origin.requests[-1].headers.get("if-none-match") is None


async def test_rfc9111_4_1_vary_accept_language_matched_on_the_normalised_list(proxy: Proxied) -> None:
    proxy.origin.set("/lang", headers={"Cache-Control": "max-age=600", "Vary": "Accept-Language"}, body="en")
    await proxy.client.get("/lang", headers={"Accept-Language": "fr;q=0.5, en-US"})
    same = await proxy.client.get("/lang", headers={"Accept-Language": "en-us, fr;q=0.50"})
    assert same.headers["cache-status"].startswith("cacheproxy; hit")
    other = await proxy.client.get("/lang", headers={"Accept-Language": "fr, en-US;q=0.5"})
    assert "fwd=vary-miss" in other.headers["cache-status"]
    assert proxy.origin.hits["/lang"] == 2


async def test_rfc9111_4_1_vary_accept_encoding_member_order_normalised(proxy: Proxied) -> None:
    proxy.origin.set("/enc", headers={"Cache-Control": "max-age=600", "Vary": "Accept-Encoding"}, body="x")
    await proxy.client.get("/enc", headers={"Accept-Encoding": "gzip, br"})
    same = await proxy.client.get("/enc", headers={"Accept-Encoding": "br, gzip;q=1"})
    assert same.headers["cache-status"].startswith("cacheproxy; hit")
    assert proxy.origin.hits["/enc"] == 1


async def test_rfc9111_4_3_2_if_modified_since_against_date_without_last_modified() -> None:
    now = time.time()
    date, earlier = format_http_date(now), format_http_date(now - 1)
    async with run_origin(date_header=False) as origin, run_proxy(origin) as proxy:
        origin.set("/ims", headers={"Cache-Control": "max-age=600", "Date": date, "Age": "0"}, body="x")
        await proxy.client.get("/ims")
        assert (await proxy.client.get("/ims", headers={"If-Modified-Since": date})).status_code == 304
        assert (await proxy.client.get("/ims", headers={"If-Modified-Since": earlier})).status_code == 200
        assert origin.hits["/ims"] == 1


async def test_rfc9110_9_3_3_post_answer_with_content_location_answers_a_later_get(proxy: Proxied) -> None:
    proxy.origin.set(
        "/orders/7", headers={"Cache-Control": "max-age=600", "Content-Location": "/orders/7"}, body="order 7"
    )
    posted = await proxy.client.post("/orders/7", content=b"{}")
    assert posted.text == "order 7"
    got = await proxy.client.get("/orders/7")
    assert got.headers["cache-status"].startswith("cacheproxy; hit") and got.text == "order 7"
    assert [r.method for r in proxy.origin.requests] == ["POST"]


async def test_rfc9110_9_3_3_post_answer_for_another_uri_not_stored(proxy: Proxied) -> None:
    proxy.origin.set("/orders", headers={"Cache-Control": "max-age=600", "Content-Location": "/orders/8"}, body="o")
    await proxy.client.post("/orders", content=b"{}")
    await proxy.client.get("/orders")
    assert [r.method for r in proxy.origin.requests] == ["POST", "GET"]


async def test_rfc9111_5_2_2_4_no_cache_revalidated_with_a_weak_etag(proxy: Proxied) -> None:
    proxy.origin.set("/weak", headers={"Cache-Control": "no-cache", "ETag": 'W/"v1"'}, body="x", etag_auto=True)
    await proxy.client.get("/weak")
    again = await proxy.client.get("/weak")
    assert proxy.origin.requests[-1].headers.get("if-none-match") == 'W/"v1"'
    assert again.headers["cache-status"] == "cacheproxy; fwd=stale; fwd-status=304; stored"
    assert again.text == "x"


async def test_rfc9111_5_2_2_2_must_revalidate_revalidated_with_a_weak_etag(proxy: Proxied) -> None:
    headers = {"Cache-Control": "max-age=60, must-revalidate", "Age": "100", "ETag": 'W/"v1"'}
    proxy.origin.set("/weak-mr", headers=headers, body="x", etag_auto=True)
    await proxy.client.get("/weak-mr")
    again = await proxy.client.get("/weak-mr")
    assert proxy.origin.requests[-1].headers.get("if-none-match") == 'W/"v1"'
    assert "fwd-status=304" in again.headers["cache-status"] and again.text == "x"


async def test_rfc9111_4_3_5_head_with_matching_validators_freshens_the_stored_get(proxy: Proxied) -> None:
    proxy.origin.set("/hd", headers={**STALE_ON_ARRIVAL, "ETag": '"v1"', "X-Version": "1"}, body="body")
    await proxy.client.get("/hd")
    proxy.origin.set("/hd", headers={"Cache-Control": "max-age=600", "ETag": '"v1"', "X-Version": "2"}, body="body")
    head = await proxy.client.head("/hd")
    assert proxy.origin.requests[-1].method == "HEAD"
    assert head.status_code == 200 and head.content == b""
    assert head.headers["x-version"] == "2"
    got = await proxy.client.get("/hd")
    assert got.headers["cache-status"].startswith("cacheproxy; hit")
    assert got.headers["x-version"] == "2" and got.text == "body"
    assert [r.method for r in proxy.origin.requests] == ["GET", "HEAD"]


async def test_rfc9111_4_3_5_head_with_other_validators_makes_the_stored_get_stale(proxy: Proxied) -> None:
    proxy.origin.set("/hd2", headers={"Cache-Control": "max-age=600", "ETag": '"v1"'}, body="old")
    await proxy.client.get("/hd2")
    proxy.origin.set("/hd2", headers={"Cache-Control": "max-age=600", "ETag": '"v2"'}, body="new")
    head = await proxy.client.head("/hd2", headers={"Cache-Control": "no-cache"})
    assert head.headers["etag"] == '"v2"'
    got = await proxy.client.get("/hd2")  # the fresh entry was made stale: revalidated, and the new body arrives
    assert got.text == "new"
    assert [r.method for r in proxy.origin.requests] == ["GET", "HEAD", "GET"]


async def test_rfc9110_13_1_1_if_match_answered_412_from_cache(proxy: Proxied) -> None:
    proxy.origin.set("/im", headers={"Cache-Control": "max-age=600", "ETag": '"v1"'}, body="x")
    await proxy.client.get("/im")
    failed = await proxy.client.get("/im", headers={"If-Match": '"v2"'})
    assert failed.status_code == 412 and failed.content == b""
    assert "cache-control" not in failed.headers
    held = await proxy.client.get("/im", headers={"If-Match": '"v1"'})
    assert held.status_code == 200 and held.text == "x"
    assert proxy.origin.hits["/im"] == 1


async def test_rfc9110_13_1_4_if_unmodified_since_on_a_miss(proxy: Proxied) -> None:
    lm = "Tue, 01 Dec 2026 10:00:00 GMT"
    proxy.origin.set("/ius", headers={"Cache-Control": "max-age=600", "Last-Modified": lm}, body="x")
    failed = await proxy.client.get("/ius", headers={"If-Unmodified-Since": "Tue, 01 Dec 2026 09:00:00 GMT"})
    assert failed.status_code == 412
    assert (await proxy.client.get("/ius")).headers["cache-status"].startswith("cacheproxy; hit")
