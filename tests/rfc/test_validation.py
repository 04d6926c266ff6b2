"""Validation: RFC 9111 §4.3 conditional requests and 304 updates, RFC 9110 §13 preconditions answered by the cache."""

from __future__ import annotations

from dataclasses import replace

import pytest

from proxy.messages import Entry, Headers, RequestHead, ResponseHead
from proxy.rfc.age import format_http_date
from proxy.rfc.validation import (
    client_not_modified,
    conditional_request,
    has_validator,
    head_matches,
    merge_304,
    not_modified_head,
    selects_stored,
    stale_copy,
    strip_conditionals,
    validator_matches,
)

Fields = list[tuple[str, str]]
T = 1_700_000_000.0
D0, D1, D2 = format_http_date(T), format_http_date(T + 60), format_http_date(T + 120)


def req(fields: Fields, method: str = "GET") -> RequestHead:
    return RequestHead(method, "https", "api.example", "/items", "page=2", Headers(fields))


def resp(fields: Fields, status: int = 200) -> ResponseHead:
    return ResponseHead(status, Headers(fields))


def entry(fields: Fields) -> Entry:
    return Entry("k", "https://api.example/items", resp(fields), b"body", T, T, 60.0)


HAS_VALIDATOR = [
    ("rfc9110-8.8.3-strong-etag", [("ETag", '"v1"')], True),
    ("rfc9110-8.8.3-weak-etag", [("ETag", 'W/"v1"')], True),
    ("rfc9110-8.8.2-last-modified", [("Last-Modified", D0)], True),
    ("rfc9110-8.8.2-invalid-last-modified", [("Last-Modified", "yesterday")], False),
    ("rfc9110-8.8.3-empty-etag", [("ETag", " ")], False),
    ("rfc9110-8.8-none", [("Cache-Control", "max-age=60")], False),
]


@pytest.mark.parametrize(("fields", "expected"), [c[1:] for c in HAS_VALIDATOR], ids=[c[0] for c in HAS_VALIDATOR])
def test_has_validator(fields: Fields, expected: bool) -> None:
    assert has_validator(resp(fields)) is expected


CLIENT_CONDITIONALS: Fields = [
    ("If-None-Match", '"client"'),
    ("If-Modified-Since", D0),
    ("If-Match", '"m"'),
    ("If-Unmodified-Since", D0),
    ("If-Range", '"r"'),
]

CONDITIONAL = [
    (
        "rfc9111-4.3.1-etag-and-last-modified-both-sent",
        "GET",
        [("ETag", '"v1"'), ("Last-Modified", D0)],
        [("Accept", "*/*"), ("If-None-Match", '"v1"'), ("If-Modified-Since", D0)],
    ),
    (
        "rfc9111-4.3.1-weak-etag-sent",
        "GET",
        [("ETag", 'W/"v1"')],
        [("Accept", "*/*"), ("If-None-Match", 'W/"v1"')],
    ),
    (
        "rfc9111-4.3.1-last-modified-only",
        "GET",
        [("Last-Modified", D0)],
        [("Accept", "*/*"), ("If-Modified-Since", D0)],
    ),
    (
        "rfc9111-4.3.1-head-revalidates-stored-get",
        "HEAD",
        [("ETag", '"v1"')],
        [("Accept", "*/*"), ("If-None-Match", '"v1"')],
    ),
    (
        "rfc9111-4.3.1-invalid-last-modified-not-sent",
        "GET",
        [("ETag", '"v1"'), ("Last-Modified", "garbage")],
        [("Accept", "*/*"), ("If-None-Match", '"v1"')],
    ),
]


@pytest.mark.parametrize(
    ("method", "stored", "expected"), [c[1:] for c in CONDITIONAL], ids=[c[0] for c in CONDITIONAL]
)
def test_conditional_request_replaces_client_conditionals(method: str, stored: Fields, expected: Fields) -> None:
    original = req([("Accept", "*/*"), *CLIENT_CONDITIONALS], method)
    out = conditional_request(original, entry(stored))
    assert out.method == "GET"
    assert out.headers == Headers(expected)
    assert (out.path, out.query, out.host) == (original.path, original.query, original.host)


def test_rfc9111_4_3_2_strip_conditionals_for_storable_miss() -> None:
    out = strip_conditionals(req([("Accept", "*/*"), *CLIENT_CONDITIONALS]))
    assert out.headers == Headers([("Accept", "*/*")])
    assert out.method == "GET"


def test_rfc9110_13_1_5_if_range_travels_with_a_forwarded_range() -> None:
    out = strip_conditionals(req([("Accept", "*/*"), *CLIENT_CONDITIONALS, ("Range", "bytes=0-1")]))
    assert out.headers == Headers([("Accept", "*/*"), ("If-Range", '"r"'), ("Range", "bytes=0-1")])


def test_rfc9110_14_2_revalidation_asks_for_the_whole_response() -> None:
    out = conditional_request(req([("Range", "bytes=0-1"), ("If-Range", '"v1"')]), entry([("ETag", '"v1"')]))
    assert out.headers == Headers([("If-None-Match", '"v1"')])


MERGE = [
    (
        "rfc9111-4.3.4-304-refreshes-headers",
        [("Date", D0), ("Cache-Control", "max-age=60"), ("ETag", '"v1"'), ("Content-Type", "text/plain")],
        [("Date", D1), ("Cache-Control", "max-age=120"), ("ETag", '"v1"')],
        [("Content-Type", "text/plain"), ("Date", D1), ("Cache-Control", "max-age=120"), ("ETag", '"v1"')],
    ),
    (
        "rfc9111-3.2-content-length-kept",
        [("Date", D0), ("Content-Length", "4")],
        [("Date", D1), ("Content-Length", "0")],
        [("Content-Length", "4"), ("Date", D1)],
    ),
    (
        "rfc9111-3.2-stored-body-fields-kept",
        [("Date", D0), ("Content-Encoding", "gzip"), ("Content-Range", "bytes 0-3/4")],
        [("Date", D1), ("Content-Encoding", "br"), ("Content-Range", "bytes 0-0/1")],
        [("Content-Encoding", "gzip"), ("Content-Range", "bytes 0-3/4"), ("Date", D1)],
    ),
    (
        "rfc9111-3.1-hop-by-hop-and-connection-named-not-merged",
        [("Date", D0)],
        [("Date", D1), ("Connection", "close, X-Hop"), ("X-Hop", "1"), ("Keep-Alive", "5"), ("X-Kept", "y")],
        [("Date", D1), ("X-Kept", "y")],
    ),
    (
        "rfc9111-3.1-proxy-authenticate-not-merged",
        [("Date", D0)],
        [("Date", D1), ("Proxy-Authenticate", "Basic")],
        [("Date", D1)],
    ),
    (
        "rfc9111-3.2-multi-valued-field-replaced-whole",
        [("Date", D0), ("Link", "<a>"), ("Link", "<b>")],
        [("Date", D1), ("Link", "<c>")],
        [("Date", D1), ("Link", "<c>")],
    ),
    (
        "rfc9111-4.2.3-age-from-304-only",
        [("Date", D0), ("Age", "50"), ("X-A", "1")],
        [("Date", D1)],
        [("X-A", "1"), ("Date", D1)],
    ),
    (
        "rfc9111-4.2.3-304-age-taken",
        [("Date", D0), ("Age", "50")],
        [("Date", D1), ("Age", "3")],
        [("Date", D1), ("Age", "3")],
    ),
    (
        "rfc9110-6.6.1-stale-date-dropped-when-304-has-none",
        [("Date", D0), ("ETag", '"v1"')],
        [("ETag", '"v1"')],
        [("ETag", '"v1"')],
    ),
]


@pytest.mark.parametrize(("stored", "update", "expected"), [c[1:] for c in MERGE], ids=[c[0] for c in MERGE])
def test_merge_304(stored: Fields, update: Fields, expected: Fields) -> None:
    merged = merge_304(resp(stored), resp(update, 304))
    assert merged == ResponseHead(200, Headers(expected))


def test_rfc9110_6_6_1_merge_304_adds_received_date_when_304_has_none() -> None:
    merged = merge_304(resp([("Date", D0), ("ETag", '"v1"')]), resp([], 304), received=T + 120)
    assert merged == ResponseHead(200, Headers([("ETag", '"v1"'), ("Date", D2)]))


def test_rfc9111_4_3_4_merge_keeps_stored_status() -> None:
    assert merge_304(resp([("Date", D0)], 203), resp([("Date", D1)], 304)).status == 203


SELECTION = [
    ("rfc9111-4.3.4-strong-etag-matches", [("ETag", '"v1"')], [("ETag", '"v1"')], True),
    ("rfc9111-4.3.4-strong-etag-differs", [("ETag", '"v1"')], [("ETag", '"v2"')], False),
    ("rfc9111-4.3.4-strong-304-weak-stored-misses", [("ETag", 'W/"v1"')], [("ETag", '"v1"')], False),
    ("rfc9111-4.3.4-weak-304-matches-weakly", [("ETag", '"v1"')], [("ETag", 'W/"v1"')], True),
    ("rfc9111-4.3.4-weak-304-differs", [("ETag", 'W/"v1"')], [("ETag", 'W/"v2"')], False),
    ("rfc9111-4.3.4-etag-304-stored-has-none", [("Last-Modified", D0)], [("ETag", '"v1"')], False),
    ("rfc9111-4.3.4-last-modified-equal", [("Last-Modified", D0)], [("Last-Modified", D0)], True),
    ("rfc9111-4.3.4-last-modified-differs", [("Last-Modified", D0)], [("Last-Modified", D1)], False),
    (
        "rfc9111-4.3.4-etag-decides-over-last-modified",
        [("ETag", '"v1"'), ("Last-Modified", D0)],
        [("ETag", '"v1"'), ("Last-Modified", D1)],
        True,
    ),
    ("rfc9111-4.3.4-no-validator-stored-last-modified", [("Last-Modified", D0)], [("Date", D1)], True),
    ("rfc9111-4.3.4-no-validator-either", [("Date", D0)], [("Date", D1)], True),
    ("rfc9111-4.3.4-no-validator-stored-etag", [("ETag", '"v1"')], [("Date", D1)], False),
]


@pytest.mark.parametrize(("stored", "update", "expected"), [c[1:] for c in SELECTION], ids=[c[0] for c in SELECTION])
def test_validator_matches(stored: Fields, update: Fields, expected: bool) -> None:
    assert validator_matches(resp(stored), resp(update, 304)) is expected


STORED: Fields = [("Date", D1), ("ETag", '"v1"'), ("Last-Modified", D0)]

CLIENT = [
    ("rfc9110-13.1.2-if-none-match-weak-comparison", "GET", [("If-None-Match", 'W/"v1"')], STORED, 200, True),
    ("rfc9110-13.1.2-if-none-match-differs", "GET", [("If-None-Match", '"v2"')], STORED, 200, False),
    ("rfc9110-13.1.2-if-none-match-list", "GET", [("If-None-Match", '"a", "b,c", W/"v1"')], STORED, 200, True),
    (
        "rfc9110-13.1.2-if-none-match-list-lines",
        "GET",
        [("If-None-Match", '"a"'), ("If-None-Match", '"v1"')],
        STORED,
        200,
        True,
    ),
    ("rfc9110-13.1.2-if-none-match-star", "GET", [("If-None-Match", "*")], [("Date", D0)], 200, True),
    ("rfc9110-13.1.2-stored-without-etag", "GET", [("If-None-Match", '"v1"')], [("Date", D0)], 200, False),
    ("rfc9110-13.2.2-inm-beats-ims", "GET", [("If-None-Match", '"v2"'), ("If-Modified-Since", D2)], STORED, 200, False),
    ("rfc9110-13.1.3-ims-not-modified", "GET", [("If-Modified-Since", D0)], STORED, 200, True),
    ("rfc9110-13.1.3-ims-later-date", "HEAD", [("If-Modified-Since", D2)], STORED, 200, True),
    ("rfc9110-13.1.3-ims-modified-since", "GET", [("If-Modified-Since", D0)], [("Last-Modified", D1)], 200, False),
    ("rfc9110-13.1.3-ims-invalid-date-ignored", "GET", [("If-Modified-Since", "soon")], STORED, 200, False),
    (
        "rfc9110-13.1.3-ims-two-lines-ignored",
        "GET",
        [("If-Modified-Since", D2), ("If-Modified-Since", D2)],
        STORED,
        200,
        False,
    ),
    (
        "rfc9111-4.3.2-ims-uses-date-without-last-modified",
        "GET",
        [("If-Modified-Since", D1)],
        [("Date", D1)],
        200,
        True,
    ),
    ("rfc9111-4.3.2-ims-date-after", "GET", [("If-Modified-Since", D0)], [("Date", D1)], 200, False),
    ("rfc9111-4.3.2-ims-no-dates", "GET", [("If-Modified-Since", D0)], [("ETag", '"v1"')], 200, False),
    ("rfc9110-13.1.3-ims-only-get-head", "POST", [("If-Modified-Since", D2)], STORED, 200, False),
    ("rfc9110-13.1.2-inm-only-get-head", "DELETE", [("If-None-Match", "*")], STORED, 200, False),
    ("rfc9110-13.2.1-stored-error-not-evaluated", "GET", [("If-None-Match", '"v1"')], STORED, 404, False),
    ("rfc9110-13.2.1-stored-partial-not-evaluated", "GET", [("If-None-Match", '"v1"')], STORED, 206, False),
    ("rfc9110-13.2.1-no-conditionals", "GET", [], STORED, 200, False),
]


@pytest.mark.parametrize(
    ("method", "fields", "stored", "status", "expected"), [c[1:] for c in CLIENT], ids=[c[0] for c in CLIENT]
)
def test_client_not_modified(method: str, fields: Fields, stored: Fields, status: int, expected: bool) -> None:
    assert client_not_modified(req(fields, method), resp(stored, status)) is expected


def test_rfc9110_15_4_5_not_modified_head_keeps_metadata_only() -> None:
    stored = resp(
        [
            ("Date", D1),
            ("Content-Type", "application/json"),
            ("Content-Length", "4"),
            ("ETag", '"v1"'),
            ("Cache-Control", "max-age=60"),
            ("CDN-Cache-Control", "max-age=600"),
            ("Vary", "Accept"),
            ("Content-Location", "/items/1"),
            ("Expires", D2),
            ("Last-Modified", D0),
            ("Content-Encoding", "gzip"),
            ("Set-Cookie", "a=1"),
            ("X-Custom", "1"),
        ]
    )
    assert not_modified_head(stored) == resp(
        [
            ("Date", D1),
            ("ETag", '"v1"'),
            ("Cache-Control", "max-age=60"),
            ("CDN-Cache-Control", "max-age=600"),
            ("Vary", "Accept"),
            ("Content-Location", "/items/1"),
            ("Expires", D2),
            ("Last-Modified", D0),
        ],
        304,
    )


# (stored fields, 304 fields, sole stored response?, freshened?)
SELECTS = {
    "rfc9111-4.3.4-no-validator-304-freshens-sole-entry-with-etag": ([("ETag", '"v1"')], [("Date", D1)], True, True),
    "rfc9111-4.3.4-no-validator-304-freshens-sole-entry-with-last-modified": (
        [("Last-Modified", D0)],
        [("Date", D1)],
        True,
        True,
    ),
    "rfc9111-4.3.4-no-validator-304-strict-when-several-stored": ([("ETag", '"v1"')], [("Date", D1)], False, False),
    "rfc9111-4.3.4-no-validator-either-several-stored": ([("Date", D0)], [("Date", D1)], False, True),
    "rfc9111-4.3.4-invalid-last-modified-is-no-validator": (
        [("ETag", '"v1"')],
        [("Last-Modified", "yesterday")],
        True,
        True,
    ),
    "rfc9111-4.3.4-differing-etag-never-freshens-sole-entry": ([("ETag", '"v1"')], [("ETag", '"v2"')], True, False),
    "rfc9111-4.3.4-matching-etag-freshens": ([("ETag", '"v1"')], [("ETag", '"v1"')], False, True),
}


@pytest.mark.parametrize(("stored", "update", "sole", "expected"), SELECTS.values(), ids=SELECTS.keys())
def test_selects_stored(stored: Fields, update: Fields, sole: bool, expected: bool) -> None:
    assert selects_stored(resp(stored), resp(update, 304), sole=sole) is expected


# RFC 9111 §4.3.5: (stored fields, stored body length, HEAD 200 fields, matches?)
HEAD_MATCH = {
    "rfc9111-4.3.5-same-etag-updates": ([("ETag", '"v1"')], 3, [("ETag", '"v1"')], True),
    "rfc9111-4.3.5-weak-etag-compared-weakly": ([("ETag", '"v1"')], 3, [("ETag", 'W/"v1"')], True),
    "rfc9111-4.3.5-other-etag-stale": ([("ETag", '"v1"')], 3, [("ETag", '"v2"')], False),
    "rfc9111-4.3.5-etag-where-stored-has-none-stale": ([], 3, [("ETag", '"v1"')], False),
    "rfc9111-4.3.5-same-last-modified-updates": ([("Last-Modified", D0)], 3, [("Last-Modified", D0)], True),
    "rfc9111-4.3.5-other-last-modified-stale": ([("Last-Modified", D0)], 3, [("Last-Modified", D1)], False),
    "rfc9111-4.3.5-content-length-equal-updates": ([("ETag", '"v1"')], 3, [("Content-Length", "3")], True),
    "rfc9111-4.3.5-content-length-differs-stale": ([("ETag", '"v1"')], 3, [("Content-Length", "4")], False),
    "rfc9111-4.3.5-no-validators-updates": ([("ETag", '"v1"')], 3, [("Cache-Control", "max-age=9")], True),
}


@pytest.mark.parametrize(("stored", "length", "head", "expected"), HEAD_MATCH.values(), ids=HEAD_MATCH.keys())
def test_head_matches(stored: Fields, length: int, head: Fields, expected: bool) -> None:
    assert head_matches(resp(stored), length, resp(head)) is expected


def test_rfc9111_4_3_5_stale_copy_is_stale() -> None:
    stored = replace(entry([("ETag", '"v1"')]), stale_while_revalidate=30.0)
    stale = stale_copy(stored)
    assert stale.freshness == 0.0 and stale.stale_while_revalidate == 0.0
    assert stale.body == stored.body and stale.head == stored.head
