"""When each key was last invalidated, so a put from a fetch that began before that is refused (RFC 9111 §4.4).

A store that keeps entries for several processes must keep this rule itself: the process that fetched does not know
about an invalidation another process made. The memory store (and any store without a server of its own) keeps the
marks here; Redis keeps them in the key's hash (``~i``, ``proxy.storage.redis_layout``). Times are ``Clock.now``
seconds of the process that invalidated: across hosts this assumes clocks in sync within a small skew.

Marks are bounded: each is kept ``KEEP`` seconds (longer than any fetch runs), and at most ``cap`` of them; past the
cap the oldest goes and its time becomes a floor below which every put is refused (refusing is always safe).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from proxy.storage.base import url_key_of

# How long a store remembers an invalidation: longer than any fetch can run (upstream timeouts, the lease wait, a
# background refresh's limit), so no fetch that began before it can still be in flight when it is forgotten.
KEEP: Final = 300.0


class InvalidationMarks:
    """Key -> when it was last invalidated, oldest first, bounded in count and in time."""

    def __init__(self, cap: int = 100_000, keep: float = KEEP) -> None:
        if cap < 1:
            raise ValueError(f"cap must be at least 1, got {cap}")
        self._cap = cap
        self._keep = keep
        self._marks: OrderedDict[str, float] = OrderedDict()
        self._floor = float("-inf")

    def __len__(self) -> int:
        return len(self._marks)

    def mark(self, key: str, now: float) -> None:
        """``key`` (and, for a URL key, its whole group) was invalidated at ``now``."""
        self._marks[key] = max(now, self._marks.get(key, now))
        self._marks.move_to_end(key)
        self._trim(now)

    def refuses(self, key: str, since: float) -> bool:
        """Whether a fetch for ``key`` that began at ``since`` came before an invalidation of it (or of its group)."""
        if since <= self._floor:
            return True
        group = url_key_of(key)
        latest = max(self._marks.get(key, -1.0), self._marks.get(group, -1.0) if group is not None else -1.0)
        return since <= latest

    def clear(self) -> None:
        self._marks.clear()

    def _trim(self, now: float) -> None:
        while self._marks:
            key, when = next(iter(self._marks.items()))
            if when > now - self._keep and len(self._marks) <= self._cap:
                return
            del self._marks[key]
            if when > now - self._keep:
                self._floor = max(self._floor, when)
