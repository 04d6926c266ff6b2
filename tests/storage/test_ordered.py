"""The memory store's ordered index: the same answers as a plain sorted list, whatever the adds and removals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.storage.ordered import Item, OrderedItems

paths = st.sampled_from(["/", "/a", "/a/", "/a/b", "/a/b?q=1", "/ab", "/b", "/\U0010ffff", ""])
items = st.tuples(paths, st.sampled_from(["k1", "k2", "k3"]), st.sampled_from(["", "v"]))
operations = st.lists(st.tuples(st.booleans(), items), max_size=300)


def matching(index: OrderedItems, prefix: str) -> list[Item]:
    found = []
    for item in index.starting_at((prefix,)):
        if not item[0].startswith(prefix):
            break
        found.append(item)
    return found


@given(operations, st.integers(1, 4), paths)
def test_ordered_items_agree_with_a_sorted_list(ops: list[tuple[bool, Item]], load: int, prefix: str) -> None:
    index = OrderedItems(load)  # tiny buckets, so splits and emptied buckets happen all the time
    reference: set[Item] = set()
    for adding, item in ops:
        if adding:
            index.add(item)
            reference.add(item)
        else:
            index.discard(item)
            reference.discard(item)
    assert len(index) == len(reference)
    assert list(index.starting_at(("",))) == sorted(reference)
    assert matching(index, prefix) == sorted(item for item in reference if item[0].startswith(prefix))


def test_ordered_items_walk_from_a_prefix_visits_only_what_follows() -> None:
    index = OrderedItems(2)
    for n in range(100):
        index.add((f"/p/{n:03}", "k", ""))
    assert [path for path, _, _ in matching(index, "/p/05")] == [f"/p/05{n}" for n in range(10)]
    assert matching(index, "/q") == []
    index.clear()
    assert len(index) == 0
    assert list(index.starting_at(("",))) == []


def test_ordered_items_refuse_an_empty_bucket_size() -> None:
    with pytest.raises(ValueError, match="load"):
        OrderedItems(0)
