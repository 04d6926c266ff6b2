"""healthz (the process is up) and readyz (upstream reachable; store state in the body)."""

from __future__ import annotations

from proxy.messages import Entry
from proxy.storage.base import StoreStats
from tests.admin.conftest import RunningProxy, run_proxy
from tests.support.origin import RunningOrigin


async def test_healthz_ok(proxy: RunningProxy) -> None:
    response = await proxy.client.get("/_cacheproxy/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")
    assert response.headers["cache-control"] == "no-store"


async def test_readyz_ok_when_upstream_answers(proxy: RunningProxy, origin: RunningOrigin) -> None:
    response = await proxy.client.get("/_cacheproxy/readyz")
    assert response.status_code == 200
    assert response.json() == {"upstream": "ok", "store": "ok", "stores": {"memory": "ok"}}
    assert origin.requests[-1].method == "HEAD"


async def test_readyz_503_when_upstream_down(proxy: RunningProxy, origin: RunningOrigin) -> None:
    await origin.server.stop()
    try:
        response = await proxy.client.get("/_cacheproxy/readyz")
    finally:
        await origin.server.start()
    assert response.status_code == 503
    assert response.json()["upstream"] == "unreachable"
    healthz = await proxy.client.get("/_cacheproxy/healthz")
    assert healthz.status_code == 200
    again = await proxy.client.get("/_cacheproxy/readyz")
    assert again.status_code == 200


class DegradedStore:
    """A store that answers but runs degraded (as Redis does while its circuit breaker is open)."""

    name = "redis"
    degraded = True

    async def get(self, key: str) -> list[Entry]:
        return []

    async def put(self, key: str, entry: Entry, ttl: float) -> None:
        return None

    async def delete(self, key: str) -> int:
        return 0

    async def delete_tag(self, tag: str) -> int:
        return 0

    async def delete_prefix(self, prefix: str) -> int:
        return 0

    async def stats(self) -> StoreStats:
        return StoreStats(0, 0, None, 0)

    async def ping(self) -> bool:
        return False

    async def close(self) -> None:
        return None


async def test_readyz_degraded_store_stays_ready(origin: RunningOrigin) -> None:
    async with run_proxy(origin.url) as proxy:
        proxy.app.runtime.set_store("redis", DegradedStore())
        response = await proxy.client.get("/_cacheproxy/readyz")
    assert response.status_code == 200
    assert response.json() == {"upstream": "ok", "store": "degraded", "stores": {"memory": "ok", "redis": "degraded"}}
