"""Every contract point of DESIGN.md has a doc entry, and the code knows it (datasette's
`test_plugin_hooks_are_documented`): manifest keys, config keys, environment variables, ABI
names and the built-in MCP tools."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import vultrino
from vultrino.config import _SCHEMA
from vultrino.plugins.manifest import parse_manifest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

# DESIGN.md section 3, key by key.
MANIFEST_KEYS: dict[str, tuple[str, ...]] = {
    "plugin": (
        "name", "version", "description", "author", "license", "homepage", "repository",
        "format", "wasm_module", "min_vultrino_version",
    ),
    "credential_types": ("name", "display_name", "description", "fields"),
    "credential_types.fields": (
        "name", "label", "type", "required", "secret", "help_text", "placeholder", "default",
        "options", "min_length", "max_length", "validation_pattern", "access",
        "passphrase_field",
    ),
    "actions": ("name", "description", "credential_type", "parameters"),
    "actions.parameters": ("name", "type", "required", "description", "default", "enum_values"),
    "mcp_tools": ("name", "action", "description", "input_schema", "parameter_mappings"),
}  # fmt: skip

EVERY_KEY = """
[plugin]
name = "every-key"
version = "1.2.3"
description = "d"
author = "a"
license = "MIT"
homepage = "https://example.com"
repository = "https://example.com/repo.git"
format = "wasm"
wasm_module = "every_key.wasm"
min_vultrino_version = "0.1.0"

[[credential_types]]
name = "thing"
display_name = "Thing"
description = "d"
[[credential_types.fields]]
name = "colour"
label = "Colour"
type = "select"
required = true
secret = false
help_text = "h"
placeholder = "p"
default = "red"
options = ["red", "blue"]
[[credential_types.fields]]
name = "token"
type = "password"
secret = true
min_length = 4
max_length = 64
validation_pattern = "[a-z0-9]+"
access = "guest"

[[actions]]
name = "act"
description = "d"
credential_type = "thing"
[[actions.parameters]]
name = "mode"
type = "string"
required = false
description = "d"
default = "a"
enum_values = ["a", "b"]

[[mcp_tools]]
name = "every_key_act"
action = "act"
description = "d"
parameter_mappings = { how = "mode" }
input_schema = { type = "object", properties = { how = { type = "string" } } }
"""


@pytest.mark.parametrize(
    ("table", "key"), [(t, k) for t, keys in MANIFEST_KEYS.items() for k in keys]
)
def test_every_manifest_key_is_documented(table: str, key: str) -> None:
    doc = (DOCS / "plugins" / "manifest.md").read_text()
    assert f"`{key}`" in doc, f"{table}.{key} is missing from docs/plugins/manifest.md"


def test_every_manifest_key_is_understood() -> None:
    m = parse_manifest(EVERY_KEY)
    assert m.warnings == ()  # no key of the contract is "unknown"
    assert m.plugin.min_vultrino_version == "0.1.0"
    field = m.credential_types[0].fields[0]
    assert (field.label, field.help_text, field.placeholder) == ("Colour", "h", "p")
    assert m.actions[0].parameters[0].enum_values == ("a", "b")


@pytest.mark.parametrize(
    "key", [f"{t}.{k}" if t else k for t, keys in _SCHEMA.items() for k in keys]
)
def test_every_config_key_is_documented(key: str) -> None:
    doc = (DOCS / "configuration.md").read_text()
    table, _, name = key.rpartition(".")
    assert f"{name} =" in doc and (not table or f"[{table}]" in doc), key


def _env_vars() -> list[str]:
    src = Path(vultrino.__file__).parent
    found: set[str] = set()
    for path in src.rglob("*.py"):
        found |= set(re.findall(r"VULTRINO_[A-Z_]+[A-Z]", path.read_text()))
    return sorted(found)


@pytest.mark.parametrize("name", _env_vars())
def test_every_environment_variable_is_documented(name: str) -> None:
    assert f"`{name}`" in (DOCS / "configuration.md").read_text()


ABI_NAMES = (
    "memory", "cabi_realloc", "vultrino:plugin/handler@1.0.0#execute",
    "cabi_post_vultrino:plugin/handler@1.0.0#execute", "vultrino:plugin/host@1.0.0", "log",
    "vultrino:plugin/handler@1.1.0#execute", "vultrino:plugin/handler@1.1.0#execute-text",
    "cabi_post_vultrino:plugin/handler@1.1.0#execute-text", "vultrino:plugin/host@1.1.0",
    "vultrino:plugin/keys@1.2.0", "key-error", "key-format", "vultrino:plugin/http@1.3.0",
    "wasi_snapshot_preview1", "vultrino_plugin_version", "vultrino_alloc", "vultrino_free",
    "vultrino_execute", "vultrino_validate_params", "invalid_params", "unknown_action",
    "invalid_credential", "failed",
)  # fmt: skip


@pytest.mark.parametrize("name", ABI_NAMES)
def test_every_abi_name_is_documented(name: str) -> None:
    assert name in (DOCS / "plugins" / "abi.md").read_text()


@pytest.mark.parametrize("tool", ["list_credentials", "http_request"])
def test_builtin_tools_are_documented(tool: str) -> None:
    assert f"`{tool}`" in (DOCS / "mcp.md").read_text()
