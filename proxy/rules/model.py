"""The rules: the pydantic model of ``rules.yaml`` and the frozen runtime types requests are matched against.

The file model (``RulesFile`` and its parts) only validates and documents; ``proxy.rules.loader`` turns it
into a ``Rules`` of frozen ``Route`` values, each carrying the ``Policy`` the spec reads and the ``KeySpec``
the cache key reads. A route inherits every field it leaves unset from ``defaults``. Durations read ``250ms``,
``30s``, ``5m``, ``1h``, ``1d`` or plain seconds; sizes read ``512KiB``, ``10MiB``, ``1GiB`` or plain bytes.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator, model_validator
from pydantic_core import PydanticCustomError

from proxy.messages import UNKEYED_FIELDS
from proxy.rfc.policy import DEFAULT_POLICY, MIB, Policy, SetCookiePolicy
from proxy.rules.match import (
    GlobError,
    Matcher,
    build_matcher,
    glob_to_regex,
    host_name,
    ignores_case,
    normalize_path,
)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"(\d+)(B|KiB|MiB|GiB)")
_SIZE_UNITS = {"B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.6.2


def parse_duration(value: object) -> float:
    """Seconds from ``30s``-style text or a plain non-negative number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())):
        return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    raise PydanticCustomError("duration", "must be a duration like 30s, 5m, 1h, 1d, 250ms or plain seconds")


def parse_size(value: object) -> int:
    """Bytes from ``10MiB``-style text or a plain non-negative number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and (m := _SIZE.fullmatch(value.strip())):
        return int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    raise PydanticCustomError("size", "must be a size like 512KiB, 10MiB, 1GiB or plain bytes")


def _token(value: object) -> object:
    if isinstance(value, str) and not _TOKEN.fullmatch(value):
        raise PydanticCustomError("token", "must be a single HTTP token (letters, digits, - and _)")
    return value


_DURATION_SCHEMA = {
    "anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": f"^{_DURATION.pattern}$"}],
    "description": "seconds, or text like 250ms, 30s, 5m, 1h, 1d",
}
_SIZE_SCHEMA = {
    "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": f"^{_SIZE.pattern}$"}],
    "description": "bytes, or text like 512KiB, 10MiB, 1GiB",
}
Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]
Size = Annotated[int, BeforeValidator(parse_size), WithJsonSchema(_SIZE_SCHEMA)]


def _method(value: object) -> object:
    value = _token(value)
    if isinstance(value, str) and value != value.upper():
        raise PydanticCustomError("method", "methods are case-sensitive: write {m}", {"m": value.upper()})
    return value


_PASSABLE = {name.lower(): name for name in UNKEYED_FIELDS}


def _unkeyed(value: object) -> object:
    """One of the fields the proxy strips (``proxy.messages.UNKEYED_FIELDS``), in any letter case."""
    value = _token(value)
    if isinstance(value, str) and value.lower() not in _PASSABLE:
        hint = difflib.get_close_matches(value.lower(), list(_PASSABLE), n=1, cutoff=0.6)
        suggestion = f" (did you mean {_PASSABLE[hint[0]]!r}?)" if hint else ""
        context = {"suggestion": suggestion, "names": ", ".join(UNKEYED_FIELDS)}
        raise PydanticCustomError("pass_header", "not a field the proxy strips{suggestion}; one of: {names}", context)
    return value


Token = Annotated[str, BeforeValidator(_token)]
_PASS_SCHEMA = {"enum": [*UNKEYED_FIELDS, *_PASSABLE], "description": "case-insensitive"}
PassHeader = Annotated[str, BeforeValidator(_unkeyed), WithJsonSchema(_PASS_SCHEMA)]
Method = Annotated[str, BeforeValidator(_method)]
Status = Annotated[int, Field(strict=True, ge=100, le=599)]
Flag = Annotated[bool, Field(strict=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyFields(_Strict):
    """How the cache key is shaped. Unset fields inherit from ``defaults.key``."""

    ignore_params: list[str] = Field(default_factory=list, description="query parameters left out (globs: utm_*)")
    keep_params: list[str] | None = Field(default=None, description="if set, the only parameters kept (globs)")
    sort_params: Flag = Field(default=False, description="sort parameters by name: order stops mattering")
    headers: list[Token] = Field(default_factory=list, description="request headers whose values are part of the key")
    cookies: list[Token] = Field(default_factory=list, description="request cookies whose values are part of the key")


class CachingFields(_Strict):
    """What both ``defaults`` and a route may set."""

    ttl: Duration | None = Field(default=None, description="freshness if the origin gives none (override: always)")
    override: Flag = Field(default=False, description="apply ttl whatever the origin's Cache-Control/Expires say")
    statuses: list[Status] | None = Field(
        default=None, description="status codes storable under ttl (default: RFC 9110)"
    )
    stale_while_revalidate: Duration = Field(default=0.0, description="added to the origin's window (RFC 5861 §3)")
    stale_if_error: Duration = Field(default=0.0, description="added to the origin's window (RFC 5861 §4)")
    set_cookie: SetCookiePolicy = Field(default=SetCookiePolicy.BYPASS, description="bypass, strip or store")
    ignore_private: Flag = Field(default=False, description="DANGEROUS: store private/no-store/Set-Cookie responses")
    max_object_size: Size = Field(default=DEFAULT_POLICY.max_object_size, description="larger bodies stream through")
    key: KeyFields = Field(default_factory=KeyFields, description="cache key shaping")
    store: Literal["memory", "redis"] | None = Field(default=None, description="which store (default: the proxy's)")
    tags: list[str] = Field(default_factory=list, description="tags added to stored entries, for purge by tag")
    coalesce: Flag = Field(default=True, description="one upstream request per key at a time")
    coalesce_timeout: Duration = Field(default=5.0, description="how long coalesced requests wait for the leader")
    pass_headers: list[PassHeader] = Field(
        default_factory=list, description="stripped fields forwarded anyway, e.g. X-Original-URL; each joins the key"
    )


class DefaultsFields(CachingFields):
    """The ``defaults:`` block: every caching field, plus the heuristic and the keep window."""

    heuristic_fraction: float = Field(default=0.1, strict=True, ge=0, le=1, description="RFC 9111 §4.2.2 fraction")
    heuristic_max: Duration = Field(default=86_400.0, description="cap on heuristic freshness")
    keep: Duration = Field(default=3_600.0, description="how long stale entries are kept for revalidation")


class MatchFields(_Strict):
    """Which requests a route takes; an absent field matches anything."""

    path: str | None = Field(default=None, description="glob: * one segment, ** any number of segments")
    regex: str | None = Field(default=None, description="Python regex, full match against the path")
    methods: list[Method] | None = Field(default=None, description="request methods (GET also admits HEAD)")
    host: str | None = Field(default=None, description="exact host or glob like *.example.com")
    case_insensitive: Flag | None = Field(
        default=None, description="match the path ignoring letter case (default: true for bypass routes only)"
    )

    @field_validator("path")
    @classmethod
    def _glob_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                glob_to_regex(value)
            except GlobError as exc:
                raise PydanticCustomError("glob", "bad path glob: {error}", {"error": str(exc)}) from None
        return value

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise PydanticCustomError("regex", "bad regex: {error}", {"error": str(exc)}) from None
        return value

    @field_validator("host")
    @classmethod
    def _host_plain(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c in value for c in "/ \t?#@")):
            message = "must be a host name or glob like *.example.com, without scheme or path"
            raise PydanticCustomError("host", message)
        return value


class RouteFields(CachingFields):
    """One entry of ``routes:``; unset caching fields inherit from ``defaults``."""

    name: str = Field(min_length=1, description="shown in explain and the Cache-Route debug header")
    match: MatchFields = Field(default_factory=MatchFields, description="which requests this route takes")
    bypass: Flag = Field(default=False, description="never look up or store")


class RulesFile(_Strict):
    """The whole ``rules.yaml``."""

    @model_validator(mode="before")
    @classmethod
    def _null_is_empty(cls, data: object) -> object:
        """``routes:`` with every route commented out reads as null: treat it as absent."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data

    defaults: DefaultsFields = Field(default_factory=DefaultsFields, description="what every route starts from")
    routes: list[RouteFields] = Field(default_factory=list, description="ordered: the first matching route wins")


@dataclass(frozen=True)
class KeySpec:
    """The recipe for one route's cache key (``proxy.cache.keys``)."""

    ignore_params: tuple[str, ...] = ()
    keep_params: tuple[str, ...] | None = None
    sort_params: bool = False
    headers: tuple[str, ...] = ()
    cookies: tuple[str, ...] = ()
    shapes_query: bool = field(init=False, repr=False, compare=False)
    ignore_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    keep_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", tuple(h.lower() for h in self.headers))
        object.__setattr__(self, "ignore_re", _patterns(self.ignore_params))
        object.__setattr__(self, "keep_re", None if self.keep_params is None else _patterns(self.keep_params))
        shapes = bool(self.ignore_params) or self.keep_params is not None or self.sort_params
        object.__setattr__(self, "shapes_query", shapes)


def _patterns(globs: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex matching any of ``globs`` (fnmatch syntax, case-sensitive); ``None`` for no globs."""
    if not globs:
        return None
    return re.compile("|".join(fnmatch.translate(g) for g in globs))


@dataclass(frozen=True)
class Route:
    """One route, resolved against the defaults. ``line``: where it starts (0 for the defaults)."""

    name: str
    line: int = 0
    bypass: bool = False
    policy: Policy = DEFAULT_POLICY
    key: KeySpec = KeySpec()
    store: str | None = None
    tags: tuple[str, ...] = ()
    coalesce: bool = True
    coalesce_timeout: float = 5.0
    pass_headers: frozenset[str] = frozenset()  # lower-cased; ``proxy.messages.as_forwarded`` keeps them
    methods: frozenset[str] | None = None
    host: str | None = None
    path: str | None = None
    regex: str | None = None
    case_insensitive: bool | None = None  # None: a bypass route ignores case, others do not
    matcher: Matcher = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        matcher = build_matcher(self.path, self.regex, self.methods, self.host, ignore_case=self.ignores_case)
        object.__setattr__(self, "matcher", matcher)

    @property
    def ignores_case(self) -> bool:
        """Whether the path is matched case-insensitively (``proxy.rules.match``: the bypass default)."""
        return ignores_case(self.case_insensitive, self.bypass)


_MATCH_CACHE_MAX = 4096


class Rules:
    """An ordered list of routes and the defaults; ``match`` picks the first route that takes a request."""

    __slots__ = ("_cache", "default", "routes", "source")

    def __init__(self, routes: tuple[Route, ...], default: Route, source: str) -> None:
        self.routes = routes
        self.default = default
        self.source = source
        self._cache: dict[tuple[str, str, str], Route] = {}

    @classmethod
    def builtin(cls) -> Rules:
        """The defaults alone, for a proxy started without a rules file."""
        return cls((), Route(name="default"), "<builtin>")

    def match(self, method: str, host: str, path: str) -> Route:
        """The first route whose method, host and path match; the defaults when none does."""
        cache_key = (method, host, path)
        found = self._cache.get(cache_key)
        if found is None:
            found = self._find(method, host, path)
            if len(self._cache) >= _MATCH_CACHE_MAX:
                self._cache.clear()
            self._cache[cache_key] = found
        return found

    def _find(self, method: str, host: str, path: str) -> Route:
        if not self.routes:
            return self.default
        lhost = host.lower()
        name = host_name(lhost)
        npath = normalize_path(path)
        for route in self.routes:
            if route.matcher.matches(method, lhost, name, npath):
                return route
        return self.default

    def __repr__(self) -> str:
        return f"Rules(source={self.source!r}, routes={[r.name for r in self.routes]!r})"


def field_names() -> set[str]:
    """Every field name the file may use, for 'did you mean' hints."""
    names: set[str] = set()
    for model in (KeyFields, DefaultsFields, MatchFields, RouteFields, RulesFile):
        names.update(model.model_fields)
    return names
