"""RFC 9211 Cache-Status members and their Structured Field syntax (RFC 8941)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.rfc.cache_status import append_cache_status, cache_status
from proxy.rfc.decisions import Fwd

MEMBERS: dict[str, tuple[dict[str, Any], str]] = {
    "rfc9211-2.1-hit-with-ttl": ({"hit": True, "ttl": 41}, "cacheproxy; hit; ttl=41"),
    "rfc9211-2.4-ttl-rounded-down": ({"hit": True, "ttl": 41.9}, "cacheproxy; hit; ttl=41"),
    "rfc9211-2.4-negative-ttl-for-stale-hit": ({"hit": True, "ttl": -2.5}, "cacheproxy; hit; ttl=-3"),
    "rfc9211-2.2-uri-miss-stored": (
        {"fwd": Fwd.URI_MISS, "stored": True},
        "cacheproxy; fwd=uri-miss; stored",
    ),
    "rfc9211-2.3-stale-fwd-status-stored": (
        {"fwd": Fwd.STALE, "fwd_status": 304, "stored": True},
        "cacheproxy; fwd=stale; fwd-status=304; stored",
    ),
    "rfc9211-2.6-collapsed": ({"fwd": Fwd.MISS, "collapsed": True}, "cacheproxy; fwd=miss; collapsed"),
    "rfc9211-2.8-detail-token": (
        {"fwd": Fwd.BYPASS, "detail": "rule"},
        "cacheproxy; fwd=bypass; detail=rule",
    ),
    "rfc9211-2.8-detail-private": (
        {"fwd": Fwd.URI_MISS, "detail": "private"},
        "cacheproxy; fwd=uri-miss; detail=private",
    ),
    "rfc9211-2.8-detail-not-a-token-is-string": (
        {"fwd": Fwd.MISS, "detail": 'bad "thing" \\ here'},
        'cacheproxy; fwd=miss; detail="bad \\"thing\\" \\\\ here"',
    ),
    "rfc9211-2.8-detail-starting-with-digit-is-string": (
        {"fwd": Fwd.MISS, "detail": "502"},
        'cacheproxy; fwd=miss; detail="502"',
    ),
    "rfc8941-4.1.6-non-ascii-replaced": ({"detail": "caf\u00e9"}, 'cacheproxy; detail="caf?"'),
    "rfc9211-2.7-key-is-string": ({"hit": True, "key": "GET /a"}, 'cacheproxy; hit; key="GET /a"'),
    "rfc9211-2-parameter-order": (
        {
            "detail": "x",
            "key": "k",
            "collapsed": True,
            "stored": True,
            "ttl": 5,
            "fwd_status": 200,
            "fwd": Fwd.VARY_MISS,
        },
        'cacheproxy; fwd=vary-miss; fwd-status=200; ttl=5; stored; collapsed; key="k"; detail=x',
    ),
    "rfc9211-2-bare-name": ({}, "cacheproxy"),
}


@pytest.mark.parametrize(("kwargs", "expected"), MEMBERS.values(), ids=MEMBERS.keys())
def test_cache_status(kwargs: dict[str, Any], expected: str) -> None:
    assert cache_status(**kwargs) == expected


def test_rfc9211_2_name_token_kept() -> None:
    assert cache_status("edge-1.example", hit=True) == "edge-1.example; hit"


def test_rfc9211_2_name_not_a_token_is_string() -> None:
    assert cache_status("My Cache", hit=True) == '"My Cache"; hit'


APPEND = {
    "rfc9211-2-no-upstream-value": (None, "cacheproxy; hit"),
    "rfc9211-2-empty-upstream-value": ("  ", "cacheproxy; hit"),
    "rfc9211-2-ours-last": ("origin; fwd=miss", "origin; fwd=miss, cacheproxy; hit"),
    "rfc9211-2-trailing-comma-tolerated": ("a; hit, ", "a; hit, cacheproxy; hit"),
}


@pytest.mark.parametrize(("existing", "expected"), APPEND.values(), ids=APPEND.keys())
def test_append_cache_status(existing: str | None, expected: str) -> None:
    assert append_cache_status(existing, "cacheproxy; hit") == expected
