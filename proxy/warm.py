"""``cacheproxy warm``: request URLs through a running proxy after a deploy, so its cache starts warm.

Each URL goes through the proxy like any client request, so the rules, the cache key and coalescing apply; with the
Redis store one warming run fills the cache every instance shares. The targets come from a file (one path or
absolute URL per line), from the most requested storable targets of a past access log (``proxy.tracelog``), or from
a sitemap. An absolute URL is sent to the proxy with its path and query, and its authority as the Host header.

Requests run with bounded concurrency and at most ``rate`` per second. Each answer is classified by the proxy's
``Cache-Status`` (RFC 9211): stored (fetched and stored now, or answered by a concurrent fetch that stored it),
already fresh (a hit), stale (served stale), not storable (forwarded, not stored: the ``detail`` says why), or an
error (no answer, or a 5xx). The run fails (exit 1) when errors exceed ``max_failures`` of the requests.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

import httpx

from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.errors import ConfigError
from proxy.tracelog import top_targets

if TYPE_CHECKING:
    from tqdm import tqdm

CACHE_NAME = "cacheproxy"
SITEMAP_LIMIT = 50 * 1024 * 1024  # the sitemaps.org limit for one file, uncompressed
SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
STALE_DETAILS = frozenset({"stale-while-revalidate", "stale-if-error", "max-stale"})


class Kind(StrEnum):
    """What the proxy did with one warming request (the summary's rows)."""

    STORED = "stored"
    FRESH = "fresh"
    STALE = "stale"
    NOT_STORABLE = "not-storable"
    ERROR = "error"


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: str = ""  # the proxy's ``detail``, the HTTP status or the client error


def classify(status: int | None, cache_status: str | None, error: str = "") -> Verdict:
    """What one warming request did, read from our entry of its ``Cache-Status`` (RFC 9211 §2)."""
    if status is None:
        return Verdict(Kind.ERROR, error or "no answer")
    if status >= 500:
        return Verdict(Kind.ERROR, f"HTTP {status}")
    params = _our_entry(cache_status)
    if params is None:
        return Verdict(Kind.NOT_STORABLE, "no Cache-Status from the proxy")
    detail = params.get("detail", "")
    if "hit" in params or detail in STALE_DETAILS:
        ttl = params.get("ttl", "")
        if detail in STALE_DETAILS or ttl.startswith("-"):  # RFC 9211 §2.4: a negative ttl is stale
            return Verdict(Kind.STALE, detail or "stale")
        return Verdict(Kind.FRESH)
    if "stored" in params or "collapsed" in params:
        return Verdict(Kind.STORED)
    return Verdict(Kind.NOT_STORABLE, detail or f"fwd={params.get('fwd', '?')}")


def _our_entry(header: str | None) -> dict[str, str] | None:
    """The parameters of the ``cacheproxy`` member of a Cache-Status list (the last one: ours is nearest the client)."""
    if not header:
        return None
    ours = [member for member in header.split(",") if member.strip().split(";")[0].strip() == CACHE_NAME]
    if not ours:
        return None
    params: dict[str, str] = {}
    for part in ours[-1].split(";")[1:]:
        name, _, value = part.strip().partition("=")
        params[name.strip()] = value.strip().strip('"')
    return params


@dataclass
class Summary:
    counts: Counter[Kind] = field(default_factory=Counter)
    reasons: dict[Kind, Counter[str]] = field(default_factory=dict)

    def add(self, verdict: Verdict) -> None:
        self.counts[verdict.kind] += 1
        if verdict.reason:
            self.reasons.setdefault(verdict.kind, Counter())[verdict.reason] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def failed_share(self) -> float:
        return self.counts[Kind.ERROR] / self.total if self.total else 0.0

    def lines(self) -> list[str]:
        out = [f"warmed {self.total} URLs"]
        for kind, label in (
            (Kind.STORED, "stored"), (Kind.FRESH, "already fresh"), (Kind.STALE, "served stale"),
            (Kind.NOT_STORABLE, "not storable"), (Kind.ERROR, "errors"),
        ):  # fmt: skip
            reasons = self.reasons.get(kind)
            why = f" ({', '.join(f'{r}: {n}' for r, n in reasons.most_common())})" if reasons else ""
            out.append(f"  {label:<14} {self.counts[kind]:>6}{why}")
        return out


class RateLimit:
    """At most ``per_second`` starts a second, evenly spaced (0: no limit); time from the injected clock."""

    def __init__(self, per_second: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.clock = clock
        self._next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = self.clock.monotonic()
        start = max(now, self._next)
        self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


def parse_rate(text: str) -> float:
    """``50/s``, ``10/m``, ``50`` (per second) or ``0`` (no limit)."""
    number, _, unit = str(text).strip().partition("/")
    seconds = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}.get(unit.strip().lower())
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if seconds is None or value < 0:
        raise ConfigError(f"--rate: expected e.g. 50/s or 600/m, got {text!r}")
    return value / seconds


def request_parts(target: str) -> tuple[str, dict[str, str]]:
    """The origin-form target to ask the proxy for, and a Host header when the target was an absolute URL."""
    parts = urlsplit(target.strip())
    if parts.scheme in ("http", "https") and parts.netloc:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return path, {"host": parts.netloc}
    return target.strip() if target.startswith("/") else "/" + target.strip(), {}


async def warm(
    proxy: str,
    targets: Iterable[str],
    *,
    concurrency: int = 8,
    rate: float = 50.0,
    timeout: float = 30.0,
    progress: bool | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> Summary:
    """Request every target through ``proxy``; the summary of what the proxy did with each."""
    todo = [target for target in (t.strip() for t in targets) if target and not target.startswith("#")]
    summary = Summary()
    limit = RateLimit(rate, clock)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for target in todo:
        queue.put_nowait(target)
    bar = _progress(len(todo), progress)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=proxy.rstrip("/"), timeout=timeout, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                target = queue.get_nowait()
                await limit.wait()
                summary.add(await _fetch(client, target))
                if bar is not None:
                    bar.update(1)

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    if bar is not None:
        bar.close()
    return summary


async def _fetch(client: httpx.AsyncClient, target: str) -> Verdict:
    path, headers = request_parts(target)
    try:
        async with client.stream("GET", path, headers=headers) as response:
            async for _ in response.aiter_raw():
                pass  # read the body so that the proxy finishes storing it, and drop it
            return classify(response.status_code, response.headers.get("cache-status"))
    except httpx.HTTPError as error:
        return classify(None, None, type(error).__name__)


def _progress(total: int, wanted: bool | None) -> tqdm[NoReturn] | None:
    if not (sys.stderr.isatty() if wanted is None else wanted):
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="url", desc="warming", file=sys.stderr, leave=False)


def sitemap_urls(url: str, *, timeout: float = 30.0, depth: int = 1) -> list[str]:
    """The ``<loc>`` URLs of a sitemap; a sitemap index is followed one level down."""
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        return _sitemap(client, url, depth)


def _sitemap(client: httpx.Client, url: str, depth: int) -> list[str]:
    try:
        response = client.get(url)
    except httpx.HTTPError as error:
        raise ConfigError(f"--sitemap: {url}: {error}") from error
    if response.status_code != 200 or len(response.content) > SITEMAP_LIMIT:
        raise ConfigError(f"--sitemap: {url} answered {response.status_code} ({len(response.content)} bytes)")
    try:
        root = ET.fromstring(response.content)
    except ET.ParseError as error:
        raise ConfigError(f"--sitemap: {url} is not XML: {error}") from error
    locs = [(loc.text or "").strip() for loc in root.iter(f"{SITEMAP_NS}loc")]
    if root.tag == f"{SITEMAP_NS}sitemapindex":
        if depth <= 0:
            return []
        return [found for child in locs if child for found in _sitemap(client, child, depth - 1)]
    return [loc for loc in locs if loc]


def gather_targets(args: argparse.Namespace) -> list[str]:
    if args.from_log:
        if not Path(args.from_log).is_file():
            raise ConfigError(f"no such access log: {args.from_log}")
        return top_targets(args.from_log, args.top)
    if args.sitemap:
        return sitemap_urls(args.sitemap, timeout=args.timeout)
    path = Path(args.urls_file)
    if not path.is_file():
        raise ConfigError(f"no such URLs file: {path}")
    return path.read_text(encoding="utf-8").splitlines()


def run_warm(args: argparse.Namespace) -> int:
    """The ``cacheproxy warm`` command: 0 when the share of errors is within ``--max-failures``, else 1."""
    if args.concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    if not 0 <= args.max_failures <= 1:
        raise ConfigError("--max-failures is a share between 0 and 1, e.g. 0.1")
    rate = parse_rate(args.rate)
    targets = gather_targets(args)
    summary = asyncio.run(warm(args.proxy, targets, concurrency=args.concurrency, rate=rate, timeout=args.timeout))
    for line in summary.lines():
        print(line)
    if summary.total == 0:
        print("nothing to warm", file=sys.stderr)
    share = summary.failed_share()
    if share > args.max_failures:
        print(f"cacheproxy warm: {share:.0%} of requests failed (allowed {args.max_failures:.0%})", file=sys.stderr)
        return 1
    return 0
