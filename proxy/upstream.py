"""The one HTTP client to the origin: HTTP/1.1 on asyncio with llhttp (``httptools``) parsing the responses.

Theory of operation. A :class:`_Connection` is an asyncio protocol that owns one TCP (or TLS) connection and one
``httptools.HttpResponseParser`` per exchange. ``Upstream.send`` takes a connection from the pool, writes the request
head (and the body, with ``Content-Length`` or chunked), waits for the final response head (1xx interim responses are
skipped) and reads the body whole when it fits in ``read_limit``; larger bodies are streamed with backpressure (the
socket stops being read while more than ``_HIGH_WATER`` bytes wait for the consumer).

A connection goes back to the pool only when its exchange ended cleanly: the whole response was read, the origin did
not ask to close, and nothing arrived after the response (``Content-Length: 10`` followed by 36 bytes delivers the 10
declared bytes and closes the connection, RFC 9112 §6.3). Anything else closes it. The pool is LIFO (the most recently
used connection is the one least likely to have been closed by the origin's idle timeout), bounded by ``pool_size``;
a request that cannot get a connection within ``pool_timeout`` raises :class:`UpstreamBusy`.

llhttp is strict by default: both ``Content-Length`` and ``Transfer-Encoding``, a duplicate or malformed length,
bare LF, obs-fold, invalid field characters and bad chunk sizes are parse errors. On top of it this module refuses a
status outside 100-599, ``101`` (we never ask to upgrade), a version other than HTTP/1.0 or 1.1 and transfer codings
other than a final ``chunked``. Every such failure, socket error and timeout is translated to ``proxy.errors`` in
:func:`_mapped_errors` and nowhere else. Like a proxy should, the client keeps no cookies, follows no redirects, undoes
no content coding and adds no fields beyond ``Host`` and the body's framing.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import cast
from urllib.parse import unquote, urlsplit

import httptools

from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.errors import (
    ConfigError,
    UpstreamBusy,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from proxy.forwarding import Forwarding
from proxy.messages import Headers, RequestHead, ResponseHead
from proxy.rfc.storable import HOP_BY_HOP

MiB = 1024 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})
_HIGH_WATER = 256 * 1024  # body bytes buffered before the socket stops being read
_LOW_WATER = 64 * 1024
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})  # retried once when a reused connection was already closed
_LENGTH_METHODS = frozenset({"POST", "PUT", "PATCH"})  # send Content-Length: 0 when they carry no body
_SMALL_BODY = 64 * 1024  # request bodies up to this size are sent with the head in one write
_HOP_BY_HOP = frozenset(name.encode("ascii") for name in HOP_BY_HOP)
_NO_HEADERS = Headers()


@dataclass(frozen=True)
class UpstreamConfig:
    """How to reach the origin.

    ``keepalive_timeout`` (idle pooled connections) stays below common origin idle timeouts (uvicorn: 5 s).
    ``pool_timeout`` bounds the wait for a connection when all ``pool_size`` are busy. ``ca_file`` verifies an
    ``https://`` origin against a private CA instead of the system's.
    """

    url: str
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    pool_size: int = 256
    preserve_host: bool = False
    read_limit: int = 8 * MiB
    keepalive_timeout: float = 4.0
    pool_timeout: float = 1.0
    ca_file: str | None = None


class _BadResponse(Exception):
    """The origin's bytes are not an HTTP/1.1 response we may forward (mapped to UpstreamProtocolError)."""


class _Closed(ConnectionError):
    """The connection ended before the exchange did."""


class _mapped_errors:  # lower-case: used like a function, ``with _mapped_errors(): ...``
    """Translate parser, TLS and socket errors into the proxy's tree, chained with ``from``.

    Timeouts become :class:`UpstreamTimeout` (504). Before the response head, connection failures (refused,
    reset, DNS, TLS, closed without answer) become :class:`UpstreamConnectError`; once the body has started, a lost
    connection means a body cut short, so :class:`UpstreamProtocolError` (RFC 9112 §8: incomplete message).
    A class rather than ``@contextmanager``: it wraps every exchange, and a generator per use costs more.
    """

    __slots__ = ("in_body",)

    def __init__(self, *, in_body: bool = False) -> None:
        self.in_body = in_body

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None:
            return
        if isinstance(exc, TimeoutError):
            raise UpstreamTimeout(f"upstream timed out: {exc or type(exc).__name__}") from exc
        if isinstance(exc, (httptools.HttpParserError, _BadResponse)):
            raise UpstreamProtocolError(f"upstream broke the response: {exc}") from exc
        if isinstance(exc, OSError):
            if self.in_body:
                raise UpstreamProtocolError(f"upstream connection lost mid-body: {exc!r}") from exc
            raise UpstreamConnectError(f"upstream unreachable: {exc!r}") from exc


class _Connection(asyncio.Protocol):
    """One connection to the origin and the state of its current exchange (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deadlines: _Deadlines) -> None:
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
        self.headers = _NO_HEADERS
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
        except (httptools.HttpParserError, _BadResponse) as exc:
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
            exc = _BadResponse("upstream closed mid-response") if self.received else _Closed("upstream closed")
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
            raise _BadResponse("a second response followed the first")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if not 100 <= status <= 599 or status == 101:
            raise _BadResponse(f"status {status} is not one we can forward")
        if self.parser.get_http_version() not in ("1.1", "1.0"):
            raise _BadResponse(f"HTTP version {self.parser.get_http_version()} is not HTTP/1.x")
        if status < 200:
            self.raw_headers = []  # an interim response (RFC 9110 §15.2): skipped, never forwarded as final
            return
        self.status = status
        codings = self._read_fields()
        self.head_done = True
        if self.head_request or status in _NO_BODY_STATUSES:
            # RFC 9112 §6.3 items 1-2: no body, whatever the fields say. llhttp is not told about HEAD (httptools
            # cannot skip a body), which is why every exchange gets a fresh parser.
            self.done = True
        elif codings:
            if codings.split(b",")[-1].strip().lower() != b"chunked":
                raise _BadResponse("a transfer coding other than a final chunked")  # RFC 9112 §6.1
        elif self.length is None:
            self.eof_ends_body = True  # RFC 9112 §6.3 item 8: read until close, so never reused
            self.dirty = True
        if not self.parser.should_keep_alive():
            self.dirty = True
        self.resume_writing()  # a request body still being written stops here (see ``Upstream._write_body``)
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.done:
            raise _BadResponse("a body after a response that has none")
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status == 0:
            return  # the end of an interim response
        self.done = True
        self._wake()

    # for the client

    def _read_fields(self) -> bytes:
        """The one pass over the final response's fields: the end-to-end ones become ``headers`` (RFC 9110 §7.6.1:
        fixed hop-by-hop fields and those named in ``Connection`` dropped), ``length`` is noted; returns the
        Transfer-Encoding value (empty when there is none)."""
        raw = self.raw_headers
        lnames = [name.lower() for name, _ in raw]
        if b"content-length" in lnames:
            self.length = int(raw[lnames.index(b"content-length")][1])  # llhttp accepted it: digits, only one
        drop = _HOP_BY_HOP.intersection(lnames)
        if not drop:
            self.headers = Headers([(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw])
            return b""
        pairs = list(zip(lnames, raw, strict=True))
        codings = b",".join([value for lname, (_, value) in pairs if lname == b"transfer-encoding"])
        if b"connection" in drop:
            named = [value for lname, (_, value) in pairs if lname == b"connection"]
            drop = drop.union(token.strip().lower() for token in b",".join(named).split(b","))
        self.headers = Headers(
            [(name.decode("latin-1"), value.decode("latin-1")) for lname, (name, value) in pairs if lname not in drop]
        )
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
        """Wait for the parser to make progress (or fail), at most ``timeout`` seconds (see ``_Deadlines``)."""
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
            raise self.error if isinstance(self.error, OSError) else _Closed("upstream closed the connection")
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


class _Deadlines:
    """Read timeouts without a timer per wait: a connection waiting for the origin notes its deadline, and one task
    expires the late ones every ``tick`` seconds (a quarter of the read timeout, at most 1 s), so a timeout fires
    up to a tick late. A timer per wait, set and cancelled twice per exchange, cost more than the rest of the wait.
    """

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self.waiting: set[_Connection] = set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick)
            now = loop.time()
            for conn in [conn for conn in self.waiting if conn.deadline <= now]:
                conn.expire()


class _Pool:
    """At most ``size`` connections; idle ones reused last-in first-out; waiters served in order."""

    def __init__(self, size: int, idle_timeout: float) -> None:
        self.size = size
        self.idle_timeout = idle_timeout
        self.idle: list[_Connection] = []
        self.count = 0  # open connections, idle or in use (a slot is taken before connecting)
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()

    def take_idle(self, now: float) -> _Connection | None:
        while self.idle:
            conn = self.idle.pop()
            conn.pooled = False
            if not conn.closed and not conn.dirty and now - conn.idle_since < self.idle_timeout:
                conn.reused = True
                return conn
            self.discard(conn, wake=False)
        return None

    def put(self, conn: _Connection, now: float) -> None:
        """Give a clean connection back: to the first waiter, else to the idle list."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = now
        conn.pooled = True
        self.idle.append(conn)

    def discard(self, conn: _Connection, *, wake: bool = True) -> None:
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


class UpstreamResponse:
    """The origin's answer: a head with hop-by-hop fields removed, and a body read whole or streamed."""

    def __init__(self, upstream: Upstream, conn: _Connection, elapsed: float) -> None:
        self._upstream = upstream
        self._conn = conn
        self.head = ResponseHead(conn.status, conn.headers)
        self.elapsed = elapsed
        self.body: bytes | None = None
        self._prefix = b""
        self._complete = False
        self._released = False

    @property
    def complete(self) -> bool:
        """Whether the whole body was received (read whole, or streamed to its end)."""
        return self._complete

    async def _read(self, limit: int) -> None:
        """Read the body whole when it is known or found to fit in ``limit``; else leave it to ``stream``."""
        conn = self._conn
        if conn.done and conn.buffered <= limit:  # the common case: the whole response came with its head
            self.body = conn.take() if conn.chunks else b""
            self._complete = True
            await self.release()
            return
        length = conn.length
        if length is not None and length > limit:
            return
        buffered = bytearray()
        timeout = self._upstream.config.read_timeout
        with _mapped_errors(in_body=True):
            while len(buffered) <= limit:
                if conn.chunks:
                    buffered += conn.take()
                elif conn.done:
                    self.body = bytes(buffered)
                    self._complete = True
                    await self.release()
                    return
                elif conn.error is not None:
                    raise conn.error
                else:
                    await conn.wait(timeout)
        self._prefix = bytes(buffered)

    async def stream(self) -> AsyncIterator[bytes]:
        """Yield the body in chunks; raise UpstreamProtocolError/UpstreamTimeout if it breaks off.

        Reaching the end releases the connection to the pool; stopping early needs :meth:`release`.
        """
        if self.body is not None:
            if self.body:
                yield self.body
            return
        if self._prefix:
            prefix, self._prefix = self._prefix, b""
            yield prefix
        conn = self._conn
        timeout = self._upstream.config.read_timeout
        while True:
            if conn.chunks:
                yield conn.take()
            elif conn.done:
                break
            elif conn.error is not None:
                with _mapped_errors(in_body=True):
                    raise conn.error
            else:
                with _mapped_errors(in_body=True):
                    await conn.wait(timeout)
        self._complete = True
        await self.release()

    async def release(self) -> None:
        """Give the connection back, or close it when the body was not fully read. Idempotent."""
        if self._released:
            return
        self._released = True
        self._upstream._give_back(self._conn)

    async def __aenter__(self) -> UpstreamResponse:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()


class Upstream:
    """A pool of HTTP/1.1 connections to one origin. ``start`` and ``close`` belong to the application lifespan."""

    def __init__(self, config: UpstreamConfig, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self._clock = clock
        parts = urlsplit(config.url)
        try:
            port = parts.port
        except ValueError as error:
            raise ConfigError(f"upstream URL has a bad port: {config.url!r}") from error
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"upstream URL must be http(s)://host[:port][/prefix], got {config.url!r}")
        self._host = parts.hostname
        self._port = port or (443 if parts.scheme == "https" else 80)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._host_line = f"Host: {parts.netloc.rpartition('@')[2]}\r\n"  # the upstream's authority (RFC 9110 §7.2)
        self._credentials = None
        if parts.username is not None:  # configured userinfo: Basic credentials for the origin (RFC 7617)
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self._credentials = "Basic " + base64.b64encode(pair).decode("ascii")
        self._prefix = (self._origin + parts.path).rstrip("/")
        self._forwarding = Forwarding(self._prefix, preserve_host=config.preserve_host)
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._tls = ssl.create_default_context(cafile=config.ca_file)
        self._pool: _Pool | None = None
        self._deadlines = _Deadlines(min(1.0, config.read_timeout / 4))
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._pool is None:
            self._pool = _Pool(self.config.pool_size, self.config.keepalive_timeout)
            self._sweeper = asyncio.create_task(self._deadlines.run())

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)

    def _require_pool(self) -> _Pool:
        if self._pool is None:
            raise RuntimeError("Upstream.start() was not called")
        return self._pool

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.config.connect_timeout):
            _, conn = await loop.create_connection(
                lambda: _Connection(loop, self._deadlines),
                self._host,
                self._port,
                ssl=self._tls,
                server_hostname=self._host if self._tls is not None else None,
            )
        return conn

    async def _acquire(self, pool: _Pool, now: float) -> _Connection:
        """A connection from the pool: an idle one (LIFO), a new one while under the size, or one freed in time."""
        while True:
            conn = pool.take_idle(now)
            if conn is not None:
                return conn
            if pool.count < pool.size:
                pool.count += 1
                try:
                    with _mapped_errors():
                        return await self._connect()
                except BaseException:
                    pool.count -= 1
                    raise
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            pool.waiters.append(waiter)
            try:
                async with asyncio.timeout(self.config.pool_timeout):
                    handed = await waiter
            except BaseException as exc:
                self._pass_on(pool, waiter)
                if isinstance(exc, TimeoutError):
                    raise UpstreamBusy(
                        f"all {pool.size} upstream connections stayed busy for {self.config.pool_timeout} s"
                    ) from exc
                raise
            if handed is not None:
                handed.reused = True
                return handed

    def _pass_on(self, pool: _Pool, waiter: asyncio.Future[_Connection | None]) -> None:
        """A waiter gave up: a connection (or a free slot) handed to it in the meantime goes to the next one."""
        if not waiter.done():
            waiter.cancel()
        elif not waiter.cancelled():
            handed = waiter.result()
            if handed is not None:
                pool.put(handed, self._clock.monotonic())
            else:
                pool.count += 1
                pool.discard_slot()

    def _give_back(self, conn: _Connection) -> None:
        pool = self._pool
        if pool is None:
            conn._close()
            return
        if conn.reusable:
            pool.put(conn, self._clock.monotonic())
        else:
            pool.discard(conn)

    def _head_bytes(self, request: RequestHead, body: bytes | AsyncIterator[bytes] | None) -> bytes:
        """The request line and fields as sent: the target and fields ``Forwarding`` chose, plus Host and framing."""
        streamed = body is not None and not isinstance(body, bytes)
        target = self._forwarding.url(request)[len(self._origin) :] or "/"
        lines = [f"{request.method} {target} HTTP/1.1\r\n"]
        seen: set[str] = set()
        for name, value in self._forwarding.headers(request, streamed=streamed):
            lines.append(f"{name}: {value}\r\n")
            if name[0] in "HhAaCc":  # the only names looked for below: Host, Authorization, Content-Length
                seen.add(name.lower())
        if "host" not in seen:
            lines.insert(1, self._host_line)
        if self._credentials is not None and "authorization" not in seen:
            lines.append(f"Authorization: {self._credentials}\r\n")
        if streamed:
            if "content-length" not in seen:
                lines.append("Transfer-Encoding: chunked\r\n")
        elif isinstance(body, bytes) and body:
            lines.append(f"Content-Length: {len(body)}\r\n")
        elif request.method in _LENGTH_METHODS:
            lines.append("Content-Length: 0\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("utf-8")  # Forwarding's ``wire`` made the received bytes UTF-8 text

    async def send(
        self,
        request: RequestHead,
        body: bytes | AsyncIterator[bytes] | None = None,
        *,
        read_limit: int | None = None,
    ) -> UpstreamResponse:
        """Send ``request`` upstream and read the head, and the body when it fits in ``read_limit``.

        Redirects are not followed and content codings are not undone (RFC 9110 §7.6: a proxy forwards as is).
        """
        pool = self._require_pool()
        limit = self.config.read_limit if read_limit is None else read_limit
        head = self._head_bytes(request, body or None)
        started = self._clock.monotonic()
        retry = request.method in _IDEMPOTENT and not body
        while True:
            conn = pool.take_idle(started) or await self._acquire(pool, started)
            try:
                await self._exchange(conn, request, head, body or None)
            except UpstreamConnectError:
                pool.discard(conn)
                if retry and conn.reused and not conn.received:
                    retry = False  # the origin closed an idle connection as we reused it: once more, on a new one
                    continue
                raise
            except BaseException:
                pool.discard(conn)
                raise
            break
        response = UpstreamResponse(self, conn, self._clock.monotonic() - started)
        try:
            await response._read(limit)
        except BaseException:
            await response.release()
            raise
        return response

    async def _exchange(
        self, conn: _Connection, request: RequestHead, head: bytes, body: bytes | AsyncIterator[bytes] | None
    ) -> None:
        """Write the request and wait for the final response head."""
        conn._reset(request.method == "HEAD")
        with _mapped_errors():
            if isinstance(body, bytes) and len(body) <= _SMALL_BODY:
                await conn.write(head + body)  # one system call for the whole request
            else:
                await conn.write(head)
                if body:
                    await self._write_body(conn, body, chunked=b"\r\ntransfer-encoding: chunked\r\n" in head.lower())
            timeout = self.config.read_timeout
            while not conn.head_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(timeout)

    async def _write_body(self, conn: _Connection, body: bytes | AsyncIterator[bytes], *, chunked: bool) -> None:
        """Send the request body, chunked (RFC 9112 §7.1) when no Content-Length was given.

        When the origin answers before the body is all sent (a 413, a 401), the rest is not sent and the answer is
        read; the connection is not reused, its request having been cut short (RFC 9112 §9.6).
        """
        try:
            if isinstance(body, bytes):
                await conn.write(body)
                return
            async for chunk in body:
                if conn.head_done:
                    conn.dirty = True
                    return
                if chunk:
                    await conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                if conn.error is not None:
                    raise conn.error
            if chunked and not conn.head_done:
                await conn.write(b"0\r\n\r\n")
        except OSError:
            if not conn.head_done:
                raise
            conn.dirty = True  # the origin answered, then stopped reading: its answer stands

    async def ping(self) -> bool:
        """Whether the origin answers at all (any status counts); for readiness probes."""
        request = RequestHead(method="HEAD", scheme="http", host="", path="/", query="", headers=Headers())
        try:
            async with asyncio.timeout(self.config.connect_timeout + self.config.read_timeout):
                async with await self.send(request):
                    return True
        except (UpstreamConnectError, UpstreamTimeout, UpstreamProtocolError, UpstreamBusy, TimeoutError):
            return False
