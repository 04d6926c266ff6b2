"""The request as forwarded: the one place that builds the upstream target and the request fields sent upstream.

Both are pure functions of the configured upstream and our parsed ``RequestHead``; whatever HTTP client implements the
origin port calls them, so the client can be swapped without touching what is sent. The upstream authority comes from
configuration only: request bytes never choose it.

Which request fields the upstream may see is decided once, by ``as_forwarded`` (``proxy.messages``, re-exported
here), before the cache layer reads the request: the cache key, the Vary snapshot of a stored response, reuse
decisions and the upstream request all read the same fields, so a field the upstream never saw cannot select or key a
stored response.
"""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit

from proxy.messages import HOP_BY_HOP, UNKEYED_FIELDS, VIA, Headers, RequestHead, as_forwarded, merged_via

# ``as_forwarded`` and ``UNKEYED_FIELDS`` live in ``proxy.messages`` (the cache and rules layers read them and may not
# import the client layer); they are re-exported here, where what is sent upstream is built.
__all__ = ["UNKEYED_FIELDS", "Forwarding", "as_forwarded", "wire"]

# Request-side only: credentials meant for this proxy (RFC 9110 §11.7.2), never for the origin.
# Never forwarded as received: Proxy-Authorization is for this hop; Host is the upstream's (set by the client) unless
# --preserve-host; Expect was answered here; the X-Forwarded-Proto/-Host values are ours.
_NOT_FORWARDED = frozenset({"proxy-authorization", "host", "expect", "x-forwarded-proto", "x-forwarded-host"})
_DROP_STREAMED = HOP_BY_HOP | _NOT_FORWARDED  # built once, not per request
_DROP = _DROP_STREAMED | {"content-length"}


def wire(text: str) -> str:
    """Make a client that encodes text as UTF-8 send the bytes ``text`` stands for (latin-1, as received).

    Bytes that are not valid UTF-8 cannot round-trip through such a client and go out as their UTF-8 re-encoding.
    """
    if text.isascii():
        return text
    raw = text.encode("latin-1", "replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return text


class Forwarding:
    """Builds what goes upstream for one configured origin (``prefix``: scheme, authority and base path).

    The configured URL is taken apart once: ``origin`` (scheme, host, port: never any userinfo), ``base_path``, and
    the credentials of its userinfo, which travel only as this origin's ``Authorization: Basic`` (RFC 7617) and only
    when the client sent no ``Authorization`` of its own.
    """

    def __init__(self, prefix: str, *, preserve_host: bool = False) -> None:
        parts = urlsplit(prefix)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        self.origin = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port is not None else "")
        self.base_path = parts.path.rstrip("/")
        self.prefix = self.origin + self.base_path
        self.preserve_host = preserve_host
        self.credentials: str | None = None
        if parts.username is not None or parts.password is not None:
            userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            self.credentials = "Basic " + base64.b64encode(userinfo.encode("utf-8")).decode("ascii")

    def url(self, request: RequestHead) -> str:
        """The upstream URL: the configured origin and base path, then the client's path and query as sent
        (percent-encoding kept). The edge admits only origin-form paths (``proxy.head``); anything else here is a bug.
        """
        if not request.path.startswith("/"):
            raise ValueError(f"not an origin-form path: {request.path!r}")
        return self.prefix + wire(request.target)

    def target(self, request: RequestHead) -> str:
        """The upstream request-target (origin-form): the base path, then the client's path and query as received
        (``wire`` not applied: see ``url``)."""
        if not request.path.startswith("/"):
            raise ValueError(f"not an origin-form path: {request.path!r}")
        return self.base_path + request.target

    def headers(self, request: RequestHead, *, streamed: bool) -> Headers:
        """The end-to-end request fields to send upstream (RFC 9110 §7.6.1-§7.6.3), plus X-Forwarded-*.

        ``request`` is expected to come from ``as_forwarded`` already (the cache layer derives it once); hop-by-hop
        and Connection-named fields are removed here again only so that no caller can forward them by mistake.

        ``Expect`` is dropped: the edge server already answered 100-continue to the client (RFC 9110 §10.1.1
        lets a proxy do so). ``Host`` is left to the client (the upstream's authority) unless ``preserve_host``.
        ``Content-Length`` is kept only for a streamed body, so the upstream is not sent chunked needlessly.
        """
        return Headers([(wire(name), wire(value)) for name, value in self.fields(request, streamed=streamed)])

    def fields(self, request: RequestHead, *, streamed: bool) -> list[tuple[str, str]]:
        """``headers`` before ``wire``: the text as received (a client that sends only ASCII needs no ``wire``)."""
        fields = request.headers
        drop = _DROP_STREAMED if streamed else _DROP
        if "connection" in fields:
            drop = drop | {name.lower() for name in fields.get_list("connection")}
        out: list[tuple[str, str]] = [("Host", request.host)] if self.preserve_host else []
        via: list[str] = []
        for lname, item in zip(fields.lowered, fields.items(), strict=True):
            if lname in drop or lname == "x-forwarded-for":
                continue
            if lname == "via":
                via.append(item[1])
            else:
                out.append(item)
        if self.credentials is not None and "authorization" not in fields:
            out.append(("Authorization", self.credentials))
        out.append(("Via", merged_via(via) if via else VIA))
        # The chain a trusted peer vouched for, once, then the peer itself (proxy.trust; issue: no duplicate).
        forwarded_for = request.forwarded_for
        peer = request.peer or request.client
        if peer:
            forwarded_for = (*forwarded_for, peer)
        if forwarded_for:
            out.append(("X-Forwarded-For", ", ".join(forwarded_for)))
        out.append(("X-Forwarded-Proto", request.scheme))
        out.append(("X-Forwarded-Host", request.host))
        return out
