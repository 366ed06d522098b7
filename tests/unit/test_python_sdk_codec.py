"""The pure-Python MessagePack codec of the Python guest SDK
(``sdk/python/vultrino_pdk/msgpack.py``, added to every Python plugin's build) agrees with the
host's msgpack."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

PATH = Path(__file__).resolve().parents[2] / "sdk" / "python" / "vultrino_pdk" / "msgpack.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sdk_msgpack", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


codec = _load()

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(), inner, max_size=20),
    max_leaves=60,
)


@settings(max_examples=300, derandomize=True)
@given(values)
def test_encoding_matches_msgpack_and_round_trips(value: Any) -> None:
    packed = codec.packb(value)
    assert msgpack.unpackb(packed, raw=False, strict_map_key=False) == value
    assert codec.unpackb(msgpack.packb(value, use_bin_type=True)) == value
    assert codec.unpackb(packed) == value


@pytest.mark.parametrize(
    "data", [b"", b"\xc1", b"\x92\x01", b"\xa5ab", b"\x81\x01", b"\x01\x02", b"\xd9\x05abc"]
)
def test_bad_input_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(codec.DecodeError):
        codec.unpackb(data)


def test_unencodable_values_are_refused() -> None:
    with pytest.raises(TypeError, match="cannot encode a set"):
        codec.packb({1, 2})
    with pytest.raises(OverflowError):
        codec.packb(1 << 64)
