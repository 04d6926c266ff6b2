"""Log lines that repeat during an outage, rate-limited: one line per (key, reason) per interval, with a count.

When the origin or a store is down, the same failure happens on every request (a 10-second origin outage in the soak
wrote 185 "background refresh failed" lines). ``RateLimitedLog`` writes the first occurrence of a ``(key, reason)``
at once and opens a window of ``interval`` seconds for it; occurrences inside the window are counted, not written.
The first occurrence after the window carries the count on its own line (``... (12 more since 18:06:54)``) and opens
the next window. A window that ends with a count and no later occurrence is reported by a summary line (the last
message, ``(the last of 12 since 18:06:54)``) by ``flush_due`` (which an owner calls regularly) or the next call of
any key after it ended, when the table is full and it is the oldest, or on ``flush``; a count is never dropped.

Memory: at most ``max_keys`` windows, each holding a few numbers and the text of the last message it counted, kept in
the order they opened, so the windows that are over are always at the front (a call looks at the front only). Time is
read from the ``Clock`` given (monotonic for the windows, wall time for the "since" the lines show).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from proxy.clock import Clock

# The text of a counted message is kept for its summary line; a longer one is cut.
LAST_MESSAGE_CHARS = 500


@dataclass(slots=True)
class _Window:
    opened: float  # monotonic time of the line that opened it
    wall: float  # the same moment on the wall clock, for "since"
    more: int = 0  # occurrences since then that wrote no line
    last: str = ""  # the last of them, formatted (written by a summary line if no later occurrence comes)


class RateLimitedLog:
    """Writes to ``logger`` at ``level``, at most one line per ``(key, reason)`` per ``interval`` seconds.

    ``key`` and ``reason`` are the caller's: choose them so that one window covers the lines an operator would want
    folded into one (e.g. a route and an error kind, not a URL and an error text, when an outage hits every URL).
    """

    def __init__(
        self,
        logger: logging.Logger,
        clock: Clock,
        *,
        interval: float = 10.0,
        max_keys: int = 256,
        level: int = logging.WARNING,
    ) -> None:
        if interval <= 0 or max_keys < 1:
            raise ValueError(f"interval must be positive and max_keys at least 1, got {interval}, {max_keys}")
        self.logger = logger
        self.interval = interval
        self.max_keys = max_keys
        self.level = level
        self._clock = clock
        self._windows: OrderedDict[tuple[str, str], _Window] = OrderedDict()  # in the order they opened

    def __len__(self) -> int:
        return len(self._windows)

    def log(self, key: str, reason: str, msg: str, *args: object) -> bool:
        """Write ``msg % args`` unless a line for ``(key, reason)`` was written less than ``interval`` ago (then count
        it). True when a line was written for this occurrence."""
        if not self.logger.isEnabledFor(self.level):
            return False
        now = self._clock.monotonic()
        ident = (key, reason)
        window = self._windows.get(ident)
        if window is not None and now - window.opened < self.interval:
            window.more += 1
            window.last = (msg % args if args else msg)[:LAST_MESSAGE_CHARS]
            self._close_over(now)
            return False
        if window is not None:
            del self._windows[ident]
        self._close_over(now)
        while len(self._windows) >= self.max_keys:  # still full: the oldest window goes, its count written
            self._summarise(self._windows.popitem(last=False)[1])
        self._windows[ident] = _Window(now, self._clock.now())
        if window is not None and window.more:
            self.logger.log(self.level, msg + " (%d more since %s)", *args, window.more, _clock_time(window.wall))
        else:
            self.logger.log(self.level, msg, *args)
        return True

    def flush_due(self) -> None:
        """Write the summary lines of the windows that are over (call it regularly: a count then shows within about
        an interval of the failures' end, not at the next failure, which may be hours later)."""
        self._close_over(self._clock.monotonic())

    def flush(self) -> None:
        """Write the summary line of every window that counted occurrences, and forget every window."""
        windows, self._windows = self._windows, OrderedDict()
        for window in windows.values():
            self._summarise(window)

    def _close_over(self, now: float) -> None:
        """Close the windows that are over, with their summary lines: the oldest first, up to one that is not."""
        while self._windows:
            window = next(iter(self._windows.values()))
            if now - window.opened < self.interval:
                return
            self._summarise(self._windows.popitem(last=False)[1])

    def _summarise(self, window: _Window) -> None:
        """The line of a window that ends with occurrences no line was written for."""
        if window.more:
            since = _clock_time(window.wall)
            self.logger.log(self.level, "%s (the last of %d since %s)", window.last, window.more, since)


def _clock_time(wall: float) -> str:
    """``HH:MM:SS`` in local time, as the log lines' own time stamps."""
    return time.strftime("%H:%M:%S", time.localtime(wall))
