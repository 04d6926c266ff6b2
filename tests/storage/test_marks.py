"""The memory store's invalidation marks (``proxy.storage.marks``): bounded in count and in time, and safe at the
bound (a fetch older than a forgotten mark is refused, never let through)."""

from __future__ import annotations

from proxy.storage.base import GROUP_SEP
from proxy.storage.marks import InvalidationMarks


def test_a_mark_refuses_fetches_that_began_at_or_before_it_and_covers_the_group() -> None:
    marks = InvalidationMarks()
    marks.mark("k", 100.0)
    assert marks.refuses("k", 99.0) and marks.refuses("k", 100.0)
    assert not marks.refuses("k", 100.001)
    assert marks.refuses("k" + GROUP_SEP + "de", 99.0)
    assert not marks.refuses("other", 99.0)


def test_marks_past_their_keep_window_are_dropped() -> None:
    marks = InvalidationMarks(keep=10.0)
    marks.mark("a", 100.0)
    marks.mark("b", 105.0)
    marks.mark("c", 111.0)  # "a" is older than the window now
    assert len(marks) == 2
    assert not marks.refuses("a", 99.0)  # no fetch runs that long


def test_marks_past_the_cap_are_dropped_and_older_fetches_refused() -> None:
    marks = InvalidationMarks(cap=100)
    for i in range(1000):
        marks.mark(f"k{i}", 1000.0 + i)
    assert len(marks) == 100
    assert marks.refuses("k0", 1500.0)  # its mark is gone, but a fetch that began before it is still refused
    assert marks.refuses("never-marked", 1800.0)
    assert not marks.refuses("never-marked", 1900.5)
