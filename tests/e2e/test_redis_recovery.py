"""After Redis returns (issue 14 §3): the admin purge works again within 5 s, readyz says ok no sooner than it does,
and what was purged or invalidated during the outage is queued, answered as such, replayed and counted.

A real proxy under uvicorn on loopback, a real origin, and the session's ``redis-server``, killed and restarted on
the same port by the test (the ``redis_url`` fixture restarts it for later tests should this one fail midway).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from proxy.errors import StorageError
from proxy.storage.memory import MemoryStorage
from tests.e2e.conftest import Proxied, run_proxy
from tests.redis_servers import RedisServer
from tests.support.origin import RunningOrigin

pytestmark = pytest.mark.redis

CACHED = {"Cache-Control": "max-age=60", "Surrogate-Key": "items"}
PATHS = [f"/items/{i}" for i in range(40)]
RECOVERY = 5.0


async def metric(proxy: Proxied, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    text = (await proxy.client.get("/_cacheproxy/metrics")).text
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(part in line for part in wanted.split(",")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def poll(proxy: Proxied) -> tuple[str, int]:
    """readyz's store state, then the status of a prefix purge, back to back."""
    ready = (await proxy.client.get("/_cacheproxy/readyz")).json()["store"]
    purge = await proxy.client.post("/_cacheproxy/purge", json={"prefix": "/items/"})
    return ready, purge.status_code


async def test_issue14_after_redis_returns_purge_and_readyz_agree_within_5s(
    origin: RunningOrigin, redis_url: str, redis_server: RedisServer
) -> None:
    for path in PATHS:
        origin.set(path, headers=CACHED, body=f"body of {path}")
    async with run_proxy(origin, store=redis_url) as proxy:
        await asyncio.gather(*(proxy.client.get(path) for path in PATHS))  # a burst: many pooled connections
        assert (await proxy.client.post("/_cacheproxy/purge", json={"tag": "items"})).json() == {"purged": 40}
        await asyncio.gather(*(proxy.client.get(path) for path in PATHS))

        redis_server.kill()
        assert all(r.status_code == 200 for r in await asyncio.gather(*(proxy.client.get(p) for p in PATHS)))
        during = await proxy.client.post("/_cacheproxy/purge", json={"tag": "items"})
        assert during.status_code == 503
        assert during.json()["queued"] is True
        assert (await proxy.client.post("/items/1", content=b"a write")).status_code == 200  # its invalidation too
        assert (await proxy.client.get("/_cacheproxy/readyz")).json()["store"] == "degraded"

        await asyncio.to_thread(redis_server.restart)
        back = time.monotonic()
        polls: list[tuple[float, str, int]] = []
        while time.monotonic() - back < RECOVERY + 2:
            ready, status = await poll(proxy)
            polls.append((time.monotonic() - back, ready, status))
            if len(polls) >= 10 and all(p[1:] == ("ok", 200) for p in polls[-10:]):
                break
            await asyncio.sleep(0.1)
        queued = await metric(proxy, "cacheproxy_store_deferred_invalidations_total", store="redis", outcome="queued")
        replayed = await metric(
            proxy, "cacheproxy_store_deferred_invalidations_total", store="redis", outcome="replayed"
        )
        after = await asyncio.gather(*(proxy.client.get(path) for path in PATHS))

    first_ok = next((at for at, _, status in polls if status == 200), None)
    print(f"first purge ok {first_ok} s after Redis returned; polls: {[(round(a, 2), r, s) for a, r, s in polls]}")
    assert first_ok is not None and first_ok <= RECOVERY
    assert [p for p in polls if p[1] == "ok" and p[2] != 200] == []  # readyz never ok while a purge failed
    assert all(p[2] == 200 for p in polls if p[0] > first_ok)  # and purges never failed again
    assert queued >= 2 and replayed >= 2  # the tag purge and the write's invalidation
    assert all(r.status_code == 200 and r.text == f"body of {p}" for r, p in zip(after, PATHS, strict=True))


async def test_issue14_readyz_says_degraded_while_a_purge_would_fail(
    origin: RunningOrigin, redis_url: str, redis_server: RedisServer
) -> None:
    async with run_proxy(origin, store=redis_url) as proxy:
        assert await poll(proxy) == ("ok", 200)
        redis_server.kill()
        states = [await poll(proxy) for _ in range(8)]
        await asyncio.to_thread(redis_server.restart)
    assert all(status == 503 for _, status in states)
    assert all(ready == "degraded" for ready, _ in states)


async def test_issue14_queued_purge_answer_names_the_queue(
    origin: RunningOrigin, redis_url: str, redis_server: RedisServer
) -> None:
    async with run_proxy(origin, store=redis_url) as proxy:
        redis_server.kill()
        try:
            answer = await proxy.client.post("/_cacheproxy/purge", json={"url": "/x"})
        finally:
            await asyncio.to_thread(redis_server.restart)
    assert answer.status_code == 503
    body = answer.json()
    assert body["queued"] is True
    assert "queued, applied when the store is back" in body["error"]


async def test_issue14_a_failed_purge_of_a_store_without_a_queue_is_not_called_queued(
    origin: RunningOrigin, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(_self: MemoryStorage, _tag: str) -> int:
        raise StorageError("broken")

    monkeypatch.setattr(MemoryStorage, "delete_tag", broken)
    async with run_proxy(origin) as proxy:
        answer = await proxy.client.post("/_cacheproxy/purge", json={"tag": "x"})
    assert answer.status_code == 503
    assert answer.json()["queued"] is False
