"""A tiny, fast origin for the load tests: a bare ASGI app (no framework) with fixed 1 KiB bodies.

- ``/cached`` (and anything under it): 200, 1 KiB, ``Cache-Control: max-age=3600``, an ``ETag``.
- ``/pass``: 200, the same 1 KiB, ``Cache-Control: no-store`` (every request goes through the proxy to here).
- ``/slow?ms=200[&max_age=3600][&swr=0]``: waits ``ms`` milliseconds, then answers like ``/cached`` with
  ``max-age=max_age`` (and ``stale-while-revalidate=swr`` when given).
- ``/count[?target=/slow?ms=200]``: JSON ``{"total": n, "targets": {...}}`` of the requests counted so far (itself
  excluded); with ``target``, ``{"target": ..., "count": n}`` for that exact path and query.

Run it as ``uvicorn load_tests.origin_app:app --loop uvloop --http httptools`` (``common.start_origin`` does). The
counters are per process, so it runs with one worker.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = (b"0123456789abcdef" * 64)[:1024]
MAX_SLOW_MS = 60_000

counts: Counter[str] = Counter()


def _headers(cache_control: bytes, length: int = len(BODY)) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(length).encode()),
        (b"cache-control", cache_control),
        (b"etag", b'"load-test-1k"'),
    ]


CACHED_HEADERS = _headers(b"max-age=3600")
PASS_HEADERS = _headers(b"no-store")


def _target(scope: Scope) -> str:
    query: bytes = scope.get("query_string", b"")
    return f"{scope['path']}?{query.decode('latin-1')}" if query else str(scope["path"])


def _int_param(params: dict[str, list[str]], name: str, default: int, upper: int) -> int:
    try:
        value = int(params.get(name, [str(default)])[0])
    except ValueError:
        return default
    return max(0, min(value, upper))


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _count(scope: Scope, send: Send) -> None:
    params = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "target" in params:
        target = params["target"][0]
        payload: dict[str, Any] = {"target": target, "count": counts.get(target, 0)}
    else:
        payload = {"total": sum(counts.values()), "targets": dict(counts)}
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    await _send(send, 200, [*headers, (b"content-length", str(len(body)).encode())], body)


async def _slow(scope: Scope, send: Send) -> None:
    params = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    delay_ms = _int_param(params, "ms", 200, MAX_SLOW_MS)
    max_age = _int_param(params, "max_age", 3600, 86_400)
    swr = _int_param(params, "swr", 0, 86_400)
    cache_control = f"max-age={max_age}, stale-while-revalidate={swr}" if swr else f"max-age={max_age}"
    await asyncio.sleep(delay_ms / 1000)
    await _send(send, 200, _headers(cache_control.encode()), BODY)


async def lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge lifespan messages, so uvicorn's ``--lifespan on`` works with these bare apps."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The whole origin."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    if path == "/count":
        await _count(scope, send)
        return
    counts[_target(scope)] += 1
    if path == "/pass":
        await _send(send, 200, PASS_HEADERS, BODY)
    elif path == "/slow":
        await _slow(scope, send)
    elif path == "/cached" or path.startswith("/cached/"):
        await _send(send, 200, CACHED_HEADERS, BODY)
    else:
        await _send(send, 404, [(b"content-type", b"text/plain"), (b"content-length", b"10")], b"not found\n")
