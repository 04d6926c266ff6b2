"""Purging: by URL (every variant), by path prefix, or by tag, from the admin API or the ``PURGE`` method.

``POST {prefix}/purge`` takes exactly one of ``{"url": ...}``, ``{"prefix": "/path/"}``, ``{"tag": "name"}`` and answers
``{"purged": N}``. A URL may be absolute or a path, resolved against the admin request's own scheme and ``Host``. Prefix
and tag purges run on every store the routes can pick. A store that fails raises ``StorageError``, answered 503, so a
deploy hook learns its purge did not happen; ``"queued": true`` in that answer says the store (Redis, unreachable)
queued it and applies it when it is back (``InvalidationQueued``), so the hook need not retry. Every worker sees the
purge because workers share the store (several workers with the per-process memory store are refused at start-up,
see ``proxy.config``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from proxy.admin.auth import forbid, is_allowed
from proxy.endpoint import Receive, Scope, Send, request_from_scope
from proxy.errors import InvalidationQueued, StorageError
from proxy.runtime import Runtime
from proxy.storage.base import Storage

if TYPE_CHECKING:
    from proxy.admin.observe import AdminObserver

Kind = Literal["url", "prefix", "tag"]
KINDS: tuple[Kind, ...] = ("url", "prefix", "tag")
MAX_BODY = 64 * 1024


class PurgeRequestError(ValueError):
    """The purge body is not one of the three accepted shapes (answered 400 with this message)."""


@dataclass(frozen=True)
class PurgeRequest:
    kind: Kind
    value: str


def parse_purge(body: bytes) -> PurgeRequest:
    """Read ``{"url"|"prefix"|"tag": "<non-empty string>"}``; anything else raises ``PurgeRequestError``."""
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as error:
        raise PurgeRequestError('body must be JSON: {"url": ...}, {"prefix": ...} or {"tag": ...}') from error
    if not isinstance(data, dict) or len(data) != 1 or next(iter(data)) not in KINDS:
        raise PurgeRequestError("body must have exactly one of the keys url, prefix, tag")
    kind: Kind = next(iter(data))
    value = data[kind]
    if not isinstance(value, str) or not value.strip():
        raise PurgeRequestError(f"{kind} must be a non-empty string")
    if kind == "prefix" and not value.startswith("/"):
        raise PurgeRequestError("prefix must be a path starting with /")
    return PurgeRequest(kind, value)


def absolute_url(url: str, scheme: str, host: str) -> str:
    """An absolute URL as given; a path (``/a?b``) resolved against the request's scheme and Host."""
    if url.startswith("/") and not url.startswith("//"):
        return f"{scheme}://{host}{url}"
    return url


def unavailable(error: StorageError) -> dict[str, object]:
    """The 503 body of a purge a store could not apply: whether the store queued it for when it is back."""
    return {"error": f"store unavailable: {error}", "queued": isinstance(error, InvalidationQueued)}


def distinct_stores(runtime: Runtime) -> list[Storage]:
    """Each store once, even when two names point at the same object."""
    return [store for _, store in distinct_named_stores(runtime)]


def distinct_named_stores(runtime: Runtime) -> list[tuple[str, Storage]]:
    """Each store once with the first name it goes by."""
    seen: dict[int, tuple[str, Storage]] = {}
    for name, store in runtime.stores.items():
        seen.setdefault(id(store), (name, store))
    return list(seen.values())


async def purge(runtime: Runtime, what: PurgeRequest, *, scheme: str, host: str) -> int:
    """Remove what ``what`` names; return how many entries went. Raises ``StorageError`` when a store failed."""
    # Through the cache driver, so fetches in flight do not store what the purge removes (RFC 9111 §4.4).
    if what.kind == "url":
        count = await runtime.service.invalidate([absolute_url(what.value, scheme, host)], strict=True)
    else:
        count = await runtime.service.purge(what.kind, what.value)
    observer = _observer(runtime)
    if observer is not None:
        observer.purged(what.kind, count)
    return count


def _observer(runtime: Runtime) -> AdminObserver | None:
    from proxy.admin.observe import AdminObserver

    return runtime.observer if isinstance(runtime.observer, AdminObserver) else None


async def _send_json(send: Send, status: int, payload: object) -> None:
    body = json.dumps(payload).encode() + b"\n"
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class PurgeMethod:
    """The ``PURGE <url>`` method (``--allow-purge-method``): purges that URL, from allowed clients only.

    The request's body is ignored; the answer is the same JSON as the admin API's. It never reaches the upstream.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_allowed(scope, self.runtime.settings.admin_token, self.runtime.settings.trusted):
            await forbid(send)
            return
        request = request_from_scope(scope)
        what = PurgeRequest("url", request.url)
        try:
            count = await purge(self.runtime, what, scheme=request.scheme, host=request.host)
        except StorageError as error:
            await _send_json(send, 503, unavailable(error))
            return
        await _send_json(send, 200, {"purged": count})


def build_purge_method(runtime: Runtime) -> PurgeMethod:
    return PurgeMethod(runtime)
