"""Incomplete responses (RFC 9111 §3.3, §3.4): storing a ``206``, serving ranges it covers, combining parts.

A stored partial entry is a ``206`` with exactly one ``Content-Range: bytes first-last/length`` (complete length
known) and a strong entity-tag, holding that contiguous span. It answers only a Range request that lies wholly
inside the span (§3.3), always as a ``206``. A new ``206`` for the same representation (strong ETags equal,
RFC 9111 §3.4) that overlaps or touches the span is combined with it; once the span covers every byte, the entry
becomes the complete ``200`` it is part of. A request the span covers only in part is sent upstream for the missing
bytes alone (``narrowed``), with ``If-Range`` so that a changed representation comes back whole.
"""

from __future__ import annotations

import re
from dataclasses import replace

from proxy.messages import Entry, RequestHead, ResponseHead
from proxy.rfc.ranges import MAX_PARTS, Part, Partial, merged, parse_range, satisfiable
from proxy.rfc.validation import parse_etag, strong_match

_CONTENT_RANGE = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+)", re.ASCII)


def content_span(head: ResponseHead) -> Part | None:
    """The one span a ``206`` carries (RFC 9110 §14.4), or ``None`` (several lines, ``*`` length, bad syntax)."""
    lines = head.headers.get_all("content-range")
    if len(lines) != 1:
        return None
    match = _CONTENT_RANGE.fullmatch(lines[0].strip())
    if match is None:
        return None
    first, last, length = (int(g) for g in match.groups())
    if first > last or last >= length:
        return None
    return Part(first, last, length)


def _strong_etag(head: ResponseHead) -> str | None:
    value = head.headers.get("etag")
    parsed = None if value is None else parse_etag(value)
    return value if parsed is not None and not parsed[0] else None


def storable_partial(head: ResponseHead, body_length: int | None) -> bool:
    """RFC 9111 §3.3: a ``206`` this cache keeps: one known span, its body exactly that span, a strong ETag (so
    that parts can be combined, §3.4). Multipart 206s are not stored."""
    if head.status != 206 or _strong_etag(head) is None:
        return False
    span = content_span(head)
    return span is not None and (body_length is None or body_length == span.last - span.first + 1)


def is_partial(entry: Entry) -> bool:
    return entry.head.status == 206


def requested_parts(request: RequestHead, length: int) -> list[Part] | None:
    """The satisfiable parts a GET's single ``Range`` asks for, or ``None`` when there is no usable Range."""
    lines = request.headers.get_all("range")
    if request.method != "GET" or len(lines) != 1:
        return None
    ranges = parse_range(lines[0])
    return None if ranges is None else satisfiable(ranges, length)


def covers(entry: Entry, request: RequestHead) -> bool:
    """RFC 9111 §3.3: the request is a Range request lying wholly inside the stored span (and If-Range, if any,
    names the stored strong ETag)."""
    span = content_span(entry.head)
    parts = None if span is None else requested_parts(request, span.length)
    if span is None or not parts:
        return False
    if_range = request.headers.get_all("if-range")
    etag = _strong_etag(entry.head)
    if if_range and (len(if_range) != 1 or etag is None or not strong_match(if_range[0], etag)):
        return False
    return all(span.first <= p.first and p.last <= span.last for p in parts)


def narrowed(entry: Entry, request: RequestHead) -> str | None:
    """The ``Range`` to ask upstream for when the stored span covers one requested range only in part: just the
    missing bytes on one side (RFC 9111 §3.3); ``None`` when narrowing would not help."""
    span = content_span(entry.head)
    parts = None if span is None else requested_parts(request, span.length)
    if span is None or parts is None or len(parts) != 1:
        return None
    part = parts[0]
    if part.first >= span.first and part.last > span.last >= part.first:
        return f"bytes={span.last + 1}-{part.last}"
    if part.last <= span.last and part.first < span.first <= part.last:
        return f"bytes={part.first}-{span.first - 1}"
    return None


def combine(stored: Entry, head: ResponseHead, body: bytes) -> tuple[ResponseHead, bytes] | None:
    """RFC 9111 §3.4: a stored partial and a new ``206`` of the same representation joined into one span, with the
    new response's fields; a ``200`` when the span is then complete. ``None`` when they cannot be combined
    (different or weak ETags, other complete lengths, a gap between the spans)."""
    old, new = content_span(stored.head), content_span(head)
    old_tag, new_tag = _strong_etag(stored.head), _strong_etag(head)
    if old is None or new is None or old_tag is None or new_tag is None or not strong_match(old_tag, new_tag):
        return None
    if old.length != new.length or new.first > old.last + 1 or old.first > new.last + 1:
        return None
    first, last = min(old.first, new.first), max(old.last, new.last)
    joined = bytearray(last - first + 1)
    joined[old.first - first : old.last - first + 1] = stored.body
    joined[new.first - first : new.last - first + 1] = body
    fields = head.headers.without("content-range", "content-length")
    if first == 0 and last == new.length - 1:
        return ResponseHead(200, fields), bytes(joined)
    return ResponseHead(206, fields.adding("Content-Range", f"bytes {first}-{last}/{new.length}")), bytes(joined)


def plan_from_partial(entry: Entry, request: RequestHead) -> Partial | None:
    """The parts to answer ``request`` with from a stored partial entry (``covers`` must hold), or ``None``."""
    span = content_span(entry.head)
    if span is None or not covers(entry, request):
        return None
    parts = requested_parts(request, span.length) or []
    joined = merged(parts)
    return Partial(tuple(joined)) if 0 < len(joined) <= MAX_PARTS else None


def narrowed_request(request: RequestHead, entry: Entry, byte_range: str) -> RequestHead:
    """The request for the bytes a stored partial lacks: ``Range`` narrowed, ``If-Range`` the stored strong ETag,
    so that a changed representation comes back as a whole ``200`` (RFC 9110 §13.1.5)."""
    headers = request.headers.without("if-range").with_("Range", byte_range)
    etag = _strong_etag(entry.head)
    if etag is not None:
        headers = headers.adding("If-Range", etag.strip())
    return replace(request, headers=headers)
