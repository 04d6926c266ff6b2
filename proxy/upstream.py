"""The one HTTP client to the origin (it implements the origin port): HTTP/1.1 on asyncio, see ``proxy.http1``.

``Upstream.send`` takes a connection from the pool (an idle one, last in first out; a new one while fewer than
``pool_size`` are open; else it waits at most ``pool_timeout`` for one and then raises :class:`UpstreamBusy`), writes
the request head (the target and fields ``proxy.forwarding`` chose, plus ``Host`` and the body's framing) and the
body (with its ``Content-Length``, or chunked), waits for the final response head and reads the body whole when it
fits in ``read_limit``; larger bodies are streamed. An :class:`UpstreamResponse` must always be released: a
connection goes back to the pool only after a response that ended cleanly, anything else closes it.

llhttp is strict by default: both ``Content-Length`` and ``Transfer-Encoding``, a duplicate or malformed length,
bare LF, obs-fold, invalid field characters and bad chunk sizes are parse errors; ``proxy.http1`` adds its own refusals.
Every such failure, socket and TLS error and timeout is translated to ``proxy.errors`` in :class:`_mapped_errors` and
nowhere else. Like a proxy should, the client keeps no cookies, follows no redirects, undoes no content coding and adds
no fields beyond ``Host`` and the body's framing.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.errors import (
    ConfigError,
    UpstreamBusy,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from proxy.forwarding import Forwarding, wire
from proxy.http1 import PARSE_ERRORS, Connection, Deadlines, Pool
from proxy.messages import Headers, RequestHead, ResponseHead

MiB = 1024 * 1024
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})  # retried once when a reused connection was already closed
_LENGTH_METHODS = frozenset({"POST", "PUT", "PATCH"})  # send Content-Length: 0 when they carry no body
_SMALL_BODY = 64 * 1024  # request bodies up to this size are sent with the head in one write


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
        if isinstance(exc, PARSE_ERRORS):
            raise UpstreamProtocolError(f"upstream broke the response: {exc}") from exc
        if isinstance(exc, OSError):
            if self.in_body:
                raise UpstreamProtocolError(f"upstream connection lost mid-body: {exc!r}") from exc
            raise UpstreamConnectError(f"upstream unreachable: {exc!r}") from exc


class UpstreamResponse:
    """The origin's answer: a head with hop-by-hop fields removed, and a body read whole or streamed."""

    def __init__(self, upstream: Upstream, conn: Connection, elapsed: float) -> None:
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
            self._release()
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
                    self._release()
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
        self._release()

    async def release(self) -> None:
        """Give the connection back, or close it when the body was not fully read. Idempotent."""
        self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._upstream._give_back(self._conn)

    def __del__(self) -> None:
        # Dropped unreleased: the connection is closed and its pool slot freed, so a slot can never leak for good.
        if not self._released:
            self._released = True
            with suppress(Exception):  # at interpreter exit the loop may be gone
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
        self._host_line = f"Host: {parts.netloc.rpartition('@')[2]}\r\n"  # the upstream's authority (RFC 9110 §7.2)
        # Forwarding takes the configured URL apart: its origin never carries userinfo, whose credentials it sends
        # as this origin's ``Authorization: Basic`` (RFC 7617) when the client sent none.
        self._forwarding = Forwarding(config.url, preserve_host=config.preserve_host)
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._tls = ssl.create_default_context(cafile=config.ca_file)
        self._pool: Pool | None = None
        self._deadlines = Deadlines(min(1.0, config.read_timeout / 4))
        self._sweeper: asyncio.Task[None] | None = None
        self.on_busy: Callable[[], None] | None = None  # counts a shed request (the metrics' hook)

    async def start(self) -> None:
        if self._pool is None:
            self._pool = Pool(self.config.pool_size, self.config.keepalive_timeout)
            self._sweeper = asyncio.create_task(self._deadlines.run())

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)

    def _require_pool(self) -> Pool:
        if self._pool is None:
            raise RuntimeError("Upstream.start() was not called")
        return self._pool

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.config.connect_timeout):
            _, conn = await loop.create_connection(
                lambda: Connection(loop, self._deadlines),
                self._host,
                self._port,
                ssl=self._tls,
                server_hostname=self._host if self._tls is not None else None,
            )
        return conn

    async def _acquire(self, pool: Pool, now: float) -> Connection:
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
            waiter: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
            pool.waiters.append(waiter)
            try:
                async with asyncio.timeout(self.config.pool_timeout):
                    handed = await waiter
            except BaseException as exc:
                self._pass_on(pool, waiter)
                if isinstance(exc, TimeoutError):
                    if self.on_busy is not None:
                        self.on_busy()
                    raise UpstreamBusy(
                        f"all {pool.size} upstream connections stayed busy for {self.config.pool_timeout} s"
                    ) from exc
                raise
            if handed is not None:
                handed.reused = True
                return handed

    def _pass_on(self, pool: Pool, waiter: asyncio.Future[Connection | None]) -> None:
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

    def _give_back(self, conn: Connection) -> None:
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
        forwarding = self._forwarding
        fields = forwarding.fields(request, streamed=streamed)
        head = [f"{request.method} {forwarding.target(request)} HTTP/1.1\r\n"]
        if not forwarding.preserve_host:  # else Forwarding sent the client's Host (the only way one is forwarded)
            head.append(self._host_line)
        head += [f"{name}: {value}\r\n" for name, value in fields]
        if streamed:
            if not any(name.lower() == "content-length" for name, _ in fields):
                head.append("Transfer-Encoding: chunked\r\n")
        elif isinstance(body, bytes) and body:
            head.append(f"Content-Length: {len(body)}\r\n")
        elif request.method in _LENGTH_METHODS:
            head.append("Content-Length: 0\r\n")
        head.append("\r\n")
        text = "".join(head)
        if not text.isascii():  # the received bytes go out as they came: ``wire`` the target, names and values
            head[0] = f"{request.method} {forwarding.base_path}{wire(request.target)} HTTP/1.1\r\n"
            first = 1 if forwarding.preserve_host else 2
            head[first : first + len(fields)] = [f"{wire(name)}: {wire(value)}\r\n" for name, value in fields]
            text = "".join(head)
        return text.encode("utf-8")

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
        self, conn: Connection, request: RequestHead, head: bytes, body: bytes | AsyncIterator[bytes] | None
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

    async def _write_body(self, conn: Connection, body: bytes | AsyncIterator[bytes], *, chunked: bool) -> None:
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
