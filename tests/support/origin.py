"""A controllable origin server for end-to-end tests.

``Origin.set(path, ...)`` scripts the answer for a path (or an exact ``path?query``): status, header lines (duplicates
and name case kept), body or streamed chunks, a delay before the head, a connection cut mid-body, automatic 304s.
Every request is recorded (raw path and query, headers, body) and counted per target. Built-in routes:
``/echo[/...]`` answers with a JSON description of the request, ``/bytes/{n}`` streams ``n`` bytes of
:func:`pattern_bytes` in 64 KiB chunks (``?chunked=1`` omits Content-Length); any other path answers
``200 text/plain`` ``origin {path}`` with no cache headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from proxy.messages import Headers
from tests.support.servers import UvicornServer

CHUNK = 64 * 1024
RawHeaders = list[tuple[bytes, bytes]]


def pattern_bytes(n: int) -> bytes:
    """The deterministic body ``/bytes/{n}`` sends: 0..255 repeated, cut to ``n`` bytes."""
    return (bytes(range(256)) * (n // 256 + 1))[:n]


class OriginCut(Exception):
    """Raised inside the app after part of a body was sent, so uvicorn aborts the connection."""


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: Headers
    body: bytes

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


@dataclass(frozen=True)
class OriginRoute:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    delay: float = 0.0
    chunks: tuple[bytes, ...] | None = None
    fail_after: int | None = None
    etag_auto: bool = False
    chunk_delay: float = 0.0


def _etag_matches(if_none_match: list[str], etag: str | None) -> bool:
    """Weak comparison of If-None-Match members with the ETag (RFC 9110 §13.1.2)."""
    if etag is None:
        return False
    return any(tag == "*" or tag.removeprefix("W/") == etag.removeprefix("W/") for tag in if_none_match)


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


async def _pause(receive: Receive, delay: float) -> bool:
    """Wait ``delay`` seconds, or less if the client goes away; True when it did."""
    if delay <= 0:
        return False
    try:
        async with asyncio.timeout(delay):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return False
    return True


async def _respond(
    send: Send,
    status: int,
    headers: RawHeaders,
    pieces: Sequence[bytes],
    *,
    fail_after: int | None = None,
    chunk_delay: float = 0.0,
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    sent = 0
    for piece in pieces:
        if fail_after is not None and sent + len(piece) > fail_after:
            await send({"type": "http.response.body", "body": piece[: fail_after - sent], "more_body": True})
            raise OriginCut(f"cut after {fail_after} bytes")
        await send({"type": "http.response.body", "body": piece, "more_body": True})
        sent += len(piece)
        if chunk_delay:
            await asyncio.sleep(chunk_delay)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _raw(headers: Iterable[tuple[str, str]]) -> RawHeaders:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


class Origin:
    """The scripted origin. ``app`` is a Starlette app; ``hits`` counts requests per ``path?query``."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0  # requests being answered right now
        self.max_in_flight = 0  # the most answered at once: shows whether requests overlapped
        self._routes: dict[str, OriginRoute] = {}
        self.app = Starlette(routes=[Route("/{path:path}", endpoint=_Endpoint(self))])

    def set(
        self,
        path: str,
        *,
        status: int = 200,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        body: bytes | str = b"",
        delay: float = 0.0,
        chunks: Sequence[bytes] | None = None,
        fail_after: int | None = None,
        etag_auto: bool = False,
        chunk_delay: float = 0.0,
    ) -> None:
        """Script the answer for ``path`` (raw, as sent) or for an exact ``path?query`` (checked first).

        Without ``chunks`` a Content-Length is added unless given; with ``chunks`` the body is sent chunked.
        ``fail_after`` cuts the connection once that many body bytes were sent.
        """
        pairs = tuple(headers.items()) if isinstance(headers, Mapping) else tuple(headers or ())
        self._routes[path] = OriginRoute(
            status=status,
            headers=pairs,
            body=body.encode() if isinstance(body, str) else body,
            delay=delay,
            chunks=None if chunks is None else tuple(chunks),
            fail_after=fail_after,
            etag_auto=etag_auto,
            chunk_delay=chunk_delay,
        )

    def reset(self) -> None:
        """Forget recorded requests, hit counts and scripted routes."""
        self.hits.clear()
        self.requests.clear()
        self.max_in_flight = 0
        self._routes.clear()

    def route_for(self, request: RecordedRequest) -> OriginRoute | None:
        return self._routes.get(request.target) or self._routes.get(request.path)

    def record(self, request: RecordedRequest) -> None:
        self.requests.append(request)
        self.hits[request.target] += 1


class _Endpoint:
    """The catch-all raw ASGI endpoint (a class instance, so Starlette accepts every method)."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        request = RecordedRequest(
            method=scope["method"],
            path=raw_path.decode("latin-1"),
            query=scope["query_string"].decode("latin-1"),
            headers=Headers.from_raw(scope["headers"]),
            body=await _read_body(receive),
        )
        self.origin.record(request)
        route = self.origin.route_for(request)
        if route is not None:
            self.origin.in_flight += 1
            self.origin.max_in_flight = max(self.origin.max_in_flight, self.origin.in_flight)
            try:
                await _scripted(route, request, receive, send)
            finally:
                self.origin.in_flight -= 1
        elif request.path == "/echo" or request.path.startswith("/echo/"):
            await _echo(request, send)
        elif request.path.startswith("/bytes/"):
            await _bytes(request, send)
        else:
            body = f"origin {request.path}".encode("latin-1")
            headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
            await _respond(send, 200, headers, [body])


async def _scripted(route: OriginRoute, request: RecordedRequest, receive: Receive, send: Send) -> None:
    if await _pause(receive, route.delay):
        return
    headers = Headers(route.headers)
    if route.etag_auto and _etag_matches(request.headers.get_list("If-None-Match"), headers.get("ETag")):
        await _respond(send, 304, _raw(headers.without("Content-Length", "Content-Type")), [])
        return
    pieces = list(route.chunks) if route.chunks is not None else [route.body]
    bodyless = route.status in (204, 304) or route.status < 200
    if route.chunks is None and not bodyless and "Content-Length" not in headers:
        headers = headers.adding("Content-Length", str(len(route.body)))
    await _respond(
        send,
        route.status,
        _raw(headers),
        [] if bodyless else pieces,
        fail_after=route.fail_after,
        chunk_delay=route.chunk_delay,
    )


async def _echo(request: RecordedRequest, send: Send) -> None:
    payload = {
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "headers": [list(pair) for pair in request.headers],
        "body_length": len(request.body),
        "body_sha256": hashlib.sha256(request.body).hexdigest(),
    }
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await _respond(send, 200, headers, [body])


async def _bytes(request: RecordedRequest, send: Send) -> None:
    size = request.path.removeprefix("/bytes/")
    if not size.isdigit():
        await _respond(send, 400, [(b"content-length", b"0")], [])
        return
    data = pattern_bytes(int(size))
    headers = [(b"content-type", b"application/octet-stream")]
    if "chunked=1" not in request.query.split("&"):
        headers.append((b"content-length", size.encode()))
    await _respond(send, 200, headers, [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)])


@dataclass(frozen=True)
class RunningOrigin:
    """An :class:`Origin` served on loopback: ``url`` plus shortcuts to the origin's controls.

    ``server.stop()`` / ``server.start()`` take the origin down and bring it back on the same URL.
    """

    origin: Origin
    server: UvicornServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def hits(self) -> Counter[str]:
        return self.origin.hits

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.origin.requests

    def set(self, path: str, **route: Any) -> None:
        """See :meth:`Origin.set`."""
        self.origin.set(path, **route)

    def reset(self) -> None:
        self.origin.reset()


@contextlib.asynccontextmanager
async def run_origin(origin: Origin | None = None, **config: Any) -> AsyncIterator[RunningOrigin]:
    """Serve an origin (a fresh one by default) under uvicorn on a free loopback port.

    ``config`` goes to uvicorn, e.g. ``date_header=False`` for an origin whose responses carry no ``Date`` (whose
    whole-second resolution otherwise adds up to a second to every response's apparent age).
    """
    origin = origin or Origin()
    async with UvicornServer(origin.app, **config) as server:
        yield RunningOrigin(origin, server)
