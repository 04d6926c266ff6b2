"""Issue 9 §7: an upstream that misbehaves (impossible status, malformed field lines, a full pool) and WebSocket.

The client always gets a complete, short HTTP answer: 502 for what the upstream broke, 503 with ``Retry-After`` when
no upstream connection came free in time (or the stored entry, where stale-if-error allows it), 501 for WebSocket.
Never a dropped connection, never a traceback.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator

import httpx
import pytest

from proxy.app import ProxyApp
from proxy.config import Settings
from proxy.errors import UpstreamBusy
from proxy.messages import Headers, RequestHead
from proxy.upstream import Upstream, UpstreamConfig
from tests.security.harness import (
    ProxyProcess,
    RawResponse,
    Received,
    proxy_process,
    recording_upstream,
    response_bytes,
    send_raw,
    wait_until,
)
from tests.support.servers import UvicornServer

PLAIN_RULES = "routes:\n  - name: everything\n    match:\n      path: /**\n"  # the origin's headers decide
WEBSOCKET_HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


BROKEN = {
    "rfc9110-15-status-999": b"HTTP/1.1 999 Weird\r\nContent-Length: 2\r\n\r\nok",
    "rfc9110-15-status-600": b"HTTP/1.1 600 Nope\r\nContent-Length: 2\r\n\r\nok",
    "rfc9110-15-status-099": b"HTTP/1.1 099 Early\r\nContent-Length: 2\r\n\r\nok",
    "rfc9112-5.1-space-before-colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    "rfc9110-5.1-name-not-a-token": b"HTTP/1.1 200 OK\r\nX Bad: 1\r\nContent-Length: 2\r\n\r\nok",
    "rfc9112-5.2-obs-fold-in-framing-field": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n 0\r\n\r\nok",
    "rfc9112-6.3-conflicting-content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    "rfc9110-5.5-nul-in-value": b"HTTP/1.1 200 OK\r\nX-A: 1\x00x\r\nContent-Length: 2\r\n\r\nok",
    "rfc9110-5.5-cr-in-value": b"HTTP/1.1 200 OK\r\nX-A: 1\rX\r\nContent-Length: 2\r\n\r\nok",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\nok",
}


def broken_answer(received: Received) -> bytes:
    """The upstream answers ``/<case>`` with the raw bytes of that case (a fine response for anything else)."""
    return BROKEN.get(received.target[1:].decode(), response_bytes())


@pytest.fixture(scope="module")
def misbehaving() -> Iterator[ProxyProcess]:
    with recording_upstream(broken_answer) as upstream, proxy_process(upstream.url) as proxy:
        yield proxy


def get(target: str) -> bytes:
    return f"GET /{target} HTTP/1.1\r\nHost: example.test\r\n\r\n".encode()


def assert_short_502(response: RawResponse, detail: str = "protocol-error") -> None:
    assert response.status == 502
    assert response.body.count(b"\n") == 1
    assert response.body.startswith(b"502 Bad Gateway")
    assert b"Traceback" not in response.body
    assert f"detail={detail}" in (response.header("cache-status") or "")


STATUS_CASES = [name for name in BROKEN if "-status-" in name]
FIELD_CASES = [name for name in BROKEN if "-status-" not in name and name != "obs-fold"]


@pytest.mark.parametrize("case", STATUS_CASES)
def test_status_outside_100_599_is_502(misbehaving: ProxyProcess, case: str) -> None:
    assert_short_502(misbehaving.send(get(case)))
    assert misbehaving.send(get("fine")).status == 200  # and the proxy still answers


@pytest.mark.parametrize("case", FIELD_CASES)
def test_malformed_field_line_is_502(misbehaving: ProxyProcess, case: str) -> None:
    assert_short_502(misbehaving.send(get(case)))


def test_rfc9112_5_2_obs_fold_elsewhere_is_502_never_forwarded(misbehaving: ProxyProcess) -> None:
    """RFC 9112 §5.2 lets a proxy reject a message with obs-fold: the httptools client does (llhttp refuses it), so no
    folded line reaches the client. (The aiohttp client took the section's other choice, replacing each by spaces.)"""
    assert_short_502(misbehaving.send(get("obs-fold")))
    assert misbehaving.send(get("fine")).status == 200  # and the proxy still answers


class SlowUpstream:
    """Answers ``/slow...`` only once released; everything else at once, with a stale-if-error entry."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, received: Received) -> bytes:
        if received.target.startswith(b"/slow"):
            self.release.wait(30)
        headers = (("Cache-Control", "max-age=0, stale-if-error=600"),)
        return response_bytes(body=b"fresh " + received.target, headers=headers)


def hold_pool(proxy: ProxyProcess, upstream_seen: list[Received]) -> list[threading.Thread]:
    threads = [
        threading.Thread(target=send_raw, args=(proxy.port, f"GET /slow-{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode()))
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    assert wait_until(lambda: sum(r.target.startswith(b"/slow") for r in upstream_seen) == 2, timeout=30)
    return threads


def test_pool_exhausted_is_503_with_retry_after_and_counted() -> None:
    slow = SlowUpstream()
    flags = ("--upstream-pool-size", "2", "--upstream-pool-timeout", "0.3")
    with recording_upstream(slow) as upstream, proxy_process(upstream.url, *flags, rules=PLAIN_RULES) as proxy:
        threads = hold_pool(proxy, upstream.received)
        try:
            response = proxy.send(b"GET /third HTTP/1.1\r\nHost: a\r\n\r\n")
        finally:
            slow.release.set()
            for thread in threads:
                thread.join(30)
        assert response.status == 503
        assert response.header("retry-after") == "1"
        assert "detail=pool-exhausted" in (response.header("cache-status") or "")
        assert response.body.startswith(b"503 Service Unavailable")
        assert not any(r.target == b"/third" for r in upstream.received)
        metrics = httpx.get(f"http://127.0.0.1:{proxy.port}/_cacheproxy/metrics").text
        assert "cacheproxy_upstream_pool_exhausted_total 1.0" in metrics
        assert proxy.send(b"GET /third HTTP/1.1\r\nHost: a\r\n\r\n").status == 200  # slots came back


def test_rfc5861_4_pool_exhausted_serves_stale_if_error_entry() -> None:
    slow = SlowUpstream()
    flags = ("--upstream-pool-size", "2", "--upstream-pool-timeout", "0.3")
    with recording_upstream(slow) as upstream, proxy_process(upstream.url, *flags, rules=PLAIN_RULES) as proxy:
        stored = proxy.send(b"GET /kept HTTP/1.1\r\nHost: a\r\n\r\n")
        assert stored.status == 200
        assert "stored" in (stored.header("cache-status") or "")
        threads = hold_pool(proxy, upstream.received)
        try:
            response = proxy.send(b"GET /kept HTTP/1.1\r\nHost: a\r\n\r\n")
        finally:
            slow.release.set()
            for thread in threads:
                thread.join(30)
        assert response.status == 200
        assert response.body == b"fresh /kept"
        assert "detail=stale-if-error" in (response.header("cache-status") or "")
        assert sum(r.target == b"/kept" for r in upstream.received) == 1


def test_websocket_upgrade_request_is_501_with_a_reason_and_not_forwarded() -> None:
    with recording_upstream() as upstream, proxy_process(upstream.url) as proxy:
        response = proxy.send(WEBSOCKET_HANDSHAKE)
        assert response.status == 501
        assert response.body == b"501 Not Implemented: WebSocket upgrades are not proxied by cacheproxy\n"
        assert upstream.received == []
        assert proxy.send(b"GET /after-ws HTTP/1.1\r\nHost: a\r\n\r\n").status == 200


async def test_asgi_websocket_scope_is_501_under_a_server_that_offers_http_responses() -> None:
    """Under a server with WebSocket enabled (not ``cacheproxy serve``), the ``websocket`` scope gets the 501."""
    with recording_upstream() as upstream:
        app = ProxyApp(Settings(upstream=upstream.url))
        async with UvicornServer(app, ws="websockets-sansio") as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(WEBSOCKET_HANDSHAKE)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            body = await reader.read(200)
            writer.close()
            await writer.wait_closed()
        assert head.startswith(b"HTTP/1.1 501")
        assert b"not proxied" in body
        assert upstream.received == []


async def test_pool_slot_comes_back_after_streaming_early_release_and_a_dropped_response() -> None:
    """Every way an exchange ends gives its pool slot back; with a pool of 1, the next request proves it."""
    request = RequestHead("GET", "http", "example.test", "/big", "", Headers([("host", "example.test")]))
    big = response_bytes(body=b"x" * 100_000)
    with recording_upstream(lambda _received: big) as origin:
        upstream = Upstream(UpstreamConfig(origin.url, pool_size=1, pool_timeout=0.2, read_limit=1024))
        await upstream.start()
        try:
            streamed = await upstream.send(request)
            assert streamed.body is None
            assert len(b"".join([chunk async for chunk in streamed.stream()])) == 100_000
            early = await upstream.send(request)
            with pytest.raises(UpstreamBusy):
                await upstream.send(request)
            await early.release()
            dropped = await upstream.send(request)
            del dropped  # never released: the slot comes back when it is collected
            gc.collect()
            last = await upstream.send(request)
            await last.release()
        finally:
            await upstream.close()
