"""FIFO: insertion order only; a hit changes nothing (the baseline every FIFO variant improves on)."""

from __future__ import annotations

from collections import OrderedDict

from proxy.storage.eviction.base import EvictionPolicy, K


class FIFO(EvictionPolicy[K]):
    name = "fifo"
    queues = ("fifo",)

    def __init__(self, budget: int) -> None:
        super().__init__(budget)
        # An OrderedDict, not a dict: popping a plain dict from the front leaves holes its iterator re-scans.
        self._order: OrderedDict[K, int] = OrderedDict()

    def insert(self, key: K, size: int) -> None:
        self._order[key] = size
        self.used += size

    def touch(self, key: K) -> None:
        pass

    def remove(self, key: K) -> None:
        self.used -= self._order.pop(key)

    def victim(self) -> tuple[K, str]:
        for key in self._order:
            return key, self.name
        raise LookupError("victim() of an empty policy")

    def lookup(self, key: K) -> bool:
        if key in self._order:
            self.touch(key)
            return True
        return False

    def evict(self) -> tuple[K, str]:
        if not self._order:
            raise LookupError("evict() of an empty policy")
        key, size = self._order.popitem(last=False)
        self.used -= size
        return key, self.name

    def __contains__(self, key: object) -> bool:
        return key in self._order

    def __len__(self) -> int:
        return len(self._order)

    def clear(self) -> None:
        self._order.clear()
        self.used = 0
