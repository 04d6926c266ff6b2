"""Issue 9 §6: the cache key matches what the upstream saw. Each attack is raw bytes against a real proxy process.

The upstream records every request byte for byte and answers with a cacheable body naming what it saw (the target
and the fields an origin could act on), so a test can tell which request produced a stored answer. Every attack
below poisoned the clean URL before the fix; each test shows that the upstream never saw the attacker's input, or
that what it saw is part of the key, or that the answer was not stored.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from proxy.forwarding import UNKEYED_FIELDS
from tests.security.harness import (
    CRLF,
    ProxyProcess,
    RawResponse,
    Received,
    RecordingUpstream,
    proxy_process,
    recording_upstream,
    response_bytes,
)
from tests.security.key_support import send_on_one_connection

WATCHED = ("accept-language", "authorization", "cookie", *(name.lower() for name in UNKEYED_FIELDS))

RULES = f"""\
defaults:
  ttl: 60s
routes:
  - name: account
    match: {{path: /account/**}}
    bypass: true
  - name: passed
    match: {{path: /passed/**}}
    pass_headers: [{", ".join(UNKEYED_FIELDS)}]
  - name: utm
    match: {{path: /utm/**}}
    key: {{ignore_params: [utm_*]}}
  - name: everything
    match: {{path: /**}}
"""


def tell_what_was_seen(received: Received) -> bytes:
    """A cacheable answer whose body names the target and the watched fields; ``/vary/`` paths vary on language."""
    seen = [b"target=" + received.target]
    for name in WATCHED:
        values = received.header_values(name)
        if values:
            seen.append(name.encode() + b"=" + b",".join(values))
    headers = [("Cache-Control", "max-age=60")]
    if b"/vary/" in received.target:
        headers.append(("Vary", "Accept-Language"))
    answer = response_bytes(body=b"; ".join(seen), headers=headers)
    if received.request_line.startswith(b"HEAD "):
        return answer.partition(CRLF + CRLF)[0] + CRLF + CRLF  # the head alone (RFC 9110 §9.3.2)
    return answer


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with recording_upstream(tell_what_was_seen) as running:
        yield running


@pytest.fixture(scope="module")
def proxy(upstream: RecordingUpstream) -> Iterator[ProxyProcess]:
    with proxy_process(upstream.url, rules=RULES) as running:
        yield running


def get(target: str, *fields: str, method: str = "GET", body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: shop.test", *fields]
    return CRLF.join(line.encode("latin-1") for line in lines) + CRLF + CRLF + body


def status(response: RawResponse) -> str:
    return response.header("cache-status") or ""


def is_hit(response: RawResponse) -> bool:
    return "; hit" in status(response)


# --- Vary on the request as forwarded ----------------------------------------------------------------------------


def test_rfc9110_7_6_1_vary_keys_the_request_as_forwarded(upstream: RecordingUpstream, proxy: ProxyProcess) -> None:
    """A field named in Connection is not forwarded, so the stored variant is the one for its absence."""
    attack = proxy.send(get("/vary/connection", "Accept-Language: fr", "Connection: Accept-Language"))
    assert attack.body == b"target=/vary/connection"
    assert upstream.received[-1].header_values("accept-language") == []
    seen = len(upstream.received)

    clean = proxy.send(get("/vary/connection", "Accept-Language: fr"))
    assert not is_hit(clean)
    assert clean.body == b"target=/vary/connection; accept-language=fr"
    assert len(upstream.received) == seen + 1

    without = proxy.send(get("/vary/connection"))
    assert is_hit(without)
    assert without.body == b"target=/vary/connection"


# --- Trailers ----------------------------------------------------------------------------------------------------

TRAILER_BODY = b"3\r\nabc\r\n0\r\nAuthorization: Bearer evil\r\nCookie: session=evil\r\n\r\n"


def test_rfc9112_7_1_2_trailers_never_become_request_headers(upstream: RecordingUpstream, proxy: ProxyProcess) -> None:
    response = proxy.send(get("/trailers/post", "Transfer-Encoding: chunked", method="POST", body=TRAILER_BODY))
    assert response.status == 200
    received = upstream.received[-1]
    assert received.body == b"abc"
    assert received.header_values("authorization") == []
    assert received.header_values("cookie") == []
    assert upstream.received[-1].trailers == b""
    assert response.body == b"target=/trailers/post"


def test_rfc9112_7_1_2_trailers_of_one_request_do_not_reach_the_next(
    upstream: RecordingUpstream, proxy: ProxyProcess
) -> None:
    """On one connection, the second request's own fields still arrive: only the trailer section is dropped."""
    first = get("/trailers/first", "Transfer-Encoding: chunked", method="POST", body=TRAILER_BODY)
    second = get("/trailers/second", "Accept-Language: de", method="POST", body=b"")
    responses = send_on_one_connection(proxy.port, first, second)
    assert [r.body for r in responses] == [b"target=/trailers/first", b"target=/trailers/second; accept-language=de"]


# --- Unkeyed fields ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", UNKEYED_FIELDS)
def test_unkeyed_field_is_not_forwarded(upstream: RecordingUpstream, proxy: ProxyProcess, name: str) -> None:
    target = f"/unkeyed/{name}"
    attack = proxy.send(get(target, f"{name}: /admin"))
    assert upstream.received[-1].header_values(name) == []
    assert attack.body == f"target={target}".encode()
    clean = proxy.send(get(target))
    assert is_hit(clean)
    assert clean.body == f"target={target}".encode()


@pytest.mark.parametrize("name", UNKEYED_FIELDS)
def test_passed_unkeyed_field_is_forwarded_and_keyed(
    upstream: RecordingUpstream, proxy: ProxyProcess, name: str
) -> None:
    target = f"/passed/{name}"
    attack = proxy.send(get(target, f"{name}: /admin"))
    assert upstream.received[-1].header_values(name) == [b"/admin"]
    seen = len(upstream.received)

    clean = proxy.send(get(target))
    assert not is_hit(clean)
    assert len(upstream.received) == seen + 1
    assert clean.body == f"target={target}".encode()

    again = proxy.send(get(target, f"{name}: /admin"))
    assert is_hit(again)
    assert again.body == attack.body


# --- Fat GET -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "fields", "body"),
    [
        pytest.param("GET", ["Content-Length: 5"], b"hello", id="fat-get-content-length"),
        pytest.param("GET", ["Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\n\r\n", id="fat-get-chunked"),
        pytest.param("HEAD", ["Content-Length: 5"], b"hello", id="fat-head-content-length"),
    ],
)
def test_fat_get_is_forwarded_with_its_body_never_served_or_stored(
    upstream: RecordingUpstream, proxy: ProxyProcess, method: str, fields: list[str], body: bytes
) -> None:
    target = f"/fat/{method}-{fields[0].split(':')[0]}"
    stored = proxy.send(get(target))
    assert "stored" in status(stored)
    seen = len(upstream.received)

    fat = proxy.send(get(target, *fields, method=method, body=body))
    assert len(upstream.received) == seen + 1
    assert upstream.received[-1].body == b"hello"
    assert "fwd=bypass" in status(fat)
    assert "detail=request-body" in status(fat)

    clean = proxy.send(get(target))
    assert is_hit(clean)
    assert clean.body == f"target={target}".encode()
    assert len(upstream.received) == seen + 1


def test_fat_get_answer_is_not_stored_for_the_clean_url(upstream: RecordingUpstream, proxy: ProxyProcess) -> None:
    proxy.send(get("/fat/first", "Content-Length: 5", body=b"hello"))
    seen = len(upstream.received)
    clean = proxy.send(get("/fat/first"))
    assert not is_hit(clean)
    assert len(upstream.received) == seen + 1


# --- Route matching on a normalised path --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("//account/x", id="match-repeated-slashes-merged"),
        pytest.param("/account;x/y", id="match-semicolon-parameters-stripped-per-segment"),
        pytest.param("/ACCOUNT/x", id="match-bypass-route-ignores-case"),
        pytest.param("/account%2Fx", id="match-encoded-slash-is-a-separator"),
        pytest.param("/account%5Cx", id="match-encoded-backslash-is-a-separator"),
        pytest.param("/account\\x", id="match-backslash-is-a-separator"),
        pytest.param("/account%3B.css", id="match-encoded-semicolon-parameters-stripped"),
        pytest.param("//ACCOUNT;x//y", id="match-every-rule-at-once"),
        pytest.param("/./account/x", id="rfc3986-5.2.4-dot-segment"),
        pytest.param("/foo/../account/x", id="rfc3986-5.2.4-dot-dot-segment"),
        pytest.param("/foo/..;/account/x", id="match-parameters-stripped-before-dot-segments"),
        pytest.param("/%61ccount/x", id="rfc3986-6.2.2.2-unreserved-decoded"),
    ],
)
def test_path_evasion_stays_on_the_bypass_route(upstream: RecordingUpstream, proxy: ProxyProcess, target: str) -> None:
    for _ in range(2):
        seen = len(upstream.received)
        response = proxy.send(get(target, "Cache-Debug: 1"))
        assert response.header("cache-route") == "account"
        assert "fwd=bypass; detail=rule" in status(response)
        assert len(upstream.received) == seen + 1
        assert upstream.received[-1].target == target.encode()


# --- ';' in ignored query parameters ------------------------------------------------------------------------------


def test_semicolon_in_ignored_parameter_does_not_poison_the_clean_url(
    upstream: RecordingUpstream, proxy: ProxyProcess
) -> None:
    attack = proxy.send(get("/utm/page?utm_x=1;callback=evil"))
    assert attack.body == b"target=/utm/page?utm_x=1;callback=evil"
    clean = proxy.send(get("/utm/page"))
    assert not is_hit(clean)
    assert clean.body == b"target=/utm/page"
    ignored = proxy.send(get("/utm/page?utm_source=news"))
    assert is_hit(ignored)
    assert ignored.body == b"target=/utm/page"
