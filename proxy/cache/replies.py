"""Which ``Answer`` each outcome of the driver gets: a hit, a fresh response, a 304 that refreshed an entry, a
follower's shared entry, a failure (stale-if-error or 502/503/504), a pass-through.

Each carries its typed RFC 9211 ``Cache-Status`` (``CacheStatus``): the ``detail`` is always a ``Reason`` (an upstream
failure too, by ``failure_reason``), never a free string.
"""

from __future__ import annotations

from proxy.cache.answer import (
    Answer,
    Asked,
    CacheOutcome,
    CacheStatus,
    Upstream,
    entry_answer,
    error_answer,
    response_answer,
)
from proxy.cache.fetch import Fetched, fwd_of, stand_in, upstream_error_text
from proxy.clock import Clock
from proxy.errors import UpstreamBusy, UpstreamError
from proxy.messages import Entry, RequestHead
from proxy.rfc.age import current_age, forwarded_age
from proxy.rfc.decisions import Decision, Fwd, Reason, Revalidate, Serve
from proxy.rfc.directives import response_directives
from proxy.rfc.reuse import ttl_remaining

# The Cache-Status detail of each upstream failure, by the error's own token (``proxy.errors``).
_FAILURES = {
    reason.value: reason
    for reason in (
        Reason.UPSTREAM_ERROR,
        Reason.CONNECT_FAILED,
        Reason.UPSTREAM_TIMEOUT,
        Reason.PROTOCOL_ERROR,
        Reason.POOL_EXHAUSTED,
    )
}


def failure_reason(error: UpstreamError) -> Reason:
    """The typed reason for an upstream failure (an unknown token reads as the generic ``upstream-error``)."""
    return _FAILURES.get(error.detail, Reason.UPSTREAM_ERROR)


def must_revalidate(entry: Entry) -> bool:
    """RFC 9111 §5.2.2.2, §5.2.2.8, §5.2.2.10 (unless a rule forced the entry's freshness)."""
    if entry.forced:
        return False
    return response_directives(entry.head.headers).forbids_stale()


class Replies:
    def __init__(self, name: str, clock: Clock) -> None:
        self.name = name
        self.clock = clock

    def asked(self, request: RequestHead, route: str = "default", key: str | None = None) -> Asked:
        return Asked(request, route, key, self.name)

    def status(self, *, hit: bool = False, ttl: float | None = None) -> str:
        """A hit's ``Cache-Status`` line (for the edge's hit path, which memoises it per ttl)."""
        return CacheStatus(hit=hit, ttl=ttl).line(self.name)

    def served(self, asked: Asked, decision: Serve) -> Answer:
        """A hit: fresh, or stale where the origin, a rule or the client allows it."""
        entry = decision.entry
        ttl = ttl_remaining(entry, self.clock.now())
        if decision.reason is Reason.FRESH:
            return entry_answer(asked, entry, decision.age, CacheStatus(hit=True, ttl=ttl), CacheOutcome.HIT)
        status = CacheStatus(hit=True, ttl=ttl, detail=decision.reason)
        return entry_answer(asked, entry, decision.age, status, CacheOutcome.STALE)

    def collapsed(self, asked: Asked, entry: Entry) -> Answer:
        """A follower answered from its leader's fetch (in this process or another)."""
        age = current_age(entry, self.clock.now())
        return entry_answer(asked, entry, age, CacheStatus(fwd=Fwd.MISS, collapsed=True), CacheOutcome.COLLAPSED)

    def fetched(self, asked: Asked, fetched: Fetched, fwd: Fwd, reason: Reason | None = None) -> Answer:
        """The answer to a fetch this request made; ``reason`` overrides the fetch's own (why it was not stored)."""
        if fetched.collapsed and fetched.entry is not None:
            return self.collapsed(asked, fetched.entry)
        fwd_status = fetched.upstream_status if fwd is Fwd.STALE else None
        detail = fetched.not_stored if reason is None else reason
        status = CacheStatus(fwd=fwd, fwd_status=fwd_status, stored=fetched.stored, detail=detail)
        upstream = Upstream(fetched.elapsed, fetched.upstream_status)
        if (fetched.revalidated or fetched.combined) and fetched.entry is not None:
            age = current_age(fetched.entry, self.clock.now())
            outcome = CacheOutcome.REVALIDATED if fetched.revalidated else CacheOutcome.MISS
            return entry_answer(asked, fetched.entry, age, status, outcome, upstream)
        if (whole := _whole_for_range(asked.request, fetched)) is not None:
            age = current_age(whole, self.clock.now())
            return entry_answer(asked, whole, age, status, CacheOutcome.MISS, upstream)
        return _response(asked, fetched, status, CacheOutcome.MISS, upstream, self._age_of(fetched), conditional=True)

    def passed(self, asked: Asked, fetched: Fetched, fwd: Fwd, reason: Reason) -> Answer:
        """A response forwarded without the cache (bypassed route, unsafe method): the client's conditionals were
        the origin's to answer."""
        upstream = Upstream(fetched.elapsed, fetched.upstream_status)
        status = CacheStatus(fwd=fwd, detail=reason)
        age = self._age_of(fetched)
        return _response(asked, fetched, status, CacheOutcome.BYPASS, upstream, age, conditional=False)

    def _age_of(self, fetched: Fetched) -> float | None:
        """RFC 9111 §4.2.3: the age of a response on its way through, stored or not (``Age`` on every response)."""
        now = self.clock.now()
        if fetched.entry is not None:
            return current_age(fetched.entry, now)
        if fetched.times is None:
            return None
        return forwarded_age(fetched.head.headers, *fetched.times, now)

    def failed(self, asked: Asked, decision: Decision, error: UpstreamError) -> Answer:
        """The upstream failed: serve stale where RFC 5861 allows, else 502/503/504 with a one-line body."""
        stale = stand_in(decision)
        if stale is not None:
            return self.stale_if_error(asked, stale, fwd_of(decision), None)
        code = error.status
        if isinstance(decision, Revalidate) and must_revalidate(decision.entry):
            code = 504  # RFC 9111 §5.2.2.2: never stale; a disconnected cache answers 504
        return self.error(asked, code, error, fwd_of(decision))

    def error(self, asked: Asked, code: int, error: UpstreamError, fwd: Fwd) -> Answer:
        status = CacheStatus(fwd=fwd, detail=failure_reason(error))
        if isinstance(error, UpstreamBusy) and code == error.status:
            return busy_answer(asked, status)
        return error_answer(asked, code, upstream_error_text(code, error), status)

    def stale_if_error(self, asked: Asked, entry: Entry, fwd: Fwd, upstream_status: int | None) -> Answer:
        now = self.clock.now()
        ttl = ttl_remaining(entry, now)
        status = CacheStatus(fwd=fwd, fwd_status=upstream_status, ttl=ttl, detail=Reason.STALE_IF_ERROR)
        return entry_answer(asked, entry, current_age(entry, now), status, CacheOutcome.STALE)

    def only_if_cached(self, asked: Asked, reason: Reason) -> Answer:
        status = CacheStatus(fwd=Fwd.MISS, detail=reason)
        return error_answer(asked, 504, "504 Gateway Timeout: not in cache (only-if-cached)", status)


BUSY_TEXT = "503 Service Unavailable: every upstream connection is busy; retry shortly"
RETRY_AFTER = b"1"  # seconds: the pool wait is about that long, and a shed request is cheap to retry


def busy_answer(asked: Asked, status: CacheStatus) -> Answer:
    """The pool stayed full for the whole bounded wait (``UpstreamBusy``): shed with ``Retry-After``
    (RFC 9110 §15.6.4, §10.2.3) instead of queueing the client behind the others."""
    return error_answer(asked, 503, BUSY_TEXT, status, ((b"retry-after", RETRY_AFTER),))


def _whole_for_range(request: RequestHead, fetched: Fetched) -> Entry | None:
    """The stored whole 200 a Range request's fetch brought (a revalidation asks for all of it), to cut the range
    from (RFC 9110 §14); ``None`` when there is none, or when the client's own Set-Cookie would be lost."""
    entry = fetched.entry
    if entry is None or "range" not in request.headers or "set-cookie" in fetched.head.headers:
        return None
    return entry if fetched.head.status == 200 and entry.head.status == 200 else None


def _response(
    asked: Asked,
    fetched: Fetched,
    status: CacheStatus,
    outcome: CacheOutcome,
    upstream: Upstream,
    age: float | None,
    *,
    conditional: bool,
) -> Answer:
    """A response just received; a body too large to read whole streams from the origin, released by the edge (a
    HEAD answer, whose response has no body, is never streamed)."""
    streamed = fetched.body is None and fetched.response is not None
    return response_answer(
        asked,
        fetched.head,
        fetched.body,
        status,
        outcome,
        conditional=conditional,
        stream=fetched.stream() if streamed and asked.request.method != "HEAD" else None,
        release=fetched.close if streamed else None,
        upstream=upstream,
        age=age,
    )
