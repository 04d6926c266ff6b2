"""Which invalidations a fetch missed: a write's invalidation must not be lost to a fetch already in flight.

RFC 9111 §4.4: after a successful unsafe request (and after a purge) the cache must not serve what it had. A fetch
that started before the invalidation carries the old representation; storing it would undo the invalidation. So:

- every invalidation (unsafe method, URL purge, prefix purge, tag purge) is recorded with the next ``epoch``
  (a counter, monotonically increasing) and what it covers (URL keys, a path prefix, a tag);
- every fetch takes a ``Fence`` when it starts (the current epoch, and the wall-clock time for the store's own rule
  across processes, ``proxy.storage.abilities.ConfirmingPut``); before it stores, ``Fence.crossed`` asks whether an
  invalidation covering its key, its URL path or its tags was recorded since. If so the entry is not stored.

Records are kept only while a fetch older than them is in flight (the start epochs of running fetches are counted),
and never more than ``cap``: past it the oldest record goes and every fetch that began before it counts as crossed
(not storing is always safe).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

from proxy.messages import Entry
from proxy.storage.base import url_key_of
from proxy.storage.urls import url_path

__all__ = ["Covered", "Fence", "Invalidations"]


@dataclass(frozen=True, slots=True)
class Covered:
    """What one invalidation covers: URL keys (with their groups), a URL path prefix, or a tag."""

    keys: frozenset[str] = frozenset()
    prefix: str | None = None
    tag: str | None = None

    def covers(self, key: str, path: str, tags: tuple[str, ...]) -> bool:
        if key in self.keys or url_key_of(key) in self.keys:
            return True
        if self.prefix is not None and path.startswith(self.prefix):
            return True
        return self.tag is not None and self.tag in tags

    def may_cover(self, key: str, path: str | None) -> bool:
        """Whether what a fetch or lookup under ``key`` (for URL ``path``, when known) brings may be covered, before
        its response is known: a tag may come with any response (``Surrogate-Key``), a prefix with any path."""
        if self.tag is not None or (self.prefix is not None and path is None):
            return True
        return self.covers(key, path or "", ())


@dataclass(frozen=True, slots=True)
class Fence:
    """Taken by a fetch when it starts: the epoch then, and the wall-clock time (the store's rule compares it)."""

    log: Invalidations
    epoch: int
    since: float

    def crossed(self, key: str, entry: Entry) -> bool:
        """Whether an invalidation covering ``entry`` (under ``key``) was recorded after this fetch began."""
        return self.log.covers_since(self.epoch, key, url_path(entry.url), entry.tags)


class Invalidations:
    """The invalidations of one process that a running fetch may still need to know about."""

    def __init__(self, cap: int = 4096) -> None:
        if cap < 1:
            raise ValueError(f"cap must be at least 1, got {cap}")
        self._cap = cap
        self._epoch = 0
        self._floor = 0  # fences older than this epoch count as crossed (their records were dropped at the cap)
        self._records: deque[tuple[int, Covered]] = deque()
        self._running: Counter[int] = Counter()  # start epoch -> fetches in flight that began then

    def __len__(self) -> int:
        return len(self._records)

    @property
    def running(self) -> int:
        return self._running.total()

    def begin(self, now: float) -> Fence:
        """A fetch starts: its fence. Every ``begin`` is matched by one ``end``."""
        running = self._running
        running[self._epoch] = running.get(self._epoch, 0) + 1  # not ``+= 1``: Counter's __missing__ is Python
        return Fence(self, self._epoch, now)

    def end(self, fence: Fence) -> None:
        """A fetch ended: records that no running fetch is older than are dropped."""
        left = self._running.get(fence.epoch, 0) - 1
        if left > 0:
            self._running[fence.epoch] = left
        else:
            self._running.pop(fence.epoch, None)
        self._trim()

    def record(self, covered: Covered) -> int:
        """An invalidation happened: its epoch. Kept only if some fetch in flight began before it."""
        self._epoch += 1
        if self._running:
            self._records.append((self._epoch, covered))
            if len(self._records) > self._cap:
                dropped, _ = self._records.popleft()
                self._floor = dropped
        return self._epoch

    def covers_since(self, epoch: int, key: str, path: str, tags: tuple[str, ...]) -> bool:
        if epoch < self._floor:
            return True
        for recorded, covered in reversed(self._records):
            if recorded <= epoch:
                return False
            if covered.covers(key, path, tags):
                return True
        return False

    def _trim(self) -> None:
        if not self._records:
            return
        oldest = min(self._running) if self._running else self._epoch
        while self._records and self._records[0][0] <= oldest:
            self._records.popleft()
