"""Response-framing attacks from the upstream side, through a real proxy process (issue 9 §7, issue 15 item 6).

The recording upstream answers raw bytes chosen per target; the client speaks raw bytes too. A response the proxy
cannot frame safely is answered ``502`` with a short body and is never stored: the same URL asked again reaches the
upstream again.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.harness import CRLF, ProxyProcess, Received, proxy_process, recording_upstream, response_bytes

OK_HEAD = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n"
ATTACKS = {
    b"/both": OK_HEAD + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"/dup-length": OK_HEAD + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    b"/bad-length": OK_HEAD + b"Content-Length: 3x\r\n\r\nabc",
    b"/space-colon": OK_HEAD + b"Content-Length : 3\r\n\r\nabc",
    b"/bare-lf": b"HTTP/1.1 200 OK\nCache-Control: max-age=60\nContent-Length: 3\n\nabc",
    b"/obs-fold": OK_HEAD + b"X-A: a\r\n b\r\nContent-Length: 3\r\n\r\nabc",
    b"/injection": OK_HEAD + b"X-A: a\rSet-Cookie: s=1\r\nContent-Length: 3\r\n\r\nabc",
    b"/status-999": b"HTTP/1.1 999 Odd\r\nCache-Control: max-age=60\r\nContent-Length: 3\r\n\r\nabc",
    b"/gzip-coding": OK_HEAD + b"Transfer-Encoding: gzip\r\n\r\nabc",
}  # fmt: skip


def respond(received: Received) -> bytes:
    target = received.target
    if target in ATTACKS:
        return ATTACKS[target]
    if target == b"/long":
        return OK_HEAD + b"Content-Length: 10\r\n\r\n0123456789" + b"x" * 26
    return response_bytes(body=b"clean " + target)


@pytest.fixture(scope="module")
def proxy() -> Iterator[tuple[ProxyProcess, list[Received]]]:
    with recording_upstream(respond) as upstream, proxy_process(upstream.url) as running:
        yield running, upstream.received


def get(proxy: ProxyProcess, target: bytes) -> tuple[int, bytes, str | None]:
    response = proxy.send(b"GET " + target + b" HTTP/1.1" + CRLF + b"Host: shop.example" + CRLF + CRLF)
    return response.status, response.body, response.header("cache-status")


@pytest.mark.parametrize("target", [pytest.param(target, id=f"rfc9112-6.3{target.decode()}") for target in ATTACKS])
def test_malformed_upstream_response_is_502_and_not_stored(
    proxy: tuple[ProxyProcess, list[Received]], target: bytes
) -> None:
    running, received = proxy
    seen = [r.target for r in received].count(target)
    for _ in range(2):
        status, body, _status_field = get(running, target)
        assert status == 502
        assert b"abc" not in body and len(body) < 200  # a short text body, never the smuggled bytes
    assert [r.target for r in received].count(target) == seen + 2  # not stored: the upstream is asked again


def test_issue15_6_body_longer_than_content_length_forwarded_and_stored_as_declared(
    proxy: tuple[ProxyProcess, list[Received]],
) -> None:
    running, received = proxy
    status, body, cache_status = get(running, b"/long")
    assert (status, body) == (200, b"0123456789")
    assert cache_status is not None and "stored" in cache_status
    status, body, cache_status = get(running, b"/long")
    assert (status, body) == (200, b"0123456789")
    assert cache_status is not None and "hit" in cache_status
    assert [r.target for r in received].count(b"/long") == 1
    status, body, _ = get(running, b"/after-long")  # the connection after the over-long body was not reused
    assert (status, body) == (200, b"clean /after-long")
