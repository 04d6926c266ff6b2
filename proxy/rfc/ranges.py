"""Range requests answered from a stored complete response (RFC 9110 §14, §13.1.5, §15.3.7, §15.5.17).

``plan_range`` reads the request's ``Range`` (and ``If-Range``) against a stored ``200`` and says what to send:
nothing special (the whole ``200``), one part (``206`` with ``Content-Range``), several parts
(``206 multipart/byteranges``, RFC 9110 §14.6), or ``416`` with ``Content-Range: bytes */length``. Only GET has
range semantics (§14.2); a ``Range`` the cache cannot read (another unit, bad syntax) is ignored, as §14.2 allows.
Requests that ask for many or overlapping small ranges (the denial-of-service shapes of §17.15) get the whole
``200`` instead of a multipart answer.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from proxy.messages import Headers, RequestHead, ResponseHead
from proxy.rfc.dates import parse_http_date
from proxy.rfc.validation import parse_etag, strong_match

# RFC 9110 §14.1.2: int-range = first-pos "-" [ last-pos ]; suffix-range = "-" suffix-length.
_RANGE_SPEC = re.compile(r"([0-9]+)-([0-9]*)|-([0-9]+)", re.ASCII)
# More parts than this (after merging) are answered with the whole representation (RFC 9110 §17.15).
MAX_PARTS = 16


@dataclass(frozen=True, slots=True)
class Part:
    """Bytes ``first`` to ``last`` inclusive of a representation ``length`` bytes long."""

    first: int
    last: int
    length: int

    @property
    def content_range(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.length}"


@dataclass(frozen=True, slots=True)
class Whole:
    """Send the whole stored response (no Range, one the cache ignores, or If-Range false)."""


@dataclass(frozen=True, slots=True)
class Partial:
    """``206``: one part, or several as ``multipart/byteranges`` (ascending, overlapping or adjacent ones merged)."""

    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class NotSatisfiable:
    """``416`` with ``Content-Range: bytes */length`` (RFC 9110 §15.5.17)."""

    length: int

    @property
    def content_range(self) -> str:
        return f"bytes */{self.length}"


RangePlan = Whole | Partial | NotSatisfiable


def parse_range(value: str) -> list[tuple[int | None, int | None]] | None:
    """RFC 9110 §14.1.2: the ranges of a ``bytes`` Range as ``(first, last)`` pairs (``(None, n)`` for the last
    ``n`` bytes, ``(first, None)`` for "to the end"); ``None`` when the field is not a valid bytes range set."""
    unit, sep, ranges = value.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    out: list[tuple[int | None, int | None]] = []
    for spec in ranges.split(","):
        spec = spec.strip(" \t")
        if not spec:
            continue  # empty list members are allowed (RFC 9110 §5.6.1)
        match = _RANGE_SPEC.fullmatch(spec)
        if match is None:
            return None
        first, last, suffix = match.groups()
        if suffix is not None:
            out.append((None, int(suffix)))
        elif last:
            if int(last) < int(first):
                return None  # §14.1.1: last-pos before first-pos makes the whole set invalid
            out.append((int(first), int(last)))
        else:
            out.append((int(first), None))
    return out or None


def satisfiable(ranges: list[tuple[int | None, int | None]], length: int) -> list[Part]:
    """§14.1.1: each range clipped to the representation; unsatisfiable ones dropped."""
    parts: list[Part] = []
    for first, last in ranges:
        if first is None:
            if last is None or last == 0 or length == 0:
                continue
            parts.append(Part(max(0, length - last), length - 1, length))
        elif first < length:
            end = length - 1 if last is None else min(last, length - 1)
            parts.append(Part(first, end, length))
    return parts


def merged(parts: list[Part]) -> list[Part]:
    """Overlapping or adjacent parts joined, in ascending order (RFC 9110 §15.3.7.2 allows both)."""
    ordered = sorted(parts, key=lambda p: p.first)
    out: list[Part] = []
    for part in ordered:
        if out and part.first <= out[-1].last + 1:
            out[-1] = Part(out[-1].first, max(out[-1].last, part.last), part.length)
        else:
            out.append(part)
    return out


def if_range_holds(value: str, head: ResponseHead) -> bool:
    """RFC 9110 §13.1.5: a strong entity-tag equal (strongly) to the stored ETag, or an HTTP-date equal to the
    stored ``Last-Modified``; anything else (a weak tag, another date, garbage) is false."""
    text = value.strip()
    if parse_etag(text) is not None and (text.startswith('"') or text[:2] in ("W/", "w/")):
        etag = head.headers.get("etag")
        return etag is not None and strong_match(text, etag)
    date = parse_http_date(text)
    modified = head.headers.get_all("last-modified")
    return date is not None and len(modified) == 1 and parse_http_date(modified[0]) == date


def plan_range(request: RequestHead, head: ResponseHead, length: int) -> RangePlan:
    """What to send for ``request`` from a stored complete response ``head`` with a body of ``length`` bytes."""
    lines = request.headers.get_all("range")
    if request.method != "GET" or head.status != 200 or len(lines) != 1:
        return Whole()
    if_range = request.headers.get_all("if-range")
    if if_range and (len(if_range) != 1 or not if_range_holds(if_range[0], head)):
        return Whole()
    ranges = parse_range(lines[0])
    if ranges is None:
        return Whole()
    parts = satisfiable(ranges, length)
    if not parts:
        return NotSatisfiable(length)
    joined = merged(parts)
    if len(joined) > MAX_PARTS:
        return Whole()
    return Partial(tuple(joined))


def boundary_for(body: bytes, parts: tuple[Part, ...]) -> str:
    """A multipart boundary that does not occur in ``body`` (deterministic: derived from the content)."""
    seed = hashlib.sha256(body[:4096] + repr(parts).encode()).hexdigest()
    boundary = f"cacheproxy-{seed[:24]}"
    while boundary.encode() in body:
        seed = hashlib.sha256(seed.encode()).hexdigest()
        boundary = f"cacheproxy-{seed[:24]}"
    return boundary


def multipart_body(
    body: bytes, parts: tuple[Part, ...], content_type: str | None, boundary: str, offset: int = 0
) -> bytes:
    """RFC 9110 §14.6: the ``multipart/byteranges`` content for ``parts`` of ``body`` (which starts at byte
    ``offset`` of the representation)."""
    chunks: list[bytes] = []
    for part in parts:
        fields = Headers([("Content-Type", content_type)] if content_type else []).adding(
            "Content-Range", part.content_range
        )
        head = "".join(f"{k}: {v}\r\n" for k, v in fields)
        chunks.append(f"\r\n--{boundary}\r\n{head}\r\n".encode("latin-1"))
        chunks.append(body[part.first - offset : part.last - offset + 1])
    chunks.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(chunks)
