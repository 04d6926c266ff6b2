"""Response framing (RFC 9112 §6, §7): what any origin-port implementation must refuse, skip or cut.

The origin is a scripted raw-bytes server (``tests/upstream/conftest.py``), so every malformed response reaches the
client exactly as written. A refused response is an ``UpstreamProtocolError`` (answered 502 by the proxy) and its
connection is never reused: the next request arrives on a new connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from proxy.errors import UpstreamProtocolError
from tests.upstream.conftest import MakeUpstream, StartOrigin, head

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

ATTACKS = [
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                 id="rfc9112-6.3-content-length-and-transfer-encoding"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
                 id="rfc9112-6.3-duplicate-content-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
                 id="rfc9112-6.3-conflicting-content-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc", id="rfc9112-6.3-content-length-list"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc", id="rfc9110-8.6-malformed-content-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc", id="rfc9110-8.6-signed-content-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nabc", id="rfc9110-8.6-negative-content-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
                 id="rfc9112-7.1-bad-chunk-size"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc", id="rfc9112-6.1-unknown-transfer-coding"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nabc",
                 id="rfc9112-6.3-chunked-not-final"),
    pytest.param(b"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc", id="rfc9112-2.2-bare-lf-line-endings"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX-A: a\nContent-Length: 3\r\n\r\nabc", id="rfc9112-2.2-bare-lf-in-fields"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 3\r\n\r\nabc", id="rfc9112-5.2-obs-fold"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\nabc", id="rfc9112-5.1-space-before-colon"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: x=1\r\nContent-Length: 3\r\n\r\nabc",
                 id="rfc9110-5.5-bare-cr-in-value"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 3\r\n\r\nabc", id="rfc9110-5.5-nul-in-value"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX A: a\r\nContent-Length: 3\r\n\r\nabc", id="rfc9110-5.1-space-in-name"),
    pytest.param(b"HTTP/1.1 999 Nope\r\nContent-Length: 3\r\n\r\nabc", id="rfc9110-15-status-999"),
    pytest.param(b"HTTP/1.1 42 Nope\r\nContent-Length: 3\r\n\r\nabc", id="rfc9110-15-status-two-digits"),
    pytest.param(b"HTTP/1.1 1000 Nope\r\nContent-Length: 3\r\n\r\nabc", id="rfc9110-15-status-four-digits"),
    pytest.param(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
                 id="rfc9110-15.2.2-unrequested-upgrade"),
    pytest.param(b"HTTP/2.0 200 OK\r\nContent-Length: 3\r\n\r\nabc", id="rfc9112-2.3-not-http1"),
    pytest.param(b"HELLO\r\n\r\n", id="rfc9112-4-not-a-status-line"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", id="rfc9112-7.1-truncated-chunked"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", id="rfc9112-6.3-truncated-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Le", id="rfc9112-8-truncated-head"),
]  # fmt: skip


@pytest.mark.parametrize("attack", ATTACKS)
async def test_malformed_response_refused_and_connection_dropped(
    scripted: StartOrigin, make_upstream: MakeUpstream, attack: bytes
) -> None:
    origin = await scripted(lambda target: attack if target == b"/attack" else OK)
    origin.close_after.add(b"/attack")  # ends the truncated ones; the complete ones must be refused all the same
    upstream = await make_upstream(origin.url)
    with pytest.raises(UpstreamProtocolError):
        async with await upstream.send(head("/attack")) as response:
            async for _chunk in response.stream():
                pass
    async with await upstream.send(head("/next")) as response:
        assert (response.head.status, response.body) == (200, b"ok")
    assert [number for number, _ in origin.requests] == [1, 2]


async def test_rfc9112_6_3_body_longer_than_content_length_cut_to_declared(
    scripted: StartOrigin, make_upstream: MakeUpstream
) -> None:
    """Issue 15 item 6: ``Content-Length: 10`` then 36 bytes: the declared 10 are the body; no reuse after it."""
    answers = iter([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + b"0123456789" + b"x" * 26, OK])
    origin = await scripted(lambda _target: next(answers))
    upstream = await make_upstream(origin.url)
    async with await upstream.send(head("/long")) as response:
        assert (response.head.status, response.body, response.complete) == (200, b"0123456789", True)
        assert response.head.headers.get("content-length") == "10"
    async with await upstream.send(head("/next")) as response:
        assert response.body == b"ok"
    assert [number for number, _ in origin.requests] == [1, 2]


async def test_rfc9112_6_3_second_response_smuggled_after_first_not_reused(
    scripted: StartOrigin, make_upstream: MakeUpstream
) -> None:
    smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
    answers = iter([OK + smuggled, OK])
    origin = await scripted(lambda _target: next(answers))
    upstream = await make_upstream(origin.url)
    async with await upstream.send(head("/a")) as response:
        assert response.body == b"ok"
    async with await upstream.send(head("/b")) as response:
        assert response.body == b"ok"  # not "evil": the smuggled response was never taken as /b's answer
    assert [number for number, _ in origin.requests] == [1, 2]


async def test_rfc9112_6_3_keep_alive_connection_reused(scripted: StartOrigin, make_upstream: MakeUpstream) -> None:
    origin = await scripted(lambda _target: OK)
    upstream = await make_upstream(origin.url)
    for target in ("/a", "/b", "/c"):
        async with await upstream.send(head(target)) as response:
            assert response.body == b"ok"
    assert [number for number, _ in origin.requests] == [1, 1, 1]


@pytest.mark.parametrize(
    "interim",
    [
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n", id="rfc9110-15.2.1-100-continue-skipped"),
        pytest.param(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n", id="rfc8297-103-skipped"),
        pytest.param(b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                     id="rfc9110-15.2-several-interim-skipped"),
    ],
)  # fmt: skip
async def test_interim_responses_skipped_never_final(
    scripted: StartOrigin, make_upstream: MakeUpstream, interim: bytes
) -> None:
    final = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\nfinal"
    origin = await scripted(lambda _target: interim + final)
    upstream = await make_upstream(origin.url)
    for _ in range(2):
        async with await upstream.send(head("/i")) as response:
            assert (response.head.status, response.body) == (200, b"final")
            assert "link" not in response.head.headers
    assert [number for number, _ in origin.requests] == [1, 1]


@pytest.mark.parametrize(
    ("method", "answer"),
    [
        pytest.param("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", id="rfc9112-6.3-head-length-no-body"),
        pytest.param("HEAD", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", id="rfc9112-6.3-head-chunked"),
        pytest.param("GET", b"HTTP/1.1 204 No Content\r\n\r\n", id="rfc9112-6.3-204-no-body"),
        pytest.param("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: \"v\"\r\n\r\n",
                     id="rfc9112-6.3-304-length-no-body"),
    ],
)  # fmt: skip
async def test_bodyless_responses_framed_and_connection_reused(
    scripted: StartOrigin, make_upstream: MakeUpstream, method: str, answer: bytes
) -> None:
    origin = await scripted(lambda target: answer if target == b"/x" else OK)
    upstream = await make_upstream(origin.url)
    async with await upstream.send(head("/x", method)) as response:
        assert (response.body, response.complete) == (b"", True)
    async with await upstream.send(head("/next")) as response:
        assert response.body == b"ok"
    assert [number for number, _ in origin.requests] == [1, 1]


async def test_rfc9112_6_3_no_framing_reads_until_close(scripted: StartOrigin, make_upstream: MakeUpstream) -> None:
    origin = await scripted(lambda target: b"HTTP/1.1 200 OK\r\n\r\nuntil close" if target == b"/eof" else OK)
    origin.close_after.add(b"/eof")
    upstream = await make_upstream(origin.url)
    async with await upstream.send(head("/eof")) as response:
        assert (response.body, response.complete) == (b"until close", True)
    async with await upstream.send(head("/next")) as response:
        assert response.body == b"ok"
    assert [number for number, _ in origin.requests] == [1, 2]


async def test_rfc9112_9_6_connection_close_not_reused(scripted: StartOrigin, make_upstream: MakeUpstream) -> None:
    origin = await scripted(lambda _t: b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
    upstream = await make_upstream(origin.url)
    for target in ("/a", "/b"):
        async with await upstream.send(head(target)) as response:
            assert response.body == b"ok"
    assert [number for number, _ in origin.requests] == [1, 2]


async def test_rfc9112_8_body_cut_mid_stream_not_complete(scripted: StartOrigin, make_upstream: MakeUpstream) -> None:
    origin = await scripted(lambda _t: b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 50_000)
    origin.close_after.add(b"/cut")
    upstream = await make_upstream(origin.url, read_limit=1000)
    received = 0
    async with await upstream.send(head("/cut")) as response:
        assert response.body is None
        with pytest.raises(UpstreamProtocolError):
            async for chunk in response.stream():
                received += len(chunk)
        assert not response.complete
    assert received == 50_000


async def test_rfc9112_9_6_early_response_stops_the_request_body(
    scripted: StartOrigin, make_upstream: MakeUpstream
) -> None:
    """An origin that answers 413 without reading a large streamed body: the answer is returned, the rest of the
    body is not sent, and the connection is not reused."""
    answered = asyncio.Event()

    def respond(target: bytes) -> bytes:
        if target == b"/upload":
            answered.set()
            return b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\n\r\nbig"
        return OK

    origin = await scripted(respond)
    upstream = await make_upstream(origin.url)
    produced = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal produced
        for _ in range(2000):  # 128 MiB if it were all sent: far more than socket buffers hold
            produced += 1
            yield b"x" * 65536
            if answered.is_set():
                await asyncio.sleep(0)

    async with asyncio.timeout(60):  # without the early stop, the upload blocks on a full socket buffer for ever
        response = await upstream.send(head("/upload", "POST"), body())
    async with response:
        assert (response.head.status, response.body) == (413, b"big")
    assert produced < 2000
    async with await upstream.send(head("/next")) as response:
        assert response.body == b"ok"
    assert [number for number, _ in origin.requests] == [1, 2]


async def test_rfc9112_7_1_2_trailer_fields_never_become_header_fields(
    scripted: StartOrigin, make_upstream: MakeUpstream
) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
    chunked += b"X-Trailer: t\r\nSet-Cookie: s=1\r\n\r\n"
    origin = await scripted(lambda target: chunked if target == b"/t" else OK)
    upstream = await make_upstream(origin.url)
    async with await upstream.send(head("/t")) as response:
        assert (response.body, response.complete) == (b"abc", True)
        assert {"x-trailer", "set-cookie", "transfer-encoding"}.isdisjoint(response.head.headers.names())
    async with await upstream.send(head("/next")) as response:
        assert response.body == b"ok"
    assert [number for number, _ in origin.requests] == [1, 1]


async def test_rfc9112_6_3_body_sent_after_head_response_drops_the_connection(
    scripted: StartOrigin, make_upstream: MakeUpstream
) -> None:
    wrong = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"  # a HEAD answer has no body: these bytes are not ours
    origin = await scripted(lambda target: wrong if target == b"/h" else OK)
    upstream = await make_upstream(origin.url)
    async with await upstream.send(head("/h", "HEAD")) as response:
        assert (response.head.status, response.body) == (200, b"")
    async with await upstream.send(head("/next")) as response:
        assert response.body == b"ok"  # never "hello"
    assert [number for number, _ in origin.requests] == [1, 2]
