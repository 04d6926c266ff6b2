"""Fixtures for the admin surface: a real proxy (uvicorn on loopback) in front of the scripted origin."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from proxy.app import ProxyApp
from proxy.config import Settings
from tests.support.origin import RunningOrigin
from tests.support.servers import run_asgi


@dataclass
class RunningProxy:
    url: str
    app: ProxyApp
    client: httpx.AsyncClient

    @property
    def admin(self) -> str:
        return self.url + self.app.prefix


@contextlib.asynccontextmanager
async def run_proxy(origin_url: str, **settings: Any) -> AsyncIterator[RunningProxy]:
    """A ``ProxyApp`` under uvicorn, with an httpx client for it; ``settings`` go to ``Settings``."""
    app = ProxyApp(Settings(upstream=origin_url, **settings))
    async with (
        run_asgi(app, server_header=False, date_header=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield RunningProxy(url, app, client)


@pytest.fixture
async def proxy(origin: RunningOrigin) -> AsyncIterator[RunningProxy]:
    async with run_proxy(origin.url) as running:
        yield running


def admin_client(app: ProxyApp, *, client: tuple[str, int] = ("127.0.0.1", 4321)) -> httpx.AsyncClient:
    """An in-process client of ``app`` (no lifespan) that appears to come from ``client``."""
    transport = httpx.ASGITransport(app=app, client=client)
    return httpx.AsyncClient(transport=transport, base_url="http://localhost")  # admin pages check Host


CACHEABLE = {"Cache-Control": "max-age=300", "ETag": '"v1"'}
