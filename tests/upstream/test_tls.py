"""TLS to an ``https://`` origin: verified by default (stdlib ``ssl``), ``--upstream-ca`` for a private CA.

The CA and the origin's certificate are made in the test (``conftest.make_certificates``); nothing is trusted that the
system does not already trust, unless it is named with ``ca_file`` / ``--upstream-ca``.
"""

from __future__ import annotations

import os
import ssl
import sys

import httpx
import pytest

from proxy.cli import main
from proxy.errors import UpstreamConnectError
from tests.support.servers import free_port, run_process
from tests.upstream.conftest import Certificates, MakeUpstream, StartOrigin, head

OK = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 6\r\n\r\nsecret"


async def test_tls_private_ca_verified_and_kept_alive(
    scripted: StartOrigin, make_upstream: MakeUpstream, certificates: Certificates
) -> None:
    origin = await scripted(lambda _target: OK, tls=certificates.server)
    upstream = await make_upstream(origin.url, ca_file=str(certificates.ca_file))
    for _ in range(2):
        async with await upstream.send(head("/s")) as response:
            assert (response.head.status, response.body) == (200, b"secret")
    assert [number for number, _ in origin.requests] == [1, 1]


async def test_tls_hostname_checked_against_certificate(
    scripted: StartOrigin, make_upstream: MakeUpstream, certificates: Certificates
) -> None:
    origin = await scripted(lambda _target: OK, tls=certificates.server)
    upstream = await make_upstream(f"https://localhost:{origin.port}", ca_file=str(certificates.ca_file))
    async with await upstream.send(head("/s")) as response:
        assert response.body == b"secret"


async def test_tls_unknown_ca_refused_by_default(
    scripted: StartOrigin, make_upstream: MakeUpstream, certificates: Certificates
) -> None:
    origin = await scripted(lambda _target: OK, tls=certificates.server)
    upstream = await make_upstream(origin.url)
    with pytest.raises(UpstreamConnectError) as caught:
        await upstream.send(head("/s"))
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert origin.requests == []


async def test_cli_upstream_ca_reaches_the_client(scripted: StartOrigin, certificates: Certificates) -> None:
    """A real proxy process in front of a TLS origin with a private CA: ``--upstream-ca`` makes it trusted."""
    origin = await scripted(lambda _target: OK, tls=certificates.server)
    port = free_port()
    command = [sys.executable, "-m", "proxy", "serve", "--upstream", origin.url, "--port", str(port),
               "--upstream-ca", str(certificates.ca_file), "--no-access-log"]  # fmt: skip
    ready = f"http://127.0.0.1:{port}/_cacheproxy/healthz"
    with run_process(command, ready_url=ready, env={"PYTHONPATH": os.getcwd()}):
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"http://127.0.0.1:{port}/tls")
    assert (response.status_code, response.text) == (200, "secret")
    assert [target for _, target in origin.requests] == [b"/tls"]


def test_cli_upstream_ca_missing_file_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--upstream", "https://127.0.0.1:1", "--upstream-ca", "/nonexistent/ca.pem"])
    assert code == 2
    assert "--upstream-ca" in capsys.readouterr().err
