"""The entry codec: version 1 round-trips every field; anything else decodes to ``None`` and never raises."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.messages import Entry, Headers, ResponseHead
from proxy.storage.codec import VERSION, decode_entry, encode_entry

latin1 = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=40)
token = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)
seconds = st.floats(min_value=0, max_value=1e10, allow_nan=False)

entries = st.builds(
    Entry,
    key=st.text(max_size=64),
    url=st.text(max_size=200),
    head=st.builds(ResponseHead, st.integers(100, 599), st.lists(st.tuples(token, latin1), max_size=8).map(Headers)),
    body=st.binary(max_size=4096),
    request_time=seconds,
    response_time=seconds,
    freshness=seconds,
    initial_age=seconds,
    stale_while_revalidate=seconds,
    stale_if_error=seconds,
    vary=st.lists(st.tuples(token, st.none() | latin1), max_size=4).map(tuple),
    tags=st.lists(st.text(max_size=20), max_size=4).map(tuple),
    authorized=st.booleans(),
    forced=st.booleans(),
)


def sample_entry() -> Entry:
    return Entry(
        key="k",
        url="http://origin.test/a?b=1",
        head=ResponseHead(200, Headers([("Content-Type", "text/plain; charset=caf\xe9"), ("ETag", '"x"')])),
        body=b"\x00body\xff",
        request_time=1_700_000_000.0,
        response_time=1_700_000_001.0,
        freshness=60.0,
        initial_age=2.0,
        stale_while_revalidate=10.0,
        stale_if_error=20.0,
        vary=(("accept-encoding", "gzip"), ("accept-language", None)),
        tags=("t1", "t2"),
        authorized=True,
    )


@given(entries)
def test_codec_v1_roundtrips_every_field(entry: Entry) -> None:
    decoded = decode_entry(encode_entry(entry))
    assert decoded == entry
    assert decoded is not None
    assert type(decoded.body) is bytes
    assert list(decoded.head.headers) == list(entry.head.headers)


def test_codec_v1_starts_with_its_version_byte() -> None:
    assert encode_entry(sample_entry())[0] == VERSION == 1


def test_codec_v1_integer_times_decode_as_floats() -> None:
    entry = Entry(key="k", url="u", head=ResponseHead(204), body=b"", request_time=5, response_time=6, freshness=0)
    decoded = decode_entry(encode_entry(entry))
    assert decoded == entry
    assert decoded is not None
    assert type(decoded.request_time) is float


@pytest.mark.parametrize("version", [0, 2, 255], ids=lambda v: f"version-{v}")
def test_codec_unknown_version_is_none(version: int) -> None:
    data = encode_entry(sample_entry())
    assert decode_entry(bytes((version,)) + data[1:]) is None


def test_codec_every_truncation_is_none() -> None:
    data = encode_entry(sample_entry())
    for cut in range(len(data)):
        assert decode_entry(data[:cut]) is None, cut


def test_codec_trailing_bytes_are_corrupt() -> None:
    assert decode_entry(encode_entry(sample_entry()) + b"\x00") is None


def fields_of(entry: Entry) -> list[object]:
    unpacked = msgpack.unpackb(encode_entry(entry)[1:], raw=False)
    assert isinstance(unpacked, list)
    return unpacked


@pytest.mark.parametrize(
    ("index", "value"),
    [
        pytest.param(0, 7, id="key-not-a-string"),
        pytest.param(2, "200", id="status-a-string"),
        pytest.param(2, True, id="status-a-bool"),
        pytest.param(3, [["a"]], id="header-not-a-pair"),
        pytest.param(3, [["a", b"v"]], id="header-value-bytes"),
        pytest.param(3, {"a": "b"}, id="headers-a-map"),
        pytest.param(4, "body", id="body-a-string"),
        pytest.param(5, "now", id="time-a-string"),
        pytest.param(7, None, id="freshness-nil"),
        pytest.param(11, [["accept", 1]], id="vary-value-a-number"),
        pytest.param(12, [None], id="tag-nil"),
        pytest.param(13, 1, id="authorized-an-int"),
        pytest.param(14, "yes", id="forced-a-string"),
    ],
)
def test_codec_ill_typed_field_is_none(index: int, value: object) -> None:
    fields = fields_of(sample_entry())
    fields[index] = value
    assert decode_entry(bytes((VERSION,)) + msgpack.packb(fields, use_bin_type=True)) is None


@pytest.mark.parametrize("count", [14, 16], ids=["one-field-short", "one-field-extra"])
def test_codec_wrong_field_count_is_none(count: int) -> None:
    fields = [*fields_of(sample_entry()), None][:count]
    assert decode_entry(bytes((VERSION,)) + msgpack.packb(fields, use_bin_type=True)) is None


@pytest.mark.parametrize(
    "payload",
    [{"key": "k"}, "entry", None, [], [[[]]] * 14],
    ids=["map", "string", "nil", "empty-array", "nested-arrays"],
)
def test_codec_wrong_shape_is_none(payload: object) -> None:
    assert decode_entry(bytes((VERSION,)) + msgpack.packb(payload, use_bin_type=True)) is None


@given(st.binary(max_size=512))
def test_codec_random_bytes_never_raise(data: bytes) -> None:
    result = decode_entry(data)
    assert result is None or isinstance(result, Entry)


@given(st.binary(max_size=512))
def test_codec_random_v1_payload_never_raises(data: bytes) -> None:
    result = decode_entry(bytes((VERSION,)) + data)
    assert result is None or isinstance(result, Entry)
