"""Fault handling for remote stores: a circuit breaker, and a guard that turns failures into counted misses.

Theory of operation: a remote store (Redis) must never fail or slow down a request. Every call goes through
``Guard.call``, which bounds it with a timeout, and on a Redis error or a timeout counts it per operation, logs at
most one line per interval (with how many were suppressed) and returns the caller's fallback (a miss, a skipped
store). After ``threshold`` consecutive failures the ``CircuitBreaker`` opens: calls are skipped at once for
``open_for`` seconds, then one probe call is let through (half-open); its success closes the breaker, its failure
opens it again. Readiness (``degraded``) is "the breaker is not closed".

A store with a background task of its own (the Redis store, once started) takes the probe over
(``probed_by_owner``): calls are then never the probe, and the owner claims it with ``begin_probe`` and makes its
probe calls with ``attempt(..., probing=True)``, so it can finish its recovery (drop stale connections, apply the
invalidations that failed during the outage) before anything reads from the store again; it closes the breaker with
``record_success`` when all of that worked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TypeVar

from redis.exceptions import RedisError

from proxy.clock import Clock

T = TypeVar("T")

log = logging.getLogger("cacheproxy.storage")

# What a remote store raises when it is down, slow or confused: each one is a miss, never a failed request.
STORE_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError, EOFError)


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures, stays open ``open_for`` seconds, then lets one probe through."""

    def __init__(self, clock: Clock, *, threshold: int = 5, open_for: float = 3.0) -> None:
        if threshold < 1:
            raise ValueError(f"breaker threshold must be at least 1, got {threshold}")
        self._clock = clock
        self._threshold = threshold
        self._open_for = open_for
        self._failures = 0
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probing = False
        self.probed_by_owner = False  # True while the owner sends the probe itself (``begin_probe``)

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self) -> bool:
        """May a call go through now? In half-open state only one probe at a time does (none when the owner
        probes)."""
        if self._state is BreakerState.CLOSED:
            return True
        if self.probed_by_owner:
            return False
        if self._state is BreakerState.OPEN:
            if self._clock.monotonic() - self._opened_at < self._open_for:
                return False
            self._state = BreakerState.HALF_OPEN
            self._probing = False
        if self._probing:
            return False
        self._probing = True
        return True

    def begin_probe(self, after: float | None = None) -> bool:
        """For the owner: has the breaker been open ``after`` seconds (default: its open period)? Then it is half-open
        and the probe is the owner's. An owner that probes with one cheap call may probe sooner than calls would."""
        wait = self._open_for if after is None else after
        if self._state is not BreakerState.OPEN or self._clock.monotonic() - self._opened_at < wait:
            return False
        self._state = BreakerState.HALF_OPEN
        self._probing = True
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._probing = False
        self._state = BreakerState.CLOSED

    def record_failure(self) -> None:
        self._failures += 1
        self._probing = False
        if self._state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            self._state = BreakerState.OPEN
            self._opened_at = self._clock.monotonic()


class Guard:
    """Runs store calls under a timeout and the breaker; counts, logs (rate-limited) and absorbs their failures."""

    def __init__(
        self, name: str, clock: Clock, breaker: CircuitBreaker | None = None, *, log_interval: float = 10.0
    ) -> None:
        self.name = name
        self.breaker = breaker or CircuitBreaker(clock)
        self._clock = clock
        self._log_interval = log_interval
        self._last_log: float | None = None
        self._suppressed = 0
        self._counts: dict[str, int] = {}
        self.errors = 0  # failures (errors and timeouts), not counting calls the open breaker skipped
        self.skipped = 0  # calls not made because the breaker was open

    @property
    def degraded(self) -> bool:
        return self.breaker.state is not BreakerState.CLOSED

    def error_counts(self) -> dict[str, int]:
        """Failures per operation (``get``, ``put``, ...), plus ``skipped`` for calls the open breaker refused."""
        return {**self._counts, "skipped": self.skipped}

    async def call(self, op: str, make: Callable[[], Awaitable[T]], timeout: float, fallback: T) -> T:
        """``await make()`` within ``timeout``; on failure (or an open breaker) return ``fallback``."""
        outcome = await self.attempt(op, make, timeout)
        return fallback if outcome is None else outcome[0]

    async def attempt(
        self, op: str, make: Callable[[], Awaitable[T]], timeout: float, *, probing: bool = False
    ) -> tuple[T] | None:
        """Like ``call``, but ``None`` says it failed or was skipped (for callers that must report it).

        ``probing``: a step of the owner's probe (``CircuitBreaker.begin_probe``): made whatever the breaker says,
        and its success does not close the breaker (the owner does, after its last step); a failure opens it.
        """
        if not probing and not self.breaker.allow():
            self.skipped += 1
            return None
        try:
            async with asyncio.timeout(timeout):
                result = await make()
        except STORE_FAILURES as exc:
            self.failed(op, exc)
            return None
        if not probing:
            self.breaker.record_success()
        return (result,)

    def failed(self, op: str, exc: BaseException) -> None:
        """Count and (at most once per interval) log one failure of ``op``."""
        self.errors += 1
        self._counts[op] = self._counts.get(op, 0) + 1
        self.breaker.record_failure()
        now = self._clock.monotonic()
        if self._last_log is not None and now - self._last_log < self._log_interval:
            self._suppressed += 1
            return
        detail = type(exc).__name__ if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        log.warning(
            "store %s: %s failed (%s); breaker %s; %d similar messages suppressed",
            self.name, op, detail, self.breaker.state.value, self._suppressed,
        )  # fmt: skip
        self._last_log = now
        self._suppressed = 0
