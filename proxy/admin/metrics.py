"""The Prometheus metric families of one worker, and their exposition (all names prefixed ``cacheproxy_``).

Counters and histograms are ordinary prometheus-client objects in a registry per ``Metrics`` (so several apps can
live in one test process). With several workers, ``PROMETHEUS_MULTIPROC_DIR`` switches prometheus-client to its
multiprocess mode: every worker writes its values to files in that directory and a scrape of any worker sums them
(``prepare_multiprocess`` makes the directory before the workers start).

Store figures (bytes, entries, budget, evictions) are not counted by us but read from the store at scrape time
(``refresh_stores``) and exposed by a collector: a shared store reports the same store-wide figures from every worker,
so summing workers would be wrong; the memory policy's evictions per queue and ghost hits (``eviction_stats``) are
read the same way. Store errors are per-worker counts, so they are turned into a real counter
(incremented by the difference since the last scrape) that multiprocess mode sums, and so are the invalidations a
store deferred while unreachable. Labels are bounded: outcomes, route names, status classes, store names and purge
kinds, never URLs.

Two gauges are our own. ``cacheproxy_store_connections``: each worker's pooled connections to the store, set at each
scrape and summed over the live workers (``livesum``). ``cacheproxy_asyncio_tasks``: each worker sets it to the task
count of its event loop when it is scraped and every second (``sample_tasks``); multiprocess mode shows one series per
live worker (``liveall``, label ``pid``), so a worker whose tasks pile up stands out (``sum()`` gives the whole). A
worker that died without saying so (SIGKILL, a crash) leaves its value file behind; a scrape removes the files of
workers that no longer run, so their last count does not stay on show forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from proxy.storage.abilities import Abilities, Deferring, ErrorCounting, Pooling
from proxy.storage.base import Storage, StoreStats
from proxy.storage.memory import EvictionStats

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Upstream latency: a hit-free origin answers in milliseconds to seconds; a timeout lands in +Inf.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Total request time: hits are sub-millisecond, so the low end is finer.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

FAMILIES = (
    "cacheproxy_requests_total",
    "cacheproxy_upstream_requests_total",
    "cacheproxy_upstream_latency_seconds",
    "cacheproxy_request_duration_seconds",
    "cacheproxy_stored_bytes",
    "cacheproxy_stored_entries",
    "cacheproxy_store_budget_bytes",
    "cacheproxy_evictions_total",
    "cacheproxy_purges_total",
    "cacheproxy_purged_entries_total",
    "cacheproxy_rule_reloads_total",
    "cacheproxy_store_errors_total",
    "cacheproxy_policy_evictions_total",
    "cacheproxy_ghost_hits_total",
    "cacheproxy_upstream_pool_exhausted_total",
    "cacheproxy_redis_used_memory_bytes",
    "cacheproxy_asyncio_tasks",
    "cacheproxy_store_deferred_invalidations_total",
    "cacheproxy_store_connections",
)
# The value files of a live-mode gauge name the worker's PID: ``gauge_liveall_<pid>.db``.
LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def prepare_multiprocess() -> Path:
    """Point prometheus-client at a clean directory for the workers' value files; call before workers start.

    An operator-set ``PROMETHEUS_MULTIPROC_DIR`` is emptied of old ``*.db`` files (values of a previous run would
    be summed in); otherwise a fresh temporary directory is made and exported to the workers' environment.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return path
    path = Path(tempfile.mkdtemp(prefix="cacheproxy-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def remove_multiprocess_dir(path: Path) -> None:
    """Remove a directory ``prepare_multiprocess`` created (after the workers exited)."""
    shutil.rmtree(path, ignore_errors=True)


def forget_dead_workers(path: Path) -> None:
    """Remove the live-mode gauge files of workers that no longer run (``mark_process_dead``, which nobody calls for
    a worker that was killed). The workers are our siblings on this host, so their PIDs can be asked about."""
    for file in path.glob("gauge_live*.db"):
        found = LIVE_GAUGE_FILE.fullmatch(file.name)
        if found is None:
            continue
        pid = int(found[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):  # another worker's scrape may remove it first
                mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
        except PermissionError:  # the PID is another user's process now: left alone (not ours to judge)
            pass


def status_class(status: int | str | None) -> str:
    """``2xx``..``5xx``; ``error`` when no status came back (connect failure, timeout)."""
    text = str(status) if status is not None else ""
    return f"{text[0]}xx" if len(text) == 3 and text[0] in "12345" else "error"


class StoreCollector(Collector):
    """Scrape-time store figures, from the last ``refresh_stores`` of this worker."""

    def __init__(self) -> None:
        self.stats: dict[str, StoreStats] = {}
        self.eviction: dict[str, EvictionStats] = {}  # stores with a memory policy (memory, the two-tier L1)

    def collect(self) -> Iterator[Metric]:
        stored = GaugeMetricFamily(
            "cacheproxy_stored_bytes", "Bytes of the cache's own entries in the store.", labels=["store"]
        )
        server = GaugeMetricFamily(
            "cacheproxy_redis_used_memory_bytes",
            "Redis' used_memory: the whole server (other data, indexes, buffers), not only the cache's entries.",
            labels=["store"],
        )
        entries = GaugeMetricFamily("cacheproxy_stored_entries", "Entries held by the store.", labels=["store"])
        budget = GaugeMetricFamily(
            "cacheproxy_store_budget_bytes", "The store's byte budget (memory stores).", labels=["store"]
        )
        evictions = CounterMetricFamily(
            "cacheproxy_evictions", "Entries evicted to stay within the budget.", labels=["store"]
        )
        for name, stats in self.stats.items():
            stored.add_metric([name], stats.bytes)
            entries.add_metric([name], stats.entries)
            if stats.budget is not None:
                budget.add_metric([name], stats.budget)
            evictions.add_metric([name], stats.evictions)
            if stats.server_memory is not None:
                server.add_metric([name], stats.server_memory)
        yield from (stored, entries, budget, evictions, server)
        yield from self._collect_eviction()

    def _collect_eviction(self) -> Iterator[Metric]:
        by_queue = CounterMetricFamily(
            "cacheproxy_policy_evictions",
            "Live entries evicted by the memory policy, by the queue they left (s3fifo: small or main).",
            labels=["store", "policy", "queue"],
        )
        ghost = CounterMetricFamily(
            "cacheproxy_ghost_hits",
            "Entries stored again while the policy remembered them as recently evicted (s3fifo's ghost queue).",
            labels=["store", "policy"],
        )
        for name, ev in self.eviction.items():
            for queue, count in ev.evictions.items():
                by_queue.add_metric([name, ev.policy, queue], count)
            ghost.add_metric([name, ev.policy], ev.ghost_hits)
        yield from (by_queue, ghost)


class Metrics:
    """The families one worker updates; ``render`` produces the Prometheus text of a scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.duration_buckets = DURATION_BUCKETS
        self.latency_buckets = LATENCY_BUCKETS
        self.before_render: Callable[[], None] | None = None  # the observer's batch flush
        reg = self.registry
        self.requests = Counter(
            "cacheproxy_requests", "Requests by cache outcome and route.", ["outcome", "route"], registry=reg
        )
        self.upstream_requests = Counter(
            "cacheproxy_upstream_requests", "Requests sent upstream, by status class.", ["status_class"], registry=reg
        )
        self.upstream_latency = Histogram(
            "cacheproxy_upstream_latency_seconds",
            "Time to the upstream's response head.",
            ["status_class"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.duration = Histogram(
            "cacheproxy_request_duration_seconds",
            "Total time per request, by cache outcome.",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.purges = Counter("cacheproxy_purges", "Purge operations, by kind.", ["kind"], registry=reg)
        self.purged_entries = Counter("cacheproxy_purged_entries", "Entries removed by purges.", registry=reg)
        self.rule_reloads = Counter(
            "cacheproxy_rule_reloads", "Rules reload attempts, by result.", ["result"], registry=reg
        )
        self.store_errors = Counter(
            "cacheproxy_store_errors", "Store operations that failed or were skipped.", ["store", "op"], registry=reg
        )
        self.upstream_pool_exhausted = Counter(
            "cacheproxy_upstream_pool_exhausted",
            "Requests shed because no upstream connection came free within the pool wait (answered stale or 503).",
            registry=reg,
        )
        self.asyncio_tasks = Gauge(
            "cacheproxy_asyncio_tasks",
            "asyncio tasks alive in the event loop (with workers, one series per live worker), sampled at each scrape "
            "and every second.",
            registry=reg,
            multiprocess_mode="liveall",
        )
        self.deferred = Counter(
            "cacheproxy_store_deferred_invalidations",
            "Purges and invalidations a store could not apply when they came (unreachable), by outcome: queued, "
            "replayed (applied once it was back), collapsed (into one purge of everything: queue full), dropped.",
            ["store", "outcome"],
            registry=reg,
        )
        self.connections = Gauge(
            "cacheproxy_store_connections",
            "Pooled connections to the store, by state (idle, in_use), summed over the live workers.",
            ["store", "state"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.stores = StoreCollector()
        reg.register(self.stores)
        self._seen_errors: dict[tuple[str, str], int] = {}
        self._seen_deferred: dict[tuple[str, str], int] = {}

    async def refresh_stores(self, stores: Iterable[tuple[Storage, Abilities]]) -> dict[str, StoreStats]:
        """Read every store's figures (a failing store is left out), turn error counts into counter steps, and read
        the eviction policy's figures of the stores that evict by one."""
        found: dict[str, StoreStats] = {}
        eviction: dict[str, EvictionStats] = {}
        for store, abilities in stores:
            try:
                found[store.name] = await store.stats()
            except Exception:  # a store that cannot report is shown by readyz; the scrape still answers
                continue
            if abilities.error_counting is not None:
                self._count_store_errors(store, abilities.error_counting)
            if abilities.deferring is not None:
                self._count_deferred(store, abilities.deferring)
            if abilities.pooling is not None:
                self._gauge_connections(store, abilities.pooling)
            if abilities.evicting is not None:
                eviction[store.name] = abilities.evicting.eviction_stats()
        self.stores.stats = found
        self.stores.eviction = eviction
        return found

    def _count_store_errors(self, store: Storage, counting: ErrorCounting) -> None:
        for op, total in counting.error_counts().items():
            ident = (store.name, str(op))
            step = int(total) - self._seen_errors.get(ident, 0)
            if step > 0:
                self.store_errors.labels(store.name, str(op)).inc(step)
            self._seen_errors[ident] = int(total)

    def _count_deferred(self, store: Storage, deferring: Deferring) -> None:
        for outcome, total in deferring.deferred_counts().items():
            ident = (store.name, outcome)
            step = int(total) - self._seen_deferred.get(ident, 0)
            child = self.deferred.labels(store.name, outcome)
            if step > 0:
                child.inc(step)
            self._seen_deferred[ident] = int(total)

    def _gauge_connections(self, store: Storage, pooling: Pooling) -> None:
        for state, count in pooling.connection_counts().items():
            self.connections.labels(store.name, state).set(count)

    @staticmethod
    def observe_many(child: Histogram, counts: Sequence[float], total: float) -> None:
        """Add a batch of observations to one histogram child: ``counts`` per bucket (as ``observe`` would have
        placed them, ``+Inf`` last) and their ``total``. prometheus-client has no batch call, so this uses the
        child's bucket values directly (the same ``inc`` that ``observe`` calls, once per bucket instead of per
        observation).
        """
        child._sum.inc(total)
        for bucket, count in zip(child._buckets, counts, strict=True):
            if count:
                bucket.inc(count)

    def sample_tasks(self) -> None:
        """Set ``cacheproxy_asyncio_tasks`` from the running event loop (nothing outside one)."""
        try:
            count = len(asyncio.all_tasks())
        except RuntimeError:  # no running loop: a render from a thread, or from a test without a loop
            return
        self.asyncio_tasks.set(count)

    def render(self) -> bytes:
        """The exposition text: this worker's registry, or every worker's files in multiprocess mode."""
        if self.before_render is not None:
            self.before_render()
        self.sample_tasks()
        path = os.environ.get(MULTIPROC_ENV)
        if not path:
            return generate_latest(self.registry)
        forget_dead_workers(Path(path))
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        registry.register(self.stores)
        return generate_latest(registry)
