"""The catch-all proxy endpoint: a pure ASGI function, no Starlette request or response objects.

It converts the ASGI scope into a ``RequestHead`` once, hands it to the cache service, and sends the ``Answer``'s
prepared headers and body. Streamed bodies are pumped while watching for the client going away, so an abandoned
download releases its upstream connection at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from proxy.cache.answers import Answer
from proxy.cache.hot import Hit, HotPath
from proxy.cache.service import CacheService
from proxy.clock import Clock
from proxy.errors import UpstreamError
from proxy.messages import Headers, RequestHead

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("cacheproxy.endpoint")


class BrokenStream(Exception):
    """The upstream died mid-body: the client's response is ended as a broken stream, never completed."""


class ClientGone(Exception):
    """The client disconnected while its request body was being forwarded."""


class Observer(Protocol):
    def request_done(self, request: RequestHead, answer: Answer, duration: float, sent: int) -> None: ...

    def hit_done(self, scope: Scope, hit: Hit, duration: float) -> None:
        """A fresh hit the hot path answered (``proxy.cache.hot``): counted like a ``request_done`` of a hit."""
        ...


def is_loopback(host: str | None) -> bool:
    """A client on this machine (127.0.0.0/8, ::1, or ::ffff:127.x): for the debug headers and the admin surface."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def request_from_scope(scope: Scope) -> RequestHead:
    raw_path: bytes | None = scope.get("raw_path")
    path: str = raw_path.split(b"?", 1)[0].decode("latin-1") if raw_path else scope["path"]
    headers = Headers.from_raw(scope["headers"])
    host = headers.get("host")
    if host is None:
        server = scope.get("server") or ("localhost", None)
        host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
    client = scope.get("client")
    return RequestHead(
        method=scope["method"],
        scheme=scope.get("scheme", "http"),
        host=host,
        path=path,
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        client=client[0] if client else None,
    )


def has_body(request: RequestHead) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "transfer-encoding" in request.headers


async def request_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone("client disconnected during the request body")
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


class ProxyEndpoint:
    def __init__(self, service: CacheService, clock: Clock, observer: Observer | None = None) -> None:
        self.service = service
        self.clock = clock
        self.observer = observer
        self.hot = HotPath(service, clock, request_from_scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = self.clock.monotonic()
        hot = await self.hot.serve(scope, send)
        if isinstance(hot, Hit):
            if self.observer is not None:
                self.observer.hit_done(scope, hot, self.clock.monotonic() - started)
            return
        request = request_from_scope(scope)
        body = request_body(receive) if has_body(request) else None
        answer = await self.service.handle(request, body, hot)
        headers = answer.headers
        if request.headers.get("cache-debug") == "1" and is_loopback(request.client):
            headers = [*headers, *self._debug_headers(answer), *self._key_parts_header(request, answer)]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        if answer.stream is None:
            await send({"type": "http.response.body", "body": answer.body})
            if answer.release is not None:
                await answer.release()
            sent = len(answer.body)
        else:
            sent = await self._pump(answer, receive, send)
        if self.observer is not None:
            self.observer.request_done(request, answer, self.clock.monotonic() - started, sent)

    @staticmethod
    def _debug_headers(answer: Answer) -> list[tuple[bytes, bytes]]:
        pairs = [(b"cache-route", answer.route.encode("latin-1"))]
        if "key" in answer.extra:
            pairs.append((b"cache-key", answer.extra["key"].encode("latin-1")))
        return pairs

    def _key_parts_header(self, request: RequestHead, answer: Answer) -> list[tuple[bytes, bytes]]:
        """``Cache-Key-Parts``: what the opaque ``Cache-Key`` hashes, readable (``method="GET"; host="a"; ...``).

        Shown only when the parts hash to the answer's key (rules reloaded mid-request would show another route's).
        """
        import json  # here, not at the top: this debug-only hunk stays separate from the request parsing above

        from proxy.cache.keys import key_parts, primary_key

        route = self.service.rules.current.match(request.method, request.host, request.path)
        if "key" not in answer.extra or primary_key(request, route) != answer.extra["key"]:
            return []
        text = "; ".join(f"{name}={json.dumps(value)}" for name, value in key_parts(request, route))
        return [(b"cache-key-parts", text.encode("latin-1"))]

    async def _pump(self, answer: Answer, receive: Receive, send: Send) -> int:
        """Send a streamed body; stop and release the upstream as soon as the client disconnects."""
        if answer.stream is None:
            return 0
        sent = 0
        gone = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            async for chunk in answer.stream:
                if gone.done():
                    return sent
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += len(chunk)
            await send({"type": "http.response.body", "body": b""})
            return sent
        except UpstreamError as error:
            log.warning("upstream broke off the body after %d bytes: %s", sent, error)
            raise BrokenStream(str(error)) from error
        finally:
            gone.cancel()
            if answer.release is not None:
                await answer.release()


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class QuietBrokenStreams(logging.Filter):
    """Keep uvicorn from logging a traceback for a stream we broke on purpose (already logged in one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, BrokenStream | ClientGone)
