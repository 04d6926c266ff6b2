"""RFC 9111 §4.2.1 explicit and §4.2.2 heuristic freshness, for a shared cache."""

from __future__ import annotations

import pytest

from proxy.messages import Headers, ResponseHead
from proxy.rfc.age import format_http_date
from proxy.rfc.directives import DELTA_MAX, response_directives
from proxy.rfc.freshness import HEURISTICALLY_CACHEABLE, explicit_freshness, heuristic_freshness
from proxy.rfc.policy import Policy

T = 1_700_000_000.0


def date(offset: float) -> str:
    return format_http_date(T + offset)


EXPLICIT = [
    (
        "rfc9111-4.2.1-s-maxage-wins",
        [("Cache-Control", "max-age=60, s-maxage=120"), ("Expires", date(30))],
        120.0,
    ),
    ("rfc9111-4.2.1-s-maxage-zero-wins", [("Cache-Control", "s-maxage=0, max-age=60")], 0.0),
    ("rfc9111-4.2.1-max-age-over-expires", [("Cache-Control", "max-age=60"), ("Expires", date(30))], 60.0),
    ("rfc9111-4.2.1-expires-minus-date", [("Date", date(-10)), ("Expires", date(50))], 60.0),
    ("rfc9111-4.2.1-expires-without-date-uses-response-time", [("Expires", date(50))], 50.0),
    ("rfc9111-4.2.1-invalid-date-uses-response-time", [("Date", "yesterday"), ("Expires", date(50))], 50.0),
    ("rfc9111-4.2.1-invalid-expires-is-stale", [("Date", date(0)), ("Expires", "garbage")], 0.0),
    ("rfc9111-5.3-expires-zero-is-stale", [("Expires", "0")], 0.0),
    ("rfc9111-4.2.1-expires-before-date-is-zero", [("Date", date(0)), ("Expires", date(-100))], 0.0),
    (
        "rfc9111-5.3-several-expires-lines-invalid-so-expired",
        [("Date", date(0)), ("Expires", date(20)), ("Expires", date(90))],
        0.0,
    ),
    ("rfc9111-4.2.1-duplicate-max-age-first-wins", [("Cache-Control", "max-age=60, max-age=10")], 60.0),
    (
        "rfc9111-4.2.1-duplicate-max-age-across-lines-first-wins",
        [("Cache-Control", "max-age=15"), ("Cache-Control", "max-age=90")],
        15.0,
    ),
    ("rfc9111-4.2.1-quoted-max-age", [("Cache-Control", 'max-age="30"')], 30.0),
    (
        "rfc9111-4.2.1-malformed-max-age-is-stale",
        [("Cache-Control", "max-age=abc"), ("Expires", date(60))],
        0.0,
    ),
    ("rfc9111-4.2.1-negative-max-age-is-stale", [("Cache-Control", "max-age=-5")], 0.0),
    ("rfc9111-1.2.2-huge-max-age-capped", [("Cache-Control", "max-age=99999999999")], float(DELTA_MAX)),
    ("rfc9111-5.2-directive-names-case-insensitive", [("Cache-Control", "S-MaxAge=5")], 5.0),
    ("rfc9111-4.2.1-no-explicit-freshness", [("Date", date(0)), ("Last-Modified", date(-1000))], None),
    ("rfc9111-5.2.3-unknown-directive-no-freshness", [("Cache-Control", "community=UCI")], None),
    (
        "rfc9213-cdn-cache-control-wins",
        [("CDN-Cache-Control", "max-age=300"), ("Cache-Control", "max-age=10")],
        300.0,
    ),
    ("rfc9213-targeted-ignores-expires", [("CDN-Cache-Control", "public"), ("Expires", date(60))], None),
    (
        "rfc9213-empty-cdn-cache-control-falls-back",
        [("CDN-Cache-Control", ""), ("Cache-Control", "max-age=10"), ("Expires", date(60))],
        10.0,
    ),
]


@pytest.mark.parametrize(("fields", "expected"), [c[1:] for c in EXPLICIT], ids=[c[0] for c in EXPLICIT])
def test_explicit_freshness(fields: list[tuple[str, str]], expected: float | None) -> None:
    head = ResponseHead(200, Headers(fields))
    directives = response_directives(head.headers)
    assert explicit_freshness(head, directives, response_time=T) == expected


HEURISTIC = [
    (
        "rfc9111-4.2.2-heuristic-10pct",
        200,
        [("Date", date(0)), ("Last-Modified", date(-1000))],
        Policy(),
        100.0,
    ),
    (
        "rfc9111-4.2.2-heuristic-10pct-capped",
        200,
        [("Date", date(0)), ("Last-Modified", date(-10_000_000))],
        Policy(),
        86_400.0,
    ),
    (
        "rfc9111-4.2.2-heuristic-no-date-uses-response-time",
        200,
        [("Last-Modified", date(-500))],
        Policy(),
        50.0,
    ),
    (
        "rfc9111-4.2.2-heuristic-uses-date-not-response-time",
        200,
        [("Date", date(-200)), ("Last-Modified", date(-1200))],
        Policy(),
        100.0,
    ),
    (
        "rfc9111-4.2.2-future-last-modified-never-negative",
        200,
        [("Date", date(0)), ("Last-Modified", date(100))],
        Policy(),
        0.0,
    ),
    (
        "rfc9111-4.2.2-policy-fraction-and-cap",
        404,
        [("Date", date(0)), ("Last-Modified", date(-1000))],
        Policy(heuristic_fraction=0.5, heuristic_max=30.0),
        30.0,
    ),
    (
        "rfc9111-4.2.2-policy-fraction",
        410,
        [("Date", date(0)), ("Last-Modified", date(-1000))],
        Policy(heuristic_fraction=0.25),
        250.0,
    ),
    ("rfc9111-4.2.2-302-not-heuristically-cacheable", 302, [("Last-Modified", date(-1000))], Policy(), None),
    ("rfc9111-4.2.2-500-not-heuristically-cacheable", 500, [("Last-Modified", date(-1000))], Policy(), None),
    ("rfc9111-4.2.2-no-last-modified", 200, [("Date", date(0)), ("ETag", '"a"')], Policy(), None),
    ("rfc9111-4.2.2-invalid-last-modified", 200, [("Last-Modified", "last tuesday")], Policy(), None),
]


@pytest.mark.parametrize(
    ("status", "fields", "policy", "expected"), [c[1:] for c in HEURISTIC], ids=[c[0] for c in HEURISTIC]
)
def test_heuristic_freshness(
    status: int, fields: list[tuple[str, str]], policy: Policy, expected: float | None
) -> None:
    head = ResponseHead(status, Headers(fields))
    assert heuristic_freshness(head, policy, T) == expected


def test_rfc9110_15_1_heuristically_cacheable_codes() -> None:
    assert frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501}) == HEURISTICALLY_CACHEABLE
