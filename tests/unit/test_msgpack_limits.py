"""The decode bounds of vultrino._msgpack.unpackb, at their edges, including the shortcuts that
skip the counting hooks (a document no longer than the value budget) and the depth walk (a
document with no more container-header bytes than the depth limit)."""

from __future__ import annotations

import pytest

from vultrino._msgpack import LimitError, packb, unpackb


def nested(depth: int, leaf: object = 0) -> object:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [1, 63, 64])
def test_nesting_up_to_the_limit_decodes(depth: int) -> None:
    doc = {"ok": nested(depth - 1, "x" * 100)}  # long enough to pass the length shortcut
    assert unpackb(packb(doc), max_depth=64) == doc


@pytest.mark.parametrize("depth", [65, 66, 200])
def test_nesting_past_the_limit_is_refused(depth: int) -> None:
    with pytest.raises(LimitError, match="nests"):
        unpackb(packb(nested(depth, "x" * 100)), max_depth=64)


def test_header_bytes_inside_strings_only_make_the_walk_happen() -> None:
    # 0x90..0x9f and 0x80..0x8f inside a bin value look like container headers to the byte
    # count; the walk then finds the real depth, which is fine.
    doc = {"ok": [bytes(range(0x80, 0xA0)) * 10]}
    assert unpackb(packb(doc), max_depth=2) == doc


@pytest.mark.parametrize("count", [10, 99, 100])
def test_values_within_the_budget_decode(count: int) -> None:
    doc = list(range(count - 1))  # the array itself counts too
    assert unpackb(packb(doc), max_nodes=100) == doc


@pytest.mark.parametrize("count", [101, 102, 5000])
def test_values_past_the_budget_are_refused(count: int) -> None:
    with pytest.raises(LimitError, match="more than 100 values"):
        unpackb(packb([None] * (count - 1)), max_nodes=100)


def test_a_document_shorter_than_the_budget_cannot_exceed_it() -> None:
    data = packb({"a": [1, 2, 3], "b": {}})
    assert len(data) <= 100
    assert unpackb(data, max_nodes=100) == {"a": [1, 2, 3], "b": {}}
