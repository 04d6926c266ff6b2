"""Fresh hits written by the server protocol (``proxy.edgehit``, issue 11): the same bytes as through ASGI, in order
on a pipelined connection, only on a connection that stays open, and counted like any other hit.

The unit tests compare our bytes with what uvicorn's own ``RequestResponseCycle`` writes for the ASGI messages of the
same hit. The process tests speak raw bytes to a real proxy in front of a recording upstream.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
from uvicorn.server import ServerState

from proxy.app import ProxyApp
from proxy.clock import FakeClock
from proxy.config import Settings
from proxy.edgehit import JOIN_BELOW
from proxy.hot import HotPath, wire_head
from proxy.messages import Entry, Headers, RequestHead, ResponseHead
from proxy.server import EdgeProtocol
from tests.security.harness import CRLF, ProxyProcess, Received, proxy_process, recording_upstream, response_bytes

# unit: our bytes are uvicorn's bytes


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def uvicorn_bytes(method: str, messages: list[dict[str, Any]]) -> bytes:
    """What uvicorn's httptools protocol writes on a keep-alive connection for these ASGI messages."""
    transport = _Transport()
    cycle = RequestResponseCycle(
        scope={"method": method, "type": "http"},  # type: ignore[typeddict-item]
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )
    for message in messages:
        await cycle.send(message)  # type: ignore[arg-type]
    assert cycle.response_complete and not transport.closed
    return b"".join(transport.written)


def hot_path() -> tuple[HotPath, Any, FakeClock]:
    clock = FakeClock()
    app = ProxyApp(Settings(upstream="http://127.0.0.1:9"), clock=clock)
    return app.endpoint.hot, app.runtime.stores["memory"], clock


def plain(method: str, path: str) -> RequestHead:
    return RequestHead(method, "http", "shop.example", path, headers=Headers([("Host", "shop.example")]))


async def store_entry(hot: HotPath, store: Any, clock: FakeClock, path: str, head: ResponseHead, body: bytes) -> None:
    found = hot._route_and_key(plain("GET", path))
    assert found is not None
    now = clock.now()
    await store.put(found[1], Entry(found[1], f"http://shop.example{path}", head, body, now, now, 60.0), 600.0)


STORED_HEADS = {
    "plain": [("Cache-Control", "max-age=60"), ("Content-Type", "text/plain")],
    "mixed-case and odd values": [("X-Thing", "a\tb"), ("ETAG", '"v1"'), ("Set-Cookie2", "x=1; Path=/")],
    "several of one field": [("Link", "</a>; rel=preload"), ("Link", "</b>; rel=preload"), ("Vary", "")],
}


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("fields", list(STORED_HEADS.values()), ids=list(STORED_HEADS))
async def test_issue11_edge_hit_bytes_are_uvicorns_bytes_for_the_same_hit(
    method: str, fields: list[tuple[str, str]]
) -> None:
    hot, store, clock = hot_path()
    await store_entry(hot, store, clock, "/a", ResponseHead(200, Headers(fields)), b"0123456789")
    clock.advance(3)
    found = hot.serve_now(plain(method, "/a"))
    assert found is not None
    _hit, head, body = found
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await hot.serve(plain(method, "/a"), send)
    assert head + body == await uvicorn_bytes(method, sent)
    assert b"\r\nage: 3\r\n" in head and b"content-length: 10\r\n" in head
    assert body == (b"" if method == "HEAD" else b"0123456789")


@pytest.mark.parametrize(
    "fields",
    [
        [(b"content-length", b"9")],  # not the body's length
        [(b"content-length", b"10"), (b"content-length", b"10")],  # two
        [(b"content-length", b"10"), (b"transfer-encoding", b"chunked")],
        [(b"content-length", b"10"), (b"connection", b"close")],  # would end the connection
        [(b"content-length", b"10"), (b"bad name", b"x")],  # uvicorn refuses it
        [(b"content-length", b"10"), (b"x-a", b"line\nbreak")],
        [],  # no framing at all
    ],
)
def test_issue11_edge_leaves_to_uvicorn_a_head_it_would_not_write_as_is(fields: list[tuple[bytes, bytes]]) -> None:
    assert wire_head(200, fields, 10) is None
    assert wire_head(200, [(b"content-length", b"10"), (b"x-a", b"b")], 10) is not None


async def test_issue11_edge_never_answers_from_a_store_that_needs_io_or_a_stale_entry() -> None:
    hot, store, clock = hot_path()
    await store_entry(hot, store, clock, "/a", ResponseHead(200, Headers([("Cache-Control", "max-age=60")])), b"x")
    assert hot.serve_now(plain("GET", "/a")) is not None
    clock.advance(61)  # stale: the general path decides (stale-while-revalidate, revalidation)
    assert hot.serve_now(plain("GET", "/a")) is None
    assert hot.serve_now(plain("POST", "/a")) is None


# process: raw bytes to a real proxy


BIG = bytes(range(256)) * 400  # 100 KiB: past JOIN_BELOW, written as head and body


def slow_or_echo(received: Received) -> bytes:
    """``/slow...`` answers after half a second, ``/big...`` with ``BIG``; everything else at once with its target.
    All cacheable for a minute."""
    if received.target.startswith(b"/slow"):
        time.sleep(0.5)
    if received.target.startswith(b"/big"):
        return response_bytes(body=BIG)
    return response_bytes(body=b"upstream saw " + received.target)


@pytest.fixture(scope="module")
def proxy() -> Iterator[ProxyProcess]:
    with recording_upstream(slow_or_echo) as upstream, proxy_process(upstream.url, "--keepalive-timeout", "0.3") as p:
        yield p


def get(path: str, method: str = "GET", version: str = "1.1", *fields: str) -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: shop.example", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_responses(sock: socket.socket, methods: list[str]) -> list[tuple[int, dict[str, str], bytes]]:
    """Parse one response per request method, in order, off a connection (Content-Length framing)."""
    reader = sock.makefile("rb")
    out = []
    for method in methods:
        status_line = reader.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        fields: dict[str, str] = {}
        while (line := reader.readline()) != CRLF:
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.lower()] = value.strip()
        length = 0 if method == "HEAD" else int(fields["content-length"])
        out.append((int(status_line.split()[1]), fields, reader.read(length)))
    return out


def warm(proxy: ProxyProcess, *paths: str) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{proxy.port}", headers={"host": "shop.example"}) as client:
        for path in paths:
            client.get(path)
            assert "hit" in client.get(path).headers["cache-status"]


def test_issue11_pipelined_hits_and_misses_answered_in_request_order(proxy: ProxyProcess) -> None:
    """RFC 9112 §9.3.2: responses to pipelined requests in the order of the requests, hits written in place or not."""
    warm(proxy, "/p/a", "/p/b")
    requests = [("GET", "/p/a"), ("GET", "/slow/1"), ("HEAD", "/p/b"), ("GET", "/p/c"), ("GET", "/p/a")]
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"".join(get(path, method) for method, path in requests))
        answers = read_responses(sock, [method for method, _ in requests])
    bodies = [body for _status, _fields, body in answers]
    assert bodies == [b"upstream saw /p/a", b"upstream saw /slow/1", b"", b"upstream saw /p/c", b"upstream saw /p/a"]
    outcomes = [re.sub(r";.*", "", fields["cache-status"].split("; ", 1)[1]) for _s, fields, _b in answers]
    assert outcomes == ["hit", "fwd=uri-miss", "hit", "fwd=uri-miss", "hit"]
    assert answers[2][1]["content-length"] == str(len(b"upstream saw /p/b"))  # HEAD: the GET's length, no body


def test_issue11_keepalive_timeout_armed_by_a_hit_spares_the_slow_request_after_it(proxy: ProxyProcess) -> None:
    """A hit written in place arms the idle timeout (0.3 s here); the request after it in the same read, answered in
    0.5 s, must still get its response: a request under way is not idle."""
    warm(proxy, "/k/a")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(get("/k/a") + get("/slow/2"))
        answers = read_responses(sock, ["GET", "GET"])
    assert [body for _s, _f, body in answers] == [b"upstream saw /k/a", b"upstream saw /slow/2"]


@pytest.mark.parametrize(
    ("version", "fields"), [("1.0", ()), ("1.1", ("Connection: close",))], ids=["http-1.0", "connection-close"]
)
def test_issue11_hit_on_a_closing_connection_says_so_and_closes(
    proxy: ProxyProcess, version: str, fields: tuple[str, ...]
) -> None:
    """RFC 9112 §9.6: the last response on a connection carries ``Connection: close``; then the server closes."""
    warm(proxy, "/c/a")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(get("/c/a", "GET", version, *fields))
        data = b""
        while chunk := sock.recv(65536):  # returns b"" only when the proxy closes
            data += chunk
    head, _, body = data.partition(CRLF + CRLF)
    assert b"\r\nconnection: close" in head.lower() and b"cache-status: cacheproxy; hit" in head.lower()
    assert body == b"upstream saw /c/a"


def test_issue11_hits_at_the_edge_counted_in_metrics(proxy: ProxyProcess) -> None:
    def hits() -> float:
        text = httpx.get(f"http://127.0.0.1:{proxy.port}/_cacheproxy/metrics").text
        found = re.findall(r'^cacheproxy_requests_total\{[^}]*outcome="hit"[^}]*\} (\S+)$', text, re.M)
        return sum(float(value) for value in found)

    warm(proxy, "/m/a")
    before = hits()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(get("/m/a") * 25)
        answers = read_responses(sock, ["GET"] * 25)
    assert all(body == b"upstream saw /m/a" for _s, _f, body in answers)
    assert hits() - before == 25


def test_issue11_large_hit_written_as_head_then_body_intact(proxy: ProxyProcess) -> None:
    assert len(BIG) > JOIN_BELOW
    warm(proxy, "/big/1")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(get("/big/1") + get("/big/1", "HEAD") + get("/big/1"))
        answers = read_responses(sock, ["GET", "HEAD", "GET"])
    assert [body == BIG for _s, _f, body in answers] == [True, False, True]
    assert all("hit" in fields["cache-status"] for _s, fields, _b in answers)


class _Failing:
    """An app whose in-place answer breaks: the request must still be answered, through ASGI."""

    def answer_now(self, scope: Any) -> tuple[bytes, bytes] | None:
        raise RuntimeError("a bug")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"asgi"})


def test_issue11_a_failing_in_place_answer_falls_back_to_asgi_not_to_a_400(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        config = uvicorn.Config(_Failing(), lifespan="off", log_config=None, proxy_headers=False)
        config.load()
        assert config.loaded_app.answer_now  # unwrapped, as `cacheproxy serve` runs it
        protocol = EdgeProtocol(config, ServerState(), {}, loop)
        transport = _Transport()
        transport.get_extra_info = lambda name, default=None: {  # type: ignore[method-assign]
            "peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080),
        }.get(name, default)  # fmt: skip
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(get("/x"))
        loop.run_until_complete(asyncio.sleep(0.05))
        protocol.connection_lost(None)
    finally:
        loop.close()
    written = b"".join(transport.written)
    assert written.startswith(b"HTTP/1.1 200 OK") and written.endswith(b"asgi")
    assert "a hit could not be answered in place" in caplog.text
