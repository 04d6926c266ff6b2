"""The soak test's origin: every body names its key and version, and the origin remembers when each version was made.

Routes (``{k}`` is any key):

- ``GET /v/{k}``: ``max-age=2`` with an ``ETag``; answers ``304`` to a matching ``If-None-Match``.
- ``GET /swr/{k}``: ``max-age=1, stale-while-revalidate=3, stale-if-error=30``.
- ``GET /private/{k}``: ``private``; the body names the client (``X-Client``), so a shared copy would show.
- ``GET /vary/{k}``: ``Vary: X-Variant``; the body names the variant.
- ``GET /slow/{k}``: answers after 0.5 s, ``max-age=2``.
- ``GET /fail/{k}``: every other request is a ``500`` (``no-store``).
- ``POST``/``PUT``/``DELETE`` on any of them: a new version of that key (``no-store`` answer).

The versions are kept per key as ``(version, made_at)`` on the soak's monotonic clock, so the checker can tell
whether a body it received was still current within the lifetime and stale windows that route allows.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CACHE_CONTROL = {
    "v": "max-age=2",
    "swr": "max-age=1, stale-while-revalidate=3, stale-if-error=30",
    "private": "private, max-age=60",
    "vary": "max-age=2",
    "slow": "max-age=2",
    "fail": "max-age=2",
}
UNSAFE = frozenset({"POST", "PUT", "DELETE", "PATCH"})


@dataclass
class Versions:
    """Every version the origin produced, per key, with the monotonic time it was made."""

    made: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    requests: int = 0

    def current(self, key: str) -> int:
        made = self.made[key]
        if not made:
            made.append(time.monotonic())
        return len(made) - 1

    def bump(self, key: str) -> int:
        self.current(key)
        self.made[key].append(time.monotonic())
        return len(self.made[key]) - 1

    def superseded_at(self, key: str, version: int) -> float | None:
        """When ``version`` of ``key`` stopped being current (``None`` while it still is)."""
        made = self.made.get(key, [])
        return made[version + 1] if version + 1 < len(made) else None

    def exists(self, key: str, version: int) -> bool:
        return 0 <= version < len(self.made.get(key, []))


class SoakOrigin:
    """A raw ASGI origin over ``Versions``."""

    def __init__(self, versions: Versions) -> None:
        self.versions = versions
        self._fail_flip: dict[str, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body", False):
            pass
        self.versions.requests += 1
        path: str = scope["path"]
        kind = path.split("/")[1] if path.count("/") >= 2 else ""
        if kind not in CACHE_CONTROL:
            await _reply(send, 404, b"no such route", [(b"cache-control", b"no-store")])
            return
        if scope["method"] in UNSAFE:
            version = self.versions.bump(path)
            await _reply(send, 200, f"key={path} version={version}".encode(), [(b"cache-control", b"no-store")])
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if kind == "slow":
            await asyncio.sleep(0.5)
        if kind == "fail":
            flip = self._fail_flip[path] = not self._fail_flip.get(path, False)
            if flip:
                await _reply(send, 500, b"origin failure", [(b"cache-control", b"no-store")])
                return
        version = self.versions.current(path)
        etag = f'"{abs(hash(path)) % 10**8}-{version}"'
        fields = [(b"cache-control", CACHE_CONTROL[kind].encode()), (b"etag", etag.encode())]
        if headers.get("if-none-match") == etag and kind == "v":
            await _reply(send, 304, b"", fields)
            return
        body = f"key={path} version={version}"
        if kind == "private":
            body += f" client={headers.get('x-client', '-')}"
        if kind == "vary":
            body += f" variant={headers.get('x-variant', '-')}"
            fields.append((b"vary", b"X-Variant"))
        await _reply(send, 200, body.encode(), fields)


async def _reply(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    fields = [*headers, (b"content-type", b"text/plain")]
    if status != 304:
        fields.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": fields})
    await send({"type": "http.response.body", "body": body})
