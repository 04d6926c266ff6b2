"""Targeted cache-control fields (RFC 9213): ``CDN-Cache-Control`` as a Structured Field Dictionary.

Unlike ``Cache-Control``, a targeted field is an RFC 8941 (RFC 9651) Dictionary, parsed here with ``http-sf``
(a pure parser, allowed in this package by name). RFC 9213 §2.1: when the field does not parse, or a directive
the cache knows has a value of the wrong type, the whole field is ignored and the cache falls back to
``Cache-Control``, as if the targeted field were absent. Parameters on members carry no meaning and are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping

import http_sf

# RFC 9111 §5.2.2 / RFC 5861: directives whose argument is delta-seconds, an sf-integer here (RFC 9213 §2.1).
INTEGER_DIRECTIVES = frozenset({"max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"})
# Directives that take no argument: an sf-boolean (``?1``, or a bare key).
BOOLEAN_DIRECTIVES = frozenset(
    {"no-store", "no-transform", "must-revalidate", "proxy-revalidate", "must-understand", "public", "immutable"}
)
# Directives that are bare or carry a list of field names as an sf-string (§5.2.2.4, §5.2.2.7).
FIELD_LIST_DIRECTIVES = frozenset({"no-cache", "private"})


class _WrongType(Exception):
    """A known directive with a value of the wrong type: the whole field is invalid (RFC 9213 §2.1)."""


def _directive_value(name: str, value: object) -> str | None:
    """The value as ``Directives`` keeps it: ``None`` for a bare directive (``?1``), else text."""
    if isinstance(value, bool):
        if name in INTEGER_DIRECTIVES:
            raise _WrongType(name)
        return None
    if name in BOOLEAN_DIRECTIVES:
        raise _WrongType(name)
    if name in INTEGER_DIRECTIVES:
        if not isinstance(value, int) or value < 0:
            raise _WrongType(name)
        return str(value)  # capped at 2^31 where it is read (``parse_delta``, RFC 9111 §1.2.2)
    if name in FIELD_LIST_DIRECTIVES:
        if not isinstance(value, str) or isinstance(value, http_sf.Token):
            raise _WrongType(name)
        return value
    return str(value)


def parse_targeted(values: list[str]) -> dict[str, str | None] | None:
    """Every line of a targeted field, combined (RFC 9110 §5.3) and parsed as a Dictionary (RFC 9213 §2.1):
    directive name -> value as ``proxy.rfc.directives.Directives`` keeps it (``None`` for a bare directive).

    ``None`` when the field is absent, empty, fails to parse, or gives a known directive the wrong type.
    """
    if not values:
        return None
    try:
        parsed = http_sf.parse(", ".join(values).encode("latin-1"), tltype="dictionary")
    except (http_sf.StructuredFieldError, UnicodeEncodeError):
        return None
    if not isinstance(parsed, Mapping):
        return None
    items: dict[str, str | None] = {}
    try:
        for name, member in parsed.items():
            value = member[0] if isinstance(member, tuple) else member
            if value is False and name not in INTEGER_DIRECTIVES:
                continue  # ``?0``: the directive is off, as if absent
            items[name] = _directive_value(name, value)
    except _WrongType:
        return None
    return items or None
