"""RFC 9111 §4.1 secondary keys: Vary names, request snapshots and matching."""

from __future__ import annotations

import pytest

from proxy.messages import Headers, RequestHead, ResponseHead
from proxy.rfc.vary import vary_matches, vary_names, vary_snapshot

Fields = list[tuple[str, str]]


def request(fields: Fields) -> RequestHead:
    return RequestHead("GET", "https", "api.example", "/items", headers=Headers(fields))


NAMES = [
    (
        "rfc9110-12.5.5-names-lowercased",
        [("Vary", "Accept-Encoding, Accept-Language")],
        ("accept-encoding", "accept-language"),
    ),
    ("rfc9110-12.5.5-all-lines-count", [("Vary", "Accept"), ("vary", "Origin")], ("accept", "origin")),
    ("rfc9110-12.5.5-duplicates-dropped", [("Vary", "Accept, accept,ACCEPT")], ("accept",)),
    ("rfc9110-12.5.5-star-anywhere-wins", [("Vary", "Accept"), ("Vary", "Origin, *")], ("*",)),
    ("rfc9110-12.5.5-empty-members-ignored", [("Vary", " , Accept ,")], ("accept",)),
    ("rfc9110-12.5.5-no-vary", [("Content-Type", "text/plain")], ()),
]


@pytest.mark.parametrize(("fields", "expected"), [c[1:] for c in NAMES], ids=[c[0] for c in NAMES])
def test_vary_names(fields: Fields, expected: tuple[str, ...]) -> None:
    assert vary_names(ResponseHead(200, Headers(fields))) == expected


SNAPSHOTS = [
    (
        "rfc9111-4.1-accept-encoding-normalised",
        ("accept-encoding",),
        [("Accept-Encoding", " Br ;  Q=0.5, GZIP ")],
        (("accept-encoding", "gzip, br;q=0.5"),),
    ),
    (
        "rfc9111-4.1-lines-combined",
        ("accept-language",),
        [("Accept-Language", "en-US"), ("Accept-Language", "FR;q=0.8")],
        (("accept-language", "en-us, fr;q=0.8"),),
    ),
    (
        "rfc9111-4.1-case-sensitive-field-kept",
        ("x-tenant",),
        [("X-Tenant", "  Acme ,Corp ")],
        (("x-tenant", "Acme, Corp"),),
    ),
    (
        "rfc9111-4.1-absent-is-none",
        ("accept", "origin"),
        [("Accept", "*/*")],
        (("accept", "*/*"), ("origin", None)),
    ),
    ("rfc9111-4.1-empty-is-not-absent", ("origin",), [("Origin", "")], (("origin", ""),)),
    ("rfc9111-4.1-star-snapshot", ("*",), [("Accept", "*/*")], (("*", None),)),
    ("rfc9111-4.1-name-lowercased", ("Accept",), [("ACCEPT", "text/html")], (("accept", "text/html"),)),
]


@pytest.mark.parametrize(("names", "fields", "expected"), [c[1:] for c in SNAPSHOTS], ids=[c[0] for c in SNAPSHOTS])
def test_vary_snapshot(names: tuple[str, ...], fields: Fields, expected: tuple[tuple[str, str | None], ...]) -> None:
    assert vary_snapshot(names, request(fields)) == expected


MATCHES = [
    ("rfc9111-4.1-vary-star-never-matches", ("*",), [("Accept", "a")], [("Accept", "a")], False),
    ("rfc9111-4.1-no-vary-matches-anything", (), [("Accept", "a")], [("Accept", "b")], True),
    (
        "rfc9111-4.1-same-value-matches",
        ("accept",),
        [("Accept", "text/html")],
        [("Accept", "text/html")],
        True,
    ),
    (
        "rfc9111-4.1-different-value-misses",
        ("accept",),
        [("Accept", "text/html")],
        [("Accept", "image/png")],
        False,
    ),
    (
        "rfc9111-4.1-accept-encoding-normalised",
        ("accept-encoding",),
        [("Accept-Encoding", "gzip, deflate")],
        [("Accept-Encoding", "GZIP,deflate")],
        True,
    ),
    (
        "rfc9111-4.1-accept-language-case-insensitive",
        ("accept-language",),
        [("Accept-Language", "en-US;q=1")],
        [("Accept-Language", "en-us; q=1")],
        True,
    ),
    (
        "rfc9111-4.1-field-lines-combined",
        ("accept-encoding",),
        [("Accept-Encoding", "gzip, br")],
        [("Accept-Encoding", "gzip"), ("Accept-Encoding", "br")],
        True,
    ),
    (
        "rfc9111-4.1-accept-language-equal-quality-order-matters",
        ("accept-language",),
        [("Accept-Language", "de, en")],
        [("Accept-Language", "en, de")],
        False,
    ),
    (
        "rfc9111-4.1-accept-encoding-order-normalised",
        ("accept-encoding",),
        [("Accept-Encoding", "gzip, br")],
        [("Accept-Encoding", "br, gzip")],
        True,
    ),
    (
        "rfc9111-4.1-accept-language-order-by-quality-normalised",
        ("accept-language",),
        [("Accept-Language", "fr;q=0.5, en-US")],
        [("Accept-Language", "en-us, fr;q=0.5")],
        True,
    ),
    (
        "rfc9111-4.1-accept-language-implied-q1-and-trailing-zeros",
        ("accept-language",),
        [("Accept-Language", "en;q=1.000, fr;q=0.50")],
        [("Accept-Language", "en, fr;q=0.5")],
        True,
    ),
    (
        "rfc9111-4.1-accept-language-different-quality-misses",
        ("accept-language",),
        [("Accept-Language", "en, fr;q=0.5")],
        [("Accept-Language", "en, fr;q=0.6")],
        False,
    ),
    (
        "rfc9111-4.1-accept-encoding-x-gzip-is-gzip",
        ("accept-encoding",),
        [("Accept-Encoding", "x-gzip, br")],
        [("Accept-Encoding", "br, gzip")],
        True,
    ),
    (
        "rfc9111-4.1-accept-encoding-quality-changes-preference",
        ("accept-encoding",),
        [("Accept-Encoding", "gzip;q=0.5, br")],
        [("Accept-Encoding", "gzip, br;q=0.5")],
        False,
    ),
    (
        "rfc9111-4.1-invalid-qvalue-compared-as-text",
        ("accept-language",),
        [("Accept-Language", "en;q=2, fr")],
        [("Accept-Language", "fr, en;q=2")],
        False,
    ),
    (
        "rfc9111-4.1-case-sensitive-value-misses",
        ("x-tenant",),
        [("X-Tenant", "A")],
        [("X-Tenant", "a")],
        False,
    ),
    ("rfc9111-4.1-absent-matches-absent", ("origin",), [], [], True),
    ("rfc9111-4.1-absent-misses-present", ("origin",), [], [("Origin", "https://a.example")], False),
    ("rfc9111-4.1-present-misses-absent", ("origin",), [("Origin", "https://a.example")], [], False),
    ("rfc9111-4.1-empty-misses-absent", ("origin",), [("Origin", "")], [], False),
    (
        "rfc9111-4.1-all-names-must-match",
        ("accept", "origin"),
        [("Accept", "a"), ("Origin", "o")],
        [("Accept", "a"), ("Origin", "p")],
        False,
    ),
]


@pytest.mark.parametrize(
    ("names", "stored", "incoming", "expected"), [c[1:] for c in MATCHES], ids=[c[0] for c in MATCHES]
)
def test_vary_matches(names: tuple[str, ...], stored: Fields, incoming: Fields, expected: bool) -> None:
    snapshot = vary_snapshot(names, request(stored))
    assert vary_matches(snapshot, request(incoming)) is expected
