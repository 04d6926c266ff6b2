"""What purge by prefix compares, the same for every store."""

from __future__ import annotations

from urllib.parse import urlsplit


def url_path(url: str) -> str:
    """The part of an absolute URL after scheme and host (path, ``?query``)."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path
