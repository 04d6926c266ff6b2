"""One fetch from the origin on behalf of the cache: send, decide storability, store, tell the followers.

The origin is reached through the port ``proxy.origin.Origin`` only (no HTTP client library is imported here).
A leader publishes to its flight as early as it knows: ``NotShared`` right after the response head when the response
is not for others (so followers go upstream at once), ``Shared(entry)`` once the entry is stored. Whatever happens, the
flight is finished when the fetch ends, so no follower waits on a leader that is gone. What a fetch returns to the
client that caused it is a frozen ``Fetched``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Final

from proxy.cache.coalesce import Coalescer, Failed, Flight, Lease, NotShared, Shared
from proxy.cache.invalidations import Fence, Invalidations
from proxy.clock import Clock
from proxy.errors import StorageError, UpstreamError, UpstreamTimeout
from proxy.messages import Entry, RequestHead, ResponseHead
from proxy.origin import Origin, OriginResponse
from proxy.rfc.age import format_http_date
from proxy.rfc.decisions import Decision, DontStore, Forward, Fwd, Reason, Revalidate, Serve, Store
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
from proxy.storage.abilities import ConfirmingPut
from proxy.storage.base import PutResult, Storage

log = logging.getLogger("cacheproxy.fetch")

# RFC 5861 §4: the error statuses under which stale-if-error may serve a stale entry.
ERROR_STATUSES: Final = frozenset({500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Job:
    """One cacheable request on its way upstream: what every step of a fetch needs to know."""

    request: RequestHead
    body: AsyncIterator[bytes] | None
    route: Route
    key: str
    store: Storage
    confirming: ConfirmingPut | None = None  # ``store`` again when it says whether it took a put (found once)
    fence: Fence | None = None  # taken when the fetch began: an invalidation since then means do not store

    def fenced(self, fence: Fence) -> Job:
        """This job with the fence its fetch took (``dataclasses.replace`` costs several times more)."""
        return Job(self.request, self.body, self.route, self.key, self.store, self.confirming, fence)


@dataclass(frozen=True, slots=True)
class Fetched:
    """What one fetch gave the client that caused it."""

    head: ResponseHead  # what this client gets (with its own Set-Cookie when the route strips them from the entry)
    body: bytes | None  # None: too large to read whole; stream it from ``response``
    upstream_status: int
    elapsed: float
    response: OriginResponse | None = None
    entry: Entry | None = None
    stored: bool = False
    revalidated: bool = False  # a 304 confirmed ``entry``
    not_stored: Reason | None = None  # why it was not stored, if it was not
    error_status: bool = False  # an error status (RFC 5861 §4) that the decision's stale entry may stand in for
    collapsed: bool = False  # ``entry`` came from another process's fetch (cross-process single-flight)
    times: tuple[float, float] | None = None  # request and response time of the fetch (RFC 9111 §4.2.3)
    combined: bool = False  # ``entry`` joins the upstream 206 with a stored part: answer from it (RFC 9111 §3.4)

    def stream(self) -> AsyncIterator[bytes]:
        if self.response is None:
            raise RuntimeError("nothing to stream: the body was read whole")
        return self.response.stream()

    async def close(self) -> None:
        if self.response is not None:
            await self.response.release()


def stand_in(decision: Decision) -> Entry | None:
    """The stored entry that may stand in for an upstream failure (RFC 5861 §4), if the decision allows one."""
    if isinstance(decision, Revalidate) and decision.stale_if_error:
        return decision.entry
    if isinstance(decision, Forward):
        return decision.fallback
    return None


def fwd_of(decision: Decision) -> Fwd:
    """RFC 9211 §2.2: why this request went forward (a revalidation always reads ``stale``)."""
    return decision.fwd if isinstance(decision, Forward) else Fwd.STALE


def upstream_error_text(status: int, error: UpstreamError) -> str:
    if isinstance(error, UpstreamTimeout) or status == 504:
        return "504 Gateway Timeout: the upstream did not answer in time"
    if error.detail == "connect-failed":
        return "502 Bad Gateway: could not connect to the upstream"
    return "502 Bad Gateway: the upstream sent an invalid or incomplete response"


class Fetcher:
    def __init__(
        self,
        *,
        origin: Origin,
        clock: Clock,
        coalescer: Coalescer,
        lease: Lease | None,
        invalidations: Invalidations | None = None,
    ) -> None:
        self.origin = origin
        self.clock = clock
        self.coalescer = coalescer
        self.lease = lease
        self.invalidations = invalidations if invalidations is not None else Invalidations()

    async def passthrough(self, request: RequestHead, body: AsyncIterator[bytes] | None, route: Route) -> Fetched:
        """Send ``request`` as it is, for bypassed routes and unsafe methods."""
        request_time, started = self.clock.now(), self.clock.monotonic()
        response = await self.origin.send(request, body, read_limit=route.policy.max_object_size)
        elapsed, times = self.clock.monotonic() - started, (request_time, self.clock.now())
        return Fetched(response.head, response.body, response.head.status, elapsed, response, times=times)

    async def fetch(
        self, job: Job, decision: Revalidate | Forward, flight: Flight | None, store_it: bool = True
    ) -> Fetched:
        """Fetch for ``job``; as a flight's leader, take the cross-process lease first and tell the followers.

        The fetch takes its fence first: an invalidation of what it fetches while it runs means it does not store.
        """
        key, route = job.key, job.route
        held = False
        fence = self.invalidations.begin(self.clock.now())
        job = job.fenced(fence)
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
            return await self._send_and_store(job, decision, flight, store_it)
        except UpstreamError as error:
            if flight is not None:
                self.coalescer.finish(flight, Failed(error))
            raise
        finally:
            self.invalidations.end(fence)
            if flight is not None:  # before the lease goes: no newcomer joins a flight that is done
                self.coalescer.finish(flight, NotShared(Reason.NOT_STORED))
            if held and self.lease is not None:
                await self.lease.release(key)

    async def _fresh_in_store(self, job: Job, flight: Flight) -> Fetched | None:
        """Another process's fetch for this key, if it stored an entry that this request may be served fresh.

        ``None`` when it did not (nothing stored, Vary or Authorization mismatch, not fresh): fetch after all. This
        is a second lookup (the store changed while we waited on the lease), so it asks ``decide`` about the new
        candidates; the request's own decision was taken once, before.
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
        return Fetched(entry.head, entry.body, entry.head.status, 0.0, entry=entry, collapsed=True)

    async def _send_and_store(
        self, job: Job, decision: Revalidate | Forward, flight: Flight | None, store_it: bool
    ) -> Fetched:
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
        response = await self.origin.send(outgoing, job.body, read_limit=route.policy.max_object_size)
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
            return await self._send_and_store(job, Forward(Fwd.STALE, Reason.STALE), flight, store_it)
        times = (request_time, response_time)
        if isinstance(decision, Revalidate) and outgoing.method == "HEAD":
            await response.release()
            return await self._head_answered(job, outgoing, decision.entry, response.head, flight, times, elapsed)
        if isinstance(decision, Forward) and decision.partial is not None and status == 206:
            combined = await self._combined(job, outgoing, decision, response, flight, times, elapsed, store_it)
            if combined is not None:
                return combined
        if status in ERROR_STATUSES and stand_in(decision) is not None:
            _publish(flight, NotShared(Reason.STATUS))
            return Fetched(response.head, response.body, status, elapsed, response, error_status=True, times=times)
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
            not_stored = reason if store_it or response.body is None else Reason.COALESCE_TIMEOUT
            _publish(flight, NotShared(reason))
            return Fetched(response.head, response.body, status, elapsed, response, not_stored=not_stored, times=times)
        entry = _entry(job.key, outgoing, verdict, response.body, route, request_time, response_time)
        refused = await _put(job, entry, verdict.ttl)
        # A partial answers only the ranges it covers: followers go upstream with their own (RFC 9111 §3.3).
        _publish(flight, NotShared(Reason.PARTIAL) if status == 206 else _outcome(entry, refused))
        return Fetched(
            response.head,
            response.body,
            status,
            elapsed,
            response,
            entry=entry,
            stored=refused is None,
            not_stored=refused,
            times=times,
        )

    async def _combined(
        self,
        job: Job,
        outgoing: RequestHead,
        decision: Forward,
        response: OriginResponse,
        flight: Flight | None,
        times: tuple[float, float],
        elapsed: float,
        store_it: bool,
    ) -> Fetched | None:
        """RFC 9111 §3.4: join a 206 with the stored partial and answer the client from the result.

        ``None`` when they do not combine and the client's own Range was sent (then the 206 is its answer); when a
        narrowed Range was sent, the client's own Range is asked for after all.
        """
        found = _combined_entry(job, outgoing, decision.partial, response, times)
        if found is not None:
            entry, ttl = found
            await response.release()
            refused = await _put(job, entry, ttl)
            _publish(flight, _outcome(entry, refused) if entry.head.status == 200 else NotShared(Reason.PARTIAL))
            return Fetched(
                entry.head,
                entry.body,
                206,
                elapsed,
                entry=entry,
                stored=refused is None,
                not_stored=refused,
                combined=True,
                times=times,
            )
        if decision.range is None:
            return None
        await response.release()
        return await self._send_and_store(job, Forward(decision.fwd, decision.reason), flight, store_it)

    async def _refreshed(
        self,
        job: Job,
        outgoing: RequestHead,
        entry: Entry,
        not_modified: ResponseHead,
        flight: Flight | None,
        times: tuple[float, float],
        elapsed: float,
    ) -> Fetched:
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
            return Fetched(
                merged, fresh.body, upstream_status, elapsed, entry=fresh, revalidated=True, not_stored=verdict.reason
            )
        fresh = replace(
            _entry(job.key, outgoing, verdict, entry.body, route, request_time, response_time),
            url=entry.url,
            vary=entry.vary,
            tags=tuple(dict.fromkeys((*entry.tags, *_tags(verdict, route)))),
        )
        refused = await _put(job, fresh, verdict.ttl)
        _publish(flight, _outcome(fresh, refused))
        return Fetched(
            fresh.head,
            fresh.body,
            upstream_status,
            elapsed,
            entry=fresh,
            stored=refused is None,
            revalidated=True,
            not_stored=refused,
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
    ) -> Fetched:
        """RFC 9111 §4.3.5: a 200 to HEAD whose validators match freshens the stored GET response; one whose
        validators differ makes it stale. The client gets the HEAD response either way."""
        if head.status == 200 and head_matches(entry.head, len(entry.body), head):
            return await self._refreshed(job, outgoing, entry, head, flight, times, elapsed)
        if head.status == 200:
            await _put(job, stale_copy(entry), job.route.policy.keep)
        _publish(flight, NotShared(Reason.STALE))
        return Fetched(head, None, head.status, elapsed, times=times)


async def store_answer(job: Job, fetched: Fetched, since: float) -> bool:
    """Store a response received outside a cache fetch (a POST answer that represents its target URI for a GET,
    RFC 9110 §9.3.3) under ``job``'s key, if ``assess`` allows it for ``job.request``.

    ``since``: a time after the POST's own invalidation (the answer is what the write produced, so the store's
    invalidation rule must not refuse it)."""
    if fetched.body is None or fetched.times is None:
        return False
    request_time, response_time = fetched.times
    verdict = assess(
        job.request,
        fetched.head,
        job.route.policy,
        request_time=request_time,
        response_time=response_time,
        body_size=len(fetched.body),
    )
    if isinstance(verdict, DontStore):
        return False
    entry = _entry(job.key, job.request, verdict, fetched.body, job.route, request_time, response_time)
    return await _put(job, entry, verdict.ttl, since=since) is None


def _combined_entry(
    job: Job, outgoing: RequestHead, partial: Entry | None, response: OriginResponse, times: tuple[float, float]
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


def _outcome(entry: Entry, refused: Reason | None) -> Shared | NotShared:
    """What followers get: the entry, unless an invalidation since the fetch began refused it (then they go
    upstream themselves: some may have arrived after the write)."""
    return NotShared(Reason.INVALIDATED) if refused is Reason.INVALIDATED else Shared(entry)


def _publish(flight: Flight | None, outcome: Shared | NotShared) -> None:
    if flight is not None:
        flight.publish(outcome)


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


_REFUSALS: Final = {
    PutResult.STORED: None,
    PutResult.UNAVAILABLE: Reason.STORE_UNAVAILABLE,
    PutResult.INVALIDATED: Reason.INVALIDATED,
}


async def _put(job: Job, entry: Entry, ttl: float, *, since: float | None = None) -> Reason | None:
    """Why the entry was not stored (``None``: it was). ``INVALIDATED``: an invalidation covering it came after the
    fetch began (this process's record, or the store's); ``STORE_UNAVAILABLE``: an error, or a shared store that
    could not take it (Redis down)."""
    if job.fence is not None and job.fence.crossed(job.key, entry):
        return Reason.INVALIDATED
    if since is None and job.fence is not None:
        since = job.fence.since
    try:
        if job.confirming is not None:  # the store says whether it took the entry (``ConfirmingPut``, Redis)
            return _REFUSALS[await job.confirming.store(job.key, entry, ttl, since=since)]
        await job.store.put(job.key, entry, ttl)
    except StorageError as error:
        log.warning("storing %s failed: %s", entry.url, error)
        return Reason.STORE_UNAVAILABLE
    return None
