"""Checking values against what a manifest declares: credential fields and action parameters.

The same rules serve every door a value comes through: the CLI (where everything arrives as a
string, so numbers, booleans and JSON are converted), the Python API and MCP (native values,
checked strictly). Every problem is collected before raising, so a user fixes them all at once.
Messages name fields and parameters and may quote non-secret values; a secret field's value is
never quoted, whatever went wrong with it.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from vultrino.errors import CredentialValidationError, ParameterError
from vultrino.plugins.base import ActionSpec, CredentialTypeSpec, FieldSpec, ParameterSpec

__all__ = [
    "KIND_HINT",
    "MAX_FILE_FIELD_BYTES",
    "STRING_FIELD_KINDS",
    "check_field_names",
    "field_constraint_problems",
    "param_type_fits",
    "params_json_schema",
    "renamed_arguments",
    "tool_params_schema",
    "parse_bool",
    "show_value",
    "unknown_field_problems",
    "validate_fields",
    "validate_params",
]

#: Field kinds whose values are strings (lengths, patterns and options apply to them).
STRING_FIELD_KINDS: frozenset[str] = frozenset(
    {"text", "password", "textarea", "select", "file", "hidden"}
)
#: The largest value a ``file`` field holds (what ``--field NAME=@PATH`` may read).
MAX_FILE_FIELD_BYTES = 1024 * 1024

_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_SHOW_MAX = 40

#: How each parameter kind is named in "expected ..." messages.
KIND_HINT: dict[str, str] = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true/false)",
    "object": "an object (table)",
    "array": "an array",
}


def show_value(value: Any) -> str:
    """A short, readable rendering of a non-secret value for an error message."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        text = type(value).__name__
    if len(text) > _SHOW_MAX:
        text = text[: _SHOW_MAX - 3] + "..."
    return text


def type_name(value: Any) -> str:
    """The TOML/JSON name of a Python value's type, for 'expected X, got Y' messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "table"
    return type(value).__name__


def parse_bool(text: str) -> bool | None:
    """``true/false/yes/no/1/0`` (any case, surrounding blanks ignored); None otherwise."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    return None


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (isinstance(value, int) or math.isfinite(value))
    )


def _parse_number(text: str) -> int | float | None:
    word = text.strip()
    if _INT_TEXT.fullmatch(word):
        return int(word)
    try:
        number = float(word)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# --- credential fields -----------------------------------------------------------------------


def field_constraint_problems(spec: FieldSpec, value: Any) -> list[str]:
    """Problems of an already type-correct value with the field's options, lengths and pattern.

    Used for user input and for a manifest's ``default``. Secret values are never quoted.
    """
    if spec.type not in STRING_FIELD_KINDS or not isinstance(value, str):
        return []
    secret = spec.secret or spec.type == "password"
    problems: list[str] = []
    if spec.type == "file" and len(value.encode("utf-8", "surrogatepass")) > MAX_FILE_FIELD_BYTES:
        size = len(value.encode("utf-8", "surrogatepass"))
        problems.append(
            f"the file is {size} bytes; a file field holds at most {MAX_FILE_FIELD_BYTES} "
            "bytes (1 MiB)"
        )
    if spec.type == "select" and value not in spec.options:
        choices = ", ".join(spec.options)
        got = "" if secret else f", got {show_value(value)}"
        problems.append(f"must be one of: {choices}{got}")
    if spec.min_length is not None and len(value) < spec.min_length:
        problems.append(f"must be at least {spec.min_length} characters long (got {len(value)})")
    if spec.max_length is not None and len(value) > spec.max_length:
        problems.append(f"must be at most {spec.max_length} characters long (got {len(value)})")
    if spec.validation_pattern is not None:
        try:
            matched = re.fullmatch(spec.validation_pattern, value) is not None
        except (re.error, RecursionError, OverflowError):
            problems.append("the type's validation_pattern is not a valid regular expression")
        else:
            if not matched:
                shown = "" if secret else f" ({show_value(value)})"
                problems.append(
                    f"value{shown} does not match the pattern {spec.validation_pattern}"
                )
    return problems


def _convert_field(spec: FieldSpec, value: Any) -> tuple[Any, str | None]:
    """Convert one field value to its kind: ``(converted, None)`` or ``(None, problem)``."""
    if spec.type == "checkbox":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, int) and value in (0, 1):
            return bool(value), None
        if isinstance(value, str):
            flag = parse_bool(value)
            if flag is not None:
                return flag, None
        return None, "expected a checkbox value: true/false, yes/no or 1/0"
    if spec.type == "number":
        if _is_number(value):
            return value, None
        if isinstance(value, str):
            number = _parse_number(value)
            if number is not None:
                return number, None
        return None, "expected a number such as 42 or 2.5"
    if isinstance(value, str):
        return value, None
    return None, f"expected text, got {type_name(value)}"


def unknown_field_problems(ctype: CredentialTypeSpec, names: Iterable[str]) -> list[str]:
    """One problem per name that is not a field of ``ctype``, with the closest field names
    ("did you mean") and every field the type has."""
    import difflib

    known = [f.name for f in ctype.fields]
    expected = ", ".join(known) if known else "none"
    problems = []
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=2, cutoff=0.6)
            guess = f"did you mean {' or '.join(close)}? " if close else ""
            problems.append(f"{name}: unknown field ({guess}fields of {ctype.name}: {expected})")
    return problems


def check_field_names(ctype: CredentialTypeSpec, names: Iterable[str]) -> None:
    """CredentialValidationError when a name is not a field of ``ctype`` (before anything
    is asked or stored: a mistyped name must not surface as a missing required field)."""
    problems = unknown_field_problems(ctype, names)
    if problems:
        count = len(problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        raise CredentialValidationError(
            f"unknown field{'s' if count != 1 else ''} for credential type {ctype.name}:\n"
            f"{lines}\nRun `vultrino types` to see every type's fields."
        )


def validate_fields(ctype: CredentialTypeSpec, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Check and convert credential field values against their type; return the values to store.

    Rules: unknown field names are rejected; a missing, ``None`` or empty value counts as not
    given, so the field's ``default`` applies, and a required field without one is a problem;
    checkbox and number values given as strings are converted; select options, lengths and
    ``validation_pattern`` (a full match) are checked. Raises one
    :class:`CredentialValidationError` listing every problem; secret values are never quoted.
    """
    problems = unknown_field_problems(ctype, fields)
    result: dict[str, Any] = {}
    for spec in ctype.fields:
        raw = fields.get(spec.name)
        if raw is None or raw == "":
            if spec.default is not None:
                result[spec.name] = copy.deepcopy(spec.default)
            elif spec.required:
                problems.append(f"{spec.name}: required")
            continue
        value, problem = _convert_field(spec, raw)
        if problem is not None:
            problems.append(f"{spec.name}: {problem}")
            continue
        found = field_constraint_problems(spec, value)
        if found:
            problems.extend(f"{spec.name}: {p}" for p in found)
            continue
        result[spec.name] = value
    if problems:
        count = len(problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        raise CredentialValidationError(
            f"invalid fields for credential type {ctype.name} "
            f"({count} problem{'s' if count != 1 else ''}):\n{lines}\n"
            "Run `vultrino types` to see every type's fields."
        )
    return result


# --- action parameters -----------------------------------------------------------------------


def param_type_fits(kind: str, value: Any) -> bool:
    """Whether a native value (TOML or JSON) is of parameter kind ``kind`` without conversion."""
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return _is_number(value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, Mapping)
    if kind == "array":
        return isinstance(value, (list, tuple))
    return False


def _convert_param(spec: ParameterSpec, value: Any, from_cli: bool) -> tuple[Any, str | None]:
    """Convert one parameter value: ``(converted, None)`` or ``(None, problem)``."""
    kind = spec.type
    if from_cli and isinstance(value, str) and kind != "string":
        if kind == "integer" and _INT_TEXT.fullmatch(value.strip()):
            return int(value.strip()), None
        if kind == "number":
            number = _parse_number(value)
            if number is not None:
                return number, None
        if kind == "boolean":
            flag = parse_bool(value)
            if flag is not None:
                return flag, None
        if kind in ("object", "array"):
            try:
                parsed = json.loads(value)
            except (ValueError, RecursionError):
                return None, f"expected a JSON {kind}, and this is not valid JSON"
            if param_type_fits(kind, parsed):
                return parsed, None
            return None, f"expected a JSON {kind}, got {type_name(parsed)}"
        return None, f"expected {KIND_HINT[kind]}, got {show_value(value)}"
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(float.__float__(value)), None
    if param_type_fits(kind, value):
        try:
            return plain_json(value), None
        except ValueError as exc:
            return None, str(exc)
    return None, f"expected {KIND_HINT[kind]}, got {type_name(value)}"


_PLAIN_DEPTH = 64


def plain_json(value: Any, depth: int = 0) -> Any:
    """``value`` rebuilt from the exact built-in types (str, int, float, bool, None, dict,
    list): a subclass of str or int (a caller's object with its own ``__eq__``, ``__hash__``
    or ``__str__``) becomes the plain value it holds, so what is checked, shown to a person
    and sent is one and the same. ValueError past the nesting limit or for another type."""
    t = type(value)
    if t is str or t is int or t is float or t is bool or t is bytes or value is None:
        return value
    if depth >= _PLAIN_DEPTH:
        raise ValueError(f"nested deeper than {_PLAIN_DEPTH} levels")
    if isinstance(value, bool):
        return bool(int.__int__(value))
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            out[plain_json(k, depth + 1)] = plain_json(v, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [plain_json(v, depth + 1) for v in value]
    raise ValueError(f"a {type_name(value)} is not a JSON value")


def validate_params(
    action: ActionSpec,
    params: Mapping[str, Any],
    *,
    from_cli: bool = False,
    plugin: str | None = None,
) -> dict[str, Any]:
    """Check and convert action parameters against the manifest; return what the plugin gets.

    Rules: unknown parameters are rejected; an explicit ``None`` (JSON null) is refused as a
    wrong type, while a parameter left out gets its ``default``, and a required parameter
    without one is a problem; values must be of the declared
    type — with ``from_cli`` a string is converted to an integer, number or boolean, and parsed
    as JSON for object and array; a float with an integral value is accepted as an integer;
    ``enum_values`` restrict the value. Raises one :class:`ParameterError` listing every problem.
    """
    plain = action.plain_strings
    if plain is not None and type(params) is dict:
        # Only string parameters, all given as strings, none missing: nothing to convert.
        names, needed = plain
        keys = params.keys()
        if keys <= names and keys >= needed:
            for value in params.values():
                if type(value) is not str:
                    break
            else:
                return dict(params)
    problems: list[str] = []
    known = [p.name for p in action.parameters]
    for name in params:
        if name not in known:
            expected = f"parameters: {', '.join(known)}" if known else "it takes no parameters"
            problems.append(f"{name}: unknown parameter ({expected})")
    result: dict[str, Any] = {}
    for spec in action.parameters:
        raw = params.get(spec.name)
        if raw is None and spec.name in params:
            # An explicit null is a value of the wrong type, not an absent parameter: a caller
            # sending null for an integer has a bug worth hearing about.
            if spec.default is not None:
                what = "leave the parameter out to get its default"
            elif spec.required:
                what = "the parameter is required"
            else:
                what = "leave the parameter out if there is no value"
            problems.append(f"{spec.name}: null is not {KIND_HINT[spec.type]}; {what}")
            continue
        if raw is None:
            if spec.default is not None:
                result[spec.name] = copy.deepcopy(spec.default)
            elif spec.required:
                problems.append(f"{spec.name}: required ({spec.type})")
            continue
        value, problem = _convert_param(spec, raw, from_cli)
        if problem is not None:
            problems.append(f"{spec.name}: {problem}")
            continue
        if spec.enum_values and value not in spec.enum_values:
            choices = ", ".join(show_value(v) for v in spec.enum_values)
            problems.append(f"{spec.name}: must be one of {choices}, got {show_value(value)}")
            continue
        result[spec.name] = value
    if problems:
        count = len(problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        where = f"{plugin} action {action.name}" if plugin else f"action {action.name}"
        hint = f"`vultrino plugin info {plugin}`" if plugin else "`vultrino plugin info`"
        raise ParameterError(
            f"invalid parameters for {where} ({count} problem{'s' if count != 1 else ''}):\n"
            f"{lines}\nSee {hint} for the action's parameters.",
            plugin=plugin,
        )
    return result


def params_json_schema(action: ActionSpec) -> dict[str, Any]:
    """The action's parameters as a JSON Schema object (what an MCP tool advertises).

    Each property has ``type`` and, when declared, ``description``, ``enum`` and ``default``;
    required parameters are listed in ``required``; ``additionalProperties`` is false because
    unknown parameters are rejected anyway.
    """
    properties: dict[str, Any] = {}
    required: list[str] = []
    for p in action.parameters:
        prop: dict[str, Any] = {"type": p.type}
        if p.description:
            prop["description"] = p.description
        if p.enum_values:
            prop["enum"] = list(p.enum_values)
        if p.default is not None:
            prop["default"] = copy.deepcopy(p.default)
        properties[p.name] = prop
        if p.required:
            required.append(p.name)
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def tool_params_schema(
    action: ActionSpec,
    input_schema: str | None = None,
    mappings: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    """The JSON Schema an MCP tool shows for ``action``'s parameters: the manifest's own
    ``input_schema`` when it has one (checked against the parameters when it was parsed),
    else :func:`params_json_schema` with each parameter renamed as ``mappings`` (tool
    argument, action parameter) says. A fresh object each time: callers may change it."""
    if input_schema is not None:
        schema: dict[str, Any] = json.loads(input_schema)
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        schema.setdefault("required", [])
        return schema
    schema = params_json_schema(action)
    if mappings:
        shown = {param: arg for arg, param in mappings}
        schema["properties"] = {shown.get(k, k): v for k, v in schema["properties"].items()}
        schema["required"] = [shown.get(k, k) for k in schema["required"]]
    return schema


def renamed_arguments(
    tool: str, arguments: Mapping[str, Any], mappings: tuple[tuple[str, str], ...]
) -> dict[str, Any]:
    """A tool's arguments under the action's parameter names (``parameter_mappings``). A
    renamed parameter given under the action's own name is refused, as the schema does not
    show that name."""
    to_param = dict(mappings)
    renamed = {param: arg for arg, param in mappings}
    out: dict[str, Any] = {}
    for key, value in arguments.items():
        if key in to_param:
            out[to_param[key]] = value
        elif key in renamed:
            raise ParameterError(
                f"tool {tool!r} takes {renamed[key]!r}, not {key!r}: see the tool's input schema"
            )
        else:
            out[key] = value
    return out
