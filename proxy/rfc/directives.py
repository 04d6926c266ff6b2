"""Cache-Control directives (RFC 9111 §5.2) and the targeted CDN-Cache-Control field (RFC 9213).

Parsing is forgiving in the ways the RFC asks a recipient to be: names are case-insensitive, a quoted value is accepted
where a token is expected (§5.2), a duplicate directive keeps its first occurrence (§4.2.1), and unknown directives are
kept but mean nothing to the rest of the rfc package (§5.2.3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from proxy.messages import Headers, split_list
from proxy.rfc.targeted import parse_targeted

# RFC 9111 §1.2.2: a delta-seconds that does not fit is taken as 2^31.
DELTA_MAX = 2_147_483_648

# RFC 9111 §4.2.4, §5.2.2.2, §5.2.2.8, §5.2.2.10: response directives that forbid serving the response stale
# (``s-maxage`` implies ``proxy-revalidate`` for a shared cache).
NO_STALE: tuple[str, ...] = ("must-revalidate", "proxy-revalidate", "s-maxage")

# RFC 9213 §2.2: the targeted fields this cache obeys, in priority order.
CDN_TARGETS: tuple[str, ...] = ("CDN-Cache-Control",)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        if "\\" in inner:
            out: list[str] = []
            escaped = False
            for ch in inner:
                if escaped:
                    out.append(ch)
                    escaped = False
                elif ch == "\\":
                    escaped = True
                else:
                    out.append(ch)
            return "".join(out)
        return inner
    return value


def parse_delta(value: str | None) -> int | None:
    """A delta-seconds value (RFC 9111 §1.2.2): ``None`` when it is not one; quoted digits are accepted."""
    if value is None:
        return None
    text = _unquote(value).strip()
    if not text.isdigit() or not text.isascii():
        return None
    n = int(text)
    return DELTA_MAX if n > DELTA_MAX else n


@dataclass(frozen=True)
class Directives:
    """Parsed directives: lower-cased name -> raw value (unquoted) or ``None`` for a directive without ``=``."""

    items: Mapping[str, str | None] = field(default_factory=lambda: MappingProxyType({}))
    # True when the directives came from a targeted field (RFC 9213): then Expires is ignored as well.
    targeted: bool = False

    def __contains__(self, name: str) -> bool:
        return name in self.items

    def has(self, name: str) -> bool:
        return name in self.items

    def value(self, name: str) -> str | None:
        return self.items.get(name)

    def delta(self, name: str) -> int | None:
        """Seconds of a delta-seconds directive: ``None`` when absent, ``0`` when present but malformed or negative.

        A malformed freshness value therefore makes a response stale, as RFC 9111 §4.2.1 prefers.
        """
        if name not in self.items:
            return None
        parsed = parse_delta(self.items[name])
        return 0 if parsed is None else parsed

    def unqualified(self, name: str) -> bool:
        """A bare ``private`` or ``no-cache`` (§5.2.2.4, §5.2.2.7): about the whole response, not some fields.

        An empty field list counts as bare, the safer reading.
        """
        return name in self.items and not self.field_names(name)

    def forbids_stale(self) -> bool:
        """RFC 9111 §4.2.4: ``must-revalidate``, ``proxy-revalidate`` or ``s-maxage`` is present."""
        return any(name in self.items for name in NO_STALE)

    def field_names(self, name: str) -> tuple[str, ...]:
        """The lower-cased field names of a qualified ``private="..."`` or ``no-cache="..."`` (§5.2.2.4, §5.2.2.7)."""
        raw = self.items.get(name)
        if not raw:
            return ()
        return tuple(n.strip().lower() for n in raw.split(",") if n.strip())

    def __bool__(self) -> bool:
        return bool(self.items)


EMPTY = Directives()
EMPTY_TARGETED = Directives(targeted=True)


# Parsed one-line fields by value: an origin sends the same few Cache-Control values again and again. Bounded in
# entries (emptied when full) and in the length of a value kept.
MEMO_LIMIT = 1024
MEMO_LENGTH = 256
_parsed: dict[str, Directives] = {}


def parse_directives(values: list[str], *, targeted: bool = False) -> Directives:
    """Parse every field line of a Cache-Control-like field into one ``Directives``."""
    if not values:
        return EMPTY_TARGETED if targeted else EMPTY
    if len(values) == 1 and not targeted:
        line = values[0]
        found = _parsed.get(line)
        if found is None:
            found = _parse(values, targeted=False)
            if len(line) <= MEMO_LENGTH:
                if len(_parsed) >= MEMO_LIMIT:
                    _parsed.clear()
                _parsed[line] = found
        return found
    return _parse(values, targeted=targeted)


def _parse(values: list[str], *, targeted: bool) -> Directives:
    items: dict[str, str | None] = {}
    for line in values:
        for member in split_list(line):
            name, sep, raw = member.partition("=")
            key = name.strip().lower()
            if not key or key in items:
                continue
            items[key] = _unquote(raw.strip()) if sep else None
    return Directives(MappingProxyType(items), targeted)


def request_directives(headers: Headers) -> Directives:
    """The request's directives; ``Pragma: no-cache`` counts only when there is no Cache-Control (RFC 9111 §5.4).

    Parsed once per ``Headers`` object: lookup, decision and storability all ask.
    """
    return headers.derived("request-directives", _request_directives)


def _request_directives(headers: Headers) -> Directives:
    values = headers.get_all("cache-control")
    if values:
        return parse_directives(values)
    if any(p.lower() == "no-cache" for p in headers.get_list("pragma")):
        return Directives(MappingProxyType({"no-cache": None}))
    return EMPTY


def response_directives(headers: Headers, targets: tuple[str, ...] = CDN_TARGETS) -> Directives:
    """The directives this cache obeys for a response (parsed once per ``Headers`` object: stored heads are reused).

    RFC 9213 §2.2: the first targeted field with a valid, non-empty value wins, and Cache-Control (and Expires) are then
    ignored; otherwise Cache-Control applies. A targeted field that is not a valid Structured Field Dictionary, or
    that gives a known directive the wrong type, counts as absent (RFC 9213 §2.1, ``proxy.rfc.targeted``).
    """
    if targets is CDN_TARGETS:
        return headers.derived("response-directives", _cdn_response_directives)
    return headers.derived(("response-directives", targets), lambda h: _response_directives(h, targets))


def _cdn_response_directives(headers: Headers) -> Directives:
    return _response_directives(headers, CDN_TARGETS)


def _response_directives(headers: Headers, targets: tuple[str, ...]) -> Directives:
    for target in targets:
        parsed = parse_targeted(headers.get_all(target))
        if parsed is not None:
            return Directives(MappingProxyType(parsed), targeted=True)
    return parse_directives(headers.get_all("cache-control"))
