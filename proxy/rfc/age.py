"""Age (RFC 9111 §4.2.3, §5.1). HTTP dates live in ``proxy.rfc.dates`` (re-exported here for old callers)."""

from __future__ import annotations

from proxy.messages import Entry, Headers, split_list
from proxy.rfc.dates import date_field, format_http_date, parse_http_date
from proxy.rfc.directives import DELTA_MAX

__all__ = [
    "age_header_value",
    "age_value",
    "corrected_initial_age",
    "current_age",
    "format_http_date",
    "forwarded_age",
    "parse_http_date",
]


def _non_negative_integer(text: str) -> int | None:
    """``delta-seconds`` exactly (RFC 9111 §1.2.2): ASCII digits only, capped at 2^31."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    return min(int(text), DELTA_MAX)


def age_value(headers: Headers) -> int | None:
    """The ``Age`` a response carries (RFC 9111 §5.1), or ``None`` when it is absent or invalid (then ignored).

    ``Age`` is a singleton, but a list (one line ``7200, 0`` or several lines) is read as §5.1 says: the first
    member decides whether the field is valid at all (an invalid first member voids the field). The later members
    are not trusted to make the response younger: a valid later member that is larger wins, so a list never
    makes a response look fresher than any of its claims (the cautious reading for a shared cache). Values are
    plain non-negative integers: ``1.5``, ``-1``, ``+1``, ``1e3`` and ``7200;x=1`` are invalid; the whitespace
    around a member is not part of it.
    """
    members = [member for line in headers.get_all("age") for member in split_list(line)]
    if not members:
        return None
    first = _non_negative_integer(members[0])
    if first is None:
        return None
    later = (_non_negative_integer(member) for member in members[1:])
    return max((first, *(n for n in later if n is not None)))


def corrected_initial_age(headers: Headers, request_time: float, response_time: float) -> float:
    """RFC 9111 §4.2.3: the age of a response when it arrived here, from ``Age``, ``Date`` and the exchange's times."""
    date_value = date_field(headers, "date", now=response_time)
    apparent_age = max(0.0, response_time - date_value) if date_value is not None else 0.0
    response_delay = max(0.0, response_time - request_time)
    corrected_age_value = (age_value(headers) or 0) + response_delay
    return max(apparent_age, float(corrected_age_value))


def current_age(entry: Entry, now: float) -> float:
    """RFC 9111 §4.2.3: ``corrected_initial_age + resident_time``."""
    return entry.initial_age + max(0.0, now - entry.response_time)


def forwarded_age(headers: Headers, request_time: float, response_time: float, now: float) -> float:
    """RFC 9111 §4.2.3, §5.1: the age of a response the cache forwards without storing (or before it is stored).

    The same calculation as for a stored response, with a resident time of ``now - response_time``: a downstream
    cache must not take the response for younger than the origin and the way here made it.
    """
    return corrected_initial_age(headers, request_time, response_time) + max(0.0, now - response_time)


def age_header_value(age: float) -> str:
    """The ``Age`` field value: whole seconds, capped at 2^31 (RFC 9111 §5.1, §1.2.2)."""
    return str(min(int(age), DELTA_MAX))
