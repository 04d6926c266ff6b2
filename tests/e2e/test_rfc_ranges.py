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


async def test_rfc9110_13_1_5_miss_forwards_range_with_its_if_range(proxy: Proxied) -> None:
    proxy.origin.set("/r5", status=206, headers={**HEADERS, "Content-Range": "bytes 0-1/1024"}, body=BODY[:2])
    response = await proxy.client.get("/r5", headers={"Range": "bytes=0-1", "If-Range": '"v1"'})
    assert response.status_code == 206 and response.content == BODY[:2]
    forwarded = proxy.origin.requests[-1].headers
    assert forwarded.get("range") == "bytes=0-1" and forwarded.get("if-range") == '"v1"'


async def test_rfc9111_3_3_partial_without_strong_validator_not_stored(proxy: Proxied) -> None:
    weak = {**HEADERS, "ETag": 'W/"v1"', "Content-Range": "bytes 0-1/1024"}
    proxy.origin.set("/r7", status=206, headers=weak, body=BODY[:2])
    response = await proxy.client.get("/r7", headers={"Range": "bytes=0-1"})
    assert response.status_code == 206 and "detail=status" in response.headers["cache-status"]


async def test_rfc9110_14_2_head_ignores_range(proxy: Proxied) -> None:
    await _stored(proxy, "/r6")
    response = await proxy.client.head("/r6", headers={"Range": "bytes=0-1"})
    assert response.status_code == 200 and response.headers["content-length"] == "1024"


def _part(first: int, last: int, etag: str = '"v1"') -> dict[str, object]:
    """An origin answer with bytes first..last of BODY[:20] as a 206."""
    headers = {"Cache-Control": "max-age=600", "ETag": etag, "Content-Range": f"bytes {first}-{last}/20"}
    return {"status": 206, "headers": headers, "body": BODY[first : last + 1]}


async def test_rfc9111_3_3_partial_stored_and_reused_for_ranges_it_covers(proxy: Proxied) -> None:
    proxy.origin.set("/p1", **_part(0, 9))
    first = await proxy.client.get("/p1", headers={"Range": "bytes=0-9"})
    assert first.status_code == 206 and first.content == BODY[:10]
    assert first.headers["cache-status"] == "cacheproxy; fwd=uri-miss; stored"
    inside = await proxy.client.get("/p1", headers={"Range": "bytes=2-5"})
    assert inside.status_code == 206 and inside.content == BODY[2:6]
    assert inside.headers["content-range"] == "bytes 2-5/20"
    assert inside.headers["cache-status"].startswith("cacheproxy; hit")
    assert proxy.origin.hits["/p1"] == 1


async def test_rfc9111_3_3_partial_never_answers_a_request_for_the_whole(proxy: Proxied) -> None:
    proxy.origin.set("/p2", **_part(0, 9))
    await proxy.client.get("/p2", headers={"Range": "bytes=0-9"})
    proxy.origin.set("/p2", headers={"Cache-Control": "max-age=600", "ETag": '"v1"'}, body=BODY[:20])
    whole = await proxy.client.get("/p2")
    assert whole.status_code == 200 and whole.content == BODY[:20]
    assert "fwd=partial" in whole.headers["cache-status"]
    assert (await proxy.client.get("/p2")).headers["cache-status"].startswith("cacheproxy; hit")
    assert proxy.origin.hits["/p2"] == 2


async def test_rfc9111_3_4_parts_combined_after_a_narrowed_range(proxy: Proxied) -> None:
    proxy.origin.set("/p3", **_part(0, 9))
    await proxy.client.get("/p3", headers={"Range": "bytes=0-9"})
    proxy.origin.set("/p3", **_part(10, 19))
    response = await proxy.client.get("/p3", headers={"Range": "bytes=5-19"})
    sent = proxy.origin.requests[-1].headers
    assert sent.get("range") == "bytes=10-19" and sent.get("if-range") == '"v1"'
    assert response.status_code == 206 and response.content == BODY[5:20]
    assert response.headers["content-range"] == "bytes 5-19/20"
    whole = await proxy.client.get("/p3")  # the two parts made the complete response
    assert whole.status_code == 200 and whole.content == BODY[:20]
    assert whole.headers["cache-status"].startswith("cacheproxy; hit")
    assert proxy.origin.hits["/p3"] == 2


async def test_rfc9111_3_4_parts_of_another_representation_not_combined(proxy: Proxied) -> None:
    proxy.origin.set("/p4", **_part(0, 9))
    await proxy.client.get("/p4", headers={"Range": "bytes=0-9"})
    proxy.origin.set("/p4", **_part(10, 19, etag='"v2"'))
    response = await proxy.client.get("/p4", headers={"Range": "bytes=5-19"})
    assert proxy.origin.requests[-1].headers.get("range") == "bytes=5-19"  # asked again with the client's Range
    assert response.status_code == 206 and response.headers["content-range"] == "bytes 10-19/20"
    assert response.content == BODY[10:20]
    assert proxy.origin.hits["/p4"] == 3


async def test_rfc9110_14_range_cut_from_the_whole_response_a_revalidation_brought(proxy: Proxied) -> None:
    proxy.origin.set("/r8", headers={**HEADERS, "Age": "700"}, body=BODY)  # stale on arrival (max-age=600)
    await proxy.client.get("/r8")
    proxy.origin.set("/r8", headers={**HEADERS, "ETag": '"v2"'}, body=BODY[::-1])
    response = await proxy.client.get("/r8", headers={"Range": "bytes=0-3"})
    assert proxy.origin.requests[-1].headers.get("range") is None  # the whole response was asked for
    assert response.status_code == 206 and response.content == BODY[::-1][:4]
    assert response.headers["content-range"] == "bytes 0-3/1024" and response.headers["etag"] == '"v2"'
