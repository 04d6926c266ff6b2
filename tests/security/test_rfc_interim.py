"""Issue 15 item 9: interim responses from the origin (RFC 9110 §15.2, RFC 8297 ``103 Early Hints``) are never
stored and never break the final response. The proxy speaks HTTP/1.1 through uvicorn, which cannot send an interim
response there (see README, "How it caches"), so they are not passed on either: the client sees the final one only.
Raw bytes on both sides: the upstream writes the interim response itself, byte for byte."""

from __future__ import annotations

import pytest

from tests.security.harness import CRLF, Received, proxy_process, recording_upstream, response_bytes

EARLY_HINTS = b"HTTP/1.1 103 Early Hints" + CRLF + b"Link: </style.css>; rel=preload; as=style" + CRLF + CRLF
# An interim response carrying fields that would matter if they were (wrongly) taken for the final response's.
HINTS_WITH_FIELDS = (
    b"HTTP/1.1 103 Early Hints" + CRLF + b"Cache-Control: no-store" + CRLF + b"Set-Cookie: a=1" + CRLF + CRLF
)
CONTINUE = b"HTTP/1.1 100 Continue" + CRLF + CRLF
FINAL = response_bytes(body=b"final", headers=(("Cache-Control", "max-age=600"), ("X-Final", "1")))


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n".encode()


@pytest.mark.parametrize(
    "interim",
    [EARLY_HINTS, EARLY_HINTS + EARLY_HINTS, HINTS_WITH_FIELDS, CONTINUE],
    ids=[
        "rfc8297-103-early-hints-skipped",
        "rfc8297-several-103-skipped",
        "rfc9110-15.2-interim-fields-not-merged",
        "rfc9110-15.2.1-unsolicited-100-skipped",
    ],
)
def test_interim_response_never_stored_nor_breaks_the_final_one(interim: bytes) -> None:
    def respond(received: Received) -> bytes:
        return interim + FINAL

    with recording_upstream(respond) as upstream, proxy_process(upstream.url) as proxy:
        first = proxy.send(_get("/hinted"))
        assert first.status == 200 and first.body == b"final"
        assert first.header("X-Final") == "1" and first.header("Link") is None
        assert first.header("Set-Cookie") is None
        second = proxy.send(_get("/hinted"))
        assert second.status == 200 and second.body == b"final"
        assert (second.header("Cache-Status") or "").startswith("cacheproxy; hit")
        assert len(upstream.received) == 1
