"""Validation: conditional requests upstream, 304 handling, and answering a client's conditionals from cache.

Upstream side: RFC 9111 §4.3.1 (sending a validation request), §4.3.4 (which stored response a 304 refreshes)
and §3.2 (updating stored header fields). Client side: RFC 9111 §4.3.2 with the precondition rules of RFC 9110
§13.1.1-§13.1.3, §13.2.2 and the 304 header set of RFC 9110 §15.4.5.
"""

from __future__ import annotations

from dataclasses import replace

from proxy.messages import HOP_BY_HOP, Entry, RequestHead, ResponseHead
from proxy.rfc.dates import date_field, format_http_date, parse_http_date

# RFC 9110 §13.1: the request preconditions a client may send.
CONDITIONALS: tuple[str, ...] = (
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "if-range",
)

_CONDITIONALS = frozenset(CONDITIONALS)
_RANGE_CONDITIONALS = _CONDITIONALS - {"if-range"}  # If-Range stays with the Range it guards
_CONDITIONALS_AND_RANGE = _CONDITIONALS | {"range"}
_AGE = frozenset({"age"})

# RFC 9111 §3.1 (hop-by-hop and proxy-specific fields) and §3.2 (Content-Length, and fields the stored body
# depends on): a 304 never replaces these in the stored response.
_NOT_UPDATED = HOP_BY_HOP | frozenset(
    {
        "proxy-authentication-info",
        "proxy-authorization",
        "content-length",
        "content-encoding",
        "content-range",
    }
)

# RFC 9110 §15.4.5: what a 304 carries, plus Last-Modified (allowed as cache-update metadata) and
# CDN-Cache-Control (RFC 9213, a Cache-Control for this cache's downstream peers).
_NOT_MODIFIED_FIELDS = frozenset(
    {
        "cache-control",
        "cdn-cache-control",
        "content-location",
        "date",
        "etag",
        "expires",
        "vary",
        "last-modified",
    }
)


def parse_etag(value: str) -> tuple[bool, str] | None:
    """``(weak, opaque-tag)`` for an entity-tag (RFC 9110 §8.8.3), or ``None`` when empty.

    Deliberately lenient: an unquoted tag, which some origins send, is kept as its own opaque value.
    """
    text = value.strip()
    weak = text[:2] in ("W/", "w/")
    if weak:
        text = text[2:].strip()
    return (weak, text) if text else None


def strong_match(a: str, b: str) -> bool:
    """RFC 9110 §8.8.3.2 strong comparison: both strong and the same opaque tag."""
    pa, pb = parse_etag(a), parse_etag(b)
    return pa is not None and pb is not None and not pa[0] and not pb[0] and pa[1] == pb[1]


def weak_match(a: str, b: str) -> bool:
    """RFC 9110 §8.8.3.2 weak comparison: the same opaque tag, whatever the weakness."""
    pa, pb = parse_etag(a), parse_etag(b)
    return pa is not None and pb is not None and pa[1] == pb[1]


def _etag(head: ResponseHead) -> str | None:
    value = head.headers.get("etag")
    return value if value is not None and parse_etag(value) is not None else None


def _last_modified(head: ResponseHead) -> float | None:
    return date_field(head.headers, "last-modified")


def has_validator(head: ResponseHead) -> bool:
    """RFC 9110 §8.8: the response has an entity-tag (strong or weak) or a valid Last-Modified."""
    return _etag(head) is not None or _last_modified(head) is not None


def strip_conditionals(request: RequestHead) -> RequestHead:
    """The request without the client's preconditions, so that the origin answers in full (storably).

    ``If-Range`` stays when a ``Range`` is forwarded: it is what makes the range safe to answer (RFC 9110 §13.1.5),
    and a 206 is not stored anyway.
    """
    headers = request.headers.without_all(_CONDITIONALS if "range" not in request.headers else _RANGE_CONDITIONALS)
    return request if headers is request.headers else replace(request, headers=headers)


def conditional_request(request: RequestHead, entry: Entry) -> RequestHead:
    """RFC 9111 §4.3.1: the request that revalidates ``entry``.

    The client's own preconditions are replaced by the stored validators: ``If-None-Match`` with the stored
    ETag and ``If-Modified-Since`` with the stored Last-Modified, both when both exist (the RFC's SHOULD). The
    method is GET, since a HEAD is answered from the stored GET response. A client's ``Range`` is not sent: the
    cache wants the whole response (or a 304) to refresh the entry, and cuts the range from it (``proxy.rfc.ranges``).
    """
    headers = request.headers.without_all(_CONDITIONALS_AND_RANGE)
    etag = _etag(entry.head)
    if etag is not None:
        headers = headers.adding("If-None-Match", etag.strip())
    last_modified = entry.head.headers.get("last-modified")
    if last_modified is not None and parse_http_date(last_modified) is not None:
        headers = headers.adding("If-Modified-Since", last_modified.strip())
    return replace(request, method="GET", headers=headers)


def validator_matches(stored: ResponseHead, not_modified: ResponseHead) -> bool:
    """RFC 9111 §4.3.4: whether a 304 identifies ``stored`` as the response to refresh.

    A strong ETag in the 304 must equal the stored one strongly, a weak one weakly; without an ETag, its
    Last-Modified must equal the stored one; a 304 with no validator at all refreshes a stored response that
    has no ETag either.
    """
    new_etag = _etag(not_modified)
    old_etag = _etag(stored)
    if new_etag is not None:
        if old_etag is None:
            return False
        parsed = parse_etag(new_etag)
        if parsed is not None and not parsed[0]:
            return strong_match(new_etag, old_etag)
        return weak_match(new_etag, old_etag)
    new_lm = _last_modified(not_modified)
    if new_lm is not None:
        return _last_modified(stored) == new_lm
    return old_etag is None


def selects_stored(stored: ResponseHead, not_modified: ResponseHead, *, sole: bool) -> bool:
    """RFC 9111 §4.3.3, §4.3.4: whether a 304 answering the cache's own conditional request freshens ``stored``.

    A 304 with a validator selects by it (``validator_matches``). One without any validator answers the request
    the cache sent for ``stored``: when ``stored`` is the only response kept under its key (``sole``), nothing
    else can be meant and it is freshened, as mature caches do; when several variants are stored, the strict
    rule of §4.3.4 applies (only a stored response without a validator is selected).
    """
    if has_validator(not_modified):
        return validator_matches(stored, not_modified)
    return sole or validator_matches(stored, not_modified)


def head_matches(stored: ResponseHead, body_length: int, head: ResponseHead) -> bool:
    """RFC 9111 §4.3.5: whether a 200 answering HEAD describes ``stored`` (a GET response with ``body_length``
    bytes), so that its fields may update it; otherwise the stored response is to be considered stale.

    Every validator the HEAD response carries must match: an ETag (weak comparison, RFC 9110 §8.8.3.2), a
    Last-Modified (equal dates), and a Content-Length (equal to the stored body's length).
    """
    etag = _etag(head)
    if etag is not None:
        old = _etag(stored)
        if old is None or not weak_match(etag, old):
            return False
    if "last-modified" in head.headers and _last_modified(head) != _last_modified(stored):
        return False
    length = head.headers.get_all("content-length")
    return not length or length == [str(body_length)]


def stale_copy(entry: Entry) -> Entry:
    """RFC 9111 §4.3.5: ``entry`` considered stale (a HEAD showed that it no longer matches): no freshness left
    and no stale-while-revalidate window, so the next request revalidates it."""
    return replace(entry, freshness=0.0, stale_while_revalidate=0.0)


def merge_304(stored: ResponseHead, not_modified: ResponseHead, *, received: float | None = None) -> ResponseHead:
    """RFC 9111 §3.2 / §4.3.4: the stored head refreshed with the fields of a 304; the stored status is kept.

    Every field in the 304 replaces the stored field of that name, except hop-by-hop fields and those named by
    its ``Connection``, the proxy authentication fields, ``Content-Length``, and
    ``Content-Encoding``/``Content-Range`` (the stored body depends on them). ``Age`` always comes from the
    304, so the refreshed entry's age is that of the new exchange. When the 304 carries no ``Date``, the
    stored one is dropped, or replaced with ``received`` when given (RFC 9110 §6.6.1), since the old one would
    make the refreshed response look old.
    """
    connection = {n.lower() for n in not_modified.headers.get_list("connection")}
    skip = _NOT_UPDATED | connection
    updates = not_modified.headers.without_all(skip)
    headers = stored.headers.without_all(_AGE).merged(updates)
    if "date" not in updates:
        headers = headers.without("date")
        if received is not None:
            headers = headers.adding("Date", format_http_date(received))
    return ResponseHead(stored.status, headers)


def _none_match(members: list[str], head: ResponseHead) -> bool:
    """RFC 9110 §13.1.2: True when the condition is false, i.e. a member matches (weakly) or is ``*``."""
    if "*" in members:
        return True
    etag = _etag(head)
    return etag is not None and any(weak_match(m, etag) for m in members)


def _not_modified_since(lines: list[str], head: ResponseHead) -> bool:
    """RFC 9110 §13.1.3, RFC 9111 §4.3.2: the stored Last-Modified (else Date) is not after the given date.

    The response's ``Date`` stands in for "now" when reading a two-digit RFC 850 year (RFC 9110 §5.6.7).
    """
    if len(lines) != 1:
        return False
    since = parse_http_date(lines[0], now=date_field(head.headers, "date"))
    if since is None:
        return False
    modified = _last_modified(head)
    if modified is None:
        modified = date_field(head.headers, "date")
    return modified is not None and modified <= since


def client_not_modified(request: RequestHead, head: ResponseHead) -> bool:
    """Whether the cache answers the client's GET/HEAD with 304 from the stored ``head`` (RFC 9110 §13.2.2
    steps 3-4).

    ``If-None-Match`` takes precedence and ``If-Modified-Since`` is then ignored. Only a stored 2xx (not 206)
    is a selected representation the preconditions can be evaluated against (RFC 9110 §13.2.1).
    """
    if request.method not in ("GET", "HEAD"):
        return False
    if not 200 <= head.status < 300 or head.status == 206:
        return False
    if "if-none-match" in request.headers:
        return _none_match(request.headers.get_list("if-none-match"), head)
    lines = request.headers.get_all("if-modified-since")
    return bool(lines) and _not_modified_since(lines, head)


def not_modified_head(head: ResponseHead) -> ResponseHead:
    """The 304 sent in place of a stored response (RFC 9110 §15.4.5): metadata fields, no content fields."""
    return ResponseHead(304, head.headers.only(_NOT_MODIFIED_FIELDS))
