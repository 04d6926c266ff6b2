"""The one HTTP client to the origin: pooling, streaming, timeouts, header hygiene and error mapping.

This is the only module that imports aiohttp. Its defaults suit a browser-like client, not a proxy, so each
one is set here: no cookie jar, no redirects, no decompression, no added Accept/User-Agent/Content-Type, no
300 s total timeout. The request target goes upstream byte for byte; header names keep their case and
duplicates both ways. Every aiohttp and socket error is translated to ``proxy.errors`` in
:func:`_mapped_errors` and nowhere else.

Bodies up to ``read_limit`` are read whole (so the cache can store them); larger ones stream through. An
:class:`UpstreamResponse` must always be released; releasing before the body was fully read closes the
connection instead of draining it.

The pool is bounded twice: aiohttp's connector holds at most ``pool_size`` connections, and a semaphore of the same
size hands out a slot per exchange, waited for at most ``pool_timeout`` (aiohttp's ``connect`` timeout covers the
pool wait and the TCP connect together, so it cannot tell a busy pool from an unreachable origin). Past the wait the
request is shed with :class:`UpstreamBusy` (503), not queued behind hundreds of others.

A response head aiohttp's lenient parser accepts but a client must never see is refused here as
:class:`UpstreamProtocolError` (502): a status outside 100-599, a field name that is not a token (``Content-Length :``).
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType

import aiohttp
import yarl

from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.errors import ConfigError, UpstreamBusy, UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout
from proxy.forwarding import Forwarding
from proxy.messages import Headers, RequestHead, ResponseHead
from proxy.rfc.storable import strip_hop_by_hop

MiB = 1024 * 1024
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_NO_BODY_STATUSES = frozenset({204, 304})
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.1: a field name is a token


@dataclass(frozen=True)
class UpstreamConfig:
    """How to reach the origin.

    ``keepalive_timeout`` (idle pooled connections) stays below common origin idle timeouts (uvicorn: 5 s).
    """

    url: str
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    pool_size: int = 256
    pool_timeout: float = 1.0
    preserve_host: bool = False
    read_limit: int = 8 * MiB
    keepalive_timeout: float = 4.0


@contextmanager
def _mapped_errors(*, in_body: bool = False) -> Iterator[None]:
    """Translate aiohttp and socket errors into the proxy's tree, chained with ``from``.

    Timeouts become :class:`UpstreamTimeout` (504). Before the response head, connection failures (refused,
    reset, DNS, closed without answer) become :class:`UpstreamConnectError`; once the body has started, a lost
    connection means a body cut short, so :class:`UpstreamProtocolError` (RFC 9112 §8: incomplete message).
    """
    try:
        yield
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout(f"upstream timed out: {exc or type(exc).__name__}") from exc
    except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
        raise UpstreamProtocolError(f"upstream broke the response: {exc}") from exc
    except (aiohttp.ClientConnectionError, OSError) as exc:
        if in_body:
            raise UpstreamProtocolError(f"upstream connection lost mid-body: {exc!r}") from exc
        raise UpstreamConnectError(f"upstream unreachable: {exc!r}") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamProtocolError(f"upstream error: {exc!r}") from exc


def check_head(response: aiohttp.ClientResponse) -> None:
    """Refuse a head that cannot be forwarded as it is: RFC 9110 §15 (status 100-599), §5.1 (names are tokens;
    RFC 9112 §5.1 lets a proxy strip whitespace before the colon, but a framing field spelt two ways is how
    parsers disagree, so the response is refused instead).

    An obs-fold (RFC 9112 §5.2) has already been replaced by spaces by aiohttp's lenient parser, which is the other
    choice that section allows; a folded framing field is refused by aiohttp itself.
    """
    if not 100 <= response.status <= 599:
        raise UpstreamProtocolError(f"upstream sent status {response.status}, outside 100-599")
    for name, _value in response.raw_headers:
        if _TOKEN.fullmatch(name) is None:
            raise UpstreamProtocolError(f"upstream sent a malformed field name {name[:40]!r}")


class UpstreamResponse:
    """The origin's answer: a head with hop-by-hop fields removed, and a body read whole or streamed."""

    def __init__(
        self, response: aiohttp.ClientResponse, elapsed: float, free: Callable[[], None] | None = None
    ) -> None:
        self._response = response
        # Gives the pool slot back once the connection is back in aiohttp's pool or closed; also if this response is
        # dropped unreleased (aiohttp then closes the connection when collected), so a slot can never leak for good.
        self._free = weakref.finalize(self, free) if free is not None else None
        if self._free is not None:
            self._free.atexit = False  # nothing to give back once the process ends
        self.head = ResponseHead(response.status, strip_hop_by_hop(Headers.from_raw(response.raw_headers)))
        self.elapsed = elapsed
        self.body: bytes | None = None
        self._prefix = b""
        self._complete = False
        self._released = False

    @property
    def complete(self) -> bool:
        """Whether the whole body was received (read whole, or streamed to its end)."""
        return self._complete

    async def _read(self, limit: int, *, bodyless: bool) -> None:
        """Read the body whole when it is known or found to fit in ``limit``; else leave it to ``stream``."""
        resp = self._response
        length = resp.content_length
        with _mapped_errors(in_body=True):
            if bodyless or (length is not None and length <= limit):
                self.body = b"" if bodyless else await resp.read()
                self._complete = True
                self._free_slot()  # read whole: aiohttp has the connection back
                return
            if length is not None:
                return
            buffered = bytearray()
            while len(buffered) <= limit:
                chunk = await resp.content.readany()
                if not chunk:
                    self.body = bytes(buffered)
                    self._complete = True
                    self._free_slot()
                    return
                buffered += chunk
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
        content = self._response.content
        while True:
            with _mapped_errors(in_body=True):
                chunk = await content.readany()
            if not chunk:
                break
            yield chunk
        self._complete = True
        await self.release()

    async def release(self) -> None:
        """Give the connection back, or close it when the body was not fully read. Idempotent."""
        if self._released:
            return
        self._released = True
        if self._complete:
            self._response.release()
        else:
            self._response.close()
        self._free_slot()

    def _free_slot(self) -> None:
        if self._free is not None:
            self._free()  # a finalizer runs once, whichever comes first

    async def __aenter__(self) -> UpstreamResponse:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()


class Upstream:
    """A pooled aiohttp session to one origin. ``start`` and ``close`` belong to the application lifespan."""

    def __init__(self, config: UpstreamConfig, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self._clock = clock
        base = yarl.URL(config.url)
        if base.scheme not in ("http", "https") or not base.raw_host:
            raise ConfigError(f"upstream URL must be http(s)://host[:port][/prefix], got {config.url!r}")
        self._prefix = str(base.with_query(None).with_fragment(None)).rstrip("/")
        self._forwarding = Forwarding(self._prefix, preserve_host=config.preserve_host)
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(config.pool_size)
        self.on_busy: Callable[[], None] | None = None  # counts a shed request (the metrics' hook)

    async def start(self) -> None:
        if self._session is not None:
            return
        cfg = self.config
        connector = aiohttp.TCPConnector(limit=cfg.pool_size, ttl_dns_cache=60, keepalive_timeout=cfg.keepalive_timeout)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, connect=cfg.connect_timeout, sock_read=cfg.read_timeout),
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            raise_for_status=False,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Upstream.start() was not called")
        return self._session

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
        session = self._require_session()
        limit = self.config.read_limit if read_limit is None else read_limit
        data = body or None
        headers = self._forwarding.headers(request, streamed=isinstance(data, AsyncIterator))
        started = self._clock.monotonic()
        await self._take_slot()
        try:
            with _mapped_errors():
                resp = await session.request(
                    request.method,
                    yarl.URL(self._forwarding.url(request), encoded=True),
                    headers=list(headers),
                    data=data,
                    allow_redirects=False,
                    compress=None,
                )
            try:
                check_head(resp)
            except UpstreamProtocolError:
                resp.close()  # the connection's framing cannot be trusted either
                raise
        except BaseException:
            self._slots.release()
            raise
        response = UpstreamResponse(resp, self._clock.monotonic() - started, self._slots.release)
        bodyless = request.method == "HEAD" or resp.status in _NO_BODY_STATUSES or resp.status < 200
        try:
            await response._read(limit, bodyless=bodyless)
        except BaseException:
            await response.release()
            raise
        return response

    async def _take_slot(self) -> None:
        """A pool slot, waited for at most ``pool_timeout``; past it :class:`UpstreamBusy` (issue 9 §7)."""
        if not self._slots.locked():
            await self._slots.acquire()  # free: taken without suspending
            return
        try:
            async with asyncio.timeout(self.config.pool_timeout):
                await self._slots.acquire()
        except TimeoutError:
            if self.on_busy is not None:
                self.on_busy()
            cfg = self.config
            raise UpstreamBusy(f"all {cfg.pool_size} upstream connections busy for {cfg.pool_timeout} s") from None

    async def ping(self) -> bool:
        """Whether the origin answers at all (any status counts); for readiness probes."""
        session = self._require_session()
        timeout = aiohttp.ClientTimeout(total=self.config.connect_timeout + self.config.read_timeout)
        try:
            with _mapped_errors():
                async with session.head(self._prefix + "/", allow_redirects=False, timeout=timeout):
                    return True
        except (UpstreamConnectError, UpstreamTimeout, UpstreamProtocolError):
            return False
