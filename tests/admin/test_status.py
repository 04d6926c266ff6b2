"""The status page and its JSON: served self-contained, figures matching the traffic."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from proxy.admin.observe import BUCKET_SECONDS, BUCKETS, Traffic
from proxy.cache.answer import CacheOutcome
from tests.admin.conftest import CACHEABLE, RunningProxy
from tests.support.origin import RunningOrigin

ROOT = Path(__file__).resolve().parents[2]


async def test_status_page_is_self_contained(proxy: RunningProxy) -> None:
    response = await proxy.client.get("/_cacheproxy/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert 'id="chart"' in html and 'id="purge-form"' in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "no external scripts, styles or fonts"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'", policy)


async def test_status_page_prefix_redirects(proxy: RunningProxy) -> None:
    response = await proxy.client.get("/_cacheproxy")
    assert (response.status_code, response.headers["location"]) == (308, "/_cacheproxy/")


def test_status_page_in_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "admin/*.html" in config["tool"]["setuptools"]["package-data"]["proxy"]
    assert (ROOT / "proxy/admin/status.html").is_file()


async def test_stats_json_counts_traffic(proxy: RunningProxy, origin: RunningOrigin) -> None:
    origin.set("/s", headers=CACHEABLE, body="s" * 10)
    for _ in range(4):
        await proxy.client.get("/s")
    await proxy.client.post("/form", content=b"x")
    data = (await proxy.client.get("/_cacheproxy/stats.json")).json()
    assert data["outcomes"]["hit"] == 3
    assert data["outcomes"]["miss"] == 1
    assert data["outcomes"]["bypass"] == 1
    assert set(data["outcomes"]) == {o.value for o in CacheOutcome}
    assert data["requests"] == 5
    assert data["hit_ratio"] == 0.75  # bypassed requests are not in the denominator
    assert len(data["series"]) == BUCKETS
    assert sum(b["requests"] for b in data["series"]) == 4
    assert data["routes"] == [{"route": "default", "requests": 5, "hits": 3, "hit_ratio": 0.75}]
    (memory,) = data["stores"]
    assert memory["name"] == "memory" and memory["entries"] == 1 and memory["budget"] == 256 * 1024 * 1024


def test_traffic_series_buckets_and_window() -> None:
    """10-second buckets, oldest first; traffic older than 10 minutes falls out of the window."""
    traffic = Traffic()
    start = 1_000_000.0
    traffic.add(CacheOutcome.MISS, "r", start)
    traffic.add(CacheOutcome.HIT, "r", start + 1)
    traffic.add(CacheOutcome.HIT, "r", start + BUCKET_SECONDS)
    series = traffic.snapshot(start + BUCKET_SECONDS)["series"]
    assert [(b["requests"], b["hits"], b["ratio"]) for b in series[-2:]] == [(2, 1, 0.5), (1, 1, 1.0)]
    assert series[-1]["t"] == start + BUCKET_SECONDS
    later = start + BUCKETS * BUCKET_SECONDS + BUCKET_SECONDS
    traffic.add(CacheOutcome.HIT, "r", later)
    snapshot = traffic.snapshot(later)
    assert sum(b["requests"] for b in snapshot["series"]) == 1
    assert len(traffic.buckets) <= BUCKETS
    assert snapshot["routes"] == [{"route": "r", "requests": 4, "hits": 3, "hit_ratio": 0.75}]
