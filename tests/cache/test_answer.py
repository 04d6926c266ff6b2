"""``proxy.cache.answer``: the Cache-Status field of an answer, rendered from its typed ``CacheStatus``."""

from __future__ import annotations

from proxy.cache import answer
from proxy.cache.answer import Asked, CacheOutcome, CacheStatus, error_answer
from proxy.messages import RequestHead
from proxy.rfc.decisions import Fwd, Reason


def status_field(status: CacheStatus, cache: str = "cacheproxy") -> bytes:
    asked = Asked(RequestHead("GET", "http", "a.test", "/"), cache=cache)
    reply = error_answer(asked, 502, "502 Bad Gateway", status)
    assert reply.outcome is CacheOutcome.ERROR
    return dict(reply.headers)[b"cache-status"]


def test_rfc9211_status_lines_are_rendered_once_and_the_memo_stays_bounded() -> None:
    status = CacheStatus(fwd=Fwd.URI_MISS, detail=Reason.NO_STORE)
    assert status_field(status) == b"cacheproxy; fwd=uri-miss; detail=no-store"
    assert status_field(status, cache="edge") == b"edge; fwd=uri-miss; detail=no-store"
    for code in range(answer.STATUS_LINES_LIMIT + 10):
        line = status_field(CacheStatus(fwd=Fwd.STALE, fwd_status=code))
        assert line == f"cacheproxy; fwd=stale; fwd-status={code}".encode()
        assert len(answer._status_lines) <= answer.STATUS_LINES_LIMIT
    # A ttl changes every second: such lines are rendered each time, never kept.
    assert (
        status_field(CacheStatus(hit=True, ttl=41.7, detail=Reason.STALE)) == b"cacheproxy; hit; ttl=41; detail=stale"
    )
    assert all(kept.ttl is None for _, kept in answer._status_lines)
