"""The origin port's contract (``proxy.origin``), run against every implementation: the httptools client in front of a
real origin on loopback, and the scripted origin the driver tests stand on (so they test against the same contract).
Another client joins by adding one entry to ``IMPLEMENTATIONS``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import pytest

from proxy.clock import FakeClock
from proxy.errors import UpstreamConnectError
from proxy.messages import Headers, RequestHead
from proxy.origin import Origin, OriginResponse
from proxy.upstream import Upstream, UpstreamConfig
from tests.support.origin import RunningOrigin, run_origin
from tests.support.scripted_origin import Reply, ScriptedOrigin
from tests.support.servers import free_port


@dataclass
class Bench:
    """One implementation of the port, and how to script the origin behind it."""

    port: Origin
    answer: Callable[[str, int, Sequence[tuple[str, str]], bytes], None]  # path, status, headers, body
    refuse: Callable[[], Awaitable[Origin]]  # the same kind of client, to an origin that refuses connections


@asynccontextmanager
async def httptools_upstream() -> AsyncIterator[Bench]:
    async with run_origin() as origin:
        upstream = Upstream(UpstreamConfig(origin.url))
        refused = Upstream(UpstreamConfig(f"http://127.0.0.1:{free_port()}", connect_timeout=1.0))
        await upstream.start()
        await refused.start()
        try:
            yield Bench(upstream, _on_real(origin), _ready(refused))
        finally:
            await upstream.close()
            await refused.close()


@asynccontextmanager
async def scripted() -> AsyncIterator[Bench]:
    clock = FakeClock()
    origin = ScriptedOrigin(clock)
    refusing = ScriptedOrigin(clock, standing=Reply(error=UpstreamConnectError("refused")))

    def answer(path: str, status: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
        origin.standing = Reply(status, headers, body)

    yield Bench(origin, answer, _ready(refusing))


def _on_real(origin: RunningOrigin) -> Callable[[str, int, Sequence[tuple[str, str]], bytes], None]:
    def answer(path: str, status: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
        origin.set(path, status=status, headers=list(headers), body=body)

    return answer


def _ready(port: Origin) -> Callable[[], Awaitable[Origin]]:
    async def get() -> Origin:
        return port

    return get


IMPLEMENTATIONS: dict[str, Callable[[], AbstractAsyncContextManager[Bench]]] = {
    "httptools": httptools_upstream,
    "scripted": scripted,
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
async def bench(request: pytest.FixtureRequest) -> AsyncIterator[Bench]:
    async with IMPLEMENTATIONS[request.param]() as running:
        yield running


def get(path: str, method: str = "GET") -> RequestHead:
    return RequestHead(method, "http", "client.example", path, "", Headers(), "192.0.2.7")


async def read_all(response: OriginResponse) -> bytes:
    return b"".join([chunk async for chunk in response.stream()])


async def test_rfc9110_7_6_1_hop_by_hop_fields_are_removed_from_the_head(bench: Bench) -> None:
    fields = [("Connection", "X-Hop"), ("X-Hop", "a"), ("Keep-Alive", "timeout=5"), ("X-End", "kept")]
    bench.answer("/hop", 200, fields, b"ok")
    response = await bench.port.send(get("/hop"))
    assert response.head.status == 200
    assert response.head.headers.get("x-end") == "kept"
    assert all(name not in response.head.headers for name in ("connection", "x-hop", "keep-alive"))
    await response.release()


async def test_origin_port_a_body_within_the_read_limit_is_read_whole(bench: Bench) -> None:
    bench.answer("/small", 200, [("Content-Type", "text/plain")], b"x" * 100)
    response = await bench.port.send(get("/small"), read_limit=1000)
    assert (response.body, response.complete) == (b"x" * 100, True)
    assert await read_all(response) == b"x" * 100  # streaming a whole body yields it once
    await response.release()


async def test_origin_port_a_body_over_the_read_limit_streams_and_releases_at_its_end(bench: Bench) -> None:
    body = bytes(range(256)) * 20
    bench.answer("/large", 200, [], body)
    response = await bench.port.send(get("/large"), read_limit=100)
    assert (response.body, response.complete) == (None, False)
    assert await read_all(response) == body
    assert response.complete
    await response.release()  # idempotent after the stream released it


async def test_origin_port_release_before_the_end_is_allowed_twice(bench: Bench) -> None:
    bench.answer("/abandoned", 200, [], b"y" * 5000)
    response = await bench.port.send(get("/abandoned"), read_limit=10)
    await response.release()
    await response.release()
    assert not response.complete


async def test_rfc9110_9_3_2_head_has_no_body(bench: Bench) -> None:
    bench.answer("/head", 200, [("Content-Length", "4")], b"body")
    response = await bench.port.send(get("/head", "HEAD"))
    assert response.body == b""
    await response.release()


async def test_rfc9110_15_4_5_a_304_has_no_body(bench: Bench) -> None:
    bench.answer("/nm", 304, [("ETag", '"v1"')], b"")
    response = await bench.port.send(get("/nm"))
    assert (response.head.status, response.body) == (304, b"")
    assert response.head.headers.get("etag") == '"v1"'
    await response.release()


async def test_origin_port_a_refused_connection_is_an_upstream_connect_error(bench: Bench) -> None:
    port = await bench.refuse()
    with pytest.raises(UpstreamConnectError):
        await port.send(get("/"))
