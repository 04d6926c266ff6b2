"""S3-FIFO ("FIFO queues are all you need for cache eviction", Yang et al., SOSP 2023): the default policy.

Three FIFO queues, all counted in bytes:

- small (10 % of the budget): where a new key starts. Most keys of API traffic are requested once; they leave
  from here quickly without disturbing the rest ("quick demotion").
- main (the rest): keys hit while in small are promoted here when small evicts them. Main evicts like FIFO with
  reinsertion: a key with frequency > 0 goes back to the head with its frequency lowered by one.
- ghost: the keys (with their sizes, never their values) that small evicted recently, bounded to the main share of
  the budget in remembered bytes. A key inserted while remembered goes straight to main: it was evicted too soon.

A hit only raises the key's counter, capped at 3 (no list is reordered on the hit path). ``victim`` evicts from
small while small holds at least its share (or main is empty), otherwise from main, as the paper's Algorithm 1
and libCacheSim's ``S3FIFOv0`` (move-to-main threshold 1, ghost 90 %). Each eviction is amortised O(1): a
reinsertion spends one unit of a counter that only hits raise.
"""

from __future__ import annotations

from collections import OrderedDict

from proxy.storage.eviction.base import EvictionPolicy, K

SMALL_SHARE = 0.10
MAX_FREQ = 3


class _Node:
    __slots__ = ("freq", "size", "small")

    def __init__(self, size: int, small: bool) -> None:
        self.size = size
        self.freq = 0
        self.small = small


class S3FIFO(EvictionPolicy[K]):
    name = "s3fifo"
    queues = ("small", "main")

    def __init__(self, budget: int, small_share: float = SMALL_SHARE) -> None:
        super().__init__(budget)
        if not 0 < small_share < 1:
            raise ValueError(f"small_share must be between 0 and 1, got {small_share}")
        self.small_budget = budget * small_share
        self.ghost_budget = budget - self.small_budget
        self._nodes: dict[K, _Node] = {}
        self._small: OrderedDict[K, _Node] = OrderedDict()
        self._main: OrderedDict[K, _Node] = OrderedDict()
        self._ghost: OrderedDict[K, int] = OrderedDict()  # key -> the size it had
        self.small_used = 0
        self.ghost_used = 0

    def insert(self, key: K, size: int) -> None:
        remembered = self._ghost.pop(key, None)
        if remembered is None:
            node = _Node(size, True)
            self._small[key] = node
            self.small_used += size
        else:
            self.ghost_used -= remembered
            self.ghost_hits += 1
            node = _Node(size, False)
            self._main[key] = node
        self._nodes[key] = node
        self.used += size

    def touch(self, key: K) -> None:
        node = self._nodes[key]
        if node.freq < MAX_FREQ:
            node.freq += 1

    def lookup(self, key: K) -> bool:
        node = self._nodes.get(key)
        if node is None:
            return False
        if node.freq < MAX_FREQ:
            node.freq += 1
        return True

    def remove(self, key: K) -> None:
        node = self._nodes.pop(key)
        if node.small:
            del self._small[key]
            self.small_used -= node.size
        else:
            del self._main[key]
        self.used -= node.size

    def victim(self) -> tuple[K, str]:
        small, main = self._small, self._main
        while True:
            if small and (self.small_used >= self.small_budget or not main):
                key, node = next(iter(small.items()))
                if node.freq == 0:
                    self._remember(key, node.size)
                    return key, "small"
                del small[key]  # hit while in small: promoted to main, its count spent
                self.small_used -= node.size
                node.small = False
                node.freq = 0
                main[key] = node
            elif main:
                key, node = next(iter(main.items()))
                if node.freq == 0:
                    return key, "main"
                node.freq -= 1
                main.move_to_end(key)
            else:
                raise LookupError("victim() of an empty policy")

    def remembers(self, key: object) -> bool:
        """True when ``key`` is in the ghost queue (for tests and diagnostics)."""
        return key in self._ghost

    def queue_of(self, key: K) -> str:
        return "small" if self._nodes[key].small else "main"

    def __contains__(self, key: object) -> bool:
        return key in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def clear(self) -> None:
        self._nodes.clear()
        self._small.clear()
        self._main.clear()
        self._ghost.clear()
        self.used = self.small_used = self.ghost_used = 0

    def _remember(self, key: K, size: int) -> None:
        """Add an evicted key to the ghost queue, dropping the oldest ghosts past the ghost budget."""
        ghost = self._ghost
        ghost[key] = size
        self.ghost_used += size
        while self.ghost_used > self.ghost_budget and ghost:
            self.ghost_used -= ghost.popitem(last=False)[1]
