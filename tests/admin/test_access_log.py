"""One access-log line per request, as text or as a JSON object (``--log-format json``)."""

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

from proxy.logs import JsonFormatter, configure
from tests.admin.conftest import CACHEABLE, RunningProxy, run_proxy
from tests.support.origin import RunningOrigin
from tests.support.servers import free_port, stop_process, wait_http

FIELDS = {"method", "path", "status", "outcome", "detail", "route", "upstream_time", "duration", "bytes"}


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "cacheproxy.access"]


async def test_access_log_text_line(
    proxy: RunningProxy, origin: RunningOrigin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cacheproxy.access")
    origin.set("/l", headers=CACHEABLE, body="hello")
    await proxy.client.get("/l?x=1")
    await proxy.client.get("/l?x=1")
    miss, hit = (r.getMessage() for r in access_records(caplog))
    assert re.fullmatch(r"GET /l\?x=1 200 miss route=default upstream=\d+\.\d{4} time=\d+\.\d{4} bytes=5", miss)
    assert re.fullmatch(r"GET /l\?x=1 200 hit route=default upstream=- time=\d+\.\d{4} bytes=5", hit)


async def test_access_log_reason_in_line(
    proxy: RunningProxy, origin: RunningOrigin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cacheproxy.access")
    await proxy.client.post("/form", content=b"a=1")
    (record,) = access_records(caplog)
    assert record.getMessage().startswith("POST /form 200 bypass (method) route=default")


async def test_access_log_json_fields(
    proxy: RunningProxy, origin: RunningOrigin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cacheproxy.access")
    origin.set("/j", headers=CACHEABLE, body="json!")
    await proxy.client.get("/j")
    await proxy.client.get("/j")
    miss, hit = (json.loads(JsonFormatter().format(r)) for r in access_records(caplog))
    assert set(hit) >= FIELDS
    assert {k: hit[k] for k in ("method", "path", "status", "outcome", "route", "bytes", "upstream_time")} == {
        "method": "GET",
        "path": "/j",
        "status": 200,
        "outcome": "hit",
        "route": "default",
        "bytes": 5,
        "upstream_time": None,
    }
    assert miss["outcome"] == "miss"
    assert isinstance(miss["upstream_time"], float)
    assert miss["logger"] == "cacheproxy.access"


async def test_access_log_off(origin: RunningOrigin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cacheproxy.access")
    async with run_proxy(origin.url, access_log=False) as proxy:
        response = await proxy.client.get("/quiet")
    assert response.status_code == 200
    assert access_records(caplog) == []


async def test_access_log_not_written_for_admin(proxy: RunningProxy, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cacheproxy.access")
    await proxy.client.get("/_cacheproxy/metrics")
    assert access_records(caplog) == []


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
