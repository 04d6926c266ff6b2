"""Fixtures for the storage contract suite: one ``store`` per registered backend.

Every test in ``test_contract.py`` runs once per entry of ``BACKENDS``; its id ends in ``[<name>]``.

How to add a backend (e.g. "redis", "redis-cluster", "two-tier"):

1. Write an async context manager factory taking the pytest ``request`` (use
   ``request.getfixturevalue("redis_server")`` or similar to reach fixtures that start servers)
   and yielding a ``Backend``: a fresh, EMPTY store, a short ``ttl`` it honours, and an
   ``advance(seconds)`` coroutine that makes that much time pass for the store (the memory backend
   moves a ``FakeClock``; a real server just ``await asyncio.sleep(seconds)``, so give it a short
   ttl such as 1.2 s). Close the store on exit.
2. Register it: ``BACKENDS["redis"] = redis_backend``; if it needs a marker
   (``pytest.mark.redis``), add ``BACKEND_MARKS["redis"] = (pytest.mark.redis,)``.

The expiry contract puts with ``backend.ttl``, advances half of it (the entry must still be there),
then a whole ``ttl`` more (it must be gone): a backend that rounds a ttl up to whole seconds fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import pytest

from proxy.clock import FakeClock
from proxy.messages import Entry, Headers, ResponseHead
from proxy.storage.base import Storage
from proxy.storage.eviction import DEFAULT_POLICY, POLICIES
from proxy.storage.memory import MemoryStorage
from tests.redis_fixtures import register_redis_backends  # the server fixtures come from tests/conftest.py


@dataclass(frozen=True)
class Backend:
    store: Storage
    ttl: float  # a short time-to-live this backend expires precisely enough for the expiry contract
    advance: Callable[[float], Awaitable[None]]  # let that many seconds pass, as the store sees time


BackendFactory = Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[Backend]]


def memory_backend_with(eviction: str) -> BackendFactory:
    """The memory store with one eviction policy (the contract holds for every policy)."""

    @asynccontextmanager
    async def memory_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
        clock = FakeClock()
        store = MemoryStorage(64 * 1024 * 1024, clock=clock, eviction=eviction)

        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        try:
            yield Backend(store=store, ttl=10.0, advance=advance)
        finally:
            await store.close()

    return memory_backend


memory_backend = memory_backend_with(DEFAULT_POLICY)
BACKENDS: dict[str, BackendFactory] = {"memory": memory_backend}
BACKENDS.update({f"memory-{name}": memory_backend_with(name) for name in POLICIES if name != DEFAULT_POLICY})
BACKEND_MARKS: dict[str, tuple[pytest.MarkDecorator, ...]] = {}
register_redis_backends(BACKENDS, BACKEND_MARKS, Backend)


@pytest.fixture(params=[pytest.param(name, id=name, marks=BACKEND_MARKS.get(name, ())) for name in BACKENDS])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    async with BACKENDS[request.param](request) as handle:
        yield handle


@pytest.fixture
async def store(backend: Backend) -> Storage:
    """A fresh, empty store of each registered backend (closed by ``backend``)."""
    return backend.store


def build_entry(
    key: str = "key-1",
    url: str = "http://origin.test/a",
    *,
    status: int = 200,
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "text/plain"),),
    body: bytes = b"hello",
    vary: tuple[tuple[str, str | None], ...] = (),
    tags: tuple[str, ...] = (),
    freshness: float = 60.0,
) -> Entry:
    """An entry with plausible times; only what a test names differs."""
    return Entry(
        key=key,
        url=url,
        head=ResponseHead(status, Headers(headers)),
        body=body,
        request_time=1_700_000_000.0,
        response_time=1_700_000_000.5,
        freshness=freshness,
        vary=vary,
        tags=tags,
    )


@pytest.fixture
def make_entry() -> Callable[..., Entry]:
    """``build_entry``, as a fixture so test modules need not import from a conftest."""
    return build_entry
