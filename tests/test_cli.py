"""The ``cacheproxy`` command line: check, explain, schema, and refusing bad settings (DESIGN.md contracts)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from proxy.cache.keys import primary_key
from proxy.cli import build_parser, main, settings_from_args
from proxy.config import Settings
from proxy.errors import ConfigError
from proxy.messages import RequestHead
from proxy.rules.loader import load_rules
from tests.support.servers import free_port, stop_process, wait_http

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
    captured = capsys.readouterr()
    assert captured.out == ""  # problems go to stderr, as serve prints them (issue 13 item 14)
    lines = captured.err.splitlines()
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
    assert exit_code(["serve", "--upstream", "http://127.0.0.1:9", "--memory-budget", "lots"]) == 2
    assert "not a size" in capsys.readouterr().err


def test_serve_flags_read_cacheproxy_environment_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CACHEPROXY_UPSTREAM", "http://127.0.0.1:9")
    monkeypatch.setenv("CACHEPROXY_WORKERS", "3")
    assert main(["serve"]) == 2  # the environment's upstream was taken; its workers clash with the memory store
    assert "--workers > 1 needs a shared store" in capsys.readouterr().err


UPSTREAM = ["--upstream", "http://127.0.0.1:9"]
STORE_REDIS = "routes:\n  - name: api\n    match: {path: /api/**}\n    store: redis\n"


def exit_code(argv: list[str]) -> int:
    """``main`` for argv that may end in argparse's ``SystemExit`` (``--help``, ``--version``, a bad value)."""
    try:
        return main(argv)
    except SystemExit as done:
        return int(done.code or 0)


def serve_settings(argv: list[str]) -> Settings:
    return settings_from_args(build_parser().parse_args(["serve", *UPSTREAM, *argv]))


def test_issue13_1_check_empty_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert main(["check", str(empty)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"{empty}:1:1: (file): no 'routes:' and no 'defaults:'")


@pytest.mark.parametrize(
    ("how", "store"),
    [
        pytest.param("flag", "memory", id="issue13-2-check-store-flag"),
        pytest.param("env", "memory", id="issue13-2-check-cacheproxy-store"),
    ],
)
def test_issue13_2_check_given_the_store_rejects_store_redis_without_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], how: str, store: str
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(STORE_REDIS)
    if how == "env":
        monkeypatch.setenv("CACHEPROXY_STORE", store)
    assert main(["check", str(rules), *(["--store", store] if how == "flag" else [])]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{rules}:4:12: routes[0].store: store 'redis' is not configured: serve with --store")


def test_issue13_2_check_with_a_redis_store_accepts_store_redis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(STORE_REDIS)
    assert main(["check", str(rules), "--store", "redis://127.0.0.1:9/0"]) == 0


def test_issue13_2_serve_refuses_store_redis_without_redis_at_start_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(STORE_REDIS)
    assert main(["serve", *UPSTREAM, "--rules", str(rules)]) == 1
    assert "routes[0].store: store 'redis' is not configured" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        pytest.param("CACHEPROXY_PORT", "x", "expected a port number from 0 to 65535", id="issue13-3-port"),
        pytest.param("CACHEPROXY_WORKERS", "two", "expected a whole number of at least 1", id="issue13-3-workers"),
        pytest.param(
            "CACHEPROXY_CONNECT_TIMEOUT",
            "soon",
            "expected a positive number of seconds",
            id="issue13-3-connect-timeout",
        ),
        pytest.param("CACHEPROXY_READ_TIMEOUT", "-1", "expected a positive number of seconds", id="issue13-3-negative"),
        pytest.param("CACHEPROXY_MEMORY_BUDGET", "lots", "not a size", id="issue13-3-size"),
        pytest.param("CACHEPROXY_PRESERVE_HOST", "maybe", "1/true/yes/on or 0/false/no/off", id="issue13-3-boolean"),
    ],
)
def test_issue13_3_bad_environment_value_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert exit_code(["--help"]) == 0  # help never reads the values
    capsys.readouterr()
    assert exit_code(["serve", *UPSTREAM]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"{variable}={value!r}: " in line
    assert expected in line


@pytest.mark.parametrize(
    "flag", ["--connect-timeout", "--read-timeout"], ids=["issue13-3-negative-connect", "issue13-3-negative-read"]
)
def test_issue13_3_negative_duration_is_rejected(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["serve", *UPSTREAM, flag, "-1"]) == 2
    assert "expected a positive number of seconds" in capsys.readouterr().err


def test_issue13_3_settings_from_env_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="CACHEPROXY_PORT='x': expected a port number"):
        Settings.from_env({"CACHEPROXY_UPSTREAM": "http://127.0.0.1:9", "CACHEPROXY_PORT": "x"})
    with pytest.raises(ConfigError, match="--connect-timeout must be a positive number of seconds"):
        Settings(upstream="http://127.0.0.1:9", connect_timeout=-1)


def test_issue13_12_every_serve_flag_says_its_default_and_variable() -> None:
    """A flag added by following the pattern (``default=_env(...)``) passes; one that does not, fails here."""
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    options = [a for a in serve._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 15
    for action in options:
        flag = action.option_strings[-1]
        variable = "CACHEPROXY_" + flag.removeprefix("--").replace("-", "_").upper()
        assert action.help and "[default: " in action.help and f"env {variable}]" in action.help, flag


def test_issue13_12_l1_budget_help_tells_the_default_is_off() -> None:
    help_text = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    assert "32MiB)" not in help_text
    assert "0 means no L1 [default: 0; env" in " ".join(help_text.split())


def test_issue13_12_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["--version"]) == 0
    assert capsys.readouterr().out == f"cacheproxy {version('cacheproxy')}\n"


@pytest.mark.parametrize("value", ["1", "true", "yes", "on", "TRUE", "On"])
def test_issue13_12_no_access_log_has_a_variable_twin(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CACHEPROXY_NO_ACCESS_LOG", value)
    assert serve_settings([]).access_log is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [(v, True) for v in ("1", "true", "yes", "on")] + [(v, False) for v in ("0", "false", "no", "off")],
)
def test_issue13_12_boolean_variables_read_the_usual_words(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("CACHEPROXY_PRESERVE_HOST", value)
    monkeypatch.setenv("CACHEPROXY_ALLOW_PURGE_METHOD", value)
    settings = serve_settings([])
    assert (settings.preserve_host, settings.allow_purge_method) == (expected, expected)
    env = {"CACHEPROXY_UPSTREAM": "http://127.0.0.1:9", "CACHEPROXY_PRESERVE_HOST": value}
    assert Settings.from_env(env).preserve_host is expected


def test_issue13_12_flag_wins_over_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHEPROXY_PORT", "9999")
    monkeypatch.setenv("CACHEPROXY_PRESERVE_HOST", "off")
    assert serve_settings([]).port == 9999
    settings = serve_settings(["--port", "7000", "--preserve-host"])
    assert (settings.port, settings.preserve_host) == (7000, True)


def test_issue13_8_workers_get_the_access_log_setting_through_the_environment() -> None:
    settings = serve_settings(["--no-access-log", "--store", "redis://127.0.0.1:9/0", "--workers", "2"])
    assert Settings.from_env(settings.to_env()) == settings
    assert Settings.from_env(settings.to_env()).access_log is False


@pytest.mark.parametrize(
    "url",
    ["not a url", "ftp://x.example/a", "x.example/a", "http:///a", "/a b"],
    ids=["issue13-14-words", "issue13-14-scheme", "issue13-14-no-scheme", "issue13-14-no-host", "issue13-14-space"],
)
def test_issue13_14_explain_rejects_what_is_not_a_url(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "GET", url]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"cacheproxy: not a URL: {url!r} (give http://host/path, or /path with -H 'Host: name')\n"


def test_issue13_14_explain_takes_a_path_with_a_host_header(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "GET", "/a?b=1", "-H", "Host: x.example"]) == 0
    assert capsys.readouterr().out.startswith("request   GET http://x.example/a?b=1\n")


@pytest.mark.parametrize("flag", ["--port", "--origin-port"], ids=["issue13-4-proxy-port", "issue13-4-origin-port"])
def test_issue13_4_demo_on_a_busy_port_is_one_line(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["demo", flag, str(port)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"cacheproxy: demo: cannot listen on 127.0.0.1:{port}: ")
    assert line.endswith(f"(pick another {flag} N)")


def _run_until_sigint(args: list[str], ready: str, log_path: Path, then: str | None = None) -> tuple[int, str]:
    """Start ``python -m proxy *args``, wait for ``ready``, GET ``then``, send SIGINT (Ctrl-C): exit code and output."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "proxy", *args], env=env, stdout=log, stderr=log)
        try:
            wait_http(ready, timeout=60, proc=proc)
            if then is not None:
                assert "cache-status" in httpx.get(then, timeout=10).headers
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            stop_process(proc)
    return code, log_path.read_text()


@pytest.mark.parametrize("command", ["serve", "demo"], ids=["issue13-14-serve-ctrl-c", "issue13-14-demo-ctrl-c"])
def test_issue13_14_ctrl_c_ends_cleanly_without_a_traceback(command: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["serve", *UPSTREAM] if command == "serve" else ["demo"]
    code, output = _run_until_sigint(
        [*args, "--port", str(port)], url + "/_cacheproxy/healthz", tmp_path / "out.log", then=url + "/api/time"
    )
    assert code == 0, output
    assert "Traceback" not in output
    assert "Application shutdown complete" in output or command == "demo"


README = Path(__file__).resolve().parent.parent / "README.md"
CI_RUN = Path(__file__).resolve().parent.parent / ".ci" / "run"


def readme_blocks() -> list[str]:
    return [block.split("\n", 1)[1] for block in README.read_text().split("```")[1::2] if block.startswith("sh\n")]


def test_issue13_13_readme_setup_starts_with_a_venv_and_ci_runs_its_test_command() -> None:
    blocks = readme_blocks()
    assert blocks[0].strip() == "python3 -m venv .venv && . .venv/bin/activate"
    assert blocks[1].strip() == "pip install -e . && cacheproxy demo"
    test_command = blocks[2].strip()
    assert test_command == "pip install -e '.[dev]' && python -m pytest"
    assert CI_RUN.read_text().rstrip().splitlines()[-1] == test_command


def test_issue13_13_readme_purges_use_the_host_of_the_fetches_and_no_design_link() -> None:
    text = README.read_text()
    assert "curl -X POST localhost" not in text
    assert "curl -X POST 127.0.0.1:8080/_cacheproxy/purge" in text
    assert "curl -si http://127.0.0.1:8080/api/time" in text
    assert "DESIGN.md" not in text
    assert "`miss`" in text
    assert "carry no `Cache-Status`" in text
    assert "`cacheproxy purge` sends `Authorization: Bearer $CACHEPROXY_ADMIN_TOKEN`" in text


def test_issue13_12_readme_names_every_serve_flag() -> None:
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    text = README.read_text()
    for action in serve._actions:
        if action.option_strings and action.dest != "help":
            assert f"[{action.option_strings[-1]}" in text or f"{action.option_strings[-1]} " in text, action.dest
