"""The ``cacheproxy`` command line: check, explain, schema, and refusing bad settings (DESIGN.md contracts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.cache.keys import primary_key
from proxy.cli import main
from proxy.messages import RequestHead
from proxy.rules.loader import load_rules

GOOD = "routes:\n  - name: api\n    match: {path: /api/**}\n    ttl: 30s\n"
BAD = "routes:\n  - name: api\n    match: {path: /api/**}\n    ttl: soon\n    colour: blue\n"


def test_check_valid_file_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    assert main(["check", str(rules)]) == 0
    assert capsys.readouterr().out == f"{rules}: ok\n"


def test_check_reports_every_problem_with_file_line_col_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(BAD)
    assert main(["check", str(rules)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"{rules}:4:10: routes[0].ttl: must be a duration like 30s, 5m, 1h, 1d, 250ms or plain seconds" in lines
    assert any(line.startswith(f"{rules}:5:5: routes[0].colour:") for line in lines)


def test_the_shipped_rules_yaml_is_valid() -> None:
    assert main(["check", "rules.yaml"]) == 0


def test_explain_shows_route_key_and_storability(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    code = main([
        "explain", "--rules", str(rules), "GET", "https://shop.example/api/items?a=1",
        "--response-header", "Cache-Control: private",
    ])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert f"route     api ({rules} line 2)" in lines
    request = RequestHead("GET", "https", "shop.example", "/api/items", "a=1")
    route = load_rules(rules).match("GET", "shop.example", "/api/items")
    assert route.name == "api"
    assert f"key       {primary_key(request, route)}" in lines  # the key the proxy itself computes
    assert any(line.startswith("stored    no: the response is private") and "detail=private" in line for line in lines)


def test_schema_is_json_schema_of_the_rules_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "routes" in json.dumps(schema)
    assert "ttl" in json.dumps(schema)


def test_serve_refuses_several_workers_on_the_memory_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--upstream", "http://127.0.0.1:9", "--workers", "2"]) == 2
    assert "needs a shared store" in capsys.readouterr().err


def test_serve_needs_an_upstream(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CACHEPROXY_UPSTREAM", raising=False)
    assert main(["serve"]) == 2
    assert "no upstream" in capsys.readouterr().err


def test_serve_rejects_a_bad_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--upstream", "http://127.0.0.1:9", "--memory-budget", "lots"]) == 2
    assert "not a size" in capsys.readouterr().err


def test_serve_flags_read_cacheproxy_environment_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CACHEPROXY_UPSTREAM", "http://127.0.0.1:9")
    monkeypatch.setenv("CACHEPROXY_WORKERS", "3")
    assert main(["serve"]) == 2  # the environment's upstream was taken; its workers clash with the memory store
    assert "--workers > 1 needs a shared store" in capsys.readouterr().err
