"""Browser conditional GETs: Chromium reloads a page and the proxy answers its If-None-Match with 304.

RFC 9110 §13.1.2 (If-None-Match) and §15.4.5 (304); RFC 9111 §4.3.2 (a cache answering a conditional request). On
reload Chromium sends ``Cache-Control: max-age=0`` with the validator it holds; the proxy revalidates with the origin
(which confirms with its own 304) and, since the client's ETag matches, answers the browser 304 with no body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Response

from proxy.app import ProxyApp
from proxy.config import Settings
from proxy.endpoint import Receive, Scope, Send
from tests.support.origin import RunningOrigin
from tests.support.servers import run_asgi

PAGE = (
    b"<!doctype html><html><head><title>conditional</title><link rel='icon' href='data:,'></head><body>ok</body></html>"
)


@dataclass
class Seen:
    method: str
    path: str
    if_none_match: str | None
    cache_control: str | None
    status: int = 0


@dataclass
class Recorder:
    """Wraps the proxy app and records each request's validators and the status the proxy answered with."""

    app: ProxyApp
    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        entry = Seen(scope["method"], scope["path"], headers.get("if-none-match"), headers.get("cache-control"))
        self.seen.append(entry)

        async def recording_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                entry.status = message["status"]
            await send(message)

        await self.app(scope, receive, recording_send)


@pytest.fixture
async def recorded_proxy(origin: RunningOrigin) -> AsyncIterator[tuple[str, Recorder]]:
    recorder = Recorder(ProxyApp(Settings(upstream=origin.url)))
    async with run_asgi(recorder, server_header=False, date_header=False) as url:
        yield url, recorder


async def test_browser_reload_if_none_match_answered_304(
    browser: Browser, recorded_proxy: tuple[str, Recorder], origin: RunningOrigin
) -> None:
    url, recorder = recorded_proxy
    origin.set(
        "/page",
        headers={"Content-Type": "text/html", "Cache-Control": "max-age=60", "ETag": '"page-v1"'},
        body=PAGE,
        etag_auto=True,
    )
    page = await browser.new_page()
    statuses: list[int] = []

    def on_response(response: Response) -> None:
        if response.url.endswith("/page"):
            statuses.append(response.status)

    page.on("response", on_response)
    first = await page.goto(url + "/page")
    assert first is not None and first.status == 200
    await page.reload()
    assert await page.text_content("body") == "ok"
    await page.close()

    loads = [s for s in recorder.seen if s.path == "/page"]
    assert len(loads) == 2, loads
    assert loads[0].if_none_match is None and loads[0].status == 200
    assert loads[1].if_none_match == '"page-v1"'
    assert loads[1].status == 304
    assert loads[1].cache_control == "max-age=0"  # a reload asks every cache on the way to revalidate
    # The proxy revalidated with the origin (a 304 there too) rather than refetching the body.
    assert [r.headers.get("if-none-match") for r in origin.requests] == [None, '"page-v1"']
    # Chromium reports the merged 200 to the page (DevTools shows the 304 on the wire, which the proxy recorded).
    assert statuses and statuses[0] == 200


async def test_proxy_answers_if_none_match_from_cache(
    recorded_proxy: tuple[str, Recorder], origin: RunningOrigin
) -> None:
    """The same exchange without a browser: a fresh stored entry answers a matching If-None-Match with 304."""
    url, _ = recorded_proxy
    origin.set("/page", headers={"Cache-Control": "max-age=60", "ETag": '"page-v1"'}, body=PAGE, etag_auto=True)
    async with httpx.AsyncClient(base_url=url) as client:
        await client.get("/page")
        response = await client.get("/page", headers={"If-None-Match": '"page-v1"'})
    assert response.status_code == 304
    assert response.content == b""
    assert "hit" in response.headers["cache-status"]
    assert origin.hits["/page"] == 1
