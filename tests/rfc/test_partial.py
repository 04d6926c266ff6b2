"""Incomplete responses: RFC 9111 §3.3 (storing and using a 206), §3.4 (combining parts), RFC 9110 §14.4."""

from __future__ import annotations

import pytest

from proxy.messages import Entry, Headers, RequestHead, ResponseHead
from proxy.rfc.decisions import Forward, Fwd, Reason, Serve
from proxy.rfc.partial import combine, content_span, covers, narrowed, narrowed_request, storable_partial
from proxy.rfc.ranges import Part
from proxy.rfc.reuse import decide, plain_hit_age

BODY = bytes(range(100))
NOW = 1000.0


def head(content_range: str | None, etag: str | None = '"v1"', status: int = 206) -> ResponseHead:
    fields = [("Cache-Control", "max-age=600")]
    if etag is not None:
        fields.append(("ETag", etag))
    if content_range is not None:
        fields.append(("Content-Range", content_range))
    return ResponseHead(status, Headers(fields))


def stored(first: int, last: int, etag: str = '"v1"') -> Entry:
    return Entry(
        key="k",
        url="https://example.com/f",
        head=head(f"bytes {first}-{last}/100", etag),
        body=BODY[first : last + 1],
        request_time=NOW - 1,
        response_time=NOW - 1,
        freshness=600.0,
    )


def get(*fields: tuple[str, str]) -> RequestHead:
    return RequestHead("GET", "https", "example.com", "/f", headers=Headers(fields))


SPANS = {
    "rfc9110-14.4-span": ("bytes 0-9/100", Part(0, 9, 100)),
    "rfc9110-14.4-unknown-length-not-kept": ("bytes 0-9/*", None),
    "rfc9110-14.4-last-before-first": ("bytes 9-0/100", None),
    "rfc9110-14.4-last-past-length": ("bytes 0-100/100", None),
    "rfc9110-14.4-unsatisfied-form": ("bytes */100", None),
    "rfc9110-14.4-other-unit": ("items 0-9/100", None),
}


@pytest.mark.parametrize(("value", "expected"), SPANS.values(), ids=SPANS.keys())
def test_content_span(value: str, expected: Part | None) -> None:
    assert content_span(head(value)) == expected


STORABLE = {
    "rfc9111-3.3-single-span-strong-etag": (head("bytes 0-9/100"), 10, True),
    "rfc9111-3.3-weak-etag-not-kept": (head("bytes 0-9/100", 'W/"v1"'), 10, False),
    "rfc9111-3.3-no-etag-not-kept": (head("bytes 0-9/100", None), 10, False),
    "rfc9111-3.3-body-not-the-span": (head("bytes 0-9/100"), 9, False),
    "rfc9111-3.3-multipart-not-kept": (head(None), 10, False),
    "rfc9111-3.3-not-a-206": (head("bytes 0-9/100", status=200), 10, False),
}


@pytest.mark.parametrize(("response", "length", "expected"), STORABLE.values(), ids=STORABLE.keys())
def test_storable_partial(response: ResponseHead, length: int, expected: bool) -> None:
    assert storable_partial(response, length) is expected


COVERS = {
    "rfc9111-3.3-range-inside-span": ([("Range", "bytes=12-15")], True),
    "rfc9111-3.3-range-before-span": ([("Range", "bytes=2-5")], False),
    "rfc9111-3.3-range-equal-to-span": ([("Range", "bytes=10-19")], True),
    "rfc9111-3.3-range-past-span": ([("Range", "bytes=15-25")], False),
    "rfc9111-3.3-two-ranges-inside": ([("Range", "bytes=10-11, 18-19")], True),
    "rfc9111-3.3-no-range-never-covered": ([], False),
    "rfc9111-3.3-if-range-same-etag": ([("Range", "bytes=12-13"), ("If-Range", '"v1"')], True),
    "rfc9111-3.3-if-range-other-etag": ([("Range", "bytes=12-13"), ("If-Range", '"v2"')], False),
}


@pytest.mark.parametrize(("fields", "expected"), COVERS.values(), ids=COVERS.keys())
def test_covers(fields: list[tuple[str, str]], expected: bool) -> None:
    assert covers(stored(10, 19), get(*fields)) is expected


NARROWED = {
    "rfc9111-3.3-missing-tail": ("bytes=15-29", "bytes=20-29"),
    "rfc9111-3.3-missing-head": ("bytes=5-14", "bytes=5-9"),
    "rfc9111-3.3-open-ended-tail": ("bytes=12-", "bytes=20-99"),
    "rfc9111-3.3-both-sides-missing-not-narrowed": ("bytes=5-29", None),
    "rfc9111-3.3-disjoint-not-narrowed": ("bytes=50-59", None),
    "rfc9111-3.3-several-ranges-not-narrowed": ("bytes=15-29, 40-41", None),
}


@pytest.mark.parametrize(("value", "expected"), NARROWED.values(), ids=NARROWED.keys())
def test_narrowed(value: str, expected: str | None) -> None:
    assert narrowed(stored(10, 19), get(("Range", value))) == expected


def test_rfc9110_13_1_5_narrowed_request_carries_if_range() -> None:
    out = narrowed_request(get(("Range", "bytes=15-29"), ("If-Range", '"x"')), stored(10, 19), "bytes=20-29")
    assert out.headers.get_all("range") == ["bytes=20-29"]
    assert out.headers.get_all("if-range") == ['"v1"']


def test_rfc9111_3_4_combine_adjacent_parts() -> None:
    joined = combine(stored(0, 9), head("bytes 10-19/100"), BODY[10:20])
    assert joined is not None
    new_head, body = joined
    assert new_head.status == 206 and new_head.headers.get("content-range") == "bytes 0-19/100"
    assert body == BODY[:20]


def test_rfc9111_3_4_combine_overlapping_parts_into_the_complete_response() -> None:
    joined = combine(stored(0, 59), head("bytes 40-99/100"), BODY[40:])
    assert joined is not None
    assert joined[0].status == 200 and "content-range" not in joined[0].headers
    assert joined[1] == BODY


@pytest.mark.parametrize(
    ("new", "body"),
    [
        (head("bytes 30-39/100"), BODY[30:40]),
        (head("bytes 10-19/100", '"v2"'), BODY[10:20]),
        (head("bytes 10-19/100", 'W/"v1"'), BODY[10:20]),
        (head("bytes 10-19/200"), BODY[10:20]),
    ],
    ids=[
        "rfc9111-3.4-gap-not-combined",
        "rfc9111-3.4-other-etag-not-combined",
        "rfc9111-3.4-weak-etag-not-combined",
        "rfc9111-3.4-other-length-not-combined",
    ],
)
def test_not_combined(new: ResponseHead, body: bytes) -> None:
    assert combine(stored(0, 9), new, body) is None


def test_rfc9111_3_3_decide_serves_a_covered_range_from_a_partial() -> None:
    entry = stored(10, 19)
    assert decide(get(("Range", "bytes=12-13")), [entry], NOW) == Serve(entry, 1.0)


def test_rfc9111_3_3_decide_forwards_what_a_partial_does_not_cover() -> None:
    entry = stored(10, 19)
    assert decide(get(), [entry], NOW) == Forward(Fwd.PARTIAL, Reason.PARTIAL, partial=entry)
    narrowed_decision = decide(get(("Range", "bytes=15-29")), [entry], NOW)
    assert narrowed_decision == Forward(Fwd.PARTIAL, Reason.PARTIAL, partial=entry, range="bytes=20-29")


def test_rfc9111_3_3_hot_path_never_serves_a_partial() -> None:
    assert plain_hit_age([stored(10, 19)], NOW) is None
