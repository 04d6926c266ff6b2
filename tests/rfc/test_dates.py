"""RFC 9110 §5.6.7: the three HTTP-date forms, parsed strictly; RFC 9111 §5.3: an invalid Expires is already expired."""

from __future__ import annotations

import pytest

from proxy.messages import Headers, RequestHead, ResponseHead
from proxy.rfc.dates import date_field, format_http_date, parse_http_date
from proxy.rfc.directives import EMPTY
from proxy.rfc.freshness import explicit_freshness, heuristic_freshness
from proxy.rfc.policy import DEFAULT_POLICY
from proxy.rfc.validation import client_not_modified, has_validator

EPOCH_1994 = 784_111_777.0  # Sun, 06 Nov 1994 08:49:37 GMT
FUTURE_2050 = 2_544_400_878.0  # Thu, 18 Aug 2050 02:01:18 GMT
T = 1_700_000_000.0

VALID = {
    "rfc9110-5.6.7-imf-fixdate": ("Sun, 06 Nov 1994 08:49:37 GMT", EPOCH_1994),
    "rfc9110-5.6.7-imf-fixdate-2050": ("Thu, 18 Aug 2050 02:01:18 GMT", FUTURE_2050),
    "rfc9110-5.6.7-rfc850": ("Sunday, 06-Nov-94 08:49:37 GMT", EPOCH_1994),
    "rfc9110-5.6.7-asctime-one-digit-day": ("Sun Nov  6 08:49:37 1994", EPOCH_1994),
    "rfc9110-5.6.7-asctime-two-digit-day": ("Thu Aug 18 02:01:18 2050", FUTURE_2050),
    "rfc9110-5.6.7-asctime-zero-padded-day": ("Sun Nov 06 08:49:37 1994", EPOCH_1994),
    "rfc9110-5.5-surrounding-ows-not-part-of-value": ("  Sun, 06 Nov 1994 08:49:37 GMT\t", EPOCH_1994),
    "rfc9110-5.6.7-leap-second": ("Sat, 31 Dec 2016 23:59:60 GMT", 1_483_228_800.0),
}

INVALID = {
    "rfc9110-5.6.7-utc-is-not-gmt": "Thu, 18 Aug 2050 02:01:18 UTC",
    "rfc9110-5.6.7-numeric-zone": "Thu, 18 Aug 2050 02:01:18 +0000",
    "rfc9110-5.6.7-two-digit-year-in-imf-fixdate": "Thu, 18 Aug 50 02:01:18 GMT",
    "rfc9110-5.6.7-missing-comma": "Thu 18 Aug 2050 02:01:18 GMT",
    "rfc9110-5.6.7-extra-space": "Thu,  18 Aug 2050 02:01:18 GMT",
    "rfc9110-5.6.7-extra-space-before-gmt": "Thu, 18 Aug 2050 02:01:18  GMT",
    "rfc9110-5.6.7-dashes-in-imf-fixdate": "Thu, 18-Aug-2050 02:01:18 GMT",
    "rfc9110-5.6.7-dot-in-time": "Thu, 18 Aug 2050 02.01.18 GMT",
    "rfc9110-5.6.7-one-digit-hour": "Thu, 18 Aug 2050 2:01:18 GMT",
    "rfc9110-5.6.7-one-digit-day": "Thu, 8 Aug 2050 02:01:18 GMT",
    "rfc9110-5.6.7-lower-case-month": "Thu, 18 aug 2050 02:01:18 GMT",
    "rfc9110-5.6.7-lower-case-gmt": "Thu, 18 Aug 2050 02:01:18 gmt",
    "rfc9110-5.6.7-long-day-name-in-imf-fixdate": "Thursday, 18 Aug 2050 02:01:18 GMT",
    "rfc9110-5.6.7-short-day-name-in-rfc850": "Sun, 06-Nov-94 08:49:37 GMT",
    "rfc9110-5.6.7-four-digit-year-in-rfc850": "Sunday, 06-Nov-1994 08:49:37 GMT",
    "rfc9110-5.6.7-asctime-two-spaces-before-two-digits": "Thu Aug  18 02:01:18 2050",
    "rfc9110-5.6.7-asctime-with-gmt": "Sun Nov  6 08:49:37 1994 GMT",
    "rfc9110-5.6.7-hour-24": "Thu, 18 Aug 2050 24:00:00 GMT",
    "rfc9110-5.6.7-minute-60": "Thu, 18 Aug 2050 02:60:00 GMT",
    "rfc9110-5.6.7-february-30": "Wed, 30 Feb 2050 02:01:18 GMT",
    "rfc9110-5.6.7-fraction-of-second": "Thu, 18 Aug 2050 02:01:18.5 GMT",
    "rfc9110-5.6.7-unicode-digits": "Thu, \uff118 Aug 2050 02:01:18 GMT",
    "rfc9110-5.6.7-trailing-text": "Thu, 18 Aug 2050 02:01:18 GMT; x",
    "rfc9110-5.6.7-zero": "0",
    "rfc9110-5.6.7-epoch-number": "2544400878",
    "rfc9110-5.6.7-garbage": "garbage",
    "rfc9110-5.6.7-empty": "",
}


@pytest.mark.parametrize(("value", "expected"), VALID.values(), ids=VALID.keys())
def test_valid_http_date(value: str, expected: float) -> None:
    assert parse_http_date(value) == expected


@pytest.mark.parametrize("value", INVALID.values(), ids=INVALID.keys())
def test_invalid_http_date(value: str) -> None:
    assert parse_http_date(value) is None


# RFC 850 two-digit years: more than 50 years ahead of ``now`` means the most recent past such year.
RFC850_YEARS = {
    "rfc9110-5.6.7-rfc850-94-is-1994-in-2023": ("Sunday, 06-Nov-94 08:49:37 GMT", T, 1994),
    "rfc9110-5.6.7-rfc850-50-is-2050-in-2023": ("Thursday, 18-Aug-50 02:01:18 GMT", T, 2050),
    "rfc9110-5.6.7-rfc850-74-is-1974-in-2023": ("Sunday, 18-Aug-74 02:01:18 GMT", T, 1974),
    "rfc9110-5.6.7-rfc850-72-is-2072-in-2023": ("Thursday, 18-Aug-72 02:01:18 GMT", T, 2072),
}


@pytest.mark.parametrize(("value", "now", "year"), RFC850_YEARS.values(), ids=RFC850_YEARS.keys())
def test_rfc850_two_digit_year(value: str, now: float, year: int) -> None:
    parsed = parse_http_date(value, now=now)
    assert parsed is not None
    assert format_http_date(parsed).split()[3] == str(year)


def test_rfc9110_5_6_7_format_round_trip() -> None:
    assert format_http_date(FUTURE_2050) == "Thu, 18 Aug 2050 02:01:18 GMT"
    assert parse_http_date(format_http_date(T)) == T


def test_rfc9110_5_3_several_date_lines_are_invalid() -> None:
    one = "Sun, 06 Nov 1994 08:49:37 GMT"
    assert date_field(Headers([("Date", one)]), "date") == EPOCH_1994
    assert date_field(Headers([("Date", one), ("Date", one)]), "date") is None
    assert date_field(Headers(), "date") is None


def _explicit(*fields: tuple[str, str]) -> float | None:
    return explicit_freshness(ResponseHead(200, Headers(fields)), EMPTY, response_time=T)


DATE = ("Date", format_http_date(T))
EXPIRES = {
    "rfc9111-5.3-valid-expires-gives-lifetime": ([DATE, ("Expires", format_http_date(T + 600))], 600.0),
    "rfc9111-5.3-utc-expires-is-expired": ([DATE, ("Expires", "Thu, 18 Aug 2050 02:01:18 UTC")], 0.0),
    "rfc9111-5.3-two-digit-year-expires-is-expired": ([DATE, ("Expires", "Thu, 18 Aug 50 02:01:18 GMT")], 0.0),
    "rfc9111-5.3-missing-comma-expires-is-expired": ([DATE, ("Expires", "Thu 18 Aug 2050 02:01:18 GMT")], 0.0),
    "rfc9111-5.3-extra-space-expires-is-expired": ([DATE, ("Expires", "Thu, 18 Aug 2050  02:01:18 GMT")], 0.0),
    "rfc9111-5.3-dashes-expires-is-expired": ([DATE, ("Expires", "Thu, 18-Aug-2050 02:01:18 GMT")], 0.0),
    "rfc9111-5.3-dot-time-expires-is-expired": ([DATE, ("Expires", "Thu, 18 Aug 2050 02.01.18 GMT")], 0.0),
    "rfc9111-5.3-one-digit-hour-expires-is-expired": ([DATE, ("Expires", "Thu, 18 Aug 2050 2:01:18 GMT")], 0.0),
    "rfc9111-5.3-zero-expires-is-expired": ([DATE, ("Expires", "0")], 0.0),
    "rfc9111-5.3-several-expires-lines-are-expired": (
        [DATE, ("Expires", format_http_date(T + 600)), ("Expires", format_http_date(T + 600))],
        0.0,
    ),
    "rfc9111-5.3-expires-in-the-past-is-zero": ([DATE, ("Expires", format_http_date(T - 600))], 0.0),
    "rfc9111-4.2.1-no-expires-no-lifetime": ([DATE], None),
    "rfc9111-4.2.1-invalid-date-uses-response-time": (
        [("Date", "Thu, 18 Aug 2050 02:01:18 UTC"), ("Expires", format_http_date(T + 60))],
        60.0,
    ),
}


@pytest.mark.parametrize(("fields", "expected"), EXPIRES.values(), ids=EXPIRES.keys())
def test_expires(fields: list[tuple[str, str]], expected: float | None) -> None:
    assert _explicit(*fields) == expected


def test_rfc9111_4_2_2_invalid_last_modified_gives_no_heuristic() -> None:
    head = ResponseHead(200, Headers([DATE, ("Last-Modified", "Thu, 18 Aug 2020 02:01:18 UTC")]))
    assert heuristic_freshness(head, DEFAULT_POLICY, T) is None
    assert not has_validator(head)


def _ims(since: str) -> bool:
    stored = ResponseHead(200, Headers([DATE, ("Last-Modified", format_http_date(T - 60))]))
    request = RequestHead("GET", "https", "example.com", "/", headers=Headers([("If-Modified-Since", since)]))
    return client_not_modified(request, stored)


def test_rfc9110_13_1_3_if_modified_since_parsed_strictly() -> None:
    assert _ims(format_http_date(T))
    assert not _ims(format_http_date(T).replace("GMT", "UTC"))


def test_parsed_dates_memo_stays_bounded_and_keeps_no_rfc850_or_long_value() -> None:
    from proxy.rfc import dates

    for n in range(dates.MEMO_LIMIT + 10):
        value = format_http_date(EPOCH_1994 + n)
        assert parse_http_date(value) == EPOCH_1994 + n
        assert parse_http_date(value) == EPOCH_1994 + n  # the second time from the memo
        assert len(dates._parsed) <= dates.MEMO_LIMIT
    padded = " " * dates.MEMO_LENGTH + "Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date(padded) == EPOCH_1994 and padded not in dates._parsed
    # RFC 850's two-digit year depends on ``now`` (RFC 9110 §5.6.7): never answered from the memo.
    rfc850 = "Sunday, 06-Nov-94 08:49:37 GMT"
    assert parse_http_date(rfc850, now=T) == EPOCH_1994 and rfc850 not in dates._parsed
    in_2050 = parse_http_date("Thursday, 18-Aug-50 02:01:18 GMT", now=FUTURE_2050)
    assert in_2050 == FUTURE_2050
    assert parse_http_date("Thursday, 18-Aug-50 02:01:18 GMT", now=EPOCH_1994) != in_2050  # 1950, asked in 1994
