"""Issue 14 §1 end to end: two proxies (two workers, or two hosts) on one real Redis, a real origin that holds a GET.

A GET through proxy A is held at the origin; a POST through proxy B answers and invalidates; the held GET then
answers with the old version. It must not be stored (Redis' put script refuses it: the key's ``~i`` is after the
fetch began), and a GET sent after the POST answered must get the new version, through either proxy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.conftest import run_proxy
from tests.support.origin import RunningOrigin

pytestmark = pytest.mark.redis

HOST = {"Host": "api.example"}  # both proxies as behind one balancer
CACHED = {"Cache-Control": "max-age=60"}


def status(response: httpx.Response) -> str:
    return response.headers["cache-status"]


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def test_issue14_a_write_on_one_proxy_is_not_lost_to_a_fetch_in_flight_on_another(
    origin: RunningOrigin, redis_url: str
) -> None:
    origin.set("/x", headers=CACHED, body="v1", delay=1.5)  # the GET's answer, held 1.5 s at the origin
    async with run_proxy(origin, store=redis_url) as a, run_proxy(origin, store=redis_url) as b:
        held = asyncio.ensure_future(a.client.get("/x", headers=HOST))
        await wait_for(lambda: origin.origin.in_flight == 1, "the GET reached the origin")
        origin.set("/x", headers=CACHED, body="v2")  # the write makes version 2
        written = await b.client.post("/x", headers=HOST, content=b"new")
        assert written.status_code == 200
        after_on_b = await b.client.get("/x", headers=HOST)  # sent after the POST answered
        after_on_a = await a.client.get("/x", headers=HOST)  # on the proxy whose fetch is in flight
        old = await held
        later = [await proxy.client.get("/x", headers=HOST) for proxy in (a, b)]
    assert (old.text, status(old)) == ("v1", "cacheproxy; fwd=uri-miss; detail=invalidated")
    assert after_on_b.text == "v2"
    assert after_on_a.text == "v2"
    assert [response.text for response in later] == ["v2", "v2"]
    assert all("hit" in status(response) for response in later)
