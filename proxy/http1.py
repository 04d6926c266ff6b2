"""HTTP/1.1 connections to the origin: one asyncio protocol per connection, llhttp (``httptools``) reading the
responses, a LIFO pool and the read deadlines. ``proxy.upstream`` drives them; nothing else imports this module.

A :class:`Connection` owns one TCP (or TLS) connection and a fresh ``httptools.HttpResponseParser`` per exchange
(llhttp cannot be told that a response answers a HEAD, so its parser never outlives the exchange). Body bytes wait in
a queue for the consumer; past ``HIGH_WATER`` bytes the socket stops being read (backpressure). The connection is
``reusable`` only when its exchange ended cleanly: the whole final response read, the origin not asking to close,
and nothing arriving after the response or while the connection sat idle in the pool (RFC 9112 §6.3: bytes after a
complete response are not ours to parse). Framing llhttp accepts but a proxy must not forward raises
:class:`BadResponse`: a status outside 100-599 or ``101``, a version other than HTTP/1.x, a transfer coding other
than a final ``chunked``. Interim 1xx responses are skipped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from itertools import chain
from typing import cast

import httptools

from proxy.messages import HOP_BY_HOP, Headers

NO_BODY_STATUSES = frozenset({204, 304})
HIGH_WATER = 256 * 1024  # body bytes buffered before the socket stops being read
NO_HEADERS = Headers()


class BadResponse(Exception):
    """The origin's bytes are not an HTTP/1.1 response we may forward (mapped to UpstreamProtocolError)."""


class Closed(ConnectionError):
    """The connection ended before the exchange did."""


class Connection(asyncio.Protocol):
    """One connection to the origin and the state of its current exchange (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deadlines: Deadlines) -> None:
        self.loop = loop
        self.deadlines = deadlines
        self.deadline = 0.0
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.pooled = False  # idle in the pool: any byte arriving now is a framing error
        self.idle_since = 0.0
        self._writable: asyncio.Future[None] | None = None
        self._paused = False
        self._reset(False)

    def _reset(self, head_request: bool) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.head_request = head_request
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.done = False  # the final response was read to its end
        self.dirty = False  # something made the connection unfit for reuse
        self.error: BaseException | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.waiter: asyncio.Future[None] | None = None
        self.eof_ends_body = False
        self.length: int | None = None  # the final response's Content-Length
        self.headers = NO_HEADERS
        self.received = False  # any byte of this exchange's response arrived

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        if self.done or self.pooled:
            self.dirty = True  # bytes after the response, or while idle: the framing is not to be trusted
            self._close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, BadResponse) as exc:
            if self.done:
                self.dirty = True  # the declared response was complete; what followed is not ours to parse
                self._close()
            else:
                self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.done:
            return
        if self.head_done and self.eof_ends_body and exc is None:
            self.done = True  # RFC 9112 §6.3 item 8: no framing, the body ends when the connection does
            self._wake()
            return
        if exc is None:
            # Closed with part of a response sent is a broken response; with nothing sent, the connection was lost.
            exc = BadResponse("upstream closed mid-response") if self.received else Closed("upstream closed")
        self._fail(exc)

    def pause_writing(self) -> None:
        self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.done:
            raise BadResponse("a second response followed the first")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if not 100 <= status <= 599 or status == 101:
            raise BadResponse(f"status {status} is not one we can forward")
        if self.parser.get_http_version() not in ("1.1", "1.0"):
            raise BadResponse(f"HTTP version {self.parser.get_http_version()} is not HTTP/1.x")
        if status < 200:
            self.raw_headers = []  # an interim response (RFC 9110 §15.2): skipped, never forwarded as final
            return
        self.status = status
        codings = self._read_fields()
        self.head_done = True
        if self.head_request or status in NO_BODY_STATUSES:
            # RFC 9112 §6.3 items 1-2: no body, whatever the fields say. llhttp is not told about HEAD (httptools
            # cannot skip a body), which is why every exchange gets a fresh parser.
            self.done = True
        elif codings:
            if codings.split(",")[-1].strip().lower() != "chunked":
                raise BadResponse("a transfer coding other than a final chunked")  # RFC 9112 §6.1
        elif self.length is None:
            self.eof_ends_body = True  # RFC 9112 §6.3 item 8: read until close, so never reused
            self.dirty = True
        if not self.parser.should_keep_alive():
            self.dirty = True
        self.resume_writing()  # a request body still being written stops here (``Upstream._write_body``)
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.done:
            raise BadResponse("a body after a response that has none")
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status == 0:
            return  # the end of an interim response
        self.done = True
        self._wake()

    # for the client

    def _read_fields(self) -> str:
        """The one pass over the final response's fields: the end-to-end ones become ``headers`` (RFC 9110 §7.6.1:
        fixed hop-by-hop fields and those named in ``Connection`` dropped), ``length`` is noted; returns the
        Transfer-Encoding value (empty when there is none). Names and values are decoded and lower-cased in one
        call each for the whole head (llhttp refuses NUL in a field, so it can separate them)."""
        if not self.raw_headers:
            self.headers = NO_HEADERS
            return ""
        text = b"\x00".join(chain.from_iterable(self.raw_headers)).decode("latin-1").split("\x00")
        names, values = text[0::2], text[1::2]
        lnames = "\x00".join(names).lower().split("\x00")
        if "content-length" in lnames:
            self.length = int(values[lnames.index("content-length")])  # llhttp accepted it: digits, only one
        drop = HOP_BY_HOP.intersection(lnames)
        codings = ""
        if drop:  # usually ``Connection: keep-alive`` alone: a few lines deleted in place
            if "transfer-encoding" in drop:
                codings = ",".join(_values_of("transfer-encoding", lnames, values))
            if "connection" in drop:
                named = ",".join(_values_of("connection", lnames, values))
                drop = drop.union([token.strip().lower() for token in named.split(",")])
            for i in reversed([i for i, lname in enumerate(lnames) if lname in drop]):
                del names[i], values[i], lnames[i]
        self.headers = Headers.with_lowered(tuple(zip(names, values, strict=True)), tuple(lnames))
        return codings

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.dirty = True
        self._wake()
        self._close()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    async def wait(self, timeout: float) -> None:
        """Wait for the parser to make progress (or fail), at most ``timeout`` seconds (see ``Deadlines``)."""
        waiter = self.waiter = self.loop.create_future()
        self.deadline = self.loop.time() + timeout
        waiting = self.deadlines.waiting
        waiting.add(self)
        try:
            await waiter
        finally:
            waiting.discard(self)
            self.waiter = None

    def expire(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError("no data from the upstream within the read timeout"))

    async def write(self, data: bytes) -> None:
        if self.transport is None or self.closed:
            raise self.error if isinstance(self.error, OSError) else Closed("upstream closed the connection")
        self.transport.write(data)
        if self._writable is not None:
            await self._writable

    def take(self) -> bytes:
        """The body bytes received so far (resumes reading when the buffer drained)."""
        if len(self.chunks) == 1:
            data = self.chunks.popleft()
        else:
            data = b"".join(self.chunks)
            self.chunks.clear()
        self.buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    @property
    def reusable(self) -> bool:
        return self.done and not self.dirty and not self.closed and self.error is None and not self.chunks


def _values_of(lname: str, lnames: list[str], values: list[str]) -> list[str]:
    return [value for name, value in zip(lnames, values, strict=True) if name == lname]


class Deadlines:
    """Read timeouts without a timer per wait: a connection waiting for the origin notes its deadline, and one task
    expires the late ones every ``tick`` seconds (a quarter of the read timeout, at most 1 s), so a timeout fires
    up to a tick late. A timer per wait, set and cancelled twice per exchange, cost more than the rest of the wait.
    """

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self.waiting: set[Connection] = set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick)
            now = loop.time()
            for conn in [conn for conn in self.waiting if conn.deadline <= now]:
                conn.expire()


class Pool:
    """At most ``size`` connections; idle ones reused last-in first-out; waiters served in order."""

    def __init__(self, size: int, idle_timeout: float) -> None:
        self.size = size
        self.idle_timeout = idle_timeout
        self.idle: list[Connection] = []
        self.count = 0  # open connections, idle or in use (a slot is taken before connecting)
        self.waiters: deque[asyncio.Future[Connection | None]] = deque()

    def take_idle(self, now: float) -> Connection | None:
        while self.idle:
            conn = self.idle.pop()
            conn.pooled = False
            if not conn.closed and not conn.dirty and now - conn.idle_since < self.idle_timeout:
                conn.reused = True
                return conn
            self.discard(conn, wake=False)
        return None

    def put(self, conn: Connection, now: float) -> None:
        """Give a clean connection back: to the first waiter, else to the idle list."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = now
        conn.pooled = True
        self.idle.append(conn)

    def discard(self, conn: Connection, *, wake: bool = True) -> None:
        """Close ``conn`` and free its slot; a waiter may then open a new connection."""
        conn._close()
        if wake:
            self.discard_slot()
        else:
            self.count -= 1

    def discard_slot(self) -> None:
        """Free one slot and tell the first waiter it may connect."""
        self.count -= 1
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for conn in self.idle:
            conn._close()
        self.count -= len(self.idle)
        self.idle.clear()


PARSE_ERRORS = (httptools.HttpParserError, BadResponse)  # what a broken response raises
