"""Who may use the admin surface.

Without a token, only loopback clients (127.0.0.0/8, ::1): the operator on the machine, or a sidecar in the pod. With
``CACHEPROXY_ADMIN_TOKEN`` set, ``Authorization: Bearer <token>`` (RFC 6750 §2.1) is required from every client,
loopback included, compared in constant time. The probes (``healthz``, ``readyz``) answer everyone: Kubernetes sends
them from the node's address, and they tell nothing but "up" and "ready".
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp

from proxy.endpoint import Receive, Scope, Send, is_loopback

FORBIDDEN = b"403 Forbidden: the cacheproxy admin surface answers loopback clients or a bearer token only\n"


def bearer_token(scope: Scope) -> bytes | None:
    """The token of the first ``Authorization: Bearer`` field, if any (the scheme is case-insensitive)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            scheme, _, token = bytes(value).strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None


def is_allowed(scope: Scope, token: str | None) -> bool:
    """May this request use the admin surface (and the PURGE method)?"""
    if token:
        given = bearer_token(scope)
        return given is not None and hmac.compare_digest(given, token.encode("utf-8"))
    client = scope.get("client")
    return is_loopback(client[0] if client else None)


async def forbid(send: Send) -> None:
    """A 403 with a one-line text body, never cached."""
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(FORBIDDEN)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": FORBIDDEN})


class AdminGuard:
    """ASGI middleware in front of the admin app: 403 unless allowed, except for the open probe paths."""

    def __init__(self, app: ASGIApp, *, token: str | None, open_paths: frozenset[str]) -> None:
        self.app = app
        self.token = token
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.open_paths and not is_allowed(scope, self.token):
            await forbid(send)
            return
        await self.app(scope, receive, send)
