"""Freshness lifetime of a response for a shared cache (RFC 9111 §4.2.1 explicit, §4.2.2 heuristic).

Both functions answer ``None`` when they have nothing to say, so the caller can tell "no explicit freshness"
from "explicitly stale" (``0``). Time is an argument: ``response_time`` stands in for a missing ``Date``.
"""

from __future__ import annotations

from proxy.messages import ResponseHead
from proxy.rfc.dates import date_field
from proxy.rfc.directives import Directives
from proxy.rfc.policy import Policy

# RFC 9110 §15.1: status codes that are heuristically cacheable by default.
HEURISTICALLY_CACHEABLE: frozenset[int] = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})


def _date_or(head: ResponseHead, response_time: float) -> float:
    """The response's ``Date``, or its arrival time when ``Date`` is absent or invalid (RFC 9110 §6.6.1)."""
    date = date_field(head.headers, "date", now=response_time)
    return response_time if date is None else date


def explicit_freshness(head: ResponseHead, directives: Directives, *, response_time: float) -> float | None:
    """RFC 9111 §4.2.1 for a shared cache: ``s-maxage``, else ``max-age``, else ``Expires`` minus ``Date``.

    A malformed delta counts as 0 (``Directives.delta``); an invalid ``Expires`` (e.g. ``0``, a date not in one
    of the three forms of RFC 9110 §5.6.7, or several ``Expires`` lines) means already expired (§5.3).
    Directives from a targeted field (RFC 9213 §2.2) also void ``Expires``. ``None`` when the response carries
    no explicit expiration.
    """
    for name in ("s-maxage", "max-age"):
        seconds = directives.delta(name)
        if seconds is not None:
            return float(seconds)
    if directives.targeted:
        return None
    if "expires" not in head.headers:
        return None
    expires = date_field(head.headers, "expires", now=response_time)
    if expires is None:
        return 0.0
    return max(0.0, expires - _date_or(head, response_time))


def heuristic_freshness(head: ResponseHead, policy: Policy, response_time: float) -> float | None:
    """RFC 9111 §4.2.2: a capped fraction of the time since ``Last-Modified`` (heuristically cacheable codes).

    ``None`` when the status is not heuristically cacheable or there is no valid ``Last-Modified``. A
    ``Last-Modified`` later than ``Date`` gives 0, never a negative lifetime.
    """
    if head.status not in HEURISTICALLY_CACHEABLE:
        return None
    last_modified = date_field(head.headers, "last-modified", now=response_time)
    if last_modified is None:
        return None
    elapsed = _date_or(head, response_time) - last_modified
    return max(0.0, min(policy.heuristic_max, policy.heuristic_fraction * elapsed))
