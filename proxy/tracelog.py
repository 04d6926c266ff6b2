"""Reading request traces: the proxy's own JSON access log, or a plain CSV (``timestamp,key,size[,ttl]``).

One reader for ``cacheproxy simulate`` and ``cacheproxy warm --from-log``. It streams: records come one at a time
from a file read line by line, so a log of ten million lines never sits in memory. The format is told by the first
non-blank byte: ``{`` means JSON lines (``--log-format json``), anything else CSV, with an optional header line.

From the JSON log only access-log lines are read (``logger`` ``cacheproxy.access``; other loggers share the stream)
and of those only lines with a ``key``: bypassed requests have none. The fields used are ``time``, ``key``, ``size``
(the response body's length), ``storable`` and ``path`` (the request target). A CSV line has no target: its key
stands in, and its requests are all storable. Lines that cannot be read are counted in ``TraceReader.skipped``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, NamedTuple


class Record(NamedTuple):
    time: float  # seconds since the epoch (JSON log) or as the CSV gives them
    key: str
    size: int  # response body bytes
    storable: bool
    target: str  # the request target for warming (the key for CSV traces)
    ttl: float | None = None  # CSV only: entries expire this many seconds after they are stored


class TraceReader:
    """Iterate ``Record`` of one trace file; ``bytes_read`` (for a progress bar) and ``skipped`` grow as it goes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.size = self.path.stat().st_size
        self.bytes_read = 0
        self.skipped = 0
        self._times: tuple[str, float] = ("", 0.0)  # the last JSON time string parsed: lines share seconds

    def __iter__(self) -> Iterator[Record]:
        with self.path.open("rb") as stream:
            first = _first_byte(stream)
            yield from self._json(stream) if first == b"{" else self._csv(stream)

    def _json(self, stream: IO[bytes]) -> Iterator[Record]:
        for line in stream:
            self.bytes_read += len(line)
            if b'"cacheproxy.access"' not in line:
                continue
            try:
                fields = json.loads(line)
                key = fields.get("key")
                if not key:
                    continue
                yield Record(
                    self._time(str(fields.get("time", ""))),
                    str(key),
                    int(fields.get("size") or 0),
                    bool(fields.get("storable", True)),
                    str(fields.get("path") or key),
                )
            except (ValueError, TypeError, AttributeError):
                self.skipped += 1

    def _csv(self, stream: IO[bytes]) -> Iterator[Record]:
        for number, line in enumerate(stream):
            self.bytes_read += len(line)
            parts = line.strip().split(b",")
            if not parts[0] or (number == 0 and parts[0].strip().lower() == b"timestamp"):
                continue  # a blank line, or the header
            try:
                ttl = float(parts[3]) if len(parts) > 3 and parts[3].strip() else None
                key = parts[1].strip().decode()
                yield Record(float(parts[0]), key, int(parts[2]), True, key, ttl)
            except (ValueError, IndexError, UnicodeDecodeError):
                self.skipped += 1

    def _time(self, text: str) -> float:
        last, value = self._times
        if text != last:
            value = datetime.fromisoformat(text).timestamp() if text else 0.0
            self._times = (text, value)
        return value


def _first_byte(stream: IO[bytes]) -> bytes:
    """The first non-blank byte, leaving the stream at the start."""
    while True:
        chunk = stream.read(1)
        if not chunk or not chunk.isspace():
            stream.seek(0)
            return chunk


def top_targets(path: str | Path, n: int) -> list[str]:
    """The ``n`` most requested storable targets of a trace, most requested first (ties: first seen first).

    Memory grows with the number of distinct targets, not with the length of the log.
    """
    counts: Counter[str] = Counter(record.target for record in TraceReader(path) if record.storable)
    return [target for target, _ in counts.most_common(n)]
