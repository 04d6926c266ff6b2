"""The edge's one parse of the request head (``proxy.head``): target forms (RFC 9112 §3.2) and Host (RFC 9112 §3.2)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.head import RAW_TARGET, Refusal, parse_head, split_target
from proxy.messages import RequestHead
from proxy.trust import TrustedProxies

LOOPBACK = TrustedProxies.parse("127.0.0.1,::1")


def scope(target: bytes = b"/p", *headers: tuple[bytes, bytes], method: str = "GET", **kw: Any) -> dict[str, Any]:
    path, _, query = target.partition(b"?")
    return {
        "type": "http", "method": method, "http_version": "1.1", "scheme": "http", "path": path.decode(),
        "raw_path": path, "query_string": query, "headers": list(headers) or [(b"host", b"shop.example")],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8080), "extensions": {RAW_TARGET: target}, **kw,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("target", "method", "expected"),
    [
        (b"/a/b?x=1", "GET", (b"/a/b", b"x=1")),
        (b"//evil.example/x", "GET", (b"//evil.example/x", b"")),
        (b"http://shop.example/a?q", "GET", (b"/a", b"q")),
        (b"HTTPS://SHOP.EXAMPLE", "GET", (b"/", b"")),
        (b"*", "OPTIONS", (b"*", b"")),
        (b"*", "GET", "asterisk-form"),
        (b"*@127.0.0.1:9/x", "GET", "origin-form"),
        (b"http://other.example/a", "GET", "does not match Host"),
        (b"http://u@shop.example/a", "GET", "userinfo"),
        (b"ftp://shop.example/a", "GET", "origin-form"),
        (b"/a#f", "GET", "fragment"),
    ],
    ids=[
        "rfc9112-3.2.1-origin-form", "rfc9112-3.2.1-empty-first-segment", "rfc9112-3.2.2-absolute-own-authority",
        "rfc9112-3.2.2-absolute-empty-path-case-insensitive", "rfc9112-3.2.4-asterisk-options",
        "rfc9112-3.2.4-asterisk-other-method", "ssrf-asterisk-userinfo", "rfc9112-3.2.2-other-authority",
        "absolute-userinfo", "other-scheme", "fragment",
    ],
)  # fmt: skip
def test_split_target(target: bytes, method: str, expected: tuple[bytes, bytes] | str) -> None:
    found = split_target(target, method, b"shop.example")
    if isinstance(expected, str):
        assert isinstance(found, Refusal)
        assert expected in found.reason
        assert found.body.count(b"\n") == 1
    else:
        assert found == expected


def test_rfc9112_3_2_parse_head_builds_the_one_request_head() -> None:
    found = parse_head(scope(b"/p?q=1", (b"host", b"Shop.Example:8080"), (b"accept", b"*/*")), LOOPBACK)
    assert isinstance(found, RequestHead)
    assert (found.method, found.host, found.path, found.query) == ("GET", "Shop.Example:8080", "/p", "q=1")
    assert (found.client, found.peer, found.forwarded_for) == ("127.0.0.1", "127.0.0.1", ())


@pytest.mark.parametrize(
    ("headers", "version", "reason"),
    [
        ([(b"host", b"a.example"), (b"host", b"b.example")], "1.1", "more than one Host"),
        ([(b"accept", b"*/*")], "1.1", "no Host"),
        ([(b"host", b"a.example/x")], "1.1", "invalid Host"),
        ([(b"host", b"a b")], "1.1", "invalid Host"),
    ],
    ids=["rfc9112-3.2-two-hosts", "rfc9112-3.2-no-host", "rfc9110-7.2-path-in-host", "rfc9110-7.2-space"],
)
def test_rfc9112_3_2_host_refusals(headers: list[tuple[bytes, bytes]], version: str, reason: str) -> None:
    found = parse_head(scope(b"/p", *headers, http_version=version), LOOPBACK)
    assert isinstance(found, Refusal)
    assert reason in found.reason


def test_rfc9112_3_2_http10_without_host_uses_the_server_address() -> None:
    found = parse_head(scope(b"/p", (b"accept", b"*/*"), http_version="1.0"), LOOPBACK)
    assert isinstance(found, RequestHead)
    assert found.host == "127.0.0.1:8080"


def test_without_the_raw_target_extension_raw_path_and_query_stand_in() -> None:
    bare = scope(b"/p?x=1")
    del bare["extensions"]
    found = parse_head(bare, LOOPBACK)
    assert isinstance(found, RequestHead)
    assert (found.path, found.query) == ("/p", "x=1")
    refused = parse_head({**bare, "raw_path": b"*@127.0.0.1:9/x", "query_string": b""}, LOOPBACK)
    assert isinstance(refused, Refusal)


def test_trusted_chain_sets_client_scheme_and_forwarded_for() -> None:
    fields = [(b"host", b"shop.example"), (b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-proto", b"https")]
    found = parse_head(scope(b"/p", *fields), LOOPBACK)
    assert isinstance(found, RequestHead)
    assert (found.client, found.peer, found.scheme) == ("198.51.100.1", "127.0.0.1", "https")
    assert found.forwarded_for == ("198.51.100.1",)
    untrusted = parse_head(scope(b"/p", *fields, client=("127.0.0.6", 1)), LOOPBACK)
    assert isinstance(untrusted, RequestHead)
    assert (untrusted.client, untrusted.scheme, untrusted.forwarded_for) == ("127.0.0.6", "http", ())
