"""The full table of request directives against stored responses (RFC 9111 §5.2.1, §5.2.2, §4.2.4, RFC 5861 §3).

Rows are the client's ``Cache-Control``; columns are the stored response (with an ETag, so it can be revalidated).
The stale columns went stale 40 s ago (max-age=60, age 100); the fresh ones have 200 s of freshness left
(max-age=300, age 100). Cells: ``S`` serve fresh, ``M`` serve stale under ``max-stale``, ``W`` serve stale under
``stale-while-revalidate`` (and refresh in the background), ``V`` go upstream with a conditional request, ``X`` answer
504 (``only-if-cached`` and nothing usable). The same table is in README.md, "How it caches".
"""

from __future__ import annotations

import pytest

from proxy.messages import Entry, Headers, RequestHead, ResponseHead
from proxy.rfc.decisions import Decision, Reason, Revalidate, Serve, Unsatisfiable
from proxy.rfc.reuse import decide

NOW = 1000.0
RECEIVED = 900.0

# column id -> (response Cache-Control, freshness lifetime, stale-while-revalidate window)
COLUMNS: dict[str, tuple[str, float, float]] = {
    "stale": ("max-age=60", 60.0, 0.0),
    "stale-must-revalidate": ("max-age=60, must-revalidate", 60.0, 0.0),
    "stale-proxy-revalidate": ("max-age=60, proxy-revalidate", 60.0, 0.0),
    "stale-s-maxage": ("s-maxage=60", 60.0, 0.0),
    "stale-no-cache": ("max-age=60, no-cache", 60.0, 0.0),
    "stale-no-cache-must-revalidate": ("max-age=60, no-cache, must-revalidate", 60.0, 0.0),
    "stale-swr": ("max-age=60, stale-while-revalidate=60", 60.0, 60.0),
    "stale-swr-expired": ("max-age=60, stale-while-revalidate=30", 60.0, 30.0),
    "fresh": ("max-age=300", 300.0, 0.0),
    "fresh-must-revalidate": ("max-age=300, must-revalidate", 300.0, 0.0),
    "fresh-s-maxage": ("s-maxage=300", 300.0, 0.0),
    "fresh-no-cache": ("max-age=300, no-cache", 300.0, 0.0),
}

# The table: request Cache-Control -> one cell per column, in COLUMNS order.
# Columns, in COLUMNS order: stale, +must-revalidate, +proxy-revalidate, s-maxage, +no-cache,
# +no-cache+must-revalidate, +swr=60, +swr=30, fresh, fresh+must-revalidate, fresh s-maxage, fresh+no-cache.
TABLE: dict[str, str] = {
    "": "V V V V V V W V S S S V",
    "max-stale": "M V V V V V W M S S S V",
    "max-stale=50": "M V V V V V W M S S S V",
    "max-stale=40": "M V V V V V W M S S S V",
    "max-stale=30": "V V V V V V W V S S S V",
    "min-fresh=10": "V V V V V V V V S S S V",
    "min-fresh=250": "V V V V V V V V V V V V",
    "max-age=150": "V V V V V V W V S S S V",
    "max-age=50": "V V V V V V V V V V V V",
    "max-age=150, max-stale": "M V V V V V W M S S S V",
    "no-cache": "V V V V V V V V V V V V",
    "only-if-cached": "X X X X X X W X S S S X",
    "only-if-cached, max-stale": "M X X X X X W M S S S X",
    "only-if-cached, no-cache": "X X X X X X X X X X X X",
    "only-if-cached, min-fresh=250": "X X X X X X X X X X X X",
}


def _entry(column: str) -> Entry:
    cache_control, freshness, swr = COLUMNS[column]
    return Entry(
        key="k",
        url="https://api.example/items",
        head=ResponseHead(200, Headers([("Cache-Control", cache_control), ("ETag", '"v1"')])),
        body=b"{}",
        request_time=RECEIVED,
        response_time=RECEIVED,
        freshness=freshness,
        stale_while_revalidate=swr,
    )


def _cell(decision: Decision) -> str:
    match decision:
        case Serve(reason=Reason.FRESH):
            return "S"
        case Serve(reason=Reason.MAX_STALE):
            return "M"
        case Serve(reason=Reason.STALE_WHILE_REVALIDATE, revalidate=True):
            return "W"
        case Revalidate():
            return "V"
        case Unsatisfiable():
            return "X"
    return "?"


CELLS = [
    (f"rfc9111-5.2.1-{row or 'none'}-x-{column}".replace(", ", "+").replace("=", "-"), row, column, cell)
    for row, cells in TABLE.items()
    for column, cell in zip(COLUMNS, cells.split(), strict=True)
]


@pytest.mark.parametrize(("row", "column", "cell"), [c[1:] for c in CELLS], ids=[c[0] for c in CELLS])
def test_stale_table(row: str, column: str, cell: str) -> None:
    fields = [("Cache-Control", row)] if row else []
    request = RequestHead("GET", "https", "api.example", "/items", headers=Headers(fields))
    assert _cell(decide(request, [_entry(column)], NOW)) == cell


def test_the_table_is_complete() -> None:
    assert all(len(cells.split()) == len(COLUMNS) for cells in TABLE.values())
