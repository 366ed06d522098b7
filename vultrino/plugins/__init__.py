"""Plugins: manifests, validation of values against them, the WasmPlugin wrapper, the registry.

Importing this package is cheap: no WebAssembly engine is imported until a plugin is called.
"""

from __future__ import annotations

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
from vultrino.plugins.manifest import load_manifest, parse_manifest
from vultrino.plugins.registry import RESERVED_TOOL_NAMES, PluginRegistry, ToolBinding
from vultrino.plugins.validation import params_json_schema, validate_fields, validate_params
from vultrino.plugins.wasm import WasmPlugin

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
