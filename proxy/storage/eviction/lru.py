"""LRU: FIFO's one ordered dict kept in recency order (oldest first); a hit moves its key to the end."""

from __future__ import annotations

from proxy.storage.eviction.base import K
from proxy.storage.eviction.fifo import FIFO


class LRU(FIFO[K]):
    name = "lru"
    queues = ("lru",)

    def touch(self, key: K) -> None:
        self._order.move_to_end(key)
