"""The ``Answer``: the one frozen value the cache driver hands back to the edge for a request.

It is built once, complete (status, byte-pair headers ready to send, the body or a stream, its typed
``CacheStatus``, the route and key), by the functions below; nothing amends it afterwards. The ``Cache-Status`` line
in its headers is rendered from that typed value, whose ``detail`` is a ``Reason`` (never a free string), and the
answer's ``reason`` is the same ``Reason``. Which answer each outcome of the driver gets is ``proxy.cache.replies``'
job; this module only knows how to build one from a stored entry, an upstream response, or an error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from proxy.messages import Entry, Headers, RequestHead, ResponseHead, serving_headers
from proxy.rfc.age import age_header_value
from proxy.rfc.cache_status import cache_status
from proxy.rfc.decisions import Fwd, Reason
from proxy.rfc.validation import client_not_modified, not_modified_head


class CacheOutcome(StrEnum):
    """The metrics and access-log label of an answer (bounded set)."""

    HIT = "hit"
    MISS = "miss"
    STALE = "stale"  # served stale (stale-while-revalidate, stale-if-error, max-stale)
    REVALIDATED = "revalidated"  # a stored entry confirmed by a 304
    COLLAPSED = "collapsed"  # answered from another request's fetch
    BYPASS = "bypass"  # not cacheable by rule or method
    ERROR = "error"  # the upstream failed and nothing stored could stand in


@dataclass(frozen=True, slots=True)
class CacheStatus:
    """This cache's ``Cache-Status`` member (RFC 9211 §2), typed: ``detail`` is the answer's ``Reason``."""

    hit: bool = False
    fwd: Fwd | None = None
    fwd_status: int | None = None
    ttl: float | None = None
    stored: bool = False
    collapsed: bool = False
    detail: Reason | None = None

    def line(self, name: str) -> str:
        return cache_status(
            name,
            hit=self.hit,
            fwd=self.fwd,
            fwd_status=self.fwd_status,
            ttl=self.ttl,
            stored=self.stored,
            collapsed=self.collapsed,
            detail=None if self.detail is None else self.detail.value,
        )


@dataclass(frozen=True, slots=True)
class Asked:
    """What was asked, for every answer to it: the request, the name of the route it matched, its cache key, and the
    cache's name (the first member of its ``Cache-Status`` lines)."""

    request: RequestHead
    route: str = "default"
    key: str | None = None  # None: not looked up in the cache (bypassed route, unsafe method)
    cache: str = "cacheproxy"


@dataclass(frozen=True, slots=True)
class Upstream:
    """What the upstream exchange behind an answer took and returned (for metrics and the access log)."""

    elapsed: float
    status: int


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None  # the body, when it is streamed from the upstream
    release: Callable[[], Awaitable[None]] | None = None  # give the upstream connection back when sent
    outcome: CacheOutcome = CacheOutcome.MISS
    cache_status: CacheStatus = CacheStatus()
    route: str = "default"
    key: str | None = None
    upstream: Upstream | None = None

    @property
    def reason(self) -> Reason | None:
        """Why it was not a plain fresh hit or a stored miss: the ``Cache-Status`` ``detail``."""
        return self.cache_status.detail

    @property
    def detail(self) -> str:
        """The reason as its token (empty when none): the access log's ``detail``."""
        return "" if self.reason is None else self.reason.value

    @property
    def upstream_time(self) -> float | None:
        return None if self.upstream is None else self.upstream.elapsed

    @property
    def extra(self) -> dict[str, str]:
        """Deprecated: read ``key`` and ``upstream`` (kept while ``proxy.endpoint``'s debug headers read ``extra``)."""
        found = {} if self.key is None else {"key": self.key}
        if self.upstream is not None:
            found["upstream_status"] = str(self.upstream.status)
        return found


def _status_pair(asked: Asked, status: CacheStatus) -> tuple[bytes, bytes]:
    return (b"cache-status", status.line(asked.cache).encode("latin-1"))


def entry_answer(
    asked: Asked,
    entry: Entry,
    age: float,
    status: CacheStatus,
    outcome: CacheOutcome,
    upstream: Upstream | None = None,
) -> Answer:
    """Serve ``entry``: a 304 when the client's own validators match (RFC 9110 §13.1), no body for HEAD."""
    request = asked.request
    age_pair = (b"age", age_header_value(age).encode())
    code, body = entry.head.status, entry.body
    if code == 200 and client_not_modified(request, entry.head):
        code, body = 304, b""
        headers = [*serving_headers(not_modified_head(entry.head).headers, None), age_pair, _status_pair(asked, status)]
    else:
        headers = [*entry.wire_headers, age_pair, _status_pair(asked, status)]
    if request.method == "HEAD":
        body = b""
    return Answer(
        code, headers, body, outcome=outcome, cache_status=status, route=asked.route, key=asked.key, upstream=upstream
    )


def response_answer(
    asked: Asked,
    head: ResponseHead,
    body: bytes | None,
    status: CacheStatus,
    outcome: CacheOutcome,
    *,
    conditional: bool = True,
    stream: AsyncIterator[bytes] | None = None,
    release: Callable[[], Awaitable[None]] | None = None,
    upstream: Upstream | None = None,
) -> Answer:
    """Answer with a response just received from the upstream (``body`` None: ``stream`` carries it)."""
    request = asked.request
    if conditional and head.status == 200 and client_not_modified(request, head):
        head, body, stream = not_modified_head(head), None, None
        headers = [*serving_headers(head.headers, None), _status_pair(asked, status)]
    else:
        headers = [*serving_headers(head.headers, None if body is None else len(body)), _status_pair(asked, status)]
    if request.method == "HEAD":
        body, stream = None, None
    return Answer(
        head.status,
        headers,
        body or b"",
        stream,
        release,
        outcome=outcome,
        cache_status=status,
        route=asked.route,
        key=asked.key,
        upstream=upstream,
    )


def error_answer(asked: Asked, code: int, text: str, status: CacheStatus) -> Answer:
    """A short plain-text error (502, 503, 504): one line, never a traceback."""
    body = (text.rstrip("\n") + "\n").encode()
    headers = Headers((("content-type", "text/plain; charset=utf-8"), ("cache-control", "no-store")))
    pairs = [*serving_headers(headers, len(body)), _status_pair(asked, status)]
    return Answer(code, pairs, body, outcome=CacheOutcome.ERROR, cache_status=status, route=asked.route, key=asked.key)
