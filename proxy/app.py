"""The ASGI application: a dispatcher in front of two apps.

Proxy traffic goes straight to ``ProxyEndpoint`` (a pure ASGI function: the hit path never builds Starlette objects);
the reserved admin prefix and the lifespan go to a Starlette app. Shared clients (the upstream session, the stores, the
rules watcher) live in the lifespan, not in globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette

from proxy.admin.observe import AdminObserver, build_observer
from proxy.admin.purge import build_purge_method
from proxy.admin.routes import build_admin
from proxy.cache.coalesce import Lease
from proxy.cache.service import CacheService
from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.config import Settings
from proxy.endpoint import ProxyEndpoint, Receive, Scope, Send, refuse
from proxy.head import SCOPE_KEY, Refusal, parse_head
from proxy.limits import WEBSOCKET_REASON
from proxy.rules.reload import RulesHolder
from proxy.storage.base import Storage
from proxy.storage.memory import MemoryStorage
from proxy.upstream import Upstream, UpstreamConfig

log = logging.getLogger("cacheproxy")


@dataclass
class Runtime:
    """Everything one worker runs on; the admin surface reads it."""

    settings: Settings
    clock: Clock
    rules: RulesHolder
    upstream: Upstream
    stores: dict[str, Storage]
    default_store: str
    service: CacheService
    observer: AdminObserver | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def store(self) -> Storage:
        return self.stores[self.default_store]


def open_stores(settings: Settings, clock: Clock) -> tuple[dict[str, Storage], str]:
    """The stores routes can pick by name: always ``memory``, plus ``redis`` when ``--store`` names one."""
    stores: dict[str, Storage] = {
        "memory": MemoryStorage(settings.memory_budget, clock=clock, eviction=settings.eviction)
    }
    if settings.store == "memory":
        return stores, "memory"
    from proxy.storage.factory import open_store

    stores["redis"] = open_store(
        settings.store,
        memory_budget=settings.memory_budget,
        l1_budget=settings.l1_budget or None,
        clock=clock,
        eviction=settings.eviction,
    )
    return stores, "redis"


class ProxyApp:
    def __init__(self, settings: Settings, *, clock: Clock = SYSTEM_CLOCK, rules: RulesHolder | None = None) -> None:
        holder = rules or RulesHolder(settings.rules, stores=settings.store_names)
        upstream = Upstream(
            UpstreamConfig(
                settings.upstream,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
                pool_size=settings.upstream_pool_size,
                pool_timeout=settings.upstream_pool_timeout,
                preserve_host=settings.preserve_host,
            ),
            clock,
        )
        stores, default = open_stores(settings, clock)
        lease = _lease_for(stores[default])
        service = CacheService(
            rules=holder, stores=stores, default_store=default, upstream=upstream, clock=clock, lease=lease
        )
        self.runtime = Runtime(settings, clock, holder, upstream, stores, default, service)
        self.runtime.observer = build_observer(self.runtime)
        upstream.on_busy = self.runtime.observer.metrics.upstream_pool_exhausted.inc
        self.trusted = settings.trusted
        self.endpoint = ProxyEndpoint(service, clock, self.runtime.observer, self.trusted)
        self.prefix = settings.admin_prefix
        self.admin: Starlette = build_admin(self.runtime, self._lifespan)
        self.purge_method = build_purge_method(self.runtime) if settings.allow_purge_method else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = parse_head(scope, self.trusted)  # the one parse of the head (proxy.head)
            if isinstance(request, Refusal):
                await refuse(request, send)
                return
            path: str = scope["path"]
            if path.startswith(self.prefix) and (len(path) == len(self.prefix) or path[len(self.prefix)] == "/"):
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
        rt = self.runtime
        await rt.upstream.start()
        for store in rt.stores.values():
            start = getattr(store, "start", None)
            if start is not None:
                await start()
        rt.tasks.append(asyncio.create_task(rt.rules.watch()))
        if rt.observer is not None:
            rt.tasks.append(asyncio.create_task(rt.observer.flush_every(1.0)))
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            rt.rules.install_sighup(asyncio.get_running_loop())
        try:
            yield
        finally:
            for task in rt.tasks:
                task.cancel()
            await asyncio.gather(*rt.tasks, return_exceptions=True)
            await rt.service.close()
            await rt.upstream.close()
            for store in rt.stores.values():
                await store.close()


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


def _lease_for(store: Storage) -> Lease | None:
    """Stores shared between processes (Redis) also coalesce fetches between processes."""
    make = getattr(store, "lease", None)
    return make() if callable(make) else None


def create_app_from_env() -> ProxyApp:
    """The factory uvicorn workers call (``--workers N``): settings come from ``CACHEPROXY_*``."""
    from proxy.server import configure_logging

    settings = Settings.from_env()
    configure_logging(settings)
    return ProxyApp(settings)
