"""The client's If-Match and If-Unmodified-Since answered by the cache: RFC 9110 §13.1.1, §13.1.4, §13.2.2."""

from __future__ import annotations

import pytest

from proxy.messages import Headers, RequestHead, ResponseHead
from proxy.rfc.dates import format_http_date
from proxy.rfc.preconditions import precondition_failed

T = 1_700_000_000.0
LM = format_http_date(T)
STORED = ResponseHead(200, Headers([("ETag", '"v1"'), ("Last-Modified", LM)]))

CASES = {
    "rfc9110-13.1.1-if-match-same-etag-holds": ([("If-Match", '"v1"')], STORED, False),
    "rfc9110-13.1.1-if-match-list-holds": ([("If-Match", '"v0", "v1"')], STORED, False),
    "rfc9110-13.1.1-if-match-star-holds": ([("If-Match", "*")], STORED, False),
    "rfc9110-13.1.1-if-match-other-etag-fails": ([("If-Match", '"v2"')], STORED, True),
    "rfc9110-13.1.1-if-match-weak-member-fails": ([("If-Match", 'W/"v1"')], STORED, True),
    "rfc9110-13.1.1-if-match-no-stored-etag-fails": ([("If-Match", '"v1"')], ResponseHead(200), True),
    "rfc9110-13.1.4-unmodified-since-later-holds": ([("If-Unmodified-Since", format_http_date(T + 1))], STORED, False),
    "rfc9110-13.1.4-unmodified-since-equal-holds": ([("If-Unmodified-Since", LM)], STORED, False),
    "rfc9110-13.1.4-unmodified-since-earlier-fails": ([("If-Unmodified-Since", format_http_date(T - 1))], STORED, True),
    "rfc9110-13.1.4-invalid-date-ignored": ([("If-Unmodified-Since", LM.replace("GMT", "UTC"))], STORED, False),
    "rfc9110-13.1.4-no-last-modified-ignored": (
        [("If-Unmodified-Since", format_http_date(T - 1))],
        ResponseHead(200, Headers([("ETag", '"v1"')])),
        False,
    ),
    "rfc9110-13.2.2-if-match-before-unmodified-since": (
        [("If-Match", '"v1"'), ("If-Unmodified-Since", format_http_date(T - 1))],
        STORED,
        False,
    ),
    "rfc9110-13.2.1-non-2xx-ignored": ([("If-Match", '"v2"')], ResponseHead(404, STORED.headers), False),
    "rfc9110-13.2.2-none-given": ([], STORED, False),
}


@pytest.mark.parametrize(("fields", "stored", "expected"), CASES.values(), ids=CASES.keys())
def test_precondition_failed(fields: list[tuple[str, str]], stored: ResponseHead, expected: bool) -> None:
    request = RequestHead("GET", "https", "example.com", "/", headers=Headers(fields))
    assert precondition_failed(request, stored) is expected


def test_rfc9110_13_2_1_only_get_and_head() -> None:
    request = RequestHead("DELETE", "https", "example.com", "/", headers=Headers([("If-Match", '"v2"')]))
    assert not precondition_failed(request, STORED)
