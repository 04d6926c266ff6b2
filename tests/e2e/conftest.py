"""End-to-end fixtures: the real proxy app under uvicorn on loopback, in front of the scripted origin."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from proxy.app import ProxyApp
from proxy.clock import SYSTEM_CLOCK, Clock, FakeClock
from proxy.config import Settings
from tests.support.origin import RunningOrigin
from tests.support.servers import UvicornServer


@dataclass
class Proxied:
    """A running proxy (``url``, ``client``) in front of ``origin``."""

    url: str
    client: httpx.AsyncClient
    origin: RunningOrigin
    app: ProxyApp
    clock: Clock = SYSTEM_CLOCK


@contextlib.asynccontextmanager
async def run_proxy(
    origin: RunningOrigin,
    rules: str | None = None,
    tmp: Path | None = None,
    *,
    clock: Clock = SYSTEM_CLOCK,
    **settings: object,
) -> AsyncIterator[Proxied]:
    rules_path = None
    if rules is not None:
        if tmp is None:
            raise ValueError("rules need a tmp path")
        rules_path = tmp / "rules.yaml"
        rules_path.write_text(rules)
    app = ProxyApp(Settings(upstream=origin.url, rules=rules_path, **settings), clock=clock)  # type: ignore[arg-type]
    server = UvicornServer(app, lifespan="on", server_header=False, date_header=False)
    async with server, httpx.AsyncClient(base_url=server.url) as client:
        yield Proxied(server.url, client, origin, app, clock)


@pytest.fixture
async def proxy(origin: RunningOrigin) -> AsyncIterator[Proxied]:
    """The proxy with the built-in rules (HTTP headers decide) and the memory store."""
    async with run_proxy(origin) as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock for the proxy, starting at the real time (the origin's ``Date`` fields are real)."""
    return FakeClock(time.time())


@pytest.fixture
async def clocked(origin: RunningOrigin, clock: FakeClock) -> AsyncIterator[Proxied]:
    """The proxy of ``proxy``, on the fake ``clock``: tests move time with ``clock.advance``, never by sleeping."""
    async with run_proxy(origin, clock=clock) as running:
        yield running
