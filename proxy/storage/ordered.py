"""Items kept in order, for the memory store's purge by prefix in O(log n + matches), not O(n).

A sorted list split into buckets of at most ``2 * load`` items (the layout of ``sortedcontainers.SortedList``, without
its positional index, which a prefix walk does not need). ``_maxes[i]`` is the last item of ``_buckets[i]``, so one
``bisect`` over the maxes finds the bucket and one over the bucket finds the place: adding or removing an item costs
O(log n) comparisons plus moving at most ``2 * load`` references; a bucket that grows past that is split in two, an
empty one is dropped. ``starting_at`` walks forward from the first item not below its argument, so a walk that stops
at the first item past a prefix visits only the matches.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator

Item = tuple[str, str, str]  # the memory store's (URL path, key, variant)


class OrderedItems:
    """Distinct items, in order; ``add`` of an item already there and ``discard`` of one that is not are no-ops."""

    def __init__(self, load: int = 512) -> None:
        if load < 1:
            raise ValueError(f"load must be at least 1, got {load}")
        self._load = load
        self._buckets: list[list[Item]] = []
        self._maxes: list[Item] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def add(self, item: Item) -> None:
        if not self._buckets:
            self._buckets.append([item])
            self._maxes.append(item)
            self._len = 1
            return
        at = min(bisect_left(self._maxes, item), len(self._maxes) - 1)
        bucket = self._buckets[at]
        place = bisect_left(bucket, item)
        if place < len(bucket) and bucket[place] == item:
            return
        insort(bucket, item)
        self._maxes[at] = bucket[-1]
        self._len += 1
        if len(bucket) > 2 * self._load:
            self._buckets[at : at + 1] = [bucket[: self._load], bucket[self._load :]]
            self._maxes[at : at + 1] = [bucket[self._load - 1], bucket[-1]]

    def discard(self, item: Item) -> None:
        at = bisect_left(self._maxes, item)
        if at == len(self._maxes):
            return
        bucket = self._buckets[at]
        place = bisect_left(bucket, item)
        if place == len(bucket) or bucket[place] != item:
            return
        del bucket[place]
        self._len -= 1
        if bucket:
            self._maxes[at] = bucket[-1]
        else:
            del self._buckets[at]
            del self._maxes[at]

    def starting_at(self, first: tuple[str, ...]) -> Iterator[Item]:
        """Every item not below ``first``, in order (``first`` may be shorter than an item: ``(prefix,)``). Do not
        change the items while walking: take what you need first."""
        at = bisect_left(self._maxes, first)
        if at == len(self._maxes):
            return
        bucket = self._buckets[at]
        yield from bucket[bisect_left(bucket, first) :]
        for following in range(at + 1, len(self._buckets)):
            yield from self._buckets[following]

    def clear(self) -> None:
        self._buckets.clear()
        self._maxes.clear()
        self._len = 0
