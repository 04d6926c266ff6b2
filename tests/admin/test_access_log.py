"""One access-log line per request, as text or as a JSON object (``--log-format json``)."""

from __future__ import annotations

import json
import logging
import re

import pytest

from proxy.logs import JsonFormatter
from tests.admin.conftest import CACHEABLE, RunningProxy, run_proxy
from tests.support.origin import RunningOrigin

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
