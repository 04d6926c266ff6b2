"""Logging set-up: plain text for people, one JSON object per line for log pipelines (``--log-format json``).

The access log does not go through ``logging`` per request: :class:`AccessLog` batches it (see there).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import sys
from collections.abc import Callable
from typing import Any

# Record attributes that are not the caller's ``extra=`` fields (uvicorn adds a terminal-coloured copy of its messages).
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")


def configure(log_format: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    silence_uvicorn_access()


class AccessLog:
    """The access log's writer: records are queued as they come and formatted and written in batches.

    The request path only appends a small record to a list (no formatting, no I/O, no lock). ``flush`` turns the
    pending records into lines with ``format_lines`` and writes them with as few system calls as possible, in order;
    ``run`` flushes every ``interval`` seconds, in slices of ``BATCH`` records with the event loop free between them,
    and once more when it is cancelled (lifespan shutdown, after uvicorn has finished every in-flight request on
    SIGTERM), so no line is lost. Lines are written in pieces of whole lines of at
    most ``PIPE_BUF`` bytes, so several workers sharing a pipe or an ``O_APPEND`` file never interleave inside a line.
    """

    PIECE = 4096  # PIPE_BUF on Linux: a write of at most this many bytes to a pipe is atomic
    BATCH = 256  # records formatted between two turns of the event loop (about 0.25 ms)

    def __init__(self, fd: int, format_lines: Callable[[list[Any]], list[str]], *, interval: float = 0.1) -> None:
        self.fd = fd
        self.format_lines = format_lines
        self.interval = interval
        self.pending: list[Any] = []
        self.append = self.pending.append  # bound once: the per-request cost is this one call

    def flush(self, most: int | None = None) -> None:
        """Write the pending records, the oldest ``most`` of them when given (the rest stay, in order)."""
        pending = self.pending
        if not pending:
            return
        if most is None or len(pending) <= most:
            records = pending[:]
            pending.clear()
        else:
            records = pending[:most]
            del pending[:most]
        lines = self.format_lines(records)
        lines.append("")
        data = "\n".join(lines).encode("utf-8", "backslashreplace")
        self._write(data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        start, end = 0, len(data)
        while start < end:
            cut = end if end - start <= self.PIECE else data.rfind(b"\n", start, start + self.PIECE) + 1
            if cut <= start:  # one line longer than a piece: written alone
                cut = data.index(b"\n", start) + 1
            while start < cut:
                try:
                    start += os.write(self.fd, view[start:cut])
                except InterruptedError:
                    continue
                except BlockingIOError:
                    select.select([], [self.fd], [])

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.interval)
                # In slices of BATCH records, the event loop answering requests between them: formatting a whole
                # interval's records at once (3,500 at 35,000 hits/s) held every request for milliseconds, ten times
                # a second, which was the hits' p99.
                while len(self.pending) > self.BATCH:
                    self._flush_or_complain(self.BATCH)
                    await asyncio.sleep(0)
                self._flush_or_complain()
        finally:
            self._flush_or_complain()

    def _flush_or_complain(self, most: int | None = None) -> None:
        """A batch that cannot be written (disk full, a closed pipe) is reported and dropped; the writer carries on."""
        try:
            self.flush(most)
        except Exception:
            logging.getLogger("cacheproxy").exception("access log: a batch of lines could not be written")


def open_access_log(target: str | None) -> int:
    """The file descriptor access lines go to: stderr (``None``, as the other logs), stdout (``-``) or a file."""
    if target is None or target == "":
        return sys.stderr.fileno()
    if target == "-":
        return sys.stdout.fileno()
    return os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def silence_uvicorn_access() -> None:
    """The proxy writes its own access line (``cacheproxy.access``, with the cache outcome); uvicorn's never.

    uvicorn's protocol writes its line only when ``uvicorn.access`` has a handler, through propagation included.
    A worker process configures logging after uvicorn did (in the app factory), so this must hold whatever order
    the two run in: otherwise ``--workers N`` logs every request twice and ``--no-access-log`` leaves one line.
    """
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
