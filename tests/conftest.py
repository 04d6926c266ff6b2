"""Fixtures shared by every test folder: a scripted origin on loopback. Folder conftests add their own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.redis_fixtures import (  # real redis-server processes, shared by every folder for the session
    failover_cluster,  # noqa: F401
    redis_cluster,  # noqa: F401
    redis_cluster_replicated,  # noqa: F401
    redis_cluster_url,  # noqa: F401
    redis_server,  # noqa: F401
    redis_url,  # noqa: F401
)
from tests.support.origin import RunningOrigin, run_origin


@pytest.fixture
async def origin() -> AsyncIterator[RunningOrigin]:
    """A fresh :class:`tests.support.origin.Origin` served by uvicorn on a free loopback port."""
    async with run_origin() as running:
        yield running
