"""Reuse: whether a stored response answers a request, and if not, how the upstream is asked (RFC 9111 §4).

The steps, in order: pick the variant (§4.1, the most recent match); refuse an anonymous entry to an
authorized request (house rule); use a stored incomplete response only for a Range it covers (§3.3); obey what
forces validation (response ``no-cache`` §5.2.2.4, request
``no-cache`` §5.2.1.4, ``max-age`` §5.2.1.1, ``min-fresh`` §5.2.1.3); serve a fresh entry (§4.2); serve a
stale one only where the origin, the route or the client allows it (RFC 5861 §3 ``stale-while-revalidate``,
§5.2.1.2 ``max-stale``) and never against ``must-revalidate``, ``proxy-revalidate`` or ``s-maxage`` (§4.2.4);
otherwise revalidate when there is a validator, or refetch. ``only-if-cached`` (§5.2.1.7) turns every trip
upstream into ``Unsatisfiable``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from proxy.messages import Entry, RequestHead
from proxy.rfc.age import current_age
from proxy.rfc.decisions import Decision, Forward, Fwd, Reason, Revalidate, Serve, Unsatisfiable
from proxy.rfc.directives import EMPTY, Directives, request_directives, response_directives
from proxy.rfc.partial import covers, is_partial, narrowed
from proxy.rfc.validation import has_validator
from proxy.rfc.vary import vary_matches

_MUST_REVALIDATE: tuple[str, ...] = ("must-revalidate", "proxy-revalidate")


def is_fresh(entry: Entry, now: float) -> bool:
    """RFC 9111 §4.2: fresh while the current age is below the freshness lifetime."""
    return current_age(entry, now) < entry.freshness


def ttl_remaining(entry: Entry, now: float) -> float:
    """Freshness lifetime minus current age: negative once stale (the RFC 9211 §2.7 ``ttl``)."""
    return entry.freshness - current_age(entry, now)


def plain_hit_age(candidates: Sequence[Entry], now: float) -> float | None:
    """``decide`` for a plain request, in a few operations: the age to serve the one stored entry at, or ``None``.

    A plain request is a GET or HEAD without Cache-Control, Pragma, Authorization or conditional fields: none of
    the request-side rules of RFC 9111 §4 and §5.2.1 apply to it. For it, ``decide`` serves fresh exactly when
    there is one candidate, without a Vary snapshot, that is fresh (§4.2) and does not demand validation with an
    unqualified ``no-cache`` (§5.2.2.4; ignored when a rule forced the freshness). ``None`` means: ask ``decide``.
    """
    if len(candidates) != 1:
        return None
    entry = candidates[0]
    if entry.vary or entry.head.status == 206:
        return None
    age = entry.initial_age + max(0.0, now - entry.response_time)
    if age >= entry.freshness:
        return None
    if not entry.forced and response_directives(entry.head.headers).unqualified("no-cache"):
        return None
    return age


def select_variant(request: RequestHead, candidates: Sequence[Entry]) -> Entry | None:
    """RFC 9111 §4.1: among the entries whose Vary snapshot matches, the one with the most recent response."""
    matching = [e for e in candidates if vary_matches(e.vary, request)]
    return max(matching, key=lambda e: e.response_time, default=None)


@dataclass(frozen=True, slots=True)
class _Case:
    """One candidate under consideration: the entry, its current age, and both sets of directives."""

    entry: Entry
    age: float
    request: Directives
    response: Directives

    @property
    def fresh(self) -> bool:
        return self.age < self.entry.freshness

    @property
    def no_stale(self) -> bool:
        return self.response.forbids_stale()

    @property
    def response_no_cache(self) -> bool:
        """Unqualified ``no-cache`` (RFC 9111 §5.2.2.4); the qualified form restricts named fields."""
        return self.response.unqualified("no-cache")


# The verdicts that carry nothing of the request (frozen values: one of each serves every request).
_URI_MISS = Forward(Fwd.URI_MISS, Reason.NOT_STORED)
_VARY_MISS = Forward(Fwd.VARY_MISS, Reason.VARY_MISMATCH)
_AUTHORIZATION_MISS = Forward(Fwd.MISS, Reason.AUTHORIZATION)


def _lookup(request: RequestHead, candidates: Sequence[Entry]) -> Entry | Forward:
    if not candidates:
        return _URI_MISS
    entry = select_variant(request, candidates)
    if entry is None:
        return _VARY_MISS
    if "authorization" in request.headers and not entry.authorized:
        return _AUTHORIZATION_MISS
    if is_partial(entry) and not covers(entry, request):
        return Forward(Fwd.PARTIAL, Reason.PARTIAL, partial=entry, range=narrowed(entry, request))
    return entry


def _stale_if_error(case: _Case) -> bool:
    """RFC 5861 §4: the entry may stand in for an upstream error (never under response ``no-cache``, §4.2.4).

    The window is the entry's own (origin and route, already zero under ``must-revalidate`` and the like),
    widened by a request ``stale-if-error=N`` unless the response forbids stale use.
    """
    if case.response_no_cache:
        return False
    window = case.entry.stale_if_error
    asked = case.request.delta("stale-if-error")
    if asked is not None and not case.no_stale:
        window = max(window, float(asked))
    return case.age < case.entry.freshness + window


def _upstream(case: _Case, reason: Reason, fwd: Fwd) -> Revalidate | Forward:
    """Revalidate when the entry has a validator (RFC 9111 §4.3.1), else refetch with it as a fallback."""
    fallback = _stale_if_error(case)
    if has_validator(case.entry.head):
        return Revalidate(case.entry, reason, stale_if_error=fallback)
    why = Reason.NO_VALIDATOR if reason is Reason.STALE else reason
    return Forward(fwd, why, fallback=case.entry if fallback else None)


def _forced_validation(case: _Case) -> Revalidate | Forward | None:
    """Directives that send the request upstream however fresh the entry (RFC 9111 §5.2.2.4, §5.2.1)."""
    if case.response_no_cache:
        return _upstream(case, Reason.RESPONSE_NO_CACHE, Fwd.STALE)
    if case.request.has("no-cache"):
        return _upstream(case, Reason.REQUEST_NO_CACHE, Fwd.REQUEST)
    max_age = case.request.delta("max-age")
    if max_age is not None and case.age > max_age:
        return _upstream(case, Reason.REQUEST_MAX_AGE, Fwd.REQUEST)
    min_fresh = case.request.delta("min-fresh")
    if min_fresh is not None and case.entry.freshness - case.age < min_fresh:
        return _upstream(case, Reason.REQUEST_MIN_FRESH, Fwd.REQUEST)
    return None


def _max_stale_allows(case: _Case) -> bool:
    """RFC 9111 §5.2.1.2: bare ``max-stale`` accepts any staleness, ``max-stale=N`` up to N seconds."""
    if not case.request.has("max-stale"):
        return False
    if case.request.value("max-stale") is None:
        return True
    limit = case.request.delta("max-stale") or 0
    return case.age - case.entry.freshness <= limit


def _serve(case: _Case) -> Serve | None:
    """A fresh entry (RFC 9111 §4.2), or a stale one the origin, route or client allows (§4.2.4, RFC 5861)."""
    if case.fresh:
        return Serve(case.entry, case.age)
    if case.no_stale:
        return None
    if case.age < case.entry.freshness + case.entry.stale_while_revalidate:
        return Serve(case.entry, case.age, Reason.STALE_WHILE_REVALIDATE, revalidate=True)
    if _max_stale_allows(case):
        return Serve(case.entry, case.age, Reason.MAX_STALE)
    return None


def _stale_reason(case: _Case) -> Reason:
    return Reason.MUST_REVALIDATE if any(case.response.has(d) for d in _MUST_REVALIDATE) else Reason.STALE


def decide(request: RequestHead, candidates: Sequence[Entry], now: float) -> Decision:
    """RFC 9111 §4: serve a stored entry, revalidate it, or forward the request; see the module docstring for
    the order.

    A request ``no-store`` concerns storing only and does not prevent serving from cache (§5.2.1.5).
    """
    directives = request_directives(request.headers)
    only_if_cached = directives.has("only-if-cached")
    found = _lookup(request, candidates)
    if isinstance(found, Forward):
        return Unsatisfiable() if only_if_cached else found
    # An entry whose freshness a rule forced is judged by that rule alone, not by the origin's directives.
    stored = EMPTY if found.forced else response_directives(found.head.headers)
    case = _Case(found, current_age(found, now), directives, stored)
    decision: Decision | None = _forced_validation(case) or _serve(case)
    if decision is None:
        decision = _upstream(case, _stale_reason(case), Fwd.STALE)
    if only_if_cached and not isinstance(decision, Serve):
        return Unsatisfiable()
    if isinstance(decision, Revalidate) and len(candidates) > 1:
        return replace(decision, sole=False)
    return decision
