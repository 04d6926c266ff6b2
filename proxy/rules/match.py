"""Matching a request to a route: path globs and regexes, host globs, method sets.

Globs are compiled once, when the rules load, into regexes matched with ``fullmatch``; ``Rules.match`` only
walks the compiled matchers. The cache key uses the path exactly as received; routes are matched on a normalised
path, so that no spelling the origin reads as the same path can slip a request past a rule (a ``/account/**``
bypass into a caching route). ``normalize_path`` applies, in this order:

1. percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2, ``/%61ccount`` is ``/account``), and so
   are ``%2F``, ``%5C`` and ``%3B``: an encoded slash, backslash or semicolon counts as one (many origins decode
   before routing), other escapes keep their bytes with upper-case hex;
2. a backslash counts as a slash (IIS and some frameworks read it so);
3. ``;`` parameters are stripped from every segment (``/account;x/y`` is ``/account/y``: servlet containers and
   other origins drop them before routing);
4. repeated slashes are merged (``//account`` is ``/account``);
5. dot segments are removed (RFC 3986 §5.2.4, after 3 so that ``/x/..;/account`` is ``/account``).

Letter case: paths are case-sensitive (RFC 3986 §6.2.2.1), except that a bypass route matches case-insensitively
by default (``case_insensitive`` in ``match:`` sets it either way per route): an origin that ignores case must not
get ``/ACCOUNT/x`` cached, and a bypass that takes too much only costs cache hits.

Path globs: ``*`` matches within one segment, ``?`` one character of a segment, ``**`` (a whole segment) any
number of segments, including none: ``/api/**`` matches ``/api``, ``/api/`` and ``/api/a/b``. Host globs
follow nginx ``server_name``: ``*`` matches any characters, dots included; a pattern without a port ignores
the request's port.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class MatchFields(Protocol):
    """What a route matches on, as the rules model declares it (``proxy.rules.model.MatchFields``): the model
    imports the matcher, never the other way round."""

    @property
    def path(self) -> str | None: ...
    @property
    def regex(self) -> str | None: ...
    @property
    def methods(self) -> Sequence[str] | None: ...
    @property
    def host(self) -> str | None: ...


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DELIMITERS = frozenset("/\\;")  # %2F, %5C and %3B are decoded for matching (rule 1)
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_PARAMS = re.compile(r";[^/]*")
_SLASHES = re.compile(r"//+")


class GlobError(ValueError):
    """A path glob that cannot be compiled."""


def glob_to_regex(glob: str) -> str:
    """The regex source (for ``fullmatch``) of a path glob; raises ``GlobError`` on a malformed glob."""
    if not glob.startswith("/"):
        raise GlobError("must start with /")
    segments = glob.split("/")[1:]
    out: list[str] = []
    for i, segment in enumerate(segments):
        if segment == "**":
            out.append(r"(?:/.*)?" if i == len(segments) - 1 else r"(?:/[^/]*)*")
        elif "**" in segment:
            raise GlobError("** must be a whole segment, like /api/**")
        else:
            out.append("/" + _segment_regex(segment))
    return "".join(out)


def _segment_regex(segment: str) -> str:
    parts: list[str] = []
    for ch in segment:
        if ch == "*":
            parts.append("[^/]*")
        elif ch == "?":
            parts.append("[^/]")
        else:
            parts.append(re.escape(ch))
    return "".join(parts)


def compile_glob(glob: str) -> re.Pattern[str]:
    return re.compile(glob_to_regex(glob))


def compile_host(pattern: str) -> re.Pattern[str]:
    """A host glob as a regex over the lower-cased host; ``*`` matches any characters (like nginx)."""
    return re.compile(".*".join(re.escape(part) for part in pattern.lower().split("*")))


def literal_prefix(glob: str) -> str | None:
    """For a glob ``P/**`` with no wildcard in ``P``, ``P`` (``""`` for ``/**``); otherwise ``None``."""
    if not glob.endswith("/**"):
        return None
    prefix = glob[: -len("/**")]
    return None if any(c in prefix for c in "*?") else prefix


def host_name(host: str) -> str:
    """The lower-cased host without its port (``[::1]:8080`` gives ``[::1]``)."""
    host = host.lower()
    if host.startswith("["):
        end = host.find("]")
        return host if end < 0 else host[: end + 1]
    colon = host.rfind(":")
    return host if colon < 0 else host[:colon]


def normalize_path(path: str) -> str:
    """The path routes are matched on (rules 1-5 of the module docstring); the key keeps the raw path."""
    if "%" in path:
        path = _PCT.sub(_decode_for_matching, path)
    if "\\" in path:
        path = path.replace("\\", "/")
    if ";" in path:
        path = _PARAMS.sub("", path)
    if "//" in path:
        path = _SLASHES.sub("/", path)
    if "/." in path:
        path = remove_dot_segments(path)
    return path


def _decode_for_matching(m: re.Match[str]) -> str:
    ch = chr(int(m.group(1), 16))
    return ch if ch in _UNRESERVED or ch in _DELIMITERS else "%" + m.group(1).upper()


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute path."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def ignores_case(case_insensitive: bool | None, bypass: bool) -> bool:
    """Whether a route matches paths case-insensitively: as set, else only when it bypasses the cache."""
    return bypass if case_insensitive is None else case_insensitive


@dataclass(frozen=True, slots=True)
class Matcher:
    """The compiled ``match:`` of one route. ``None`` parts match anything."""

    path: re.Pattern[str] | None = None
    host: re.Pattern[str] | None = None
    host_has_port: bool = False
    methods: frozenset[str] | None = None

    def matches(self, method: str, host: str, name: str, path: str) -> bool:
        """``host`` lower-cased with its port, ``name`` without it; ``path`` from ``normalize_path``."""
        if self.methods is not None and method not in self.methods:
            return False
        if self.host is not None and self.host.fullmatch(host if self.host_has_port else name) is None:
            return False
        return self.path is None or self.path.fullmatch(path) is not None


def build_matcher(
    path: str | None,
    regex: str | None,
    methods: frozenset[str] | None,
    host: str | None,
    *,
    ignore_case: bool = False,
) -> Matcher:
    """Compile one route's match; a methods set naming GET also admits HEAD (they share a cache key)."""
    compiled: re.Pattern[str] | None = None
    flags = re.IGNORECASE if ignore_case else 0
    if regex is not None:
        compiled = re.compile(regex, flags)
    elif path is not None:
        compiled = re.compile(glob_to_regex(path), flags)
    if methods is not None and "GET" in methods:
        methods = methods | {"HEAD"}
    return Matcher(
        path=compiled,
        host=None if host is None else compile_host(host),
        host_has_port=host is not None and ":" in host.lstrip("[").split("]")[-1],
        methods=methods,
    )


def covers(a: MatchFields, b: MatchFields, *, a_ignores_case: bool = False, b_ignores_case: bool = False) -> bool:
    """Whether every request ``b`` matches is matched by ``a`` (conservative: catch-alls and prefixes only).

    A case-sensitive ``a`` covers a case-insensitive ``b`` only when ``a`` takes every path.
    """
    if a.host is not None and not _host_covers(a.host, b.host):
        return False
    if a.methods is not None and (b.methods is None or not _methods(b.methods) <= _methods(a.methods)):
        return False
    if b_ignores_case and not a_ignores_case and not _takes_every_path(a):
        return False
    if a.regex is not None:
        return a.regex == b.regex
    if a.path is None:
        return True
    prefix = literal_prefix(a.path)
    if prefix == "":
        return True
    if b.path is None:
        return False
    return a.path == b.path or (prefix is not None and (b.path == prefix or b.path.startswith(prefix + "/")))


def _takes_every_path(fields: MatchFields) -> bool:
    return fields.regex is None and (fields.path is None or literal_prefix(fields.path) == "")


def _host_covers(pattern: str, host: str | None) -> bool:
    if host is None:
        return False
    if pattern.lower() == host.lower():
        return True
    return "*" not in host and compile_host(pattern).fullmatch(host.lower()) is not None


def _methods(methods: Sequence[str]) -> set[str]:
    return set(methods) | ({"HEAD"} if "GET" in methods else set())
