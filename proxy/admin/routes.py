"""The admin surface under ``settings.admin_prefix``: probes, metrics, purge, and the status page.

The dispatcher in ``proxy.app`` hands this Starlette app every request whose path is under the prefix, unstripped,
so routes are registered with the prefix; nothing here is ever forwarded upstream. ``AdminGuard`` (``proxy.admin.auth``)
answers 403 to clients that may not use it, except on the two probes. The app also carries the proxy's lifespan.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from proxy.admin.auth import AdminGuard, admin_hosts
from proxy.admin.metrics import CONTENT_TYPE
from proxy.admin.observe import AdminObserver
from proxy.admin.purge import MAX_BODY, PurgeRequestError, distinct_named_stores, parse_purge, purge, unavailable
from proxy.errors import StorageError
from proxy.runtime import Runtime
from proxy.storage.abilities import Abilities
from proxy.storage.base import Storage
from proxy.storage.memory import EvictionStats

NO_STORE = {"cache-control": "no-store"}
READY_TIMEOUT = 5.0  # a probe that hangs longer is "unreachable" (set the probe's timeoutSeconds above this)
STATUS_PAGE = Path(__file__).parent / "status.html"


def observer_of(runtime: Runtime) -> AdminObserver:
    """The worker's observer (made here when the app was built without one, so the admin surface still works)."""
    if not isinstance(runtime.observer, AdminObserver):
        runtime.observer = AdminObserver(runtime.clock, access=False)
    return runtime.observer


def page_policy(html: str) -> str:
    """A Content-Security-Policy allowing only the page's own inline script and style (by hash) and same-origin JSON."""

    def hashes(tag: str) -> str:
        found = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
        digests = (base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() for text in found)
        return " ".join(f"'sha256-{digest}'" for digest in digests)

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; connect-src 'self'; "
        "img-src data:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    )


async def store_state(store: Storage, abilities: Abilities) -> str:
    """``ok`` or ``degraded`` (a failing ping, or a store that says it runs degraded, e.g. an open breaker)."""
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            alive = await store.ping()
    except Exception:  # readiness reports any failure as degraded rather than failing the probe
        alive = False
    degraded = abilities.degradable is not None and abilities.degradable.degraded
    return "ok" if alive and not degraded else "degraded"


async def upstream_state(runtime: Runtime) -> str:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            alive = await runtime.origin.ping()
    except (TimeoutError, RuntimeError):
        alive = False
    return "ok" if alive else "unreachable"


def _reporting(runtime: Runtime) -> list[tuple[Storage, Abilities]]:
    """Each store once, with what it can report beyond ``stats`` (error counts, eviction figures)."""
    return [(store, runtime.abilities_of(name)) for name, store in distinct_named_stores(runtime)]


def eviction_fields(stats: EvictionStats | None) -> dict[str, Any]:
    """The status page's policy columns of one store (nulls for a store without a memory policy)."""
    if stats is None:
        return {"policy": None, "evictions_by_queue": None, "ghost_hits": None}
    return {"policy": stats.policy, "evictions_by_queue": stats.evictions, "ghost_hits": stats.ghost_hits}


def build_admin(runtime: Runtime, lifespan: Any) -> Starlette:
    """The admin app for ``runtime``; ``lifespan`` is the proxy's (shared clients start and stop there)."""
    prefix = runtime.settings.admin_prefix
    observer = observer_of(runtime)
    html = STATUS_PAGE.read_text(encoding="utf-8")
    page_headers = {**NO_STORE, "content-security-policy": page_policy(html)}

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok\n", headers=NO_STORE)

    async def readyz(_request: Request) -> Response:
        upstream = await upstream_state(runtime)
        stores = {name: await store_state(store, runtime.abilities_of(name)) for name, store in runtime.stores.items()}
        body = {
            "upstream": upstream,
            "store": "ok" if all(state == "ok" for state in stores.values()) else "degraded",
            "stores": stores,
        }
        return JSONResponse(body, status_code=200 if upstream == "ok" else 503, headers=NO_STORE)

    async def metrics(_request: Request) -> Response:
        await observer.metrics.refresh_stores(_reporting(runtime))
        return Response(observer.metrics.render(), media_type=CONTENT_TYPE, headers=NO_STORE)

    async def stats(_request: Request) -> Response:
        found = await observer.metrics.refresh_stores(_reporting(runtime))
        body = observer.snapshot()
        body["worker"] = os.getpid()
        body["stores"] = [
            {"name": name, "entries": s.entries, "bytes": s.bytes, "budget": s.budget, "evictions": s.evictions}
            | eviction_fields(observer.metrics.stores.eviction.get(name))
            for name, s in found.items()
        ]
        return JSONResponse(body, headers=NO_STORE)

    async def purge_endpoint(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return PlainTextResponse("purge body too large\n", status_code=413, headers=NO_STORE)
        try:
            what = parse_purge(body)
        except PurgeRequestError as error:
            return PlainTextResponse(f"{error}\n", status_code=400, headers=NO_STORE)
        host = request.headers.get("host") or f"{runtime.settings.host}:{runtime.settings.port}"
        try:
            count = await purge(runtime, what, scheme=request.url.scheme, host=host)
        except StorageError as error:
            return JSONResponse(unavailable(error), status_code=503, headers=NO_STORE)
        return JSONResponse({"purged": count}, headers=NO_STORE)

    async def page(_request: Request) -> Response:
        return Response(html, media_type="text/html; charset=utf-8", headers=page_headers)

    async def to_page(_request: Request) -> Response:
        return RedirectResponse(prefix + "/", status_code=308)

    routes = [
        Route(prefix, to_page),
        Route(prefix + "/", page),
        Route(prefix + "/healthz", healthz, methods=["GET", "HEAD"]),
        Route(prefix + "/readyz", readyz, methods=["GET", "HEAD"]),
        Route(prefix + "/metrics", metrics),
        Route(prefix + "/stats.json", stats),
        Route(prefix + "/purge", purge_endpoint, methods=["POST"]),
    ]
    guard = Middleware(
        AdminGuard,
        token=runtime.settings.admin_token,
        open_paths=frozenset({prefix + "/healthz", prefix + "/readyz"}),
        trusted=runtime.settings.trusted,
        hosts=admin_hosts(runtime.settings.admin_hosts),
    )
    return Starlette(routes=routes, middleware=[guard], lifespan=lifespan)
