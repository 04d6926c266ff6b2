"""RFC 9111 §3 storing for a shared cache, RFC 5861 windows and the route policy, through ``assess``."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from proxy.messages import Headers, RequestHead, ResponseHead
from proxy.rfc.age import format_http_date
from proxy.rfc.decisions import DontStore, Reason, Store
from proxy.rfc.policy import Policy, SetCookiePolicy
from proxy.rfc.storable import UNDERSTOOD_STATUSES, assess, post_answers_get, strip_hop_by_hop, surrogate_keys

T = 1_700_000_000.0
NO_KEEP = Policy(keep=0.0)
Fields = list[tuple[str, str]]


def date(offset: float) -> str:
    return format_http_date(T + offset)


@dataclass(frozen=True)
class Case:
    response: Fields
    status: int = 200
    request: Fields = field(default_factory=list)
    method: str = "GET"
    policy: Policy = NO_KEEP
    body_size: int | None = 0
    request_time: float = T
    response_time: float = T


def run(case: Case) -> Store | DontStore:
    request = RequestHead(case.method, "https", "example.com", "/a", headers=Headers(case.request))
    response = ResponseHead(case.status, Headers([("Date", date(0)), *case.response]))
    return assess(
        request,
        response,
        case.policy,
        request_time=case.request_time,
        response_time=case.response_time,
        body_size=case.body_size,
    )


CC = "Cache-Control"
ETAG = ("ETag", '"v1"')
OVERRIDE = Policy(ttl=30.0, override=True, keep=0.0)

REFUSED = {
    "rfc9111-3-post-not-stored": (Case([(CC, "max-age=60")], method="POST"), Reason.METHOD),
    "rfc9111-3-head-not-stored": (Case([(CC, "max-age=60")], method="HEAD"), Reason.METHOD),
    "rfc9111-3-method-checked-first": (Case([(CC, "no-store")], method="HEAD"), Reason.METHOD),
    "rfc9111-3-1xx-not-stored": (Case([(CC, "max-age=60")], status=103), Reason.STATUS),
    "rfc9111-3-206-not-stored": (Case([(CC, "max-age=60")], status=206), Reason.STATUS),
    "rfc9111-3-304-not-stored": (Case([(CC, "max-age=60")], status=304), Reason.STATUS),
    "rfc9111-5.2.1.5-request-no-store": (
        Case([(CC, "max-age=60")], request=[(CC, "no-store")]),
        Reason.REQUEST_NO_STORE,
    ),
    "rfc9111-3-no-store-not-stored": (Case([(CC, "no-store, max-age=60")]), Reason.NO_STORE),
    "rfc9111-3-no-store-before-private": (Case([(CC, "private, no-store")]), Reason.NO_STORE),
    "rfc9111-5.2.2.3-must-understand-unknown-status": (
        Case([(CC, "must-understand, no-store, max-age=60")], status=299),
        Reason.MUST_UNDERSTAND,
    ),
    "rfc9111-5.2.2.3-must-understand-500": (
        Case([(CC, "must-understand, max-age=60")], status=500),
        Reason.MUST_UNDERSTAND,
    ),
    "rfc9111-5.2.2.7-private-not-stored": (Case([(CC, "private, max-age=60")]), Reason.PRIVATE),
    "rfc9111-5.2.2.7-empty-private-list-is-private": (Case([(CC, 'private="", max-age=60')]), Reason.PRIVATE),
    "rfc9111-3.5-authorization-needs-public": (
        Case([(CC, "max-age=60")], request=[("Authorization", "Bearer x")]),
        Reason.AUTHORIZATION,
    ),
    "rfc9111-3-vary-star": (Case([(CC, "max-age=60"), ("Vary", "Accept, *")]), Reason.VARY_STAR),
    "policy-set-cookie-bypass": (Case([(CC, "max-age=60"), ("Set-Cookie", "a=1")]), Reason.SET_COOKIE),
    "policy-too-large": (
        Case([(CC, "max-age=60")], policy=Policy(max_object_size=10), body_size=11),
        Reason.TOO_LARGE,
    ),
    "policy-too-large-from-content-length": (
        Case([(CC, "max-age=60"), ("Content-Length", "11")], policy=Policy(max_object_size=10), body_size=None),
        Reason.TOO_LARGE,
    ),
    "rfc9111-3-no-freshness-302": (Case([], status=302), Reason.NO_FRESHNESS),
    "rfc9111-4.2.2-200-without-last-modified": (Case([ETAG]), Reason.NO_FRESHNESS),
    "rfc9111-5.2.2.4-no-cache-without-validator": (
        Case([(CC, "no-cache, max-age=60")]),
        Reason.RESPONSE_NO_CACHE,
    ),
    "rfc9111-4.2.1-max-age-0-without-validator": (Case([(CC, "max-age=0")]), Reason.NO_FRESHNESS),
    "rule-ttl-statuses-restrict": (
        Case([], status=404, policy=Policy(ttl=30.0, statuses=frozenset({200}))),
        Reason.NO_FRESHNESS,
    ),
    "rule-ttl-default-statuses-exclude-302": (
        Case([], status=302, policy=Policy(ttl=30.0)),
        Reason.NO_FRESHNESS,
    ),
    "rule-override-still-refuses-no-store": (Case([(CC, "no-store")], policy=OVERRIDE), Reason.NO_STORE),
    "rule-override-still-refuses-private": (Case([(CC, "private")], policy=OVERRIDE), Reason.PRIVATE),
    "rule-override-still-refuses-set-cookie": (
        Case([("Set-Cookie", "a=1")], policy=OVERRIDE),
        Reason.SET_COOKIE,
    ),
    "rule-override-still-refuses-authorization": (
        Case([], request=[("Authorization", "Basic eA==")], policy=OVERRIDE),
        Reason.AUTHORIZATION,
    ),
    "rule-ignore-private-keeps-request-no-store": (
        Case([(CC, "max-age=60")], request=[(CC, "no-store")], policy=Policy(ignore_private=True)),
        Reason.REQUEST_NO_STORE,
    ),
}


@pytest.mark.parametrize(("case", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_not_stored(case: Case, reason: Reason) -> None:
    assert run(case) == DontStore(reason)


# expected: (freshness, initial_age, stale_while_revalidate, stale_if_error, ttl)
STORED = {
    "rfc9111-3-max-age-stored": (Case([(CC, "max-age=60")]), (60.0, 0.0, 0.0, 0.0, 60.0)),
    "policy-keep-added-to-ttl": (Case([(CC, "max-age=60")], policy=Policy()), (60.0, 0.0, 0.0, 0.0, 3660.0)),
    "rfc9111-4.2.1-expires-stored": (Case([("Expires", date(90))]), (90.0, 0.0, 0.0, 0.0, 90.0)),
    "rfc9111-4.2.2-heuristic-stored": (Case([("Last-Modified", date(-1000))]), (100.0, 0.0, 0.0, 0.0, 100.0)),
    "rfc9111-5.2.2.4-no-cache-with-etag-stored-stale": (
        Case([(CC, "no-cache, max-age=600, stale-while-revalidate=30"), ETAG]),
        (0.0, 0.0, 0.0, 0.0, 1.0),
    ),
    "rfc9111-4.2.1-max-age-0-with-validator-stored": (
        Case([(CC, "max-age=0"), ETAG], policy=Policy(keep=100.0)),
        (0.0, 0.0, 0.0, 0.0, 100.0),
    ),
    "rfc5861-max-age-0-with-stale-if-error-stored": (
        Case([(CC, "max-age=0, stale-if-error=60")]),
        (0.0, 0.0, 0.0, 60.0, 60.0),
    ),
    "rfc9111-3.5-authorization-with-public": (
        Case([(CC, "public, max-age=60")], request=[("Authorization", "Bearer x")]),
        (60.0, 0.0, 0.0, 0.0, 60.0),
    ),
    "rfc9111-3.5-authorization-with-s-maxage": (
        Case([(CC, "s-maxage=60")], request=[("Authorization", "Bearer x")]),
        (60.0, 0.0, 0.0, 0.0, 60.0),
    ),
    "rfc9111-3.5-authorization-with-must-revalidate": (
        Case([(CC, "must-revalidate, max-age=60")], request=[("Authorization", "Bearer x")]),
        (60.0, 0.0, 0.0, 0.0, 60.0),
    ),
    "rfc9111-5.2.2.3-must-understand-overrides-no-store": (
        Case([(CC, "must-understand, no-store, max-age=60")]),
        (60.0, 0.0, 0.0, 0.0, 60.0),
    ),
    "rfc9111-3-explicit-freshness-any-final-status": (
        Case([(CC, "max-age=60")], status=500),
        (60.0, 0.0, 0.0, 0.0, 60.0),
    ),
    "rfc5861-windows-added": (
        Case(
            [(CC, "max-age=60, stale-while-revalidate=30, stale-if-error=300")],
            policy=Policy(stale_while_revalidate=10.0, stale_if_error=100.0, keep=0.0),
        ),
        (60.0, 0.0, 40.0, 400.0, 460.0),
    ),
    "rfc5861-route-windows-alone": (
        Case([(CC, "max-age=60")], policy=Policy(stale_while_revalidate=10.0, keep=0.0)),
        (60.0, 0.0, 10.0, 0.0, 70.0),
    ),
    "rfc9111-5.2.2.2-must-revalidate-disables-windows": (
        Case(
            [(CC, "max-age=60, must-revalidate, stale-while-revalidate=30")],
            policy=Policy(stale_while_revalidate=10.0, keep=0.0),
        ),
        (60.0, 0.0, 0.0, 0.0, 60.0),
    ),
    "rfc9111-5.2.2.8-proxy-revalidate-disables-windows": (
        Case([(CC, "max-age=60, proxy-revalidate, stale-if-error=30")]),
        (60.0, 0.0, 0.0, 0.0, 60.0),
    ),
    "rfc9111-5.2.2.10-s-maxage-disables-windows": (
        Case([(CC, "s-maxage=60, stale-if-error=30")], policy=Policy(stale_if_error=5.0, keep=0.0)),
        (60.0, 0.0, 0.0, 0.0, 60.0),
    ),
    "rule-ttl-when-origin-silent": (Case([], policy=Policy(ttl=30.0, keep=0.0)), (30.0, 0.0, 0.0, 0.0, 30.0)),
    "rule-ttl-beats-heuristic": (
        Case([("Last-Modified", date(-1000))], policy=Policy(ttl=30.0, keep=0.0)),
        (30.0, 0.0, 0.0, 0.0, 30.0),
    ),
    "rule-ttl-does-not-beat-origin": (
        Case([(CC, "max-age=60")], policy=Policy(ttl=30.0, keep=0.0)),
        (60.0, 0.0, 0.0, 0.0, 60.0),
    ),
    "rule-ttl-custom-statuses": (
        Case([], status=302, policy=Policy(ttl=30.0, statuses=frozenset({302}), keep=0.0)),
        (30.0, 0.0, 0.0, 0.0, 30.0),
    ),
    "rule-override-ignores-origin-max-age": (
        Case([(CC, "max-age=600")], policy=OVERRIDE),
        (30.0, 0.0, 0.0, 0.0, 30.0),
    ),
    "rule-override-ignores-s-maxage-and-expires": (
        Case([(CC, "s-maxage=600"), ("Expires", date(900))], policy=OVERRIDE),
        (30.0, 0.0, 0.0, 0.0, 30.0),
    ),
    "rule-override-ignores-no-cache": (
        Case([(CC, "no-cache")], policy=OVERRIDE),
        (30.0, 0.0, 0.0, 0.0, 30.0),
    ),
    "rule-override-ignores-max-age-0": (
        Case([(CC, "max-age=0")], policy=OVERRIDE),
        (30.0, 0.0, 0.0, 0.0, 30.0),
    ),
    "rule-override-default-statuses-exclude-405": (
        Case([(CC, "max-age=600")], status=405, policy=OVERRIDE),
        (600.0, 0.0, 0.0, 0.0, 600.0),
    ),
    "rule-override-custom-statuses": (
        Case(
            [(CC, "max-age=600")],
            status=405,
            policy=Policy(ttl=30.0, override=True, statuses=frozenset({405}), keep=0.0),
        ),
        (30.0, 0.0, 0.0, 0.0, 30.0),
    ),
    "rule-override-uses-route-windows-only": (
        Case(
            [(CC, "max-age=600, must-revalidate, stale-while-revalidate=100")],
            policy=Policy(ttl=30.0, override=True, stale_while_revalidate=5.0, keep=0.0),
        ),
        (30.0, 0.0, 5.0, 0.0, 35.0),
    ),
    "rule-ignore-private-stores-private": (
        Case([(CC, "private, max-age=60")], policy=Policy(ignore_private=True, keep=0.0)),
        (60.0, 0.0, 0.0, 0.0, 60.0),
    ),
    "rule-ignore-private-stores-no-store": (
        Case([(CC, "no-store")], policy=Policy(ttl=30.0, override=True, ignore_private=True, keep=0.0)),
        (30.0, 0.0, 0.0, 0.0, 30.0),
    ),
    "rfc9111-4.2.3-initial-age-from-age-header": (
        Case([(CC, "max-age=60"), ("Age", "20")], request_time=T - 1),
        (60.0, 21.0, 0.0, 0.0, 39.0),
    ),
    "rfc9111-4.2.3-initial-age-from-date": (
        Case([(CC, "max-age=60")], response_time=T + 15, request_time=T + 14),
        (60.0, 15.0, 0.0, 0.0, 45.0),
    ),
    "store-ttl-at-least-one-second": (
        Case([(CC, "max-age=10"), ("Age", "100")]),
        (10.0, 100.0, 0.0, 0.0, 1.0),
    ),
    "policy-unknown-body-size-not-rejected": (
        Case([(CC, "max-age=60")], policy=Policy(max_object_size=10, keep=0.0), body_size=None),
        (60.0, 0.0, 0.0, 0.0, 60.0),
    ),
    "policy-body-size-at-cap-stored": (
        Case([(CC, "max-age=60")], policy=Policy(max_object_size=10, keep=0.0), body_size=10),
        (60.0, 0.0, 0.0, 0.0, 60.0),
    ),
    "rfc9213-cdn-cache-control-wins": (
        Case([("CDN-Cache-Control", "max-age=300"), (CC, "no-store")]),
        (300.0, 0.0, 0.0, 0.0, 300.0),
    ),
}


@pytest.mark.parametrize(("case", "expected"), STORED.values(), ids=STORED.keys())
def test_stored(case: Case, expected: tuple[float, float, float, float, float]) -> None:
    verdict = run(case)
    assert isinstance(verdict, Store), verdict
    got = (
        verdict.freshness,
        verdict.initial_age,
        verdict.stale_while_revalidate,
        verdict.stale_if_error,
        verdict.ttl,
    )
    assert got == expected
    assert verdict.forced is (case.policy.override and verdict.freshness == case.policy.ttl)


MAX_AGE = (CC, "max-age=60")
# (response fields, policy, names expected absent from the stored head, names expected present)
HEADS = {
    "rfc9110-7.6.1-hop-by-hop-removed": (
        [
            MAX_AGE,
            ("Connection", "close, X-Hop"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("X-Hop", "1"),
            ("Upgrade", "h2c"),
            ("Trailer", "X-T"),
            ("Proxy-Authenticate", "Basic"),
            ("TE", "trailers"),
            ("Proxy-Connection", "keep-alive"),
            ("Content-Length", "5"),
            ("Surrogate-Key", "a b"),
            ("Cache-Tag", "c"),
        ],
        NO_KEEP,
        {
            "connection",
            "keep-alive",
            "transfer-encoding",
            "x-hop",
            "upgrade",
            "trailer",
            "proxy-authenticate",
            "te",
            "proxy-connection",
        },
        {"content-length", "surrogate-key", "cache-tag", "date", "cache-control"},
    ),
    "rfc9111-5.2.2.7-qualified-private-strips-fields": (
        [
            (CC, 'private="X-User, X-Secret", max-age=60'),
            ("X-User", "u"),
            ("X-Secret", "s"),
            ("X-Other", "o"),
        ],
        NO_KEEP,
        {"x-user", "x-secret"},
        {"x-other"},
    ),
    "rfc9111-5.2.2.4-qualified-no-cache-strips-set-cookie": (
        [(CC, 'no-cache="Set-Cookie", max-age=60'), ("Set-Cookie", "a=1")],
        NO_KEEP,
        {"set-cookie"},
        {"cache-control"},
    ),
    "policy-set-cookie-strip": (
        [MAX_AGE, ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")],
        Policy(set_cookie=SetCookiePolicy.STRIP),
        {"set-cookie"},
        {"cache-control"},
    ),
    "policy-set-cookie-store": (
        [MAX_AGE, ("Set-Cookie", "a=1")],
        Policy(set_cookie=SetCookiePolicy.STORE),
        set(),
        {"set-cookie"},
    ),
}


@pytest.mark.parametrize(("fields", "policy", "absent", "present"), HEADS.values(), ids=HEADS.keys())
def test_stored_head(fields: Fields, policy: Policy, absent: set[str], present: set[str]) -> None:
    verdict = run(Case(fields, policy=policy))
    assert isinstance(verdict, Store), verdict
    names = verdict.head.headers.names()
    assert names & absent == set()
    assert present <= names
    assert verdict.head.status == 200


def test_rfc9111_5_2_2_4_qualified_no_cache_is_not_bare_no_cache() -> None:
    verdict = run(Case([(CC, 'no-cache="X-A", max-age=60'), ("X-A", "1")]))
    assert isinstance(verdict, Store)
    assert verdict.freshness == 60.0


def test_policy_set_cookie_store_keeps_values() -> None:
    verdict = run(
        Case(
            [MAX_AGE, ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")],
            policy=Policy(set_cookie=SetCookiePolicy.STORE),
        )
    )
    assert isinstance(verdict, Store)
    assert verdict.head.headers.get_all("set-cookie") == ["a=1", "b=2"]


def test_rfc9111_5_2_2_3_understood_statuses() -> None:
    expected = {200, 203, 204, 206, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501}
    assert expected == UNDERSTOOD_STATUSES


STRIP = {
    "rfc9110-7.6.1-fixed-fields": (
        [("Connection", "keep-alive"), ("Keep-Alive", "1"), ("TE", "x"), ("Upgrade", "y"), ("A", "1")],
        [("A", "1")],
    ),
    "rfc9110-7.6.1-connection-options-case-insensitive": (
        [("connection", "X-Foo, x-bar"), ("X-FOO", "1"), ("X-Bar", "2"), ("X-Baz", "3")],
        [("X-Baz", "3")],
    ),
    "rfc9110-7.6.1-nothing-to-strip": ([("A", "1"), ("B", "2")], [("A", "1"), ("B", "2")]),
}


@pytest.mark.parametrize(("fields", "expected"), STRIP.values(), ids=STRIP.keys())
def test_strip_hop_by_hop(fields: Fields, expected: Fields) -> None:
    assert strip_hop_by_hop(Headers(fields)) == Headers(expected)


KEYS = {
    "surrogate-key-space-separated": ([("Surrogate-Key", "  a b\tc ")], ("a", "b", "c")),
    "cache-tag-comma-separated": ([("Cache-Tag", "x, y,,z")], ("x", "y", "z")),
    "surrogate-key-then-cache-tag-deduplicated": (
        [("Cache-Tag", "b, c"), ("Surrogate-Key", "a b"), ("Surrogate-Key", "a d")],
        ("a", "b", "d", "c"),
    ),
    "no-tags": ([("X", "1")], ()),
}


@pytest.mark.parametrize(("fields", "expected"), KEYS.values(), ids=KEYS.keys())
def test_surrogate_keys(fields: Fields, expected: tuple[str, ...]) -> None:
    assert surrogate_keys(Headers(fields)) == expected


POST_TARGET = "/items/1"
# (response status, fields, stored for a later GET?)
POST_AS_GET = {
    "rfc9110-9.3.3-max-age-and-same-content-location": (200, [("Cache-Control", "max-age=60")], POST_TARGET, True),
    "rfc9110-9.3.3-absolute-content-location": (
        200,
        [("Cache-Control", "s-maxage=60")],
        "https://api.example/items/1",
        True,
    ),
    "rfc9110-9.3.3-expires-is-explicit": (200, [("Expires", "Thu, 18 Aug 2050 02:01:18 GMT")], POST_TARGET, True),
    "rfc9110-9.3.3-no-explicit-freshness": (
        200,
        [("Last-Modified", "Thu, 18 Aug 2022 02:01:18 GMT")],
        POST_TARGET,
        False,
    ),
    "rfc9110-9.3.3-other-content-location": (200, [("Cache-Control", "max-age=60")], "/items/2", False),
    "rfc9110-9.3.3-content-location-other-origin": (
        200,
        [("Cache-Control", "max-age=60")],
        "https://evil.example/items/1",
        False,
    ),
    "rfc9110-9.3.3-no-content-location": (200, [("Cache-Control", "max-age=60")], None, False),
    "rfc9110-9.3.3-status-not-understood": (299, [("Cache-Control", "max-age=60")], POST_TARGET, False),
    "rfc9110-9.3.3-partial-content-never": (206, [("Cache-Control", "max-age=60")], POST_TARGET, False),
}


@pytest.mark.parametrize(("status", "fields", "location", "expected"), POST_AS_GET.values(), ids=POST_AS_GET.keys())
def test_post_answers_get(status: int, fields: list[tuple[str, str]], location: str | None, expected: bool) -> None:
    post = RequestHead("POST", "https", "api.example", POST_TARGET)
    if location is not None:
        fields = [*fields, ("Content-Location", location)]
    get = post_answers_get(post, ResponseHead(status, Headers(fields)))
    assert (get is not None) is expected
    if get is not None:
        assert get.method == "GET" and get.url == post.url


def test_rfc9110_9_3_3_only_post() -> None:
    put = RequestHead("PUT", "https", "api.example", POST_TARGET)
    head = ResponseHead(200, Headers([("Cache-Control", "max-age=60"), ("Content-Location", POST_TARGET)]))
    assert post_answers_get(put, head) is None
