"""Eviction figures reach Prometheus and the status page's stats.json: evictions per policy queue, ghost hits."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from proxy.admin.metrics import Metrics
from tests.admin.conftest import CACHEABLE, run_proxy
from tests.support.origin import RunningOrigin


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


async def entry_size(origin: RunningOrigin, path: str) -> int:
    """What the memory store charges for the response at ``path`` (``Entry.size``), measured on a throwaway proxy."""
    async with run_proxy(origin.url) as proxy:
        await proxy.client.get(path)
        stats = await proxy.app.runtime.stores["memory"].stats()
    assert stats.entries == 1
    return stats.bytes  # the memory store's bytes are the sum of its entries' Entry.size


async def test_s3fifo_evictions_by_queue_and_ghost_hits_in_metrics_and_stats_json(origin: RunningOrigin) -> None:
    """Budget for two of the 3000-byte bodies' entries: /1 and /2 fill it, /3 evicts /1 from small; /1 again is a
    ghost hit."""
    for n in (1, 2, 3):
        origin.set(f"/big/{n}", headers=CACHEABLE, body=str(n) * 3000)
    budget = 2 * await entry_size(origin, "/big/1") + 200  # every /big/n entry has the same size
    async with run_proxy(origin.url, memory_budget=budget, eviction="s3fifo") as proxy:
        for n in (1, 2, 3, 1):
            assert (await proxy.client.get(f"/big/{n}")).status_code == 200
        text = (await proxy.client.get("/_cacheproxy/metrics")).text
        data = (await proxy.client.get("/_cacheproxy/stats.json")).json()
    found = samples(text)
    labels = {"store": "memory", "policy": "s3fifo"}
    assert found[("cacheproxy_policy_evictions_total", frozenset({**labels, "queue": "small"}.items()))] == 2
    assert found[("cacheproxy_policy_evictions_total", frozenset({**labels, "queue": "main"}.items()))] == 0
    assert found[("cacheproxy_ghost_hits_total", frozenset(labels.items()))] == 1
    (memory,) = data["stores"]
    assert (memory["policy"], memory["evictions_by_queue"], memory["ghost_hits"]) == (
        "s3fifo",
        {"small": 2, "main": 0},
        1,
    )


async def test_lru_policy_is_labelled_lru(origin: RunningOrigin) -> None:
    origin.set("/a", headers=CACHEABLE, body="a")
    async with run_proxy(origin.url, eviction="lru") as proxy:
        await proxy.client.get("/a")
        text = (await proxy.client.get("/_cacheproxy/metrics")).text
    found = samples(text)
    assert (
        found[
            (
                "cacheproxy_policy_evictions_total",
                frozenset({"store": "memory", "policy": "lru", "queue": "lru"}.items()),
            )
        ]
        == 0
    )


def test_no_memory_policy_no_policy_samples() -> None:
    metrics = Metrics()
    names = {s.name for f in text_string_to_metric_families(metrics.render().decode()) for s in f.samples}
    assert "cacheproxy_ghost_hits_total" not in names
