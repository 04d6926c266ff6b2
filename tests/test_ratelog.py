"""``proxy.ratelog``: one line per (key, reason) per interval, counts carried, bounded, on a fake clock."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from proxy.clock import FakeClock
from proxy.ratelog import LAST_MESSAGE_CHARS, RateLimitedLog

LOGGER = "cacheproxy.test.ratelog"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def lines() -> Iterator[list[str]]:
    """The messages written to the test's logger, as they come."""
    logger = logging.getLogger(LOGGER)
    handler = Lines()
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def limiter(clock: FakeClock, interval: float = 10.0, max_keys: int = 256) -> RateLimitedLog:
    return RateLimitedLog(logging.getLogger(LOGGER), clock, interval=interval, max_keys=max_keys)


def since(clock: FakeClock, seconds_ago: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(clock.now() - seconds_ago))


def test_first_occurrence_written_at_once_repeats_counted(clock: FakeClock, lines: list[str]) -> None:
    log = limiter(clock, interval=10)
    assert log.log("refresh", "connect-failed", "refresh of %s failed", "/a")
    for second in range(9):
        clock.advance(1)
        assert not log.log("refresh", "connect-failed", "refresh of %s failed", f"/b{second}")
    assert lines == ["refresh of /a failed"]
    clock.advance(1)  # 10 s after the first line: the window is over
    assert log.log("refresh", "connect-failed", "refresh of %s failed", "/c")
    assert lines == ["refresh of /a failed", f"refresh of /c failed (9 more since {since(clock, 10)})"]


def test_next_window_starts_with_the_line_that_ended_the_last(clock: FakeClock, lines: list[str]) -> None:
    log = limiter(clock, interval=10)
    log.log("k", "r", "one")
    clock.advance(10)
    log.log("k", "r", "two")  # no count: nothing was held back
    clock.advance(5)
    log.log("k", "r", "three")  # within the window opened by "two"
    clock.advance(5)
    log.log("k", "r", "four")
    assert lines == ["one", "two", f"four (1 more since {since(clock, 10)})"]


def test_each_key_and_reason_has_its_own_window(clock: FakeClock, lines: list[str]) -> None:
    log = limiter(clock, interval=10)
    log.log("route-a", "connect-failed", "a refused")
    log.log("route-a", "timeout", "a timed out")
    log.log("route-b", "connect-failed", "b refused")
    log.log("route-a", "connect-failed", "a refused again")
    assert lines == ["a refused", "a timed out", "b refused"]
    assert len(log) == 3


def test_a_count_without_a_later_occurrence_is_written_by_the_next_call_after_the_interval(
    clock: FakeClock, lines: list[str]
) -> None:
    log = limiter(clock, interval=10)
    log.log("store", "down", "put failed")
    clock.advance(2)
    log.log("store", "down", "put failed for %s", "/x")
    log.log("store", "down", "put failed for %s", "/y")
    clock.advance(20)  # the store came back: no more of those; another kind of line comes along
    log.log("refresh", "timeout", "refresh timed out")
    assert lines == [
        "put failed",
        f"put failed for /y (the last of 2 since {since(clock, 22)})",
        "refresh timed out",
    ]
    assert len(log) == 1  # the store's window is gone with its summary


def test_flush_writes_every_pending_count_and_forgets(clock: FakeClock, lines: list[str]) -> None:
    log = limiter(clock, interval=10)
    log.log("a", "r", "a1")
    log.log("a", "r", "a2")
    log.log("b", "r", "b1")  # nothing held back: no summary for b
    log.flush()
    assert lines == ["a1", "b1", f"a2 (the last of 1 since {since(clock, 0)})"]
    assert len(log) == 0
    log.log("a", "r", "a3")  # a new window: written at once
    assert lines[-1] == "a3"


def test_the_table_is_bounded_and_the_oldest_window_gives_way_with_its_count(
    clock: FakeClock, lines: list[str]
) -> None:
    log = limiter(clock, interval=10, max_keys=3)
    for n in range(3):
        log.log(f"/{n}", "r", "failed %d", n)
    log.log("/0", "r", "failed again %d", 0)
    for n in range(3, 1000):  # an outage over a thousand URLs: the table never grows past its bound
        log.log(f"/{n}", "r", "failed %d", n)
        assert len(log) <= 3
    assert f"failed again 0 (the last of 1 since {since(clock, 0)})" in lines
    assert len(lines) == 1000 + 1  # every first occurrence, and the one count that would have been lost


def test_a_full_table_first_drops_windows_that_are_over(clock: FakeClock, lines: list[str]) -> None:
    log = limiter(clock, interval=10, max_keys=2)
    log.log("old", "r", "old")
    clock.advance(6)
    log.log("young", "r", "young")
    log.log("young", "r", "young again")
    clock.advance(5)  # "old" is over, "young" is not
    log.log("new", "r", "new")
    assert len(log) == 2
    log.log("young", "r", "young once more")  # still counted in its window: it was not the one dropped
    assert lines == ["old", "young", "new"]


def test_a_long_message_is_cut_in_the_summary(clock: FakeClock, lines: list[str]) -> None:
    log = limiter(clock, interval=10)
    log.log("k", "r", "first")
    log.log("k", "r", "%s", "x" * 10_000)
    log.flush()
    assert lines[-1].startswith("x" * LAST_MESSAGE_CHARS + " (the last of 1")


def test_disabled_level_writes_and_keeps_nothing(clock: FakeClock, lines: list[str]) -> None:
    logging.getLogger(LOGGER).setLevel(logging.ERROR)
    log = limiter(clock)
    assert not log.log("k", "r", "quiet")
    assert lines == []
    assert len(log) == 0


def test_bad_settings_are_refused(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="interval"):
        limiter(clock, interval=0)
    with pytest.raises(ValueError, match="max_keys"):
        limiter(clock, max_keys=0)


def test_flush_due_writes_the_counts_of_windows_that_are_over_only(clock: FakeClock, lines: list[str]) -> None:
    log = limiter(clock, interval=10)
    log.log("old", "r", "old")
    log.log("old", "r", "old again")
    clock.advance(6)
    log.log("young", "r", "young")
    log.log("young", "r", "young again")
    log.flush_due()
    assert lines == ["old", "young"]
    clock.advance(4)  # "old" is over: its count is written without waiting for another failure
    log.flush_due()
    assert lines == ["old", "young", f"old again (the last of 1 since {since(clock, 10)})"]
    assert len(log) == 1
