"""Single-flight: one upstream fetch per cache key at a time, within a process and, with a lease, across processes.

The first request for a key becomes the leader and runs the fetch in its own task, so the leader's client going away
does not cancel what the followers wait on. The leader publishes one ``Outcome`` as early as it can:

- ``Shared(entry)`` once a storable response is stored: each follower checks that the entry suits its own request
  (Vary, Authorization) and serves it, or goes upstream itself;
- ``NotShared(reason)`` as soon as the leader knows its response is not for others (private, Set-Cookie, too large to
  store...): followers go upstream at once, in parallel, not queued behind one another;
- ``Failed(error)`` when the upstream failed: every follower answers with the same error (or its stale entry).

Followers wait at most the route's coalescing timeout. Outcomes are immutable snapshots; nothing is awaited while the
flight table is being changed. An invalidation detaches the flights it covers (``detach``): they run on for their
own clients and followers, but a request that arrives after the invalidation leads a new flight (RFC 9111 §4.4).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.errors import UpstreamError
from proxy.messages import Entry
from proxy.rfc.decisions import Reason
from proxy.storage.abilities import Lease

__all__ = ["Coalescer", "Failed", "Flight", "Lease", "NotShared", "Outcome", "Shared", "run_detached"]


@dataclass(frozen=True, slots=True)
class Shared:
    entry: Entry


@dataclass(frozen=True, slots=True)
class NotShared:
    reason: Reason


@dataclass(frozen=True, slots=True)
class Failed:
    """The upstream failed. ``shared``: followers answer with the same error; otherwise they try themselves."""

    error: UpstreamError
    shared: bool = True


Outcome = Shared | NotShared | Failed


class Flight:
    """One in-progress fetch for a key. ``publish`` may be called many times; only the first outcome counts."""

    __slots__ = ("_future", "background", "key", "path")

    def __init__(self, key: str, path: str = "") -> None:
        self.key = key
        self.path = path  # the URL path (and query) fetched, for prefix invalidation
        self.background = False  # a stale-while-revalidate refresh: requests are served stale, not held for it
        self._future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    def publish(self, outcome: Outcome) -> None:
        if not self._future.done():
            self._future.set_result(outcome)

    @property
    def outcome(self) -> Outcome | None:
        return self._future.result() if self._future.done() else None

    async def wait(self, timeout: float) -> Outcome | None:
        """The leader's outcome, or ``None`` when ``timeout`` passed first."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._future), timeout)
        except TimeoutError:
            return None


class Coalescer:
    """The table of flights of one process.

    It also remembers, for ``hit_for_miss`` seconds, the keys whose last fetch was not for sharing (private,
    Set-Cookie, too large...): requests for them go upstream at once, side by side, instead of queueing behind a
    new leader only to be told again that its response is not for them (Varnish's hit-for-miss).
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK, *, hit_for_miss: float = 10.0, memory: int = 10_000) -> None:
        self._flights: dict[str, Flight] = {}
        self._unshared: OrderedDict[str, float] = OrderedDict()  # key -> until (monotonic)
        self._clock = clock
        self._hit_for_miss = hit_for_miss
        self._memory = memory

    def __len__(self) -> int:
        return len(self._flights)

    def join(self, key: str, path: str = "") -> tuple[Flight, bool]:
        """The flight for ``key`` and whether the caller leads it (True) or follows (False)."""
        flight = self._flights.get(key)
        if flight is not None:
            return flight, False
        flight = Flight(key, path)
        self._flights[key] = flight
        return flight, True

    def finish(self, flight: Flight, default: Outcome) -> None:
        """End ``flight``: publish ``default`` if the leader published nothing, and forget it."""
        flight.publish(default)
        if self._flights.get(flight.key) is not flight:
            return  # detached by an invalidation: what it learnt about the key is out of date
        del self._flights[flight.key]
        outcome = flight.outcome
        if isinstance(outcome, NotShared) and outcome.reason is not Reason.INVALIDATED:
            self._unshared[flight.key] = self._clock.monotonic() + self._hit_for_miss
            self._unshared.move_to_end(flight.key)
            if len(self._unshared) > self._memory:
                self._unshared.popitem(last=False)
        else:
            self._unshared.pop(flight.key, None)

    def is_unshared(self, key: str) -> bool:
        """The key's last fetch was not shareable, recently: fetch without a flight."""
        until = self._unshared.get(key)
        if until is None:
            return False
        if until <= self._clock.monotonic():
            del self._unshared[key]
            return False
        return True

    def detach(self, covers: Callable[[Flight], bool]) -> int:
        """Forget the flights ``covers`` picks (an invalidation covers them): newcomers lead new flights. Each
        detached flight still ends through ``finish``, which then leaves the table alone."""
        doomed = [key for key, flight in self._flights.items() if covers(flight)]
        for key in doomed:
            del self._flights[key]
        return len(doomed)

    def current(self, key: str) -> Flight | None:
        """The flight in progress for ``key``, if any."""
        return self._flights.get(key)


T = TypeVar("T")


async def run_detached(work: Callable[[], Awaitable[T]], tasks: set[asyncio.Task[T]]) -> T:
    """Run ``work`` in its own task so that cancelling the caller (a client that went away) does not cancel it.

    The task is kept in ``tasks`` until it ends, so shutdown can wait for or cancel it.
    """
    task = asyncio.ensure_future(work())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return await asyncio.shield(task)
