"""What happens to each request once it is answered: metrics, the access-log line, and the status page's figures.

``AdminObserver.request_done`` runs on every request, the hit path included, so it does a few dictionary updates and
nothing that allocates per request beyond the access-log record (a tuple appended to a list, formatted and written in
batches by ``proxy.logs.AccessLog``; skipped when the access log is off). The status page's
figures (outcome counts, routes, a hit-ratio series in 10-second buckets over the last 10 minutes) are kept in memory
by each worker: with several workers the page shows the worker that answered it, while Prometheus sums them all.

The hit ratio counts as served from cache: hit, stale, revalidated (a 304 from the origin, no body moved) and collapsed
(answered by another request's fetch); its denominator leaves out bypassed requests, which the cache was told not to
answer.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from proxy.admin.metrics import Metrics, status_class
from proxy.cache.answer import Answer, CacheOutcome
from proxy.clock import Clock
from proxy.errors import UpstreamConnectError, UpstreamError, UpstreamProtocolError, UpstreamTimeout
from proxy.logs import AccessLog, open_access_log
from proxy.messages import RequestHead

if TYPE_CHECKING:
    from proxy.hot import Hit
    from proxy.runtime import Runtime

ACCESS_LOGGER = "cacheproxy.access"

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

    def __init__(
        self,
        clock: Clock,
        *,
        access_log: AccessLog | None = None,
        metrics: Metrics | None = None,
        access: bool = True,
    ) -> None:
        self.clock = clock
        self.access_log = access_log if access else None  # ``access=False``: no log even when a writer is given
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
        """Hand the tallies and the loop's task count to prometheus-client regularly (multiprocess mode: other
        workers' scrapes see them), and run the access log's writer beside it; both flush a last time when the
        lifespan ends."""
        writer = asyncio.create_task(self.access_log.run()) if self.access_log is not None else None
        self.metrics.sample_tasks()  # at once: the other workers' scrapes would show this one at 0 tasks for a second
        try:
            while True:
                await asyncio.sleep(seconds)
                self.tally.flush()
                self.metrics.sample_tasks()
        finally:
            self.tally.flush()
            if writer is not None:
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
            if self.access_log is not None:
                self.access_log.flush()

    def hit_done(self, request: RequestHead, hit: Hit, duration: float) -> None:
        """A hot-path hit: the same counts as ``request_done``."""
        self.tally.add(CacheOutcome.HIT, hit.route, duration)
        if self.access_log is not None:
            self.access_log.append(
                AccessRecord(
                    self.clock.now(),
                    request.method,
                    request.target,
                    hit.status,
                    CacheOutcome.HIT,
                    "",
                    hit.route,
                    None,
                    duration,
                    hit.sent,
                    request.client,
                    hit.key,
                    hit.sent,
                    True,
                )
            )

    def request_done(self, request: RequestHead, answer: Answer, duration: float, sent: int) -> None:
        outcome = answer.outcome
        self.tally.add(outcome, answer.route, duration)
        if answer.upstream_time is not None or (outcome is CacheOutcome.ERROR and answer.detail in UPSTREAM_FAILURES):
            self._upstream_done(answer)
        if self.access_log is not None:
            self.access_log.append(
                AccessRecord(
                    self.clock.now(),
                    request.method,
                    request.target,
                    answer.status,
                    outcome,
                    answer.detail,
                    answer.route,
                    answer.upstream_time,
                    duration,
                    sent,
                    request.client,
                    answer.key,
                    body_size(answer, sent),
                    is_storable(answer),
                )
            )

    def _upstream_done(self, answer: Answer) -> None:
        status = None if answer.upstream is None else answer.upstream.status
        self.tally.add_upstream(status_class(status), answer.upstream_time)

    def rules_reloaded(self, ok: bool, problems: list[str]) -> None:
        """The ``RulesHolder.on_reload`` hook."""
        self.metrics.rule_reloads.labels("ok" if ok else "error").inc()

    def purged(self, kind: str, count: int) -> None:
        self.metrics.purges.labels(kind).inc()
        self.metrics.purged_entries.inc(count)


class AccessRecord(NamedTuple):
    """The fields of one access-log line, collected on the request path and formatted later in a batch.

    To add a field: add it here (with a default, so every producer keeps working), and to ``text_message`` when it
    belongs in the text line; the JSON object carries every field by name. ``target`` is the request target, or the
    ASGI ``(raw_path, query_string)`` bytes when it was read off the scope (decoded only when formatted).
    """

    time: float
    method: str
    target: str | tuple[bytes, bytes]
    status: int
    outcome: CacheOutcome
    detail: str
    route: str
    upstream_time: float | None
    duration: float
    bytes: int
    client: str | None
    # what ``cacheproxy simulate`` and ``warm --from-log`` replay (``proxy.tracelog``): the cache key (None when
    # bypassed), the response body's length, and whether the cache holds the response (served from it, or stored)
    key: str | None = None
    size: int = 0
    storable: bool = False


def record_target(record: AccessRecord) -> str:
    target = record.target
    if isinstance(target, str):
        return target
    path, query = target
    return f"{path.decode('latin-1')}?{query.decode('latin-1')}" if query else path.decode("latin-1")


def text_lines(records: Sequence[AccessRecord], stamps: _Stamps | None = None) -> list[str]:
    """The text of access lines, ``GET /a?b 200 miss (detail) route=r upstream=0.0012 time=0.0015 bytes=5``, each
    after its time stamp when ``stamps`` is given. The one definition of the line: a loop over a batch, so a record
    costs no function call of its own."""
    out: list[str] = []
    append = out.append
    milli_seen, start = -1, ""
    for record in records:
        when, method, target, status, outcome, detail, route, upstream, duration, sent = record[:10]
        if not isinstance(target, str):
            target = record_target(record)
        if stamps is not None:
            milli = int(when * 1000)
            if milli != milli_seen:
                milli_seen, start = milli, stamps.millis(when)
        append(
            f"{start}{method} {target} {status} {outcome}{f' ({detail})' if detail else ''} route={route} "
            f"upstream={'-' if upstream is None else f'{upstream:.4f}'} time={duration:.4f} bytes={sent}"
        )
    return out


def text_message(record: AccessRecord) -> str:
    """One line's message, without its time stamp (the JSON object's ``message``)."""
    return text_lines((record,))[0]


class _Stamps:
    """Time stamps as the other log lines show them (local time): formatted once per second, and the whole line
    prefix once per millisecond (a batch holds many records of the same millisecond)."""

    def __init__(self, pattern: str, prefix: str = "") -> None:
        self.pattern = pattern
        self.prefix = prefix
        self.second = -1
        self.text = ""

    def __call__(self, when: float) -> str:
        second = int(when)
        if second != self.second:
            self.second = second
            self.text = time.strftime(self.pattern, time.localtime(second))
        return self.text

    def millis(self, when: float) -> str:
        """``<date> <time>,<ms><prefix>``, the start of a text line."""
        return f"{self(when)},{int(when * 1000) % 1000:03d}{self.prefix}"


def lines_formatter(log_format: str) -> Callable[[Sequence[AccessRecord]], list[str]]:
    """Format a batch of records as the lines ``proxy.logs``' text or JSON formatter writes for the other logs."""
    if log_format == "json":
        stamp = _Stamps("%Y-%m-%dT%H:%M:%S")

        def json_line(record: AccessRecord) -> str:
            fields: dict[str, Any] = record._asdict()
            fields["path"] = record_target(record)
            fields["outcome"] = record.outcome.value
            fields["duration"] = round(record.duration, 6)
            del fields["time"], fields["target"]
            out = {"time": stamp(record.time), "level": "info", "logger": ACCESS_LOGGER}
            out["message"] = text_message(record)
            out.update(fields)
            return json.dumps(out, default=str)

        return lambda records: [json_line(record) for record in records]
    stamps = _Stamps("%Y-%m-%d %H:%M:%S", f" INFO {ACCESS_LOGGER}: ")
    return lambda records: text_lines(records, stamps)


def line_formatter(log_format: str) -> Callable[[AccessRecord], str]:
    """Format one record (``lines_formatter`` for a batch)."""
    batch = lines_formatter(log_format)
    return lambda record: batch((record,))[0]


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
    return answer.outcome is CacheOutcome.MISS and answer.cache_status.stored


def build_observer(runtime: Runtime) -> AdminObserver:
    """The observer of one worker; it also counts the rules holder's reloads (chained with any earlier hook)."""
    settings = runtime.settings
    access_log = None
    if settings.access_log:
        fd = open_access_log(settings.access_log_file)
        access_log = AccessLog(fd, lines_formatter(settings.log_format))
    observer = AdminObserver(runtime.clock, access_log=access_log)
    previous = runtime.rules.on_reload

    def on_reload(ok: bool, problems: list[str]) -> None:
        observer.rules_reloaded(ok, problems)
        if previous is not None:
            previous(ok, problems)

    runtime.rules.on_reload = on_reload
    return observer
