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
- answers ``414`` when the request target passes ``max_url_bytes`` (``on_url`` sees it in pieces, as it arrives), and
  ``431`` when the fields pass ``max_header_bytes`` or ``max_headers`` (RFC 6585 §5);
- arms a deadline for the whole head when the connection opens and when a new request begins, cancelled when the head
  is complete: past it the client gets ``408`` and the connection is closed (RFC 9110 §15.5.9);
- refuses a connection beyond ``max_connections`` (per worker process) at once, with a ``503``, before reading a byte,
  so the established ones keep their file descriptors and their latency;
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
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

log = logging.getLogger("cacheproxy.limits")

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


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded request head, a head deadline and a connection cap."""

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
        self._refused = False
        self._in_head = True  # between the end of one request and the end of the next one's head
        self._head_bytes = 0  # bytes fed to the parser for the current head
        self._url_bytes = 0
        self._field_bytes = 0  # complete field lines seen (name + value + ": " + CRLF)
        self._field_count = 0
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
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if not self._refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser, never more than the head budget while a head is incomplete."""
        if self._refused or self.parser is None:
            return
        self._unset_keepalive_if_required()
        while data:
            if self._in_head:
                room = self.limits.head_budget - self._head_bytes
                if room <= 0 or self._head_bytes - self._url_bytes >= self.limits.max_header_bytes + HEAD_SLACK:
                    self._refuse(Refused(431, "431 Request Header Fields Too Large"))  # a field still arriving
                    return
                piece, data = data[:room], data[room:]
                self._head_bytes += len(piece)
            else:
                piece, data = data, b""
            if not self._feed(piece):
                return
        if self._in_head and self._head_bytes - self._url_bytes >= self.limits.max_header_bytes + HEAD_SLACK:
            self._refuse(Refused(431, "431 Request Header Fields Too Large"))  # do not wait for more of it

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
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return False
        return not self.transport.is_closing()

    def _refuse(self, refused: Refused) -> None:
        self._cancel_head_timer()
        if self.transport.is_closing():
            return
        self.transport.write(refusal_bytes(refused.status, refused.reason))
        self.transport.close()

    # the head deadline

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a pipelined head is late: finish the response under way, then close
            return
        self._refuse(Refused(408, "408 Request Timeout: the request head did not arrive in time"))

    # parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self.limits.max_url_bytes:
            raise Refused(414, "414 URI Too Long")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._field_count += 1
        self._field_bytes += len(name) + len(value) + 4
        if self._field_count > self.limits.max_headers:
            raise Refused(431, "431 Request Header Fields Too Large: too many header fields")
        if self._field_bytes > self.limits.max_header_bytes:
            raise Refused(431, "431 Request Header Fields Too Large")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._in_head = False
        if self.parser.should_upgrade() and self._get_upgrade() == b"websocket":
            raise Refused(501, f"501 Not Implemented: {WEBSOCKET_REASON}")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = self._url_bytes = self._field_bytes = self._field_count = 0
        super().on_message_complete()
