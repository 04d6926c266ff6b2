"""The client's ``If-Match`` and ``If-Unmodified-Since`` evaluated against a stored or just-received response
(RFC 9110 §13.1.1, §13.1.4, §13.2.2 steps 1-2): when one is false, the cache answers ``412`` instead of the content.

The cache removes these fields before going upstream (it wants a storable answer), so it must evaluate them itself,
as RFC 9111 §4.3.2 expects of a cache answering from a stored response. Only a 2xx is evaluated against
(RFC 9110 §13.2.1); ``If-None-Match``/``If-Modified-Since`` (304) are ``proxy.rfc.validation.client_not_modified``.
"""

from __future__ import annotations

from proxy.messages import RequestHead, ResponseHead
from proxy.rfc.dates import date_field
from proxy.rfc.validation import strong_match


def _if_match_holds(members: list[str], head: ResponseHead) -> bool:
    """RFC 9110 §13.1.1: ``*``, or a member equal to the ETag by strong comparison."""
    if "*" in members:
        return True
    etag = head.headers.get("etag")
    return etag is not None and any(strong_match(member, etag) for member in members)


def precondition_failed(request: RequestHead, head: ResponseHead) -> bool:
    """Whether a GET/HEAD gets ``412 Precondition Failed`` from the response ``head`` would otherwise answer it.

    ``If-Match`` first; ``If-Unmodified-Since`` only without ``If-Match``, and ignored when its date is invalid
    (RFC 9110 §5.6.7, the one strict parser) or the response has no valid ``Last-Modified`` (§13.1.4).
    """
    if request.method not in ("GET", "HEAD") or not 200 <= head.status < 300 or head.status == 206:
        return False
    if "if-match" in request.headers:
        return not _if_match_holds(request.headers.get_list("if-match"), head)
    if "if-unmodified-since" not in request.headers:
        return False
    since = date_field(request.headers, "if-unmodified-since", now=date_field(head.headers, "date"))
    modified = date_field(head.headers, "last-modified")
    return since is not None and modified is not None and modified > since
