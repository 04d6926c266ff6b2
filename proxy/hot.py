"""The hit fast path, at the edge: a plain request for a fresh entry, answered from the parsed request head.

Most traffic to a cache is the same few URLs asked again by clients that send no caching fields. For those the
general path (match the rules, hash the key, ``decide``, build an ``Answer``) repeats work whose result cannot change
between two such requests. Here, reading only the ``RequestHead`` the edge parsed once (``proxy.head``):

- the request qualifies only if it is a GET or HEAD carrying none of ``BLOCKERS`` (caching directives, credentials,
  conditionals, a range, a body, the debug switch): then no request-side rule of RFC 9111 applies, and the answer is
  the whole stored response (a ``Range`` request gets its 206 or 416 from the general path, ``proxy.rfc.ranges``);
- ``(method, scheme, host, path, query)`` maps to the matched route and the cache key, memoised until the rules
  change (only routes whose key has no request headers or cookies: otherwise the key depends on more than the URL);
- ``rfc.reuse.plain_hit_age`` gives the same verdict ``decide`` would, for such a request;
- the entry's serving headers were prepared when it was stored (``Entry.wire_headers``).

Anything else, a miss included, returns a ``Lookup`` that hands what was already done to the general path.

Memory: every memo here is bounded. The prepared messages of a hit hold the entry's body, so they are dropped as soon
as the memory store removes the entry (``MemoryStorage.watch_removals``) and, for stores that cannot say so, bounded
in bytes: nothing memoised here outlives the store's copy of an entry by more than ``PREPARED_BYTES``.
"""

from __future__ import annotations

import http
import math
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NamedTuple

from proxy.cache.keys import primary_key
from proxy.cache.service import CacheService, Lookup
from proxy.clock import Clock
from proxy.messages import CACHEABLE_METHODS, Entry, RequestHead
from proxy.rfc.age import age_header_value
from proxy.rfc.reuse import plain_hit_age
from proxy.rules.model import Route, Rules
from proxy.storage.abilities import InstantLookup, WatchingRemovals
from proxy.storage.base import Storage

BLOCKERS = frozenset(
    {
        "cache-control",
        "pragma",
        "authorization",
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "if-range",
        "range",  # RFC 9110 §14: answered with 206/416 by the full path (proxy.rfc.ranges)
        "cache-debug",
        "content-length",
        "transfer-encoding",
    }
)
MEMO_LIMIT = 4_096  # route-and-key memo and status lines: entries (about 450 bytes each)
PREPARED_LIMIT = 1_024  # prepared hit messages: entries
PREPARED_BYTES = 8 * 1024 * 1024  # prepared hit messages: body bytes


class Hit(NamedTuple):
    """A fresh hit the hot path sent: what the observer needs to count and log it."""

    route: str
    status: int
    sent: int
    key: str = ""  # the cache key, for the access log (``cacheproxy simulate`` replays it)


Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]


class Prepared(NamedTuple):
    entry: Entry
    seconds: int
    ttl: int
    head_only: bool
    start: Message
    body: Message
    wire: bytes | None  # the status line and fields as HTTP/1.1 bytes (``proxy.edgehit``); None: ASGI only


class HotPath:
    def __init__(self, service: CacheService, clock: Clock) -> None:
        self.service = service
        self.clock = clock
        self._rules: Rules | None = None
        self._keys: dict[tuple[str, str, str, str, str], tuple[Route, str, Storage] | None] = {}
        self._status_lines: dict[int, bytes] = {}
        self._prepared: OrderedDict[str, Prepared] = OrderedDict()
        self._prepared_bytes = 0
        stores = {id(s): s for s in service.stores.values()}
        self._instant = {key: store for key, store in stores.items() if isinstance(store, InstantLookup)}
        for store in stores.values():
            if isinstance(store, WatchingRemovals):
                store.watch_removals(self.forget)

    def forget(self, key: str) -> None:
        """The store removed (evicted, purged, replaced, expired) an entry of ``key``: drop what refers to it."""
        found = self._prepared.pop(key, None)
        if found is not None:
            self._prepared_bytes -= len(found.entry.body)

    async def serve(self, request: RequestHead, send: Send) -> Hit | Lookup | None:
        """Send a fresh hit and say so; else a ``Lookup`` (or ``None``) for the general path to carry on with."""
        found = self._plain(request)
        if found is None:
            return None
        route, key, store = found
        instant = self._instant.get(id(store))  # a memory store answers without a coroutine
        candidates = instant.get_now(key) if instant is not None else await self.service.lookup(store, key)
        hit = self._fresh(request, route, key, candidates)
        if hit is None:
            return Lookup(route, key, candidates)
        await send(hit[1].start)
        await send(hit[1].body)
        return hit[0]

    def serve_now(self, request: RequestHead) -> tuple[Hit, bytes, bytes] | None:
        """``serve`` without a coroutine, for the server protocol (``proxy.edgehit``): the hit as the response head
        in HTTP/1.1 bytes and the body to write after it, when the entry is in a store that answers at once and its
        head can be written as it is; else ``None`` (the general path answers, as ``serve`` would)."""
        found = self._plain(request)
        if found is None:
            return None
        route, key, store = found
        instant = self._instant.get(id(store))
        hit = None if instant is None else self._fresh(request, route, key, instant.get_now(key))
        if hit is None or hit[1].wire is None:
            return None
        return hit[0], hit[1].wire, hit[1].body["body"]

    def _fresh(
        self, request: RequestHead, route: Route, key: str, candidates: list[Entry]
    ) -> tuple[Hit, Prepared] | None:
        """The hit and its prepared messages when ``candidates`` hold one entry a plain request may be served fresh."""
        age = plain_hit_age(candidates, self.clock.now())
        if age is None:
            return None
        entry = candidates[0]
        prepared = self._prepared_for(key, entry, age, request.method == "HEAD")
        return Hit(route.name, entry.head.status, len(prepared.body["body"]), key), prepared

    def _plain(self, request: RequestHead) -> tuple[Route, str, Storage] | None:
        """The route, key and store of a plain request (see the module docstring) no fetch is running for."""
        if request.method not in CACHEABLE_METHODS:
            return None
        if not BLOCKERS.isdisjoint(request.headers.names()):
            return None
        found = self._route_and_key(request)
        if found is None or self.service.coalescer.current(found[1]) is not None:
            return None  # a fetch is running: the general path waits for it
        return found

    def _prepared_for(self, key: str, entry: Entry, age: float, head_only: bool) -> Prepared:
        """The messages of a hit, reused while the entry, its whole-second age and ``ttl`` stay the same (uvicorn
        only reads them): under load most hits in a second share one pair.
        """
        seconds = int(age)
        ttl = math.floor(entry.freshness - age)
        found = self._prepared.get(key)
        if found is not None and found.entry is entry and found[1:4] == (seconds, ttl, head_only):
            return found
        age_field = (b"age", age_header_value(seconds).encode())
        headers = [*entry.wire_headers, age_field, (b"cache-status", self._hit_line(ttl))]
        status = entry.head.status
        start: Message = {"type": "http.response.start", "status": status, "headers": headers}
        body: Message = {"type": "http.response.body", "body": b"" if head_only else entry.body}
        prepared = Prepared(entry, seconds, ttl, head_only, start, body, wire_head(status, headers, len(entry.body)))
        self.forget(key)
        size = len(entry.body)
        if size <= PREPARED_BYTES:
            while self._prepared and (
                len(self._prepared) >= PREPARED_LIMIT or self._prepared_bytes + size > PREPARED_BYTES
            ):
                self.forget(next(iter(self._prepared)))
            self._prepared[key] = prepared
            self._prepared_bytes += size
        return prepared

    def _route_and_key(self, request: RequestHead) -> tuple[Route, str, Storage] | None:
        rules = self.service.rules.current
        if rules is not self._rules:
            self._keys.clear()
            self._rules = rules
        memo = (request.method, request.scheme, request.host, request.path, request.query)
        try:
            return self._keys[memo]
        except KeyError:
            pass
        route = rules.match(request.method, request.host, request.path)
        found = None
        if not (route.bypass or route.key.headers or route.key.cookies):
            found = (route, primary_key(request, route), self.service.store_for(route))
        if len(self._keys) >= MEMO_LIMIT:
            self._keys.clear()
        self._keys[memo] = found
        return found

    def _hit_line(self, seconds: int) -> bytes:
        line = self._status_lines.get(seconds)
        if line is None:
            if len(self._status_lines) >= MEMO_LIMIT:
                self._status_lines.clear()
            line = self._status_lines[seconds] = self.service.replies.status(hit=True, ttl=seconds).encode("latin-1")
        return line


_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.1 token
_FIELD_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # what uvicorn refuses in a value
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})


def wire_head(status: int, headers: list[tuple[bytes, bytes]], length: int) -> bytes | None:
    """The response head as uvicorn would write it for these ASGI headers on a keep-alive connection, or ``None``
    when only uvicorn should write it: a field it would refuse, framing other than one ``Content-Length`` equal to
    the body's ``length``, or a ``Connection`` field (it ends the connection).
    """
    if not 100 <= status < 600:
        return None
    lines = [f"HTTP/1.1 {status} {_phrase(status)}\r\n".encode("latin-1")]
    lengths = 0
    for name, value in headers:
        if _FIELD_NAME.fullmatch(name) is None or _FIELD_VALUE_BAD.search(value) is not None:
            return None
        name = name.lower()  # as uvicorn writes it
        if name in _FRAMING:
            if name != b"content-length" or value.strip() != str(length).encode():
                return None
            lengths += 1
        lines.append(b"%s: %s\r\n" % (name, value))
    if lengths != 1:
        return None
    lines.append(b"\r\n")
    return b"".join(lines)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""
