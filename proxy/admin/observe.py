"""What happens to each request once it is answered: metrics, the access-log line, and the status page's figures.

``AdminObserver.request_done`` runs on every request, the hit path included, so it does a few dictionary updates and
nothing that allocates per request beyond the log record (skipped when the access log is off). The status page's
figures (outcome counts, routes, a hit-ratio series in 10-second buckets over the last 10 minutes) are kept in memory
by each worker: with several workers the page shows the worker that answered it, while Prometheus sums them all.

The hit ratio counts as served from cache: hit, stale, revalidated (a 304 from the origin, no body moved) and collapsed
(answered by another request's fetch); its denominator leaves out bypassed requests, which the cache was told not to
answer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from bisect import bisect_left
from collections import Counter
from typing import TYPE_CHECKING, Any

from proxy.admin.metrics import Metrics, status_class
from proxy.cache.answer import Answer, CacheOutcome
from proxy.clock import Clock
from proxy.errors import UpstreamConnectError, UpstreamError, UpstreamProtocolError, UpstreamTimeout
from proxy.messages import RequestHead

if TYPE_CHECKING:
    from proxy.hot import Hit
    from proxy.runtime import Runtime

access_log = logging.getLogger("cacheproxy.access")

BUCKET_SECONDS = 10
BUCKETS = 60  # 10 minutes
FROM_CACHE = frozenset({CacheOutcome.HIT, CacheOutcome.STALE, CacheOutcome.REVALIDATED, CacheOutcome.COLLAPSED})
# Answers that are errors of the upstream exchange itself (no status came back): counted as upstream requests.
UPSTREAM_FAILURES = frozenset(
    error.detail for error in (UpstreamError, UpstreamConnectError, UpstreamTimeout, UpstreamProtocolError)
)


def ratio(hits: int, cacheable: int) -> float | None:
    return hits / cacheable if cacheable else None


class Traffic:
    """Per-worker counts for the status page: outcomes, routes, and the hit-ratio series."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter({outcome.value: 0 for outcome in CacheOutcome})
        self.routes: dict[str, list[int]] = {}  # route -> [requests, cacheable, from cache]
        self.buckets: dict[int, list[int]] = {}  # bucket number -> [cacheable, from cache]

    def add(self, outcome: CacheOutcome | str, route: str, now: float, n: int = 1) -> None:
        self.outcomes[outcome] += n
        cacheable = n if outcome != CacheOutcome.BYPASS else 0
        hit = n if outcome in FROM_CACHE else 0
        counts = self.routes.get(route)
        if counts is None:
            counts = self.routes[route] = [0, 0, 0]
        counts[0] += n
        counts[1] += cacheable
        counts[2] += hit
        if not cacheable:
            return
        number = int(now // BUCKET_SECONDS)
        bucket = self.buckets.get(number)
        if bucket is None:
            bucket = self.buckets[number] = [0, 0]
            for old in [n for n in self.buckets if n <= number - BUCKETS]:
                del self.buckets[old]
        bucket[0] += cacheable
        bucket[1] += hit

    def snapshot(self, now: float) -> dict[str, Any]:
        """The JSON the status page draws: totals, the last 10 minutes in 10-s buckets (oldest first), routes."""
        current = int(now // BUCKET_SECONDS)
        series = []
        for number in range(current - BUCKETS + 1, current + 1):
            cacheable, hits = self.buckets.get(number, (0, 0))
            series.append(
                {"t": number * BUCKET_SECONDS, "requests": cacheable, "hits": hits, "ratio": ratio(hits, cacheable)}
            )
        total = sum(self.outcomes.values())
        cacheable_total = total - self.outcomes[CacheOutcome.BYPASS]
        from_cache = sum(self.outcomes[o] for o in FROM_CACHE)
        routes = [
            {"route": name, "requests": c[0], "hits": c[2], "hit_ratio": ratio(c[2], c[1])}
            for name, c in sorted(self.routes.items(), key=lambda item: -item[1][0])
        ]
        return {
            "outcomes": dict(self.outcomes),
            "requests": total,
            "hit_ratio": ratio(from_cache, cacheable_total),
            "from_cache": from_cache,
            "cacheable": cacheable_total,
            "bypassed": self.outcomes[CacheOutcome.BYPASS],
            "bucket_seconds": BUCKET_SECONDS,
            "series": series,
            "routes": routes,
        }


class Tally:
    """Request counts and durations kept in plain numbers, handed to prometheus-client and the status page's
    ``Traffic`` in batches by ``flush``.

    A prometheus-client increment takes a lock (and, with several workers, writes a memory-mapped file); at tens of
    thousands of hits a second that was a fifth of the hit path. Here a request costs two dictionary updates; the
    admin surface flushes on every scrape and status-page poll, and the app once a second, so another worker's scrape
    is at most a second behind and the hit-ratio series is placed to within a second.
    """

    def __init__(self, metrics: Metrics, traffic: Traffic, clock: Clock) -> None:
        self.metrics = metrics
        self.traffic = traffic
        self.clock = clock
        self.duration_bounds = (*metrics.duration_buckets, math.inf)
        self.latency_bounds = (*metrics.latency_buckets, math.inf)
        self.requests: dict[tuple[str, str], int] = {}
        self.durations: dict[str, list[float]] = {}  # outcome -> [count per bucket..., sum]
        self.upstream: dict[str, int] = {}  # status class -> upstream requests
        self.latencies: dict[str, list[float]] = {}  # status class -> [count per bucket..., sum]

    def add(self, outcome: str, route: str, duration: float) -> None:
        ident = (outcome, route)
        self.requests[ident] = self.requests.get(ident, 0) + 1
        _observe(self.durations, outcome, duration, self.duration_bounds)

    def add_upstream(self, status_class: str, latency: float | None) -> None:
        self.upstream[status_class] = self.upstream.get(status_class, 0) + 1
        if latency is not None:
            _observe(self.latencies, status_class, latency, self.latency_bounds)

    def flush(self) -> None:
        requests, self.requests = self.requests, {}
        durations, self.durations = self.durations, {}
        upstream, self.upstream = self.upstream, {}
        latencies, self.latencies = self.latencies, {}
        now = self.clock.now()
        metrics = self.metrics
        for (outcome, route), n in requests.items():
            metrics.requests.labels(outcome, route).inc(n)
            self.traffic.add(outcome, route, now, n)
        for outcome, counts in durations.items():
            metrics.observe_many(metrics.duration.labels(outcome), counts[:-1], counts[-1])
        for klass, n in upstream.items():
            metrics.upstream_requests.labels(klass).inc(n)
        for klass, counts in latencies.items():
            metrics.observe_many(metrics.upstream_latency.labels(klass), counts[:-1], counts[-1])


def _observe(table: dict[str, list[float]], label: str, value: float, bounds: tuple[float, ...]) -> None:
    """One observation into a batched histogram: a count in the bucket ``observe`` would pick, and the sum."""
    counts = table.get(label)
    if counts is None:
        counts = table[label] = [0.0] * (len(bounds) + 1)
    counts[bisect_left(bounds, value)] += 1
    counts[-1] += value


class AdminObserver:
    """The ``Observer`` the proxy endpoint calls after each request (see ``proxy.endpoint.Observer``)."""

    def __init__(self, clock: Clock, *, access: bool = True, metrics: Metrics | None = None) -> None:
        self.clock = clock
        self.access = access
        self.metrics = metrics or Metrics()
        self.traffic = Traffic()
        self.tally = Tally(self.metrics, self.traffic, clock)
        self.metrics.before_render = self.tally.flush
        self.pid = os.getpid()

    def snapshot(self) -> dict[str, Any]:
        """The status page's figures, up to the last request."""
        self.tally.flush()
        return self.traffic.snapshot(self.clock.now())

    async def flush_every(self, seconds: float) -> None:
        """Hand the tallies to prometheus-client regularly (multiprocess mode: other workers' scrapes see them)."""
        try:
            while True:
                await asyncio.sleep(seconds)
                self.tally.flush()
        finally:
            self.tally.flush()

    def hit_done(self, request: RequestHead, hit: Hit, duration: float) -> None:
        """A hot-path hit: the same counts as ``request_done``."""
        self.tally.add(CacheOutcome.HIT, hit.route, duration)
        if self.access and access_log.isEnabledFor(logging.INFO):
            answer = Answer(hit.status, [], outcome=CacheOutcome.HIT, route=hit.route, key=hit.key)
            log_request(request, answer, duration, hit.sent)

    def request_done(self, request: RequestHead, answer: Answer, duration: float, sent: int) -> None:
        outcome = answer.outcome
        self.tally.add(outcome, answer.route, duration)
        if answer.upstream_time is not None or (outcome is CacheOutcome.ERROR and answer.detail in UPSTREAM_FAILURES):
            self._upstream_done(answer)
        if self.access and access_log.isEnabledFor(logging.INFO):
            log_request(request, answer, duration, sent)

    def _upstream_done(self, answer: Answer) -> None:
        status = None if answer.upstream is None else answer.upstream.status
        self.tally.add_upstream(status_class(status), answer.upstream_time)

    def rules_reloaded(self, ok: bool, problems: list[str]) -> None:
        """The ``RulesHolder.on_reload`` hook."""
        self.metrics.rule_reloads.labels("ok" if ok else "error").inc()

    def purged(self, kind: str, count: int) -> None:
        self.metrics.purges.labels(kind).inc()
        self.metrics.purged_entries.inc(count)


def log_request(request: RequestHead, answer: Answer, duration: float, sent: int) -> None:
    """One access-log line; with ``--log-format json`` every field below is a key of the JSON object.

    ``key``, ``size`` and ``storable`` are what ``cacheproxy simulate`` and ``cacheproxy warm --from-log`` replay:
    the cache key (absent for bypassed requests), the response body's length, and whether the response is one the
    cache holds (served from it, or stored on the way).
    """
    upstream = "-" if answer.upstream_time is None else f"{answer.upstream_time:.4f}"
    access_log.info(
        "%s %s %d %s%s route=%s upstream=%s time=%.4f bytes=%d",
        request.method,
        request.target,
        answer.status,
        answer.outcome.value,
        f" ({answer.detail})" if answer.detail else "",
        answer.route,
        upstream,
        duration,
        sent,
        extra={
            "method": request.method,
            "path": request.target,
            "status": answer.status,
            "outcome": answer.outcome.value,
            "detail": answer.detail,
            "route": answer.route,
            "upstream_time": answer.upstream_time,
            "duration": round(duration, 6),
            "bytes": sent,
            "client": request.client,
            "key": answer.key,
            "size": body_size(answer, sent),
            "storable": is_storable(answer),
        },
    )


def body_size(answer: Answer, sent: int) -> int:
    """The response body's length: the bytes in hand, the Content-Length of a streamed one, else what was sent."""
    if answer.body:
        return len(answer.body)
    if answer.stream is not None:
        for name, value in answer.headers:
            if name == b"content-length" and value.isdigit():
                return int(value)
    return sent


def is_storable(answer: Answer) -> bool:
    """True when the answer came from the cache or its response was stored (``stored`` in Cache-Status)."""
    if answer.outcome in FROM_CACHE:
        return True
    if answer.outcome is not CacheOutcome.MISS:
        return False
    for name, value in answer.headers:
        if name == b"cache-status":
            return any(part.strip() == b"stored" for part in value.split(b";"))
    return False


def build_observer(runtime: Runtime) -> AdminObserver:
    """The observer of one worker; it also counts the rules holder's reloads (chained with any earlier hook)."""
    observer = AdminObserver(runtime.clock, access=runtime.settings.access_log)
    previous = runtime.rules.on_reload

    def on_reload(ok: bool, problems: list[str]) -> None:
        observer.rules_reloaded(ok, problems)
        if previous is not None:
            previous(ok, problems)

    runtime.rules.on_reload = on_reload
    return observer
