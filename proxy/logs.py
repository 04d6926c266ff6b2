"""Logging set-up: plain text for people, one JSON object per line for log pipelines (``--log-format json``)."""

from __future__ import annotations

import json
import logging
import sys
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


def silence_uvicorn_access() -> None:
    """The proxy writes its own access line (``cacheproxy.access``, with the cache outcome); uvicorn's never.

    uvicorn's protocol writes its line only when ``uvicorn.access`` has a handler, through propagation included.
    A worker process configures logging after uvicorn did (in the app factory), so this must hold whatever order
    the two run in: otherwise ``--workers N`` logs every request twice and ``--no-access-log`` leaves one line.
    """
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
