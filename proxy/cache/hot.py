"""The hit fast path: a plain request for a fresh entry, answered straight from the ASGI scope.

Most traffic to a cache is the same few URLs asked again by clients that send no caching fields. For those the
general path (decode every header, match the rules, hash the key, ``decide``, build an ``Answer``) repeats work whose
result cannot change between two such requests. Here:

- the request qualifies only if it is a GET or HEAD whose raw header names include none of ``BLOCKERS`` (caching
  directives, credentials, conditionals, a body, the debug switch): then no request-side rule of RFC 9111 applies;
- ``(method, scheme, host, raw path, query)`` maps to the matched route and the cache key, memoised until the rules
  change (only routes whose key has no request headers or cookies: otherwise the key depends on more than the URL);
- ``rfc.reuse.plain_hit_age`` gives the same verdict ``decide`` would, for such a request;
- the entry's serving headers were prepared when it was stored (``Entry.wire_headers``).

Anything else, a miss included, returns a ``Lookup`` that hands what was already done to the general path.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NamedTuple

from proxy.cache.keys import primary_key
from proxy.cache.service import CacheService, Lookup
from proxy.clock import Clock
from proxy.messages import Entry, RequestHead
from proxy.rfc.age import age_header_value
from proxy.rfc.reuse import plain_hit_age
from proxy.rules.model import Route, Rules
from proxy.storage.base import Storage
from proxy.storage.memory import MemoryStorage

BLOCKERS = frozenset(
    {
        b"cache-control",
        b"pragma",
        b"authorization",
        b"if-none-match",
        b"if-modified-since",
        b"if-match",
        b"if-unmodified-since",
        b"if-range",
        b"range",  # RFC 9110 §14: answered with 206/416 by the full path (proxy.rfc.ranges)
        b"cache-debug",
        b"content-length",
        b"transfer-encoding",
    }
)
MEMO_LIMIT = 10_000


class Hit(NamedTuple):
    """A fresh hit the hot path sent: what the observer needs to count and log it."""

    route: str
    status: int
    sent: int
    key: str = ""  # the cache key, for the access log (``cacheproxy simulate`` replays it)


Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]


class HotPath:
    def __init__(
        self, service: CacheService, clock: Clock, to_request: Callable[[MutableMapping[str, Any]], RequestHead]
    ) -> None:
        self.service = service
        self.clock = clock
        self.to_request = to_request  # the edge's scope conversion, for the first request of each URL
        self._rules: Rules | None = None
        self._keys: dict[tuple[str, str, bytes, bytes, bytes], tuple[Route, str, Storage] | None] = {}
        self._status_lines: dict[int, bytes] = {}
        self._prepared: dict[str, tuple[Entry, int, int, bool, Message, Message]] = {}

    async def serve(self, scope: MutableMapping[str, Any], send: Send) -> Hit | Lookup | None:
        """Send a fresh hit and say so; else a ``Lookup`` (or ``None``) for the general path to carry on with."""
        method = scope["method"]
        if method != "GET" and method != "HEAD":
            return None
        host = b""
        for name, value in scope["headers"]:
            if name in BLOCKERS:
                return None
            if name == b"host":
                host = value
        found = self._route_and_key(scope, host)
        if found is None:
            return None
        route, key, store = found
        service = self.service
        if service.coalescer.current(key) is not None:
            return None  # a fetch is running: the general path waits for it
        if isinstance(store, MemoryStorage):
            candidates = store.get_now(key)
        else:
            candidates = await service.lookup(store, key)
        age = plain_hit_age(candidates, self.clock.now())
        if age is None:
            return Lookup(route, key, candidates)
        entry = candidates[0]
        start, body = self._messages(key, entry, age, method == "HEAD")
        await send(start)
        await send(body)
        return Hit(route.name, entry.head.status, len(body["body"]), key)

    def _messages(self, key: str, entry: Entry, age: float, head_only: bool) -> tuple[Message, Message]:
        """The two ASGI messages of a hit, reused while the entry, its whole-second age and ``ttl`` stay the same
        (uvicorn only reads them): under load most hits in a second share one pair.
        """
        seconds = int(age)
        ttl = math.floor(entry.freshness - age)
        found = self._prepared.get(key)
        if found is not None and found[0] is entry and found[1:4] == (seconds, ttl, head_only):
            return found[4], found[5]
        age_field = (b"age", age_header_value(seconds).encode())
        headers = [*entry.wire_headers, age_field, (b"cache-status", self._hit_line(ttl))]
        start: Message = {"type": "http.response.start", "status": entry.head.status, "headers": headers}
        body: Message = {"type": "http.response.body", "body": b"" if head_only else entry.body}
        if len(self._prepared) >= MEMO_LIMIT:
            self._prepared.clear()
        self._prepared[key] = (entry, seconds, ttl, head_only, start, body)
        return start, body

    def _route_and_key(self, scope: MutableMapping[str, Any], host: bytes) -> tuple[Route, str, Storage] | None:
        rules = self.service.rules.current
        if rules is not self._rules:
            self._keys.clear()
            self._rules = rules
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("latin-1")
        memo = (scope["method"], scope.get("scheme", "http"), host, raw_path, scope.get("query_string", b""))
        try:
            return self._keys[memo]
        except KeyError:
            pass
        request = self.to_request(scope)
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
