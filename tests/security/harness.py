"""Raw-socket tools for the security tests: a recording upstream and a client that sends exact bytes.

No HTTP client library stands between the test and the proxy: requests are bytes written to a socket, so nothing
normalises a repeated ``Host``, an absolute-form target or a malformed field before the proxy sees it. The upstream is
a plain TCP server in a thread that records the exact bytes of every request it receives and answers with bytes the
test chooses.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import socketserver
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.servers import free_port, run_process

CRLF = b"\r\n"


@dataclass
class Received:
    """One request as the upstream read it off the wire."""

    head: bytes
    body: bytes
    trailers: bytes = b""  # the raw trailer section of a chunked body (never part of ``head``)

    @property
    def request_line(self) -> bytes:
        return self.head.split(CRLF, 1)[0]

    @property
    def target(self) -> bytes:
        return self.request_line.split(b" ")[1]

    def header_values(self, name: str) -> list[bytes]:
        """Every value of field ``name`` (case-insensitive), in order, as bytes."""
        wanted = name.lower().encode()
        out = []
        for line in self.head.split(CRLF)[1:]:
            if b":" in line:
                key, _, value = line.partition(b":")
                if key.strip().lower() == wanted:
                    out.append(value.strip())
        return out


def response_bytes(
    status: int = 200,
    body: bytes = b"ok",
    headers: Sequence[tuple[str, str]] = (("Cache-Control", "max-age=60"),),
) -> bytes:
    """A complete HTTP/1.1 response with a Content-Length."""
    lines = [f"HTTP/1.1 {status} {http.client.responses.get(status, 'X')}".encode()]
    lines += [f"{k}: {v}".encode("latin-1") for k, v in headers]
    lines.append(f"Content-Length: {len(body)}".encode())
    return CRLF.join(lines) + CRLF + CRLF + body


Responder = Callable[[Received], bytes]


def echo_target(received: Received) -> bytes:
    """The default answer: cacheable, and the body names the target the upstream saw."""
    return response_bytes(body=b"upstream saw " + received.target)


@dataclass
class RecordingUpstream:
    """A keep-alive HTTP/1.1 upstream in a thread that records every request it reads, byte for byte."""

    respond: Responder = echo_target
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: socketserver.ThreadingTCPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        upstream = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream._serve_connection(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = int(server.server_address[1])
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

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
                body, trailers, buffer = _read_body(sock, head, buffer)
                received = Received(head, body, trailers)
                self.received.append(received)
                sock.sendall(self.respond(received))


def _read_body(sock: socket.socket, head: bytes, buffer: bytes) -> tuple[bytes, bytes, bytes]:
    """The body, the raw trailer section (chunked bodies only) and the bytes that follow the request."""
    fields = {}
    for line in head.split(CRLF)[1:]:
        key, _, value = line.partition(b":")
        fields[key.strip().lower()] = value.strip()
    if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while True:
            while CRLF not in buffer:
                buffer += sock.recv(65536)
            size_line, _, buffer = buffer.partition(CRLF)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                # the trailer section: field lines until an empty line (just CRLF when there are none)
                while not buffer.startswith(CRLF) and CRLF + CRLF not in buffer:
                    buffer += sock.recv(65536)
                if buffer.startswith(CRLF):
                    return body, b"", buffer[2:]
                trailers, _, buffer = buffer.partition(CRLF + CRLF)
                return body, trailers, buffer
            while len(buffer) < size + 2:
                buffer += sock.recv(65536)
            body += buffer[:size]
            buffer = buffer[size + 2 :]
    length = int(fields.get(b"content-length", b"0") or 0)
    while len(buffer) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
    return buffer[:length], b"", buffer[length:]


@contextlib.contextmanager
def recording_upstream(respond: Responder = echo_target) -> Iterator[RecordingUpstream]:
    upstream = RecordingUpstream(respond)
    upstream.start()
    try:
        yield upstream
    finally:
        upstream.stop()


@dataclass
class ProxyProcess:
    """A ``cacheproxy serve`` process on a free loopback port."""

    port: int
    pid: int
    rules: Path

    def send(self, raw: bytes, *, timeout: float = 10.0) -> RawResponse:
        """Write ``raw`` on a new connection and read one response."""
        return send_raw(self.port, raw, timeout=timeout)


def serve_command(upstream: str, port: int, rules: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "proxy", "serve", "--upstream", upstream, "--port", str(port), "--rules", str(rules),
            "--no-access-log", *extra]  # fmt: skip


DEFAULT_RULES = """\
defaults:
  ttl: 60s
routes:
  - name: account
    match:
      path: /account/**
    bypass: true
  - name: everything
    match:
      path: /**
"""


@contextlib.contextmanager
def proxy_process(
    upstream: str, *extra: str, rules: str = DEFAULT_RULES, env: dict[str, str] | None = None
) -> Iterator[ProxyProcess]:
    """Start the proxy as a real process in front of ``upstream``; stop it by its PID afterwards."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        rules_path = Path(tmp) / "rules.yaml"
        rules_path.write_text(rules)
        environment = {"PYTHONPATH": os.getcwd(), **(env or {})}
        ready = f"http://127.0.0.1:{port}/_cacheproxy/healthz"
        with run_process(serve_command(upstream, port, rules_path, *extra), ready_url=ready, env=environment,
                         timeout=60) as proc:  # fmt: skip
            yield ProxyProcess(port, proc.pid, rules_path)


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def send_raw(port: int, raw: bytes, *, timeout: float = 10.0, host: str = "127.0.0.1") -> RawResponse:
    """Send exact bytes on a fresh connection and parse one response (``http.client`` reads, it does not write)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock, method=raw.split(b" ", 1)[0].decode("latin-1"))
        response.begin()
        body = response.read()
        return RawResponse(response.status, response.getheaders(), body)


def wait_until(predicate: Callable[[], bool], *, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
