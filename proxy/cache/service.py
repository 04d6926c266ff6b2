"""The one driver of the cache: it asks the spec for a decision and performs the I/O the decision calls for.

    handle ─▶ route ─▶ (bypass | unsafe method) ─▶ pass through, invalidate after unsafe methods (RFC 9111 §4.4)
             └▶ key ─▶ store.get ─▶ spec.reuse.decide ─▶ Serve         ─▶ answer from the entry (+ background refresh)
                                                     ├▶ Unsatisfiable ─▶ 504 (only-if-cached)
                                                     └▶ Revalidate / Forward ─▶ single-flight fetch ─▶ store ─▶ answer

Fetching is in ``proxy.cache.fetch``; this module holds the request-level flow.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import assert_never

from proxy.cache.answers import Answer, CacheOutcome, entry_answer, error_answer, response_answer
from proxy.cache.coalesce import Coalescer, Failed, Flight, Lease, Outcome, Shared, run_detached
from proxy.cache.fetch import Exchange, Fetcher, upstream_error_text
from proxy.cache.keys import primary_key
from proxy.clock import Clock
from proxy.errors import StorageError, UpstreamError
from proxy.messages import Entry, RequestHead
from proxy.rules.model import Route
from proxy.rules.reload import RulesHolder
from proxy.spec.age import current_age
from proxy.spec.cache_status import cache_status
from proxy.spec.decisions import Decision, Forward, Fwd, Reason, Revalidate, Serve, Unsatisfiable
from proxy.spec.directives import response_directives
from proxy.spec.invalidation import invalidated_urls
from proxy.spec.reuse import decide, ttl_remaining
from proxy.spec.vary import vary_matches
from proxy.storage.base import Storage
from proxy.upstream import Upstream

log = logging.getLogger("cacheproxy.service")

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
# A background refresh (stale-while-revalidate) never runs longer than this.
REFRESH_LIMIT = 60.0


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the hot path (``proxy.cache.hot``) found before handing over: the route, the key, the candidates."""

    route: Route
    key: str
    candidates: list[Entry]


class CacheService:
    def __init__(
        self,
        *,
        rules: RulesHolder,
        stores: Mapping[str, Storage],
        default_store: str,
        upstream: Upstream,
        clock: Clock,
        lease: Lease | None = None,
        name: str = "cacheproxy",
    ) -> None:
        self.rules = rules
        self.stores = stores
        self.default_store = default_store
        self.clock = clock
        self.name = name
        self.coalescer = Coalescer(clock)
        self._lookups: dict[str, asyncio.Future[list[Entry]]] = {}
        self.tasks: set[asyncio.Task[Exchange]] = set()
        self.fetcher = Fetcher(upstream=upstream, clock=clock, coalescer=self.coalescer, lease=lease)

    def store_for(self, route: Route) -> Storage:
        return self.stores.get(route.store or self.default_store) or self.stores[self.default_store]

    def status(self, **params: object) -> str:
        return cache_status(self.name, **params)  # type: ignore[arg-type]

    async def handle(
        self, request: RequestHead, body: AsyncIterator[bytes] | None, prior: Lookup | None = None
    ) -> Answer:
        """Answer ``request``. ``prior``: the route, key and candidates the hot path already found for it."""
        if prior is not None:
            route = prior.route
        else:
            route = self.rules.current.match(request.method, request.host, request.path)
        if route.bypass:
            answer = await self._pass(request, body, route, Fwd.BYPASS, Reason.RULE)
        elif request.method not in CACHEABLE_METHODS:
            answer = await self._pass(request, body, route, Fwd.METHOD, Reason.METHOD)
        else:
            answer = await self._cacheable(request, body, route, prior)
        answer.route = route.name
        return answer

    async def _cacheable(
        self, request: RequestHead, body: AsyncIterator[bytes] | None, route: Route, prior: Lookup | None
    ) -> Answer:
        key = prior.key if prior is not None else primary_key(request, route)
        store = self.store_for(route)
        if prior is not None:
            early = None
            candidates = prior.candidates
        else:
            early = await self._join_before_lookup(request, body, route, key)
            if isinstance(early, Answer):
                return early
            candidates = await self.lookup(store, key)
        decision = decide(request, candidates, self.clock.now())
        if isinstance(early, Failed) and early.shared and isinstance(decision, Revalidate | Forward):
            answer = self._failed(request, decision, early.error)
        else:
            answer = await self._act(request, body, route, key, store, decision)
        answer.extra["key"] = key
        return answer

    async def lookup(self, store: Storage, key: str) -> list[Entry]:
        """``store.get``, one at a time per key: concurrent lookups of a hot key share one round trip to Redis.

        The memory store answers without a round trip, so it is asked directly.
        """
        if store.name == "memory":
            return await store.get(key)
        pending = self._lookups.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[list[Entry]] = asyncio.get_running_loop().create_future()
        self._lookups[key] = future
        found: list[Entry] = []
        try:
            found = await store.get(key)
        except StorageError:
            pass
        finally:
            future.set_result(found)  # also when this caller was cancelled: the others get a miss, not an error
            del self._lookups[key]
        return found

    async def _join_before_lookup(
        self, request: RequestHead, body: AsyncIterator[bytes] | None, route: Route, key: str
    ) -> Answer | Outcome | None:
        """While a fetch for ``key`` is in flight, wait for it before looking in the store.

        A cold or expired hot key then costs the store one lookup per process, not one per waiting request (which
        would stampede Redis instead of the origin). An outcome that does not suit this request (another variant,
        an error) is handed back, and the request carries on with its own lookup.
        """
        flight = self.coalescer.current(key)
        if flight is None or flight.background or not route.coalesce or body is not None:
            return None
        outcome = await flight.wait(route.coalesce_timeout)
        if isinstance(outcome, Shared) and self._may_share(request, outcome.entry):
            return self._collapsed(request, outcome.entry)
        return outcome

    def _collapsed(self, request: RequestHead, entry: Entry) -> Answer:
        self.coalescer.collapsed += 1
        age = current_age(entry, self.clock.now())
        return entry_answer(request, entry, age, self.status(fwd=Fwd.MISS, collapsed=True), CacheOutcome.COLLAPSED)

    async def _act(
        self,
        request: RequestHead,
        body: AsyncIterator[bytes] | None,
        route: Route,
        key: str,
        store: Storage,
        decision: Decision,
    ) -> Answer:
        match decision:
            case Serve():
                return self._serve(request, route, key, store, decision)
            case Unsatisfiable():
                line = self.status(fwd=Fwd.MISS, detail=decision.reason)
                return error_answer(504, "504 Gateway Timeout: not in cache (only-if-cached)", line, decision.reason)
            case Revalidate() | Forward():
                return await self._fetch(request, body, route, key, store, decision)
            case _:
                assert_never(decision)

    def _serve(self, request: RequestHead, route: Route, key: str, store: Storage, decision: Serve) -> Answer:
        entry = decision.entry
        now = self.clock.now()
        ttl = ttl_remaining(entry, now)
        if decision.reason is Reason.FRESH:
            return entry_answer(request, entry, decision.age, self.status(hit=True, ttl=ttl), CacheOutcome.HIT)
        if decision.revalidate:
            self._refresh_in_background(request, route, key, store, entry)
        line = self.status(hit=True, ttl=ttl, detail=decision.reason)
        return entry_answer(request, entry, decision.age, line, CacheOutcome.STALE, decision.reason)

    async def _fetch(
        self,
        request: RequestHead,
        body: AsyncIterator[bytes] | None,
        route: Route,
        key: str,
        store: Storage,
        decision: Revalidate | Forward,
    ) -> Answer:
        """Go upstream for ``decision``, as the leader of a flight or, behind one, as a follower."""
        if not route.coalesce or body is not None or self.coalescer.is_unshared(key):
            return await self._exchange_answer(request, body, route, key, store, decision)
        flight, leads = self.coalescer.join(key)
        if leads:
            return await self._exchange_answer(request, None, route, key, store, decision, flight=flight)
        outcome = await flight.wait(route.coalesce_timeout)
        match outcome:
            case Shared(entry) if self._may_share(request, entry):
                return self._collapsed(request, entry)
            case Failed(error, shared=True):
                return self._failed(request, decision, error)
            case None:
                answer = await self._exchange_answer(request, None, route, key, store, decision, store_it=False)
                answer.detail = answer.detail or Reason.COALESCE_TIMEOUT
                return answer
            case _:
                # Not for this client (private, Set-Cookie, Vary or Authorization mismatch, too large): go at once.
                return await self._exchange_answer(request, None, route, key, store, decision)

    @staticmethod
    def _may_share(request: RequestHead, entry: Entry) -> bool:
        """RFC 9111 §4.1 and §3.5: a follower gets the leader's entry only if it would be served it from the store."""
        if entry.vary and not vary_matches(entry.vary, request):
            return False
        return entry.authorized or "authorization" not in request.headers

    async def _exchange_answer(
        self,
        request: RequestHead,
        body: AsyncIterator[bytes] | None,
        route: Route,
        key: str,
        store: Storage,
        decision: Revalidate | Forward,
        *,
        flight: Flight | None = None,
        store_it: bool = True,
    ) -> Answer:
        """Run the exchange (detached from this client when others wait on it) and answer this client."""
        fwd = decision.fwd if isinstance(decision, Forward) else Fwd.STALE

        async def work() -> Exchange:
            return await self.fetcher.exchange(request, body, route, key, store, decision, flight, store_it)

        try:
            exchange = await run_detached(work, self.tasks) if flight is not None else await work()
        except UpstreamError as error:
            return self._failed(request, decision, error)
        if exchange.fallback_ok and (stale := _fallback(decision)) is not None:
            await exchange.close()
            return self._stale_if_error(request, stale, fwd, exchange.upstream_status)
        return self._exchange_to_answer(request, exchange, fwd)

    def _exchange_to_answer(self, request: RequestHead, exchange: Exchange, fwd: Fwd) -> Answer:
        if exchange.collapsed and exchange.entry is not None:
            return self._collapsed(request, exchange.entry)
        fwd_status = exchange.upstream_status if fwd is Fwd.STALE else None
        line = self.status(fwd=fwd, fwd_status=fwd_status, stored=exchange.stored, detail=exchange.detail or None)
        if exchange.revalidated and exchange.entry is not None:
            age = current_age(exchange.entry, self.clock.now())
            answer = entry_answer(request, exchange.entry, age, line, CacheOutcome.REVALIDATED, exchange.detail)
        else:
            answer = response_answer(
                request, exchange.head, exchange.body, line, CacheOutcome.MISS, exchange.detail
            )
            if exchange.body is None and request.method != "HEAD":
                answer.stream = exchange.stream()
            if exchange.body is None:
                answer.release = exchange.close
        answer.upstream_time = exchange.elapsed
        answer.extra["upstream_status"] = str(exchange.upstream_status)
        return answer

    def _failed(self, request: RequestHead, decision: Decision, error: UpstreamError) -> Answer:
        """The upstream failed: serve stale where RFC 5861 allows, else 502/504 with a one-line body."""
        fwd = decision.fwd if isinstance(decision, Forward) else Fwd.STALE
        stale = _fallback(decision)
        if stale is not None:
            return self._stale_if_error(request, stale, fwd, None)
        status = error.status
        if isinstance(decision, Revalidate) and _must_revalidate(decision.entry):
            status = 504  # RFC 9111 §5.2.2.2: never stale; a disconnected cache answers 504
        line = self.status(fwd=fwd, detail=error.detail)
        return error_answer(status, upstream_error_text(status, error), line, error.detail)

    def _stale_if_error(self, request: RequestHead, entry: Entry, fwd: Fwd, upstream_status: int | None) -> Answer:
        now = self.clock.now()
        line = self.status(
            fwd=fwd, fwd_status=upstream_status, ttl=ttl_remaining(entry, now), detail=Reason.STALE_IF_ERROR
        )
        age = current_age(entry, now)
        return entry_answer(request, entry, age, line, CacheOutcome.STALE, Reason.STALE_IF_ERROR)

    def _refresh_in_background(
        self, request: RequestHead, route: Route, key: str, store: Storage, entry: Entry
    ) -> None:
        """RFC 5861 §3: one refresh per key at a time, bounded in time, never outliving shutdown."""
        flight, leads = self.coalescer.join(key)
        if not leads:
            return
        flight.background = True
        decision = Revalidate(entry, Reason.STALE_WHILE_REVALIDATE)

        async def refresh() -> Exchange:
            try:
                exchange = await asyncio.wait_for(
                    self.fetcher.exchange(request, None, route, key, store, decision, flight), REFRESH_LIMIT
                )
            except (UpstreamError, TimeoutError) as error:
                log.warning("background refresh of %s failed: %s", request.url, error)
                raise
            await exchange.close()
            return exchange

        task = asyncio.ensure_future(refresh())
        self.tasks.add(task)
        task.add_done_callback(_forget(self.tasks))

    async def _pass(
        self, request: RequestHead, body: AsyncIterator[bytes] | None, route: Route, fwd: Fwd, reason: Reason
    ) -> Answer:
        """Forward without the cache; after a non-error answer to an unsafe method, invalidate (RFC 9111 §4.4)."""
        try:
            exchange = await self.fetcher.passthrough(request, body, route)
        except UpstreamError as error:
            line = self.status(fwd=fwd, detail=error.detail)
            return error_answer(error.status, upstream_error_text(error.status, error), line, error.detail)
        if request.method not in CACHEABLE_METHODS:
            await self.invalidate(invalidated_urls(request, exchange.head))
        line = self.status(fwd=fwd, detail=reason)
        answer = response_answer(request, exchange.head, exchange.body, line, CacheOutcome.BYPASS, reason,
                                 conditional=False)
        if exchange.body is None:
            answer.stream = exchange.stream()
            answer.release = exchange.close
        answer.upstream_time = exchange.elapsed
        answer.extra["upstream_status"] = str(exchange.upstream_status)
        return answer

    async def invalidate(self, urls: list[str], *, strict: bool = False) -> int:
        """Remove every stored variant of each URL.

        A store failure is logged (RFC 9111 §4.4 invalidation is best-effort), or raised with ``strict`` (a purge
        must say it did not happen).
        """
        removed = 0
        for url in urls:
            target = _request_for_url(url)
            if target is None:
                continue
            route = self.rules.current.match("GET", target.host, target.path)
            try:
                removed += await self.store_for(route).delete(primary_key(target, route))
            except StorageError as error:
                if strict:
                    raise
                log.warning("invalidation of %s failed: %s", url, error)
        return removed

    async def close(self) -> None:
        """Cancel background refreshes and detached fetches still running at shutdown."""
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


def _fallback(decision: Decision) -> Entry | None:
    if isinstance(decision, Revalidate) and decision.stale_if_error:
        return decision.entry
    if isinstance(decision, Forward):
        return decision.fallback
    return None


def _must_revalidate(entry: Entry) -> bool:
    if entry.forced:
        return False
    directives = response_directives(entry.head.headers)
    return directives.has("must-revalidate") or directives.has("proxy-revalidate") or directives.has("s-maxage")


def _forget(tasks: set[asyncio.Task[Exchange]]) -> Callable[[asyncio.Task[Exchange]], None]:
    def done(task: asyncio.Task[Exchange]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failed refresh was logged already

    return done


def _request_for_url(url: str) -> RequestHead | None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return RequestHead("GET", parts.scheme, parts.netloc, parts.path or "/", parts.query)
