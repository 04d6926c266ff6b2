"""The knobs a route turns on the RFC logic. The rules package builds one per route; the rfc package only reads them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MIB = 1024 * 1024


class SetCookiePolicy(StrEnum):
    BYPASS = "bypass"  # a response with Set-Cookie is not stored (nginx, Varnish, the large CDNs)
    STRIP = "strip"  # stored without Set-Cookie; only the client that caused the fetch gets the cookie
    STORE = "store"  # RFC 9111 behaviour: stored with the cookie


@dataclass(frozen=True)
class Policy:
    """How one route caches.

    ``ttl``: freshness when the origin gives no explicit freshness; with ``override``, freshness whatever the origin
    says (``no-store``/``private``/``Set-Cookie`` still prevent storing unless ``ignore_private``).
    ``statuses``: status codes storable under ``ttl``/``override`` (``None``: the RFC's heuristically cacheable codes).
    ``stale_while_revalidate``/``stale_if_error``: seconds added to what the origin says (RFC 5861).
    ``heuristic_fraction``/``heuristic_max``: RFC 9111 §4.2.2 heuristic freshness from Last-Modified.
    ``keep``: how long a stale entry is kept for revalidation beyond its freshness and stale windows.
    """

    ttl: float | None = None
    override: bool = False
    statuses: frozenset[int] | None = None
    stale_while_revalidate: float = 0.0
    stale_if_error: float = 0.0
    set_cookie: SetCookiePolicy = SetCookiePolicy.BYPASS
    ignore_private: bool = False
    max_object_size: int = 8 * MIB
    heuristic_fraction: float = 0.1
    heuristic_max: float = 86_400.0
    keep: float = 3_600.0


DEFAULT_POLICY = Policy()
