"""LFU with frequency buckets (Shah, Mitra, Matani 2010): every operation O(1), no heap.

Buckets, one per frequency in use, form a doubly linked list in increasing frequency; each holds its keys in an
ordered dict (oldest first, so ties go to the key that reached that frequency first). A hit moves a key to the
bucket of the next frequency, created next to its own if missing; an emptied bucket is unlinked. The victim is
the oldest key of the first bucket. Counts are not aged: a key that was popular once stays until others overtake
it, which is LFU's known weakness on shifting traffic and why it is not the default.
"""

from __future__ import annotations

from collections import OrderedDict

from proxy.storage.eviction.base import EvictionPolicy, K


class _Bucket:
    __slots__ = ("freq", "keys", "next", "prev")

    def __init__(self, freq: int, prev: _Bucket | None, next: _Bucket | None) -> None:
        self.freq = freq
        self.keys: OrderedDict[object, int] = OrderedDict()  # key -> size
        self.prev = prev
        self.next = next


class LFU(EvictionPolicy[K]):
    name = "lfu"
    queues = ("lfu",)

    def __init__(self, budget: int) -> None:
        super().__init__(budget)
        self._head = _Bucket(0, None, None)  # sentinel: head.next is the lowest frequency in use
        self._where: dict[K, _Bucket] = {}

    def insert(self, key: K, size: int) -> None:
        first = self._head.next
        if first is None or first.freq != 1:
            first = self._link_after(self._head, 1)
        first.keys[key] = size
        self._where[key] = first
        self.used += size

    def touch(self, key: K) -> None:
        bucket = self._where[key]
        up = bucket.next
        if up is None or up.freq != bucket.freq + 1:
            up = self._link_after(bucket, bucket.freq + 1)
        up.keys[key] = bucket.keys.pop(key)
        self._where[key] = up
        if not bucket.keys:
            self._unlink(bucket)

    def remove(self, key: K) -> None:
        bucket = self._where.pop(key)
        self.used -= bucket.keys.pop(key)
        if not bucket.keys:
            self._unlink(bucket)

    def victim(self) -> tuple[K, str]:
        first = self._head.next
        if first is None:
            raise LookupError("victim() of an empty policy")
        key: K = next(iter(first.keys))  # type: ignore[assignment]  # buckets only ever hold keys of type K
        return key, "lfu"

    def frequency(self, key: K) -> int:
        """How many times ``key`` was inserted or hit since it came in (for tests and diagnostics)."""
        return self._where[key].freq

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def __len__(self) -> int:
        return len(self._where)

    def clear(self) -> None:
        self._head.next = None
        self._where.clear()
        self.used = 0

    @staticmethod
    def _link_after(bucket: _Bucket, freq: int) -> _Bucket:
        new = _Bucket(freq, bucket, bucket.next)
        if bucket.next is not None:
            bucket.next.prev = new
        bucket.next = new
        return new

    @staticmethod
    def _unlink(bucket: _Bucket) -> None:
        prev = bucket.prev  # never None: only the sentinel has no prev, and it is never unlinked
        if prev is not None:
            prev.next = bucket.next
        if bucket.next is not None:
            bucket.next.prev = prev
