"""The one driver of the cache: it asks proxy.rfc for a decision and performs the I/O the decision calls for.

    handle ─▶ route ─▶ (bypass | unsafe method) ─▶ pass through, invalidate after unsafe methods (RFC 9111 §4.4)
             └▶ key ─▶ store.get ─▶ rfc.reuse.decide ─▶ Serve         ─▶ answer from the entry (+ background refresh)
                                                     ├▶ Unsatisfiable ─▶ 504 (only-if-cached)
                                                     └▶ Revalidate / Forward ─▶ single-flight fetch ─▶ store ─▶ answer

``decide`` runs once per request; the driver follows its verdict to one frozen ``Answer`` (``proxy.cache.answer``)
whose reason is a typed ``Reason``. Fetching is in ``proxy.cache.fetch`` (through the origin port, ``proxy.origin``),
which answer each outcome gets in ``proxy.cache.replies``; this module holds the request-level flow: who looks up, who
leads a fetch, who follows and what a follower may be given.

Every invalidation goes through this driver (``invalidate`` for unsafe methods and URL purges, ``purge`` for prefix
and tag purges), so it can keep RFC 9111 §4.4 against fetches already in flight: it records the invalidation
(``proxy.cache.invalidations``: a fetch that began before it does not store), detaches the flights it covers (a
request that arrives after it never joins a fetch that began before it) and forgets the store lookups in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, assert_never
from urllib.parse import urlsplit

from proxy.cache.answer import Answer, Asked
from proxy.cache.coalesce import Coalescer, Failed, Flight, Lease, Outcome, Shared, run_detached
from proxy.cache.fetch import Fetched, Fetcher, Job, fwd_of, stand_in, store_answer
from proxy.cache.invalidations import Covered, Invalidations
from proxy.cache.keys import primary_key, url_key
from proxy.cache.replies import Replies
from proxy.clock import Clock
from proxy.errors import StorageError, UpstreamError
from proxy.messages import CACHEABLE_METHODS, Entry, RequestHead, as_forwarded
from proxy.origin import Origin
from proxy.ratelog import RateLimitedLog
from proxy.rfc.decisions import Decision, Forward, Fwd, Reason, Revalidate, Serve, Unsatisfiable
from proxy.rfc.invalidation import invalidated_urls
from proxy.rfc.reuse import decide
from proxy.rfc.storable import post_answers_get
from proxy.rfc.vary import vary_matches
from proxy.rules.model import Route
from proxy.rules.reload import RulesHolder
from proxy.storage.abilities import ConfirmingPut, InstantLookup
from proxy.storage.base import Storage
from proxy.storage.urls import url_path

log = logging.getLogger("cacheproxy.service")

# A background refresh (stale-while-revalidate) never runs longer than this.
REFRESH_LIMIT: Final = 60.0


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the hot path (``proxy.hot``) found before handing over: the route, the key, the candidates."""

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
        origin: Origin,
        clock: Clock,
        lease: Lease | None = None,
        name: str = "cacheproxy",
    ) -> None:
        self.rules = rules
        self.stores = stores
        self.default_store = default_store
        self.clock = clock
        self.replies = Replies(name, clock)
        self.coalescer = Coalescer(clock)
        self._lookups: dict[str, asyncio.Future[list[Entry]]] = {}
        # Stores that answer a lookup without I/O, found once here (never asked per request which class a store is).
        self._instant = {id(store): store for store in stores.values() if isinstance(store, InstantLookup)}
        # Whether each store says if it took a put (Redis: a refused put reads ``detail=store-unavailable``), looked
        # up once per store object (a store swapped in later, ``Runtime.set_store``, is looked up when first used).
        self._confirming: dict[int, tuple[Storage, ConfirmingPut | None]] = {}
        self.tasks: set[asyncio.Task[Fetched]] = set()
        # Failures that repeat on every request during an outage: one line per route (or store) and kind of failure
        # per 10 s, with a count (an outage hits every URL at once, so a URL would not fold them).
        self.failures_log = RateLimitedLog(log, clock)
        self.invalidations = Invalidations()
        self.fetcher = Fetcher(
            origin=origin, clock=clock, coalescer=self.coalescer, lease=lease, invalidations=self.invalidations
        )

    def store_for(self, route: Route) -> Storage:
        return self.stores.get(route.store or self.default_store) or self.stores[self.default_store]

    def _job(self, request: RequestHead, body: AsyncIterator[bytes] | None, route: Route, key: str) -> Job:
        store = self.store_for(route)
        known = self._confirming.get(id(store))
        if known is None or known[0] is not store:
            known = (store, store if isinstance(store, ConfirmingPut) else None)
            self._confirming[id(store)] = known
        return Job(request, body, route, key, store, known[1])

    async def handle(
        self, request: RequestHead, body: AsyncIterator[bytes] | None, prior: Lookup | None = None
    ) -> Answer:
        """Answer ``request``. ``prior``: the route, key and candidates the hot path already found for it."""
        if prior is not None:
            route = prior.route
        else:
            route = self.rules.current.match(request.method, request.host, request.path)
        request = as_forwarded(request, route.pass_headers)  # key, Vary, reuse and upstream read the same fields
        if route.bypass:
            return await self._pass(self.replies.asked(request, route.name), body, route, Fwd.BYPASS, Reason.RULE)
        if request.method not in CACHEABLE_METHODS:
            return await self._pass(self.replies.asked(request, route.name), body, route, Fwd.METHOD, Reason.METHOD)
        if body is not None:  # a GET or HEAD with a body: its answer may depend on it, the key cannot
            asked = self.replies.asked(request, route.name)
            return await self._pass(asked, body, route, Fwd.BYPASS, Reason.REQUEST_BODY)
        return await self._cacheable(request, body, route, prior)

    async def _cacheable(
        self, request: RequestHead, body: AsyncIterator[bytes] | None, route: Route, prior: Lookup | None
    ) -> Answer:
        key = prior.key if prior is not None else primary_key(request, route)
        job = self._job(request, body, route, key)
        asked = self.replies.asked(request, route.name, key)
        early: Answer | Outcome | None = None
        if prior is not None:
            candidates = prior.candidates
        else:
            early = await self._join_before_lookup(job, asked)
            if isinstance(early, Answer):
                return early
            candidates = await self.lookup(job.store, key)
        decision = decide(request, candidates, self.clock.now())  # the one decision for this request
        if isinstance(early, Failed) and early.shared and isinstance(decision, Revalidate | Forward):
            return self.replies.failed(asked, decision, early.error)
        return await self._act(job, asked, decision)

    async def lookup(self, store: Storage, key: str) -> list[Entry]:
        """``store.get``, one at a time per key: concurrent lookups of a hot key share one round trip to Redis.

        A store that answers without a round trip (the memory store, ``InstantLookup``) is asked directly.
        """
        instant = self._instant.get(id(store))
        if instant is not None:
            return instant.get_now(key)
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
            if self._lookups.get(key) is future:  # an invalidation may have forgotten it already
                del self._lookups[key]
        return found

    async def _join_before_lookup(self, job: Job, asked: Asked) -> Answer | Outcome | None:
        """While a fetch for the key is in flight, wait for it before looking in the store.

        A cold or expired hot key then costs the store one lookup per process, not one per waiting request (which
        would stampede Redis instead of the origin). An outcome that does not suit this request (another variant,
        an error) is handed back, and the request carries on with its own lookup.
        """
        flight = self.coalescer.current(job.key)
        if flight is None or flight.background or not job.route.coalesce or job.body is not None:
            return None
        outcome = await flight.wait(job.route.coalesce_timeout)
        if isinstance(outcome, Shared) and _may_share(job.request, outcome.entry):
            return self.replies.collapsed(asked, outcome.entry)
        return outcome

    async def _act(self, job: Job, asked: Asked, decision: Decision) -> Answer:
        match decision:
            case Serve():
                if decision.revalidate:
                    self._refresh_in_background(job, decision.entry)
                return self.replies.served(asked, decision)
            case Unsatisfiable():
                return self.replies.only_if_cached(asked, decision.reason)
            case Revalidate() | Forward():
                return await self._go_upstream(job, asked, decision)
            case _:
                assert_never(decision)

    async def _go_upstream(self, job: Job, asked: Asked, decision: Revalidate | Forward) -> Answer:
        """Go upstream for ``decision``, as the leader of a flight or, behind one, as a follower."""
        if not job.route.coalesce or job.body is not None or self.coalescer.is_unshared(job.key):
            return await self._fetch_and_answer(job, asked, decision)
        flight, leads = self.coalescer.join(job.key, url_path(job.request.url))
        if leads:
            return await self._fetch_and_answer(job, asked, decision, flight=flight)
        outcome = await flight.wait(job.route.coalesce_timeout)
        match outcome:
            case Shared(entry) if _may_share(job.request, entry):
                return self.replies.collapsed(asked, entry)
            case Failed(error, shared=True):
                return self.replies.failed(asked, decision, error)
            case None:
                return await self._fetch_and_answer(job, asked, decision, store_it=False)
            case _:
                # Not for this client (private, Set-Cookie, Vary or Authorization mismatch, too large): go at once.
                return await self._fetch_and_answer(job, asked, decision)

    async def _fetch_and_answer(
        self,
        job: Job,
        asked: Asked,
        decision: Revalidate | Forward,
        *,
        flight: Flight | None = None,
        store_it: bool = True,
    ) -> Answer:
        """Fetch (detached from this client when others wait on it) and answer this client.

        ``store_it`` False: a follower whose leader took too long fetches for itself and leaves storing to the leader.
        """

        async def work() -> Fetched:
            return await self.fetcher.fetch(job, decision, flight, store_it)

        try:
            if flight is not None:
                fetched = await run_detached(work, self.tasks)
            else:
                fetched = await self.fetcher.fetch(job, decision, flight, store_it)
        except UpstreamError as error:
            return self.replies.failed(asked, decision, error)
        if fetched.error_status and (stale := stand_in(decision)) is not None:
            await fetched.close()
            return self.replies.stale_if_error(asked, stale, fwd_of(decision), fetched.upstream_status)
        reason = None if store_it else fetched.not_stored or Reason.COALESCE_TIMEOUT
        return self.replies.fetched(asked, fetched, fwd_of(decision), reason)

    def _refresh_in_background(self, job: Job, entry: Entry) -> None:
        """RFC 5861 §3: one refresh per key at a time, bounded in time, never outliving shutdown."""
        flight, leads = self.coalescer.join(job.key, url_path(job.request.url))
        if not leads:
            return
        flight.background = True
        decision = Revalidate(entry, Reason.STALE_WHILE_REVALIDATE)

        async def refresh() -> Fetched:
            try:
                fetched = await asyncio.wait_for(self.fetcher.fetch(job, decision, flight), REFRESH_LIMIT)
            except (UpstreamError, TimeoutError) as error:
                if isinstance(error, UpstreamError):
                    reason, detail = error.detail, str(error)
                else:
                    reason, detail = "refresh-limit", f"no answer within {REFRESH_LIMIT:g} s"
                message = "background refresh of %s failed: %s"
                self.failures_log.log(f"refresh/{job.route.name}", reason, message, job.request.url, detail)
                raise
            await fetched.close()
            return fetched

        task = asyncio.ensure_future(refresh())
        self.tasks.add(task)
        task.add_done_callback(_forget(self.tasks))

    async def _pass(
        self, asked: Asked, body: AsyncIterator[bytes] | None, route: Route, fwd: Fwd, reason: Reason
    ) -> Answer:
        """Forward without the cache; after a non-error answer to an unsafe method, invalidate (RFC 9111 §4.4)."""
        request = asked.request
        try:
            fetched = await self.fetcher.passthrough(request, body, route)
        except UpstreamError as error:
            return self.replies.error(asked, error.status, error, fwd)
        if request.method not in CACHEABLE_METHODS:
            await self.invalidate(invalidated_urls(request, fetched.head))
            await self._store_post_answer(request, fetched)
        return self.replies.passed(asked, fetched, fwd, reason)

    async def _store_post_answer(self, request: RequestHead, fetched: Fetched) -> None:
        """RFC 9110 §9.3.3: a POST answer with explicit freshness whose Content-Location is the target URI is stored
        for a later GET of that URI (under the GET's route and key)."""
        get = post_answers_get(request, fetched.head)
        if get is None:
            return
        route = self.rules.current.match("GET", get.host, get.path)
        if not route.bypass:
            await store_answer(self._job(get, None, route, primary_key(get, route)), fetched, self.clock.now())

    async def invalidate(self, urls: list[str], *, strict: bool = False) -> int:
        """Remove every stored variant of each URL, under every key shape (headers and cookies included).

        A store failure is logged (RFC 9111 §4.4 invalidation is best-effort; the Redis store also queues it and
        applies it when it is back), or raised with ``strict`` (a purge must say it did not happen).
        """
        targets: list[tuple[str, str, Storage]] = []
        for url in urls:
            target = _request_for_url(url)
            if target is None:
                continue
            route = self.rules.current.match("GET", target.host, target.path)
            targets.append((url, url_key(target, route), self.store_for(route)))
        keys = frozenset(key for _, key, _ in targets)
        if not keys:
            return 0
        self._fence_off(Covered(keys=keys))
        removed = 0
        for url, key, store in targets:
            try:
                removed += await store.delete(key)
            except StorageError as error:
                if strict:
                    raise
                reason = type(error.__cause__ or error).__name__
                self.failures_log.log(f"invalidate/{store.name}", reason, "invalidation of %s failed: %s", url, error)
        return removed

    async def purge(self, kind: Literal["prefix", "tag"], value: str) -> int:
        """Remove every entry whose URL path starts with ``value`` (``prefix``) or that carries tag ``value``, in
        every store the routes can pick; ``StorageError`` when a store failed (the purge must say so)."""
        self._fence_off(Covered(prefix=value) if kind == "prefix" else Covered(tag=value))
        removed = 0
        for store in {id(store): store for store in self.stores.values()}.values():
            removed += await (store.delete_prefix(value) if kind == "prefix" else store.delete_tag(value))
        return removed

    def _fence_off(self, covered: Covered) -> None:
        """RFC 9111 §4.4 against what is in flight, before the store is touched: fetches that began before now do
        not store what ``covered`` covers, and requests from now on neither join their flights nor their lookups.
        """
        self.invalidations.record(covered)
        self.coalescer.detach(lambda flight: covered.may_cover(flight.key, flight.path))
        for key in [key for key in self._lookups if covered.may_cover(key, None)]:
            del self._lookups[key]

    async def report_failures(self, every: float = 1.0) -> None:
        """Write the counts of rate-limited failure lines once their window is over (a task of the lifespan)."""
        while True:
            await asyncio.sleep(every)
            self.failures_log.flush_due()

    async def close(self) -> None:
        """Cancel background refreshes and detached fetches still running at shutdown."""
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        self.failures_log.flush()  # counts still held back are written, not lost


def _may_share(request: RequestHead, entry: Entry) -> bool:
    """RFC 9111 §4.1 and §3.5: a follower gets the leader's entry only if it would be served it from the store."""
    if entry.vary and not vary_matches(entry.vary, request):
        return False
    return entry.authorized or "authorization" not in request.headers


def _forget(tasks: set[asyncio.Task[Fetched]]) -> Callable[[asyncio.Task[Fetched]], None]:
    def done(task: asyncio.Task[Fetched]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failed refresh was logged already

    return done


def _request_for_url(url: str) -> RequestHead | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return RequestHead("GET", parts.scheme, parts.netloc, parts.path or "/", parts.query)
