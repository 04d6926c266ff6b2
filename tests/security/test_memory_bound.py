"""Issue 9 §3: the proxy's memory is bounded by its budget, whatever it is asked for.

A real proxy process with ``--memory-budget 8MiB`` in front of a real origin; 1,000 distinct 256 KiB objects, each
fetched twice in a row, a miss then a hit (250 MiB through a store that holds 8). Its resident set, read from
``/proc/<pid>/status``, must stay within budget x 1.2 + 60 MiB: a memory bound, not a timing. Before the fix the hit
path's prepared-response memo kept every evicted entry alive and this process grew to 361 MiB.
"""

from __future__ import annotations

import sys

import pytest

from load_tests.memory_bound import MiB, measure

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status")


def test_issue9_3_rss_bounded_by_memory_budget() -> None:
    result = measure(count=1000, size=256 * 1024, budget=8 * MiB)
    figures = f"RSS {result.rss / MiB:.1f} MiB, peak {result.peak / MiB:.1f} MiB, limit {result.limit / MiB:.1f} MiB"
    assert result.stored_bytes <= result.budget
    assert result.stored_entries < result.count  # the store did evict: the bound is tested, not avoided
    assert result.hits == result.count  # and the hit path (whose memo kept evicted entries) served each one
    assert result.rss <= result.limit, figures


def test_issue9_3_rss_bounded_for_small_objects() -> None:
    """Many small entries: what an entry really occupies is charged (``Entry.size``), and the hit path's memos are
    bounded, so 5,000 objects of 16 bytes through a 2 MiB store stay within the bound too (80 MiB before).
    """
    result = measure(count=5000, size=16, budget=2 * MiB)
    figures = f"RSS {result.rss / MiB:.1f} MiB, peak {result.peak / MiB:.1f} MiB, limit {result.limit / MiB:.1f} MiB"
    assert result.stored_entries < result.count
    assert result.hits == result.count
    assert result.rss <= result.limit, figures
