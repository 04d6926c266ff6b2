"""The upstream contract: any implementation of the origin port against a real origin on loopback (uvicorn), and a
raw socket server where bytes matter. ``IMPLEMENTATIONS`` lists the implementations; each runs every test here.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy.clock import FakeClock
from proxy.errors import ConfigError, UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout
from proxy.messages import RequestHead
from proxy.upstream import Upstream, UpstreamConfig, UpstreamResponse
from tests.support.origin import RunningOrigin, pattern_bytes
from tests.support.servers import free_port
from tests.upstream.conftest import MakeUpstream, head


async def collect(response: UpstreamResponse) -> bytes:
    return b"".join([chunk async for chunk in response.stream()])


async def echo(upstream: Upstream, request: RequestHead, body: Any = None) -> dict[str, Any]:
    async with await upstream.send(request, body) as response:
        assert response.body is not None
        return dict(json.loads(response.body))


class RawCapture:
    """A bare TCP server that records the request head bytes and answers ``response`` (an empty 200)."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(raw)
        writer.write(self.response)
        await writer.drain()
        writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def lines(self) -> list[bytes]:
        return self.heads[-1].split(b"\r\n")


@pytest.fixture
async def raw_capture() -> AsyncIterator[RawCapture]:
    capture = RawCapture()
    capture.server = await asyncio.start_server(capture._handle, "127.0.0.1", 0)
    yield capture
    capture.server.close()
    await capture.server.wait_closed()


TARGETS = [
    pytest.param("/a%2Fb/%7Euser?x=%20y", id="rfc3986-2.1-percent-encoding-kept"),
    pytest.param("/a/./b/../c", id="rfc3986-5.2.4-dot-segments-not-removed"),
    pytest.param("//double//slash?a=1&&b=&c", id="rfc9112-3.2.1-empty-segments-and-params-kept"),
    pytest.param("/q?a=b%26c&d=%2B&e=+", id="rfc9112-3.2.1-query-bytes-kept"),
]


@pytest.mark.parametrize("target", TARGETS)
async def test_request_target_sent_byte_for_byte(
    raw_capture: RawCapture, make_upstream: MakeUpstream, target: str
) -> None:
    upstream = await make_upstream(raw_capture.url)
    async with await upstream.send(head(target)):
        pass
    assert raw_capture.lines()[0] == f"GET {target} HTTP/1.1".encode()


async def test_request_target_reaches_origin_raw(origin: RunningOrigin, make_upstream: MakeUpstream) -> None:
    upstream = await make_upstream()
    async with await upstream.send(head("/a%2Fb/%7Euser?x=%20y")):
        pass
    assert (origin.requests[-1].path, origin.requests[-1].query) == ("/a%2Fb/%7Euser", "x=%20y")
    assert origin.hits["/a%2Fb/%7Euser?x=%20y"] == 1


async def test_upstream_url_path_prefix_is_prepended(origin: RunningOrigin, make_upstream: MakeUpstream) -> None:
    upstream = await make_upstream(origin.url + "/api/")
    async with await upstream.send(head("/v1/x?y=1")):
        pass
    assert origin.requests[-1].target == "/api/v1/x?y=1"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"])
async def test_rfc9110_9_every_method_forwarded(make_upstream: MakeUpstream, method: str) -> None:
    upstream = await make_upstream()
    seen = await echo(upstream, head("/echo", method), b"payload" if method in ("POST", "PUT") else None)
    assert seen["method"] == method
    assert seen["body_length"] == (7 if method in ("POST", "PUT") else 0)


async def test_rfc9110_9_3_2_head_reads_no_body(make_upstream: MakeUpstream) -> None:
    upstream = await make_upstream(read_limit=10)
    async with await upstream.send(head("/bytes/1000000", "HEAD")) as response:
        assert (response.head.status, response.body, response.complete) == (200, b"", True)
        assert response.head.headers.get("Content-Length") == "1000000"


async def test_response_header_case_and_duplicates_kept(raw_capture: RawCapture, make_upstream: MakeUpstream) -> None:
    raw_capture.response = (
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Custom-Case: v\r\nSet-Cookie: b=2\r\n"
        b"Content-Length: 1\r\nConnection: close\r\n\r\nx"
    )
    upstream = await make_upstream(raw_capture.url)
    async with await upstream.send(head("/c")) as response:
        assert response.head.headers.items() == (
            ("Set-Cookie", "a=1"),
            ("X-Custom-Case", "v"),
            ("Set-Cookie", "b=2"),
            ("Content-Length", "1"),
        )
        assert response.body == b"x"


async def test_duplicate_set_cookie_from_origin_kept(origin: RunningOrigin, make_upstream: MakeUpstream) -> None:
    origin.set("/c", headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")], body="x")
    upstream = await make_upstream()
    async with await upstream.send(head("/c")) as response:
        assert response.head.headers.get_all("set-cookie") == ["a=1", "b=2"]


async def test_request_header_case_and_duplicates_kept(raw_capture: RawCapture, make_upstream: MakeUpstream) -> None:
    upstream = await make_upstream(raw_capture.url)
    async with await upstream.send(head(headers=[("X-Dup", "1"), ("X-CamelCase", "v"), ("X-Dup", "2")])):
        pass
    lines = raw_capture.lines()
    assert [line for line in lines if line.lower().startswith(b"x-dup:")] == [b"X-Dup: 1", b"X-Dup: 2"]
    assert b"X-CamelCase: v" in lines


async def test_non_ascii_header_bytes_round_trip(raw_capture: RawCapture, make_upstream: MakeUpstream) -> None:
    upstream = await make_upstream(raw_capture.url)
    value = "caf\u00e9 \u2713".encode().decode("latin-1")  # UTF-8 bytes, latin-1 decoded as RequestHead holds them
    async with await upstream.send(head(headers=[("X-Name", value)])):
        pass
    assert "X-Name: café ✓".encode() in raw_capture.lines()


async def test_rfc9110_7_6_1_hop_by_hop_request_fields_stripped(
    origin: RunningOrigin, make_upstream: MakeUpstream
) -> None:
    fields = [
        ("Connection", "keep-alive, X-Foo"),
        ("X-Foo", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Upgrade", "websocket"),
        ("Proxy-Authorization", "Basic eA=="),
        ("Trailer", "X-T"),
        ("X-Kept", "yes"),
    ]
    upstream = await make_upstream()
    async with await upstream.send(head("/h", headers=fields)):
        pass
    names = origin.requests[-1].headers.names()
    assert names.isdisjoint({"x-foo", "keep-alive", "proxy-connection", "te", "upgrade", "trailer"})
    assert names.isdisjoint({"proxy-authorization", "connection"})
    assert origin.requests[-1].headers.get("X-Kept") == "yes"


async def test_rfc9110_7_6_1_hop_by_hop_response_fields_stripped(
    origin: RunningOrigin, make_upstream: MakeUpstream
) -> None:
    fields = [
        ("Connection", "X-Foo"),
        ("X-Foo", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Authenticate", "Basic"),
        ("X-Kept", "yes"),
    ]
    origin.set("/h", headers=fields, chunks=[b"a", b"b"])
    upstream = await make_upstream()
    async with await upstream.send(head("/h")) as response:
        names = response.head.headers.names()
        assert names.isdisjoint({"connection", "x-foo", "keep-alive", "proxy-authenticate", "transfer-encoding"})
        assert (response.head.headers.get("X-Kept"), response.body) == ("yes", b"ab")


async def test_rfc9110_7_6_3_via_and_forwarded_fields_appended(
    origin: RunningOrigin, make_upstream: MakeUpstream
) -> None:
    # The edge (proxy.trust) vouched for the chain 10.0.0.1 from a trusted peer 192.0.2.7: sent once, peer appended.
    fields = [("Host", "shop.example"), ("Via", "1.0 edge"), ("X-Forwarded-For", "10.0.0.1")]
    upstream = await make_upstream()
    request = head(
        "/f", headers=fields, scheme="https", host="shop.example", client="10.0.0.1", peer="192.0.2.7",
        forwarded_for=("10.0.0.1",),
    )  # fmt: skip
    async with await upstream.send(request):
        pass
    seen = origin.requests[-1].headers
    assert seen.get_all("via") == ["1.0 edge, 1.1 cacheproxy"]
    assert seen.get_all("x-forwarded-for") == ["10.0.0.1, 192.0.2.7"]
    assert (seen.get("x-forwarded-proto"), seen.get("x-forwarded-host")) == ("https", "shop.example")


async def test_untrusted_forwarded_for_is_not_passed_on(origin: RunningOrigin, make_upstream: MakeUpstream) -> None:
    """A chain no trusted peer vouched for (``forwarded_for`` empty) is replaced by the peer alone."""
    upstream = await make_upstream()
    request = head("/u", headers=[("X-Forwarded-For", "203.0.113.9")], client="192.0.2.8", peer="192.0.2.8")
    async with await upstream.send(request):
        pass
    assert origin.requests[-1].headers.get_all("x-forwarded-for") == ["192.0.2.8"]


@pytest.mark.parametrize(
    ("preserve_host", "expected"),
    [
        pytest.param(False, None, id="rfc9110-7.2-host-is-upstream-authority"),
        pytest.param(True, "shop.example", id="rfc9110-7.2-preserve-host"),
    ],
)
async def test_rfc9110_7_2_host(
    origin: RunningOrigin, make_upstream: MakeUpstream, preserve_host: bool, expected: str | None
) -> None:
    upstream = await make_upstream(preserve_host=preserve_host)
    async with await upstream.send(head("/", headers=[("Host", "shop.example")], host="shop.example")):
        pass
    assert origin.requests[-1].headers.get_all("host") == [expected or origin.url.removeprefix("http://")]


async def test_no_client_default_headers_added(raw_capture: RawCapture, make_upstream: MakeUpstream) -> None:
    upstream = await make_upstream(raw_capture.url)
    async with await upstream.send(head("/p", "POST", client=None), b"abc"):
        pass
    names = {line.split(b":")[0].lower() for line in raw_capture.lines()[1:] if line}
    assert names == {b"host", b"content-length", b"via", b"x-forwarded-proto", b"x-forwarded-host"}


async def test_no_cookie_jar_replay(origin: RunningOrigin, make_upstream: MakeUpstream) -> None:
    origin.set("/login", headers=[("Set-Cookie", "sid=secret; Path=/")], body="ok")
    upstream = await make_upstream()
    async with await upstream.send(head("/login")):
        pass
    async with await upstream.send(head("/next")):
        pass
    assert "cookie" not in origin.requests[-1].headers


async def test_rfc9110_15_4_redirect_passed_through(origin: RunningOrigin, make_upstream: MakeUpstream) -> None:
    origin.set("/old", status=302, headers={"Location": "/new"})
    upstream = await make_upstream()
    async with await upstream.send(head("/old")) as response:
        assert (response.head.status, response.head.headers.get("Location")) == (302, "/new")
    assert origin.hits["/new"] == 0


async def test_rfc9110_8_4_content_coding_not_undone(origin: RunningOrigin, make_upstream: MakeUpstream) -> None:
    compressed = gzip.compress(b"hello " * 1000)
    origin.set("/gz", headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"}, body=compressed)
    upstream = await make_upstream()
    async with await upstream.send(head("/gz", headers=[("Accept-Encoding", "gzip")])) as response:
        assert (response.body, response.head.headers.get("Content-Encoding")) == (compressed, "gzip")
        assert response.head.headers.get("Content-Length") == str(len(compressed))


async def test_rfc9110_13_1_2_not_modified_passes_through(origin: RunningOrigin, make_upstream: MakeUpstream) -> None:
    origin.set("/e", headers={"ETag": '"v1"', "Cache-Control": "max-age=60"}, body="full", etag_auto=True)
    upstream = await make_upstream()
    async with await upstream.send(head("/e", headers=[("If-None-Match", 'W/"v1"')])) as response:
        assert (response.head.status, response.body, response.complete) == (304, b"", True)
        assert response.head.headers.get("ETag") == '"v1"'


@pytest.mark.parametrize(
    ("with_length", "framing"),
    [
        pytest.param(True, "content-length", id="rfc9112-6.2-content-length-kept"),
        pytest.param(False, "transfer-encoding", id="rfc9112-7.1-chunked-without-length"),
    ],
)
async def test_streamed_request_body_arrives_intact(
    origin: RunningOrigin, make_upstream: MakeUpstream, with_length: bool, framing: str
) -> None:
    data = pattern_bytes(5 * 1024 * 1024)

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    fields = [("Content-Length", str(len(data)))] if with_length else []
    upstream = await make_upstream()
    seen = await echo(upstream, head("/echo", "POST", headers=fields), body())
    assert (seen["body_length"], seen["body_sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert framing in {name for name, _ in seen["headers"]}


@pytest.mark.parametrize("target", ["/bytes/1048576", "/bytes/1048576?chunked=1"], ids=["length", "chunked"])
async def test_body_over_read_limit_streams(make_upstream: MakeUpstream, target: str) -> None:
    upstream = await make_upstream(read_limit=64 * 1024)
    async with await upstream.send(head(target)) as response:
        assert (response.body, response.complete) == (None, False)
        assert await collect(response) == pattern_bytes(1048576)
        assert response.complete


@pytest.mark.parametrize("target", ["/bytes/100000", "/bytes/100000?chunked=1"], ids=["length", "chunked"])
async def test_body_under_read_limit_read_whole(make_upstream: MakeUpstream, target: str) -> None:
    upstream = await make_upstream(read_limit=200_000)
    async with await upstream.send(head(target)) as response:
        assert (response.body, response.complete) == (pattern_bytes(100000), True)
        assert await collect(response) == pattern_bytes(100000)


async def test_read_limit_argument_overrides_config(make_upstream: MakeUpstream) -> None:
    upstream = await make_upstream()
    async with await upstream.send(head("/bytes/5000"), read_limit=100) as response:
        assert response.body is None
        assert await collect(response) == pattern_bytes(5000)


async def test_connection_refused_is_connect_error(make_upstream: MakeUpstream) -> None:
    upstream = await make_upstream(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(UpstreamConnectError) as caught:
        await upstream.send(head("/"))
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert not await upstream.ping()


async def test_read_timeout_is_upstream_timeout(origin: RunningOrigin, make_upstream: MakeUpstream) -> None:
    origin.set("/slow", delay=30, body="late")
    upstream = await make_upstream(read_timeout=0.3)
    with pytest.raises(UpstreamTimeout) as caught:
        await upstream.send(head("/slow"))
    assert isinstance(caught.value.__cause__, TimeoutError)


@pytest.mark.parametrize("chunked", [False, True], ids=["rfc9112-6.3-short-length", "rfc9112-7.1-no-last-chunk"])
async def test_body_cut_mid_stream_is_protocol_error(
    origin: RunningOrigin, make_upstream: MakeUpstream, chunked: bool
) -> None:
    data = pattern_bytes(300_000)
    if chunked:
        origin.set("/cut", chunks=[data[:100_000], data[100_000:]], fail_after=150_000)
    else:
        origin.set("/cut", body=data, fail_after=150_000)
    upstream = await make_upstream(read_limit=1000)
    async with await upstream.send(head("/cut")) as response:
        with pytest.raises(UpstreamProtocolError):
            await collect(response)
        assert not response.complete


async def test_body_cut_while_read_whole_is_protocol_error(origin: RunningOrigin, make_upstream: MakeUpstream) -> None:
    origin.set("/cut", body=pattern_bytes(300_000), fail_after=1000)
    upstream = await make_upstream()
    with pytest.raises(UpstreamProtocolError) as caught:
        await upstream.send(head("/cut"))
    assert caught.value.__cause__ is not None  # chained from the client's own error


def pooled_connections(upstream: Upstream) -> int:
    return upstream._require_pool().count


async def test_early_release_does_not_leak_connections(make_upstream: MakeUpstream) -> None:
    upstream = await make_upstream(read_limit=1024, pool_size=2)
    async with asyncio.timeout(60):  # a leaked pool would block forever on the third request
        for _ in range(50):
            response = await upstream.send(head("/bytes/4194304"))
            async for _chunk in response.stream():
                break
            await response.release()
            await response.release()
        assert pooled_connections(upstream) <= 2
        async with await upstream.send(head("/bytes/10")) as response:
            assert response.body == pattern_bytes(10)


async def test_elapsed_measured_with_given_clock(make_upstream: MakeUpstream) -> None:
    class SteppingClock(FakeClock):
        def monotonic(self) -> float:
            self.advance(1.5)
            return super().monotonic()

    upstream = await make_upstream(clock=SteppingClock())
    async with await upstream.send(head("/")) as response:
        assert response.elapsed == 1.5


async def test_ping_true_for_any_answer(origin: RunningOrigin, make_upstream: MakeUpstream) -> None:
    origin.set("/", status=503)
    upstream = await make_upstream()
    assert await upstream.ping()


@pytest.mark.parametrize("url", ["ftp://x", "127.0.0.1:9000", "http://"])
def test_bad_upstream_url_is_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        Upstream(UpstreamConfig(url))
