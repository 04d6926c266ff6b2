"""The primary cache key (RFC 9111 §2, §4) and the route's key shaping."""

from __future__ import annotations

import pytest

from proxy.cache.keys import ABSENT, key_parts, primary_key, shape_query
from proxy.messages import Headers, RequestHead
from proxy.rules.model import KeySpec, Route

PLAIN = Route(name="plain")


def req(
    target: str = "/p", method: str = "GET", host: str = "example.com", headers: list[tuple[str, str]] | None = None
) -> RequestHead:
    path, _, query = target.partition("?")
    return RequestHead(method, "https", host, path, query, Headers(headers or []))


def shaped(**spec: object) -> Route:
    return Route(name="shaped", key=KeySpec(**spec))  # type: ignore[arg-type]


def test_rfc9111_2_key_is_short_and_stable() -> None:
    key = primary_key(req("/a?b=1"), PLAIN)
    assert key.startswith("c:")
    assert len(key) == 34
    assert key == primary_key(req("/a?b=1"), PLAIN)


def test_rfc9111_4_head_shares_the_get_key() -> None:
    assert primary_key(req(method="HEAD"), PLAIN) == primary_key(req(method="GET"), PLAIN)
    assert key_parts(req(method="HEAD"), PLAIN)[0] == ("method", "GET")


def test_rfc9111_2_other_methods_have_their_own_key() -> None:
    assert primary_key(req(method="POST"), PLAIN) != primary_key(req(), PLAIN)


def test_rfc3986_6_2_2_1_host_case_does_not_matter() -> None:
    assert primary_key(req(host="Example.COM"), PLAIN) == primary_key(req(host="example.com"), PLAIN)


def test_key_scheme_and_host_are_part_of_the_key() -> None:
    other_host = RequestHead("GET", "https", "other.example", "/p")
    other_scheme = RequestHead("GET", "http", "example.com", "/p")
    assert len({primary_key(r, PLAIN) for r in (req(), other_host, other_scheme)}) == 3


def test_key_percent_encoding_is_preserved_so_encoded_slash_is_distinct() -> None:
    assert primary_key(req("/a%2Fb"), PLAIN) != primary_key(req("/a/b"), PLAIN)
    assert primary_key(req("/a%2Fb"), PLAIN) != primary_key(req("/a%2fb"), PLAIN)
    assert ("path", "/a%2Fb") in key_parts(req("/a%2Fb"), PLAIN)


def test_key_without_shaping_query_order_matters() -> None:
    assert primary_key(req("/p?a=1&b=2"), PLAIN) != primary_key(req("/p?b=2&a=1"), PLAIN)


def test_key_ignored_param_shares_one_key() -> None:
    route = shaped(ignore_params=("utm_*", "fbclid"))
    base = primary_key(req("/p?id=7"), route)
    assert primary_key(req("/p?id=7&utm_source=news&utm_medium=mail"), route) == base
    assert primary_key(req("/p?fbclid=xyz&id=7"), route) == base
    assert primary_key(req("/p?id=8&utm_source=news"), route) != base


def test_key_ignored_param_matched_by_decoded_name() -> None:
    route = shaped(ignore_params=("utm_*",))
    assert shape_query("utm%5Fsource=x&a=1", route.key) == "a=1"


def test_key_keep_params_keeps_only_those() -> None:
    route = shaped(keep_params=("q", "page"))
    assert shape_query("q=x&session=9&page=2&debug=1", route.key) == "q=x&page=2"
    assert primary_key(req("/s?q=x&session=1"), route) == primary_key(req("/s?q=x&session=2"), route)


def test_key_sort_params_makes_order_irrelevant_but_keeps_repeats_in_order() -> None:
    route = shaped(sort_params=True)
    assert primary_key(req("/p?b=2&a=1"), route) == primary_key(req("/p?a=1&b=2"), route)
    assert shape_query("ids=2&a=1&ids=1", route.key) == "a=1&ids=2&ids=1"


def test_key_shaping_keeps_original_encoding() -> None:
    route = shaped(ignore_params=("x",))
    assert shape_query("q=a%20b&x=1&r=c+d", route.key) == "q=a%20b&r=c+d"


@pytest.mark.parametrize(
    ("spec", "query", "shaped_query"),
    [
        pytest.param(
            {"ignore_params": ("utm_*",)},
            "id=1&utm_x=1;callback=evil",
            "id=1&utm_x=1;callback=evil",
            id="key-semicolon-ignored-param-with-semicolon-kept",
        ),
        pytest.param(
            {"ignore_params": ("utm_*",)},
            "utm_x;callback=evil=1",
            "utm_x;callback=evil=1",
            id="key-semicolon-in-ignored-name-kept",
        ),
        pytest.param(
            {"ignore_params": ("utm_*",)},
            "utm_x=1%3Bcallback=evil",
            "utm_x=1%3Bcallback=evil",
            id="key-semicolon-percent-encoded-kept",
        ),
        pytest.param(
            {"keep_params": ("q",)},
            "q=1&x=2;callback=evil",
            "q=1&x=2;callback=evil",
            id="key-semicolon-unkept-param-with-semicolon-kept",
        ),
        pytest.param({"ignore_params": ("utm_*",)}, "id=1&utm_x=1", "id=1", id="key-semicolon-plain-ignored-dropped"),
    ],
)
def test_key_semicolon_never_hides_a_parameter(spec: dict[str, object], query: str, shaped_query: str) -> None:
    route = shaped(**spec)
    assert shape_query(query, route.key) == shaped_query


def test_key_headers_in_key() -> None:
    route = shaped(headers=("Accept-Language",))
    en = primary_key(req(headers=[("accept-language", "en")]), route)
    fr = primary_key(req(headers=[("Accept-Language", "fr")]), route)
    assert en != fr
    assert en == primary_key(req(headers=[("ACCEPT-LANGUAGE", "en")]), route)
    assert ("header:accept-language", "en") in key_parts(req(headers=[("accept-language", "en")]), route)


def test_key_absent_header_differs_from_empty_header() -> None:
    route = shaped(headers=("x-tenant",))
    absent = primary_key(req(), route)
    empty = primary_key(req(headers=[("X-Tenant", "")]), route)
    assert absent != empty
    assert ("header:x-tenant", ABSENT) in key_parts(req(), route)


def test_key_cookies_in_key() -> None:
    route = shaped(cookies=("segment",))
    b2b = primary_key(req(headers=[("Cookie", "session=1; segment=b2b")]), route)
    b2c = primary_key(req(headers=[("Cookie", "segment=b2c; session=1")]), route)
    other_session = primary_key(req(headers=[("Cookie", "session=2; segment=b2b")]), route)
    assert b2b != b2c
    assert b2b == other_session
    assert primary_key(req(), route) != primary_key(req(headers=[("Cookie", "segment=")]), route)


def test_key_parts_list_every_ingredient() -> None:
    route = shaped(ignore_params=("utm_*",), headers=("accept",), cookies=("c",))
    parts = key_parts(req("/p?a=1&utm_x=2", host="Example.com", headers=[("Cookie", "c=v")]), route)
    assert parts == [
        ("method", "GET"),
        ("scheme", "https"),
        ("host", "example.com"),
        ("path", "/p"),
        ("query", "a=1"),
        ("header:accept", ABSENT),
        ("cookie:c", "v"),
    ]
