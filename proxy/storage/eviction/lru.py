"""LRU: one ordered dict in recency order (oldest first); a hit moves its key to the end."""

from __future__ import annotations

from collections import OrderedDict

from proxy.storage.eviction.base import EvictionPolicy, K


class LRU(EvictionPolicy[K]):
    name = "lru"
    queues = ("lru",)

    def __init__(self, budget: int) -> None:
        super().__init__(budget)
        self._order: OrderedDict[K, int] = OrderedDict()  # key -> size

    def insert(self, key: K, size: int) -> None:
        self._order[key] = size
        self.used += size

    def touch(self, key: K) -> None:
        self._order.move_to_end(key)

    def remove(self, key: K) -> None:
        self.used -= self._order.pop(key)

    def victim(self) -> tuple[K, str]:
        for key in self._order:
            return key, "lru"
        raise LookupError("victim() of an empty policy")

    def lookup(self, key: K) -> bool:
        if key in self._order:
            self._order.move_to_end(key)
            return True
        return False

    def evict(self) -> tuple[K, str]:
        if not self._order:
            raise LookupError("evict() of an empty policy")
        key, size = self._order.popitem(last=False)
        self.used -= size
        return key, "lru"

    def __contains__(self, key: object) -> bool:
        return key in self._order

    def __len__(self) -> int:
        return len(self._order)

    def clear(self) -> None:
        self._order.clear()
        self.used = 0
