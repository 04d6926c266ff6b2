"""``cacheproxy demo``: a small sample origin behind the proxy, so caching can be seen without an API at hand.

Both servers run in one process on loopback; the command prints curl lines to try and runs until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.clock import SYSTEM_CLOCK
from proxy.config import Settings
from proxy.errors import ConfigError

SAMPLE_RULES = """\
# The demo's rules: see the top-level rules.yaml for every field.
defaults:
  stale_if_error: 1m
routes:
  - name: products
    match: {path: /api/products/**}
    ttl: 30s
    stale_while_revalidate: 10s
    tags: [products]
  - name: no-cache-for-me
    match: {path: /api/me}
    bypass: true
"""


def sample_origin() -> Starlette:
    """An origin with a few typical API behaviours; it counts the requests that reach it."""
    counter = {"n": 0}

    def counted(request: Request) -> int:
        counter["n"] += 1
        return counter["n"]

    async def time_now(request: Request) -> Response:
        n = counted(request)
        body = f'{{"time": {SYSTEM_CLOCK.now():.3f}, "origin_request": {n}}}\n'.encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        return Response(body, media_type="application/json", headers={"Cache-Control": "max-age=10", "ETag": etag})

    async def slow(request: Request) -> Response:
        n = counted(request)
        await asyncio.sleep(1.0)
        return JSONResponse({"slow": True, "origin_request": n}, headers={"Cache-Control": "public, max-age=60"})

    async def product(request: Request) -> Response:
        n = counted(request)
        pid = request.path_params["pid"]
        return JSONResponse(
            {"id": pid, "name": f"product {pid}", "origin_request": n},
            headers={"ETag": f'"p{pid}-v1"', "Surrogate-Key": f"product-{pid}"},
        )

    async def me(request: Request) -> Response:
        n = counted(request)
        return JSONResponse({"user": "you", "origin_request": n}, headers={"Cache-Control": "private"})

    return Starlette(
        routes=[
            Route("/api/time", time_now),
            Route("/api/slow", slow),
            Route("/api/products/{pid}", product),
            Route("/api/me", me),
        ]
    )


def _listen(port: int, flag: str) -> socket.socket:
    """A bound loopback socket, made before anything starts: a busy port is one line, not a traceback."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as error:
        sock.close()
        raise ConfigError(
            f"demo: cannot listen on 127.0.0.1:{port}: {error.strerror} (pick another {flag} N)"
        ) from None
    return sock


def instructions(proxy: str) -> str:
    return f"""
cacheproxy demo: the proxy listens on {proxy}, in front of a sample origin.
Try these (watch the Cache-Status and Age headers):

  curl -si {proxy}/api/time                  # 1st: Cache-Status: cacheproxy; fwd=uri-miss; stored
  curl -si {proxy}/api/time                  # again: cacheproxy; hit; ttl=..  and an Age header
  curl -si {proxy}/api/time -H 'If-None-Match: <the ETag above>'   # 304 Not Modified from the cache
  curl -si {proxy}/api/slow                  # 1 s the first time, instant after
  curl -si {proxy}/api/products/7            # cached 30 s by the 'products' rule, tagged 'products'
  curl -si {proxy}/_cacheproxy/purge -H 'Content-Type: application/json' -d '{{"tag": "products"}}'   # purge by tag
  curl -si {proxy}/api/me                    # bypassed by rule: never cached
  open {proxy}/_cacheproxy/                  # the status page

Ctrl-C stops both servers.
"""


async def _run(proxy_sock: socket.socket, origin_sock: socket.socket, rules_path: str) -> None:
    from proxy.app import ProxyApp
    from proxy.server import uvicorn_config

    port, origin_port = proxy_sock.getsockname()[1], origin_sock.getsockname()[1]
    origin = uvicorn.Server(
        uvicorn.Config(sample_origin(), host="127.0.0.1", port=origin_port, log_level="warning", lifespan="off")
    )
    settings = Settings(upstream=f"http://127.0.0.1:{origin_port}", rules=Path(rules_path), port=port)
    proxy = uvicorn.Server(uvicorn_config(settings, ProxyApp(settings)))
    tasks = [
        asyncio.create_task(origin.serve(sockets=[origin_sock])),
        asyncio.create_task(proxy.serve(sockets=[proxy_sock])),
    ]
    while not proxy.started:
        if any(t.done() for t in tasks):
            break
        await asyncio.sleep(0.05)
    if proxy.started:
        print(instructions(f"http://127.0.0.1:{port}"), flush=True)
    await asyncio.gather(*tasks)


def run_demo(port: int = 8080, origin_port: int = 0) -> int:
    """Serve the demo until Ctrl-C; a port already in use is a ``ConfigError`` (one line, exit 2)."""
    import tempfile

    from proxy.logs import configure

    proxy_sock = _listen(port, "--port")
    try:
        origin_sock = _listen(origin_port, "--origin-port")
    except ConfigError:
        proxy_sock.close()
        raise
    configure("text")
    with tempfile.TemporaryDirectory() as tmp, proxy_sock, origin_sock:
        rules = f"{tmp}/rules.yaml"
        with open(rules, "w") as f:
            f.write(SAMPLE_RULES)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(proxy_sock, origin_sock, rules))
    return 0
