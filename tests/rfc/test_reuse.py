"""Reuse decisions: RFC 9111 §4 (selection, freshness, validation), §5.2.1/§5.2.2 directives, RFC 5861 stale windows.

Every entry arrived at ``RECEIVED`` and is looked at ``NOW``, 100 seconds later, so its age is 100 plus ``initial_age``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest

from proxy.messages import Entry, Headers, RequestHead, ResponseHead
from proxy.rfc.decisions import Decision, Forward, Fwd, Reason, Revalidate, Serve, Unsatisfiable
from proxy.rfc.reuse import decide, is_fresh, select_variant, ttl_remaining
from proxy.rfc.vary import vary_snapshot

Fields = list[tuple[str, str]]
NOW = 1000.0
RECEIVED = 900.0
CC = "Cache-Control"
ETAG = ("ETag", '"v1"')


def request(fields: Fields | None = None) -> RequestHead:
    return RequestHead("GET", "https", "api.example", "/items", headers=Headers(fields or []))


@dataclass(frozen=True)
class Stored:
    """The entry under test, described by its response fields and lifetimes."""

    fields: Fields = field(default_factory=lambda: [(CC, "max-age=300"), ETAG])
    freshness: float = 300.0
    initial_age: float = 0.0
    swr: float = 0.0
    sie: float = 0.0
    authorized: bool = False
    forced: bool = False

    def entry(self) -> Entry:
        return Entry(
            key="k",
            url="https://api.example/items",
            head=ResponseHead(200, Headers(self.fields)),
            body=b"{}",
            request_time=RECEIVED - 1,
            response_time=RECEIVED,
            freshness=self.freshness,
            initial_age=self.initial_age,
            stale_while_revalidate=self.swr,
            stale_if_error=self.sie,
            authorized=self.authorized,
            forced=self.forced,
        )


def stale(*fields: tuple[str, str], swr: float = 0.0, sie: float = 0.0) -> Stored:
    """A response that went stale 40 seconds ago (freshness 60, age 100)."""
    return Stored([(CC, "max-age=60"), *fields], 60.0, swr=swr, sie=sie)


Expect = Callable[[Entry], Decision]

CASES: list[tuple[str, Fields, Stored, Expect]] = [
    ("rfc9111-4.2-fresh-serves", [], Stored(), lambda e: Serve(e, 100.0)),
    (
        "rule-override-entry-ignores-origin-no-cache-at-reuse",
        [],
        Stored([(CC, "no-cache, must-revalidate"), ETAG], forced=True),
        lambda e: Serve(e, 100.0),
    ),
    (
        "rfc9111-5.2.2.4-origin-no-cache-revalidates-without-override",
        [],
        Stored([(CC, "no-cache"), ETAG]),
        lambda e: Revalidate(e, Reason.RESPONSE_NO_CACHE),
    ),
    ("rfc9111-4.2.3-age-includes-initial-age", [], Stored(initial_age=30.0), lambda e: Serve(e, 130.0)),
    (
        "rfc9111-4.2-age-equal-to-freshness-is-stale",
        [],
        Stored(freshness=100.0),
        lambda e: Revalidate(e, Reason.STALE),
    ),
    ("rfc9111-4.3.1-stale-revalidates", [], stale(ETAG), lambda e: Revalidate(e, Reason.STALE)),
    (
        "rfc9111-4.3.1-stale-last-modified-revalidates",
        [],
        stale(("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")),
        lambda e: Revalidate(e, Reason.STALE),
    ),
    ("rfc9111-4.3.1-stale-without-validator-refetches", [], stale(), lambda e: Forward(Fwd.STALE, Reason.NO_VALIDATOR)),
    (
        "rfc9111-5.2.1.4-request-no-cache-revalidates",
        [(CC, "no-cache")],
        Stored(),
        lambda e: Revalidate(e, Reason.REQUEST_NO_CACHE, stale_if_error=True),
    ),
    (
        "rfc9111-5.4-pragma-no-cache-revalidates",
        [("Pragma", "no-cache")],
        Stored(),
        lambda e: Revalidate(e, Reason.REQUEST_NO_CACHE, stale_if_error=True),
    ),
    (
        "rfc9111-5.2.1.4-request-no-cache-without-validator-refetches",
        [(CC, "no-cache")],
        Stored([(CC, "max-age=300")]),
        lambda e: Forward(Fwd.REQUEST, Reason.REQUEST_NO_CACHE, fallback=e),
    ),
    (
        "rfc9111-5.2.1.1-request-max-age-exceeded",
        [(CC, "max-age=99")],
        Stored(),
        lambda e: Revalidate(e, Reason.REQUEST_MAX_AGE, stale_if_error=True),
    ),
    ("rfc9111-5.2.1.1-request-max-age-equal-serves", [(CC, "max-age=100")], Stored(), lambda e: Serve(e, 100.0)),
    (
        "rfc9111-5.2.1.1-request-max-age-zero",
        [(CC, "max-age=0")],
        Stored([(CC, "max-age=300")]),
        lambda e: Forward(Fwd.REQUEST, Reason.REQUEST_MAX_AGE, fallback=e),
    ),
    (
        "rfc9111-5.2.1.3-min-fresh-unmet",
        [(CC, "min-fresh=201")],
        Stored(),
        lambda e: Revalidate(e, Reason.REQUEST_MIN_FRESH, stale_if_error=True),
    ),
    ("rfc9111-5.2.1.3-min-fresh-met", [(CC, "min-fresh=200")], Stored(), lambda e: Serve(e, 100.0)),
    ("rfc9111-5.2.1.2-max-stale-any", [(CC, "max-stale")], stale(ETAG), lambda e: Serve(e, 100.0, Reason.MAX_STALE)),
    (
        "rfc9111-5.2.1.2-max-stale-within",
        [(CC, "max-stale=40")],
        stale(ETAG),
        lambda e: Serve(e, 100.0, Reason.MAX_STALE),
    ),
    ("rfc9111-5.2.1.2-max-stale-exceeded", [(CC, "max-stale=39")], stale(ETAG), lambda e: Revalidate(e, Reason.STALE)),
    (
        "rfc9111-5.2.1.2-max-stale-bounded-by-max-age",
        [(CC, "max-stale, max-age=90")],
        stale(ETAG),
        lambda e: Revalidate(e, Reason.REQUEST_MAX_AGE),
    ),
    (
        "rfc9111-5.2.2.2-must-revalidate-no-stale",
        [(CC, "max-stale, stale-if-error=600")],
        stale(ETAG, (CC, "must-revalidate")),
        lambda e: Revalidate(e, Reason.MUST_REVALIDATE, stale_if_error=False),
    ),
    (
        "rfc9111-5.2.2.2-must-revalidate-ignores-swr-window",
        [],
        stale(ETAG, (CC, "must-revalidate"), swr=100.0),
        lambda e: Revalidate(e, Reason.MUST_REVALIDATE),
    ),
    (
        "rfc9111-5.2.2.2-must-revalidate-fresh-serves",
        [],
        Stored([(CC, "max-age=300, must-revalidate"), ETAG]),
        lambda e: Serve(e, 100.0),
    ),
    (
        "rfc9111-5.2.2.8-proxy-revalidate-no-stale",
        [(CC, "max-stale")],
        stale(ETAG, (CC, "proxy-revalidate")),
        lambda e: Revalidate(e, Reason.MUST_REVALIDATE),
    ),
    (
        "rfc9111-5.2.2.10-s-maxage-no-max-stale",
        [(CC, "max-stale")],
        Stored([(CC, "s-maxage=60"), ETAG], 60.0),
        lambda e: Revalidate(e, Reason.STALE),
    ),
    (
        "rfc9111-5.2.2.2-must-revalidate-without-validator",
        [],
        stale((CC, "must-revalidate")),
        lambda e: Forward(Fwd.STALE, Reason.MUST_REVALIDATE),
    ),
    (
        "rfc9213-targeted-must-revalidate-obeyed",
        [(CC, "max-stale")],
        Stored([("CDN-Cache-Control", "max-age=60, must-revalidate"), (CC, "max-age=60"), ETAG], 60.0),
        lambda e: Revalidate(e, Reason.MUST_REVALIDATE),
    ),
    (
        "rfc9111-5.2.2.4-response-no-cache-revalidates-fresh",
        [],
        Stored([(CC, "no-cache, max-age=300"), ETAG], sie=600.0),
        lambda e: Revalidate(e, Reason.RESPONSE_NO_CACHE, stale_if_error=False),
    ),
    (
        "rfc9111-5.2.2.4-response-no-cache-without-validator",
        [],
        Stored([(CC, "no-cache, max-age=300")]),
        lambda e: Forward(Fwd.STALE, Reason.RESPONSE_NO_CACHE),
    ),
    (
        "rfc9111-5.2.2.4-qualified-no-cache-serves",
        [],
        Stored([(CC, 'no-cache="Set-Cookie", max-age=300'), ETAG]),
        lambda e: Serve(e, 100.0),
    ),
    (
        "rfc5861-3-swr-serves-stale-and-revalidates",
        [],
        stale(ETAG, swr=41.0),
        lambda e: Serve(e, 100.0, Reason.STALE_WHILE_REVALIDATE, revalidate=True),
    ),
    (
        "rfc5861-3-swr-window-end-exclusive",
        [],
        stale(ETAG, swr=40.0),
        lambda e: Revalidate(e, Reason.STALE),
    ),
    (
        "rfc5861-3-swr-without-validator-serves",
        [],
        stale(swr=41.0),
        lambda e: Serve(e, 100.0, Reason.STALE_WHILE_REVALIDATE, revalidate=True),
    ),
    (
        "rfc5861-3-swr-not-when-client-limits-age",
        [(CC, "max-age=60")],
        stale(ETAG, swr=600.0),
        lambda e: Revalidate(e, Reason.REQUEST_MAX_AGE),
    ),
    ("rfc5861-4-sie-window", [], stale(ETAG, sie=41.0), lambda e: Revalidate(e, Reason.STALE, stale_if_error=True)),
    ("rfc5861-4-sie-window-end-exclusive", [], stale(ETAG, sie=40.0), lambda e: Revalidate(e, Reason.STALE)),
    (
        "rfc5861-4-sie-without-validator-keeps-fallback",
        [],
        stale(sie=41.0),
        lambda e: Forward(Fwd.STALE, Reason.NO_VALIDATOR, fallback=e),
    ),
    (
        "rfc5861-4-request-sie-widens-window",
        [(CC, "stale-if-error=41")],
        stale(ETAG),
        lambda e: Revalidate(e, Reason.STALE, stale_if_error=True),
    ),
    (
        "rfc5861-4-request-sie-too-short",
        [(CC, "stale-if-error=40")],
        stale(ETAG),
        lambda e: Revalidate(e, Reason.STALE, stale_if_error=False),
    ),
    (
        "rfc9111-5.2.2.10-request-sie-not-against-s-maxage",
        [(CC, "stale-if-error=600")],
        Stored([(CC, "s-maxage=60"), ETAG], 60.0),
        lambda e: Revalidate(e, Reason.STALE, stale_if_error=False),
    ),
    ("rfc9111-5.2.1.7-only-if-cached-serves-fresh", [(CC, "only-if-cached")], Stored(), lambda e: Serve(e, 100.0)),
    ("rfc9111-5.2.1.7-only-if-cached-504", [(CC, "only-if-cached")], stale(ETAG), lambda e: Unsatisfiable()),
    (
        "rfc9111-5.2.1.7-only-if-cached-with-max-stale-serves",
        [(CC, "only-if-cached, max-stale")],
        stale(ETAG),
        lambda e: Serve(e, 100.0, Reason.MAX_STALE),
    ),
    (
        "rfc9111-5.2.1.7-only-if-cached-swr-serves",
        [(CC, "only-if-cached")],
        stale(ETAG, swr=60.0),
        lambda e: Serve(e, 100.0, Reason.STALE_WHILE_REVALIDATE, revalidate=True),
    ),
    (
        "rfc9111-5.2.1.7-only-if-cached-no-cache-504",
        [(CC, "only-if-cached, no-cache")],
        Stored(),
        lambda e: Unsatisfiable(),
    ),
    (
        "rfc9111-5.2.1.7-only-if-cached-response-no-cache-504",
        [(CC, "only-if-cached")],
        Stored([(CC, "no-cache"), ETAG]),
        lambda e: Unsatisfiable(),
    ),
    ("rfc9111-5.2.1.5-request-no-store-still-serves", [(CC, "no-store")], Stored(), lambda e: Serve(e, 100.0)),
    (
        "rule-authorization-never-served-anonymous-entry",
        [("Authorization", "Bearer t")],
        Stored(),
        lambda e: Forward(Fwd.MISS, Reason.AUTHORIZATION),
    ),
    (
        "rule-authorization-only-if-cached-504",
        [("Authorization", "Bearer t"), (CC, "only-if-cached")],
        Stored(),
        lambda e: Unsatisfiable(),
    ),
    (
        "rfc9111-3.5-authorized-entry-serves-authorized-request",
        [("Authorization", "Bearer t")],
        Stored([(CC, "public, max-age=300")], authorized=True),
        lambda e: Serve(e, 100.0),
    ),
]


@pytest.mark.parametrize(("fields", "stored", "expect"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide(fields: Fields, stored: Stored, expect: Expect) -> None:
    entry = stored.entry()
    assert decide(request(fields), [entry], NOW) == expect(entry)


def with_vary(entry: Entry, fields: Fields, response_time: float = RECEIVED) -> Entry:
    names = ("accept-encoding",)
    snapshot = vary_snapshot(names, request(fields))
    return replace(entry, vary=snapshot, response_time=response_time)


def test_rfc9111_4_no_candidates_is_uri_miss() -> None:
    assert decide(request(), [], NOW) == Forward(Fwd.URI_MISS, Reason.NOT_STORED)


def test_rfc9111_5_2_1_7_only_if_cached_504_without_candidates() -> None:
    assert decide(request([(CC, "only-if-cached")]), [], NOW) == Unsatisfiable()


def test_rfc9111_4_1_vary_mismatch_is_vary_miss() -> None:
    gzip = with_vary(Stored().entry(), [("Accept-Encoding", "gzip")])
    assert decide(request([("Accept-Encoding", "br")]), [gzip], NOW) == Forward(Fwd.VARY_MISS, Reason.VARY_MISMATCH)


def test_rfc9111_4_1_vary_star_is_vary_miss() -> None:
    star = replace(Stored().entry(), vary=(("*", None),))
    assert decide(request(), [star], NOW) == Forward(Fwd.VARY_MISS, Reason.VARY_MISMATCH)


def test_rfc9111_4_1_matching_variant_selected() -> None:
    gzip = with_vary(Stored().entry(), [("Accept-Encoding", "gzip")], RECEIVED + 50)
    brotli = with_vary(Stored().entry(), [("Accept-Encoding", "br")])
    assert decide(request([("Accept-Encoding", "BR")]), [gzip, brotli], NOW) == Serve(brotli, 100.0)


def test_rfc9111_4_1_most_recent_matching_response_wins() -> None:
    older = with_vary(Stored().entry(), [("Accept-Encoding", "gzip")], RECEIVED - 10)
    newer = with_vary(Stored().entry(), [("Accept-Encoding", "gzip")], RECEIVED + 20)
    assert select_variant(request([("Accept-Encoding", "gzip")]), [older, newer]) is newer
    assert decide(request([("Accept-Encoding", "gzip")]), [newer, older], NOW) == Serve(newer, 80.0)


LIFETIME = [
    ("rfc9111-4.2-fresh-ttl", Stored(), True, 200.0),
    ("rfc9111-4.2-stale-negative-ttl", stale(), False, -40.0),
    ("rfc9111-4.2-boundary-is-stale", Stored(freshness=100.0), False, 0.0),
    ("rfc9111-4.2.3-initial-age-counts", Stored(initial_age=150.0), True, 50.0),
]


@pytest.mark.parametrize(("stored", "fresh", "ttl"), [c[1:] for c in LIFETIME], ids=[c[0] for c in LIFETIME])
def test_is_fresh_and_ttl_remaining(stored: Stored, fresh: bool, ttl: float) -> None:
    entry = stored.entry()
    assert is_fresh(entry, NOW) is fresh
    assert ttl_remaining(entry, NOW) == ttl


def test_rfc9111_4_3_4_revalidate_knows_whether_the_entry_is_alone() -> None:
    alone = stale(ETAG).entry()
    assert decide(request(), [alone], NOW) == Revalidate(alone, Reason.STALE, sole=True)
    other = replace(alone, vary=(("accept-language", "de"),), response_time=RECEIVED - 10)
    decision = decide(request(), [alone, other], NOW)
    assert decision == Revalidate(alone, Reason.STALE, sole=False)
