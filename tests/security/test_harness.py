"""The harness itself: raw bytes reach the proxy and the upstream records exactly what the proxy forwarded."""

from __future__ import annotations

from tests.security.harness import proxy_process, recording_upstream


def test_raw_request_is_forwarded_and_recorded() -> None:
    with recording_upstream() as upstream, proxy_process(upstream.url) as proxy:
        response = proxy.send(b"GET /hello?x=1 HTTP/1.1\r\nHost: example.test\r\n\r\n")
        assert response.status == 200
        assert response.body == b"upstream saw /hello?x=1"
        assert upstream.received[-1].target == b"/hello?x=1"
        assert upstream.received[-1].header_values("x-forwarded-host") == [b"example.test"]
