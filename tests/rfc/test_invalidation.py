"""RFC 9111 §4.4: the URIs a successful unsafe request invalidates."""

from __future__ import annotations

import pytest

from proxy.messages import Headers, RequestHead, ResponseHead
from proxy.rfc.invalidation import invalidated_urls

Fields = list[tuple[str, str]]
TARGET = "https://api.example/items/7?v=1"

CASES: list[tuple[str, str, int, Fields, list[str]]] = [
    ("rfc9111-4.4-post-invalidates-target", "POST", 201, [], [TARGET]),
    ("rfc9111-4.4-put-invalidates-target", "PUT", 204, [], [TARGET]),
    ("rfc9111-4.4-patch-invalidates-target", "PATCH", 200, [], [TARGET]),
    ("rfc9111-4.4-delete-invalidates-target", "DELETE", 200, [], [TARGET]),
    ("rfc9111-4.4-unknown-method-is-unsafe", "REPORT", 200, [], [TARGET]),
    (
        "rfc9111-4.4-redirect-status-invalidates",
        "POST",
        303,
        [("Location", "/items/8")],
        [TARGET, "https://api.example/items/8"],
    ),
    ("rfc9111-4.4-get-invalidates-nothing", "GET", 200, [("Location", "/items/8")], []),
    ("rfc9111-4.4-head-invalidates-nothing", "HEAD", 200, [], []),
    ("rfc9111-4.4-options-invalidates-nothing", "OPTIONS", 200, [], []),
    ("rfc9111-4.4-trace-invalidates-nothing", "TRACE", 200, [], []),
    ("rfc9111-4.4-client-error-invalidates-nothing", "DELETE", 404, [("Location", "/items/8")], []),
    ("rfc9111-4.4-server-error-invalidates-nothing", "POST", 503, [], []),
    ("rfc9111-4.4-informational-invalidates-nothing", "POST", 100, [], []),
    (
        "rfc9111-4.4-location-and-content-location-in-order",
        "POST",
        201,
        [("Content-Location", "/items/9"), ("Location", "https://api.example/items/8")],
        [TARGET, "https://api.example/items/8", "https://api.example/items/9"],
    ),
    (
        "rfc9111-4.4-relative-location-resolved",
        "POST",
        201,
        [("Location", "8")],
        [TARGET, "https://api.example/items/8"],
    ),
    (
        "rfc9111-4.4-location-same-origin-only",
        "POST",
        201,
        [("Location", "https://other.example/items/8"), ("Content-Location", "//evil.example/items/7")],
        [TARGET],
    ),
    ("rfc9111-4.4-other-scheme-is-foreign", "POST", 201, [("Location", "http://api.example/items/8")], [TARGET]),
    ("rfc9111-4.4-other-port-is-foreign", "POST", 201, [("Location", "https://api.example:8443/items/8")], [TARGET]),
    (
        "rfc9111-4.4-default-port-same-origin",
        "POST",
        201,
        [("Location", "https://API.example:443/items/8")],
        [TARGET, "https://API.example:443/items/8"],
    ),
    ("rfc9111-4.4-duplicate-of-target-dropped", "PUT", 200, [("Content-Location", "/items/7?v=1")], [TARGET]),
    (
        "rfc9111-4.4-duplicates-dropped",
        "PUT",
        200,
        [("Location", "/items/8"), ("Content-Location", "/items/8")],
        [TARGET, "https://api.example/items/8"],
    ),
    (
        "rfc9111-4.4-fragment-dropped",
        "POST",
        201,
        [("Location", "/items/8#top")],
        [TARGET, "https://api.example/items/8"],
    ),
    ("rfc9111-4.4-malformed-location-ignored", "POST", 201, [("Location", "https://[::1/x")], [TARGET]),
    ("rfc9111-4.4-empty-location-ignored", "POST", 201, [("Location", "  ")], [TARGET]),
]


@pytest.mark.parametrize(("method", "status", "fields", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalidated_urls(method: str, status: int, fields: Fields, expected: list[str]) -> None:
    request = RequestHead(method, "https", "api.example", "/items/7", "v=1")
    assert invalidated_urls(request, ResponseHead(status, Headers(fields))) == expected
