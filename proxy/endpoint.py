"""The catch-all proxy endpoint: a pure ASGI function, no Starlette request or response objects.

The edge owns ASGI. The scope is parsed once into a ``RequestHead`` (``proxy.head``: target form, one Host, the
trusted forwarding chain), or refused with a one-line 400. The hit path (``proxy.hot``) answers from that head; the
rest goes to the cache service, and the ``Answer``'s prepared headers and body become ASGI messages here. Streamed
bodies are pumped while watching for the client going away, so an abandoned download releases its upstream
connection at once. ``OPTIONS *`` (RFC 9110 §9.3.7) is answered here: it asks about this server, not a resource.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from proxy.cache.answer import Answer
from proxy.cache.service import CacheService
from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.errors import UpstreamError
from proxy.head import SCOPE_KEY, Refusal, parse_head
from proxy.hot import Hit, HotPath
from proxy.messages import RequestHead
from proxy.ratelog import RateLimitedLog
from proxy.trust import DEFAULT_TRUSTED, TrustedProxies

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("cacheproxy.endpoint")
BROKEN_BODIES = RateLimitedLog(log, SYSTEM_CLOCK)  # one line per route and error kind per 10 s, with a count


class BrokenStream(Exception):
    """The upstream died mid-body: the client's response is ended as a broken stream, never completed."""


class ClientGone(Exception):
    """The client disconnected while its request body was being forwarded."""


class Observer(Protocol):
    def request_done(self, request: RequestHead, answer: Answer, duration: float, sent: int) -> None: ...

    def hit_done(self, request: RequestHead, hit: Hit, duration: float) -> None:
        """A fresh hit the hot path answered (``proxy.hot``): counted like a ``request_done`` of a hit."""
        ...


OPTIONS_ALLOW = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"


def request_from_scope(scope: Scope, trusted: TrustedProxies | None = None) -> RequestHead:
    """The head the edge already parsed for ``scope``, or a parse of it now (raises ``ValueError`` if refused)."""
    found = scope.get(SCOPE_KEY)
    if isinstance(found, RequestHead):
        return found
    parsed = parse_head(scope, trusted or TrustedProxies.parse(DEFAULT_TRUSTED))
    if isinstance(parsed, Refusal):
        raise ValueError(parsed.reason)
    return parsed


async def refuse(refusal: Refusal, send: Send) -> None:
    """A request head the proxy will not act on: a one-line text answer, the connection closed after it."""
    body = refusal.body
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def answer_options_asterisk(send: Send) -> None:
    headers = [(b"allow", OPTIONS_ALLOW), (b"content-length", b"0"), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


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
    def __init__(
        self,
        service: CacheService,
        clock: Clock,
        observer: Observer | None = None,
        trusted: TrustedProxies | None = None,
    ) -> None:
        self.service = service
        self.clock = clock
        self.observer = observer
        self.trusted = trusted or TrustedProxies.parse(DEFAULT_TRUSTED)
        self.hot = HotPath(service, clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Parse the head (unless the dispatcher did) and answer the request."""
        found = scope.get(SCOPE_KEY)
        parsed = found if isinstance(found, RequestHead) else parse_head(scope, self.trusted)
        if isinstance(parsed, Refusal):
            await refuse(parsed, send)
            return
        await self.handle(parsed, receive, send)

    def answer_now(self, request: RequestHead) -> tuple[bytes, bytes] | None:
        """A fresh hit for ``request`` as the bytes to write (response head, body), counted and logged as
        ``handle`` would; ``None``: ``handle`` answers it. For the server protocol (``proxy.edgehit``)."""
        if request.path == "*":
            return None
        started = self.clock.monotonic()
        found = self.hot.serve_now(request)
        if found is None:
            return None
        hit, head, body = found
        if self.observer is not None:
            self.observer.hit_done(request, hit, self.clock.monotonic() - started)
        return head, body

    async def handle(self, request: RequestHead, receive: Receive, send: Send) -> None:
        """Answer ``request``, the edge's one parse of the head."""
        if request.path == "*":
            await answer_options_asterisk(send)
            return
        started = self.clock.monotonic()
        hot = await self.hot.serve(request, send)
        if isinstance(hot, Hit):
            if self.observer is not None:
                self.observer.hit_done(request, hot, self.clock.monotonic() - started)
            return
        body = request_body(receive) if has_body(request) else None
        answer = await self.service.handle(request, body, hot)
        headers = answer.headers
        if request.headers.get("cache-debug") == "1" and self.trusted.trusts(request.client):
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
        if answer.key is not None:
            pairs.append((b"cache-key", answer.key.encode("latin-1")))
        return pairs

    def _key_parts_header(self, request: RequestHead, answer: Answer) -> list[tuple[bytes, bytes]]:
        """``Cache-Key-Parts``: what the opaque ``Cache-Key`` hashes, readable (``method="GET"; host="a"; ...``).

        Shown only when the parts hash to the answer's key (rules reloaded mid-request would show another route's).
        """
        import json  # here, not at the top: this debug-only hunk stays separate from the request parsing above

        from proxy.cache.keys import key_parts, primary_key

        route = self.service.rules.current.match(request.method, request.host, request.path)
        if answer.key is None or primary_key(request, route) != answer.key:
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
            what = "upstream broke off the body after %d bytes: %s"
            BROKEN_BODIES.log(answer.route, type(error).__name__, what, sent, error)
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
