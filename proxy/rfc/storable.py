"""Whether and how a shared cache stores a response (RFC 9111 §3, §5.2.2; RFC 5861; RFC 9213), as a ``Store``
or a ``DontStore`` with its reason.

The checks run in a fixed order so that the reason reported in ``Cache-Status`` is the first one that applies:
method, status, request ``no-store``, ``must-understand``, ``no-store``, ``private``, ``Authorization``,
``Vary: *``, ``Set-Cookie``, size, freshness. A route's ``Policy`` can supply or force freshness and widen the
stale windows.
"""

from __future__ import annotations

from dataclasses import replace

from proxy.messages import HOP_BY_HOP, Headers, RequestHead, ResponseHead
from proxy.rfc.age import corrected_initial_age
from proxy.rfc.decisions import DontStore, Reason, Store
from proxy.rfc.directives import Directives, request_directives, response_directives
from proxy.rfc.freshness import HEURISTICALLY_CACHEABLE, explicit_freshness, heuristic_freshness
from proxy.rfc.invalidation import same_origin_uri
from proxy.rfc.partial import storable_partial
from proxy.rfc.policy import Policy, SetCookiePolicy
from proxy.rfc.validation import has_validator

# RFC 9111 §5.2.2.3: the final status codes whose caching requirements this cache implements. 304 (merged into a
# stored response, never stored itself) is deliberately absent.
UNDERSTOOD_STATUSES: frozenset[int] = frozenset(
    {200, 203, 204, 206, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501}
)

# Status codes a route's ``override`` applies to when its ``statuses`` is unset.
OVERRIDE_STATUSES: frozenset[int] = frozenset({200, 203, 204, 300, 301, 308, 404, 410})

# Never stored, whatever the directives say (see UNDERSTOOD_STATUSES).
_NEVER_STORED: frozenset[int] = frozenset({304})

# RFC 9111 §3.5: what lets a shared cache store a response to a request with Authorization.
_AUTHORIZED_OK: tuple[str, ...] = ("public", "s-maxage", "must-revalidate")


def strip_hop_by_hop(headers: Headers) -> Headers:
    """RFC 9110 §7.6.1: drop the fixed hop-by-hop fields and every field named in ``Connection``."""
    named = {name.lower() for name in headers.get_list("connection")}
    return headers.without(*HOP_BY_HOP, *named)


def surrogate_keys(headers: Headers) -> tuple[str, ...]:
    """Purge tags: ``Surrogate-Key`` (space-separated), then ``Cache-Tag`` (comma-separated), deduplicated."""
    tags: list[str] = []
    for value in headers.get_all("surrogate-key"):
        tags.extend(value.split())
    tags.extend(headers.get_list("cache-tag"))
    return tuple(dict.fromkeys(tags))


def _qualified_fields(directives: Directives) -> tuple[str, ...]:
    """Fields named by ``private="..."`` and ``no-cache="..."``: stored without them (§5.2.2.4, §5.2.2.7)."""
    return directives.field_names("private") + directives.field_names("no-cache")


def _declared_size(response: ResponseHead, body_size: int | None) -> int | None:
    """The body size if known, else ``Content-Length`` when it is a valid number."""
    if body_size is not None:
        return body_size
    length = response.headers.get("content-length")
    if length is not None and length.strip().isdigit():
        return int(length.strip())
    return None


def _refusal(
    request: RequestHead, response: ResponseHead, directives: Directives, policy: Policy, body_size: int | None
) -> Reason | None:
    """RFC 9111 §3: the first reason, in reporting order, that forbids storing; ``None`` when none applies.

    ``must-understand`` with an understood status overrides ``no-store`` (§5.2.2.3); ``ignore_private`` lets
    ``no-store`` and bare ``private`` responses be stored (a dangerous deviation a route opts into).
    """
    status = response.status
    if request.method != "GET":
        return Reason.METHOD
    if status < 200 or status in _NEVER_STORED:
        return Reason.STATUS
    if status == 206 and not storable_partial(response, body_size):
        return Reason.STATUS  # RFC 9111 §3.3: only a single known span with a strong validator is kept
    if request_directives(request.headers).has("no-store"):
        return Reason.REQUEST_NO_STORE
    must_understand = directives.has("must-understand")
    if must_understand and status not in UNDERSTOOD_STATUSES:
        return Reason.MUST_UNDERSTAND
    if directives.has("no-store") and not must_understand and not policy.ignore_private:
        return Reason.NO_STORE
    if directives.unqualified("private") and not policy.ignore_private:
        return Reason.PRIVATE
    if "authorization" in request.headers and not any(directives.has(n) for n in _AUTHORIZED_OK):
        return Reason.AUTHORIZATION
    if "*" in response.headers.get_list("vary"):
        return Reason.VARY_STAR
    return None


def _overrides(response: ResponseHead, policy: Policy) -> bool:
    """Whether the route forces its ``ttl`` on this response."""
    statuses = policy.statuses if policy.statuses is not None else OVERRIDE_STATUSES
    return policy.override and policy.ttl is not None and response.status in statuses


def _lifetime(response: ResponseHead, directives: Directives, policy: Policy, response_time: float) -> float | None:
    """The freshness lifetime, first that applies: forced ``ttl``, bare ``no-cache`` (0), explicit (§4.2.1),
    route ``ttl``, heuristic (§4.2.2). ``None`` when nothing gives the response a lifetime.
    """
    if _overrides(response, policy) and policy.ttl is not None:
        return policy.ttl
    if directives.unqualified("no-cache"):
        return 0.0
    explicit = explicit_freshness(response, directives, response_time=response_time)
    if explicit is not None:
        return explicit
    statuses = policy.statuses if policy.statuses is not None else HEURISTICALLY_CACHEABLE
    if policy.ttl is not None and response.status in statuses:
        return policy.ttl
    return heuristic_freshness(response, policy, response_time)


def _stale_windows(directives: Directives, policy: Policy, overridden: bool) -> tuple[float, float]:
    """RFC 5861 §3, §4: the origin's windows plus the route's; none when the origin forbids serving stale.

    ``must-revalidate``, ``proxy-revalidate``, ``s-maxage`` (§5.2.2.10) and bare ``no-cache`` forbid it
    (§4.2.4).
    An overriding route ignores the origin's directives and uses its own windows only.
    """
    if overridden:
        return policy.stale_while_revalidate, policy.stale_if_error
    if directives.unqualified("no-cache") or directives.forbids_stale():
        return 0.0, 0.0
    swr = (directives.delta("stale-while-revalidate") or 0) + policy.stale_while_revalidate
    sie = (directives.delta("stale-if-error") or 0) + policy.stale_if_error
    return float(swr), float(sie)


def assess(
    request: RequestHead,
    response: ResponseHead,
    policy: Policy,
    *,
    request_time: float,
    response_time: float,
    body_size: int | None,
) -> Store | DontStore:
    """RFC 9111 §3 for a shared cache: whether to store ``response``, for how long, or why not.

    The stored head loses its hop-by-hop fields, the fields named by qualified ``private``/``no-cache`` and,
    under ``SetCookiePolicy.STRIP``, ``Set-Cookie``. A response with no lifetime is stored (at freshness 0)
    only when it can be revalidated or served stale. A ``body_size`` of ``None`` falls back to
    ``Content-Length``; without either the size is not checked.
    """
    directives = response_directives(response.headers)
    refusal = _refusal(request, response, directives, policy, body_size)
    if refusal is not None:
        return DontStore(refusal)
    headers = strip_hop_by_hop(response.headers).without(*_qualified_fields(directives))
    if "set-cookie" in headers:
        if policy.set_cookie is SetCookiePolicy.BYPASS:
            return DontStore(Reason.SET_COOKIE)
        if policy.set_cookie is SetCookiePolicy.STRIP:
            headers = headers.without("set-cookie")
    size = _declared_size(response, body_size)
    if size is not None and size > policy.max_object_size:
        return DontStore(Reason.TOO_LARGE)
    freshness = _lifetime(response, directives, policy, response_time)
    if freshness is None:
        return DontStore(Reason.NO_FRESHNESS)
    swr, sie = _stale_windows(directives, policy, _overrides(response, policy))
    if freshness <= 0 and swr <= 0 and sie <= 0 and not has_validator(ResponseHead(response.status, headers)):
        no_cache = directives.unqualified("no-cache")
        return DontStore(Reason.RESPONSE_NO_CACHE if no_cache else Reason.NO_FRESHNESS)
    initial_age = corrected_initial_age(response.headers, request_time, response_time)
    ttl = max(1.0, freshness + max(swr, sie) + policy.keep - initial_age)
    return Store(
        head=ResponseHead(response.status, headers),
        freshness=freshness,
        initial_age=initial_age,
        stale_while_revalidate=swr,
        stale_if_error=sie,
        ttl=ttl,
        forced=_overrides(response, policy),
    )


def post_answers_get(request: RequestHead, response: ResponseHead) -> RequestHead | None:
    """RFC 9110 §9.3.3: the GET a response to ``request`` (a POST) may be stored for, or ``None``.

    Only a response with explicit freshness (``s-maxage``, ``max-age`` or ``Expires``, RFC 9111 §4.2.1) and a
    ``Content-Location`` that names the POST's own target URI represents that URI, so it can answer a later GET.
    Everything else about storing it is ``assess``'s to say, for the returned GET.
    """
    if request.method != "POST" or response.status not in UNDERSTOOD_STATUSES or response.status == 206:
        return None
    locations = response.headers.get_all("content-location")
    if len(locations) != 1 or same_origin_uri(request.url, locations[0]) != request.url:
        return None
    directives = response_directives(response.headers)
    explicit = directives.has("s-maxage") or directives.has("max-age")
    if not explicit and (directives.targeted or "expires" not in response.headers):
        return None
    return replace(request, method="GET")
