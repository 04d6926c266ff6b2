"""Helpers of the cache-key security tests (``test_key_poisoning.py``), on top of ``harness.py``.

``send_on_one_connection`` sends several requests in turn on one keep-alive connection.
"""

from __future__ import annotations

import http.client
import socket

from tests.security.harness import RawResponse


def send_on_one_connection(port: int, *requests: bytes, timeout: float = 10.0) -> list[RawResponse]:
    """Send each request in turn on one keep-alive connection, reading its response before sending the next."""
    out: list[RawResponse] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        for raw in requests:
            sock.sendall(raw)
            response = http.client.HTTPResponse(sock, method=raw.split(b" ", 1)[0].decode("latin-1"))
            response.begin()
            out.append(RawResponse(response.status, response.getheaders(), response.read()))
    return out
