"""``cacheproxy simulate``: replay a trace through the eviction policies to size the cache from real traffic.

The trace (``proxy.tracelog``: the proxy's JSON access log or a ``timestamp,key,size[,ttl]`` CSV) is read once, in
chunks, and every chunk is replayed through one ``Replay`` per policy and budget, so memory holds one chunk and the
policies' own state, never the whole trace. A ``Replay`` drives the same policy classes the memory store uses
(``proxy.storage.eviction``) the way the store does: a hit touches the key (``lookup``), a miss inserts it charged
its body plus ``overhead`` (the store charges headers, URL and 256 bytes on top of the body), and victims leave until
the bytes fit.
The clock is the trace's own: with a CSV ``ttl`` column an entry expires that long after it was stored, its next
request is a miss, and an expired victim is not counted as an eviction (as in the store). Requests the log marks
not storable are counted but not replayed: no policy could have served them.

Figures per policy and budget: object hit ratio (hits / replayed requests), byte hit ratio (bytes served from cache /
bytes requested), evictions, and origin bytes saved (the bytes of the hits).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from proxy.storage.eviction import check_policy, make_policy
from proxy.tracelog import Record, TraceReader

if TYPE_CHECKING:
    from tqdm import tqdm

CHUNK = 65_536  # records replayed per policy at a time
DEFAULT_BUDGETS = "16MiB,64MiB,256MiB"
PROGRESS_DELAY = 2.0  # seconds of replay before the progress bar shows: short replays print only the table
DEFAULT_OVERHEAD = 512  # bytes charged per entry beyond the body: ~ the memory store's headers, URL and 256 bytes


@dataclass(frozen=True)
class Result:
    policy: str
    budget: int
    requests: int
    hits: int
    bytes_requested: int
    bytes_hit: int
    evictions: int
    ghost_hits: int
    seconds: float  # CPU time spent in this replay's policy operations (the machine may be shared)

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def byte_hit_ratio(self) -> float:
        return self.bytes_hit / self.bytes_requested if self.bytes_requested else 0.0


class Replay:
    """One policy at one budget, fed chunks of records in trace order."""

    def __init__(self, policy: str, budget: int, overhead: int = DEFAULT_OVERHEAD) -> None:
        self.name = policy
        self.budget = budget
        self.overhead = overhead
        self.policy = make_policy(policy, budget)
        self.expires: dict[str, float] = {}  # keys stored with a ttl -> when they expire (simulated clock)
        self.requests = self.hits = self.bytes_requested = self.bytes_hit = self.evictions = 0
        self.seconds = 0.0

    def feed(self, chunk: Sequence[Record]) -> None:
        started = time.process_time()
        policy, expires, budget, overhead = self.policy, self.expires, self.budget, self.overhead
        lookup, insert, evict, remove = policy.lookup, policy.insert, policy.evict, policy.remove
        hits = hit_bytes = requested = evictions = 0
        for now, key, size, _storable, _target, ttl in chunk:
            requested += size
            if lookup(key):
                if not expires or expires.get(key, now + 1) > now:
                    hits += 1
                    hit_bytes += size
                    continue
                remove(key)  # expired: this request is a miss, and the drop is not an eviction
                del expires[key]
            charged = size + overhead
            if charged > budget:
                continue
            insert(key, charged)
            if ttl is not None:
                expires[key] = now + ttl
            while policy.used > budget:
                doomed, _queue = evict()
                if not expires or expires.pop(doomed, now + 1) > now:
                    evictions += 1
        self.requests += len(chunk)
        self.hits += hits
        self.bytes_hit += hit_bytes
        self.bytes_requested += requested
        self.evictions += evictions
        self.seconds += time.process_time() - started

    def result(self) -> Result:
        return Result(
            self.name, self.budget, self.requests, self.hits, self.bytes_requested, self.bytes_hit,
            self.evictions, self.policy.ghost_hits, self.seconds,
        )  # fmt: skip


@dataclass(frozen=True)
class Report:
    results: list[Result]
    records: int  # storable records replayed
    not_storable: int
    skipped: int  # unreadable lines
    first: float | None  # trace time of the first and last record
    last: float | None
    read_seconds: float  # CPU time reading and parsing the trace


def simulate(
    path: str | Path,
    policies: Sequence[str],
    budgets: Sequence[int],
    *,
    overhead: int = DEFAULT_OVERHEAD,
    progress: bool | None = None,
) -> Report:
    """Replay the trace at ``path`` through each policy at each budget; a progress bar when stderr is a TTY."""
    for name in policies:
        check_policy(name)
    replays = [Replay(name, budget, overhead) for name in policies for budget in budgets]
    reader = TraceReader(path)
    bar = _progress(reader.size, progress)
    records = not_storable = 0
    first = last = None
    chunk: list[Record] = []
    started = time.process_time()
    for chunk in _chunks(reader, CHUNK):
        if first is None:
            first = chunk[0].time
        last = chunk[-1].time
        storable = [record for record in chunk if record.storable]
        not_storable += len(chunk) - len(storable)
        records += len(storable)
        for replay in replays:
            replay.feed(storable)
        if bar is not None:
            bar.update(reader.bytes_read - bar.n)
    if bar is not None:
        bar.close()
    replaying = sum(replay.seconds for replay in replays)
    read_seconds = max(time.process_time() - started - replaying, 0.0)
    results = [replay.result() for replay in replays]
    return Report(results, records, not_storable, reader.skipped, first, last, read_seconds)


def _chunks(records: Iterable[Record], size: int) -> Iterable[list[Record]]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _progress(total: int, wanted: bool | None) -> tqdm[NoReturn] | None:
    if wanted is None:
        wanted = sys.stderr.isatty()
    if not wanted:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total, unit="B", unit_scale=True, desc="replaying", file=sys.stderr, leave=False, delay=PROGRESS_DELAY
    )


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def format_table(report: Report) -> str:
    """The text table: one row per policy and budget, budgets grouped, the best object hit ratio marked."""
    lines = [
        f"{report.records:,} storable requests replayed ({report.not_storable:,} not storable, "
        f"{report.skipped:,} unreadable lines skipped)",
        "",
        f"{'budget':>10}  {'policy':<7} {'hit ratio':>9} {'byte hit':>9} {'evictions':>11} {'origin saved':>13}",
    ]
    for budget in dict.fromkeys(r.budget for r in report.results):
        rows = [r for r in report.results if r.budget == budget]
        best = max(r.hit_ratio for r in rows)
        for r in rows:
            mark = " *" if r.hit_ratio == best and len(rows) > 1 else ""
            lines.append(
                f"{human(budget):>10}  {r.policy:<7} {r.hit_ratio:>9.4f} {r.byte_hit_ratio:>9.4f} "
                f"{r.evictions:>11,} {human(r.bytes_hit):>13}{mark}"
            )
    speeds = []
    for name in dict.fromkeys(r.policy for r in report.results):
        rows = [r for r in report.results if r.policy == name]
        seconds = sum(r.seconds for r in rows)
        if seconds > 0:
            speeds.append(f"{name} {sum(r.requests for r in rows) / seconds:,.0f}/s")
    if speeds:
        lines += ["", "replay speed, requests per CPU second per policy: " + ", ".join(speeds)]
    if report.read_seconds > 0:
        lines.append(f"reading the trace: {(report.records + report.not_storable) / report.read_seconds:,.0f} lines/s")
    return "\n".join(lines)


def plot(report: Report, out: Path) -> None:
    """Hit ratio and byte hit ratio against budget, one line per policy (needs the ``plot`` extra: matplotlib).

    ``ImportError`` without matplotlib; the format follows the file name (``.png``, ``.svg``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (objects, volume) = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for name in dict.fromkeys(r.policy for r in report.results):
        rows = sorted((r for r in report.results if r.policy == name), key=lambda r: r.budget)
        budgets = [r.budget / 2**20 for r in rows]
        objects.plot(budgets, [r.hit_ratio for r in rows], marker="o", label=name)
        volume.plot(budgets, [r.byte_hit_ratio for r in rows], marker="o", label=name)
    budgets = sorted({r.budget for r in report.results})
    for axes, title in ((objects, "object hit ratio"), (volume, "byte hit ratio")):
        axes.set_xscale("log", base=2)
        axes.set_xticks([b / 2**20 for b in budgets], [human(b) for b in budgets])
        axes.minorticks_off()
        axes.set_xlabel("budget")
        axes.set_title(title)
        axes.set_ylim(0, 1)
        axes.grid(True, alpha=0.3)
    objects.legend()
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
