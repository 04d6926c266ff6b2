"""Smoke tests of ``load_tests/``: the modules import, the wrk report parser reads a captured report, and a tiny
stampede through a real proxy reaches the origin once (issue 4). No timing thresholds: the figures are printed by the
benchmarks themselves, on a machine chosen by whoever runs them.
"""

from __future__ import annotations

import importlib
import json

import pytest

from load_tests.common import WrkResult, format_table, median_result, parse_wrk
from load_tests.stampede import Config, cache_status_kind, percentile, run_stampede

WRK_SAMPLE = """\
Running 3s test @ http://127.0.0.1:18712/cached
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.41ms    8.51ms 194.86ms   94.51%
    Req/Sec     6.68k     1.15k    7.61k    83.33%
  Latency Distribution
     50%    8.77ms
     75%    9.23ms
     90%   13.84ms
     99%   36.40ms
  19925 requests in 3.00s, 24.32MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:   6638.12
Transfer/sec:      8.10MB
"""


@pytest.mark.parametrize(
    "module",
    ["load_tests.common", "load_tests.origin_app", "load_tests.bare_app", "load_tests.bench_proxy",
     "load_tests.bench_stores", "load_tests.stampede", "load_tests.client_ceiling", "load_tests.peers",
     "load_tests.slow_heads", "load_tests.redis_recovery", "load_tests.app_cpu"],
)  # fmt: skip
def test_load_test_modules_import(module: str) -> None:
    assert importlib.import_module(module).__doc__


def test_parse_wrk_reads_rps_percentiles_and_errors() -> None:
    result = parse_wrk("hit", WRK_SAMPLE)
    assert result == WrkResult("hit", 6638.12, 8.77, 36.40, requests=19925, non_2xx=7, socket_errors=5)


@pytest.mark.parametrize(
    ("line", "ms"), [("850.00us", 0.85), ("1.50s", 1500.0), ("2.00m", 120_000.0)], ids=["us", "s", "m"]
)
def test_parse_wrk_converts_latency_units_to_ms(line: str, ms: float) -> None:
    text = WRK_SAMPLE.replace("99%   36.40ms", f"99%   {line}")
    assert parse_wrk("x", text).p99_ms == pytest.approx(ms)


def test_parse_wrk_rejects_a_report_without_latency() -> None:
    with pytest.raises(ValueError, match="not a wrk --latency report"):
        parse_wrk("x", "Requests/sec:   10.0\n")


def test_median_result_takes_the_median_of_each_figure_and_sums_counts() -> None:
    figures = [(1, 5, 9), (3, 1, 7), (2, 3, 8)]
    runs = [WrkResult("a", rps, p50, p99, requests=10, upstream=0) for rps, p50, p99 in figures]
    median = median_result("a", runs)
    assert (median.rps, median.p50_ms, median.p99_ms, median.requests, median.upstream) == (2, 3, 8, 30, 0)
    assert "a" in format_table([median])


def test_stampede_helpers() -> None:
    assert cache_status_kind("cacheproxy; hit; ttl=41") == "hit"
    assert cache_status_kind("cacheproxy; fwd=miss; collapsed") == "fwd=miss; collapsed"
    assert percentile([float(n) for n in range(1, 101)], 0.99) == 99.0
    assert percentile([], 0.5) == 0.0


def test_issue4_stampede_on_a_cold_key_reaches_the_origin_once() -> None:
    outcome = run_stampede(Config(requests=50, delay_ms=200, pin=False, timeout=30))
    assert outcome.upstream == 1
    assert len(outcome.answers) == 50
    assert {answer.status for answer in outcome.answers} == {200}
    assert len({answer.body for answer in outcome.answers}) == 1


def test_peers_table_ratios_to_bare_and_to_nginx_of_the_same_kind() -> None:
    from load_tests.peers import Target, goals, table

    targets = [
        Target("bare", "u", "bare", "bare"),
        Target("proxy hit", "u", "hit", "cacheproxy"),
        Target("nginx hit", "u", "hit", "nginx"),
        Target("proxy pass", "u", "pass", "cacheproxy"),
        Target("nginx pass", "u", "pass", "nginx"),
        Target("proxy revalidate", "u", "revalidate", "cacheproxy"),
    ]
    figures = {"bare": 1000, "proxy hit": 950, "nginx hit": 2000, "proxy pass": 200, "nginx pass": 800,
               "proxy revalidate": 180}  # fmt: skip
    medians = {name: WrkResult(name, rps, 1.0, 2.0) for name, rps in figures.items()}
    cells = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table(targets, medians)[2:]]
    rows = {row[0]: row[1:] for row in cells}
    assert rows["proxy hit"][:3] == ["950", "0.95", "0.47"]
    assert rows["proxy pass"][:3] == ["200", "0.20", "0.25"]
    assert rows["bare"][2] == ""
    verdicts = goals(targets, medians)
    assert "hit/bare 0.95   goal >= 0.9: meets" in verdicts
    assert "pass/bare 0.20   goal >= 0.25: BELOW" in verdicts
    assert "revalidate/pass 0.90   goal >= 0.8: meets" in verdicts


def test_peers_configurations_name_the_origin_and_the_kinds() -> None:
    from pathlib import Path

    from load_tests.peers import nginx_conf, origin_conf, varnish_vcl

    origin = origin_conf(Path("/tmp/o"), 9001)
    assert "listen 127.0.0.1:9001;" in origin and 'location = /pass { add_header Cache-Control "no-store";' in origin
    peer = nginx_conf(Path("/tmp/n"), 9002, 9001)
    assert "server 127.0.0.1:9001;" in peer and "proxy_cache_revalidate on;" in peer
    assert "return (pass)" in varnish_vcl(9001) and '.port = "9001"' in varnish_vcl(9001)


def test_peers_tree_cpu_counts_this_process_and_nothing_for_a_missing_one() -> None:
    import os

    from load_tests.peers import missing_tools, tree_cpu

    assert tree_cpu(os.getpid()) > 0
    assert tree_cpu(2**22 + 12345) == 0.0  # no such PID
    assert all("(" in line for line in missing_tools(varnish=True, granian=True))


@pytest.mark.parametrize(
    ("workers", "start", "idle", "leak"),
    [(1, 6, 6, False), (1, 6, 9, False), (1, 6, 10, True), (2, 12, 18, False), (2, 12, 19, True)],
)
def test_soak_counts_tasks_that_outlive_the_traffic_as_a_leak(workers: int, start: int, idle: int, leak: bool) -> None:
    from load_tests.soak import Report, check_idle

    report = Report(60.0, "memory", workers)
    report.samples.append({"rss_mib": 50.0, "fds": 14, "tasks": start})
    report.idle = {"rss_mib": 50.0, "fds": 14, "tasks": idle}
    check_idle(report)
    assert bool(report.violations["task-leak"]) is leak


def test_soak_without_a_task_count_checks_nothing() -> None:
    from load_tests.soak import Report, check_idle

    report = Report(60.0, "memory", 1)
    report.samples.append({"rss_mib": 50.0, "fds": 14})
    report.idle = {"rss_mib": 50.0, "fds": 14}
    check_idle(report)
    assert not report.violations


def test_soak_report_as_json_keeps_its_counts() -> None:
    from load_tests.soak import Report, report_json

    report = Report(60.0, "memory", 1)
    report.statuses["200"] += 5
    report.violate("too-old", "/v/1 v1 superseded 9.00s before the GET")
    report.samples.append({"rss_mib": 50.0, "tasks": 6.0})
    out = json.loads(report_json(report))
    assert out["statuses"] == {"200": 5}
    assert out["violations"] == {"too-old": 1}
    assert out["samples"] == [{"rss_mib": 50.0, "tasks": 6.0}]


def test_peers_only_selects_kinds_and_servers_and_the_bare_app_always_runs() -> None:
    from load_tests.peers import parse_only, selected

    only = parse_only("bare, pass,reval,proxy")
    assert only == ({"pass", "revalidate"}, {"proxy"})
    assert selected("bare", "bare", only) and selected("pass", "proxy", only)
    assert not selected("hit", "proxy", only) and not selected("pass", "nginx", only)
    assert selected("pass", "baseline", only) and not selected("hit", "baseline", only)
    assert selected("hit", "varnish", parse_only(None))
    assert selected("pass", "nginx", parse_only("pass")) and not selected("hit", "nginx", parse_only("pass"))
    with pytest.raises(SystemExit):
        parse_only("pass,squid")


def test_app_cpu_drives_the_app_with_the_scope_uvicorn_makes_for_wrk() -> None:
    from load_tests.app_cpu import scope_for

    scope = scope_for("/pass")
    assert (scope["method"], scope["path"], scope["raw_path"]) == ("GET", "/pass", b"/pass")
    assert scope["http_version"] == "1.1"
    assert scope["headers"] == [(b"host", b"127.0.0.1:8080")]
