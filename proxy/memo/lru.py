"""A thread-safe cache with per-entry time-to-live: the storage behind ``proxy.memo.cached``.

Entries live in a dict; the eviction order is kept by a policy of ``proxy.storage.eviction`` (``policy="lru"``
by default, as the name says; ``s3fifo``, ``lfu``, ``fifo`` and ``sieve`` too), so get, set and delete are O(1).
Size is counted in entries or, with ``getsizeof``, as a weight budget (the cachetools model: ``maxsize`` is then
the total weight, and a value heavier than the whole budget is not stored, which is not an error).

Entries past their deadline are invisible: ``get`` misses, ``in`` is false, ``len`` does not count them.
Deadlines are also kept in a heap, so ``len`` and eviction drop expired entries first at amortised O(log n);
heap records of overwritten or deleted keys are skipped when popped, and the heap is rebuilt when they
outnumber the live entries.

Time is read from ``clock.monotonic()`` only (see ``proxy/clock.py``). One ``threading.Lock`` guards the
state; user code (``getsizeof``, destructors of dropped values) never runs while it is held.
"""

from __future__ import annotations

import heapq
import math
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, NamedTuple

from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.storage.eviction import EvictionPolicy, make_policy

__all__ = ["CacheInfo", "CacheStats", "LRUCache", "check_ttl"]


class CacheInfo(NamedTuple):
    """The shape of ``functools.lru_cache``'s ``cache_info()``."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    evictions: int
    """Live entries dropped to make room."""
    expirations: int
    """Entries dropped because their time-to-live ran out."""
    length: int
    currsize: int
    """Number of entries, or their total weight with ``getsizeof``."""
    maxsize: int

    @property
    def hit_ratio(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class _Item:
    __slots__ = ("deadline", "seq", "size", "value")

    def __init__(self, value: Any, deadline: float, size: int, seq: int) -> None:
        self.value = value
        self.deadline = deadline
        self.size = size
        self.seq = seq


def check_ttl(ttl: float | None) -> None:
    if ttl is not None and not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"ttl must be a positive number of seconds or None, not {ttl!r}")


class LRUCache:
    """A cache bounded by entry count (or weight) with optional per-entry time-to-live; least recently used goes
    first unless ``policy`` names another eviction policy."""

    def __init__(
        self,
        maxsize: int = 1024,
        ttl: float | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        getsizeof: Callable[[Any], int] | None = None,
        policy: str = "lru",
    ) -> None:
        if maxsize < 0:
            raise ValueError(f"maxsize must be >= 0, not {maxsize!r}")
        check_ttl(ttl)
        self._maxsize = maxsize
        self._ttl = ttl
        self._clock = clock
        self._getsizeof = getsizeof
        self._lock = threading.Lock()
        self._policy: EvictionPolicy[Hashable] = make_policy(policy, maxsize)
        self._data: dict[Hashable, _Item] = {}
        self._deadlines: list[tuple[float, int, Hashable]] = []
        self._seq = 0
        self._currsize = 0
        self._hits = self._misses = self._evictions = self._expirations = 0

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @property
    def policy(self) -> str:
        """The name of the eviction policy."""
        return self._policy.name

    @property
    def ttl(self) -> float | None:
        """The default time-to-live in seconds (None: entries do not expire)."""
        return self._ttl

    @property
    def currsize(self) -> int:
        with self._lock:
            return self._currsize

    @property
    def hits(self) -> int:
        return self._hits

    @property
    def misses(self) -> int:
        return self._misses

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value for ``key`` (a hit for the policy: LRU makes it the most recent), or ``default``."""
        now = self._clock.monotonic()
        with self._lock:
            item = self._data.get(key)
            if item is not None and now < item.deadline:
                self._policy.touch(key)
                self._hits += 1
                return item.value
            self._misses += 1
            if item is not None:
                self._drop(key, item, expired=True)
        del item  # let an expired value's destructor run outside the lock
        return default

    def peek(self, key: Hashable, default: Any = None) -> Any:
        """Like ``get`` but leaves the eviction order and the counters alone."""
        now = self._clock.monotonic()
        with self._lock:
            item = self._data.get(key)
            value = item.value if item is not None and now < item.deadline else default
        return value

    def set(self, key: Hashable, value: Any, ttl: float | None = None) -> None:
        """Store ``value``, expiring after ``ttl`` seconds (default: the cache's ``ttl``).

        A value heavier than ``maxsize`` is not stored, and removes any older value for ``key``.
        """
        check_ttl(ttl)
        size = 1 if self._getsizeof is None else self._getsizeof(value)
        if size < 0:
            raise ValueError(f"getsizeof returned a negative size {size!r}")
        ttl = self._ttl if ttl is None else ttl
        now = self._clock.monotonic()
        deadline = math.inf if ttl is None else now + ttl
        with self._lock:
            dropped: list[_Item] = []
            old = self._data.pop(key, None)
            if old is not None:
                self._policy.remove(key)
                self._currsize -= old.size
                dropped.append(old)
            if size <= self._maxsize:
                self._seq += 1
                self._data[key] = _Item(value, deadline, size, self._seq)
                self._policy.insert(key, size)
                self._currsize += size
                if ttl is not None:
                    heapq.heappush(self._deadlines, (deadline, self._seq, key))
                dropped += self._make_room(now)
            self._compact_deadlines()
        del dropped  # evicted values are released after the lock

    def delete(self, key: Hashable) -> bool:
        """Remove ``key``; True if a live entry was removed."""
        now = self._clock.monotonic()
        with self._lock:
            item = self._data.pop(key, None)
            if item is not None:
                self._policy.remove(key)
                self._currsize -= item.size
        return item is not None and now < item.deadline

    def clear(self) -> None:
        """Remove every entry; the counters are kept."""
        with self._lock:
            data, self._data = self._data, {}
            self._policy.clear()
            self._deadlines = []
            self._currsize = 0
        del data

    def stats(self) -> CacheStats:
        with self._lock:
            dropped = self._purge(self._clock.monotonic())
            stats = CacheStats(
                self._hits, self._misses, self._evictions, self._expirations,
                len(self._data), self._currsize, self._maxsize,
            )  # fmt: skip
        del dropped
        return stats

    def cache_info(self) -> CacheInfo:
        s = self.stats()
        return CacheInfo(s.hits, s.misses, s.maxsize, s.currsize)

    def __len__(self) -> int:
        with self._lock:
            dropped = self._purge(self._clock.monotonic())
            length = len(self._data)
        del dropped
        return length

    def __contains__(self, key: object) -> bool:
        now = self._clock.monotonic()
        with self._lock:
            item = self._data.get(key)
            return item is not None and now < item.deadline

    def __repr__(self) -> str:
        return (
            f"<LRUCache maxsize={self._maxsize} ttl={self._ttl} currsize={self._currsize} policy={self._policy.name}>"
        )

    # Below: called with the lock held.

    def _drop(self, key: Hashable, item: _Item, *, expired: bool) -> None:
        del self._data[key]
        self._policy.remove(key)
        self._currsize -= item.size
        if expired:
            self._expirations += 1
        else:
            self._evictions += 1

    def _purge(self, now: float) -> list[_Item]:
        """Drop entries past their deadline, soonest first; returns them to be released outside the lock."""
        dropped = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            item = self._data.get(key)
            if item is not None and item.seq == seq:
                self._drop(key, item, expired=True)
                dropped.append(item)
        return dropped

    def _make_room(self, now: float) -> list[_Item]:
        """Expired entries go first, then the policy's victims."""
        if self._currsize <= self._maxsize:
            return []
        dropped = self._purge(now)
        while self._currsize > self._maxsize:
            key, _queue = self._policy.victim()
            item = self._data[key]
            self._drop(key, item, expired=False)
            dropped.append(item)
        return dropped

    def _compact_deadlines(self) -> None:
        """Rebuild the heap once stale records outnumber live entries: amortised O(1) per set."""
        if len(self._deadlines) > 2 * len(self._data) + 64:
            self._deadlines = [(i.deadline, i.seq, k) for k, i in self._data.items() if i.deadline < math.inf]
            heapq.heapify(self._deadlines)
