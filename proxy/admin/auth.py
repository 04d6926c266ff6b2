"""Who may use the admin surface, and how.

Without a token, only local clients: the client address the edge resolved through the trusted forwarding chain
(``proxy.trust``, ``--trusted-proxies``, default 127.0.0.1 and ::1) must itself be a trusted address. A sidecar at
127.0.0.6 is not local unless listed, and a trusted proxy forwarding ``X-Forwarded-For: 203.0.113.9`` makes the request
203.0.113.9's. Such requests must also name a loopback host (``localhost``, ``127.0.0.1``, ``[::1]``) or one of
``--admin-hosts`` in ``Host``: a page whose DNS name was rebound to 127.0.0.1 sends its own name, and is refused.

With ``CACHEPROXY_ADMIN_TOKEN`` set, ``Authorization: Bearer <token>`` (RFC 6750 §2.1) is required from every client,
loopback included, compared in constant time; a browser never sends it on its own, so neither Host nor the content
type is checked then. State-changing requests (anything but GET, HEAD, OPTIONS) without the token must be
``Content-Type: application/json``: a cross-site form or ``text/plain`` POST from an operator's browser is refused
(415) before it acts. The probes (``healthz``, ``readyz``) answer everyone: Kubernetes sends them from the node's
address, and they tell nothing but "up" and "ready".
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp

from proxy.endpoint import Receive, Scope, Send
from proxy.head import SCOPE_KEY
from proxy.messages import RequestHead
from proxy.trust import DEFAULT_TRUSTED, TrustedProxies, is_loopback

__all__ = ["AdminGuard", "admin_hosts", "bearer_token", "forbid", "host_allowed", "is_allowed", "is_loopback"]

FORBIDDEN = b"403 Forbidden: the cacheproxy admin surface answers local clients or a bearer token only\n"
WRONG_HOST = b"403 Forbidden: the cacheproxy admin surface answers only its own host names (see --admin-hosts)\n"
NOT_JSON = b"415 Unsupported Media Type: admin requests that change state need Content-Type: application/json\n"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT = TrustedProxies.parse(DEFAULT_TRUSTED)


def bearer_token(scope: Scope) -> bytes | None:
    """The token of the first ``Authorization: Bearer`` field, if any (the scheme is case-insensitive)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            scheme, _, token = bytes(value).strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None


def has_token(scope: Scope, token: str | None) -> bool:
    given = bearer_token(scope)
    return bool(token) and given is not None and hmac.compare_digest(given, (token or "").encode("utf-8"))


def client_of(scope: Scope) -> str | None:
    """The client the edge resolved (``proxy.head``); the socket peer when the scope was not parsed there."""
    head = scope.get(SCOPE_KEY)
    if isinstance(head, RequestHead):
        return head.client
    client = scope.get("client")
    return client[0] if client else None


def is_allowed(scope: Scope, token: str | None, trusted: TrustedProxies = _DEFAULT) -> bool:
    """May this request use the admin surface (and the PURGE method)?"""
    if token:
        return has_token(scope, token)
    return trusted.trusts(client_of(scope))


def host_allowed(scope: Scope, extra: frozenset[str] = frozenset()) -> bool:
    """Whether ``Host`` names this machine (a loopback name) or one of ``extra``, ignoring the port."""
    head = scope.get(SCOPE_KEY)
    if isinstance(head, RequestHead):
        host = head.host
    else:
        values = [bytes(v) for n, v in scope.get("headers", ()) if n == b"host"]
        host = values[0].decode("latin-1") if len(values) == 1 else ""
    name = host_name(host)
    return name in LOOPBACK_NAMES or name in extra


def host_name(host: str) -> str:
    """``host[:port]`` without the port, lower-cased (an IPv6 literal keeps its brackets)."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end >= 0 else host
    return host.partition(":")[0]


def admin_hosts(setting: str) -> frozenset[str]:
    """The ``--admin-hosts`` list as the names ``host_allowed`` compares."""
    return frozenset(host_name(item) for item in setting.replace(" ", ",").split(",") if item.strip())


def is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return bytes(value).split(b";", 1)[0].strip().lower() == b"application/json"
    return False


async def forbid(send: Send, body: bytes = FORBIDDEN, status: int = 403) -> None:
    """A refusal with a one-line text body, never cached."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class AdminGuard:
    """ASGI middleware in front of the admin app: who, which Host, which content type (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        open_paths: frozenset[str],
        trusted: TrustedProxies = _DEFAULT,
        hosts: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.token = token
        self.open_paths = open_paths
        self.trusted = trusted
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.open_paths:
            refusal = self.refusal(scope)
            if refusal is not None:
                await forbid(send, *refusal)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[bytes, int] | None:
        if self.token:
            return None if has_token(scope, self.token) else (FORBIDDEN, 403)
        if not self.trusted.trusts(client_of(scope)):
            return FORBIDDEN, 403
        if not host_allowed(scope, self.hosts):
            return WRONG_HOST, 403
        if scope["method"] not in SAFE_METHODS and not is_json(scope):
            return NOT_JSON, 415
        return None
