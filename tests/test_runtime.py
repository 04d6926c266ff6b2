"""``proxy.runtime``: what the lifespan does to the process once, before the first request."""

from __future__ import annotations

import gc

from proxy.runtime import settle_heap


def test_the_start_up_heap_is_frozen_once_and_young_objects_collected_less_often() -> None:
    settle_heap()
    frozen = gc.get_freeze_count()
    assert frozen > 0
    assert gc.get_threshold()[0] == 10_000
    settle_heap()  # a second app in the same process (tests) freezes nothing more
    assert gc.get_freeze_count() == frozen
