"""One access-log line per request, as text or as a JSON object (``--log-format json``), written in batches.

The in-process tests flush the writer themselves before reading the file (no waiting on its 100 ms timer); the
process test sends SIGTERM right after the last answer, so every line it finds was written by the shutdown flush or
an earlier batch, and none may be missing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from proxy.admin.observe import AccessRecord, line_formatter, lines_formatter
from proxy.cache.answer import CacheOutcome
from proxy.logs import AccessLog, configure
from tests.admin.conftest import CACHEABLE, RunningProxy, run_proxy
from tests.security.harness import recording_upstream
from tests.support.origin import RunningOrigin
from tests.support.servers import free_port, run_process, stop_process, wait_http

FIELDS = {"method", "path", "status", "outcome", "detail", "route", "upstream_time", "duration", "bytes", "client"}
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO cacheproxy\.access: "


def written(proxy: RunningProxy, path: Path) -> list[str]:
    observer = proxy.app.runtime.observer
    assert observer is not None and observer.access_log is not None
    observer.access_log.flush()
    return path.read_text().splitlines()


async def test_access_log_text_line(origin: RunningOrigin, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    async with run_proxy(origin.url, access_log_file=str(log)) as proxy:
        origin.set("/l", headers=CACHEABLE, body="hello")
        await proxy.client.get("/l?x=1")
        await proxy.client.get("/l?x=1")
        miss, hit = written(proxy, log)
    assert re.fullmatch(STAMP + r"GET /l\?x=1 200 miss route=default upstream=\d+\.\d{4} time=\d+\.\d{4} bytes=5", miss)
    assert re.fullmatch(STAMP + r"GET /l\?x=1 200 hit route=default upstream=- time=\d+\.\d{4} bytes=5", hit)


async def test_access_log_reason_in_line(origin: RunningOrigin, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    async with run_proxy(origin.url, access_log_file=str(log)) as proxy:
        await proxy.client.post("/form", content=b"a=1")
        (line,) = written(proxy, log)
    assert line.split(": ", 1)[1].startswith("POST /form 200 bypass (method) route=default")


async def test_access_log_json_fields(origin: RunningOrigin, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    async with run_proxy(origin.url, access_log_file=str(log), log_format="json") as proxy:
        origin.set("/j", headers=CACHEABLE, body="json!")
        await proxy.client.get("/j")
        await proxy.client.get("/j")
        miss, hit = (json.loads(line) for line in written(proxy, log))
    assert set(hit) >= FIELDS | {"time", "level", "logger", "message"}
    assert {k: hit[k] for k in ("method", "path", "status", "outcome", "route", "bytes", "upstream_time")} == {
        "method": "GET",
        "path": "/j",
        "status": 200,
        "outcome": "hit",
        "route": "default",
        "bytes": 5,
        "upstream_time": None,
    }
    assert hit["message"].startswith("GET /j 200 hit route=default upstream=- ")
    assert miss["outcome"] == "miss"
    assert isinstance(miss["upstream_time"], float)
    assert miss["logger"] == "cacheproxy.access"
    # what ``cacheproxy simulate`` and ``warm --from-log`` replay (the eviction work)
    assert miss["key"] == hit["key"] and isinstance(hit["key"], str)
    assert (miss["size"], hit["size"], miss["storable"], hit["storable"]) == (5, 5, True, True)


async def test_access_log_off(origin: RunningOrigin, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    async with run_proxy(origin.url, access_log=False, access_log_file=str(log)) as proxy:
        response = await proxy.client.get("/quiet")
        assert proxy.app.runtime.observer is not None
        assert proxy.app.runtime.observer.access_log is None
    assert response.status_code == 200
    assert not log.exists()


async def test_access_log_not_written_for_admin(origin: RunningOrigin, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    async with run_proxy(origin.url, access_log_file=str(log)) as proxy:
        await proxy.client.get("/_cacheproxy/metrics")
        assert written(proxy, log) == []


def record(n: int, target: str | tuple[bytes, bytes] = "/x") -> AccessRecord:
    return AccessRecord(0.0, "GET", target, 200, CacheOutcome.MISS, "", "r", None, 0.001, n, None)


def test_batches_written_in_whole_lines_in_order(tmp_path: Path) -> None:
    """Lines longer than a pipe's atomic write, and batches larger than it, are still written whole and in order."""
    path = tmp_path / "out.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        writer = AccessLog(fd, lines_formatter("text"))
        for n in range(500):
            writer.append(record(n, "/" + "a" * (n * 20)))
        writer.flush()
        writer.flush()  # nothing pending: writes nothing
    finally:
        os.close(fd)
    lines = path.read_text().splitlines()
    assert [int(line.rsplit("bytes=", 1)[1]) for line in lines] == list(range(500))
    assert all(f"GET /{'a' * (n * 20)} 200" in line for n, line in enumerate(lines))


def test_scope_target_decoded_as_sent() -> None:
    line = line_formatter("text")(record(1, (b"/caf\xc3\xa9", b"q=1")))
    assert "GET /caf\u00c3\u00a9?q=1 200" in line  # latin-1, byte for byte, as RequestHead.target


def test_access_log_lines_equal_requests_served_after_sigterm(tmp_path: Path) -> None:
    """A real proxy process: every request answered has its line, in order, though SIGTERM came right after."""
    log = tmp_path / "access.log"
    rules = tmp_path / "rules.yaml"
    rules.write_text("defaults:\n  ttl: 60s\nroutes:\n  - name: all\n    match:\n      path: /**\n")
    port = free_port()
    with recording_upstream() as upstream:
        command = [sys.executable, "-m", "proxy", "serve", "--upstream", upstream.url, "--port", str(port),
                   "--rules", str(rules), "--access-log-file", str(log)]  # fmt: skip
        env = {"PYTHONPATH": os.getcwd()}
        with run_process(command, ready_url=f"http://127.0.0.1:{port}/_cacheproxy/healthz", env=env) as proc:
            targets = [f"/item/{n % 7}?n={n % 3}" for n in range(300)]
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                statuses = [client.get(target).status_code for target in targets]
            stop_process(proc)
            assert proc.returncode in (0, -15)  # exited by itself (uvicorn re-raises SIGTERM), not killed
    assert statuses == [200] * len(targets)
    lines = log.read_text().splitlines()
    assert [line.split(": ", 1)[1].split(" ")[1] for line in lines] == targets
    outcomes = [line.split(": ", 1)[1].split(" ")[3] for line in lines]
    assert outcomes.count("miss") == 21 and outcomes.count("hit") == 279


@pytest.mark.parametrize("target", [None, "", "-"], ids=["stderr", "empty-stderr", "dash-stdout"])
def test_access_log_destination(target: str | None) -> None:
    from proxy.logs import open_access_log

    assert open_access_log(target) == (sys.stdout if target == "-" else sys.stderr).fileno()


def test_cli_flag_reaches_settings() -> None:
    from proxy.cli import build_parser, settings_from_args

    args = build_parser().parse_args(["serve", "--upstream", "http://127.0.0.1:1", "--access-log-file", "/tmp/a.log"])
    assert settings_from_args(args).access_log_file == "/tmp/a.log"


async def test_issue11_run_writes_a_large_backlog_in_slices_with_the_loop_free_between(tmp_path: Path) -> None:
    """A backlog of several slices is written in order, ``BATCH`` records at a time, and other tasks run between the
    slices (formatting an interval's records at once held every request for milliseconds: the hits' p99)."""
    path = tmp_path / "out.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    writer = AccessLog(fd, lines_formatter("text"), interval=0.01)
    sizes: list[int] = []  # lines in the file each time another task got to run

    async def watcher() -> None:
        while True:
            sizes.append(len(path.read_text().splitlines()))
            await asyncio.sleep(0)

    for n in range(3 * AccessLog.BATCH + 10):
        writer.append(record(n))
    watching = asyncio.ensure_future(watcher())
    running = asyncio.ensure_future(writer.run())
    for _ in range(200):
        await asyncio.sleep(0.005)
        if not writer.pending:
            break
    running.cancel()
    watching.cancel()
    await asyncio.gather(running, watching, return_exceptions=True)
    os.close(fd)
    lines = path.read_text().splitlines()
    assert [int(line.rsplit("bytes=", 1)[1]) for line in lines] == list(range(3 * AccessLog.BATCH + 10))
    for slices in (1, 2, 3):
        assert slices * AccessLog.BATCH in sizes  # the watcher ran after each slice


def test_writer_survives_a_failed_batch(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    writer = AccessLog(fd, lines_formatter("text"))
    writer.append("not a record")  # formatting fails: reported and dropped, the writer carries on
    writer._flush_or_complain()
    writer.append(record(7))
    writer._flush_or_complain()
    os.close(fd)
    assert "access log: a batch of lines could not be written" in caplog.text
    assert path.read_text().endswith("bytes=7\n")


def _serve_workers_and_log(origin: RunningOrigin, redis_url: str, log_path: Path, *extra: str) -> None:
    """``cacheproxy serve --workers 2`` on Redis; three requests; SIGTERM; everything it logged is in ``log_path``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "proxy", "serve", "--upstream", origin.url, "--port", str(port)]
    args += ["--store", redis_url, "--workers", "2", *extra]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=log)
        try:
            wait_http(url + "/_cacheproxy/healthz", timeout=60, proc=proc)
            for _ in range(3):
                httpx.get(url + "/w", timeout=10)
        finally:
            stop_process(proc, grace=30)


async def test_issue13_8_workers_log_each_request_once(origin: RunningOrigin, redis_url: str, tmp_path: Path) -> None:
    origin.set("/w", headers=CACHEABLE, body="w")
    log_path = tmp_path / "serve.log"
    await asyncio.to_thread(_serve_workers_and_log, origin, redis_url, log_path)
    lines = log_path.read_text().splitlines()
    assert [line for line in lines if "uvicorn.access" in line] == []
    assert len([line for line in lines if "cacheproxy.access: GET /w 200" in line]) == 3


async def test_issue14_5_no_access_log_holds_with_workers(
    origin: RunningOrigin, redis_url: str, tmp_path: Path
) -> None:
    origin.set("/w", headers=CACHEABLE, body="w")
    log_path = tmp_path / "serve.log"
    await asyncio.to_thread(_serve_workers_and_log, origin, redis_url, log_path, "--no-access-log")
    text = log_path.read_text()
    assert "Application startup complete" in text  # the log was written, just without access lines
    assert "uvicorn.access" not in text
    assert "cacheproxy.access" not in text


def test_issue13_8_uvicorn_access_stays_silent_whatever_the_order() -> None:
    """uvicorn's own set-up first (as in a worker), then ours: uvicorn.access must still have no handler."""
    import uvicorn

    uvicorn.Config(app=None, access_log=True, log_config=None).configure_logging()  # type: ignore[arg-type]
    configure("text")
    assert not logging.getLogger("uvicorn.access").hasHandlers()
