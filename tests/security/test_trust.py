"""Issue 9 §5 and issue 13 item 6: one trust setting decides whose forwarding headers are believed and who is local.

Real proxy processes, raw requests from chosen loopback addresses (127.0.0.6 is where a sidecar such as Envoy
connects from). Default ``--trusted-proxies``: 127.0.0.1 and ::1 only.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.edge_support import get, purge, send_from
from tests.security.harness import ProxyProcess, RecordingUpstream, proxy_process, recording_upstream

SIDECAR = "127.0.0.6"


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with recording_upstream() as service:
        yield service


@pytest.fixture(scope="module")
def proxy(upstream: RecordingUpstream) -> Iterator[ProxyProcess]:
    with proxy_process(upstream.url) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(upstream: RecordingUpstream) -> None:
    upstream.received.clear()


def cached(proxy: ProxyProcess, path: str) -> bool:
    return "hit" in (proxy.send(get(path, "localhost")).header("cache-status") or "")


def store(proxy: ProxyProcess, path: str) -> None:
    proxy.send(get(path, "localhost"))
    assert cached(proxy, path)


@pytest.mark.parametrize(
    ("source", "fields"),
    [
        (SIDECAR, ("X-Forwarded-For: 203.0.113.9",)),
        (SIDECAR, ()),
        ("127.0.0.1", ("X-Forwarded-For: 203.0.113.9",)),
        ("127.0.0.1", ("Forwarded: for=203.0.113.9",)),
        ("127.0.0.1", ("X-Forwarded-For: 127.0.0.1, 203.0.113.9",)),
    ],
    ids=["sidecar-with-xff", "sidecar-alone", "trusted-peer-forwarding-remote", "rfc7239-forwarded", "spoofed-left"],
)
def test_issue9_5_purge_refused_unless_the_resolved_client_is_trusted(
    proxy: ProxyProcess, source: str, fields: tuple[str, ...]
) -> None:
    path = f"/purge-me/{source}/{len(fields)}/{'-'.join(fields)[:20].replace(' ', '')}"
    store(proxy, path)
    response = send_from(source, proxy.port, purge(path, "localhost", "application/json", *fields))
    assert response.status == 403
    assert cached(proxy, path)
    metrics = send_from(source, proxy.port, get("/_cacheproxy/metrics", "localhost", *fields))
    assert metrics.status == 403


def test_issue9_5_loopback_operator_may_purge(proxy: ProxyProcess) -> None:
    store(proxy, "/operator")
    response = send_from("127.0.0.1", proxy.port, purge("/operator", "localhost"))
    assert response.status == 200
    assert not cached(proxy, "/operator")


def test_issue9_5_cache_debug_only_for_trusted_clients(proxy: ProxyProcess) -> None:
    local = send_from("127.0.0.1", proxy.port, get("/debug", "localhost", "Cache-Debug: 1"))
    assert local.header("cache-route") is not None
    sidecar = send_from(SIDECAR, proxy.port, get("/debug", "localhost", "Cache-Debug: 1"))
    assert sidecar.header("cache-route") is None
    forwarded = send_from(
        "127.0.0.1", proxy.port, get("/debug", "localhost", "Cache-Debug: 1", "X-Forwarded-For: 203.0.113.9")
    )
    assert forwarded.header("cache-route") is None


def test_issue9_5_text_plain_purge_refused(proxy: ProxyProcess) -> None:
    store(proxy, "/csrf")
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        response = send_from("127.0.0.1", proxy.port, purge("/csrf", "localhost", content_type))
        assert response.status == 415
        assert cached(proxy, "/csrf")


@pytest.mark.parametrize("host", ["rebound.attacker.example", "rebound.attacker.example:8080", "127.0.0.1.nip.io"])
def test_issue9_5_dns_rebinding_host_refused(proxy: ProxyProcess, host: str) -> None:
    response = send_from("127.0.0.1", proxy.port, get("/_cacheproxy/stats.json", host))
    assert response.status == 403
    store(proxy, "/rebind")
    assert send_from("127.0.0.1", proxy.port, purge("/rebind", host)).status == 403
    assert cached(proxy, "/rebind")
    for own in ("localhost", f"127.0.0.1:{proxy.port}", f"[::1]:{proxy.port}"):
        assert send_from("127.0.0.1", proxy.port, get("/_cacheproxy/stats.json", own)).status == 200


def test_issue9_5_probes_answer_any_host_and_client(proxy: ProxyProcess) -> None:
    response = send_from(SIDECAR, proxy.port, get("/_cacheproxy/healthz", "10.0.0.7:8080"))
    assert response.status == 200


def test_issue13_6_upstream_sees_the_chain_once_plus_the_peer(proxy: ProxyProcess, upstream: RecordingUpstream) -> None:
    send_from("127.0.0.1", proxy.port, get("/xff/trusted", "localhost", "X-Forwarded-For: 10.9.9.9"))
    assert upstream.received[-1].header_values("x-forwarded-for") == [b"10.9.9.9, 127.0.0.1"]
    send_from(SIDECAR, proxy.port, get("/xff/untrusted", "localhost", "X-Forwarded-For: 10.9.9.9"))
    assert upstream.received[-1].header_values("x-forwarded-for") == [SIDECAR.encode()]


def test_issue9_5_forwarded_proto_believed_only_from_trusted_peers(
    proxy: ProxyProcess, upstream: RecordingUpstream
) -> None:
    send_from("127.0.0.1", proxy.port, get("/proto/trusted", "localhost", "X-Forwarded-Proto: https"))
    assert upstream.received[-1].header_values("x-forwarded-proto") == [b"https"]
    send_from(SIDECAR, proxy.port, get("/proto/untrusted", "localhost", "X-Forwarded-Proto: https"))
    assert upstream.received[-1].header_values("x-forwarded-proto") == [b"http"]


def test_issue9_5_trusted_proxies_and_admin_hosts_settings(upstream: RecordingUpstream) -> None:
    with proxy_process(
        upstream.url, "--trusted-proxies", f"127.0.0.1, {SIDECAR}/32", "--admin-hosts", "cache.internal"
    ) as proxy:
        forwarded = send_from(
            SIDECAR, proxy.port, get("/_cacheproxy/stats.json", "localhost", "X-Forwarded-For: 203.0.113.9")
        )
        assert forwarded.status == 403  # believed now: the client is 203.0.113.9
        assert send_from(SIDECAR, proxy.port, get("/_cacheproxy/stats.json", "localhost")).status == 200
        assert send_from(SIDECAR, proxy.port, get("/_cacheproxy/stats.json", "cache.internal:1")).status == 200
        send_from(SIDECAR, proxy.port, get("/xff/sidecar", "localhost", "X-Forwarded-For: 10.9.9.9"))
        assert upstream.received[-1].header_values("x-forwarded-for") == [b"10.9.9.9, 127.0.0.6"]
