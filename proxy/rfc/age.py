"""Age (RFC 9111 §4.2.3, §5.1) and HTTP dates (RFC 9110 §5.6.7)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from proxy.messages import Entry, Headers
from proxy.rfc.directives import DELTA_MAX, parse_delta


def parse_http_date(value: str | None) -> float | None:
    """Seconds since the epoch for an HTTP-date in any of the three formats, or ``None`` when invalid."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_http_date(epoch: float) -> str:
    """IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return format_datetime(datetime.fromtimestamp(int(epoch), UTC), usegmt=True)


def corrected_initial_age(headers: Headers, request_time: float, response_time: float) -> float:
    """RFC 9111 §4.2.3: the age of a response when it arrived here, from ``Age``, ``Date`` and the exchange's times."""
    date_value = parse_http_date(headers.get("date"))
    apparent_age = max(0.0, response_time - date_value) if date_value is not None else 0.0
    age_value = parse_delta(headers.get("age")) or 0
    response_delay = max(0.0, response_time - request_time)
    corrected_age_value = age_value + response_delay
    return max(apparent_age, float(corrected_age_value))


def current_age(entry: Entry, now: float) -> float:
    """RFC 9111 §4.2.3: ``corrected_initial_age + resident_time``."""
    return entry.initial_age + max(0.0, now - entry.response_time)


def age_header_value(age: float) -> str:
    """The ``Age`` field value: whole seconds, capped at 2^31 (RFC 9111 §5.1, §1.2.2)."""
    return str(min(int(age), DELTA_MAX))
