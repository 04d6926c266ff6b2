"""The ASGI application: a dispatcher in front of two apps.

Proxy traffic goes straight to ``ProxyEndpoint`` (a pure ASGI function: the hit path never builds Starlette objects);
the reserved admin prefix and the lifespan go to a Starlette app. Shared clients (the upstream session, the stores, the
rules watcher) are the ``Runtime`` (``proxy.runtime``), started and closed by the lifespan, not globals.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette

from proxy.admin.observe import build_observer
from proxy.admin.purge import build_purge_method
from proxy.admin.routes import build_admin
from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.config import Settings
from proxy.endpoint import ProxyEndpoint, Receive, Scope, Send, refuse
from proxy.head import SCOPE_KEY, Refusal, parse_head
from proxy.limits import WEBSOCKET_REASON
from proxy.messages import CACHEABLE_METHODS, RequestHead
from proxy.rules.reload import RulesHolder
from proxy.runtime import Runtime

log = logging.getLogger("cacheproxy")


class ProxyApp:
    def __init__(self, settings: Settings, *, clock: Clock = SYSTEM_CLOCK, rules: RulesHolder | None = None) -> None:
        self.runtime = Runtime.build(settings, clock, rules)
        observer = build_observer(self.runtime)
        self.runtime.observer = observer
        self.runtime.origin.on_busy = observer.metrics.upstream_pool_exhausted.inc
        self.trusted = settings.trusted
        self.endpoint = ProxyEndpoint(self.runtime.service, clock, observer, self.trusted)
        self.prefix = settings.admin_prefix
        self.admin: Starlette = build_admin(self.runtime, self._lifespan)
        self.purge_method = build_purge_method(self.runtime) if settings.allow_purge_method else None

    def answer_now(self, scope: Scope) -> tuple[bytes, bytes] | None:
        """A fresh hit answered inside the server protocol, without an ASGI cycle (``proxy.edgehit``): the bytes to
        write (response head, body), or ``None`` for ``__call__`` to answer. The head parsed here is left in the
        scope, so the request is parsed once either way."""
        if scope["method"] not in CACHEABLE_METHODS:
            return None
        request = parse_head(scope, self.trusted)
        if isinstance(request, Refusal):
            return None
        scope[SCOPE_KEY] = request
        if self._is_admin(scope["path"]):
            return None
        return self.endpoint.answer_now(request)

    def _is_admin(self, path: str) -> bool:
        prefix = self.prefix
        return path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = scope.get(SCOPE_KEY)  # parsed by answer_now already
            request = found if isinstance(found, RequestHead) else parse_head(scope, self.trusted)
            if isinstance(request, Refusal):
                await refuse(request, send)
                return
            if self._is_admin(scope["path"]):
                scope[SCOPE_KEY] = request
                await self.admin(scope, receive, send)
            elif self.purge_method is not None and scope["method"] == "PURGE":
                scope[SCOPE_KEY] = request
                await self.purge_method(scope, receive, send)
            else:
                await self.endpoint.handle(request, receive, send)
        elif scope["type"] == "lifespan":
            await self.admin(scope, receive, send)
        elif scope["type"] == "websocket":
            await refuse_websocket(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Any) -> AsyncIterator[None]:
        await self.runtime.start()
        try:
            yield
        finally:
            await self.runtime.close()


async def refuse_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """WebSocket is not proxied (issue 9 §7). ``cacheproxy serve`` answers an upgrade request 501 before the app (see
    ``proxy.limits``); under another server the handshake reaches the app as a ``websocket`` scope, answered 501 where
    the server offers the ASGI ``websocket.http.response`` extension, else refused (the server answers 403)."""
    if (await receive())["type"] != "websocket.connect":
        return
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008, "reason": WEBSOCKET_REASON})
        return
    body = f"501 Not Implemented: {WEBSOCKET_REASON}\n".encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "websocket.http.response.start", "status": 501, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})
