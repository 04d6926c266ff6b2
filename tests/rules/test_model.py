"""Each field of rules.yaml reaches the runtime ``Route``: durations, sizes, policy, key, store, inheritance."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.rfc.policy import DEFAULT_POLICY, SetCookiePolicy
from proxy.rules.model import KeySpec, Route, Rules, parse_duration, parse_size
from tests.rules import load


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("250ms", 0.25, id="rules-duration-ms"),
        pytest.param("30s", 30.0, id="rules-duration-seconds"),
        pytest.param("5m", 300.0, id="rules-duration-minutes"),
        pytest.param("1h", 3600.0, id="rules-duration-hours"),
        pytest.param("1d", 86400.0, id="rules-duration-days"),
        pytest.param("1.5s", 1.5, id="rules-duration-decimal"),
        pytest.param(45, 45.0, id="rules-duration-plain-int-is-seconds"),
        pytest.param(0, 0.0, id="rules-duration-zero"),
    ],
)
def test_duration_parses(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [
        pytest.param("512KiB", 512 * 1024, id="rules-size-kib"),
        pytest.param("10MiB", 10 * 1024 * 1024, id="rules-size-mib"),
        pytest.param("1GiB", 1024**3, id="rules-size-gib"),
        pytest.param("100B", 100, id="rules-size-bytes-suffix"),
        pytest.param(4096, 4096, id="rules-size-plain-int-is-bytes"),
    ],
)
def test_size_parses(text: object, size: int) -> None:
    assert parse_size(text) == size


def test_rules_every_route_field_reaches_the_route(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        """
        routes:
          - name: all
            match: {path: /api/**, methods: [GET], host: api.example.com}
            ttl: 5m
            override: true
            statuses: [200, 404]
            stale_while_revalidate: 30s
            stale_if_error: 1h
            set_cookie: strip
            ignore_private: true
            max_object_size: 512KiB
            key:
              ignore_params: [utm_*]
              sort_params: true
              headers: [Accept-Language]
              cookies: [segment]
            store: redis
            tags: [a, b]
            coalesce: false
            coalesce_timeout: 250ms
        """,
    )
    route = rules.routes[0]
    assert route.name == "all"
    assert route.line == 2
    assert route.policy.ttl == 300.0
    assert route.policy.override is True
    assert route.policy.statuses == frozenset({200, 404})
    assert route.policy.stale_while_revalidate == 30.0
    assert route.policy.stale_if_error == 3600.0
    assert route.policy.set_cookie is SetCookiePolicy.STRIP
    assert route.policy.ignore_private is True
    assert route.policy.max_object_size == 512 * 1024
    assert route.key == KeySpec(
        ignore_params=("utm_*",), sort_params=True, headers=("accept-language",), cookies=("segment",)
    )
    assert (route.store, route.tags, route.coalesce, route.coalesce_timeout) == ("redis", ("a", "b"), False, 0.25)
    assert (route.path, route.methods, route.host) == ("/api/**", frozenset({"GET"}), "api.example.com")


def test_rules_regex_keep_params_and_bypass_parse(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        """
        routes:
          - name: search
            match: {regex: "/api/(search|suggest)"}
            key: {keep_params: [q, page]}
          - name: login
            match: {path: /login}
            bypass: true
        """,
    )
    assert rules.routes[0].regex == "/api/(search|suggest)"
    assert rules.routes[0].key.keep_params == ("q", "page")
    assert rules.routes[1].bypass is True
    assert rules.routes[0].bypass is False


def test_rules_defaults_block_sets_heuristic_and_keep(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        """
        defaults:
          heuristic_fraction: 0.2
          heuristic_max: 2h
          keep: 10m
        routes:
          - name: r
            match: {path: /r}
        """,
    )
    for route in (rules.default, rules.routes[0]):
        assert (route.policy.heuristic_fraction, route.policy.heuristic_max, route.policy.keep) == (0.2, 7200, 600)


def test_rules_routes_inherit_unset_fields_from_defaults(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        """
        defaults:
          ttl: 1m
          stale_if_error: 1d
          store: redis
          tags: [site]
          key: {ignore_params: [utm_*], headers: [X-Tenant]}
        routes:
          - name: own-ttl
            match: {path: /a}
            ttl: 10s
            key: {sort_params: true}
          - name: inherits
            match: {path: /b}
        """,
    )
    own, inherits = rules.routes
    assert own.policy.ttl == 10.0
    assert own.policy.stale_if_error == 86400.0
    assert own.key == KeySpec(ignore_params=("utm_*",), sort_params=True, headers=("x-tenant",))
    assert inherits.policy == rules.default.policy
    assert (inherits.store, inherits.tags) == ("redis", ("site",))
    assert rules.default.name == "default"
    assert rules.default.line == 0


def test_rules_route_may_unset_default_ttl_with_null(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        """
        defaults: {ttl: 1m}
        routes:
          - name: origin-only
            match: {path: /a}
            ttl: null
        """,
    )
    assert rules.routes[0].policy.ttl is None


def test_rules_forced_ttl_reaches_policy(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        """
        routes:
          - name: forced
            match: {path: /f}
            ttl: 30s
            override: true
            statuses: [404]
        """,
    )
    policy = rules.match("GET", "h", "/f").policy
    assert (policy.ttl, policy.override, policy.statuses) == (30.0, True, frozenset({404}))


def test_rules_routes_written_out_empty_gives_builtin_defaults(tmp_path: Path) -> None:
    rules = load(tmp_path, "# nothing yet\nroutes: []\n")
    assert rules.routes == ()
    assert rules.default.policy == DEFAULT_POLICY


def test_rules_null_sections_count_as_empty(tmp_path: Path) -> None:
    rules = load(tmp_path, "defaults:\nroutes:\n")
    assert rules.routes == ()


def test_rules_builtin_is_defaults_only() -> None:
    rules = Rules.builtin()
    assert rules.source == "<builtin>"
    assert rules.routes == ()
    assert rules.match("GET", "example.com", "/anything") == Route(name="default")


def test_rules_pass_headers_inherit_and_join_the_key(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        """
        defaults:
          pass_headers: [x-host]
          key: {headers: [X-Tenant]}
        routes:
          - name: legacy
            match: {path: /legacy/**}
            pass_headers: [X-Original-URL, Forwarded]
          - name: inherits
            match: {path: /b}
          - name: none
            match: {path: /c}
            pass_headers: []
        """,
    )
    legacy, inherits, none = rules.routes
    assert legacy.pass_headers == frozenset({"x-original-url", "forwarded"})
    assert legacy.key.headers == ("x-tenant", "forwarded", "x-original-url")
    assert inherits.pass_headers == frozenset({"x-host"})
    assert inherits.key.headers == ("x-tenant", "x-host")
    assert none.pass_headers == frozenset()
    assert none.key.headers == ("x-tenant",)
