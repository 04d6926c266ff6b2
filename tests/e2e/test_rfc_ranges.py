"""Issue 15 item 7 over the wire: Range requests answered from a stored complete response (RFC 9110 §14, §13.1.5,
§15.3.7, §15.5.17); misses forward the Range (with its If-Range) and a 206 is not stored."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import Proxied

BODY = bytes(range(256)) * 4  # 1024 bytes
LM = "Tue, 01 Dec 2026 10:00:00 GMT"
HEADERS = {"Cache-Control": "max-age=600", "ETag": '"v1"', "Last-Modified": LM, "Content-Type": "application/x-test"}


async def _stored(proxy: Proxied, path: str) -> None:
    proxy.origin.set(path, headers=HEADERS, body=BODY)
    assert (await proxy.client.get(path)).content == BODY


def _hit(response: httpx.Response) -> bool:
    return response.headers["cache-status"].startswith("cacheproxy; hit")


async def test_rfc9110_14_single_range_206_from_cache(proxy: Proxied) -> None:
    await _stored(proxy, "/r1")
    response = await proxy.client.get("/r1", headers={"Range": "bytes=10-19"})
    assert response.status_code == 206 and _hit(response)
    assert response.content == BODY[10:20]
    assert response.headers["content-range"] == "bytes 10-19/1024"
    assert response.headers["content-length"] == "10"
    assert response.headers["content-type"] == "application/x-test"
    assert response.headers["etag"] == '"v1"'
    suffix = await proxy.client.get("/r1", headers={"Range": "bytes=-4"})
    assert suffix.content == BODY[-4:] and suffix.headers["content-range"] == "bytes 1020-1023/1024"
    assert proxy.origin.hits["/r1"] == 1


async def test_rfc9110_15_5_17_unsatisfiable_range_416(proxy: Proxied) -> None:
    await _stored(proxy, "/r2")
    response = await proxy.client.get("/r2", headers={"Range": "bytes=2000-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */1024"
    assert response.content == b""
    assert proxy.origin.hits["/r2"] == 1


async def test_rfc9110_13_1_5_if_range(proxy: Proxied) -> None:
    await _stored(proxy, "/r3")
    match = await proxy.client.get("/r3", headers={"Range": "bytes=0-1", "If-Range": '"v1"'})
    assert match.status_code == 206 and match.content == BODY[:2]
    by_date = await proxy.client.get("/r3", headers={"Range": "bytes=0-1", "If-Range": LM})
    assert by_date.status_code == 206
    changed = await proxy.client.get("/r3", headers={"Range": "bytes=0-1", "If-Range": '"v0"'})
    assert changed.status_code == 200 and changed.content == BODY
    assert proxy.origin.hits["/r3"] == 1


async def test_rfc9110_14_6_multiple_ranges_multipart(proxy: Proxied) -> None:
    await _stored(proxy, "/r4")
    response = await proxy.client.get("/r4", headers={"Range": "bytes=0-1, 100-102"})
    assert response.status_code == 206
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    boundary = content_type.split("boundary=")[1].encode()
    parts = response.content.split(b"--" + boundary)
    assert parts[-1] == b"--\r\n"
    assert b"Content-Range: bytes 0-1/1024\r\n\r\n" + BODY[0:2] + b"\r\n" in parts[1]
    assert b"Content-Range: bytes 100-102/1024\r\n\r\n" + BODY[100:103] + b"\r\n" in parts[2]
    assert int(response.headers["content-length"]) == len(response.content)


async def test_rfc9111_3_4_miss_forwards_range_and_does_not_store_the_206(proxy: Proxied) -> None:
    proxy.origin.set(
        "/r5",
        status=206,
        headers={**HEADERS, "Content-Range": "bytes 0-1/1024"},
        body=BODY[:2],
    )
    response = await proxy.client.get("/r5", headers={"Range": "bytes=0-1", "If-Range": '"v1"'})
    assert response.status_code == 206 and response.content == BODY[:2]
    forwarded = proxy.origin.requests[-1].headers
    assert forwarded.get("range") == "bytes=0-1" and forwarded.get("if-range") == '"v1"'
    assert "detail=status" in response.headers["cache-status"]


async def test_rfc9110_14_2_head_ignores_range(proxy: Proxied) -> None:
    await _stored(proxy, "/r6")
    response = await proxy.client.head("/r6", headers={"Range": "bytes=0-1"})
    assert response.status_code == 200 and response.headers["content-length"] == "1024"
