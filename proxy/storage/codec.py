"""The versioned binary form of an ``Entry``, for stores outside the process (Redis).

Layout: one version byte, then a msgpack array with the fields in a fixed order (see
``encode_entry``). The body stays msgpack ``bin``; header text is msgpack ``str`` (UTF-8 of the
latin-1-decoded text, so every wire byte survives, RFC 9110 §5.5). A reader that meets a version it
does not know, or a value that is truncated, corrupt or of the wrong shape, gets ``None`` and treats
it as a miss: a bad cache value must never fail a request.
"""

from __future__ import annotations

from typing import Any

import msgpack

from proxy.messages import Entry, Headers, ResponseHead

VERSION = 1
_FIELDS = 15


class _Malformed(Exception):
    """A decoded value of the wrong shape; never leaves this module."""


def encode_entry(entry: Entry) -> bytes:
    """Serialise ``entry`` as ``VERSION`` followed by a msgpack array of its fields."""
    fields = [
        entry.key,
        entry.url,
        entry.head.status,
        [[name, value] for name, value in entry.head.headers],
        entry.body,
        entry.request_time,
        entry.response_time,
        entry.freshness,
        entry.initial_age,
        entry.stale_while_revalidate,
        entry.stale_if_error,
        [[name, value] for name, value in entry.vary],
        list(entry.tags),
        entry.authorized,
        entry.forced,
    ]
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return bytes((VERSION,)) + packed


def decode_entry(data: bytes) -> Entry | None:
    """The entry in ``data``; ``None`` for an unknown version or a corrupt, truncated or ill-typed value."""
    if len(data) < 2 or data[0] != VERSION:
        return None
    try:
        fields = msgpack.unpackb(memoryview(data)[1:], raw=False, use_list=True, strict_map_key=True)
        return _entry_from_fields(fields)
    except Exception:
        # The decoder's failures on foreign bytes are many and version-dependent: each is a miss.
        return None


def _entry_from_fields(fields: Any) -> Entry:
    if not isinstance(fields, list) or len(fields) != _FIELDS:
        raise _Malformed("not an entry array")
    key, url, status, headers, body, req_time, resp_time, fresh, age, swr, sie, vary, tags, auth, forced = fields
    if not isinstance(status, int) or isinstance(status, bool) or not isinstance(body, bytes):
        raise _Malformed("status or body")
    if not isinstance(auth, bool) or not isinstance(forced, bool):
        raise _Malformed("authorized or forced")
    return Entry(
        key=_text(key),
        url=_text(url),
        head=ResponseHead(status, Headers(_pair(item) for item in _items(headers))),
        body=body,
        request_time=_number(req_time),
        response_time=_number(resp_time),
        freshness=_number(fresh),
        initial_age=_number(age),
        stale_while_revalidate=_number(swr),
        stale_if_error=_number(sie),
        vary=tuple(_vary_pair(item) for item in _items(vary)),
        tags=tuple(_text(tag) for tag in _items(tags)),
        authorized=auth,
        forced=forced,
    )


def _items(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _Malformed("expected an array")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Malformed("expected a string")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Malformed("expected a number")
    return float(value)


def _pair(value: Any) -> tuple[str, str]:
    items = _items(value)
    if len(items) != 2:
        raise _Malformed("expected a pair")
    return _text(items[0]), _text(items[1])


def _vary_pair(value: Any) -> tuple[str, str | None]:
    items = _items(value)
    if len(items) != 2:
        raise _Malformed("expected a pair")
    return _text(items[0]), None if items[1] is None else _text(items[1])
