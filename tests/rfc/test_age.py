"""RFC 9111 §4.2.3 age calculation, §5.1 the Age field, and RFC 9110 §5.6.7 HTTP dates."""

from __future__ import annotations

import pytest

from proxy.messages import Entry, Headers, ResponseHead
from proxy.rfc.age import (
    age_header_value,
    corrected_initial_age,
    current_age,
    format_http_date,
    parse_http_date,
)
from proxy.rfc.directives import DELTA_MAX

T = 1_700_000_000.0
EPOCH_1994 = 784_111_777.0

DATES = {
    "rfc9110-5.6.7-imf-fixdate": ("Sun, 06 Nov 1994 08:49:37 GMT", EPOCH_1994),
    "rfc9110-5.6.7-rfc850": ("Sunday, 06-Nov-94 08:49:37 GMT", EPOCH_1994),
    "rfc9110-5.6.7-asctime": ("Sun Nov  6 08:49:37 1994", EPOCH_1994),
    "rfc9110-5.6.7-surrounding-whitespace": ("  Sun, 06 Nov 1994 08:49:37 GMT ", EPOCH_1994),
    "rfc9110-5.6.7-garbage": ("garbage", None),
    "rfc9110-5.6.7-zero": ("0", None),
    "rfc9110-5.6.7-empty": ("", None),
    "rfc9110-5.6.7-absent": (None, None),
}


@pytest.mark.parametrize(("value", "expected"), DATES.values(), ids=DATES.keys())
def test_parse_http_date(value: str | None, expected: float | None) -> None:
    assert parse_http_date(value) == expected


def test_rfc9110_5_6_7_format_imf_fixdate() -> None:
    assert format_http_date(EPOCH_1994) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(EPOCH_1994 + 0.9) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date(format_http_date(T)) == T


# (fields, request_time, response_time, expected corrected initial age)
INITIAL = {
    "rfc9111-4.2.3-nothing-no-delay": ([], T, T, 0.0),
    "rfc9111-4.2.3-response-delay-counts": ([], T - 2, T, 2.0),
    "rfc9111-4.2.3-date-in-the-past": ([("Date", format_http_date(T - 30))], T - 1, T, 30.0),
    "rfc9111-4.2.3-date-in-the-future-is-zero": ([("Date", format_http_date(T + 30))], T, T, 0.0),
    "rfc9111-4.2.3-age-header-plus-delay": ([("Date", format_http_date(T)), ("Age", "20")], T - 3, T, 23.0),
    "rfc9111-4.2.3-larger-of-apparent-and-corrected": (
        [("Date", format_http_date(T - 100)), ("Age", "20")],
        T - 3,
        T,
        100.0,
    ),
    "rfc9111-4.2.3-invalid-age-ignored": ([("Age", "soon")], T - 1, T, 1.0),
    "rfc9111-4.2.3-invalid-date-ignored": ([("Date", "garbage"), ("Age", "5")], T, T, 5.0),
    "rfc9111-4.2.3-clock-skew-negative-delay-is-zero": ([("Age", "5")], T + 10, T, 5.0),
}


@pytest.mark.parametrize(("fields", "request_time", "response_time", "expected"), INITIAL.values(), ids=INITIAL.keys())
def test_corrected_initial_age(
    fields: list[tuple[str, str]], request_time: float, response_time: float, expected: float
) -> None:
    assert corrected_initial_age(Headers(fields), request_time, response_time) == expected


def _entry(initial_age: float) -> Entry:
    return Entry(
        key="k",
        url="https://example.com/a",
        head=ResponseHead(200),
        body=b"",
        request_time=T - 1,
        response_time=T,
        freshness=60.0,
        initial_age=initial_age,
    )


CURRENT = {
    "rfc9111-4.2.3-resident-time-added": (7.0, T + 13, 20.0),
    "rfc9111-4.2.3-now-before-response-time": (7.0, T - 5, 7.0),
    "rfc9111-4.2.3-at-response-time": (0.0, T, 0.0),
}


@pytest.mark.parametrize(("initial", "now", "expected"), CURRENT.values(), ids=CURRENT.keys())
def test_current_age(initial: float, now: float, expected: float) -> None:
    assert current_age(_entry(initial), now) == expected


AGE_FIELD = {
    "rfc9111-5.1-whole-seconds": (41.9, "41"),
    "rfc9111-5.1-zero": (0.0, "0"),
    "rfc9111-1.2.2-capped": (float(DELTA_MAX) * 4, str(DELTA_MAX)),
}


@pytest.mark.parametrize(("age", "expected"), AGE_FIELD.values(), ids=AGE_FIELD.keys())
def test_age_header_value(age: float, expected: str) -> None:
    assert age_header_value(age) == expected
