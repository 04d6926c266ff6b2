"""Helpers of the cache-key security tests (``test_key_poisoning.py``), on top of ``harness.py``.

``ChunkedRecordingUpstream`` is the harness's recording upstream with a chunked request reader that also accepts a
chunked body without trailers (``0`` CRLF CRLF), which is what the proxy's upstream client sends for a streamed body.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
from collections.abc import Iterator

from tests.security.harness import CRLF, RawResponse, Received, RecordingUpstream, Responder, echo_target


def read_chunked(sock: socket.socket, buffer: bytes) -> tuple[bytes, bytes, bytes]:
    """Read a chunked body (RFC 9112 §7.1): the body, the raw trailer section, and what follows it."""
    body = b""
    while True:
        while CRLF not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside a chunk size line")
            buffer += chunk
        size_line, _, buffer = buffer.partition(CRLF)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            while not buffer.startswith(CRLF) and CRLF + CRLF not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed inside the trailer section")
                buffer += chunk
            if buffer.startswith(CRLF):
                return body, b"", buffer[2:]
            trailers, _, rest = buffer.partition(CRLF + CRLF)
            return body, trailers, rest
        while len(buffer) < size + 2:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside a chunk")
            buffer += chunk
        body += buffer[:size]
        buffer = buffer[size + 2 :]


def _fields(head: bytes) -> dict[bytes, bytes]:
    fields = {}
    for line in head.split(CRLF)[1:]:
        key, _, value = line.partition(b":")
        fields[key.strip().lower()] = value.strip()
    return fields


class ChunkedRecordingUpstream(RecordingUpstream):
    """The harness's upstream; a chunked request's trailer section is kept in ``trailers`` (never in the head)."""

    trailers: list[bytes]

    def _serve_connection(self, sock: socket.socket) -> None:
        sock.settimeout(30)
        buffer = b""
        with contextlib.suppress(OSError):
            while True:
                while CRLF + CRLF not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(CRLF + CRLF)
                fields = _fields(head)
                if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
                    body, trailers, buffer = read_chunked(sock, buffer)
                    self.trailers.append(trailers)
                else:
                    length = int(fields.get(b"content-length", b"0") or 0)
                    while len(buffer) < length:
                        chunk = sock.recv(65536)
                        if not chunk:
                            return
                        buffer += chunk
                    body, buffer = buffer[:length], buffer[length:]
                received = Received(head, body)
                self.received.append(received)
                sock.sendall(self.respond(received))


@contextlib.contextmanager
def chunked_recording_upstream(respond: Responder = echo_target) -> Iterator[ChunkedRecordingUpstream]:
    upstream = ChunkedRecordingUpstream(respond)
    upstream.trailers = []
    upstream.start()
    try:
        yield upstream
    finally:
        upstream.stop()


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
