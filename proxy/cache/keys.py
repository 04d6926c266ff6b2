"""The primary cache key (RFC 9111 §2): the request method and target URI, shaped by the route's key recipe.

The key is built from the method group (GET and HEAD share one, RFC 9111 §4: a stored GET response can answer
HEAD), the scheme, the lower-cased host (RFC 3986 §6.2.2.1), the path exactly as received (percent-encoding
kept: ``/a%2Fb`` and ``/a/b`` can be different resources), the query after the route's shaping, and the values of
the request headers and cookies the route adds to the key. Every part is length-prefixed before hashing, so no
two different part lists hash the same text, and an absent header or cookie differs from an empty one.

Header and cookie values go into a suffix after the URL part (``c:<url hash>.<values hash>``), so that a store can
find every key of one URL (``proxy.storage.base.GROUP_SEP``): invalidation and purge by URL use ``url_key``.
"""

from __future__ import annotations

import hashlib
from urllib.parse import unquote_plus

from proxy.messages import RequestHead
from proxy.rules.model import KeySpec, Route
from proxy.storage.base import GROUP_SEP

ABSENT = "(absent)"  # how key_parts shows a header or cookie missing from the request


def primary_key(request: RequestHead, route: Route) -> str:
    """A short stable key for ``request`` under ``route``: ``c:`` and 32 hex digits of a SHA-256 of the URL part,
    then, when the route keys on headers or cookies, ``.`` and 16 hex digits of a SHA-256 of all the parts."""
    spec = route.key
    text = _url_text(request, spec)
    base = "c:" + _digest(text)[:32]
    if not (spec.headers or spec.cookies):
        return base
    text += "".join(_encode(v) for _, v in _extra_parts(request, spec))
    return base + GROUP_SEP + _digest(text)[:16]


def url_key(request: RequestHead, route: Route) -> str:
    """The URL part of ``primary_key``: deleting it removes the entries of every key shape of this URL."""
    return "c:" + _digest(_url_text(request, route.key))[:32]


def _url_text(request: RequestHead, spec: KeySpec) -> str:
    method = "GET" if request.method in ("GET", "HEAD") else request.method
    query = shape_query(request.query, spec) if spec.shapes_query else request.query
    host = request.host.lower()
    return f"{method}\x00{request.scheme}\x00{len(host)}:{host}{len(request.path)}:{request.path}{len(query)}:{query}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def key_parts(request: RequestHead, route: Route) -> list[tuple[str, str]]:
    """The named parts ``primary_key`` hashes, for ``explain`` and the ``Cache-Debug`` headers."""
    spec = route.key
    parts = [
        ("method", "GET" if request.method in ("GET", "HEAD") else request.method),
        ("scheme", request.scheme),
        ("host", request.host.lower()),
        ("path", request.path),
        ("query", shape_query(request.query, spec) if spec.shapes_query else request.query),
    ]
    parts.extend((name, ABSENT if value is None else value) for name, value in _extra_parts(request, spec))
    return parts


def shape_query(query: str, spec: KeySpec) -> str:
    """The query as it enters the key: ignored parameters dropped, only kept ones left, sorted if asked.

    Parameters are split on ``&`` and compared by their decoded name; the kept ones keep their original encoding.
    Sorting is by name and stable, so repeated parameters keep their relative order (``ids=2&ids=1`` stays
    distinct). A parameter containing ``;`` (raw or as ``%3B``) is never left out: an origin that also splits on
    ``;`` would read ``utm_x=1;callback=evil`` as two parameters, and dropping it would store the answer to
    ``callback=evil`` under the clean URL's key.
    """
    if not query:
        return ""
    named = [(unquote_plus(p.partition("=")[0]), p) for p in query.split("&") if p]
    if spec.ignore_re is not None:
        ignore = spec.ignore_re
        named = [(n, p) for n, p in named if ignore.match(n) is None or _may_hide_a_parameter(p)]
    if spec.keep_re is not None:
        keep = spec.keep_re
        named = [(n, p) for n, p in named if keep.match(n) is not None or _may_hide_a_parameter(p)]
    if spec.sort_params:
        named.sort(key=lambda item: item[0])
    return "&".join(p for _, p in named)


def _may_hide_a_parameter(param: str) -> bool:
    """Whether an origin splitting on ``;`` (as well as ``&``) may read more parameters in ``param``."""
    return ";" in param or "%3b" in param.lower()


def _extra_parts(request: RequestHead, spec: KeySpec) -> list[tuple[str, str | None]]:
    parts: list[tuple[str, str | None]] = []
    for name in spec.headers:
        values = request.headers.get_all(name)
        parts.append((f"header:{name}", ", ".join(values) if values else None))
    if spec.cookies:
        jar = _cookies(request)
        parts.extend((f"cookie:{name}", jar.get(name)) for name in spec.cookies)
    return parts


def _cookies(request: RequestHead) -> dict[str, str]:
    """Cookie name to value from every ``Cookie`` field (RFC 6265 §5.4); the first of a repeated name wins."""
    jar: dict[str, str] = {}
    for field in request.headers.get_all("cookie"):
        for pair in field.split(";"):
            name, sep, value = pair.strip().partition("=")
            if sep and name:
                jar.setdefault(name, value)
    return jar


def _encode(value: str | None) -> str:
    return "-" if value is None else f"{len(value)}:{value}"
