"""The in-process store: entries bounded in bytes, with a time-to-live each and a choice of eviction policy.

Theory of operation: one dict keyed by ``(key, variant)`` holds the slots (entry, expiry, size). The eviction
policy (``proxy.storage.eviction``: S3-FIFO by default, LRU, LFU, FIFO, SIEVE) tracks the same idents in its own
order and names the victim; a hit tells it ``touch``. Three indexes sit beside the slots: key -> its variants (in
the order they were stored, to drop the oldest when a key holds too many), tag -> its ``(key, variant)`` pairs, for
purges by tag, URL key -> the suffixed keys of its group (``storage.base.GROUP_SEP``), so that deleting a URL
reaches every key shape, and every ``(URL path, key, variant)`` in order (``proxy.storage.ordered``), so that a purge
by prefix walks only the entries it removes. Every removal goes through ``_remove`` so the byte count, the policy and
the indexes never drift. Every operation is O(1) but ``put`` and ``delete_prefix``, which add O(log n) for the
ordered paths.

Each entry is charged ``Entry.size`` (body, headers and a fixed overhead). An entry larger than the
whole budget is not stored, as in cachetools: storing is best-effort. Expired entries are dropped
lazily, when a ``get`` meets them or when eviction reaches them; they are never counted as evictions,
nor by the delete methods' counts. Evictions are counted per queue of the policy (``eviction_stats``).

Invalidations are remembered for a while (``proxy.storage.marks``): ``store`` with ``since`` refuses an entry
from a fetch that began before its key was last deleted or purged (RFC 9111 §4.4), as the Redis store does.

The store lives inside one event loop and never awaits, so it takes no locks. Bodies are never copied.
Whoever keeps something derived from an entry (the edge's hit path) registers with ``watch_removals`` and is told the
key of every entry removed, so nothing outside the store outlives the store's copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.messages import Entry
from proxy.storage.base import PutResult, StoreStats, url_key_of
from proxy.storage.eviction import DEFAULT_POLICY, EvictionPolicy, make_policy
from proxy.storage.marks import InvalidationMarks
from proxy.storage.ordered import OrderedItems
from proxy.storage.urls import url_path

Ident = tuple[str, str]  # (primary key, Entry.variant)


class _Slot:
    __slots__ = ("entry", "expires", "path", "size")

    def __init__(self, entry: Entry, expires: float, size: int, path: str) -> None:
        self.entry = entry
        self.expires = expires
        self.size = size
        self.path = path  # url_path(entry.url): what purge by prefix compares, computed once


@dataclass(frozen=True)
class EvictionStats:
    """What the policy did: live evictions per queue it evicted from, and re-requests of recently evicted keys."""

    policy: str
    evictions: dict[str, int]
    ghost_hits: int


class MemoryStorage:
    """Byte-bounded entries, per process, evicted by ``eviction`` (the default store)."""

    name = "memory"

    def __init__(
        self,
        budget: int = 256 * 1024 * 1024,
        *,
        clock: Clock = SYSTEM_CLOCK,
        max_variants: int = 16,
        eviction: str = DEFAULT_POLICY,
    ) -> None:
        if budget < 0:
            raise ValueError(f"memory budget must not be negative, got {budget}")
        if max_variants < 1:
            raise ValueError(f"max_variants must be at least 1, got {max_variants}")
        self._budget = budget
        self._clock = clock
        self._max_variants = max_variants
        self._policy: EvictionPolicy[Ident] = make_policy(eviction, budget)
        self._evicted: dict[str, int] = dict.fromkeys(self._policy.queues, 0)
        self._slots: dict[Ident, _Slot] = {}
        self._variants: dict[str, dict[str, None]] = {}  # an insertion-ordered set per key
        self._tags: dict[str, set[Ident]] = {}
        self._groups: dict[str, set[str]] = {}  # URL key -> its suffixed keys that hold entries
        self._paths = OrderedItems()  # (URL path, key, variant) of every slot, in order
        self._marks = InvalidationMarks()
        self._bytes = 0
        self._evictions = 0
        self._removal_listeners: list[Callable[[str], None]] = []

    def watch_removals(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(key)`` whenever an entry of ``key`` leaves the store (evicted, expired, purged, replaced)."""
        self._removal_listeners.append(listener)

    async def get(self, key: str) -> list[Entry]:
        """Every live variant of ``key``, each touched in the policy; expired ones are dropped here."""
        return self.get_now(key)

    def get_now(self, key: str) -> list[Entry]:
        """``get`` without a coroutine, for the hit path (the memory store never waits)."""
        variants = self._variants.get(key)
        if not variants:
            return []
        now = self._clock.monotonic()
        found: list[Entry] = []
        for variant in list(variants):
            ident = (key, variant)
            slot = self._slots[ident]
            if slot.expires <= now:
                self._remove(ident)
                continue
            self._policy.touch(ident)
            found.append(slot.entry)
        return found

    async def put(self, key: str, entry: Entry, ttl: float) -> None:
        """Store ``entry`` for ``ttl`` seconds, replacing its variant; then evict down to the budget.

        An entry that cannot be stored (larger than the budget, ``ttl`` not positive) still removes the
        variant it would have replaced: that one is superseded by a newer response.
        """
        ident = (key, entry.variant)
        if ident in self._slots:
            self._remove(ident)
        size = entry.size
        if size > self._budget or ttl <= 0:
            return
        path = url_path(entry.url)
        self._slots[ident] = _Slot(entry, self._clock.monotonic() + ttl, size, path)
        self._paths.add((path, key, entry.variant))
        self._policy.insert(ident, size)
        self._bytes += size
        variants = self._variants.setdefault(key, {})
        if not variants and (group := url_key_of(key)) is not None:
            self._groups.setdefault(group, set()).add(key)
        variants[entry.variant] = None
        for tag in entry.tags:
            self._tags.setdefault(tag, set()).add(ident)
        if len(variants) > self._max_variants:
            self._remove((key, next(iter(variants))))
        self._evict()

    async def store(self, key: str, entry: Entry, ttl: float, *, since: float | None = None) -> PutResult:
        """``put``, refused when ``key`` was invalidated at or after ``since`` (when the fetch began)."""
        if since is not None and self._marks.refuses(key, since):
            return PutResult.INVALIDATED
        await self.put(key, entry, ttl)
        return PutResult.STORED  # a put too large for the budget is dropped silently, as ``put`` says

    async def delete(self, key: str) -> int:
        """Remove every variant of ``key`` (and of its group's keys, for a URL key); return how many live entries
        went."""
        self._marks.mark(key, self._clock.now())
        keys = [key, *self._groups.get(key, ())]
        return self._remove_all([(k, variant) for k in keys for variant in self._variants.get(k, ())])

    async def delete_tag(self, tag: str) -> int:
        """Remove every entry carrying ``tag``; return how many live entries went."""
        idents = self._tags.get(tag)
        if not idents:
            return 0
        return self._remove_all(list(idents), mark=True)

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every entry whose URL path (plus query) starts with ``prefix``, whatever its host: a walk over the
        ordered paths from ``prefix`` to the first path past it, O(log n + entries removed)."""
        doomed: list[Ident] = []
        for path, key, variant in self._paths.starting_at((prefix,)):
            if not path.startswith(prefix):
                break
            doomed.append((key, variant))
        return self._remove_all(doomed, mark=True)

    async def stats(self) -> StoreStats:
        """Counts include expired entries not yet dropped."""
        return StoreStats(len(self._slots), self._bytes, self._budget, self._evictions)

    @property
    def eviction(self) -> str:
        """The name of the eviction policy."""
        return self._policy.name

    def eviction_stats(self) -> EvictionStats:
        return EvictionStats(self._policy.name, dict(self._evicted), self._policy.ghost_hits)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._slots.clear()
        self._policy.clear()
        self._variants.clear()
        self._tags.clear()
        self._groups.clear()
        self._paths.clear()
        self._marks.clear()
        self._bytes = 0

    def _evict(self) -> None:
        """Drop the policy's victims until the bytes fit; only live victims count as evictions."""
        now = self._clock.monotonic()
        while self._bytes > self._budget and self._slots:
            ident, queue = self._policy.victim()
            if self._remove(ident).expires > now:
                self._evictions += 1
                self._evicted[queue] += 1

    def _remove_all(self, idents: list[Ident], *, mark: bool = False) -> int:
        """Remove ``idents``; with ``mark``, remember that their keys were invalidated now (a purge)."""
        now = self._clock.monotonic()
        if mark:
            wall = self._clock.now()
            for key in dict.fromkeys(key for key, _ in idents):
                self._marks.mark(key, wall)
        live = 0
        for ident in idents:
            if self._remove(ident).expires > now:
                live += 1
        return live

    def _remove(self, ident: Ident) -> _Slot:
        """Remove one stored entry and every trace of it in the byte count and the indexes."""
        slot = self._slots.pop(ident)
        self._policy.remove(ident)
        self._bytes -= slot.size
        key, variant = ident
        self._paths.discard((slot.path, key, variant))
        variants = self._variants[key]
        del variants[variant]
        if not variants:
            del self._variants[key]
            group = url_key_of(key)
            if group is not None:
                keys = self._groups[group]
                keys.discard(key)
                if not keys:
                    del self._groups[group]
        for tag in slot.entry.tags:
            members = self._tags.get(tag)
            if members is not None:
                members.discard(ident)
                if not members:
                    del self._tags[tag]
        for listener in self._removal_listeners:
            listener(key)
        return slot
