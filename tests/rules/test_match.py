"""Matching requests to routes: path globs (``*`` vs ``**``), regexes, host globs, methods, first match wins."""

from __future__ import annotations

import pytest

from proxy.rules.match import compile_glob, normalize_path
from proxy.rules.model import Route, Rules


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        pytest.param("/api/*", "/api/x", True, id="glob-star-one-segment"),
        pytest.param("/api/*", "/api/x/y", False, id="glob-star-not-across-slash"),
        pytest.param("/api/*.json", "/api/list.json", True, id="glob-star-within-segment"),
        pytest.param("/api/?", "/api/a", True, id="glob-question-one-char"),
        pytest.param("/api/?", "/api/ab", False, id="glob-question-only-one-char"),
        pytest.param("/api/**", "/api/x/y/z", True, id="glob-double-star-many-segments"),
        pytest.param("/api/**", "/api", True, id="glob-double-star-zero-segments"),
        pytest.param("/api/**", "/api/", True, id="glob-double-star-trailing-slash"),
        pytest.param("/api/**", "/apis", False, id="glob-double-star-segment-boundary"),
        pytest.param("/a/**/z", "/a/z", True, id="glob-inner-double-star-zero"),
        pytest.param("/a/**/z", "/a/b/c/z", True, id="glob-inner-double-star-many"),
        pytest.param("/a/**/z", "/a/b/c/y", False, id="glob-inner-double-star-needs-tail"),
        pytest.param("/**", "/", True, id="glob-root-double-star-everything"),
        pytest.param("/a.b", "/aXb", False, id="glob-dot-is-literal"),
        pytest.param("/a", "/a/", False, id="glob-exact-path-exact"),
    ],
)
def test_glob(glob: str, path: str, matches: bool) -> None:
    assert (compile_glob(glob).fullmatch(path) is not None) is matches


@pytest.mark.parametrize(
    ("path", "normalized"),
    [
        pytest.param("/%61dmin/x", "/admin/x", id="rfc3986-6.2.2.2-unreserved-decoded"),
        pytest.param("/a%3fb", "/a%3Fb", id="rfc3986-6.2.2.1-reserved-kept-hex-upper"),
        pytest.param("/a/./b/../c", "/a/c", id="rfc3986-5.2.4-dot-segments"),
        pytest.param("/a/..", "/", id="rfc3986-5.2.4-trailing-dot-dot"),
        pytest.param("/%2e%2e/a/%2E/b", "/a/b", id="rfc3986-5.2.4-encoded-dot-segments"),
        pytest.param("/plain", "/plain", id="rfc3986-plain-path-unchanged"),
        pytest.param("/a%2fb", "/a/b", id="match-encoded-slash-is-a-separator"),
        pytest.param("/a%5Cb", "/a/b", id="match-encoded-backslash-is-a-separator"),
        pytest.param("/a\\b", "/a/b", id="match-backslash-is-a-separator"),
        pytest.param("//a///b", "/a/b", id="match-repeated-slashes-merged"),
        pytest.param("/a;x=1/b;y", "/a/b", id="match-semicolon-parameters-stripped-per-segment"),
        pytest.param("/a%3Bx/b", "/a/b", id="match-encoded-semicolon-parameters-stripped"),
        pytest.param("/x/..;/a", "/a", id="match-parameters-stripped-before-dot-segments"),
        pytest.param("/A/B", "/A/B", id="match-case-kept-by-normalisation"),
        pytest.param("/a%252Fb", "/a%252Fb", id="match-decoded-once-only"),
    ],
)
def test_normalize_path(path: str, normalized: str) -> None:
    assert normalize_path(path) == normalized


# One bypass route in front of a caching catch-all: no spelling of an /account path may reach the catch-all.
EVASION_RULES = (Route(name="account", path="/account/**", bypass=True), Route(name="cached", path="/**"))


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/account/x", id="match-plain"),
        pytest.param("//account/x", id="match-repeated-slashes-merged"),
        pytest.param("/account;x/y", id="match-semicolon-parameters-stripped-per-segment"),
        pytest.param("/account;jsessionid=1", id="match-semicolon-parameter-on-last-segment"),
        pytest.param("/ACCOUNT/x", id="match-bypass-route-ignores-case"),
        pytest.param("/Account/x", id="match-bypass-route-ignores-case-mixed"),
        pytest.param("/account%2Fx", id="match-encoded-slash-is-a-separator"),
        pytest.param("/account%2fx", id="match-encoded-slash-lower-hex"),
        pytest.param("/account%5Cx", id="match-encoded-backslash-is-a-separator"),
        pytest.param("/account\\x", id="match-backslash-is-a-separator"),
        pytest.param("/account%3B.css", id="match-encoded-semicolon-parameters-stripped"),
        pytest.param("/./account/x", id="rfc3986-5.2.4-dot-segment"),
        pytest.param("/foo/../account/x", id="rfc3986-5.2.4-dot-dot-segment"),
        pytest.param("/foo/..;/account/x", id="match-parameters-stripped-before-dot-segments"),
        pytest.param("/%2e%2e/account/x", id="rfc3986-5.2.4-encoded-dot-dot"),
        pytest.param("/%61ccount/x", id="rfc3986-6.2.2.2-unreserved-decoded"),
        pytest.param("/%41CCOUNT/x", id="rfc3986-6.2.2.2-unreserved-decoded-and-case"),
    ],
)
def test_match_evasion_stays_on_bypass_route(path: str) -> None:
    assert rules(*EVASION_RULES).match("GET", "h", path).name == "account"


@pytest.mark.parametrize(
    ("route", "path", "matches"),
    [
        pytest.param(Route(name="r", path="/api/**"), "/API/x", False, id="match-case-sensitive-by-default"),
        pytest.param(
            Route(name="r", path="/api/**", case_insensitive=True), "/API/x", True, id="match-case-insensitive-opt-in"
        ),
        pytest.param(
            Route(name="r", regex="/api/.*", case_insensitive=True), "/Api/x", True, id="match-case-insensitive-regex"
        ),
        pytest.param(Route(name="r", path="/a/**", bypass=True), "/A", True, id="match-bypass-ignores-case-default"),
        pytest.param(
            Route(name="r", path="/a/**", bypass=True, case_insensitive=False),
            "/A",
            False,
            id="match-bypass-case-sensitive-opt-out",
        ),
    ],
)
def test_match_case_rule(route: Route, path: str, matches: bool) -> None:
    assert (rules(route).match("GET", "h", path).name == "r") is matches


def rules(*routes: Route) -> Rules:
    return Rules(routes, Route(name="default"), "<test>")


def test_match_first_matching_route_wins() -> None:
    r = rules(Route(name="products", path="/api/products/**"), Route(name="api", path="/api/**"))
    assert r.match("GET", "h", "/api/products/1").name == "products"
    assert r.match("GET", "h", "/api/users/1").name == "api"
    assert r.match("GET", "h", "/other").name == "default"


def test_match_regex_is_full_match() -> None:
    r = rules(Route(name="search", regex="/api/(search|suggest)"))
    assert r.match("GET", "h", "/api/suggest").name == "search"
    assert r.match("GET", "h", "/api/search/more").name == "default"


def test_match_methods_restrict_and_get_admits_head() -> None:
    r = rules(Route(name="reads", path="/a", methods=frozenset({"GET"})))
    assert r.match("GET", "h", "/a").name == "reads"
    assert r.match("HEAD", "h", "/a").name == "reads"
    assert r.match("POST", "h", "/a").name == "default"


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        pytest.param("api.example.com", "api.example.com", True, id="host-exact"),
        pytest.param("api.example.com", "API.Example.COM", True, id="host-case-insensitive"),
        pytest.param("api.example.com", "api.example.com:8080", True, id="host-port-ignored-without-port"),
        pytest.param("api.example.com:8080", "api.example.com:9090", False, id="host-port-compared-with-port"),
        pytest.param("*.example.com", "a.example.com", True, id="host-glob-one-label"),
        pytest.param("*.example.com", "a.b.example.com", True, id="host-glob-many-labels"),
        pytest.param("*.example.com", "example.com", False, id="host-glob-needs-subdomain"),
        pytest.param("*.example.com", "evil-example.com", False, id="host-glob-dot-is-literal"),
        pytest.param("[::1]", "[::1]:8080", True, id="host-ipv6-port-ignored"),
    ],
)
def test_match_host(pattern: str, host: str, matches: bool) -> None:
    r = rules(Route(name="hosted", host=pattern))
    assert (r.match("GET", host, "/").name == "hosted") is matches


def test_match_path_normalised_so_encoding_cannot_dodge_a_bypass() -> None:
    r = rules(Route(name="admin", path="/admin/**", bypass=True))
    assert r.match("GET", "h", "/%61dmin/users").bypass
    assert r.match("GET", "h", "/public/../admin/users").bypass


def test_match_repeated_lookups_answer_the_same_route() -> None:
    r = rules(Route(name="a", path="/a/*"), Route(name="b", path="/b/*"))
    first = [r.match("GET", "h", f"/{p}/x") for p in "ab"]
    again = [r.match("GET", "h", f"/{p}/x") for p in "ab"]
    assert [x.name for x in first] == ["a", "b"]
    assert first == again


def test_match_cache_stays_bounded() -> None:
    r = rules(Route(name="p", path="/p/*"))
    for i in range(10_000):
        assert r.match("GET", "h", f"/p/{i}").name == "p"
    assert len(r._cache) <= 4096
