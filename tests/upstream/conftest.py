"""Fixtures of the upstream contract suite: a scripted raw-bytes origin that counts its connections, and TLS.

``ScriptedOrigin`` answers each request with the bytes ``respond(target)`` returns (``None``: close without answer),
keeps connections open (HTTP/1.1 keep-alive) and records which connection carried each request, so a test can see
whether the client reused a connection. The TLS helpers make a private CA and a server certificate for 127.0.0.1
in the test, with ``cryptography``.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proxy.messages import Headers, RequestHead
from proxy.upstream import Upstream, UpstreamConfig
from tests.support.origin import RunningOrigin

Respond = Callable[[bytes], bytes | None]
MakeUpstream = Callable[..., Awaitable[Upstream]]
StartOrigin = Callable[..., Awaitable["ScriptedOrigin"]]
IMPLEMENTATIONS = [pytest.param(Upstream, id="httptools")]


def head(target: str = "/", method: str = "GET", headers: Any = (), **kw: Any) -> RequestHead:
    path, _, query = target.partition("?")
    defaults: dict[str, Any] = {"scheme": "http", "host": "client.example", "client": "192.0.2.7"}
    return RequestHead(method=method, path=path, query=query, headers=Headers(headers), **{**defaults, **kw})


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """Every contract test runs on both event loops: their transports differ (uvloop's are not asyncio's classes)."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=IMPLEMENTATIONS)
async def make_upstream(origin: RunningOrigin, request: pytest.FixtureRequest) -> AsyncIterator[MakeUpstream]:
    """Make and start an implementation of the origin port (default URL: the scripted uvicorn ``origin``)."""
    made: list[Upstream] = []
    implementation = request.param

    async def make(url: str | None = None, clock: Any = None, **config: Any) -> Upstream:
        cfg = UpstreamConfig(url or origin.url, **config)
        upstream = implementation(cfg) if clock is None else implementation(cfg, clock)
        await upstream.start()
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        await upstream.close()


@dataclass
class ScriptedOrigin:
    respond: Respond
    tls: ssl.SSLContext | None = None
    requests: list[tuple[int, bytes]] = field(default_factory=list)  # (connection number, request target)
    close_after: set[bytes] = field(default_factory=set)  # targets whose answer is followed by closing
    drained: list[bytes] = field(default_factory=list)  # targets whose whole answer the client has taken in
    connections: int = 0
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                target = head.split(b" ")[1]
                self.requests.append((number, target))
                answer = self.respond(target)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                self.drained.append(target)
                if target in self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def scripted() -> AsyncIterator[StartOrigin]:
    """Start a ``ScriptedOrigin``: ``await scripted(respond, tls=None)``."""
    started: list[ScriptedOrigin] = []

    async def start(respond: Respond, tls: ssl.SSLContext | None = None) -> ScriptedOrigin:
        origin = ScriptedOrigin(respond, tls)
        origin.server = await asyncio.start_server(origin.handle, "127.0.0.1", 0, ssl=tls)
        started.append(origin)
        return origin

    yield start
    for origin in started:
        assert origin.server is not None
        origin.server.close()
        await origin.server.wait_closed()


@dataclass(frozen=True)
class Certificates:
    ca_file: Path
    server: ssl.SSLContext


def make_certificates(directory: Path) -> Certificates:
    """A private CA and a certificate it signed for 127.0.0.1 and localhost, valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cacheproxy test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file = directory / "server.pem"
    cert_file.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file)
    return Certificates(ca_file, server)


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))
