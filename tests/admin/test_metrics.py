"""Prometheus metrics: every family present, counting what the proxy did, bounded labels, multiprocess sums."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.admin.metrics import FAMILIES, Metrics, status_class
from proxy.admin.observe import AdminObserver
from proxy.cache.answer import Answer, CacheOutcome
from proxy.clock import FakeClock
from proxy.messages import Headers, RequestHead
from tests.admin.conftest import CACHEABLE, RunningProxy, run_proxy
from tests.admin.test_health import DegradedStore
from tests.support.origin import RunningOrigin

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[set[str], Samples]:
    """The family names (as exposed, counters with ``_total``) and every sample of a scrape."""
    names: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        names.add(family.name + "_total" if family.type == "counter" else family.name)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return names, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(proxy: RunningProxy) -> tuple[set[str], Samples]:
    response = await proxy.client.get("/_cacheproxy/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "2xx"), ("304", "3xx"), (404, "4xx"), (503, "5xx"), (None, "error"), ("", "error"), ("99", "error")],
)
def test_metrics_status_class(status: int | str | None, expected: str) -> None:
    assert status_class(status) == expected


async def test_metrics_every_family_exposed(proxy: RunningProxy) -> None:
    names, _ = await scrape(proxy)
    assert set(FAMILIES) <= names


async def test_metrics_count_a_miss_then_a_hit(proxy: RunningProxy, origin: RunningOrigin) -> None:
    origin.set("/m", headers=CACHEABLE, body="metered")
    await proxy.client.get("/m")
    await proxy.client.get("/m")
    _, samples = await scrape(proxy)
    assert value(samples, "cacheproxy_requests_total", outcome="hit", route="default") == 1
    assert value(samples, "cacheproxy_requests_total", outcome="miss", route="default") == 1
    assert value(samples, "cacheproxy_upstream_requests_total", status_class="2xx") == 1
    assert value(samples, "cacheproxy_upstream_latency_seconds_count", status_class="2xx") == 1
    assert value(samples, "cacheproxy_request_duration_seconds_count", outcome="hit") == 1
    assert value(samples, "cacheproxy_stored_entries", store="memory") == 1
    assert value(samples, "cacheproxy_stored_bytes", store="memory") > len("metered")
    assert value(samples, "cacheproxy_store_budget_bytes", store="memory") == 256 * 1024 * 1024


async def test_metrics_labels_are_route_names_never_urls(proxy: RunningProxy, origin: RunningOrigin) -> None:
    for i in range(5):
        await proxy.client.get(f"/item/{i}?q={i}")
    response = await proxy.client.get("/_cacheproxy/metrics")
    assert "/item/" not in response.text
    _, samples = await scrape(proxy)
    assert value(samples, "cacheproxy_requests_total", outcome="miss", route="default") == 5


async def test_metrics_upstream_failure_counted_as_error(proxy: RunningProxy, origin: RunningOrigin) -> None:
    await origin.server.stop()
    try:
        response = await proxy.client.get("/down")
    finally:
        await origin.server.start()
    assert response.status_code == 502
    _, samples = await scrape(proxy)
    assert value(samples, "cacheproxy_requests_total", outcome="error", route="default") == 1
    assert value(samples, "cacheproxy_upstream_requests_total", status_class="error") == 1


async def test_metrics_evictions_from_store_stats(origin: RunningOrigin) -> None:
    origin.set("/big/1", headers=CACHEABLE, body="x" * 10000)
    origin.set("/big/2", headers=CACHEABLE, body="y" * 10000)
    async with run_proxy(origin.url, memory_budget=20000) as proxy:  # one fits (Entry.size: body + ~5 KB), not two
        await proxy.client.get("/big/1")
        await proxy.client.get("/big/2")
        _, samples = await scrape(proxy)
    assert value(samples, "cacheproxy_evictions_total", store="memory") == 1
    assert value(samples, "cacheproxy_stored_entries", store="memory") == 1


async def test_metrics_purges_counted(proxy: RunningProxy, origin: RunningOrigin) -> None:
    origin.set("/pm", headers={**CACHEABLE, "Surrogate-Key": "k"}, body="p")
    await proxy.client.get("/pm")
    await proxy.client.post("/_cacheproxy/purge", json={"tag": "k"})
    await proxy.client.post("/_cacheproxy/purge", json={"url": "/nothing-here"})
    _, samples = await scrape(proxy)
    assert value(samples, "cacheproxy_purges_total", kind="tag") == 1
    assert value(samples, "cacheproxy_purges_total", kind="url") == 1
    assert value(samples, "cacheproxy_purged_entries_total") == 1


async def test_metrics_rule_reloads(origin: RunningOrigin, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("routes:\n  - name: a\n    match:\n      path: /a\n")
    async with run_proxy(origin.url, rules=rules) as proxy:
        assert proxy.app.runtime.rules.reload()
        rules.write_text("routes:\n  - name: a\n    match:\n      path: /a\n    ttl: soon\n")
        assert not proxy.app.runtime.rules.reload()
        _, samples = await scrape(proxy)
    assert value(samples, "cacheproxy_rule_reloads_total", result="ok") == 1
    assert value(samples, "cacheproxy_rule_reloads_total", result="error") == 1


class ErringStore(DegradedStore):
    def __init__(self) -> None:
        self.counts = {"get": 2, "put": 0}

    def error_counts(self) -> dict[str, int]:
        return dict(self.counts)


async def test_metrics_store_errors_from_error_counts(proxy: RunningProxy) -> None:
    store = ErringStore()
    proxy.app.runtime.set_store("redis", store)
    _, first = await scrape(proxy)
    store.counts["get"] = 5
    _, second = await scrape(proxy)
    assert value(first, "cacheproxy_store_errors_total", store="redis", op="get") == 2
    assert value(second, "cacheproxy_store_errors_total", store="redis", op="get") == 5
    assert value(second, "cacheproxy_store_errors_total", store="redis", op="put") == 0


class QueueingStore(DegradedStore):
    """A store that queues failed invalidations and pools connections (as Redis does), with figures set by the test."""

    def __init__(self) -> None:
        self.deferred = {"queued": 3, "replayed": 0, "collapsed": 0, "dropped": 0}
        self.connections = {"idle": 48, "in_use": 2}

    def deferred_counts(self) -> dict[str, int]:
        return dict(self.deferred)

    def connection_counts(self) -> dict[str, int]:
        return dict(self.connections)


async def test_metrics_deferred_invalidations_and_pooled_connections(proxy: RunningProxy) -> None:
    store = QueueingStore()
    proxy.app.runtime.set_store("redis", store)
    _, first = await scrape(proxy)
    store.deferred.update(queued=4, replayed=4)
    store.connections.update(idle=4, in_use=0)
    _, second = await scrape(proxy)
    family = "cacheproxy_store_deferred_invalidations_total"
    assert value(first, family, store="redis", outcome="queued") == 3
    assert value(first, family, store="redis", outcome="replayed") == 0
    assert (
        value(second, family, store="redis", outcome="queued"),
        value(second, family, store="redis", outcome="replayed"),
    ) == (4, 4)
    assert value(first, "cacheproxy_store_connections", store="redis", state="idle") == 48
    assert value(second, "cacheproxy_store_connections", store="redis", state="idle") == 4  # shrunk back


@pytest.mark.parametrize("outcome", list(CacheOutcome), ids=lambda o: f"outcome-{o.value}")
def test_metrics_every_outcome_counted(outcome: CacheOutcome) -> None:
    """Collapsed, stale, revalidated... each is its own label value (bounded by the enum)."""
    observer = AdminObserver(FakeClock(), access=False)
    request = RequestHead("GET", "http", "h", "/x", "", Headers(()))
    observer.request_done(request, Answer(200, [], outcome=outcome, route="r"), 0.001, 0)
    _, samples = parse(observer.metrics.render().decode())
    assert value(samples, "cacheproxy_requests_total", outcome=outcome.value, route="r") == 1
    assert value(samples, "cacheproxy_request_duration_seconds_count", outcome=outcome.value) == 1


WORKER = textwrap.dedent(
    """
    import sys
    from proxy.admin.metrics import Metrics
    metrics = Metrics()
    if sys.argv[1] == "count":
        metrics.requests.labels("hit", "default").inc()
        metrics.purges.labels("tag").inc()
    else:
        sys.stdout.write(metrics.render().decode())
    """
)


def test_metrics_multiprocess_sums_workers(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set, a scrape of one worker sums the counts of all of them."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", WORKER, "count"], env=env, check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-c", WORKER, "render"], env=env, check=True, timeout=60, capture_output=True, text=True
    ).stdout
    _, samples = parse(out)
    assert value(samples, "cacheproxy_requests_total", outcome="hit", route="default") == 2
    assert value(samples, "cacheproxy_purges_total", kind="tag") == 2


def test_metrics_prepare_multiprocess_cleans_old_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from proxy.admin.metrics import prepare_multiprocess, remove_multiprocess_dir

    (tmp_path / "counter_123.db").write_bytes(b"old")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert prepare_multiprocess() == tmp_path
    assert list(tmp_path.iterdir()) == []
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    made = prepare_multiprocess()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(made)
    assert made.is_dir()
    remove_multiprocess_dir(made)
    assert not made.exists()


def test_grafana_dashboard_uses_existing_families() -> None:
    """deploy/grafana/cacheproxy.json is valid JSON and every query names a family the proxy exposes."""
    dashboard = json.loads((ROOT / "deploy/grafana/cacheproxy.json").read_text())
    exposed, _ = parse(Metrics().render().decode())
    exposed |= set(FAMILIES)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    titles = " ".join(p.get("title", "") for p in dashboard["panels"]).lower()
    assert exprs
    for word in ("hit ratio", "outcome", "latency", "stored"):
        assert word in titles
    for expr in exprs:
        names = re.findall(r"\bcacheproxy_[a-z_]+", expr)
        assert names, expr
        for name in names:
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert family in exposed, f"{name} in {expr!r}"


def test_batched_tally_matches_direct_prometheus_observations() -> None:
    """The observer's batching (Tally) must expose exactly what one observe()/inc() per request would have."""
    from prometheus_client.parser import text_string_to_metric_families

    from proxy.admin.metrics import Metrics
    from proxy.admin.observe import Tally, Traffic
    from proxy.clock import FakeClock

    durations = [0.0001, 0.0005, 0.0007, 0.003, 0.2, 0.2, 45.0]
    latencies = [0.004, 0.01, 0.3, 31.0]
    direct, batched = Metrics(), Metrics()
    for value in durations:
        direct.requests.labels("hit", "r").inc()
        direct.duration.labels("hit").observe(value)
    for value in latencies:
        direct.upstream_requests.labels("2xx").inc()
        direct.upstream_latency.labels("2xx").observe(value)
    tally = Tally(batched, Traffic(), FakeClock())
    for value in durations:
        tally.add("hit", "r", value)
    for value in latencies:
        tally.add_upstream("2xx", value)
    tally.flush()

    def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        out = {}
        for family in text_string_to_metric_families(metrics.render().decode()):
            for s in family.samples:
                if not s.name.endswith("_created"):
                    out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    assert samples(batched) == samples(direct)
    assert samples(batched)[("cacheproxy_request_duration_seconds_count", (("outcome", "hit"),))] == 7


async def test_issue13_7_redis_stored_bytes_are_our_entries_not_used_memory(
    origin: RunningOrigin, redis_url: str
) -> None:
    body = "x" * 27
    origin.set("/r", headers=CACHEABLE, body=body)
    async with run_proxy(origin.url, store=redis_url) as proxy:
        _, empty = await scrape(proxy)
        await proxy.client.get("/r")
        _, one = await scrape(proxy)
        purged = await proxy.client.post("/_cacheproxy/purge", json={"url": proxy.url + "/r"})
        _, after = await scrape(proxy)
    assert purged.json() == {"purged": 1}
    assert value(empty, "cacheproxy_stored_bytes", store="redis") == 0
    own = value(one, "cacheproxy_stored_bytes", store="redis")
    server = value(one, "cacheproxy_redis_used_memory_bytes", store="redis")
    assert len(body) < own < 4096  # one small entry: its hash, not the server's megabytes
    assert server > 100 * own  # Redis' whole footprint, reported under its own name
    assert value(after, "cacheproxy_stored_bytes", store="redis") == 0
    assert value(after, "cacheproxy_stored_entries", store="redis") == 0


async def test_metrics_asyncio_tasks_follow_the_requests_in_flight(proxy: RunningProxy, origin: RunningOrigin) -> None:
    """The gauge is the loop's task count at scrape time: up while requests wait on the origin, back down after."""
    for i in range(10):
        origin.set(f"/held/{i}", headers=CACHEABLE, body="late", delay=0.5)
    _, idle = await scrape(proxy)
    baseline = value(idle, "cacheproxy_asyncio_tasks")
    assert baseline >= 1  # at least the scrape's own request
    waiting = [asyncio.create_task(proxy.client.get(f"/held/{i}")) for i in range(10)]
    await asyncio.sleep(0.25)
    _, busy = await scrape(proxy)
    # this test's ten client tasks, and on the proxy's side ten request tasks (the origin's add ten more)
    assert value(busy, "cacheproxy_asyncio_tasks") >= baseline + 20
    assert {r.status_code for r in await asyncio.gather(*waiting)} == {200}
    for _ in range(50):
        _, after = await scrape(proxy)
        if value(after, "cacheproxy_asyncio_tasks") <= baseline:
            break
        await asyncio.sleep(0.02)
    assert value(after, "cacheproxy_asyncio_tasks") <= baseline


def test_metrics_asyncio_tasks_outside_a_loop_left_as_they_were() -> None:
    metrics = Metrics()
    metrics.sample_tasks()  # no running loop: nothing to count, and no error
    _, samples = parse(metrics.render().decode())
    assert value(samples, "cacheproxy_asyncio_tasks") == 0


TASKS_WORKER = textwrap.dedent(
    """
    import asyncio, os, sys
    from proxy.admin.metrics import Metrics
    metrics = Metrics()
    async def main():
        sleepers = [asyncio.create_task(asyncio.sleep(60)) for _ in range(int(sys.argv[1]))]
        await asyncio.sleep(0)
        metrics.sample_tasks()
        sys.stdout.write(metrics.render().decode() if sys.argv[2] == "render" else str(os.getpid()))
        for task in sleepers:
            task.cancel()
    asyncio.run(main())
    """
)


def test_metrics_task_counts_of_dead_workers_drop_out(tmp_path: Path) -> None:
    """``liveall``: one series per worker, from its value file; a worker killed without cleaning up leaves its file,
    and a scrape drops it."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, "-c", TASKS_WORKER, *args], env=env, timeout=60, capture_output=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.decode()

    dead = run("6", "exit")  # set 7 (main and six sleepers), then gone without a word
    assert (tmp_path / f"gauge_liveall_{dead}.db").exists()
    _, samples = parse(run("2", "render"))
    series = {
        dict(labels)["pid"]: count for (name, labels), count in samples.items() if name == "cacheproxy_asyncio_tasks"
    }
    assert list(series.values()) == [3]  # the live worker's own (main and two sleepers); the dead one's 7 is gone
    assert dead not in series
    assert not (tmp_path / f"gauge_liveall_{dead}.db").exists()


async def test_metrics_a_worker_counts_its_tasks_as_soon_as_it_starts() -> None:
    """With workers, a scrape reads the others' last count: one that had not counted yet would show 0 for a second."""
    observer = AdminObserver(FakeClock(), access=False)
    assert observer.metrics.registry.get_sample_value("cacheproxy_asyncio_tasks") == 0
    running = asyncio.create_task(observer.flush_every(3600))
    await asyncio.sleep(0)
    try:
        assert observer.metrics.registry.get_sample_value("cacheproxy_asyncio_tasks") == len(asyncio.all_tasks())
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
