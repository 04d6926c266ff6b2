"""Issue 9 §4: what one connection may cost before its request reaches the app.

Each limit is a ``serve`` setting, set small here so the tests are quick; each test speaks raw bytes to a real proxy
process in front of a recording upstream, and checks that a refused request never reached the upstream.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    chunk = b"a" * 65536
    attempted = 200 * 1024 * 1024
    sent = 0
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\nX-Endless: ")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < attempted:
                sock.sendall(chunk)
                sent += len(chunk)
    assert sent < attempted // 4, f"the proxy kept reading a header line for {sent} bytes"
    assert rss_kib(proxy.pid) - before < 32 * 1024
    assert proxy.send(head("/after-endless")).status == 200  # and everyone else is still served


def test_rfc9110_15_5_9_dribbled_head_gets_408_at_the_head_timeout(proxy: ProxyProcess) -> None:
    """One byte at a time keeps uvicorn's keep-alive timer from ever firing; the head deadline does not reset."""
    answer = b""
    with connect(proxy.port) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: example.test\r\nX-Slow: ")
        deadline = time.monotonic() + SAFETY
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                break
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                answer = read_until_closed(sock)
                break
    assert status_of(answer) == 408
    assert b"connection: close" in answer.lower()


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
