"""Fuzzing the two ABI codecs (vultrino/runtime/abi.py): whatever a guest answers, the host
raises only its own ``PluginABIError`` (with a bounded message) or returns a well-formed answer.

- ABI 2: ``decode_abi2`` (MessagePack) and ``check_response`` on arbitrary bytes, on encoded
  near-miss answers, on mutated real answers and on hostile headers (huge declared lengths,
  deep nesting); and the whole response path on a real engine, through a guest that answers
  with whatever bytes the fuzzer hands it (``tests/fixtures/hostile/_reflect.wat``).
- ABI 1: ``decode_abi1`` (the Rust Vultrino's JSON answer) on arbitrary bytes and JSON
  documents, and ``encode_abi1`` on arbitrary requests.

Derandomized with a fixed example count in CI; ``VULTRINO_FUZZ_EXAMPLES=N`` (``just fuzz``)
runs N random examples per test instead.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TEST_ENGINE
from tests.guests import wat2wasm
from tests.reliability.corpus import wat_source
from vultrino import _msgpack
from vultrino.errors import ParameterError, PluginABIError
from vultrino.runtime import Limits, PluginModule, WasmRuntime
from vultrino.runtime.abi import (
    ERROR_CODES,
    check_response,
    decode_abi1,
    decode_abi2,
    encode_abi1,
)

_EXAMPLES = os.environ.get("VULTRINO_FUZZ_EXAMPLES")


def fuzz(ci_examples: int) -> settings:
    return settings(
        max_examples=int(_EXAMPLES) if _EXAMPLES else ci_examples,
        derandomize=not _EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


#: An error message the host builds from a guest's answer stays this short, however large the
#: answer (a 64-character excerpt of a bad error code can take 640 characters once escaped): a
#: guest must not be able to flood logs or an agent's context through the host.
MAX_MESSAGE = 1000

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=24)
    | st.binary(max_size=24)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=8) | st.integers(-(2**31), 2**31) | st.binary(max_size=4),
            inner,
            max_size=4,
        )
    ),
    max_leaves=16,
)
codes = st.sampled_from(sorted(ERROR_CODES)) | st.text(max_size=80)
near_answers = st.one_of(
    st.builds(lambda v: {"ok": v}, values),
    st.builds(
        lambda c, m: {"error": {"code": c, "message": m}}, codes, st.text(max_size=40) | values
    ),
    st.builds(lambda v, k: {"ok": v, k: v}, values, st.text(max_size=8)),
    st.builds(lambda c: {"error": {"code": c, "message": "m", "extra": 1}}, codes),
    st.builds(lambda c: {"error": {"code": c}}, codes),
    st.builds(lambda k: {k * 200: 1}, st.text(min_size=1, max_size=5)),  # a huge key
    st.builds(
        lambda c: {"error": {"code": c * 500, "message": "m"}}, st.text(min_size=1, max_size=3)
    ),
    values,
)
HOSTILE_HEADERS = (
    b"\xdd\xff\xff\xff\xff",  # array32 of 4 G elements
    b"\xdf\xff\xff\xff\xff",  # map32 of 4 G pairs
    b"\xc6\xff\xff\xff\xff",  # bin32 of 4 GiB
    b"\xdb\xff\xff\xff\xff",  # str32 of 4 GiB
    b"\xc9\xff\xff\xff\xff\x05",  # ext32 of 4 GiB
    b"\x91" * 100_000 + b"\xc0",  # 100 000 nested arrays
    b"\x81\xa2ok" + b"\x81\xc0" * 50_000 + b"\xc0",  # 50 000 nested maps
    b"\xc1",  # never used
    b"\xd9\x02\xff\xfe",  # str8 with invalid UTF-8
    b"\x81\xa2ok\xc0\xc0",  # trailing data
    b"",
)
hostile_headers = st.sampled_from(range(len(HOSTILE_HEADERS))).map(HOSTILE_HEADERS.__getitem__)


def _mutations(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, byte in ops:
        if not buf:
            break
        i = pos % len(buf)
        if kind == 0:
            buf[i] ^= 1 << (byte % 8)
        elif kind == 1:
            del buf[i:]
        elif kind == 2:
            buf.insert(i, byte)
        else:
            buf[i] = byte
    return bytes(buf)


mutated = st.builds(
    _mutations,
    near_answers.map(_msgpack.packb),
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)), max_size=4
    ),
)
answers_bytes = st.one_of(
    st.binary(max_size=512), near_answers.map(_msgpack.packb), mutated, hostile_headers
)


def _valid_answer(answer: Any) -> bool:
    if not isinstance(answer, dict) or len(answer) != 1:
        return False
    if "ok" in answer:
        return True
    err = answer.get("error")
    return (
        isinstance(err, dict)
        and set(err) == {"code", "message"}
        and err["code"] in ERROR_CODES
        and type(err["message"]) is str
    )


# --- ABI 2 ---------------------------------------------------------------------------------------


@fuzz(600)
@given(answers_bytes)
def test_abi2_answers_decode_or_raise_plugin_abi_error(raw: bytes) -> None:
    try:
        answer = check_response(decode_abi2(raw))
    except PluginABIError as exc:
        assert len(str(exc)) <= MAX_MESSAGE, str(exc)[:200]
        return
    assert _valid_answer(answer)


@fuzz(600)
@given(near_answers)
def test_check_response_accepts_exactly_the_two_shapes(value: Any) -> None:
    try:
        answer = check_response(value)
    except PluginABIError as exc:
        assert not _valid_answer(value)
        assert len(str(exc)) <= MAX_MESSAGE, str(exc)[:200]
        return
    assert answer is value and _valid_answer(value)


@fuzz(300)
@given(near_answers)
def test_a_valid_answer_survives_the_round_trip(value: Any) -> None:
    raw = _msgpack.packb(value)
    if _valid_answer(value):
        assert _same(check_response(decode_abi2(raw)), value)


def _same(a: Any, b: Any) -> bool:
    """Equality that counts NaN equal to NaN and a list equal to the tuple msgpack made it."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.fixture(scope="module")
def reflect() -> Iterator[PluginModule]:
    """A real guest answering with the fuzzer's bytes, under a 64 KiB output cap."""
    limits = Limits(deadline_s=5, memory_bytes=32 * 1024 * 1024, output_bytes=64 * 1024)
    with WasmRuntime(TEST_ENGINE or "wasmtime", limits=limits) as rt:
        module = rt.load(wat2wasm(wat_source("_reflect")), plugin="reflect")
        yield module
        module.close()


def _through_guest(module: PluginModule, payload: bytes) -> dict[str, Any]:
    return module.execute({"action": "x", "params": {"b": payload}, "credential": None})


@fuzz(150)
@given(answers_bytes | st.binary(min_size=60_000, max_size=70_000))
def test_the_whole_response_path_on_a_real_engine(reflect: PluginModule, raw: bytes) -> None:
    try:
        answer = _through_guest(reflect, raw)
    except PluginABIError as exc:
        assert exc.plugin == "reflect"
        assert len(str(exc)) <= MAX_MESSAGE, str(exc)[:200]
    else:
        assert _valid_answer(answer)
    # Whatever happened, the same module answers the next call.
    assert _through_guest(reflect, _msgpack.packb({"ok": "fine"})) == {"ok": "fine"}


# --- ABI 1 ---------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
abi1_docs = st.one_of(
    st.fixed_dictionaries(
        {"code": st.integers(-10, 10) | json_values, "data": json_values, "error": json_values}
    ),
    st.dictionaries(st.sampled_from(["code", "data", "error", "x"]), json_values, max_size=4),
    json_values,
).map(lambda d: json.dumps(d).encode())
abi1_bytes = st.one_of(
    st.binary(max_size=256),
    abi1_docs,
    st.sampled_from(
        [b"[" * 100_000, b'{"code":0,"data":"\xff"}', b'{"code": 1e999}', b"\xef\xbb\xbf{}"]
    ),
)


@fuzz(500)
@given(abi1_bytes)
def test_abi1_answers_decode_or_raise_plugin_abi_error(raw: bytes) -> None:
    try:
        answer = decode_abi1(raw)
    except PluginABIError as exc:
        assert len(str(exc)) <= MAX_MESSAGE, str(exc)[:200]
        return
    assert _valid_answer(answer)
    if "ok" in answer:
        assert answer["ok"] is None or isinstance(answer["ok"], str)


@fuzz(300)
@given(
    st.fixed_dictionaries(
        {"action": st.text(max_size=20) | values, "params": values, "credential": values}
    )
)
def test_abi1_requests_encode_or_raise_parameter_error(request: dict[str, Any]) -> None:
    try:
        body, action, params = encode_abi1(request)
    except ParameterError:
        return
    doc = json.loads(body)
    assert list(doc) == ["action", "credential", "parameters"]
    assert doc["action"] == request["action"] == action.decode()
    assert json.loads(params) == doc["parameters"]
