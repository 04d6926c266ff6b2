"""Issue 15 items 3, 8 and 11 over the wire: 304 selection (RFC 9111 §4.3.3, §4.3.4), HEAD freshening a stored GET
(§4.3.5), and the optional behaviours of §4.1, §4.3.2 and RFC 9110 §9.3.3."""

from __future__ import annotations

from tests.e2e.conftest import Proxied

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
