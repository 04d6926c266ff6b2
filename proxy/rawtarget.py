"""Keep the request-target bytes the client sent, for the edge's one parse (``proxy.head``).

uvicorn's httptools protocol fills ``raw_path`` with only the path of the target: for ``GET http://other.example/x``
it gives ``/x``, so the app could not tell an absolute-form target for another authority from an origin-form one
(RFC 9112 §3.2.2 requires refusing it). This mixin leaves the whole target in ``scope["extensions"]``.

It also keeps uvicorn from raising inside the parser on an absolute-form target without a path
(``GET http://host HTTP/1.1``): the scope gets ``/`` as its path and the edge reads the real target.
"""

from __future__ import annotations

from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy.head import RAW_TARGET


class RawTargetMixin:
    """Put the raw target in the scope before uvicorn builds the request from it. Combine with any
    ``HttpToolsProtocol`` subclass: ``class Protocol(RawTargetMixin, OtherProtocol)``, or, to let the other class's
    checks see the target as sent, just above uvicorn's class (``proxy.server.EdgeProtocol`` does so for the limits).
    """

    url: bytes
    scope: Any

    def on_headers_complete(self) -> None:
        raw = self.url
        extensions = self.scope.setdefault("extensions", {})
        extensions[RAW_TARGET] = raw
        if not raw.startswith(b"/"):  # origin-form always has its path
            try:
                if httptools.parse_url(raw).path is None:
                    self.url = b"/"
            except httptools.HttpParserError:
                pass  # uvicorn answers 400 for a target it cannot parse
        super().on_headers_complete()  # type: ignore[misc]


class RawTargetProtocol(RawTargetMixin, HttpToolsProtocol):
    """uvicorn's httptools protocol, keeping the raw request-target (pass as ``http=`` to ``uvicorn.Config``)."""
