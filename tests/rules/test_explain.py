"""``explain`` shows the route, the key and its parts, the action and the storage verdict; ``schema`` for editors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy.cache.keys import primary_key
from proxy.explain import explain, human, human_size, request_from_url, schema
from proxy.rules.model import Rules
from tests.rules import load

RULES = """
routes:
  - name: login
    match: {path: /login}
    bypass: true
  - name: products
    match: {path: /api/products/**, methods: [GET]}
    ttl: 5m
    override: true
    stale_while_revalidate: 30s
    key: {ignore_params: [utm_*], headers: [Accept-Language]}
"""


@pytest.fixture
def rules(tmp_path: Path) -> Rules:
    return load(tmp_path, RULES)


def test_explain_names_route_and_line(rules: Rules) -> None:
    text = explain(rules, "GET", "https://shop.example/api/products/7", [])
    assert f"route     products ({rules.source} line 5)" in text
    assert "path /api/products/** · methods GET" in text


def test_explain_shows_key_and_its_parts(rules: Rules) -> None:
    text = explain(rules, "GET", "https://Shop.example/api/products/7?utm_source=x&a=1", [("Accept-Language", "fr")])
    request = request_from_url("GET", "https://Shop.example/api/products/7?a=1", [("Accept-Language", "fr")])
    assert f"key       {primary_key(request, rules.routes[1])}" in text
    assert "  host    shop.example" in text
    assert "  query   a=1" in text
    assert "  header:accept-language fr" in text


def test_explain_bypass_route(rules: Rules) -> None:
    text = explain(rules, "GET", "https://shop.example/login", [], [("Cache-Control", "max-age=60")])
    assert "action    bypass: forwarded, never looked up or stored" in text
    assert "stored    no: the request is not cacheable" in text


def test_explain_rfc9111_4_4_unsafe_method_is_forwarded(rules: Rules) -> None:
    text = explain(rules, "POST", "https://shop.example/api/products/7", [])
    assert "route     default" in text
    assert "action    forwarded: POST is never answered from cache" in text


def test_explain_forced_ttl_beats_origin_max_age(rules: Rules) -> None:
    text = explain(rules, "GET", "https://shop.example/api/products/7", [], [("Cache-Control", "max-age=60")])
    assert "action    look up" in text
    assert "stored    yes: fresh for 5m, then stale-while-revalidate 30s" in text


def test_explain_rfc9111_5_2_2_7_private_not_stored_even_under_override(rules: Rules) -> None:
    text = explain(rules, "GET", "https://shop.example/api/products/7", [], [("Cache-Control", "private")])
    assert "stored    no: the response is private" in text
    assert "detail=private" in text


def test_explain_origin_freshness_on_default_route(rules: Rules) -> None:
    text = explain(rules, "GET", "http://shop.example/other", [], [("Cache-Control", "max-age=90")])
    assert "route     default (no route matched" in text
    assert "stored    yes: fresh for 1m30s" in text


def test_explain_no_freshness_suggests_a_ttl(rules: Rules) -> None:
    text = explain(rules, "GET", "http://shop.example/other", [], [], status=200)
    assert "stored    no: no freshness, validator or stale window; give the route a ttl" in text


def test_explain_path_only_url_takes_host_header() -> None:
    request = request_from_url("get", "/a?b=1", [("Host", "api.example")])
    assert (request.method, request.scheme, request.host, request.path, request.query) == (
        "GET",
        "http",
        "api.example",
        "/a",
        "b=1",
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.25, "250ms"), (90, "1m30s"), (3600, "1h"), (86400 + 60, "1d1m")],
)
def test_explain_human_durations(seconds: float, text: str) -> None:
    assert human(seconds) == text


def test_explain_human_sizes() -> None:
    assert [human_size(n) for n in (10 * 1024 * 1024, 512 * 1024, 1000)] == ["10MiB", "512KiB", "1000B"]


def test_schema_describes_every_route_field() -> None:
    generated = schema()
    assert generated["$schema"].startswith("https://json-schema.org/")
    route = generated["$defs"]["RouteFields"]
    assert route["additionalProperties"] is False
    assert {"name", "match", "bypass", "ttl", "key", "set_cookie", "coalesce_timeout"} <= set(route["properties"])
    assert route["required"] == ["name"]
    duration = route["properties"]["ttl"]["anyOf"][0]["anyOf"][1]["pattern"]
    assert re.search(duration, "30s")
    assert not re.search(duration, "soon 30s")
    size = route["properties"]["max_object_size"]["anyOf"][1]["pattern"]
    assert re.search(size, "10MiB")
    assert not re.search(size, "10MB")
