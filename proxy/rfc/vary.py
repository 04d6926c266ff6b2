"""Secondary keys: which stored variant a request may be answered with (RFC 9111 §4.1).

A stored response keeps a snapshot of the request fields its ``Vary`` names, normalised once when stored; a
later request matches when its own normalised values are equal. Normalisation stays within what §4.1 allows:
field lines are combined (RFC 9110 §5.3), whitespace around list and parameter separators is dropped, and the
values of fields whose tokens are case-insensitive are lower-cased. ``Vary: *`` never matches.
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
