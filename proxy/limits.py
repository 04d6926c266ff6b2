"""Limits on what one client connection may cost before its request reaches the app (issue 9 §4).

uvicorn 0.54's httptools protocol offers two knobs and neither bounds a request head: ``timeout_keep_alive`` is armed
only after a response and cancelled by any byte, so a head dribbled one byte a second is never timed out; and
``limit_concurrency`` answers 503 only once a head is complete. httptools itself has no size limit: it hands a header to
``on_header`` only when the header ends, growing the value with ``bytes +=`` meanwhile, so one endless header line is
buffered whole, at quadratic cost, on the event loop every other client shares.

``LimitedHttpToolsProtocol`` is a small subclass, passed to uvicorn as its ``http`` class (so ``--workers N`` gets it
too). Per connection it:

- feeds the parser at most the head budget (``max_url_bytes + max_header_bytes`` and a little for method and version)
  while a head is incomplete, so an endless line is cut at the limit, never buffered;
- answers ``414`` when the request target passes ``max_url_bytes``, and ``431`` when the fields pass
  ``max_header_bytes`` or ``max_headers`` (RFC 6585 §5), checked after every read of an unfinished head and when a
  head is complete;
- gives the whole head a deadline from the connection's opening, or a request's first byte, to the head's end: past
  it the client gets ``408`` and the connection is closed (RFC 9110 §15.5.9); bytes arriving do not extend it;
- refuses a connection beyond ``max_connections`` (per worker process) at once, with a ``503``, before reading a byte,
  so the established ones keep their file descriptors and their latency;
- gives chunked trailer fields, which httptools buffers the same way, the same byte budget (checked per read; past
  it the connection is closed, as the app already has the request);
- answers an HTTP ``Upgrade: websocket`` request ``501``: WebSocket is not proxied.

Every refusal is a short plain-text answer followed by closing the connection: after a cut head the stream cannot be
resynchronised. The idle keep-alive timeout between requests is uvicorn's own (``timeout_keep_alive``), set from the
same settings.
"""

from __future__ import annotations

import asyncio
import http
import logging
import resource
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.server import ServerState

from proxy.clock import SYSTEM_CLOCK
from proxy.ratelog import RateLimitedLog
from proxy.trailers import TrailerlessProtocol

log = logging.getLogger("cacheproxy.limits")
# What a client can make the proxy log as often as it likes: one line per kind per 10 s, with a count (proxy.ratelog).
CLIENT_ERRORS = RateLimitedLog(log, SYSTEM_CLOCK)

KiB = 1024
HEAD_SLACK = 64  # method, spaces, "HTTP/1.1", line ends: what a head holds besides the target and the fields
FD_RESERVE = 64  # descriptors a worker keeps for itself (listening socket, logs, Redis, rules file)
WEBSOCKET_REASON = "WebSocket upgrades are not proxied by cacheproxy"


@dataclass(frozen=True)
class Limits:
    """The per-connection limits; every one is a ``serve`` setting (see ``proxy.config.Settings``)."""

    max_url_bytes: int = 8 * KiB
    max_header_bytes: int = 64 * KiB
    max_headers: int = 100
    head_timeout: float = 10.0
    max_connections: int = 4096

    @property
    def head_budget(self) -> int:
        """The most head bytes the parser is ever fed for one request."""
        return self.max_url_bytes + self.max_header_bytes + HEAD_SLACK


class Refused(Exception):
    """A request head the proxy will not take: answered with ``status`` and a one-line ``reason``, then closed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def refusal_bytes(status: int, reason: str) -> bytes:
    """A complete ``Connection: close`` response with a one-line plain-text body."""
    body = (reason + "\n").encode("ascii", "replace")
    phrase = http.HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n"
    )
    if status == 503:
        head += "retry-after: 1\r\n"
    return (head + "\r\n").encode("ascii") + body


DEFAULT_LIMITS = Limits()
TOO_MANY_FIELDS = "431 Request Header Fields Too Large: too many header fields"
TOO_MANY_CONNECTIONS = refusal_bytes(503, "503 Service Unavailable: too many open connections")


def connection_cap(wanted: int, *, reserved: int) -> int:
    """``wanted``, lowered to what the process's file-descriptor limit can hold besides ``reserved`` others
    (the upstream pool): past RLIMIT_NOFILE, accept() fails and nobody is served."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = max(1, soft - reserved - FD_RESERVE)
    if wanted > room:
        log.warning("--max-connections %d lowered to %d: open-files limit %d (raise ulimit -n)", wanted, room, soft)
        return room
    return wanted


class LimitedHttpToolsProtocol(TrailerlessProtocol):
    """uvicorn's httptools protocol with a bounded request head, a head deadline and a connection cap.

    The checks sit where they cost least on the path every request takes: a request whose head arrives in one read
    pays a few comparisons in ``data_received`` and ``on_headers_complete``; the per-field callbacks are uvicorn's own.
    Exact counts (``url``, ``headers``, the field bytes) are read off uvicorn's buffers, which the head budget bounds.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.url = b""  # uvicorn sets it when a request begins; the checks may read it before
        self._refused = False
        self._in_head = True  # from the end of one request to the end of the next one's head
        self._head_bytes = 0  # bytes fed to the parser for the current head
        self._completed_in_read = False  # a request ended during the current read
        self._uncounted = False  # the current head began in the read that ended the previous request (pipelining)
        self._in_trailers = False  # after a chunk header with no data yet: maybe the trailer section
        self._trailer_bytes = 0
        self._head_started: float | None = None  # loop time the pending head began; None: no head pending
        self._head_timer: asyncio.TimerHandle | None = None

    # connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._refused = True
            self.transport = transport
            transport.write(TOO_MANY_CONNECTIONS)
            transport.close()
            return
        super().connection_made(transport)
        self._head_begun()  # a connection that never sends a byte is a head that never arrives

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if not self._refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser, never more than the head budget while a head is incomplete."""
        if self._refused or self.parser is None:
            return
        self._unset_keepalive_if_required()
        self._completed_in_read = False
        if not self._in_head:
            self._feed_body(data)
            return
        if self._head_started is None:
            self._head_begun()
        if self._head_bytes + len(data) > self.limits.head_budget:
            self._feed_past_budget(data)
            return
        self._head_bytes += len(data)
        if self._feed(data) and self._in_head:
            self._check_partial_head()

    def _feed_body(self, data: bytes) -> None:
        """A body (or what follows it): fed whole, but chunked trailer fields get the same budget as the head's.

        httptools buffers a trailer field like a header field, whole; a read that brings no body after the last
        chunk's header is trailer bytes. Past the budget the connection is closed: the app has the request already,
        so there is no clean answer to give.
        """
        counting = self._in_trailers
        if not self._feed(data) or not (counting and self._in_trailers):
            return
        self._trailer_bytes += len(data)
        if self._trailer_bytes > self.limits.max_header_bytes + HEAD_SLACK:
            CLIENT_ERRORS.log("client", "trailers", "Request trailer fields over --max-header-bytes: connection closed")
            self.transport.close()

    def _feed_past_budget(self, data: bytes) -> None:
        """Feed no more than the head's remaining budget; what follows the head's end is fed as usual."""
        while data:
            if self._in_head:
                room = self.limits.head_budget - self._head_bytes
                if room <= 0:
                    self._refuse(Refused(431, "431 Request Header Fields Too Large"))
                    return
                piece, data = data[:room], data[room:]
                self._head_bytes += len(piece)
            else:
                piece, data = data, b""
            if not self._feed(piece):
                return
        if self._in_head:
            self._check_partial_head()

    def _check_partial_head(self) -> None:
        """A head still arriving: refuse as soon as what is in already passes a limit."""
        limits = self.limits
        if len(self.url) > limits.max_url_bytes:
            self._refuse(Refused(414, "414 URI Too Long"))
        elif self.headers and len(self.headers) > limits.max_headers:
            self._refuse(Refused(431, TOO_MANY_FIELDS))
        elif self._head_bytes - len(self.url) >= limits.max_header_bytes + HEAD_SLACK:
            self._refuse(Refused(431, "431 Request Header Fields Too Large"))  # a field still arriving

    def _feed(self, piece: bytes) -> bool:
        """One ``feed_data``; False when the connection is done (refused, or a malformed request answered 400)."""
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade:
            pass  # an upgrade other than WebSocket: answered as a plain HTTP request (ws is off)
        except httptools.HttpParserError as error:
            refused = error.__context__
            if isinstance(refused, Refused):
                self._refuse(refused)
            else:
                CLIENT_ERRORS.log("client", "invalid", "Invalid HTTP request received: %s", error)
                self.send_400_response("Invalid HTTP request received.")
            return False
        return not self.transport.is_closing()

    def _refuse(self, refused: Refused) -> None:
        self._head_started = None
        if self.transport.is_closing():
            return
        self.transport.write(refusal_bytes(refused.status, refused.reason))
        self.transport.close()

    # the head deadline: one timer per connection, re-armed only when it fires early

    def _head_begun(self) -> None:
        self._head_started = self.loop.time()
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        started = self._head_started
        if started is None or self.transport.is_closing():
            return  # no head pending: the timer starts again with the next one
        left = started + self.limits.head_timeout - self.loop.time()
        if left > 0:
            self._head_timer = self.loop.call_later(left, self._head_timed_out)  # a later head than the one armed for
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._head_started = None
            self.cycle.keep_alive = False  # a pipelined head is late: finish the response under way, then close
            return
        self._refuse(Refused(408, "408 Request Timeout: the request head did not arrive in time"))

    # parser callbacks

    def on_message_begin(self) -> None:
        self._uncounted = self._completed_in_read
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_started = None
        limits = self.limits
        if len(self.url) > limits.max_url_bytes:
            raise Refused(414, "414 URI Too Long")
        if len(self.headers) > limits.max_headers:
            raise Refused(431, TOO_MANY_FIELDS)
        maybe_over = self._uncounted or self._head_bytes - len(self.url) > limits.max_header_bytes
        if maybe_over and field_bytes(self.headers) > limits.max_header_bytes:
            raise Refused(431, "431 Request Header Fields Too Large")
        if self.parser.should_upgrade() and self._get_upgrade() == b"websocket":
            raise Refused(501, f"501 Not Implemented: {WEBSOCKET_REASON}")
        super().on_headers_complete()

    def on_chunk_header(self) -> None:
        self._in_trailers = True  # until a body byte shows this was not the last chunk

    def on_body(self, body: bytes) -> None:
        self._in_trailers = False
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._in_trailers = False
        self._trailer_bytes = 0
        self._completed_in_read = True  # a pipelined head in the rest of this read is not in _head_bytes
        super().on_message_complete()


def field_bytes(fields: list[tuple[bytes, bytes]]) -> int:
    """The size of the field lines as sent: name, ": ", value, CRLF."""
    return sum(len(name) + len(value) + 4 for name, value in fields)
