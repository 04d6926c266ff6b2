"""Many workers and instances, one cache: the Redis store, Redis Cluster, the two-tier L1, cross-process single-flight.

Every test runs against real ``redis-server`` processes started by the fixtures (tests/redis_fixtures.py) and a real
origin on loopback; several proxies run either in this process (two ``ProxyApp`` instances, as two hosts would) or
as ``cacheproxy serve --workers 4`` subprocesses.
"""

from __future__ import annotations

import asyncio
import os
import sys

import httpx
import pytest

from proxy.cache.keys import primary_key
from proxy.messages import RequestHead
from proxy.rules.model import Rules
from proxy.storage import redis_layout as layout
from tests.e2e.conftest import run_proxy
from tests.redis_servers import RedisServer
from tests.support.origin import RunningOrigin
from tests.support.servers import free_port, run_process

pytestmark = pytest.mark.redis

CACHED = {"Cache-Control": "max-age=60", "ETag": '"s"'}


def status(response: httpx.Response) -> str:
    return response.headers["cache-status"]


async def test_two_instances_share_entries_through_redis(origin: RunningOrigin, redis_url: str) -> None:
    origin.set("/shared", headers=CACHED, body="one copy")
    async with run_proxy(origin, store=redis_url) as a, run_proxy(origin, store=redis_url) as b:
        await a.client.get("/shared")
        # Host differs between the two proxies' URLs (their ports): send the same Host, as behind one balancer.
        response = await b.client.get("/shared", headers={"Host": "api.example"})
        await a.client.get("/shared", headers={"Host": "api.example"})
        again = await b.client.get("/shared", headers={"Host": "api.example"})
    assert response.text == "one copy"
    assert "hit" in status(again)
    assert origin.hits["/shared"] == 2  # one per Host: a's own and the shared api.example


async def test_two_instances_share_entries_through_redis_cluster(origin: RunningOrigin, redis_cluster_url: str) -> None:
    origin.set("/clustered", headers=CACHED, body="sharded")
    hosts = [f"h{i}.example" for i in range(8)]  # several keys, so several slots and nodes
    async with run_proxy(origin, store=redis_cluster_url) as a, run_proxy(origin, store=redis_cluster_url) as b:
        for host in hosts:
            await a.client.get("/clustered", headers={"Host": host})
        answers = [await b.client.get("/clustered", headers={"Host": host}) for host in hosts]
    assert all("hit" in status(r) for r in answers)
    assert origin.hits["/clustered"] == len(hosts)


async def test_purge_on_one_instance_is_seen_by_the_other_with_l1(origin: RunningOrigin, redis_url: str) -> None:
    origin.set("/tagged", headers={**CACHED, "Surrogate-Key": "t1"}, body="v1")
    host = {"Host": "api.example"}
    async with (
        run_proxy(origin, store=redis_url, l1_budget=8 * 1024 * 1024) as a,
        run_proxy(origin, store=redis_url, l1_budget=8 * 1024 * 1024) as b,
    ):
        await a.client.get("/tagged", headers=host)
        assert "hit" in status(await b.client.get("/tagged", headers=host))  # now in b's L1 too
        purged = await a.client.post("/_cacheproxy/purge", json={"tag": "t1"})
        assert purged.json() == {"purged": 1}
        origin.set("/tagged", headers={**CACHED, "Surrogate-Key": "t1"}, body="v2")
        for _ in range(20):  # b's L1 copy goes within milliseconds (pub/sub)
            response = await b.client.get("/tagged", headers=host)
            if response.text == "v2":
                break
            await asyncio.sleep(0.05)
    assert response.text == "v2"


async def test_workers_4_share_one_cache_and_coalesce_across_processes(origin: RunningOrigin, redis_url: str) -> None:
    origin.set("/cold", headers=CACHED, body="cold", delay=1.0)
    origin.set("/warm", headers=CACHED, body="warm")
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "proxy",
        "serve",
        "--upstream",
        origin.url,
        "--port",
        str(port),
        "--store",
        redis_url,
        "--workers",
        "4",
        "--no-access-log",
    ]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    url = f"http://127.0.0.1:{port}"
    # Starting blocks this loop for a moment; nothing here needs it until the workers are up.
    with run_process(args, ready_url=url + "/_cacheproxy/healthz", env=env, timeout=60):
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)  # new connections: every worker
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
            warm = [await client.get("/warm") for _ in range(40)]
            cold = await asyncio.gather(*(client.get("/cold") for _ in range(1000)))
    assert origin.hits["/warm"] == 1
    assert sum("hit" in status(r) for r in warm) == 39
    assert origin.hits["/cold"] == 1
    assert {r.status_code for r in cold} == {200}
    assert {r.text for r in cold} == {"cold"}


async def test_crashed_lease_holder_delays_others_by_at_most_the_lease(
    origin: RunningOrigin, redis_url: str, redis_server: RedisServer
) -> None:
    origin.set("/leased", headers=CACHED, body="finally")
    async with run_proxy(origin, store=redis_url) as proxy:
        host = proxy.url.removeprefix("http://")
        key = primary_key(RequestHead("GET", "http", host, "/leased"), Rules.builtin().default)
        with redis_server.client() as client:  # a leader in another process took the lease and died
            client.set(layout.lease_key(key), "dead-process", px=1500)
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await proxy.client.get("/leased", timeout=30)
        waited = loop.time() - started
    assert response.text == "finally"
    assert origin.hits["/leased"] == 1
    assert 1.0 <= waited < 1.5 + 2.0  # held back while the lease lived, not beyond it


async def test_redis_killed_mid_load_loses_no_request(
    origin: RunningOrigin, redis_url: str, redis_server: RedisServer
) -> None:
    origin.set("/steady", headers=CACHED, body="steady")
    async with run_proxy(origin, store=redis_url) as proxy:
        failures: list[int] = []

        async def load() -> int:
            done = 0
            for i in range(150):
                response = await proxy.client.get(f"/steady?n={i % 30}")
                if response.status_code != 200 or response.text != "steady":
                    failures.append(response.status_code)
                done += 1
            return done

        tasks = [asyncio.create_task(load()) for _ in range(4)]
        await asyncio.sleep(0.3)
        redis_server.kill()
        counts = await asyncio.gather(*tasks)
        ready = await proxy.client.get("/_cacheproxy/readyz")
    assert failures == []
    assert sum(counts) == 600
    assert ready.status_code == 200
    assert ready.json()["store"] == "degraded"


async def test_redis_restarted_empty_keeps_serving(
    origin: RunningOrigin, redis_url: str, redis_server: RedisServer
) -> None:
    origin.set("/again", headers=CACHED, body="again")
    async with run_proxy(origin, store=redis_url) as proxy:
        await proxy.client.get("/again")
        redis_server.restart()
        responses = [await proxy.client.get("/again") for _ in range(5)]
    assert all(r.status_code == 200 and r.text == "again" for r in responses)
