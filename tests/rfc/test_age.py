"""RFC 9111 §4.2.3 age calculation, §5.1 the Age field, and RFC 9110 §5.6.7 HTTP dates."""

from __future__ import annotations

import pytest

from proxy.messages import Entry, Headers, ResponseHead
from proxy.rfc.age import (
    age_header_value,
    age_value,
    corrected_initial_age,
    current_age,
    format_http_date,
    forwarded_age,
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


# RFC 9111 §5.1: the Age field as received: a plain non-negative integer, else ignored; a list is read cautiously.
AGE_VALUES = {
    "rfc9111-5.1-age-plain-integer": ([("Age", "7200")], 7200),
    "rfc9111-5.1-age-zero": ([("Age", "0")], 0),
    "rfc9111-5.1-age-ows-not-part-of-value": ([("Age", "1 ")], 1),
    "rfc9111-5.1-age-float-ignored": ([("Age", "1.5")], None),
    "rfc9111-5.1-age-float-zero-fraction-ignored": ([("Age", "7200.0")], None),
    "rfc9111-5.1-age-negative-ignored": ([("Age", "-1")], None),
    "rfc9111-5.1-age-plus-sign-ignored": ([("Age", "+1")], None),
    "rfc9111-5.1-age-non-numeric-ignored": ([("Age", "abc")], None),
    "rfc9111-5.1-age-parameter-ignored": ([("Age", "7200;foo=111")], None),
    "rfc9111-5.1-age-unicode-digits-ignored": ([("Age", "\u0667")], None),
    "rfc9111-5.1-age-empty-ignored": ([("Age", "")], None),
    "rfc9111-1.2.2-age-above-2-31-is-2-31": ([("Age", "99999999999")], DELTA_MAX),
    "rfc9111-5.1-age-list-first-member": ([("Age", "7200, 7200")], 7200),
    "rfc9111-5.1-age-list-first-member-old": ([("Age", "7200,0")], 7200),
    "rfc9111-5.1-age-list-later-member-not-trusted-younger": ([("Age", "1,2")], 2),
    "rfc9111-5.1-age-list-first-zero-later-old": ([("Age", "0,7200")], 7200),
    "rfc9111-5.1-age-two-lines-first-old": ([("Age", "7200"), ("Age", "0")], 7200),
    "rfc9111-5.1-age-two-lines-later-old": ([("Age", "0"), ("Age", "7200")], 7200),
    "rfc9111-5.1-age-list-invalid-first-member-voids-field": ([("Age", "abc, 7200")], None),
    "rfc9111-5.1-age-list-invalid-later-member-skipped": ([("Age", "60, abc")], 60),
    "rfc9111-5.1-age-absent": ([], None),
}


@pytest.mark.parametrize(("fields", "expected"), AGE_VALUES.values(), ids=AGE_VALUES.keys())
def test_age_value(fields: list[tuple[str, str]], expected: int | None) -> None:
    assert age_value(Headers(fields)) == expected


# RFC 9111 §4.2.3 for a response passed on without being stored: corrected initial age plus time since arrival.
FORWARDED = {
    "rfc9111-4.2.3-forwarded-upstream-age-kept": ([("Age", "7200")], T, T, T, 7200.0),
    "rfc9111-4.2.3-forwarded-delay-added": ([("Age", "7200")], T - 2, T, T, 7202.0),
    "rfc9111-4.2.3-forwarded-time-since-arrival-added": ([("Age", "10")], T, T, T + 3, 13.0),
    "rfc9111-4.2.3-forwarded-no-age-no-delay-is-zero": ([], T, T, T, 0.0),
    "rfc9111-4.2.3-forwarded-invalid-age-ignored": ([("Age", "-7200")], T, T, T, 0.0),
    "rfc9111-4.2.3-forwarded-apparent-age-from-date": ([("Date", format_http_date(T - 50))], T, T, T, 50.0),
}


@pytest.mark.parametrize(
    ("fields", "request_time", "response_time", "now", "expected"), FORWARDED.values(), ids=FORWARDED.keys()
)
def test_forwarded_age(
    fields: list[tuple[str, str]], request_time: float, response_time: float, now: float, expected: float
) -> None:
    assert forwarded_age(Headers(fields), request_time, response_time, now) == expected
