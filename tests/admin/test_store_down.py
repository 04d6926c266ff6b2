"""With the Redis store down, a response says it was not stored (``detail=store-unavailable``) and it is counted."""

from __future__ import annotations

import re

from tests.admin.conftest import CACHEABLE, run_proxy
from tests.support.origin import RunningOrigin
from tests.support.servers import free_port


def store_errors(metrics: str) -> int:
    """Failed and skipped Redis operations, from ``cacheproxy_store_errors_total``."""
    found = re.findall(r'^cacheproxy_store_errors_total\{op="(put|skipped)",store="redis"\} (\S+)$', metrics, re.M)
    return int(sum(float(value) for _, value in found))


async def test_issue13_5_redis_down_says_store_unavailable_not_stored(origin: RunningOrigin) -> None:
    origin.set("/down", headers=CACHEABLE, body="d")
    nothing_there = f"redis://127.0.0.1:{free_port()}/0"  # a port nobody listens on: every write fails
    async with run_proxy(origin.url, store=nothing_there) as proxy:
        first = await proxy.client.get("/down")
        second = await proxy.client.get("/down")
        metrics = (await proxy.client.get("/_cacheproxy/metrics")).text
    for response in (first, second):
        assert response.status_code == 200
        assert response.text == "d"
        status = response.headers["cache-status"]
        assert "stored" not in status.split("; ")
        assert "detail=store-unavailable" in status
    assert origin.hits["/down"] == 2  # nothing was stored, so nothing was served from the cache
    assert store_errors(metrics) >= 2


async def test_issue13_5_redis_up_still_says_stored(origin: RunningOrigin, redis_url: str) -> None:
    origin.set("/up", headers=CACHEABLE, body="u")
    async with run_proxy(origin.url, store=redis_url) as proxy:
        first = await proxy.client.get("/up")
    assert first.headers["cache-status"].endswith("; stored")
