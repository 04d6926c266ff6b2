"""What the service hands back to the ASGI edge: an ``Answer``, built from a stored entry, an upstream response or an
error. Headers are ASGI byte pairs ready to send, so the edge does no work beyond sending them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from proxy.messages import Entry, Headers, RequestHead, ResponseHead, serving_headers
from proxy.rfc.age import age_header_value
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


@dataclass(slots=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    release: Callable[[], Awaitable[None]] | None = None
    outcome: CacheOutcome = CacheOutcome.MISS
    detail: str = ""
    route: str = "default"
    upstream_time: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


def entry_answer(
    request: RequestHead, entry: Entry, age: float, status_line: str, outcome: CacheOutcome, detail: str = ""
) -> Answer:
    """Serve ``entry``: a 304 when the client's own validators match (RFC 9110 §13.1), no body for HEAD."""
    age_pair = (b"age", age_header_value(age).encode())
    status_pair = (b"cache-status", status_line.encode("latin-1"))
    if precondition_failed(request, entry.head):
        return precondition_failed_answer(entry.head, [age_pair, status_pair], outcome, detail)
    if entry.head.status == 200 and client_not_modified(request, entry.head):
        head = not_modified_head(entry.head)
        return Answer(
            304, [*serving_headers(head.headers, None), age_pair, status_pair], outcome=outcome, detail=detail
        )
    if entry.head.status == 206:
        status, headers, body = partial_reply(request, entry)
        return Answer(status, [*headers, age_pair, status_pair], body, outcome=outcome, detail=detail)
    if "range" in request.headers:
        plan = plan_range(request, entry.head, len(entry.body))
        if not isinstance(plan, Whole):
            status, headers, body = range_reply(entry.head.headers, entry.body, plan)
            return Answer(status, [*headers, age_pair, status_pair], body, outcome=outcome, detail=detail)
    body = b"" if request.method == "HEAD" else entry.body
    return Answer(entry.head.status, [*entry.wire_headers, age_pair, status_pair], body, outcome=outcome, detail=detail)


# RFC 9110 §15.3.7: a 206 carries the stored fields but describes its own content.
_PARTIAL_DROPS = ("content-length", "content-range", "content-type")
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
        kept = Headers((k, v) for k, v in headers if k.lower() in _UNSATISFIABLE_KEEPS)
        return 416, serving_headers(kept.adding("Content-Range", plan.content_range), 0), b""
    content_type = headers.get("content-type")
    base = headers.without(*_PARTIAL_DROPS)
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
    request: RequestHead,
    head: ResponseHead,
    body: bytes | None,
    status_line: str,
    outcome: CacheOutcome,
    detail: str = "",
    *,
    conditional: bool = True,
    age: float | None = None,
) -> Answer:
    """Answer with a response just received from the upstream (``body`` None: the caller streams it).

    ``age``: the age the cache computed for it (RFC 9111 §4.2.3, §5.1), sent as ``Age`` in place of the origin's.
    """
    added = [(b"cache-status", status_line.encode("latin-1"))]
    if age is not None:
        added.insert(0, (b"age", age_header_value(age).encode()))
    if conditional and precondition_failed(request, head):
        return precondition_failed_answer(head, added, outcome, detail)
    if conditional and head.status == 200 and client_not_modified(request, head):
        nm = not_modified_head(head)
        return Answer(304, [*serving_headers(nm.headers, None), *added], outcome=outcome, detail=detail)
    length = None if body is None else len(body)
    headers = [*serving_headers(head.headers, length), *added]
    payload = b"" if body is None or request.method == "HEAD" else body
    return Answer(head.status, headers, payload, outcome=outcome, detail=detail)


def precondition_failed_answer(
    head: ResponseHead, added: list[tuple[bytes, bytes]], outcome: CacheOutcome, detail: str
) -> Answer:
    """``412`` in place of ``head`` (RFC 9110 §15.5.13): its validators and Date, no content. No caching fields:
    a 412 is not heuristically cacheable, and a cache in front must never store one for the URL."""
    fields = Headers((k, v) for k, v in head.headers if k.lower() in ("etag", "last-modified", "date"))
    return Answer(412, [*serving_headers(fields, 0), *added], outcome=outcome, detail=detail)


def error_answer(status: int, text: str, status_line: str, detail: str) -> Answer:
    """A short plain-text error (502, 504): one line, never a traceback."""
    body = (text.rstrip("\n") + "\n").encode()
    headers = Headers(
        (
            ("content-type", "text/plain; charset=utf-8"),
            ("cache-control", "no-store"),
        )
    )
    pairs = [*serving_headers(headers, len(body)), (b"cache-status", status_line.encode("latin-1"))]
    return Answer(status, pairs, body, outcome=CacheOutcome.ERROR, detail=detail)
