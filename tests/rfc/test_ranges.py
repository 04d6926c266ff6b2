"""Range requests from a stored complete response: RFC 9110 §14 (ranges), §13.1.5 (If-Range), §15.3.7 (206),
§15.5.17 (416)."""

from __future__ import annotations

import pytest

from proxy.messages import Headers, RequestHead, ResponseHead
from proxy.rfc.dates import format_http_date
from proxy.rfc.ranges import (
    MAX_PARTS,
    NotSatisfiable,
    Part,
    Partial,
    RangePlan,
    Whole,
    boundary_for,
    multipart_body,
    parse_range,
    plan_range,
)

T = 1_700_000_000.0
LM = format_http_date(T - 3600)
STORED = ResponseHead(200, Headers([("ETag", '"v1"'), ("Last-Modified", LM), ("Content-Type", "text/plain")]))
LENGTH = 100


def _plan(fields: list[tuple[str, str]], method: str = "GET", head: ResponseHead = STORED) -> RangePlan:
    request = RequestHead(method, "https", "example.com", "/f", headers=Headers(fields))
    return plan_range(request, head, LENGTH)


def one(first: int, last: int) -> Partial:
    return Partial((Part(first, last, LENGTH),))


PLANS = {
    "rfc9110-14.1.2-first-last": ([("Range", "bytes=0-9")], one(0, 9)),
    "rfc9110-14.1.2-open-ended": ([("Range", "bytes=90-")], one(90, 99)),
    "rfc9110-14.1.2-suffix": ([("Range", "bytes=-10")], one(90, 99)),
    "rfc9110-14.1.2-suffix-longer-than-body": ([("Range", "bytes=-500")], one(0, 99)),
    "rfc9110-14.1.2-last-past-end-clipped": ([("Range", "bytes=95-200")], one(95, 99)),
    "rfc9110-14.1.2-unit-case-insensitive": ([("Range", "Bytes=0-0")], one(0, 0)),
    "rfc9110-14.1.2-whitespace-around-members": ([("Range", "bytes= 0-1 , ")], one(0, 1)),
    "rfc9110-14.6-two-ranges-multipart": (
        [("Range", "bytes=0-9, 50-59")],
        Partial((Part(0, 9, LENGTH), Part(50, 59, LENGTH))),
    ),
    "rfc9110-15.3.7.2-overlapping-ranges-merged": ([("Range", "bytes=0-9, 5-19")], one(0, 19)),
    "rfc9110-15.3.7.2-adjacent-ranges-merged": ([("Range", "bytes=10-19, 0-9")], one(0, 19)),
    "rfc9110-14.1.1-unsatisfiable-part-dropped": ([("Range", "bytes=0-9, 500-600")], one(0, 9)),
    "rfc9110-15.5.17-all-unsatisfiable-416": ([("Range", "bytes=100-200")], NotSatisfiable(LENGTH)),
    "rfc9110-15.5.17-zero-suffix-416": ([("Range", "bytes=-0")], NotSatisfiable(LENGTH)),
    "rfc9110-14.2-other-unit-ignored": ([("Range", "items=0-9")], Whole()),
    "rfc9110-14.2-bad-syntax-ignored": ([("Range", "bytes=a-b")], Whole()),
    "rfc9110-14.1.1-last-before-first-ignored": ([("Range", "bytes=9-0")], Whole()),
    "rfc9110-14.2-two-range-lines-ignored": ([("Range", "bytes=0-1"), ("Range", "bytes=2-3")], Whole()),
    "rfc9110-14.2-no-range-whole": ([], Whole()),
    "rfc9110-17.15-too-many-parts-whole": (
        [("Range", "bytes=" + ", ".join(f"{i * 3}-{i * 3}" for i in range(MAX_PARTS + 1)))],
        Whole(),
    ),
    "rfc9110-13.1.5-if-range-strong-etag-match": ([("Range", "bytes=0-9"), ("If-Range", '"v1"')], one(0, 9)),
    "rfc9110-13.1.5-if-range-other-etag-whole": ([("Range", "bytes=0-9"), ("If-Range", '"v2"')], Whole()),
    "rfc9110-13.1.5-if-range-weak-etag-whole": ([("Range", "bytes=0-9"), ("If-Range", 'W/"v1"')], Whole()),
    "rfc9110-13.1.5-if-range-date-match": ([("Range", "bytes=0-9"), ("If-Range", LM)], one(0, 9)),
    "rfc9110-13.1.5-if-range-other-date-whole": (
        [("Range", "bytes=0-9"), ("If-Range", format_http_date(T))],
        Whole(),
    ),
    "rfc9110-13.1.5-if-range-invalid-date-whole": (
        [("Range", "bytes=0-9"), ("If-Range", LM.replace("GMT", "UTC"))],
        Whole(),
    ),
    "rfc9110-13.1.5-if-range-without-range-whole": ([("If-Range", '"v1"')], Whole()),
}


@pytest.mark.parametrize(("fields", "expected"), PLANS.values(), ids=PLANS.keys())
def test_plan_range(fields: list[tuple[str, str]], expected: RangePlan) -> None:
    assert _plan(fields) == expected


def test_rfc9110_14_2_only_get_has_ranges() -> None:
    assert _plan([("Range", "bytes=0-9")], method="HEAD") == Whole()


def test_rfc9110_14_2_only_a_stored_200_is_cut() -> None:
    assert _plan([("Range", "bytes=0-9")], head=ResponseHead(404, STORED.headers)) == Whole()


def test_rfc9110_14_1_2_parse_range() -> None:
    assert parse_range("bytes=0-1,-5,7-") == [(0, 1), (None, 5), (7, None)]
    assert parse_range("bytes=") is None
    assert parse_range("bytes 0-1") is None


def test_rfc9110_14_6_multipart_body() -> None:
    body = bytes(range(LENGTH))
    parts = (Part(0, 1, LENGTH), Part(10, 11, LENGTH))
    boundary = boundary_for(body, parts)
    assert boundary.encode() not in body
    out = multipart_body(body, parts, "application/octet-stream", boundary)
    part = "\r\n--{}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {}/100\r\n\r\n"
    expected = (
        part.format(boundary, "0-1").encode()
        + body[0:2]
        + part.format(boundary, "10-11").encode()
        + body[10:12]
        + f"\r\n--{boundary}--\r\n".encode()
    )
    assert out == expected
