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
from proxy.rfc.partial import content_span, plan_from_partial
from proxy.rfc.preconditions import precondition_failed
from proxy.rfc.ranges import NotSatisfiable, Partial, Whole, boundary_for, multipart_body, plan_range
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


# Rendered ``Cache-Status`` fields of the statuses without a ``ttl``: a bounded set of values (outcome, reason,
# upstream status), each rendered once. Those with a ``ttl`` (stale answers) are rendered each time.
STATUS_LINES_LIMIT = 1024
_status_lines: dict[tuple[str, CacheStatus], tuple[bytes, bytes]] = {}


def _status_pair(asked: Asked, status: CacheStatus) -> tuple[bytes, bytes]:
    if status.ttl is not None:
        return (b"cache-status", status.line(asked.cache).encode("latin-1"))
    memo = (asked.cache, status)
    pair = _status_lines.get(memo)
    if pair is None:
        if len(_status_lines) >= STATUS_LINES_LIMIT:
            _status_lines.clear()
        pair = _status_lines[memo] = (b"cache-status", status.line(asked.cache).encode("latin-1"))
    return pair


def entry_answer(
    asked: Asked,
    entry: Entry,
    age: float,
    status: CacheStatus,
    outcome: CacheOutcome,
    upstream: Upstream | None = None,
) -> Answer:
    """Serve ``entry``: 412 when the client's If-Match / If-Unmodified-Since fails (RFC 9110 §13.2.2), a 304 when
    its own validators match (RFC 9110 §13.1), 206/416 for a Range (RFC 9110 §14), no body for HEAD."""
    request = asked.request
    added = [(b"age", age_header_value(age).encode()), _status_pair(asked, status)]
    if precondition_failed(request, entry.head):
        return precondition_failed_answer(asked, entry.head, added, status, outcome, upstream=upstream)
    code, body = entry.head.status, entry.body
    if code == 200 and client_not_modified(request, entry.head):
        code, body = 304, b""
        headers = [*serving_headers(not_modified_head(entry.head).headers, None), *added]
    elif code == 206:
        code, fields, body = partial_reply(request, entry)
        headers = [*fields, *added]
    elif "range" in request.headers and not isinstance(plan := plan_range(request, entry.head, len(body)), Whole):
        code, fields, body = range_reply(entry.head.headers, body, plan)
        headers = [*fields, *added]
    else:
        headers = [*entry.wire_headers, *added]
    if request.method == "HEAD":
        body = b""
    return Answer(
        code, headers, body, outcome=outcome, cache_status=status, route=asked.route, key=asked.key, upstream=upstream
    )


# RFC 9110 §15.3.7: a 206 carries the stored fields but describes its own content.
_PARTIAL_DROPS = frozenset({"content-length", "content-range", "content-type"})
# RFC 9110 §15.5.17: a 416 describes no content of the representation.
_UNSATISFIABLE_KEEPS = frozenset({"date", "cache-control", "expires", "etag", "last-modified", "vary"})


def partial_reply(request: RequestHead, entry: Entry) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A 206 from a stored incomplete response (RFC 9111 §3.3): the parts the request asks for (which the span
    covers; ``reuse`` makes sure), or else the stored span as it is, never a body without its Content-Range."""
    span = content_span(entry.head)
    if span is None:  # never stored so (rfc.partial.storable_partial): send it as the origin sent it
        return 206, entry.wire_headers, entry.body
    plan = plan_from_partial(entry, request) or Partial((span,))
    return range_reply(entry.head.headers, entry.body, plan, offset=span.first)


def range_reply(
    headers: Headers, body: bytes, plan: Partial | NotSatisfiable, *, offset: int = 0
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The status, fields and content answering a Range request from a stored body that starts at byte ``offset``
    of the representation (RFC 9110 §14)."""
    if isinstance(plan, NotSatisfiable):
        kept = headers.only(_UNSATISFIABLE_KEEPS)
        return 416, serving_headers(kept.adding("Content-Range", plan.content_range), 0), b""
    content_type = headers.get("content-type")
    base = headers.without_all(_PARTIAL_DROPS)
    if len(plan.parts) == 1:
        part = plan.parts[0]
        fields = base.adding("Content-Range", part.content_range)
        if content_type is not None:
            fields = fields.adding("Content-Type", content_type)
        content = body[part.first - offset : part.last - offset + 1]
    else:
        boundary = boundary_for(body, plan.parts)
        fields = base.adding("Content-Type", f"multipart/byteranges; boundary={boundary}")
        content = multipart_body(body, plan.parts, content_type, boundary, offset)
    return 206, serving_headers(fields, len(content)), content


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
    age: float | None = None,
) -> Answer:
    """Answer with a response just received from the upstream (``body`` None: ``stream`` carries it).

    ``age``: the age the cache computed for it (RFC 9111 §4.2.3, §5.1), sent as ``Age`` in place of the origin's.
    """
    request = asked.request
    added = [_status_pair(asked, status)]
    if age is not None:
        added.insert(0, (b"age", age_header_value(age).encode()))
    if conditional and precondition_failed(request, head):
        return precondition_failed_answer(asked, head, added, status, outcome, release=release, upstream=upstream)
    if conditional and head.status == 200 and client_not_modified(request, head):
        head, body, stream = not_modified_head(head), None, None
        headers = [*serving_headers(head.headers, None), *added]
    else:
        headers = [*serving_headers(head.headers, None if body is None else len(body)), *added]
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


_PRECONDITION_FAILED_KEEPS = frozenset({"etag", "last-modified", "date"})


def precondition_failed_answer(
    asked: Asked,
    head: ResponseHead,
    added: list[tuple[bytes, bytes]],
    status: CacheStatus,
    outcome: CacheOutcome,
    *,
    release: Callable[[], Awaitable[None]] | None = None,
    upstream: Upstream | None = None,
) -> Answer:
    """``412`` in place of ``head`` (RFC 9110 §15.5.13): its validators and Date, no content. No caching fields:
    a 412 is not heuristically cacheable, and a cache in front must never store one for the URL."""
    fields = head.headers.only(_PRECONDITION_FAILED_KEEPS)
    return Answer(
        412,
        [*serving_headers(fields, 0), *added],
        release=release,
        outcome=outcome,
        cache_status=status,
        route=asked.route,
        key=asked.key,
        upstream=upstream,
    )


def error_answer(
    asked: Asked, code: int, text: str, status: CacheStatus, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> Answer:
    """A short plain-text error (502, 503, 504): one line, never a traceback; ``extra`` fields appended."""
    body = (text.rstrip("\n") + "\n").encode()
    headers = Headers((("content-type", "text/plain; charset=utf-8"), ("cache-control", "no-store")))
    pairs = [*serving_headers(headers, len(body)), _status_pair(asked, status), *extra]
    return Answer(code, pairs, body, outcome=CacheOutcome.ERROR, cache_status=status, route=asked.route, key=asked.key)
