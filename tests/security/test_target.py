"""Issue 9 §1: the client never chooses the upstream host (SSRF), and only sound request-target forms are accepted.

A real proxy process whose upstream URL carries userinfo, a recording upstream behind it, and a second recording
service on loopback that nothing should ever reach. Requests are raw bytes (RFC 9112 §3.2 target forms).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from tests.security.harness import ProxyProcess, RecordingUpstream, proxy_process, recording_upstream

CREDENTIALS = b"Basic " + base64.b64encode(b"user:pa ss")


@pytest.fixture(scope="module")
def internal() -> Iterator[RecordingUpstream]:
    """Another service on loopback: the SSRF target."""
    with recording_upstream() as service:
        yield service


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with recording_upstream() as service:
        yield service


@pytest.fixture(scope="module")
def proxy(upstream: RecordingUpstream) -> Iterator[ProxyProcess]:
    with proxy_process(f"http://user:pa%20ss@127.0.0.1:{upstream.port}") as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(upstream: RecordingUpstream, internal: RecordingUpstream) -> None:
    upstream.received.clear()
    internal.received.clear()


def refused(response_body: bytes) -> bool:
    """A one-line text body, no traceback: ours, or uvicorn's for a target its parser cannot read at all."""
    ours = response_body.startswith(b"400 Bad Request: ") and response_body.count(b"\n") == 1
    return ours or response_body == b"Invalid HTTP request received."


@pytest.mark.parametrize(
    "target",
    [
        "*@127.0.0.1:{port}/internal/secret",
        "@127.0.0.1:{port}/internal/secret",
        "http://127.0.0.1:{port}/internal/secret",
        "http://user:pa%20ss@127.0.0.1:{port}/internal/secret",
        "x@127.0.0.1:{port}/internal/secret",
    ],
    ids=["asterisk-userinfo", "bare-userinfo", "absolute-other-authority", "absolute-with-userinfo", "no-slash"],
)
def test_rfc9112_3_2_ssrf_target_never_reaches_another_service(
    proxy: ProxyProcess, upstream: RecordingUpstream, internal: RecordingUpstream, target: str
) -> None:
    raw = f"GET {target.format(port=internal.port)} HTTP/1.1\r\nHost: shop.example\r\n\r\n".encode()
    response = proxy.send(raw)
    assert response.status == 400
    assert refused(response.body), response.body
    assert internal.received == []
    assert upstream.received == []
    again = proxy.send(raw)  # nothing was stored either
    assert again.status == 400
    assert internal.received == []


def test_rfc9112_3_2_1_authority_form_refused(proxy: ProxyProcess, internal: RecordingUpstream) -> None:
    response = proxy.send(f"GET 127.0.0.1:{internal.port} HTTP/1.1\r\nHost: shop.example\r\n\r\n".encode())
    assert response.status == 400
    assert internal.received == []


def test_rfc9112_3_2_4_asterisk_only_with_options(proxy: ProxyProcess, upstream: RecordingUpstream) -> None:
    get = proxy.send(b"GET * HTTP/1.1\r\nHost: shop.example\r\n\r\n")
    assert get.status == 400
    assert refused(get.body)
    options = proxy.send(b"OPTIONS * HTTP/1.1\r\nHost: shop.example\r\n\r\n")
    assert options.status == 200  # answered by the proxy itself (RFC 9110 §9.3.7)
    assert "GET" in (options.header("allow") or "")
    assert options.body == b""
    assert upstream.received == []


def test_rfc9112_3_2_2_absolute_form_for_own_authority_uses_its_path(
    proxy: ProxyProcess, upstream: RecordingUpstream
) -> None:
    response = proxy.send(b"GET HTTP://Shop.Example/abs?q=1 HTTP/1.1\r\nHost: shop.example\r\n\r\n")
    assert response.status == 200
    assert response.body == b"upstream saw /abs?q=1"
    assert upstream.received[-1].target == b"/abs?q=1"
    bare = proxy.send(b"GET http://shop.example HTTP/1.1\r\nHost: shop.example\r\n\r\n")
    assert bare.status == 200
    assert upstream.received[-1].target == b"/"


def test_rfc9112_3_2_fragment_in_target_refused(proxy: ProxyProcess, upstream: RecordingUpstream) -> None:
    response = proxy.send(b"GET /a#frag HTTP/1.1\r\nHost: shop.example\r\n\r\n")
    assert response.status == 400
    assert upstream.received == []


def test_rfc9112_3_2_1_origin_form_path_goes_to_configured_upstream_byte_for_byte(
    proxy: ProxyProcess, upstream: RecordingUpstream
) -> None:
    response = proxy.send(b"GET //evil.example/%2e%2e/x?a=%20 HTTP/1.1\r\nHost: shop.example\r\n\r\n")
    assert response.status == 200
    seen = upstream.received[-1]
    assert seen.target == b"//evil.example/%2e%2e/x?a=%20"
    assert seen.header_values("host") == [f"127.0.0.1:{upstream.port}".encode()]


def test_rfc7617_configured_userinfo_only_to_configured_upstream(
    proxy: ProxyProcess, upstream: RecordingUpstream
) -> None:
    response = proxy.send(b"GET /creds HTTP/1.1\r\nHost: shop.example\r\n\r\n")
    assert response.status == 200
    seen = upstream.received[-1]
    assert seen.header_values("authorization") == [CREDENTIALS]
    assert b"pa ss" not in response.body and b"user" not in seen.target
    own = proxy.send(b"GET /creds2 HTTP/1.1\r\nHost: shop.example\r\nAuthorization: Bearer mine\r\n\r\n")
    assert own.status == 200
    assert upstream.received[-1].header_values("authorization") == [b"Bearer mine"]
