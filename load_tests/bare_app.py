"""The yardstick: a bare ASGI app under uvicorn that answers every request with the bytes of a proxy hit.

Same status, the same header lines (the origin's ``date``, ``server``, ``content-type``, ``content-length``,
``cache-control`` and ``etag``, then the proxy's ``via``, ``age`` and ``cache-status``) and the same 1 KiB body as a
hit on ``/cached``, all prepared once at import. Whatever the proxy does per hit beyond sending these bytes shows up as
the gap between the two in ``bench_proxy.py``.

Run it as ``uvicorn load_tests.bare_app:app --loop uvloop --http httptools --no-server-header --no-date-header`` (the
``server`` and ``date`` lines are part of the fixed list, as they are of a stored entry).
"""

from __future__ import annotations

from email.utils import formatdate

from load_tests.origin_app import BODY, CACHED_HEADERS, Receive, Scope, Send, lifespan

HEADERS = [
    (b"date", formatdate(usegmt=True).encode()),
    (b"server", b"uvicorn"),
    *CACHED_HEADERS,
    (b"via", b"1.1 cacheproxy"),
    (b"age", b"1"),
    (b"cache-status", b"cacheproxy; hit; ttl=3598"),
]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer any HTTP request with the fixed hit; acknowledge lifespan messages."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
