"""Plugins: manifests, validation of values against them, the WasmPlugin wrapper, the registry.

This top level is the plugin model: :mod:`.base` (the Plugin protocol and the spec classes),
:mod:`.manifest` (plugin.toml), :mod:`._manifest_cache`, :mod:`.validation` (values against the
specs), :mod:`.wasm` (WasmPlugin) and :mod:`.registry`. Two subsystems have packages of their
own: :mod:`.http`, the built-in HTTP plugin, and :mod:`.install`, which gets plugins onto disk
(sources, archives, builds, scaffolding).

Importing this package is cheap: no WebAssembly engine is imported until a plugin is called.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vultrino.plugins.base import (
    ActionResult,
    ActionSpec,
    CredentialTypeSpec,
    CredentialView,
    FieldSpec,
    ParameterSpec,
    Plugin,
    PluginInfo,
    PluginManifest,
    ToolSpec,
    qualified_type,
)

if TYPE_CHECKING:
    from vultrino.plugins.manifest import load_manifest, parse_manifest
    from vultrino.plugins.registry import RESERVED_TOOL_NAMES, PluginRegistry, ToolBinding
    from vultrino.plugins.validation import params_json_schema, validate_fields, validate_params
    from vultrino.plugins.wasm import WasmPlugin

# Loaded on first use: `vultrino --help` needs only the spec classes above.
_LAZY = {
    "load_manifest": "manifest",
    "parse_manifest": "manifest",
    "RESERVED_TOOL_NAMES": "registry",
    "PluginRegistry": "registry",
    "ToolBinding": "registry",
    "params_json_schema": "validation",
    "validate_fields": "validation",
    "validate_params": "validation",
    "WasmPlugin": "wasm",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "RESERVED_TOOL_NAMES",
    "ActionResult",
    "ActionSpec",
    "CredentialTypeSpec",
    "CredentialView",
    "FieldSpec",
    "ParameterSpec",
    "Plugin",
    "PluginInfo",
    "PluginManifest",
    "PluginRegistry",
    "ToolBinding",
    "ToolSpec",
    "WasmPlugin",
    "load_manifest",
    "params_json_schema",
    "parse_manifest",
    "qualified_type",
    "validate_fields",
    "validate_params",
]
