"""``cacheproxy explain`` and ``cacheproxy schema``: what the rules do with one request, and the file's JSON Schema.

``explain`` runs the same functions as the request path (``Rules.match``, ``proxy.cache.keys``,
``proxy.rfc.storable.assess``) without sending anything, and prints the route, the key and the parts it was built
from, whether the request is looked up, and, given a response, whether it would be stored and for how long.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from proxy.cache.keys import key_parts, primary_key
from proxy.errors import ConfigError
from proxy.messages import UNSAFE_METHODS, Headers, RequestHead, ResponseHead
from proxy.rfc.decisions import DontStore, Reason
from proxy.rfc.storable import assess
from proxy.rules.model import Route, Rules, RulesFile

_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")  # whitespace and controls never appear in a request target

_WHY_NOT: dict[Reason, str] = {
    Reason.NO_STORE: "the response or the request says no-store (RFC 9111 §5.2.2.5)",
    Reason.REQUEST_NO_STORE: "the request says no-store (RFC 9111 §5.2.1.5)",
    Reason.PRIVATE: "the response is private, which a shared cache must not store (RFC 9111 §5.2.2.7)",
    Reason.SET_COOKIE: "the response sets a cookie and the route's set_cookie is bypass",
    Reason.STATUS: "this status code is not storable here (see the route's statuses)",
    Reason.NO_FRESHNESS: "no freshness, validator or stale window; give the route a ttl",
    Reason.RESPONSE_NO_CACHE: "no-cache with nothing to revalidate with",
    Reason.TOO_LARGE: "the body is larger than the route's max_object_size",
    Reason.AUTHORIZATION: "the request has Authorization and the response is not public (RFC 9111 §3.5)",
    Reason.VARY_STAR: "Vary: * never matches a later request (RFC 9111 §4.1)",
    Reason.MUST_UNDERSTAND: "must-understand with a status code this cache does not implement",
    Reason.METHOD: "only GET and HEAD responses are stored",
}


def explain(
    rules: Rules,
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    response_headers: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> str:
    """The text ``cacheproxy explain`` prints for ``method url`` with ``headers``, and optionally a response."""
    request = request_from_url(method, url, headers)
    route = rules.match(request.method, request.host, request.path)
    lines = [f"request   {request.method} {request.url}"]
    lines += _route_lines(route, rules)
    lines += _key_lines(request, route)
    lines.append("action    " + _action(request, route))
    if response_headers is not None:
        lines += _response_lines(request, route, ResponseHead(status, Headers(response_headers)))
    return "\n".join(lines)


def request_from_url(method: str, url: str, headers: list[tuple[str, str]]) -> RequestHead:
    """A request head for an absolute URL, or for a path with the host taken from ``Host``."""
    head = Headers(headers)
    parts = urlsplit(url)
    absolute = parts.scheme in ("http", "https") and bool(parts.netloc)
    if not (absolute or (not parts.scheme and not parts.netloc and url.startswith("/"))) or _BAD_TARGET.search(url):
        raise ConfigError(f"not a URL: {url!r} (give http://host/path, or /path with -H 'Host: name')")
    host = parts.netloc.rpartition("@")[2] or head.get("host") or "localhost"
    return RequestHead(
        method=method.upper(),
        scheme=parts.scheme or "http",
        host=host,
        path=parts.path or "/",
        query=parts.query,
        headers=head,
    )


def schema() -> dict[str, Any]:
    """The JSON Schema of ``rules.yaml`` (for editors), generated from the same model that validates it."""
    generated = RulesFile.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **generated,
        "title": "cacheproxy rules.yaml",
    }


def _route_lines(route: Route, rules: Rules) -> list[str]:
    if route is rules.default:
        lines = [f"route     default (no route matched; rules from {rules.source})"]
    else:
        lines = [f"route     {route.name} ({rules.source} line {route.line})"]
        where = [
            f"path {route.path}" if route.path else "",
            f"regex {route.regex}" if route.regex else "",
            f"methods {','.join(sorted(route.methods))}" if route.methods else "",
            f"host {route.host}" if route.host else "",
        ]
        lines.append("  match   " + (" · ".join(w for w in where if w) or "everything"))
    if route.bypass:
        return lines
    lines.append("  policy  " + _policy(route))
    store = route.store or "the proxy's default store"
    coalesce = f"on (wait {human(route.coalesce_timeout)})" if route.coalesce else "off"
    tags = ",".join(route.tags) or "none"
    lines.append(f"  store   {store} · tags {tags} · coalescing {coalesce}")
    return lines


def _policy(route: Route) -> str:
    p = route.policy
    ttl = "from the origin" if p.ttl is None else human(p.ttl) + (" (override)" if p.override else " (if none)")
    parts = [
        f"ttl {ttl}",
        f"statuses {','.join(map(str, sorted(p.statuses)))}" if p.statuses is not None else "",
        f"stale-while-revalidate +{human(p.stale_while_revalidate)}" if p.stale_while_revalidate else "",
        f"stale-if-error +{human(p.stale_if_error)}" if p.stale_if_error else "",
        f"set-cookie {p.set_cookie.value}",
        "IGNORES private/no-store" if p.ignore_private else "",
        f"max object {human_size(p.max_object_size)}",
        f"keep {human(p.keep)}",
    ]
    return " · ".join(part for part in parts if part)


def _key_lines(request: RequestHead, route: Route) -> list[str]:
    lines = [f"key       {primary_key(request, route)}"]
    lines += [f"  {name:<7} {value}".rstrip() for name, value in key_parts(request, route)]
    return lines


def _action(request: RequestHead, route: Route) -> str:
    if route.bypass:
        return "bypass: forwarded, never looked up or stored (Cache-Status: fwd=bypass; detail=rule)"
    if request.method in UNSAFE_METHODS:
        return (
            f"forwarded: {request.method} is never answered from cache; a non-error response invalidates "
            "the entries for this URL (RFC 9111 §4.4)"
        )
    if request.method not in ("GET", "HEAD"):
        return f"forwarded: only GET and HEAD are answered from cache, not {request.method}"
    return "look up: served from cache while fresh (or within a stale window), otherwise fetched and stored"


def _response_lines(request: RequestHead, route: Route, response: ResponseHead) -> list[str]:
    fields = "; ".join(f"{k}: {v}" for k, v in response.headers) or "no headers"
    lines = [f"response  {response.status} ({fields})"]
    if route.bypass or request.method not in ("GET", "HEAD"):
        return [*lines, "stored    no: the request is not cacheable (see action)"]
    verdict = assess(request, response, route.policy, request_time=0, response_time=0, body_size=None)
    if isinstance(verdict, DontStore):
        why = _WHY_NOT.get(verdict.reason, verdict.reason.value)
        return [*lines, f"stored    no: {why} (Cache-Status detail={verdict.reason.value})"]
    lines.append(
        f"stored    yes: fresh for {human(verdict.freshness)}, "
        f"then stale-while-revalidate {human(verdict.stale_while_revalidate)}, "
        f"stale-if-error {human(verdict.stale_if_error)}; kept {human(verdict.ttl)} in the store"
    )
    if "set-cookie" in response.headers and "set-cookie" not in verdict.head.headers:
        lines.append("  note    Set-Cookie is stripped from the stored copy (set_cookie: strip)")
    return lines


def human(seconds: float) -> str:
    """``90`` as ``1m30s``, ``3600`` as ``1h``, ``0.25`` as ``250ms``."""
    if seconds < 1 and seconds > 0:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    if whole == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def human_size(size: int) -> str:
    """``10485760`` as ``10MiB``; sizes that are not a whole number of a unit stay in bytes."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"
