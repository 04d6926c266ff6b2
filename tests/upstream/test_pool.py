"""The connection pool: size limit, LIFO reuse, the bounded wait (``UpstreamBusy``), and no reuse after a broken
exchange. The scripted origin numbers its connections, so reuse is seen from the origin's side.
"""

from __future__ import annotations

import asyncio

import pytest

from proxy.errors import UpstreamBusy, UpstreamTimeout
from tests.upstream.conftest import MakeUpstream, StartOrigin, head

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
BIG = b"HTTP/1.1 200 OK\r\nContent-Length: 4000000\r\n\r\n" + b"x" * 4_000_000


async def test_pool_reuses_most_recently_released_first(scripted: StartOrigin, make_upstream: MakeUpstream) -> None:
    origin = await scripted(lambda target: BIG if target == b"/big" else OK)
    upstream = await make_upstream(origin.url, read_limit=1000)
    first = await upstream.send(head("/big"))  # connection 1, held (body not read)
    second = await upstream.send(head("/big"))  # connection 2, held
    async for _chunk in second.stream():
        pass  # connection 2 back in the pool
    async for _chunk in first.stream():
        pass  # connection 1 back in the pool, after 2: LIFO takes it first
    async with await upstream.send(head("/next")) as response:
        assert response.body == b"ok"
    assert [number for number, _ in origin.requests] == [1, 2, 1]


async def test_pool_size_bounds_connections_and_wait_is_bounded(
    scripted: StartOrigin, make_upstream: MakeUpstream
) -> None:
    """Issue 9 §7: past the pool's size a request waits at most ``pool_timeout``, then UpstreamBusy (503)."""
    origin = await scripted(lambda target: BIG if target == b"/big" else OK)
    upstream = await make_upstream(origin.url, read_limit=1000, pool_size=1, pool_timeout=0.2)
    held = await upstream.send(head("/big"))
    with pytest.raises(UpstreamBusy) as caught:
        await upstream.send(head("/next"))
    assert caught.value.status == 503
    await held.release()  # not read to its end: closed, its slot freed
    async with await upstream.send(head("/next")) as response:
        assert response.body == b"ok"
    assert origin.connections == 2


async def test_waiting_request_gets_the_released_connection(scripted: StartOrigin, make_upstream: MakeUpstream) -> None:
    origin = await scripted(lambda target: BIG if target == b"/big" else OK)
    upstream = await make_upstream(origin.url, read_limit=1000, pool_size=1, pool_timeout=30)
    held = await upstream.send(head("/big"))
    waiting = asyncio.ensure_future(upstream.send(head("/next")))
    await asyncio.sleep(0)
    assert not waiting.done()
    async for _chunk in held.stream():
        pass  # read to the end: the connection is handed to the waiting request
    async with await waiting as response:
        assert response.body == b"ok"
    assert [number for number, _ in origin.requests] == [1, 1]


async def test_read_timeout_connection_not_reused(scripted: StartOrigin, make_upstream: MakeUpstream) -> None:
    origin = await scripted(lambda target: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab" if target == b"/s" else OK)
    upstream = await make_upstream(origin.url, read_timeout=0.2)
    with pytest.raises(UpstreamTimeout):
        await upstream.send(head("/s"))
    async with await upstream.send(head("/next")) as response:
        assert response.body == b"ok"
    assert [number for number, _ in origin.requests] == [1, 2]


async def test_idle_connection_closed_by_origin_is_replaced(scripted: StartOrigin, make_upstream: MakeUpstream) -> None:
    """A pooled connection the origin closed while idle is not used for the next request."""
    origin = await scripted(lambda target: OK)
    origin.close_after.add(b"/bye")  # the answer is complete, then the origin closes the kept-alive connection
    upstream = await make_upstream(origin.url)
    async with await upstream.send(head("/bye")) as response:
        assert response.body == b"ok"
    for _ in range(3):
        async with await upstream.send(head("/next")) as response:
            assert response.body == b"ok"
    assert [number for number, _ in origin.requests] == [1, 2, 2, 2]


@pytest.mark.parametrize("size", [1, 3])
async def test_concurrent_requests_never_exceed_pool_size(
    scripted: StartOrigin, make_upstream: MakeUpstream, size: int
) -> None:
    origin = await scripted(lambda target: OK)
    upstream = await make_upstream(origin.url, pool_size=size, pool_timeout=30)

    async def one(n: int) -> bytes:
        async with await upstream.send(head(f"/{n}")) as response:
            assert response.body is not None
            return response.body

    assert await asyncio.gather(*(one(n) for n in range(40))) == [b"ok"] * 40
    assert origin.connections <= size


async def test_streamed_body_backpressure_reaches_the_origin(
    scripted: StartOrigin, make_upstream: MakeUpstream
) -> None:
    """A consumer that stops reading stops the socket being read: the origin cannot write the rest of a 64 MiB body
    until the consumer takes it (nothing is buffered without bound in the proxy)."""
    size = 64 * 1024 * 1024
    origin = await scripted(lambda _t: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
    upstream = await make_upstream(origin.url, read_limit=1000)
    async with await upstream.send(head("/big")) as response:
        chunks = response.stream()
        received = len(await anext(chunks))
        for _ in range(200):  # give the origin every chance to push the rest, were the socket still read
            await asyncio.sleep(0.005)
        assert origin.drained == []
        async for chunk in chunks:
            received += len(chunk)
    assert received == size
    assert origin.drained == [b"/big"]
