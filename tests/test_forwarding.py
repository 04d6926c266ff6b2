"""``proxy.forwarding.as_forwarded``: the one derivation of the request fields the upstream (and the cache) sees."""

from __future__ import annotations

import pytest

from proxy.forwarding import UNKEYED_FIELDS, Forwarding, as_forwarded
from proxy.messages import Headers, RequestHead


def request(*fields: tuple[str, str]) -> RequestHead:
    return RequestHead("GET", "http", "a.test", "/p", headers=Headers(fields))


@pytest.mark.parametrize(
    ("fields", "kept"),
    [
        pytest.param(
            [("Connection", "X-Trace, accept-language"), ("Accept-Language", "fr"), ("X-Trace", "1"), ("A", "b")],
            [("A", "b")],
            id="rfc9110-7.6.1-connection-named-fields-removed",
        ),
        pytest.param(
            [("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("Transfer-Encoding", "chunked"), ("Upgrade", "h2c")],
            [],
            id="rfc9110-7.6.1-hop-by-hop-removed",
        ),
        pytest.param(
            [(name, "x") for name in UNKEYED_FIELDS] + [("Accept", "*/*")],
            [("Accept", "*/*")],
            id="unkeyed-fields-removed-by-default",
        ),
        pytest.param(
            [("x-original-url", "/admin"), ("X-HOST", "evil.example")],
            [],
            id="unkeyed-fields-removed-any-case",
        ),
    ],
)
def test_as_forwarded_removes(fields: list[tuple[str, str]], kept: list[tuple[str, str]]) -> None:
    assert list(as_forwarded(request(*fields)).headers) == kept


def test_as_forwarded_keeps_passed_unkeyed_fields() -> None:
    derived = as_forwarded(request(("X-Original-URL", "/a"), ("X-Host", "h")), frozenset({"x-original-url"}))
    assert list(derived.headers) == [("X-Original-URL", "/a")]


def test_as_forwarded_returns_the_same_request_when_nothing_is_removed() -> None:
    plain = request(("Accept", "*/*"))
    assert as_forwarded(plain) is plain


def test_forwarding_headers_send_what_as_forwarded_kept() -> None:
    derived = as_forwarded(request(("Connection", "X-A"), ("X-A", "1"), ("Forwarded", "for=1.2.3.4"), ("B", "2")))
    sent = Forwarding("http://origin.test").headers(derived, streamed=False)
    assert [name for name, _ in sent] == ["B", "Via", "X-Forwarded-Proto", "X-Forwarded-Host"]
