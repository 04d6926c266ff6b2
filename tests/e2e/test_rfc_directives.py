"""Issue 15 items 4 and 10 over the wire: CDN-Cache-Control as a Structured Field (RFC 9213 §2.1) and request
directives on stale responses (RFC 9111 §5.2.1, §5.2.2, RFC 5861)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Proxied


def _hit(response_status: str) -> bool:
    return response_status.startswith("cacheproxy; hit")


@pytest.mark.parametrize(
    "cdn",
    ["max-age=10000, &&&&&", 'max-age="10000"', "max-age=1.5", "max-age=?1"],
    ids=[
        "rfc9213-2.1-unparsable-field-ignored",
        "rfc9213-2.1-string-member-ignores-field",
        "rfc9213-2.1-decimal-member-ignores-field",
        "rfc9213-2.1-boolean-member-ignores-field",
    ],
)
async def test_invalid_cdn_cache_control_falls_back_to_cache_control(proxy: Proxied, cdn: str) -> None:
    proxy.origin.set("/cdn", headers={"Cache-Control": "no-store", "CDN-Cache-Control": cdn}, body="x")
    first = await proxy.client.get("/cdn")
    assert first.headers["cache-status"] == "cacheproxy; fwd=uri-miss; detail=no-store"
    await proxy.client.get("/cdn")
    assert proxy.origin.hits["/cdn"] == 2


async def test_rfc9213_2_2_valid_cdn_cache_control_overrides_cache_control(proxy: Proxied) -> None:
    proxy.origin.set("/cdn-ok", headers={"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=600"}, body="x")
    await proxy.client.get("/cdn-ok")
    assert _hit((await proxy.client.get("/cdn-ok")).headers["cache-status"])
    assert proxy.origin.hits["/cdn-ok"] == 1


STALE_ON_ARRIVAL = {"Age": "100", "ETag": '"v1"'}  # max-age=60 and 100 s old: stale by 40 s as it arrives


async def test_rfc9111_5_2_1_2_max_stale_serves_a_stale_entry(proxy: Proxied) -> None:
    proxy.origin.set("/ms", headers={"Cache-Control": "max-age=60", **STALE_ON_ARRIVAL}, body="old")
    await proxy.client.get("/ms")
    served = await proxy.client.get("/ms", headers={"Cache-Control": "max-stale=50"})
    assert served.headers["cache-status"].startswith("cacheproxy; hit; ttl=-")
    assert "detail=max-stale" in served.headers["cache-status"]
    assert proxy.origin.hits["/ms"] == 1
    too_old = await proxy.client.get("/ms", headers={"Cache-Control": "max-stale=30"})
    assert "fwd=stale" in too_old.headers["cache-status"]
    assert proxy.origin.requests[-1].headers.get("if-none-match") == '"v1"'


@pytest.mark.parametrize(
    "directive",
    ["must-revalidate", "proxy-revalidate"],
    ids=["rfc9111-5.2.2.2-must-revalidate-beats-max-stale", "rfc9111-5.2.2.8-proxy-revalidate-beats-max-stale"],
)
async def test_revalidate_directives_beat_max_stale(proxy: Proxied, directive: str) -> None:
    proxy.origin.set("/mr", headers={"Cache-Control": f"max-age=60, {directive}", **STALE_ON_ARRIVAL}, body="x")
    await proxy.client.get("/mr")
    again = await proxy.client.get("/mr", headers={"Cache-Control": "max-stale"})
    assert "fwd=stale" in again.headers["cache-status"]
    assert proxy.origin.hits["/mr"] == 2


async def test_rfc9111_5_2_1_7_only_if_cached_504_on_stale_and_on_miss(proxy: Proxied) -> None:
    proxy.origin.set("/oic", headers={"Cache-Control": "max-age=60", **STALE_ON_ARRIVAL}, body="x")
    assert (await proxy.client.get("/none", headers={"Cache-Control": "only-if-cached"})).status_code == 504
    await proxy.client.get("/oic")
    assert (await proxy.client.get("/oic", headers={"Cache-Control": "only-if-cached"})).status_code == 504
    both = await proxy.client.get("/oic", headers={"Cache-Control": "only-if-cached, max-stale"})
    assert both.status_code == 200 and both.text == "x"
    assert proxy.origin.hits["/oic"] == 1 and proxy.origin.hits["/none"] == 0


async def test_rfc9111_5_2_1_3_min_fresh_goes_upstream(proxy: Proxied) -> None:
    proxy.origin.set("/mf", headers={"Cache-Control": "max-age=300", "ETag": '"v1"'}, body="x")
    await proxy.client.get("/mf")
    assert (
        (await proxy.client.get("/mf", headers={"Cache-Control": "min-fresh=10"}))
        .headers["cache-status"]
        .startswith("cacheproxy; hit")
    )
    forwarded = await proxy.client.get("/mf", headers={"Cache-Control": "min-fresh=1000"})
    assert "fwd=stale" in forwarded.headers["cache-status"]
    assert proxy.origin.requests[-1].headers.get("if-none-match") == '"v1"'
    assert proxy.origin.hits["/mf"] == 2
