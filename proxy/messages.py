"""The proxy's own message types: frozen request and response heads, and the stored entry.

Everything past the ASGI edge speaks these types, never Starlette's, aiohttp's or Redis's. Header names keep the case
they arrived with (the upstream sees what the client sent) and are compared case-insensitively. Header text is latin-1,
as on the wire (RFC 9110 §5.5), so every byte survives the round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, KeysView
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from typing import TypeVar

HeaderPairs = tuple[tuple[str, str], ...]
T = TypeVar("T")


class Headers:
    """An immutable, ordered, case-insensitive, multi-valued header list.

    Names are lower-cased once per object (``lowered``), when first needed, or never when whoever built it knew them
    already: ASGI servers give lower-case names (``from_raw``) and the upstream client lower-cases a response head in
    one call (``with_lowered``). Lookups go through an index by lower-cased name, built on first use; values derived
    from the fields (parsed directives, say) can be kept with ``derived``. All of it lives as long as the object,
    which for a stored response is as long as the entry: the hit path parses nothing twice.
    """

    __slots__ = ("_derived", "_index", "_items", "_lowered")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: HeaderPairs = tuple(items)
        self._lowered: tuple[str, ...] | None = None
        self._index: dict[str, list[str]] | None = None
        self._derived: dict[object, object] | None = None

    @classmethod
    def with_lowered(cls, items: HeaderPairs, lowered: tuple[str, ...]) -> Headers:
        """``Headers(items)`` when the caller has the lower-cased names already (``lowered[i]`` is ``items[i]``'s)."""
        headers = cls.__new__(cls)
        headers._items = items
        headers._lowered = lowered
        headers._index = None
        headers._derived = None
        return headers

    @classmethod
    def from_raw(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        """Build from ASGI-style byte pairs (whose names ASGI servers give lower-cased)."""
        items: list[tuple[str, str]] = []
        index: dict[str, list[str]] = {}
        for k, v in raw:
            name = k.decode("latin-1")
            value = v.decode("latin-1")
            items.append((name, value))
            found = index.get(name)
            if found is None:
                index[name] = [value]
            else:
                found.append(value)
        headers = cls(items)
        names = "\x00".join(index)
        if names == names.lower():  # as ASGI asks: the names are their own lower-cased forms
            headers._lowered = tuple([name for name, _ in headers._items])
            headers._index = index
        return headers

    @property
    def lowered(self) -> tuple[str, ...]:
        """The lower-cased names, in order (``lowered[i]`` belongs to the i-th field line)."""
        lowered = self._lowered
        if lowered is None:
            names = [k for k, _ in self._items]
            lowered = tuple("\x00".join(names).lower().split("\x00"))  # one call for the whole head
            if len(lowered) != len(names):  # a NUL inside a name (never from a parser): one at a time
                lowered = tuple([name.lower() for name in names])
            self._lowered = lowered
        return lowered

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for name, (_, value) in zip(self.lowered, self._items, strict=True):
                found = index.get(name)
                if found is None:
                    index[name] = [value]
                else:
                    found.append(value)
            self._index = index
        return index

    def derived(self, key: object, compute: Callable[[Headers], T]) -> T:
        """``compute(self)``, computed once per object and key (the fields never change)."""
        memo = self._derived
        if memo is None:
            memo = self._derived = {}
        try:
            return memo[key]  # type: ignore[return-value]
        except KeyError:
            value = memo[key] = compute(self)
            return value

    def raw(self) -> list[tuple[bytes, bytes]]:
        """ASGI-style byte pairs, names lower-cased as ASGI requires."""
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, (_, v) in zip(self.lowered, self._items, strict=True)]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        found = (self._index or self._lookup()).get(name.lower())
        return found[0] if found else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order (each field line is one element; no comma splitting)."""
        found = (self._index or self._lookup()).get(name.lower())
        return list(found) if found else []

    def get_list(self, name: str) -> list[str]:
        """Every comma-separated list member of ``name``, stripped, empty members dropped (RFC 9110 §5.6.1).

        Quoted strings are not split: ``a, "b, c"`` gives ``['a', '"b, c"']``.
        """
        found = (self._index or self._lookup()).get(name.lower())
        if not found:
            return []
        out: list[str] = []
        for value in found:
            out.extend(split_list(value))
        return out

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name.lower() in (self._index or self._lookup())

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"

    def items(self) -> HeaderPairs:
        return self._items

    def names(self) -> KeysView[str]:
        """The lower-cased names present (a live view of the index: no copy)."""
        return self._lookup().keys()

    def without(self, *names: str) -> Headers:
        """A copy without any field named in ``names`` (case-insensitive)."""
        return self.without_all({n.lower() for n in names})

    def without_all(self, lowered: AbstractSet[str]) -> Headers:
        """A copy without any field whose lower-cased name is in ``lowered``; ``self`` when none is present (the
        common case costs one set check: callers keep their sets as constants)."""
        if lowered.isdisjoint(self._index or self._lookup()):
            return self
        return self._kept([name not in lowered for name in self.lowered])

    def only(self, lowered: AbstractSet[str]) -> Headers:
        """A copy with only the fields whose lower-cased name is in ``lowered``, in their order."""
        return self._kept([name in lowered for name in self.lowered])

    def _kept(self, keep: list[bool]) -> Headers:
        pairs = zip(self.lowered, self._items, keep, strict=True)
        kept = [(name, item) for name, item, wanted in pairs if wanted]
        return Headers.with_lowered(tuple([item for _, item in kept]), tuple([name for name, _ in kept]))

    def with_(self, name: str, value: str) -> Headers:
        """A copy where ``name`` has exactly one value, placed where the first old one was (or at the end)."""
        lname = name.lower()
        out: list[tuple[str, str]] = []
        lowered: list[str] = []
        placed = False
        for low, item in zip(self.lowered, self._items, strict=True):
            if low == lname:
                if not placed:
                    out.append((name, value))
                    lowered.append(lname)
                    placed = True
                continue
            out.append(item)
            lowered.append(low)
        if not placed:
            out.append((name, value))
            lowered.append(lname)
        return Headers.with_lowered(tuple(out), tuple(lowered))

    def adding(self, name: str, value: str) -> Headers:
        """A copy with one more field line at the end."""
        return Headers.with_lowered((*self._items, (name, value)), (*self.lowered, name.lower()))

    def merged(self, updates: Headers) -> Headers:
        """A copy where every field named in ``updates`` is replaced by all of its values there."""
        kept = self.without_all(updates.names())
        return Headers.with_lowered((*kept.items(), *updates.items()), (*kept.lowered, *updates.lowered))


def split_list(value: str) -> list[str]:
    """Split one field value on commas outside quoted strings; strip members, drop empty ones."""
    if '"' not in value:
        return [p.strip() for p in value.split(",") if p.strip()]
    out: list[str] = []
    buf: list[str] = []
    quoted = False
    escaped = False
    for ch in value:
        if escaped:
            buf.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            buf.append(ch)
            escaped = True
        elif ch == '"':
            buf.append(ch)
            quoted = not quoted
        elif ch == "," and not quoted:
            member = "".join(buf).strip()
            if member:
                out.append(member)
            buf = []
        else:
            buf.append(ch)
    member = "".join(buf).strip()
    if member:
        out.append(member)
    return out


VIA = "1.1 cacheproxy"

# RFC 9110 §9.2.1 and §9.2.2: the methods this proxy treats by their semantics; each set is spelled here only.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})  # invalidate on success (RFC 9111 §4.4)
CACHEABLE_METHODS = frozenset({"GET", "HEAD"})  # what this cache stores and serves (a HEAD miss fetches the GET)

# RFC 9110 §7.6.1: connection-specific fields, never stored or forwarded (plus those named in ``Connection``).
HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "trailer",
        "proxy-authenticate",
    }
)


# Request fields that common origins and frameworks honour (to rewrite the path or method, or to pick the scheme or
# host of absolute links) but that a cache key does not hold: an attacker who sends one gets a response stored under a
# key that clean clients share. Stripped unless a route passes them (``pass_headers``), and a passed one joins the key.
# ``Forwarded`` (RFC 7239) is stripped from every peer for now: the proxy sends its own X-Forwarded-* fields.
UNKEYED_FIELDS: tuple[str, ...] = (
    "X-Original-URL",
    "X-Rewrite-URL",
    "X-HTTP-Method-Override",
    "X-Forwarded-Scheme",
    "X-Host",
    "Forwarded",
)
_UNKEYED = frozenset(name.lower() for name in UNKEYED_FIELDS)


def merged_via(received: list[str]) -> str:
    """RFC 9110 §7.6.3: the ``Via`` values received, in order, with this proxy's own member appended."""
    return ", ".join([*received, VIA])


# What an entry occupies beyond its body (``Entry.size``), measured with tracemalloc on CPython 3.11.
FIELD_OVERHEAD = 440
ENTRY_OVERHEAD = 2048
# Fields the cache recomputes (Age) or keeps to itself (the origin's purge tags).
HIDDEN_FIELDS = frozenset({"age", "surrogate-key", "cache-tag"})
_SPECIAL_SERVED = HIDDEN_FIELDS | {"via", "content-length"}  # the names ``serving_headers`` does more than copy
_VIA_ALONE = VIA.encode("latin-1")


def serving_headers(headers: Headers, body_length: int | None) -> list[tuple[bytes, bytes]]:
    """Response fields as ASGI pairs for a client: hidden fields dropped, ``Via`` appended, ``Content-Length`` set."""
    out: list[tuple[bytes, bytes]] = []
    via: list[str] = []
    has_length = False
    for lname, (_, value) in zip(headers.lowered, headers.items(), strict=True):
        if lname in _SPECIAL_SERVED:
            if lname in HIDDEN_FIELDS:
                continue
            if lname == "via":
                via.append(value)
                continue
            has_length = True  # content-length
        out.append((lname.encode("latin-1"), value.encode("latin-1")))
    if body_length is not None and not has_length:
        out.append((b"content-length", str(body_length).encode()))
    out.append((b"via", merged_via(via).encode("latin-1") if via else _VIA_ALONE))
    return out


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What the proxy knows about a request before its body.

    ``path`` is the raw path as the client sent it (percent-encoding kept byte for byte, latin-1 decoded);
    ``query`` is the raw query string without ``?``; ``host`` is the Host the client asked for. All three come from one
    parse at the edge (``proxy.head``), which also checked the target form and that there is exactly one Host.
    ``client`` is the client's address as the trusted forwarding chain gives it (``proxy.trust``), ``peer`` the
    address of the socket, and ``forwarded_for`` the chain a trusted peer forwarded (empty from an untrusted one).
    """

    method: str
    scheme: str
    host: str
    path: str
    query: str = ""
    headers: Headers = field(default_factory=Headers)
    client: str | None = None
    peer: str | None = None
    forwarded_for: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        """The request target in origin-form: path plus ``?query`` when there is one."""
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def url(self) -> str:
        """The effective request URI (RFC 9110 §7.1)."""
        return f"{self.scheme}://{self.host}{self.target}"


def as_forwarded(request: RequestHead, passed: frozenset[str] = frozenset()) -> RequestHead:
    """``request`` with only the fields the upstream will see: the one derivation every later step reads.

    Which request fields the upstream may see is decided once, here, before the cache layer reads the request
    (``proxy.cache.service`` calls it after the route match; ``proxy.forwarding`` builds the upstream fields from its
    result): the cache key, the Vary snapshot of a stored response, reuse decisions and the upstream request all read
    the same fields, so a field the upstream never saw cannot select or key a stored response.

    Removed: hop-by-hop fields and every field the client names in ``Connection`` (RFC 9110 §7.6.1), and the
    unkeyed fields of ``UNKEYED_FIELDS`` except those in ``passed`` (lower-cased names, a route's ``pass_headers``).
    The same object comes back when nothing is removed (the common case costs one set check).
    """
    fields = request.headers
    drop = _not_forwarded(passed)
    if "connection" in fields:
        drop = drop.union([name.lower() for name in fields.get_list("connection")])
    kept = fields.without_all(drop)
    return request if kept is fields else replace(request, headers=kept)


@lru_cache(maxsize=256)  # one set per route's ``pass_headers`` (a bounded, configured set of values)
def _not_forwarded(passed: frozenset[str]) -> frozenset[str]:
    return HOP_BY_HOP | (_UNKEYED - passed)


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    headers: Headers = field(default_factory=Headers)


@dataclass(frozen=True)
class Entry:
    """One stored response: one variant of one primary key.

    ``initial_age`` is the corrected initial age of RFC 9111 §4.2.3, so the current age is
    ``initial_age + (now - response_time)``. ``freshness``, ``stale_while_revalidate`` and ``stale_if_error`` are
    computed once, when the entry is stored, from the response and the route that stored it, so that a later rules
    reload does not change what an entry was given.
    ``vary`` holds the normalised values of the request fields named by the response's ``Vary`` (``None`` when the field
    was absent); ``vary`` of ``(("*", None),)`` never matches. ``authorized`` records that the storing request carried
    ``Authorization``. ``forced``: a rule's ``override`` gave the freshness, so the origin's ``no-cache`` and
    ``must-revalidate`` do not apply to reuse either.
    """

    key: str
    url: str
    head: ResponseHead
    body: bytes
    request_time: float
    response_time: float
    freshness: float
    initial_age: float = 0.0
    stale_while_revalidate: float = 0.0
    stale_if_error: float = 0.0
    vary: tuple[tuple[str, str | None], ...] = ()
    tags: tuple[str, ...] = ()
    authorized: bool = False
    forced: bool = False

    @cached_property
    def variant(self) -> str:
        """Identifies the variant within its key: entries with the same ``variant`` replace each other."""
        return "\x1f".join(k if v is None else f"{k}={v}" for k, v in self.vary)

    @cached_property
    def wire_headers(self) -> list[tuple[bytes, bytes]]:
        """The stored head as ASGI pairs for serving, computed once per entry object (the hit path reuses it).

        Drops what a client must not see or what the cache recomputes (``Age``, the tag fields), makes sure there is a
        ``Content-Length`` and appends this proxy to ``Via`` (RFC 9110 §7.6.3).
        """
        return serving_headers(self.head.headers, len(self.body))

    @property
    def size(self) -> int:
        """Bytes charged against a store's budget: what the entry really occupies in a Python process.

        Measured with tracemalloc (issue 9 §3: memory bounded by the budget for small objects too): each header
        line is held as text and again as prepared bytes (``wire_headers``) with their tuples and index slots,
        about 440 bytes plus twice its length; the entry, its head, its indexes in the store and its derived values
        about 2 KiB. Counting only the body and the header text undercounted a 16-byte object nine times.
        """
        fields = sum(2 * (len(k) + len(v)) + FIELD_OVERHEAD for k, v in self.head.headers)
        return len(self.body) + fields + 2 * len(self.url) + ENTRY_OVERHEAD
