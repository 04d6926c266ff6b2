"""The one place where the proxy reads time.

Everything else takes ``now`` or a ``Clock``, so the RFC logic is deterministic and tests assert exact ages.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch (what ``Date`` and ``Age`` are about)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for timeouts and durations)."""
        ...


class SystemClock:
    # The functions themselves, not methods that call them: a request reads the clock a dozen times.
    now = staticmethod(time.time)
    monotonic = staticmethod(time.monotonic)


class FakeClock:
    """A clock that moves only when told to; for tests."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds


SYSTEM_CLOCK = SystemClock()
