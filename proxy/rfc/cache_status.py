"""The ``Cache-Status`` response field (RFC 9211): one list member per cache, serialised as a Structured Field
(RFC 8941 §4.1) by hand, since the syntax needed here is small: a token or string, then parameters.
"""

from __future__ import annotations

import math
import re
import string
from functools import lru_cache

from proxy.rfc.decisions import Fwd

# RFC 8941 §3.3.4: sf-token = ( ALPHA / "*" ) *( tchar / ":" / "/" ).
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_PRINTABLE = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")


def _sf_string(value: str) -> str:
    """RFC 8941 §4.1.6: a quoted string; characters outside printable ASCII become ``?``."""
    chars = (ch if ch in _PRINTABLE else "?" for ch in value)
    escaped = "".join("\\" + ch if ch in '"\\' else ch for ch in chars)
    return f'"{escaped}"'


@lru_cache(maxsize=256)  # the cache's name and the ``detail`` reasons: a handful of values
def _token_or_string(value: str) -> str:
    return value if _TOKEN.fullmatch(value) else _sf_string(value)


def cache_status(
    name: str = "cacheproxy",
    *,
    hit: bool = False,
    fwd: Fwd | None = None,
    fwd_status: int | None = None,
    ttl: float | None = None,
    stored: bool = False,
    collapsed: bool = False,
    key: str | None = None,
    detail: str | None = None,
) -> str:
    """One ``Cache-Status`` member (RFC 9211 §2), e.g. ``cacheproxy; fwd=stale; fwd-status=304; stored``.

    Parameters come in the order hit/fwd, fwd-status, ttl, stored, collapsed, key, detail. ``ttl`` is whole
    seconds, rounded down, negative when stale (§2.4); ``detail`` is a token when it can be one (§2.8).
    """
    parts = [_token_or_string(name)]
    if hit:
        parts.append("hit")
    if fwd is not None:
        parts.append(f"fwd={fwd.value}")
    if fwd_status is not None:
        parts.append(f"fwd-status={int(fwd_status)}")
    if ttl is not None:
        parts.append(f"ttl={math.floor(ttl)}")
    if stored:
        parts.append("stored")
    if collapsed:
        parts.append("collapsed")
    if key is not None:
        parts.append(f"key={_sf_string(key)}")
    if detail is not None:
        parts.append(f"detail={_token_or_string(detail)}")
    return "; ".join(parts)


def append_cache_status(existing: str | None, member: str) -> str:
    """RFC 9211 §2: add this cache's member after those of the caches nearer the origin."""
    if existing is None:
        return member
    upstream = existing.strip().rstrip(",").rstrip()
    return f"{upstream}, {member}" if upstream else member
