"""A reverse proxy that forwards everything correctly: through the real proxy under uvicorn to a real origin."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Proxied, run_proxy
from tests.support.origin import RunningOrigin
from tests.support.servers import free_port


async def echo(proxy: Proxied, method: str, target: str, **kw: object) -> dict[str, object]:
    response = await proxy.client.request(method, target, **kw)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


def header(data: dict[str, object], name: str) -> list[str]:
    pairs = data["headers"]
    assert isinstance(pairs, list)
    return [v for k, v in pairs if k.lower() == name.lower()]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_rfc9110_every_method_reaches_upstream(proxy: Proxied, method: str) -> None:
    data = await echo(proxy, method, "/echo")
    assert data["method"] == method


async def test_rfc9110_percent_encoding_preserved_byte_for_byte(proxy: Proxied) -> None:
    raw = "/echo/a%2Fb/%7Euser/caf%C3%A9"
    async with httpx.AsyncClient() as client:
        url = httpx.URL(proxy.url + raw, query=b"x=%20y&z=a%2Bb")
        response = await client.get(url)
    data = response.json()
    assert data["path"] == raw
    assert data["query"] == "x=%20y&z=a%2Bb"


async def test_rfc9110_7_6_1_hop_by_hop_removed_on_the_way_up(proxy: Proxied) -> None:
    data = await echo(
        proxy, "GET", "/echo", headers={"Connection": "X-Secret", "X-Secret": "1", "Keep-Alive": "5", "X-Kept": "k"}
    )
    assert header(data, "x-secret") == []
    assert header(data, "keep-alive") == []
    assert header(data, "x-kept") == ["k"]


async def test_rfc9110_7_6_1_hop_by_hop_removed_on_the_way_down(proxy: Proxied) -> None:
    proxy.origin.set("/hop", headers=[("Connection", "X-Internal"), ("X-Internal", "1"), ("X-Public", "p")], body="b")
    response = await proxy.client.get("/hop")
    assert "x-internal" not in response.headers
    assert response.headers["x-public"] == "p"


async def test_rfc9110_7_6_3_via_and_forwarded_headers(proxy: Proxied) -> None:
    data = await echo(proxy, "GET", "/echo", headers={"Via": "1.0 edge"})
    assert header(data, "via") == ["1.0 edge, 1.1 cacheproxy"]
    assert header(data, "x-forwarded-for") == ["127.0.0.1"]
    assert header(data, "x-forwarded-proto") == ["http"]
    assert header(data, "x-forwarded-host") == [proxy.url.removeprefix("http://")]
    response = await proxy.client.get("/plain")
    assert response.headers["via"].endswith("1.1 cacheproxy")


async def test_host_is_the_upstreams_unless_preserve_host(origin: RunningOrigin) -> None:
    async with run_proxy(origin) as proxy:
        data = await echo(proxy, "GET", "/echo", headers={"Host": "api.example"})
        assert header(data, "host") == [origin.url.removeprefix("http://")]
    async with run_proxy(origin, preserve_host=True) as proxy:
        data = await echo(proxy, "GET", "/echo", headers={"Host": "api.example"})
        assert header(data, "host") == ["api.example"]


async def test_request_body_streams_to_upstream_intact(proxy: Proxied) -> None:
    payload = bytes(range(256)) * 20_000  # 5 MB

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 65_536):
            yield payload[i : i + 65_536]

    for content in (payload, chunks()):
        data = await echo(proxy, "POST", "/echo", content=content)
        assert data["body_sha256"] == hashlib.sha256(payload).hexdigest()
        assert data["body_length"] == len(payload)


async def test_large_response_streams_through_unstored(proxy: Proxied) -> None:
    size = 32 * 1024 * 1024
    proxy.origin.set("/big", headers={"Cache-Control": "max-age=60"}, chunks=[b"x" * 1_048_576] * 32)
    digest = hashlib.sha256()
    async with proxy.client.stream("GET", "/big") as response:
        assert "detail=too-large" in response.headers["cache-status"]
        async for chunk in response.aiter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(b"x" * size).hexdigest()
    again = await proxy.client.get("/big")
    assert "fwd=uri-miss" in again.headers["cache-status"]
    assert proxy.origin.hits["/big"] == 2


async def test_upstream_refused_is_502_with_one_line(tmp_path: Path) -> None:
    from proxy.app import ProxyApp
    from proxy.config import Settings
    from tests.support.servers import UvicornServer

    app = ProxyApp(Settings(upstream=f"http://127.0.0.1:{free_port()}"))
    async with UvicornServer(app, lifespan="on") as server, httpx.AsyncClient(base_url=server.url) as client:
        response = await client.get("/x")
    assert response.status_code == 502
    assert response.text.count("\n") == 1 and "Traceback" not in response.text
    assert response.headers["cache-status"] == "cacheproxy; fwd=uri-miss; detail=connect-failed"


async def test_upstream_timeout_is_504(origin: RunningOrigin) -> None:
    origin.set("/slow", delay=2.0, body="late")
    async with run_proxy(origin, read_timeout=0.3) as proxy:
        response = await proxy.client.get("/slow")
    assert response.status_code == 504
    assert "detail=timeout" in response.headers["cache-status"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_upstream_dying_mid_body_breaks_the_stream_and_stores_nothing(proxy: Proxied, chunked: bool) -> None:
    # Larger than the 8 MiB object cap, so the proxy has started streaming when the origin dies.
    if chunked:
        route = {"chunks": [b"y" * 1_048_576] * 20, "fail_after": 12_000_000}
    else:
        route = {"body": b"y" * 20_000_000, "fail_after": 12_000_000}
    proxy.origin.set("/cut", headers={"Cache-Control": "max-age=60"}, **route)
    received = 0
    with pytest.raises(httpx.HTTPError):
        async with proxy.client.stream("GET", "/cut") as response:
            assert response.status_code == 200
            async for chunk in response.aiter_bytes():
                received += len(chunk)
    assert received < 20_000_000
    proxy.origin.set("/cut", headers={"Cache-Control": "max-age=60"}, body=b"whole")
    response = await proxy.client.get("/cut")
    assert response.content == b"whole"
    assert "fwd=uri-miss" in response.headers["cache-status"]


async def test_small_body_cut_mid_way_is_502_and_not_stored(proxy: Proxied) -> None:
    proxy.origin.set("/cut-small", headers={"Cache-Control": "max-age=60"}, body=b"z" * 100_000, fail_after=10_000)
    response = await proxy.client.get("/cut-small")
    assert response.status_code == 502
    proxy.origin.set("/cut-small", headers={"Cache-Control": "max-age=60"}, body=b"ok")
    response = await proxy.client.get("/cut-small")
    assert response.content == b"ok"


async def test_no_cookie_jar_and_no_redirect_following(proxy: Proxied) -> None:
    proxy.origin.set("/login", headers=[("Set-Cookie", "session=alice")], body="hi")
    proxy.origin.set("/go", status=302, headers={"Location": "/elsewhere"})
    await proxy.client.get("/login")
    proxy.client.cookies.clear()  # the test client's own jar; the proxy must have none
    data = await echo(proxy, "GET", "/echo")
    assert header(data, "cookie") == []
    response = await proxy.client.get("/go")
    assert response.status_code == 302 and response.headers["location"] == "/elsewhere"


async def test_no_decompression_and_no_added_headers(proxy: Proxied) -> None:
    import gzip

    packed = gzip.compress(b"compressed body" * 100)
    proxy.origin.set("/gz", headers={"Content-Encoding": "gzip"}, body=packed)
    async with proxy.client.stream("GET", "/gz") as response:
        raw = b"".join([c async for c in response.aiter_raw()])
    assert raw == packed
    async with httpx.AsyncClient() as bare:
        request = bare.build_request("GET", proxy.url + "/echo")
        for name in ("accept", "accept-encoding", "user-agent"):
            del request.headers[name]
        data = json.loads((await bare.send(request)).text)
    for name in ("accept", "accept-encoding", "user-agent"):
        assert header(data, name) == []
