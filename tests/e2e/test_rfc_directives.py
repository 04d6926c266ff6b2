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
