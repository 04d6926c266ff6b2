"""The one parse of a request head: the ASGI scope becomes our frozen ``RequestHead``, or a ``Refusal`` (400).

Every later step (the hot path, the rules, the cache key, ``X-Forwarded-Host``, the admin checks) reads the value made
here, so no two places can disagree about the host or the path. The checks:

- **Target form** (RFC 9112 §3.2). origin-form (``/path?query``) is the normal case. absolute-form
  (``http://authority/path``) is accepted only when its authority is this proxy's own, i.e. equals ``Host``
  (RFC 9112 §3.2.2); its path is then used. asterisk-form (``*``) only with ``OPTIONS`` (the edge answers it). Anything
  else (``*@127.0.0.1:9/x``, ``GET *``, a fragment, userinfo in an absolute-form) is refused: the upstream target is
  built from configuration plus this path (``proxy.forwarding``), so request bytes never choose the upstream host.
- **Host** (RFC 9112 §3.2, RFC 9110 §7.2): exactly one field with a valid ``host[:port]`` value; none is accepted
  only from an HTTP/1.0 client (the server's own address stands in).
- **Forwarding chain** (``proxy.trust``): who the client is, believed only from trusted peers.

The raw target comes from the server (``proxy.rawtarget`` puts it in ``scope["extensions"]``: uvicorn's own
``raw_path`` drops the authority of an absolute-form target); without it, ``raw_path`` and the query stand in.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from proxy.messages import Headers, RequestHead
from proxy.trust import TrustedProxies

Scope = MutableMapping[str, Any]
RAW_TARGET = "cacheproxy.raw_target"  # key in scope["extensions"], set by proxy.rawtarget
SCOPE_KEY = "cacheproxy.request"  # where the edge leaves the parsed head for the admin surface

# RFC 3986 §3.2.2 host (IP-literal, IPv4 or reg-name) and an optional port.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")
_ABSOLUTE = re.compile(rb"(?i)(https?)://([^/?#]*)(.*)")


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request head the proxy will not act on: answered ``status`` with a one-line reason, never forwarded."""

    reason: str
    status: int = 400

    @property
    def body(self) -> bytes:
        return f"{self.status} {HTTPStatus(self.status).phrase}: {self.reason}\n".encode()


def raw_target(scope: Scope) -> bytes:
    """The request-target as the client sent it (see the module docstring for the fallback)."""
    extensions = scope.get("extensions") or {}
    raw: bytes | None = extensions.get(RAW_TARGET)
    if raw is not None:
        return raw
    path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")  # ASGI: path is decoded UTF-8
    query: bytes = scope.get("query_string", b"")
    return path + b"?" + query if query else path


def split_target(target: bytes, method: str, host: bytes) -> tuple[bytes, bytes] | Refusal:
    """``(path, query)`` of an acceptable request-target (RFC 9112 §3.2), else why not."""
    if b"#" in target:
        return Refusal("a request target has no fragment")
    if target.startswith(b"/"):
        path, _, query = target.partition(b"?")
        return path, query
    if target == b"*":
        if method == "OPTIONS":
            return b"*", b""
        return Refusal("the asterisk-form target is for OPTIONS only")
    absolute = _ABSOLUTE.fullmatch(target)
    if absolute is None:
        return Refusal("the request target must be /path (origin-form) or this proxy's own absolute URI")
    authority, rest = absolute.group(2), absolute.group(3)
    if b"@" in authority:
        return Refusal("userinfo is not allowed in the request target")
    if authority.lower() != host.lower():
        return Refusal("the absolute-form authority does not match Host (RFC 9112 §3.2.2)")
    path, _, query = rest.partition(b"?")
    return path or b"/", query


FORWARDING_FIELDS = frozenset({b"x-forwarded-for", b"forwarded", b"x-forwarded-proto"})


def host_and_forwarding(scope: Scope) -> tuple[bytes | Refusal, bool]:
    """The one ``Host`` value (RFC 9112 §3.2: several, an invalid one, or none from HTTP/1.1 are refused), and
    whether any forwarding field is present (else there is no chain to resolve), in one pass over the fields.
    """
    found: list[bytes] = []
    forwarding = False
    for name, value in scope["headers"]:
        if name == b"host":
            found.append(value)
        elif name in FORWARDING_FIELDS:
            forwarding = True
    if len(found) > 1:
        return Refusal("more than one Host field (RFC 9112 §3.2)"), forwarding
    if not found:
        if scope.get("http_version", "1.1") != "1.0":
            return Refusal("no Host field (RFC 9112 §3.2)"), forwarding
        server = scope.get("server") or ("localhost", None)
        return (server[0] if server[1] is None else f"{server[0]}:{server[1]}").encode("latin-1"), forwarding
    host = found[0].strip()
    if _HOST.fullmatch(host) is None:
        return Refusal("invalid Host field value (RFC 9110 §7.2)"), forwarding
    return host, forwarding


def parse_head(scope: Scope, trusted: TrustedProxies) -> RequestHead | Refusal:
    """The request head of ``scope``, parsed once (see the module docstring)."""
    method: str = scope["method"]
    host, forwarding = host_and_forwarding(scope)
    if isinstance(host, Refusal):
        return host
    target = split_target(raw_target(scope), method, host)
    if isinstance(target, Refusal):
        return target
    headers = Headers.from_raw(scope["headers"])
    client = scope.get("client")
    peer: str | None = client[0] if client else None
    resolved = trusted.resolve(peer, headers) if forwarding else None  # nothing to resolve without the fields
    return RequestHead(
        method=method,
        scheme=(resolved and resolved.scheme) or scope.get("scheme", "http"),
        host=host.decode("latin-1"),
        path=target[0].decode("latin-1"),
        query=target[1].decode("latin-1"),
        headers=headers,
        client=resolved.client if resolved else peer,
        peer=peer,
        forwarded_for=resolved.chain if resolved else (),
    )
