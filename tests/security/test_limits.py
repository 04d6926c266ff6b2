"""Issue 9 §4: what one connection may cost before its request reaches the app.

Each limit is a ``serve`` setting, set small here so the tests are quick; each test speaks raw bytes to a real proxy
process in front of a recording upstream, and checks that a refused request never reached the upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st
from uvicorn.server import ServerState

from proxy.limits import LimitedHttpToolsProtocol, Limits
from tests.security.harness import CRLF, ProxyProcess, RecordingUpstream, proxy_process, recording_upstream, wait_until

LIMIT_FLAGS = (
    "--max-url-bytes", "1KiB", "--max-header-bytes", "4KiB", "--max-headers", "20",
    "--head-timeout", "1", "--keepalive-timeout", "1",
)  # fmt: skip
SAFETY = 30.0  # seconds a socket may block before the test fails (never a measured threshold)


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with recording_upstream() as running:
        yield running


@pytest.fixture(scope="module")
def proxy(upstream: RecordingUpstream) -> Iterator[ProxyProcess]:
    with proxy_process(upstream.url, *LIMIT_FLAGS) as running:
        yield running


def head(target: str = "/", fields: list[tuple[str, str]] | None = None) -> bytes:
    lines = [f"GET {target} HTTP/1.1".encode(), b"Host: example.test"]
    lines += [f"{name}: {value}".encode() for name, value in fields or []]
    return CRLF.join(lines) + CRLF + CRLF


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=SAFETY)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the proxy sends until it closes the connection (a reset after its answer counts as closed)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def refused_with(proxy: ProxyProcess, raw: bytes) -> bytes:
    """Send ``raw`` on a new connection; return all the proxy answered before closing it."""
    with connect(proxy.port) as sock:
        sock.sendall(raw)
        return read_until_closed(sock)


def exchange(sock: socket.socket, raw: bytes) -> int:
    """One request and its whole response on a persistent connection; the response's status."""
    sock.sendall(raw)
    response = http.client.HTTPResponse(sock, method="GET")
    response.begin()
    response.read()
    return response.status


def _served(sock: socket.socket, target: str) -> int:
    return exchange(sock, head(target))


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_rfc9112_3_target_longer_than_limit_is_414_and_closed(proxy: ProxyProcess, upstream: RecordingUpstream) -> None:
    seen = len(upstream.received)
    answer = refused_with(proxy, head("/" + "a" * 1024))
    assert status_of(answer) == 414
    assert answer.endswith(b"414 URI Too Long\n")
    assert b"connection: close" in answer.lower()
    assert len(upstream.received) == seen


def test_rfc9112_3_target_at_limit_is_served(proxy: ProxyProcess) -> None:
    response = proxy.send(head("/" + "a" * 1023))
    assert response.status == 200


def test_rfc9112_3_limits_and_the_edge_parse_in_one_protocol(proxy: ProxyProcess, upstream: RecordingUpstream) -> None:
    """``serve`` runs one protocol class with both: the limits see the target as sent (an absolute-form target with
    no path is not shortened to ``/`` before the check), and the edge still gets the raw target (issue 9 §1, §4)."""
    seen = len(upstream.received)
    assert status_of(refused_with(proxy, head("http://" + "a" * 1100))) == 414
    assert len(upstream.received) == seen
    assert proxy.send(head("http://example.test/own-authority")).status == 200
    assert upstream.received[-1].target == b"/own-authority"
    assert proxy.send(head("http://other.example/elsewhere")).status == 400
    assert len(upstream.received) == seen + 1


def test_rfc6585_5_header_bytes_over_limit_is_431(proxy: ProxyProcess, upstream: RecordingUpstream) -> None:
    seen = len(upstream.received)
    fields = [(f"X-Pad-{i}", "v" * 1000) for i in range(5)]  # 5 KiB of fields against 4 KiB
    answer = refused_with(proxy, head("/pad", fields))
    assert status_of(answer) == 431
    assert len(upstream.received) == seen


def test_rfc6585_5_header_bytes_under_limit_are_served(proxy: ProxyProcess) -> None:
    fields = [(f"X-Pad-{i}", "v" * 1000) for i in range(3)]
    assert proxy.send(head("/pad-ok", fields)).status == 200


def test_rfc6585_5_header_count_over_limit_is_431(proxy: ProxyProcess, upstream: RecordingUpstream) -> None:
    seen = len(upstream.received)
    answer = refused_with(proxy, head("/many", [(f"X-F{i}", "1") for i in range(20)]))  # 21 with Host
    assert status_of(answer) == 431
    assert b"too many header fields" in answer
    assert len(upstream.received) == seen


def test_rfc6585_5_header_count_at_limit_is_served(proxy: ProxyProcess) -> None:
    assert proxy.send(head("/many-ok", [(f"X-F{i}", "1") for i in range(19)])).status == 200


def test_limits_count_per_request_on_a_keepalive_connection(proxy: ProxyProcess) -> None:
    """Two requests on one connection, each near the header budget: the count starts again for each head."""
    near = head("/again", [(f"X-Pad-{i}", "v" * 1000) for i in range(3)])
    with connect(proxy.port) as sock:
        assert exchange(sock, near) == 200
        assert exchange(sock, near) == 200


def test_endless_header_line_is_cut_at_the_limit_not_buffered(proxy: ProxyProcess) -> None:
    """One header line that never ends (issue 9: 251 MiB): the proxy stops reading at the limit and closes, so the
    client cannot push more than socket buffers hold, and the proxy's memory does not grow with the line."""
    before = rss_kib(proxy.pid)
    attempted = 200 * 1024 * 1024
    sent = push_endless(proxy.port, b"GET / HTTP/1.1\r\nHost: example.test\r\nX-Endless: ", attempted)
    assert sent < attempted // 4, f"the proxy kept reading a header line for {sent} bytes"
    assert rss_kib(proxy.pid) - before < 32 * 1024
    assert proxy.send(head("/after-endless")).status == 200  # and everyone else is still served


def push_endless(port: int, start: bytes, attempted: int) -> int:
    """Send ``start`` then ``a`` bytes until the proxy closes the connection or ``attempted`` bytes went; how many."""
    chunk = b"a" * 65536
    sent = 0
    with connect(port) as sock:
        sock.sendall(start)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < attempted:
                sock.sendall(chunk)
                sent += len(chunk)
    return sent


def test_rfc9112_7_1_2_endless_trailer_field_is_cut_at_the_header_limit(proxy: ProxyProcess) -> None:
    """Trailer fields are buffered by the parser like header fields: they get the same budget."""
    before = rss_kib(proxy.pid)
    attempted = 200 * 1024 * 1024
    start = b"POST /t HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-T: "
    sent = push_endless(proxy.port, start, attempted)
    assert sent < attempted // 4, f"the proxy kept reading a trailer line for {sent} bytes"
    assert rss_kib(proxy.pid) - before < 32 * 1024
    assert proxy.send(head("/after-trailer")).status == 200


def dribble_until_answered(sock: socket.socket) -> bytes:
    """Send an unfinished head, then one byte every 0.1 s until the proxy answers; what it sent before closing."""
    sock.sendall(b"GET /slow HTTP/1.1\r\nHost: example.test\r\nX-Slow: ")
    deadline = time.monotonic() + SAFETY
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"a")
        except (BrokenPipeError, ConnectionResetError):
            break
        readable, _, _ = select.select([sock], [], [], 0.1)
        if readable:
            return read_until_closed(sock)
    return b""


def test_rfc9110_15_5_9_dribbled_head_gets_408_at_the_head_timeout(proxy: ProxyProcess) -> None:
    """One byte at a time keeps uvicorn's keep-alive timer from ever firing; the head deadline does not reset."""
    with connect(proxy.port) as sock:
        answer = dribble_until_answered(sock)
    assert status_of(answer) == 408
    assert b"connection: close" in answer.lower()


def test_rfc9110_15_5_9_dribbled_second_head_on_a_keepalive_connection_gets_408(proxy: ProxyProcess) -> None:
    """The deadline starts again with each request's first byte, after a served one."""
    with connect(proxy.port) as sock:
        assert exchange(sock, head("/first")) == 200
        answer = dribble_until_answered(sock)
    assert status_of(answer) == 408


def test_rfc9110_15_5_9_silent_connection_gets_408(proxy: ProxyProcess) -> None:
    with connect(proxy.port) as sock:
        answer = read_until_closed(sock)
    assert status_of(answer) == 408


def test_rfc9112_9_3_idle_keepalive_connection_is_closed_quietly(proxy: ProxyProcess) -> None:
    """After a complete exchange, an idle persistent connection is closed at the keep-alive timeout, without a 408."""
    with connect(proxy.port) as sock:
        sock.sendall(head("/idle"))
        answer = read_until_closed(sock)
    assert status_of(answer) == 200
    assert answer.count(b"HTTP/1.1") == 1


def test_connections_beyond_the_cap_are_refused_and_established_ones_still_served(
    upstream: RecordingUpstream,
) -> None:
    flags = ("--max-connections", "4", "--head-timeout", "60", "--keepalive-timeout", "60")
    with proxy_process(upstream.url, *flags) as capped, contextlib.ExitStack() as stack:

        def open_one() -> socket.socket:
            return stack.enter_context(connect(capped.port))

        established = [open_one() for _ in range(4)]
        assert [_served(sock, f"/held-{i}") for i, sock in enumerate(established)] == [200] * 4
        extra = open_one()
        answer = read_until_closed(extra)
        assert status_of(answer) == 503
        assert b"retry-after: 1" in answer.lower()
        assert _served(established[0], "/still-served") == 200
        established.pop().close()

        def another_is_served() -> bool:
            with connect(capped.port) as sock:
                return _served(sock, "/after-close") == 200

        assert wait_until(another_is_served, timeout=SAFETY)


@pytest.mark.redis
def test_limits_apply_in_every_worker(upstream: RecordingUpstream, redis_url: str) -> None:
    """``--workers N`` rebuilds the settings from the environment in each worker: the limits come along."""
    flags = ("--workers", "2", "--store", redis_url, "--max-headers", "5")
    with proxy_process(upstream.url, *flags) as workers:
        answers = [refused_with(workers, head("/w", [(f"X-F{i}", "1") for i in range(5)])) for _ in range(6)]
        assert {status_of(answer) for answer in answers} == {431}
        assert workers.send(head("/w-ok", [("X-F", "1")])).status == 200


def test_limit_flags_have_env_twins_that_survive_the_trip_to_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from proxy.cli import build_parser, settings_from_args
    from proxy.config import Settings

    monkeypatch.setenv("CACHEPROXY_MAX_HEADERS", "7")
    monkeypatch.setenv("CACHEPROXY_HEAD_TIMEOUT", "2.5")
    args = build_parser().parse_args(
        ["serve", "--upstream", "http://127.0.0.1:9", "--max-url-bytes", "2KiB", "--max-connections", "9",
         "--upstream-pool-size", "3", "--upstream-pool-timeout", "0.5", "--keepalive-timeout", "3"]
    )  # fmt: skip
    settings = settings_from_args(args)
    assert (settings.max_url_bytes, settings.max_header_bytes, settings.max_headers) == (2048, 65536, 7)
    assert (settings.head_timeout, settings.keepalive_timeout, settings.max_connections) == (2.5, 3.0, 9)
    assert (settings.upstream_pool_size, settings.upstream_pool_timeout) == (3, 0.5)
    assert Settings.from_env(settings.to_env()) == settings


# --- the protocol alone: a unit test of proxy/limits.py with a recording transport --------------------------------


class RecordingTransport(asyncio.Transport):
    """What the protocol wrote, and whether it closed; the peer addresses uvicorn asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.closed_by_protocol = False  # before the connection was lost

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


UNIT_LIMITS = Limits(max_url_bytes=64, max_header_bytes=512, max_headers=8, head_timeout=60, max_connections=10)


def feed_in_pieces(stream: bytes, cuts: list[int]) -> RecordingTransport:
    """Run ``stream`` through a fresh protocol, delivered in pieces cut at ``cuts``; what came back."""
    loop = asyncio.new_event_loop()
    try:
        config = uvicorn.Config(ok_app, lifespan="off", log_level="warning")
        protocol = LimitedHttpToolsProtocol(config, ServerState(), {}, loop, limits=UNIT_LIMITS)
        transport = RecordingTransport()
        protocol.connection_made(transport)
        bounds = [0, *sorted(set(cuts)), len(stream)]
        for start, end in itertools.pairwise(bounds):
            if transport.closed:
                break
            protocol.data_received(stream[start:end])
            loop.run_until_complete(asyncio.sleep(0))
        loop.run_until_complete(asyncio.sleep(0.01))
        transport.closed_by_protocol = transport.closed
        protocol.connection_lost(None)
        return transport
    finally:
        loop.close()


def unit_head(target: str, fields: int, value: str = "v" * 40) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: a", *[f"X-{i}: {value}" for i in range(fields)]]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


cut_points = st.lists(st.integers(min_value=1, max_value=2000), max_size=12)


@settings(max_examples=60, deadline=None)
@given(cuts=cut_points)
def test_limits_pipelined_heads_near_the_limits_are_all_served_however_cut(cuts: list[int]) -> None:
    stream = unit_head("/" + "a" * 63, 7) * 3  # 8 fields and a 64-byte target each: at the limits, not past them
    transport = feed_in_pieces(stream, [c for c in cuts if c < len(stream)])
    assert transport.written.count(b"HTTP/1.1 200") == 3
    assert not transport.closed_by_protocol


@settings(max_examples=60, deadline=None)
@given(cuts=cut_points, case=st.sampled_from(["url", "count", "bytes", "endless"]))
def test_limits_refusal_is_one_answer_then_close_however_cut(cuts: list[int], case: str) -> None:
    heads = {
        "url": (unit_head("/" + "a" * 64, 1), 414),
        "count": (unit_head("/", 8), 431),
        "bytes": (unit_head("/", 4, "v" * 200), 431),
        "endless": (b"GET / HTTP/1.1\r\nHost: a\r\nX-E: " + b"e" * 1500, 431),
    }
    raw, status = heads[case]
    stream = unit_head("/first", 1) + raw  # a served request first: the counts start again for the second head
    transport = feed_in_pieces(stream, [c for c in cuts if c < len(stream)])
    assert transport.written.count(b"HTTP/1.1 200") == 1
    assert transport.written.count(f"HTTP/1.1 {status} ".encode()) == 1
    assert transport.closed_by_protocol


CHUNKED = b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


@settings(max_examples=60, deadline=None)
@given(cuts=cut_points)
def test_rfc9112_7_1_2_chunked_body_with_small_trailer_is_served_however_cut(cuts: list[int]) -> None:
    stream = CHUNKED + b"400\r\n" + b"b" * 0x400 + b"\r\n0\r\nX-Small: 1\r\n\r\n" + unit_head("/next", 1)
    transport = feed_in_pieces(stream, [c for c in cuts if c < len(stream)])
    assert transport.written.count(b"HTTP/1.1 200") == 2
    assert not transport.closed_by_protocol


@settings(max_examples=30, deadline=None)
@given(cuts=cut_points)
def test_rfc9112_7_1_2_endless_trailer_closes_the_connection_however_cut(cuts: list[int]) -> None:
    """The trailer budget is checked per read (a read that ends the body is fed whole): an endless trailer, arriving
    in reads of up to 100 bytes past a first read cut anywhere, is cut within a read of the 512-byte limit."""
    prefix = CHUNKED + b"1\r\nb\r\n0\r\nX-T: "
    stream = prefix + b"t" * 2000
    steady = list(range(len(prefix) + 100, len(stream), 100))
    transport = feed_in_pieces(stream, [c for c in cuts if c < len(prefix) + 100] + steady)
    assert transport.closed_by_protocol


def test_issue14_5_malformed_requests_from_clients_log_one_line_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client may send as many malformed requests as it likes: each is answered 400, but the log gets one line per
    kind per 10 s (``proxy.ratelog``), not one per request."""
    from proxy.limits import CLIENT_ERRORS

    CLIENT_ERRORS._windows.clear()  # windows other tests opened
    with caplog.at_level("WARNING", logger="cacheproxy.limits"):
        answers = [feed_in_pieces(b"GET / HTTP/1.1\r\nHost: a\r\nBad Field: x\r\n\r\n", []) for _ in range(50)]
    assert all(t.written.startswith(b"HTTP/1.1 400") for t in answers)
    lines = [r.getMessage() for r in caplog.records if r.name == "cacheproxy.limits"]
    assert len(lines) == 1 and lines[0].startswith("Invalid HTTP request received")
    assert len(CLIENT_ERRORS) == 1 and CLIENT_ERRORS._windows[("client", "invalid")].more == 49
