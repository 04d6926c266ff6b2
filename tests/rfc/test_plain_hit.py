"""``plain_hit_age`` is ``decide`` for plain requests: the hot path may never serve what ``decide`` would not."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.messages import Entry, Headers, RequestHead, ResponseHead
from proxy.rfc.decisions import Reason, Serve
from proxy.rfc.reuse import decide, plain_hit_age

NOW = 10_000.0
PLAIN = RequestHead("GET", "https", "api.example", "/items", headers=Headers([("Accept", "*/*")]))

cache_controls = st.sampled_from(
    ["max-age=60", "no-cache", 'no-cache="set-cookie"', "max-age=0", "must-revalidate, max-age=5", "s-maxage=9", ""]
)
vary = st.sampled_from([(), (("accept", "*/*"),), (("accept-language", None),)])


@st.composite
def entries(draw: st.DrawFn) -> Entry:
    fields = [("Cache-Control", cc)] if (cc := draw(cache_controls)) else []
    if draw(st.booleans()):
        fields.append(("ETag", '"e"'))
    return Entry(
        key="k",
        url="https://api.example/items",
        head=ResponseHead(200, Headers(fields)),
        body=b"x",
        request_time=NOW - 100,
        response_time=NOW - draw(st.floats(min_value=0, max_value=200)),
        freshness=draw(st.floats(min_value=0, max_value=200)),
        initial_age=draw(st.floats(min_value=0, max_value=50)),
        stale_while_revalidate=draw(st.sampled_from([0.0, 30.0])),
        vary=draw(vary),
        forced=draw(st.booleans()),
    )


@settings(max_examples=500)
@given(st.lists(entries(), max_size=2))
def test_rfc9111_4_plain_hit_agrees_with_decide(candidates: list[Entry]) -> None:
    age = plain_hit_age(candidates, NOW)
    decision = decide(PLAIN, candidates, NOW)
    if age is not None:
        assert decision == Serve(candidates[0], age)
    elif len(candidates) == 1 and not candidates[0].vary:
        assert not (isinstance(decision, Serve) and decision.reason is Reason.FRESH)


def test_plain_hit_serves_a_fresh_entry_at_its_age() -> None:
    entry = Entry("k", "u", ResponseHead(200, Headers([("Cache-Control", "max-age=60")])), b"", NOW - 5, NOW - 5, 60.0)
    assert plain_hit_age([entry], NOW) == 5.0
