"""Decisions are frozen values with a reason; ``proxy.cache.service`` is the one driver that acts on them.

Each ``Reason`` value is what appears in the ``Cache-Status`` ``detail`` parameter, in the access log and as a metrics
label, so the values are short, stable, lower-case tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from proxy.messages import Entry, ResponseHead


class Reason(StrEnum):
    # Served from cache.
    FRESH = "fresh"
    STALE_WHILE_REVALIDATE = "stale-while-revalidate"
    STALE_IF_ERROR = "stale-if-error"
    MAX_STALE = "max-stale"  # the client accepted a stale response (request max-stale)
    # Not served from cache (RFC 9211 fwd reasons are in ``Fwd``).
    NOT_STORED = "not-stored"  # nothing under this key
    PARTIAL = "partial"  # only part of the response is stored, not what the request needs (RFC 9111 §3.3)
    VARY_MISMATCH = "vary-mismatch"
    STALE = "stale"  # stale, must go upstream
    NO_VALIDATOR = "no-validator"  # stale and nothing to revalidate with: refetch
    REQUEST_NO_CACHE = "request-no-cache"
    REQUEST_MAX_AGE = "request-max-age"
    REQUEST_MIN_FRESH = "request-min-fresh"
    REQUEST_NO_STORE = "request-no-store"
    RESPONSE_NO_CACHE = "no-cache"  # stored response says no-cache: always revalidate
    MUST_REVALIDATE = "must-revalidate"
    AUTHORIZATION = "authorization"  # request has Authorization, entry stored from an anonymous request
    ONLY_IF_CACHED = "only-if-cached"
    RULE = "rule"  # the route bypasses the cache
    METHOD = "method"
    REQUEST_BODY = "request-body"  # a GET or HEAD with a body: forwarded with it, never served or stored
    # Not stored.
    NO_STORE = "no-store"
    PRIVATE = "private"
    SET_COOKIE = "set-cookie"
    STATUS = "status"  # status code not cacheable (or not final)
    NO_FRESHNESS = "no-freshness"  # no explicit freshness and not heuristically cacheable
    MUST_UNDERSTAND = "must-understand"
    VARY_STAR = "vary-star"
    TOO_LARGE = "too-large"
    # Upstream trouble: one per ``proxy.errors.UpstreamError`` class, the same token as its ``detail``.
    UPSTREAM_ERROR = "upstream-error"
    CONNECT_FAILED = "connect-failed"
    UPSTREAM_TIMEOUT = "timeout"
    PROTOCOL_ERROR = "protocol-error"
    POOL_EXHAUSTED = "pool-exhausted"
    COALESCE_TIMEOUT = "coalesce-timeout"
    STORE_UNAVAILABLE = "store-unavailable"  # the store did not take the entry: down, timed out, or breaker open
    INVALIDATED = "invalidated"  # an invalidation covering it came while it was fetched (RFC 9111 §4.4)


class Fwd(StrEnum):
    """RFC 9211 §2.2 ``fwd`` values."""

    BYPASS = "bypass"
    METHOD = "method"
    URI_MISS = "uri-miss"
    VARY_MISS = "vary-miss"
    MISS = "miss"
    REQUEST = "request"
    STALE = "stale"
    PARTIAL = "partial"


@dataclass(frozen=True, slots=True)
class Serve:
    """Answer from ``entry`` without contacting the upstream. ``age`` is its current age in seconds.

    ``revalidate`` asks the driver to refresh the entry in the background (stale-while-revalidate).
    """

    entry: Entry
    age: float
    reason: Reason = Reason.FRESH
    revalidate: bool = False


@dataclass(frozen=True, slots=True)
class Revalidate:
    """Send a conditional request for ``entry`` (RFC 9111 §4.3.1).

    ``stale_if_error``: the entry may be served instead of an upstream error (RFC 5861 §4). ``sole``: the entry is
    the only response stored under its key, so a 304 without validators can only be about it (RFC 9111 §4.3.4).
    """

    entry: Entry
    reason: Reason
    stale_if_error: bool = False
    sole: bool = True


@dataclass(frozen=True, slots=True)
class Forward:
    """Fetch from the upstream without a stored validator.

    ``fallback`` is an entry usable under stale-if-error when the upstream fails, if any. ``partial``: a stored
    incomplete response the answer may be combined with (RFC 9111 §3.4); ``range``: the narrowed ``Range`` to ask
    for instead of the client's, when that partial covers part of it (§3.3).
    """

    fwd: Fwd
    reason: Reason
    fallback: Entry | None = None
    partial: Entry | None = None
    range: str | None = None


@dataclass(frozen=True, slots=True)
class Unsatisfiable:
    """``only-if-cached`` and nothing fits: answer 504 (RFC 9111 §5.2.1.7)."""

    reason: Reason = Reason.ONLY_IF_CACHED


Decision = Serve | Revalidate | Forward | Unsatisfiable


@dataclass(frozen=True, slots=True)
class Store:
    """Store ``head`` (already stripped of what must not be stored) with these lifetimes, in seconds."""

    head: ResponseHead
    freshness: float
    initial_age: float
    stale_while_revalidate: float
    stale_if_error: float
    ttl: float  # how long the store should keep it: freshness + stale windows + policy keep, minus initial age
    forced: bool = False  # a route override set the freshness: reuse ignores the origin's directives too


@dataclass(frozen=True, slots=True)
class DontStore:
    reason: Reason
