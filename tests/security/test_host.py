"""Issue 9 §2: one Host, parsed once (RFC 9112 §3.2), so nobody can store content under another host's key.

Two Host fields, a missing one, an invalid one, or an absolute-form authority that disagrees with Host: ``400``, nothing
forwarded, nothing stored, and a clean client afterwards still gets the upstream's own answer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.edge_support import get
from tests.security.harness import (
    ProxyProcess,
    Received,
    RecordingUpstream,
    proxy_process,
    recording_upstream,
    response_bytes,
)


def by_host(received: Received) -> bytes:
    """Content derived from the forwarded host, as an origin that trusts X-Forwarded-Host would make it."""
    host = (received.header_values("x-forwarded-host") or [b"?"])[0]
    return response_bytes(body=b"for " + host)


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with recording_upstream(by_host) as service:
        yield service


@pytest.fixture(scope="module")
def proxy(upstream: RecordingUpstream) -> Iterator[ProxyProcess]:
    with proxy_process(upstream.url) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(upstream: RecordingUpstream) -> None:
    upstream.received.clear()


@pytest.mark.parametrize(
    "hosts",
    [("evil.example", "good.example"), ("good.example", "evil.example"), ("good.example", "good.example")],
    ids=["evil-first", "evil-last", "same-twice"],
)
def test_rfc9112_3_2_two_host_fields_400_and_nothing_stored(
    proxy: ProxyProcess, upstream: RecordingUpstream, hosts: tuple[str, str]
) -> None:
    path = f"/two-hosts/{'-'.join(hosts)}"
    attack = get(path, hosts[0], f"Host: {hosts[1]}")
    response = proxy.send(attack)
    assert response.status == 400
    assert b"more than one Host" in response.body
    assert upstream.received == []
    clean = proxy.send(get(path, "good.example"))
    assert clean.body == b"for good.example"
    assert "fwd=uri-miss" in (clean.header("cache-status") or "")  # the attack stored nothing


def test_rfc9112_3_2_two_host_fields_never_served_from_the_hit_path(
    proxy: ProxyProcess, upstream: RecordingUpstream
) -> None:
    for _ in range(2):  # stored, then a hit (the hot path's memo now knows this URL)
        warm = proxy.send(get("/warm", "good.example"))
    assert "hit" in (warm.header("cache-status") or "")
    attack = proxy.send(get("/warm", "evil.example", "Host: good.example"))
    assert attack.status == 400
    clean = proxy.send(get("/warm", "good.example"))
    assert clean.body == b"for good.example"
    assert "hit" in (clean.header("cache-status") or "")
    assert len(upstream.received) == 1


def test_rfc9112_3_2_missing_host_400_for_http11_only(proxy: ProxyProcess, upstream: RecordingUpstream) -> None:
    missing = proxy.send(b"GET /no-host HTTP/1.1\r\n\r\n")
    assert missing.status == 400
    assert upstream.received == []
    old = proxy.send(b"GET /no-host-1.0 HTTP/1.0\r\n\r\n")
    assert old.status == 200  # HTTP/1.0 may omit Host: the proxy's own address stands in


@pytest.mark.parametrize(
    "host", ["evil.example/x", "evil.example:80@good", "good.example:8a", "[::1"], ids=["slash", "at", "port", "ipv6"]
)
def test_rfc9110_7_2_invalid_host_400(proxy: ProxyProcess, upstream: RecordingUpstream, host: str) -> None:
    response = proxy.send(get("/bad-host", host))
    assert response.status == 400
    assert upstream.received == []


def test_rfc9112_3_2_2_absolute_form_authority_must_match_host(
    proxy: ProxyProcess, upstream: RecordingUpstream
) -> None:
    response = proxy.send(b"GET http://evil.example/abs HTTP/1.1\r\nHost: good.example\r\n\r\n")
    assert response.status == 400
    assert b"does not match Host" in response.body
    assert upstream.received == []
    clean = proxy.send(get("/abs", "good.example"))
    assert clean.body == b"for good.example"
    assert "fwd=uri-miss" in (clean.header("cache-status") or "")


def test_one_parse_host_for_key_and_x_forwarded_host(proxy: ProxyProcess, upstream: RecordingUpstream) -> None:
    first = proxy.send(get("/same", "a.example"))
    other = proxy.send(get("/same", "b.example"))
    assert (first.body, other.body) == (b"for a.example", b"for b.example")
    assert [r.header_values("x-forwarded-host") for r in upstream.received] == [[b"a.example"], [b"b.example"]]


def test_rfc9112_3_2_two_host_fields_refused_on_redis_with_two_workers(redis_url: str) -> None:
    """The same with a shared store and several workers (each worker parses the head the same single way)."""
    with (
        recording_upstream(by_host) as upstream,
        proxy_process(upstream.url, "--store", redis_url, "--workers", "2") as proxy,
    ):
        for _ in range(4):  # several connections: both workers get some
            assert proxy.send(get("/shared", "evil.example", "Host: good.example")).status == 400
        assert upstream.received == []
        clean = proxy.send(get("/shared", "good.example"))
        assert clean.body == b"for good.example"
        assert "fwd=uri-miss" in (clean.header("cache-status") or "")
