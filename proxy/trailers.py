"""Request trailers never become request headers: uvicorn's httptools protocol, with the trailer section dropped.

llhttp reports the fields of a chunked body's trailer section (RFC 9112 §7.1.2) through the same ``on_header``
callback as the header section, and uvicorn's ``HttpToolsProtocol`` appends them to the list the ASGI scope holds as
``headers``. When the whole request arrives at once, the application starts after the parser has read the trailers,
so ``Authorization:`` or ``Cookie:`` sent after the last chunk would reach the scope, the cache key and the upstream
as if they were header fields. RFC 9110 §6.5.1 lets a recipient discard trailer fields it does not understand; the
proxy understands none, so it discards all of them here, at the depth where they are parsed, and the application
never sees them.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class TrailerlessProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that ignores every field line after the header section of each message."""

    _past_head = False

    def on_message_begin(self) -> None:
        self._past_head = False
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._past_head:
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._past_head = True
        super().on_headers_complete()
