"""Secondary keys: which stored variant a request may be answered with (RFC 9111 §4.1).

A stored response keeps a snapshot of the request fields its ``Vary`` names, normalised once when stored; a
later request matches when its own normalised values are equal. Normalisation stays within what §4.1 allows:
field lines are combined (RFC 9110 §5.3), whitespace around list and parameter separators is dropped, and the
values of fields whose tokens are case-insensitive are lower-cased. ``Accept-Language`` and ``Accept-Encoding`` are
compared as the preference lists they are (RFC 9110 §12.4.2, §12.5.3, §12.5.4): a quality value of 1 is implied,
``q=0.50`` is ``q=0.5``, members are ordered by quality, and ``Accept-Encoding``, whose codings are a set, is also
ordered by coding (``x-gzip`` is ``gzip``, §8.4.1.3); ``Accept-Language`` keeps the client's order among ranges of
equal quality, which servers may read as a preference. ``Vary: *`` never matches.
"""

from __future__ import annotations

import re

from proxy.messages import RequestHead, ResponseHead, split_list

Snapshot = tuple[tuple[str, str | None], ...]

STAR = "*"
STAR_SNAPSHOT: Snapshot = ((STAR, None),)

# Fields whose whole value is case-insensitive: content-codings (RFC 9110 §8.4.1), charsets (§8.3.2), language
# ranges (RFC 4647 §2), each with an optional case-insensitive q parameter (RFC 9110 §12.4.2).
_CASE_INSENSITIVE = frozenset({"accept-encoding", "accept-language", "accept-charset"})

_PARAM_SPACE = re.compile(r"[ \t]*([;=])[ \t]*")
_SPACE_RUN = re.compile(r"[ \t]+")
# RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
# Fields compared as weighted preference lists; True when members of equal quality form a set (order is no
# preference).
_WEIGHTED = {"accept-encoding": True, "accept-language": False}
# RFC 9110 §8.4.1.2, §8.4.1.3: the legacy names a recipient treats as the coding itself.
_CODING_ALIASES = {"x-gzip": "gzip", "x-compress": "compress"}


def _weighted_member(name: str, member: str) -> tuple[str, int] | None:
    """``(value, quality in thousandths)`` for one normalised member, or ``None`` when it has other parameters or
    an invalid quality value (then the list is compared as plain text)."""
    value, *params = member.split(";")
    quality = 1000
    for param in params:
        key, _, raw = param.partition("=")
        if key != "q" or not _QVALUE.fullmatch(raw):
            return None
        quality = round(float(raw) * 1000)
    if name == "accept-encoding":
        value = _CODING_ALIASES.get(value, value)
    return value, quality


def _preference_list(name: str, members: list[str]) -> list[str]:
    """A weighted list in a canonical order: by quality, then (for sets) by value; ``q`` written only below 1."""
    weighted = [_weighted_member(name, m) for m in members]
    if any(w is None for w in weighted):
        return members
    pairs = [w for w in weighted if w is not None]
    as_set = _WEIGHTED[name]
    pairs.sort(key=lambda p: (-p[1], p[0]) if as_set else (-p[1], ""))
    return [v if q == 1000 else f"{v};q={q / 1000:g}" for v, q in pairs]


def vary_names(head: ResponseHead) -> tuple[str, ...]:
    """The lower-cased field names a response varies on, in order and without duplicates (RFC 9110 §12.5.5).

    Every ``Vary`` line counts; a ``*`` member anywhere makes the result ``("*",)``.
    """
    names: list[str] = []
    for member in head.headers.get_list("vary"):
        name = member.lower()
        if name == STAR:
            return (STAR,)
        if name not in names:
            names.append(name)
    return tuple(names)


def normalise(name: str, lines: list[str]) -> str:
    """A request field's value as compared for Vary (RFC 9111 §4.1): lines combined, separators tightened."""
    members = split_list(", ".join(lines))
    if name in _CASE_INSENSITIVE:
        members = [_PARAM_SPACE.sub(r"\1", _SPACE_RUN.sub(" ", m)).lower() for m in members]
    if name in _WEIGHTED:
        members = _preference_list(name, members)
    return ", ".join(members)


def vary_snapshot(names: tuple[str, ...], request: RequestHead) -> Snapshot:
    """Normalised values of the request fields in ``names`` (``None`` when absent); ``*`` never matches."""
    if STAR in names:
        return STAR_SNAPSHOT
    out: list[tuple[str, str | None]] = []
    for raw in names:
        name = raw.lower()
        lines = request.headers.get_all(name)
        out.append((name, normalise(name, lines) if lines else None))
    return tuple(out)


def vary_matches(snapshot: Snapshot, request: RequestHead) -> bool:
    """RFC 9111 §4.1: the request presents the same normalised values the stored snapshot holds; ``*`` never
    matches.

    A field absent from the stored request matches only when it is absent here too.
    """
    if any(name == STAR for name, _ in snapshot):
        return False
    return vary_snapshot(tuple(name for name, _ in snapshot), request) == snapshot
