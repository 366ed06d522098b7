"""Property tests: whatever text it is given, the manifest parser either returns a manifest
whose invariants hold or raises ManifestError — never anything else."""

from __future__ import annotations

import datetime
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vultrino.errors import ManifestError
from vultrino.plugins.base import FIELD_KINDS, PARAM_KINDS, PluginManifest
from vultrino.plugins.manifest import parse_manifest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PGP_TEXT = (
    Path(__file__).parent.parent / "fixtures" / "manifests" / "pgp-signing.toml"
).read_text()
PGP_DOC = tomllib.loads(PGP_TEXT)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check(text: str) -> PluginManifest | None:
    """Parse; a ManifestError is fine, any other exception fails the test."""
    try:
        manifest = parse_manifest(text)
    except ManifestError as exc:
        assert exc.problems
        return None
    assert_invariants(manifest)
    return manifest


def assert_invariants(m: PluginManifest) -> None:
    """What every successfully parsed manifest guarantees to the rest of Vultrino."""
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", m.name)
    assert m.plugin.format == "wasm"
    module = m.plugin.wasm_module
    assert module and "/" not in module and "\\" not in module and ".." not in module
    types = [t.name for t in m.credential_types]
    assert len(set(types)) == len(types)
    for ctype in m.credential_types:
        names = [f.name for f in ctype.fields]
        assert len(set(names)) == len(names)
        for f in ctype.fields:
            assert f.type in FIELD_KINDS
            if f.type == "select":
                assert f.options
    actions = [a.name for a in m.actions]
    assert len(set(actions)) == len(actions)
    for action in m.actions:
        assert action.credential_type is None or action.credential_type in types
        params = [p.name for p in action.parameters]
        assert len(set(params)) == len(params)
        assert all(p.type in PARAM_KINDS for p in action.parameters)
    tools = [t.name for t in m.mcp_tools]
    assert len(set(tools)) == len(tools)
    assert all(t.action in actions for t in m.mcp_tools)


# --- arbitrary text --------------------------------------------------------------------------


@FUZZ
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.text(alphabet="[]{}=\"'.,#\n abc_-0123456789truefalsplugin", max_size=300))
def test_toml_shaped_text(text: str) -> None:
    check(text)


# --- text mutations of the pgp-signing manifest ----------------------------------------------


@FUZZ
@given(st.data())
def test_mutated_manifest_text(data: st.DataObject) -> None:
    lines = PGP_TEXT.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["delete", "duplicate", "insert", "chars"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "insert":
            lines.insert(i, data.draw(st.text(max_size=40)) + "\n")
        else:
            line = lines[i]
            j = data.draw(st.integers(0, len(line)))
            lines[i] = line[:j] + data.draw(st.text(max_size=5)) + line[j + 1 :]
        if not lines:
            break
    check("".join(lines))


# --- structural mutations --------------------------------------------------------------------

SCALARS = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
    st.sampled_from(
        ["", "pgp_key", "sign", "text", "select", "integer", "x.wasm", "../x", "1.0.0"]
    ),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.dates(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def toml_value(value: Any) -> str:
    """An inline TOML rendering of a TOML-compatible value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def dump(doc: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in doc.items())


def test_dump_round_trips_the_pgp_manifest() -> None:
    """The test's own TOML writer is faithful, so structural mutations mean what they say."""
    assert tomllib.loads(dump(PGP_DOC)) == PGP_DOC
    assert parse_manifest(dump(PGP_DOC)) == parse_manifest(PGP_TEXT)


def _containers(node: Any, depth: int = 0) -> list[Any]:
    found = [node]
    if depth < 5:
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)):
                found.extend(_containers(child, depth + 1))
    return found


@FUZZ
@given(st.data())
def test_mutated_manifest_structure(data: st.DataObject) -> None:
    doc = tomllib.loads(PGP_TEXT)
    for _ in range(data.draw(st.integers(1, 3))):
        node = data.draw(st.sampled_from(_containers(doc)))
        op = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if isinstance(node, dict):
            keys = list(node)
            if op == "add" or not keys:
                node[data.draw(st.text(max_size=12))] = data.draw(VALUES)
            elif op == "delete":
                del node[data.draw(st.sampled_from(keys))]
            else:
                node[data.draw(st.sampled_from(keys))] = data.draw(VALUES)
        elif op == "add" or not node:
            node.append(data.draw(VALUES))
        elif op == "delete":
            node.pop(data.draw(st.integers(0, len(node) - 1)))
        else:
            node[data.draw(st.integers(0, len(node) - 1))] = data.draw(VALUES)
    check(dump(doc))


@pytest.mark.parametrize(
    "text",
    [
        "x = " + "[" * 3000 + "]" * 3000,
        "x = " + "{a = " * 2000 + "1" + "}" * 2000,
        "[plugin]\nname = 'a'\nversion = '1.0.0'\nwasm_module = 'a.wasm'\n[[actions]]\nname = 'b'\n"
        "[[actions.parameters]]\nname = 'p'\ntype = 'array'\ndefault = " + "[" * 200 + "]" * 200,
        "\x00",
        '[plugin]\nname = "\\ud800"',
    ],
)
def test_hostile_documents(text: str) -> None:
    check(text)
