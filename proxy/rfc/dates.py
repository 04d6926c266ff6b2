"""HTTP dates (RFC 9110 §5.6.7): one strict parser for every date field the cache reads.

``Date``, ``Expires``, ``Last-Modified``, ``If-Modified-Since``, ``If-Unmodified-Since`` and the date form of
``If-Range`` all go through ``parse_http_date``. It accepts exactly the three forms of the grammar, with their
case-sensitive names and single spaces: IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``), the obsolete RFC 850
form (``Sunday, 06-Nov-94 08:49:37 GMT``) and asctime (``Sun Nov  6 08:49:37 1994``). Anything else (``UTC``
for ``GMT``, a two-digit year outside RFC 850, a missing comma, extra spaces, dashes or dots in the wrong
place, a one-digit hour, an impossible day) is invalid: the caller decides what invalid means (for ``Expires``,
already expired, RFC 9111 §5.3). Only the whitespace around a field value, which is not part of it (RFC 9110
§5.5), is dropped.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime

from proxy.messages import Headers

_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_DAY_LONG = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTH = r"(?P<month>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = r"(?P<hour>[0-9][0-9]):(?P<minute>[0-9][0-9]):(?P<second>[0-9][0-9])"

_IMF_FIXDATE = re.compile(rf"{_DAY}, (?P<day>[0-9][0-9]) {_MONTH} (?P<year>[0-9]{{4}}) {_TIME} GMT")
_RFC850 = re.compile(rf"{_DAY_LONG}, (?P<day>[0-9][0-9])-{_MONTH}-(?P<year>[0-9][0-9]) {_TIME} GMT")
_ASCTIME = re.compile(rf"{_DAY} {_MONTH} (?P<day>[0-9][0-9]| [0-9]) {_TIME} (?P<year>[0-9]{{4}})")
_FORMS = (_IMF_FIXDATE, _RFC850, _ASCTIME)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_SECONDS_PER_YEAR = 365.2425 * 86_400


def _full_year(two_digits: int, now: float | None) -> int:
    """RFC 9110 §5.6.7: an RFC 850 year more than 50 years in the future is the most recent past such year.

    Without ``now`` the reference is the year 2000, which puts ``00``-``49`` in this century and ``50``-``99``
    in the last one (the RFC 850 era ended long before 2050).
    """
    reference = 2000 if now is None else 1970 + int(now // _SECONDS_PER_YEAR)
    year = reference - reference % 100 + two_digits
    while year > reference + 50:
        year -= 100
    while year <= reference - 50:
        year += 100
    return year


# Parsed dates by field value. A response's ``Date`` repeats for a second and its ``Last-Modified`` for as long as the
# resource lasts, so most values have been parsed before. The memo only holds values short enough to be dates (and the
# result of a value does not depend on ``now`` unless it is in the RFC 850 form, which is never kept); it is emptied
# when full, so it stays within ``MEMO_LIMIT`` entries of at most ``MEMO_LENGTH`` characters.
MEMO_LIMIT = 1024
MEMO_LENGTH = 40
_parsed: dict[str, float | None] = {}


def parse_http_date(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds since the epoch for an HTTP-date in one of the three forms, or ``None`` when invalid or absent.

    ``now`` resolves the two-digit year of the RFC 850 form (§5.6.7); a leap second (``:60``) is accepted.
    """
    if not value:
        return None
    try:
        return _parsed[value]
    except KeyError:
        pass
    text = value.strip(" \t")
    parsed = None
    rfc850 = False
    for form in _FORMS:
        match = form.fullmatch(text)
        if match is not None:
            rfc850 = form is _RFC850
            parsed = _epoch(match, rfc850, now)
            break
    if not rfc850 and len(value) <= MEMO_LENGTH:
        if len(_parsed) >= MEMO_LIMIT:
            _parsed.clear()
        _parsed[value] = parsed
    return parsed


def _epoch(match: re.Match[str], two_digit_year: bool, now: float | None) -> float | None:
    year = int(match["year"])
    if two_digit_year:
        year = _full_year(year, now)
    day, hour, minute, second = int(match["day"]), int(match["hour"]), int(match["minute"]), int(match["second"])
    month = _MONTHS.index(match["month"]) + 1
    if hour > 23 or minute > 59 or second > 60:
        return None
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second)))


def format_http_date(epoch: float) -> str:
    """IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT`` (fractions of a second dropped)."""
    t = datetime.fromtimestamp(int(epoch), UTC)
    day = _DAYS[t.weekday()]
    return f"{day}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year:04d} {t.hour:02d}:{t.minute:02d}:{t.second:02d} GMT"


def date_field(headers: Headers, name: str, *, now: float | None = None) -> float | None:
    """The one date a singleton date field carries, or ``None`` when absent, invalid or given more than once.

    Several field lines of a date field are a list of dates, which the grammar does not allow (RFC 9110 §5.3).
    """
    lines = headers.get_all(name)
    if len(lines) != 1:
        return None
    return parse_http_date(lines[0], now=now)
