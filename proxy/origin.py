"""The origin port: the one thing the cache layer needs from an HTTP client, ``send(request) -> response``.

``proxy.cache`` imports this module and never an HTTP client library, so a scripted in-memory origin
(``tests/support/scripted_origin.py``) can stand behind the driver in tests, and swapping the client touches one module
(``proxy/upstream.py`` today, HTTP/1.1 on httptools). Whatever implements the port passes the upstream contract tests.

The contract, for every implementation:

- ``send`` forwards the request as ``proxy.forwarding`` builds it (target byte for byte, end-to-end fields, Via,
  X-Forwarded-*), follows no redirect and undoes no content coding (RFC 9110 §7.6);
- the response head has its hop-by-hop fields removed (RFC 9110 §7.6.1);
- a body that fits in ``read_limit`` (known or found to fit) is read whole into ``body``; a larger one is left to
  ``stream`` (``body`` is ``None``);
- failures raise the ``UpstreamError`` tree of ``proxy.errors`` (connect 502, timeout 504, protocol 502, busy 503),
  mapped from the client's own errors once, inside the implementation;
- a response whose body was read whole is complete: its connection is already back in the pool. One whose body is
  streamed must be released once it is no longer needed (``release`` is idempotent); releasing before the body was
  read to its end closes the connection instead of returning it to a pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from proxy.errors import UpstreamBusy, UpstreamConnectError, UpstreamError, UpstreamProtocolError, UpstreamTimeout
from proxy.messages import RequestHead, ResponseHead

__all__ = [
    "Origin",
    "OriginResponse",
    "UpstreamBusy",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamTimeout",
]

RequestBody = bytes | AsyncIterator[bytes] | None


class OriginResponse(Protocol):
    """The origin's answer to one request."""

    @property
    def head(self) -> ResponseHead:
        """Status and end-to-end fields (hop-by-hop fields already removed)."""
        ...

    @property
    def elapsed(self) -> float:
        """Seconds from sending the request to receiving the response head."""
        ...

    @property
    def body(self) -> bytes | None:
        """The whole body when it fit in ``read_limit``; ``None``: read it with ``stream``."""
        ...

    @property
    def complete(self) -> bool:
        """Whether the whole body was received (read whole, or streamed to its end)."""
        ...

    def stream(self) -> AsyncIterator[bytes]:
        """The body in chunks (the whole ``body`` at once when it was read); raises ``UpstreamError`` if it breaks off.

        Reaching the end releases the response; stopping early needs ``release``.
        """
        ...

    async def release(self) -> None:
        """Give the connection back (or close it when the body was not read to its end). Idempotent."""
        ...


class Origin(Protocol):
    """The one-method origin port."""

    async def send(
        self, request: RequestHead, body: RequestBody = None, *, read_limit: int | None = None
    ) -> OriginResponse:
        """Send ``request`` (with ``body``, streamed when it is an iterator) and read the response head, and the body
        when it fits in ``read_limit`` (``None``: the implementation's configured limit).
        """
        ...
