"""SIEVE (NSDI 2024): one FIFO queue, a visited bit per key, and a hand that sweeps from the oldest key.

A hit sets the bit. To evict, the hand walks from where it stopped towards newer keys, clearing set bits, and
stops at the first key with its bit clear; past the newest it wraps to the oldest. Survivors keep their place,
so new keys that are never hit again leave quickly. The queue is a doubly linked list so that any key can be
removed in O(1); a removal under the hand moves the hand one step towards newer keys.
"""

from __future__ import annotations

from proxy.storage.eviction.base import EvictionPolicy, K


class _Node:
    __slots__ = ("key", "newer", "older", "size", "visited")

    def __init__(self, key: object, size: int, older: _Node | None) -> None:
        self.key = key
        self.size = size
        self.visited = False
        self.older = older
        self.newer: _Node | None = None


class SIEVE(EvictionPolicy[K]):
    name = "sieve"
    queues = ("sieve",)

    def __init__(self, budget: int) -> None:
        super().__init__(budget)
        self._nodes: dict[K, _Node] = {}
        self._oldest: _Node | None = None
        self._newest: _Node | None = None
        self._hand: _Node | None = None

    def insert(self, key: K, size: int) -> None:
        node = _Node(key, size, self._newest)
        if self._newest is None:
            self._oldest = node
        else:
            self._newest.newer = node
        self._newest = node
        self._nodes[key] = node
        self.used += size

    def touch(self, key: K) -> None:
        self._nodes[key].visited = True

    def lookup(self, key: K) -> bool:
        node = self._nodes.get(key)
        if node is None:
            return False
        node.visited = True
        return True

    def remove(self, key: K) -> None:
        node = self._nodes.pop(key)
        if self._hand is node:
            self._hand = node.newer
        if node.older is None:
            self._oldest = node.newer
        else:
            node.older.newer = node.newer
        if node.newer is None:
            self._newest = node.older
        else:
            node.newer.older = node.older
        self.used -= node.size

    def victim(self) -> tuple[K, str]:
        oldest = self._oldest
        if oldest is None:
            raise LookupError("victim() of an empty policy")
        node = self._hand or oldest
        while node.visited:
            node.visited = False
            node = node.newer or oldest  # past the newest key, wrap to the oldest
        self._hand = node
        key: K = node.key  # type: ignore[assignment]  # nodes only ever hold keys of type K
        return key, "sieve"

    def __contains__(self, key: object) -> bool:
        return key in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def clear(self) -> None:
        self._nodes.clear()
        self._oldest = self._newest = self._hand = None
        self.used = 0
