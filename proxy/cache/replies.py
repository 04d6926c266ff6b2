"""Answers to the outcomes of going upstream: a fresh response, a 304 that refreshed an entry, a follower's shared
entry, a failure (stale-if-error or 502/504), a pass-through. Each carries its RFC 9211 ``Cache-Status`` line.
"""

from __future__ import annotations

from typing import Any

from proxy.cache.answers import Answer, CacheOutcome, entry_answer, error_answer, response_answer
from proxy.cache.fetch import Exchange, upstream_error_text
from proxy.clock import Clock
from proxy.errors import UpstreamBusy, UpstreamError
from proxy.messages import Entry, RequestHead
from proxy.rfc.age import current_age, forwarded_age
from proxy.rfc.cache_status import cache_status
from proxy.rfc.decisions import Decision, Forward, Fwd, Reason, Revalidate, Serve
from proxy.rfc.directives import response_directives
from proxy.rfc.reuse import ttl_remaining


def fallback(decision: Decision) -> Entry | None:
    """The stored entry that may stand in for an upstream failure (RFC 5861 §4), if the decision allows one."""
    if isinstance(decision, Revalidate) and decision.stale_if_error:
        return decision.entry
    if isinstance(decision, Forward):
        return decision.fallback
    return None


def fwd_of(decision: Decision) -> Fwd:
    return decision.fwd if isinstance(decision, Forward) else Fwd.STALE


def must_revalidate(entry: Entry) -> bool:
    """RFC 9111 §5.2.2.2, §5.2.2.8, §5.2.2.10 (unless a rule forced the entry's freshness)."""
    if entry.forced:
        return False
    return response_directives(entry.head.headers).forbids_stale()


class Replies:
    def __init__(self, name: str, clock: Clock) -> None:
        self.name = name
        self.clock = clock

    def status(self, **params: Any) -> str:
        return cache_status(self.name, **params)

    def served(self, request: RequestHead, decision: Serve) -> Answer:
        """A hit: fresh, or stale where the origin, a rule or the client allows it."""
        entry = decision.entry
        ttl = ttl_remaining(entry, self.clock.now())
        if decision.reason is Reason.FRESH:
            return entry_answer(request, entry, decision.age, self.status(hit=True, ttl=ttl), CacheOutcome.HIT)
        line = self.status(hit=True, ttl=ttl, detail=decision.reason)
        return entry_answer(request, entry, decision.age, line, CacheOutcome.STALE, decision.reason)

    def collapsed(self, request: RequestHead, entry: Entry) -> Answer:
        """A follower answered from its leader's fetch (in this process or another)."""
        age = current_age(entry, self.clock.now())
        return entry_answer(request, entry, age, self.status(fwd=Fwd.MISS, collapsed=True), CacheOutcome.COLLAPSED)

    def exchanged(self, request: RequestHead, exchange: Exchange, fwd: Fwd) -> Answer:
        if exchange.collapsed and exchange.entry is not None:
            return self.collapsed(request, exchange.entry)
        fwd_status = exchange.upstream_status if fwd is Fwd.STALE else None
        line = self.status(fwd=fwd, fwd_status=fwd_status, stored=exchange.stored, detail=exchange.detail or None)
        if (exchange.revalidated or exchange.combined) and exchange.entry is not None:
            age = current_age(exchange.entry, self.clock.now())
            outcome = CacheOutcome.REVALIDATED if exchange.revalidated else CacheOutcome.MISS
            answer = entry_answer(request, exchange.entry, age, line, outcome, exchange.detail)
        elif (whole := _whole_for_range(request, exchange)) is not None:
            age = current_age(whole, self.clock.now())
            answer = entry_answer(request, whole, age, line, CacheOutcome.MISS, exchange.detail)
        else:
            answer = response_answer(
                request,
                exchange.head,
                exchange.body,
                line,
                CacheOutcome.MISS,
                exchange.detail,
                age=self._age_of(exchange),
            )
            _attach_stream(answer, request, exchange)
        return _with_upstream(answer, exchange)

    def passed(self, request: RequestHead, exchange: Exchange, fwd: Fwd, reason: Reason) -> Answer:
        """A response forwarded without the cache (bypassed route, unsafe method): the client's conditionals were
        the origin's to answer."""
        line = self.status(fwd=fwd, detail=reason)
        answer = response_answer(
            request,
            exchange.head,
            exchange.body,
            line,
            CacheOutcome.BYPASS,
            reason,
            conditional=False,
            age=self._age_of(exchange),
        )
        _attach_stream(answer, request, exchange)
        return _with_upstream(answer, exchange)

    def _age_of(self, exchange: Exchange) -> float | None:
        """RFC 9111 §4.2.3: the age of a response on its way through, stored or not (``Age`` on every response)."""
        now = self.clock.now()
        if exchange.entry is not None:
            return current_age(exchange.entry, now)
        if exchange.times is None:
            return None
        return forwarded_age(exchange.head.headers, *exchange.times, now)

    def failed(self, request: RequestHead, decision: Decision, error: UpstreamError) -> Answer:
        """The upstream failed: serve stale where RFC 5861 allows, else 502/504 with a one-line body."""
        stale = fallback(decision)
        if stale is not None:
            return self.stale_if_error(request, stale, fwd_of(decision), None)
        status = error.status
        if isinstance(decision, Revalidate) and must_revalidate(decision.entry):
            status = 504  # RFC 9111 §5.2.2.2: never stale; a disconnected cache answers 504
        return self.error(status, error, fwd_of(decision))

    def error(self, status: int, error: UpstreamError, fwd: Fwd) -> Answer:
        line = self.status(fwd=fwd, detail=error.detail)
        if isinstance(error, UpstreamBusy) and status == error.status:
            return busy_answer(line, error.detail)
        return error_answer(status, upstream_error_text(status, error), line, error.detail)

    def stale_if_error(self, request: RequestHead, entry: Entry, fwd: Fwd, upstream_status: int | None) -> Answer:
        now = self.clock.now()
        ttl = ttl_remaining(entry, now)
        line = self.status(fwd=fwd, fwd_status=upstream_status, ttl=ttl, detail=Reason.STALE_IF_ERROR)
        return entry_answer(request, entry, current_age(entry, now), line, CacheOutcome.STALE, Reason.STALE_IF_ERROR)

    def only_if_cached(self, reason: Reason) -> Answer:
        line = self.status(fwd=Fwd.MISS, detail=reason)
        return error_answer(504, "504 Gateway Timeout: not in cache (only-if-cached)", line, reason)


BUSY_TEXT = "503 Service Unavailable: every upstream connection is busy; retry shortly"
RETRY_AFTER = b"1"  # seconds: the pool wait is about that long, and a shed request is cheap to retry


def busy_answer(status_line: str, detail: str) -> Answer:
    """The pool stayed full for the whole bounded wait (``UpstreamBusy``): shed with ``Retry-After``
    (RFC 9110 §15.6.4, §10.2.3) instead of queueing the client behind the others."""
    answer = error_answer(503, BUSY_TEXT, status_line, detail)
    answer.headers.append((b"retry-after", RETRY_AFTER))
    return answer


def _whole_for_range(request: RequestHead, exchange: Exchange) -> Entry | None:
    """The stored whole 200 a Range request's fetch brought (a revalidation asks for all of it), to cut the range
    from (RFC 9110 §14); ``None`` when there is none, or when the client's own Set-Cookie would be lost."""
    entry = exchange.entry
    if entry is None or "range" not in request.headers or "set-cookie" in exchange.head.headers:
        return None
    return entry if exchange.head.status == 200 and entry.head.status == 200 else None


def _attach_stream(answer: Answer, request: RequestHead, exchange: Exchange) -> None:
    """A body too large to read whole streams from the upstream; the edge releases the connection when done."""
    if exchange.body is None:
        if request.method != "HEAD":
            answer.stream = exchange.stream()
        answer.release = exchange.close


def _with_upstream(answer: Answer, exchange: Exchange) -> Answer:
    answer.upstream_time = exchange.elapsed
    answer.extra["upstream_status"] = str(exchange.upstream_status)
    return answer
