"""Helpers of the edge's security tests (target, Host, trust): requests from a chosen loopback address."""

from __future__ import annotations

import http.client
import json
import socket

from tests.security.harness import RawResponse


def send_from(source: str, port: int, raw: bytes, *, timeout: float = 10.0) -> RawResponse:
    """Send exact bytes to the proxy from the loopback address ``source`` (e.g. ``127.0.0.6``, a sidecar's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock, method=raw.split(b" ", 1)[0].decode("latin-1"))
        response.begin()
        return RawResponse(response.status, response.getheaders(), response.read())


def get(path: str, host: str = "shop.example", *fields: str) -> bytes:
    """A GET in origin-form with one Host and any extra field lines."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def purge(url: str, host: str, content_type: str = "application/json", *fields: str) -> bytes:
    """``POST /_cacheproxy/purge`` with a JSON body naming ``url``."""
    body = json.dumps({"url": url}).encode()
    lines = ["POST /_cacheproxy/purge HTTP/1.1", f"Host: {host}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", *fields]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
