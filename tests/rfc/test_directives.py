"""RFC 9111 §5.2 Cache-Control parsing, §5.4 Pragma, and RFC 9213 targeted fields."""

from __future__ import annotations

import pytest

from proxy.messages import Headers
from proxy.rfc.directives import (
    DELTA_MAX,
    parse_delta,
    parse_directives,
    request_directives,
    response_directives,
)
from proxy.rfc.targeted import parse_targeted

PARSE = {
    "rfc9111-5.2-names-case-insensitive": (["Max-Age=5, NO-STORE"], {"max-age": "5", "no-store": None}),
    "rfc9111-5.2-quoted-value-unquoted": (['max-age="30"'], {"max-age": "30"}),
    "rfc9111-5.2-quoted-escape": ([r'x="a\"b"'], {"x": 'a"b'}),
    "rfc9111-5.2-quoted-comma-not-split": (
        ['private="A, B", max-age=1'],
        {"private": "A, B", "max-age": "1"},
    ),
    "rfc9111-4.2.1-duplicate-first-wins": (["max-age=60, max-age=10"], {"max-age": "60"}),
    "rfc9111-4.2.1-duplicate-across-lines-first-wins": (
        ["max-age=1", "MAX-AGE=2, public"],
        {"max-age": "1", "public": None},
    ),
    "rfc9111-5.2.3-unknown-directive-kept": (["community=UCI, foo"], {"community": "UCI", "foo": None}),
    "rfc9111-5.2-whitespace-and-empty-members": (
        [" , no-cache ,, max-age = 5 "],
        {"no-cache": None, "max-age": "5"},
    ),
    "rfc9111-5.2-empty-value": (["x="], {"x": ""}),
    "rfc9111-5.2-nothing": ([], {}),
}


@pytest.mark.parametrize(("lines", "expected"), PARSE.values(), ids=PARSE.keys())
def test_parse_directives(lines: list[str], expected: dict[str, str | None]) -> None:
    assert dict(parse_directives(lines).items) == expected


DELTAS = {
    "rfc9111-1.2.2-plain": ("60", 60),
    "rfc9111-5.2-quoted-digits": ('"60"', 60),
    "rfc9111-1.2.2-negative-invalid": ("-1", None),
    "rfc9111-1.2.2-fraction-invalid": ("1.5", None),
    "rfc9111-1.2.2-empty-invalid": ("", None),
    "rfc9111-1.2.2-non-ascii-digits-invalid": ("\u0663", None),
    "rfc9111-1.2.2-overflow-capped": ("99999999999999", DELTA_MAX),
    "rfc9111-1.2.2-absent": (None, None),
}


@pytest.mark.parametrize(("value", "expected"), DELTAS.values(), ids=DELTAS.keys())
def test_parse_delta(value: str | None, expected: int | None) -> None:
    assert parse_delta(value) == expected


DIRECTIVE_DELTA = {
    "rfc9111-4.2.1-malformed-is-zero": ("max-age=soon", 0),
    "rfc9111-4.2.1-negative-is-zero": ("max-age=-10", 0),
    "rfc9111-4.2.1-no-value-is-zero": ("max-age", 0),
    "rfc9111-4.2.1-absent-is-none": ("public", None),
    "rfc9111-4.2.1-valid": ("max-age=7", 7),
}


@pytest.mark.parametrize(("line", "expected"), DIRECTIVE_DELTA.values(), ids=DIRECTIVE_DELTA.keys())
def test_directive_delta(line: str, expected: int | None) -> None:
    assert parse_directives([line]).delta("max-age") == expected


FIELD_NAMES = {
    "rfc9111-5.2.2.7-qualified-private": ('private="Set-Cookie, X-User"', ("set-cookie", "x-user")),
    "rfc9111-5.2.2.7-unquoted-field-name": ("private=X-A", ("x-a",)),
    "rfc9111-5.2.2.7-bare-private": ("private", ()),
    "rfc9111-5.2.2.7-absent": ("public", ()),
}


@pytest.mark.parametrize(("line", "expected"), FIELD_NAMES.values(), ids=FIELD_NAMES.keys())
def test_field_names(line: str, expected: tuple[str, ...]) -> None:
    assert parse_directives([line]).field_names("private") == expected


REQUEST = {
    "rfc9111-5.4-pragma-without-cache-control": ([("Pragma", "no-cache")], {"no-cache": None}),
    "rfc9111-5.4-pragma-case-insensitive": ([("Pragma", "x, No-Cache")], {"no-cache": None}),
    "rfc9111-5.4-pragma-ignored-with-cache-control": (
        [("Pragma", "no-cache"), ("Cache-Control", "max-age=5")],
        {"max-age": "5"},
    ),
    "rfc9111-5.4-other-pragma-ignored": ([("Pragma", "foo")], {}),
    "rfc9111-5.2.1-request-cache-control": (
        [("cache-control", "no-store, max-stale")],
        {"no-store": None, "max-stale": None},
    ),
}


@pytest.mark.parametrize(("fields", "expected"), REQUEST.values(), ids=REQUEST.keys())
def test_request_directives(fields: list[tuple[str, str]], expected: dict[str, str | None]) -> None:
    assert dict(request_directives(Headers(fields)).items) == expected


RESPONSE = {
    "rfc9213-cdn-cache-control-wins": (
        [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60")],
        {"max-age": "60"},
        True,
    ),
    "rfc9213-empty-cdn-cache-control-ignored": (
        [("CDN-Cache-Control", " "), ("Cache-Control", "max-age=5")],
        {"max-age": "5"},
        False,
    ),
    "rfc9111-5.2-cache-control-alone": ([("Cache-Control", "max-age=5")], {"max-age": "5"}, False),
    "rfc9111-5.4-pragma-ignored-in-responses": ([("Pragma", "no-cache")], {}, False),
}


@pytest.mark.parametrize(("fields", "expected", "targeted"), RESPONSE.values(), ids=RESPONSE.keys())
def test_response_directives(fields: list[tuple[str, str]], expected: dict[str, str | None], targeted: bool) -> None:
    parsed = response_directives(Headers(fields))
    assert dict(parsed.items) == expected
    assert parsed.targeted is targeted


def test_rfc9111_5_2_has_and_value() -> None:
    parsed = parse_directives(["Public, s-maxage=9"])
    assert parsed.has("public")
    assert "s-maxage" in parsed
    assert parsed.value("s-maxage") == "9"
    assert not parsed.has("private")
    assert bool(parsed)
    assert not parse_directives([])


@pytest.mark.parametrize(
    ("values", "unqualified_no_cache", "forbids_stale"),
    [
        (["no-cache"], True, False),
        (['no-cache=""'], True, False),
        (['no-cache="set-cookie"'], False, False),
        (["max-age=5, must-revalidate"], False, True),
        (["proxy-revalidate"], False, True),
        (["s-maxage=5"], False, True),
        (["max-age=5, stale-while-revalidate=9"], False, False),
    ],
    ids=[
        "rfc9111-5.2.2.4-bare-no-cache",
        "rfc9111-5.2.2.4-empty-list-counts-as-bare",
        "rfc9111-5.2.2.4-qualified-no-cache-names-fields",
        "rfc9111-4.2.4-must-revalidate-forbids-stale",
        "rfc9111-4.2.4-proxy-revalidate-forbids-stale",
        "rfc9111-5.2.2.10-s-maxage-forbids-stale",
        "rfc5861-windows-alone-allow-stale",
    ],
)
def test_directive_predicates(values: list[str], unqualified_no_cache: bool, forbids_stale: bool) -> None:
    directives = parse_directives(values)
    assert directives.unqualified("no-cache") is unqualified_no_cache
    assert directives.forbids_stale() is forbids_stale


# RFC 9213 §2.1: CDN-Cache-Control is a Structured Field Dictionary; an invalid field, or a known directive of the
# wrong type, is ignored as a whole and Cache-Control applies.
TARGETED = {
    "rfc9213-2.1-valid-dictionary-used": ("max-age=60, no-store", {"max-age": "60", "no-store": None}),
    "rfc9213-2.1-parse-failure-ignores-whole-field": ("max-age=10000, &&&&&", None),
    "rfc9213-2.1-string-max-age-ignores-field": ('max-age="10"', None),
    "rfc9213-2.1-decimal-max-age-ignores-field": ("max-age=1.5", None),
    "rfc9213-2.1-boolean-max-age-ignores-field": ("max-age=?1", None),
    "rfc9213-2.1-false-max-age-ignores-field": ("max-age=?0", None),
    "rfc9213-2.1-inner-list-max-age-ignores-field": ("max-age=(1 2)", None),
    "rfc9213-2.1-bare-max-age-ignores-field": ("max-age", None),
    "rfc9213-2.1-negative-max-age-ignores-field": ("max-age=-1", None),
    "rfc9213-2.1-token-max-age-ignores-field": ("max-age=ten", None),
    "rfc9213-2.1-integer-no-store-ignores-field": ("no-store=1", None),
    "rfc9213-2.1-upper-case-key-ignores-field": ("Max-Age=10", None),
    "rfc9213-2.1-false-boolean-is-absent": ("max-age=60, no-store=?0", {"max-age": "60"}),
    "rfc9213-2.1-parameters-ignored": ("max-age=60;foo=1", {"max-age": "60"}),
    "rfc9213-2.1-private-field-list-string": ('private="set-cookie"', {"private": "set-cookie"}),
    "rfc9213-2.1-private-token-ignores-field": ("private=set-cookie", None),
    "rfc9213-2.1-unknown-directive-any-type": ("max-age=5, x-foo=1.5", {"max-age": "5", "x-foo": "1.5"}),
    "rfc8941-3.2-duplicate-key-last-wins": ("max-age=10, max-age=20", {"max-age": "20"}),
    "rfc9213-2.1-empty-field-absent": ("", None),
    "rfc9213-2.1-s-maxage-and-swr-integers": (
        "s-maxage=5, stale-while-revalidate=9",
        {"s-maxage": "5", "stale-while-revalidate": "9"},
    ),
}


@pytest.mark.parametrize(("value", "expected"), TARGETED.values(), ids=TARGETED.keys())
def test_parse_targeted(value: str, expected: dict[str, str | None] | None) -> None:
    assert parse_targeted([value]) == expected


TARGETED_FALLBACK = {
    "rfc9213-2.1-invalid-cdn-field-falls-back-to-cache-control": (
        [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=10000, &&&&&")],
        {"no-store": None},
        False,
    ),
    "rfc9213-2.1-wrong-type-falls-back-to-cache-control": (
        [("Cache-Control", "max-age=5"), ("CDN-Cache-Control", 'max-age="10"')],
        {"max-age": "5"},
        False,
    ),
    "rfc9213-2.2-valid-cdn-field-wins": (
        [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=10")],
        {"max-age": "10"},
        True,
    ),
    "rfc9213-2.1-two-lines-combined": (
        [("CDN-Cache-Control", "max-age=10"), ("CDN-Cache-Control", "must-revalidate")],
        {"max-age": "10", "must-revalidate": None},
        True,
    ),
}


@pytest.mark.parametrize(("fields", "expected", "targeted"), TARGETED_FALLBACK.values(), ids=TARGETED_FALLBACK.keys())
def test_targeted_fallback(fields: list[tuple[str, str]], expected: dict[str, str | None], targeted: bool) -> None:
    parsed = response_directives(Headers(fields))
    assert dict(parsed.items) == expected
    assert parsed.targeted is targeted


def test_parsed_lines_memo_stays_bounded_and_keeps_no_long_value() -> None:
    from proxy.rfc import directives

    for n in range(directives.MEMO_LIMIT + 10):
        line = f"max-age={n}, public"
        assert parse_directives([line]).delta("max-age") == n
        assert parse_directives([line]) is parse_directives([line])  # the second time from the memo
        assert len(directives._parsed) <= directives.MEMO_LIMIT
    long = "private, " + "x" * directives.MEMO_LENGTH
    assert parse_directives([long]).unqualified("private") and long not in directives._parsed
    # Several lines are one list (RFC 9110 §5.3): parsed together, never from one line's memo.
    assert parse_directives(["max-age=5", "max-age=7, no-store"]).items == {"max-age": "5", "no-store": None}
