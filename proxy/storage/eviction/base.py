"""What an eviction policy is: the order in which a byte-bounded cache gives entries up, and nothing else.

A policy tracks keys and their sizes, never values, expiry or indexes: the cache that owns it (``MemoryStorage``,
``proxy.memo.LRUCache``, the ``simulate`` replay) stores the values and calls, per operation, one of

- ``insert(key, size)`` for a key the policy does not hold,
- ``touch(key)`` on a hit,
- ``remove(key)`` when the key leaves for any reason (replaced, expired, deleted, evicted),
- ``victim()`` while the cache is over its budget: the key to evict next and the queue it leaves from; the policy
  does its own reordering first (reinsertion, promotion, the ghost record) but leaves the key in place, so the cache
  removes it through its one removal path, which calls ``remove``.

Every operation is O(1) (amortised for the FIFO variants that reinsert). ``used`` is the sum of the sizes held;
``ghost_hits`` counts inserts of keys the policy remembered as recently evicted (S3-FIFO only). The model is
cachetools': one base, each policy keeps only its ordering.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable
from typing import ClassVar, Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class EvictionPolicy(ABC, Generic[K]):
    """The ordering of one byte-bounded cache; ``budget`` is the byte (or weight) bound of that cache."""

    name: ClassVar[str]
    queues: ClassVar[tuple[str, ...]]  # the queue labels ``victim`` returns (metrics)

    def __init__(self, budget: int) -> None:
        if budget < 0:
            raise ValueError(f"budget must not be negative, got {budget}")
        self.budget = budget
        self.used = 0
        self.ghost_hits = 0

    @abstractmethod
    def insert(self, key: K, size: int) -> None:
        """Start tracking ``key`` (not held yet), charged ``size``."""

    @abstractmethod
    def touch(self, key: K) -> None:
        """A hit on ``key`` (held)."""

    @abstractmethod
    def remove(self, key: K) -> None:
        """Stop tracking ``key`` (held)."""

    @abstractmethod
    def victim(self) -> tuple[K, str]:
        """The key to evict next and its queue label; the policy must not be empty. The key stays held."""

    @abstractmethod
    def __contains__(self, key: object) -> bool: ...

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def clear(self) -> None:
        """Forget every key (ghost records too); counters are kept."""

    def lookup(self, key: K) -> bool:
        """``touch`` when held; True if it was: one call per request for owners that hold no index (the simulator)."""
        if key in self:
            self.touch(key)
            return True
        return False

    def evict(self) -> tuple[K, str]:
        """``victim`` then ``remove``: for owners with nothing else to clean up (the simulator)."""
        key, queue = self.victim()
        self.remove(key)
        return key, queue
