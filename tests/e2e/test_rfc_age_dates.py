"""Issue 15 items 1 and 2 over the wire: Age on every response (RFC 9111 §4.2.3, §5.1) and strict HTTP dates
(RFC 9110 §5.6.7, RFC 9111 §5.3)."""

from __future__ import annotations

from tests.e2e.conftest import Proxied


async def test_rfc9111_5_1_age_kept_on_a_forwarded_not_stored_response(proxy: Proxied) -> None:
    proxy.origin.set("/ns", headers={"Cache-Control": "no-store", "Age": "7200"}, body="x")
    response = await proxy.client.get("/ns")
    assert "fwd=uri-miss" in response.headers["cache-status"] and "stored" not in response.headers["cache-status"]
    assert response.headers.get_list("age") == [response.headers["age"]]
    assert int(response.headers["age"]) >= 7200


async def test_rfc9111_5_1_age_on_a_stored_miss(proxy: Proxied) -> None:
    proxy.origin.set("/st", headers={"Cache-Control": "max-age=86400", "Age": "7200"}, body="x")
    response = await proxy.client.get("/st")
    assert response.headers["cache-status"] == "cacheproxy; fwd=uri-miss; stored"
    assert int(response.headers["age"]) >= 7200
    hit = await proxy.client.get("/st")
    assert int(hit.headers["age"]) >= 7200
    assert proxy.origin.hits["/st"] == 1


async def test_rfc9111_5_1_age_on_a_passed_through_post(proxy: Proxied) -> None:
    proxy.origin.set("/p", headers={"Age": "30"}, body="done")
    response = await proxy.client.post("/p", content=b"data")
    assert "fwd=method" in response.headers["cache-status"]
    assert int(response.headers["age"]) >= 30


async def test_rfc9111_5_1_invalid_upstream_age_ignored_so_response_fresh(proxy: Proxied) -> None:
    proxy.origin.set("/neg", headers={"Cache-Control": "max-age=3600", "Age": "-7200"}, body="x")
    first = await proxy.client.get("/neg")
    assert int(first.headers["age"]) < 3600
    second = await proxy.client.get("/neg")
    assert second.headers["cache-status"].startswith("cacheproxy; hit")
    assert proxy.origin.hits["/neg"] == 1


async def test_rfc9111_5_1_age_list_with_an_old_member_is_stale(proxy: Proxied) -> None:
    proxy.origin.set("/two", headers=[("Cache-Control", "max-age=3600"), ("Age", "0"), ("Age", "7200")], body="x")
    await proxy.client.get("/two")
    again = await proxy.client.get("/two")
    assert "hit" not in again.headers["cache-status"]
    assert proxy.origin.hits["/two"] == 2


async def test_rfc9111_5_3_expires_in_utc_is_invalid_so_expired(proxy: Proxied) -> None:
    proxy.origin.set("/utc", headers={"Expires": "Thu, 18 Aug 2050 02:01:18 UTC"}, body="x")
    await proxy.client.get("/utc")
    second = await proxy.client.get("/utc")
    assert "hit" not in second.headers["cache-status"]
    assert proxy.origin.hits["/utc"] == 2


async def test_rfc9111_5_3_several_expires_lines_are_invalid(proxy: Proxied) -> None:
    far = "Thu, 18 Aug 2050 02:01:18 GMT"
    proxy.origin.set("/dup", headers=[("Expires", far), ("Expires", far)], body="x")
    await proxy.client.get("/dup")
    await proxy.client.get("/dup")
    assert proxy.origin.hits["/dup"] == 2


async def test_rfc9110_5_6_7_valid_expires_is_obeyed(proxy: Proxied) -> None:
    proxy.origin.set("/ok", headers={"Expires": "Thu, 18 Aug 2050 02:01:18 GMT"}, body="x")
    await proxy.client.get("/ok")
    second = await proxy.client.get("/ok")
    assert second.headers["cache-status"].startswith("cacheproxy; hit")
    assert proxy.origin.hits["/ok"] == 1
