"""One exchange with the upstream on behalf of the cache: send, decide storability, store, tell the followers.

A leader publishes to its flight as early as it knows: ``NotShared`` right after the response head when the response
is not for others (so followers go upstream at once), ``Shared(entry)`` once the entry is stored. Whatever happens, the
flight is landed when the exchange ends, so no follower waits on a leader that is gone.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from proxy.cache.coalesce import Coalescer, Failed, Flight, Lease, NotShared, Shared
from proxy.clock import Clock
from proxy.errors import StorageError, UpstreamError, UpstreamTimeout
from proxy.messages import Entry, RequestHead, ResponseHead
from proxy.rfc.age import format_http_date
from proxy.rfc.decisions import DontStore, Forward, Fwd, Reason, Revalidate, Serve, Store
from proxy.rfc.partial import combine, covers, narrowed_request
from proxy.rfc.reuse import decide
from proxy.rfc.storable import assess, surrogate_keys
from proxy.rfc.validation import (
    conditional_request,
    head_matches,
    merge_304,
    selects_stored,
    stale_copy,
    strip_conditionals,
)
from proxy.rfc.vary import vary_names, vary_snapshot
from proxy.rules.model import Route
from proxy.storage.base import Storage
from proxy.upstream import Upstream, UpstreamResponse

log = logging.getLogger("cacheproxy.fetch")

# RFC 5861 §4: the error statuses under which stale-if-error may serve a stale entry.
ERROR_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Job:
    """One cacheable request on its way upstream: what every step of a fetch needs to know."""

    request: RequestHead
    body: AsyncIterator[bytes] | None
    route: Route
    key: str
    store: Storage


@dataclass(slots=True)
class Exchange:
    """The result of one upstream exchange, for the client that caused it."""

    head: ResponseHead  # what this client gets (with its own Set-Cookie when the route strips them from the entry)
    body: bytes | None  # None: too large to read whole; stream it from ``response``
    upstream_status: int
    elapsed: float
    response: UpstreamResponse | None = None
    entry: Entry | None = None
    stored: bool = False
    revalidated: bool = False  # a 304 confirmed ``entry``
    detail: str = ""  # why it was not stored, if it was not
    fallback_ok: bool = False  # an error status that stale-if-error may stand in for
    collapsed: bool = False  # ``entry`` came from another process's fetch (cross-process single-flight)
    times: tuple[float, float] | None = None  # request and response time of the exchange (RFC 9111 §4.2.3)
    combined: bool = False  # ``entry`` joins the upstream 206 with a stored part: answer from it (RFC 9111 §3.4)

    def stream(self) -> AsyncIterator[bytes]:
        if self.response is None:
            raise RuntimeError("nothing to stream: the body was read whole")
        return self.response.stream()

    async def close(self) -> None:
        if self.response is not None:
            await self.response.release()


def upstream_error_text(status: int, error: UpstreamError) -> str:
    if isinstance(error, UpstreamTimeout) or status == 504:
        return "504 Gateway Timeout: the upstream did not answer in time"
    if error.detail == "connect-failed":
        return "502 Bad Gateway: could not connect to the upstream"
    return "502 Bad Gateway: the upstream sent an invalid or incomplete response"


class Fetcher:
    def __init__(self, *, upstream: Upstream, clock: Clock, coalescer: Coalescer, lease: Lease | None) -> None:
        self.upstream = upstream
        self.clock = clock
        self.coalescer = coalescer
        self.lease = lease

    async def passthrough(self, request: RequestHead, body: AsyncIterator[bytes] | None, route: Route) -> Exchange:
        """Send ``request`` as it is, for bypassed routes and unsafe methods."""
        request_time, started = self.clock.now(), self.clock.monotonic()
        response = await self.upstream.send(request, body, read_limit=route.policy.max_object_size)
        elapsed, times = self.clock.monotonic() - started, (request_time, self.clock.now())
        return Exchange(response.head, response.body, response.head.status, elapsed, response, times=times)

    async def exchange(
        self, job: Job, decision: Revalidate | Forward, flight: Flight | None, store_it: bool = True
    ) -> Exchange:
        """Fetch for ``job``; as a flight's leader, take the cross-process lease first and tell the followers."""
        key, route = job.key, job.route
        held = False
        try:
            if flight is not None and self.lease is not None:
                held = await self.lease.acquire(key)
                if not held:
                    await self.lease.wait(key, route.coalesce_timeout)
                # Whether another process fetched while we waited, or finished just before we took the lease,
                # its entry is in the store now: look again before going upstream (double-checked).
                stored = await self._fresh_in_store(job, flight)
                if stored is not None:
                    return stored
                if not held:
                    held = await self.lease.acquire(key)
            return await self._exchange(job, decision, flight, store_it)
        except UpstreamError as error:
            if flight is not None:
                self.coalescer.land(flight, Failed(error))
            raise
        finally:
            if held and self.lease is not None:
                await self.lease.release(key)
            if flight is not None:
                self.coalescer.land(flight, NotShared(Reason.NOT_STORED))

    async def _fresh_in_store(self, job: Job, flight: Flight) -> Exchange | None:
        """Another process's fetch for this key, if it stored an entry that this request may be served fresh.

        ``None`` when it did not (nothing stored, Vary or Authorization mismatch, not fresh): fetch after all.
        """
        try:
            entries = await job.store.get(job.key)
        except StorageError:
            return None
        decision = decide(job.request, entries, self.clock.now())
        if not isinstance(decision, Serve) or decision.reason is not Reason.FRESH:
            return None
        entry = decision.entry
        _publish(flight, Shared(entry))
        return Exchange(entry.head, entry.body, entry.head.status, 0.0, entry=entry, collapsed=True)

    async def _exchange(
        self, job: Job, decision: Revalidate | Forward, flight: Flight | None, store_it: bool
    ) -> Exchange:
        request, route = job.request, job.route
        if isinstance(decision, Revalidate):
            outgoing = conditional_request(request, decision.entry)
            if request.method == "HEAD":
                outgoing = replace(outgoing, method="HEAD")  # RFC 9111 §4.3.5: the client wants no content
        else:
            outgoing = strip_conditionals(request)
            if outgoing.method != "GET":
                outgoing = replace(outgoing, method="GET")  # a HEAD miss fetches the GET to store
            if decision.partial is not None and decision.range is not None:
                outgoing = narrowed_request(outgoing, decision.partial, decision.range)  # RFC 9111 §3.3
        request_time = self.clock.now()
        started = self.clock.monotonic()
        response = await self.upstream.send(outgoing, job.body, read_limit=route.policy.max_object_size)
        response_time = self.clock.now()
        elapsed = self.clock.monotonic() - started
        status = response.head.status
        if isinstance(decision, Revalidate) and status == 304:
            if selects_stored(decision.entry.head, response.head, sole=decision.sole):
                await response.release()
                return await self._refreshed(
                    job, outgoing, decision.entry, response.head, flight, (request_time, response_time), elapsed
                )
            # RFC 9111 §4.3.4: a 304 that selects nothing stored: ask again without conditions.
            await response.release()
            return await self._exchange(job, Forward(Fwd.STALE, Reason.STALE), flight, store_it)
        if isinstance(decision, Revalidate) and outgoing.method == "HEAD":
            await response.release()
            times = (request_time, response_time)
            return await self._head_answered(job, outgoing, decision.entry, response.head, flight, times, elapsed)
        times = (request_time, response_time)
        if isinstance(decision, Forward) and decision.partial is not None and status == 206:
            combined = await self._combined(job, outgoing, decision, response, flight, times, elapsed, store_it)
            if combined is not None:
                return combined
        exchange = Exchange(response.head, response.body, status, elapsed, response, times=times)
        if status in ERROR_STATUSES and _has_fallback(decision):
            exchange.fallback_ok = True
            _publish(flight, NotShared(Reason.STATUS))
            return exchange
        verdict = assess(
            outgoing,
            response.head,
            route.policy,
            request_time=request_time,
            response_time=response_time,
            body_size=None if response.body is None else len(response.body),
        )
        if isinstance(verdict, DontStore) or response.body is None or not store_it:
            reason = verdict.reason if isinstance(verdict, DontStore) else Reason.TOO_LARGE
            exchange.detail = reason if store_it or response.body is None else Reason.COALESCE_TIMEOUT
            _publish(flight, NotShared(reason))
            return exchange
        entry = _entry(job.key, outgoing, verdict, response.body, route, request_time, response_time)
        exchange.entry = entry
        exchange.stored = await _put(job.store, job.key, entry, verdict.ttl)
        if not exchange.stored:
            exchange.detail = Reason.STORE_UNAVAILABLE
        # A partial answers only the ranges it covers: followers go upstream with their own (RFC 9111 §3.3).
        _publish(flight, NotShared(Reason.PARTIAL) if status == 206 else Shared(entry))
        return exchange

    async def _combined(
        self,
        job: Job,
        outgoing: RequestHead,
        decision: Forward,
        response: UpstreamResponse,
        flight: Flight | None,
        times: tuple[float, float],
        elapsed: float,
        store_it: bool,
    ) -> Exchange | None:
        """RFC 9111 §3.4: join a 206 with the stored partial and answer the client from the result.

        ``None`` when they do not combine and the client's own Range was sent (then the 206 is its answer); when a
        narrowed Range was sent, the client's own Range is asked for after all.
        """
        found = _combined_entry(job, outgoing, decision.partial, response, times)
        if found is not None:
            entry, ttl = found
            await response.release()
            stored = await _put(job.store, job.key, entry, ttl)
            _publish(flight, Shared(entry) if entry.head.status == 200 else NotShared(Reason.PARTIAL))
            return Exchange(
                entry.head, entry.body, 206, elapsed, entry=entry, stored=stored, combined=True, times=times
            )
        if decision.range is None:
            return None
        await response.release()
        return await self._exchange(job, Forward(decision.fwd, decision.reason), flight, store_it)

    async def _refreshed(
        self,
        job: Job,
        outgoing: RequestHead,
        entry: Entry,
        not_modified: ResponseHead,
        flight: Flight | None,
        times: tuple[float, float],
        elapsed: float,
    ) -> Exchange:
        """RFC 9111 §4.3.4: freshen the stored entry with the 304's fields and keep serving its body.

        Also for a 200 answering HEAD that matches the entry (§4.3.5): ``not_modified`` is then that response.
        """
        request_time, response_time = times
        merged = merge_304(entry.head, not_modified, received=response_time)
        route = job.route
        outgoing = replace(outgoing, method="GET")  # what the stored response answers
        upstream_status = not_modified.status
        verdict = assess(
            outgoing,
            merged,
            route.policy,
            request_time=request_time,
            response_time=response_time,
            body_size=len(entry.body),
        )
        if isinstance(verdict, DontStore):
            fresh = replace(entry, head=merged, request_time=request_time, response_time=response_time)
            _publish(flight, NotShared(verdict.reason))
            return Exchange(
                merged, fresh.body, upstream_status, elapsed, entry=fresh, revalidated=True, detail=verdict.reason
            )
        fresh = replace(
            _entry(job.key, outgoing, verdict, entry.body, route, request_time, response_time),
            url=entry.url,
            vary=entry.vary,
            tags=tuple(dict.fromkeys((*entry.tags, *_tags(verdict, route)))),
        )
        stored = await _put(job.store, job.key, fresh, verdict.ttl)
        _publish(flight, Shared(fresh))
        detail = "" if stored else Reason.STORE_UNAVAILABLE
        return Exchange(
            fresh.head,
            fresh.body,
            upstream_status,
            elapsed,
            entry=fresh,
            stored=stored,
            revalidated=True,
            detail=detail,
        )

    async def _head_answered(
        self,
        job: Job,
        outgoing: RequestHead,
        entry: Entry,
        head: ResponseHead,
        flight: Flight | None,
        times: tuple[float, float],
        elapsed: float,
    ) -> Exchange:
        """RFC 9111 §4.3.5: a 200 to HEAD whose validators match freshens the stored GET response; one whose
        validators differ makes it stale. The client gets the HEAD response either way."""
        if head.status == 200 and head_matches(entry.head, len(entry.body), head):
            return await self._refreshed(job, outgoing, entry, head, flight, times, elapsed)
        if head.status == 200:
            await _put(job.store, job.key, stale_copy(entry), job.route.policy.keep)
        _publish(flight, NotShared(Reason.STALE))
        return Exchange(head, None, head.status, elapsed, times=times)


async def store_answer(job: Job, exchange: Exchange) -> bool:
    """Store a response received outside a cache fetch (a POST answer that represents its target URI for a GET,
    RFC 9110 §9.3.3) under ``job``'s key, if ``assess`` allows it for ``job.request``."""
    if exchange.body is None or exchange.times is None:
        return False
    request_time, response_time = exchange.times
    verdict = assess(
        job.request,
        exchange.head,
        job.route.policy,
        request_time=request_time,
        response_time=response_time,
        body_size=len(exchange.body),
    )
    if isinstance(verdict, DontStore):
        return False
    entry = _entry(job.key, job.request, verdict, exchange.body, job.route, request_time, response_time)
    return await _put(job.store, job.key, entry, verdict.ttl)


def _combined_entry(
    job: Job, outgoing: RequestHead, partial: Entry | None, response: UpstreamResponse, times: tuple[float, float]
) -> tuple[Entry, float] | None:
    """The entry (and its time-to-live) a 206 and the stored partial make together (RFC 9111 §3.4), if they
    combine, may be stored, and answer the client's request."""
    if partial is None or response.body is None:
        return None
    joined = combine(partial, response.head, response.body)
    if joined is None:
        return None
    head, body = joined
    request = replace(outgoing, headers=outgoing.headers.without("range", "if-range"))
    verdict = assess(
        request, head, job.route.policy, request_time=times[0], response_time=times[1], body_size=len(body)
    )
    if not isinstance(verdict, Store):
        return None
    entry = _entry(job.key, request, verdict, body, job.route, *times)
    return (entry, verdict.ttl) if head.status == 200 or covers(entry, job.request) else None


def _publish(flight: Flight | None, outcome: Shared | NotShared) -> None:
    if flight is not None:
        flight.publish(outcome)


def _has_fallback(decision: Revalidate | Forward) -> bool:
    if isinstance(decision, Revalidate):
        return decision.stale_if_error
    return decision.fallback is not None


def _tags(verdict: Store, route: Route) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*route.tags, *surrogate_keys(verdict.head.headers))))


def _entry(
    key: str,
    request: RequestHead,
    verdict: Store,
    body: bytes,
    route: Route,
    request_time: float,
    response_time: float,
) -> Entry:
    head = verdict.head
    if "date" not in head.headers:
        # RFC 9110 §6.6.1: a cache adds the Date a response without one is missing.
        head = ResponseHead(head.status, head.headers.adding("Date", format_http_date(response_time)))
    return Entry(
        key=key,
        url=request.url,
        head=head,
        body=body,
        request_time=request_time,
        response_time=response_time,
        freshness=verdict.freshness,
        initial_age=verdict.initial_age,
        stale_while_revalidate=verdict.stale_while_revalidate,
        stale_if_error=verdict.stale_if_error,
        vary=vary_snapshot(vary_names(verdict.head), request),
        tags=_tags(verdict, route),
        authorized="authorization" in request.headers,
        forced=verdict.forced,
    )


async def _put(store: Storage, key: str, entry: Entry, ttl: float) -> bool:
    """False when the entry was not stored: an error, or a shared store that could not take it (Redis down)."""
    take = getattr(store, "store", None)  # a store that can say whether it took the entry (``RedisStorage.store``)
    try:
        if callable(take):
            return bool(await take(key, entry, ttl))
        await store.put(key, entry, ttl)
    except StorageError as error:
        log.warning("storing %s failed: %s", entry.url, error)
        return False
    return True
