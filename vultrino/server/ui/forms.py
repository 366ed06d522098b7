"""Credential forms generated from a plugin's field definitions (``[[credential_types.fields]]``).

:func:`form_fields` turns a credential type into what the template draws — label, help text,
input kind, required, default, options — and :func:`submitted_fields` turns a submitted form
back into the ``fields`` mapping that :meth:`vultrino.core.Vultrino.add_credential` validates
(the plugin's checks decide what is valid, as for the CLI). A secret field never carries a
value into the page: not its stored value, not what was typed before an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vultrino.plugins.base import CredentialTypeSpec, FieldSpec

__all__ = ["FIELD_PREFIX", "FormField", "form_fields", "submitted_fields"]

FIELD_PREFIX = "field."

_INPUT = {"text": "text", "password": "password", "number": "number"}


@dataclass(frozen=True)
class FormField:
    name: str  # the form control's name: FIELD_PREFIX + the field's name
    id: str
    label: str
    help: str
    kind: str  # input, textarea, select, checkbox
    input_type: str  # for kind "input": text, password, number
    required: bool
    secret: bool
    value: str  # never a secret's
    placeholder: str
    options: tuple[str, ...]
    pattern: str | None
    min_length: int | None
    max_length: int | None


def _is_secret(f: FieldSpec) -> bool:
    return f.secret or f.type == "password"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def form_fields(
    spec: CredentialTypeSpec,
    previous: Mapping[str, str] | None = None,
    *,
    only_secret: bool = False,
) -> list[FormField]:
    """The controls of ``spec``'s form. ``previous`` refills non-secret values after a refused
    submission; ``only_secret`` keeps the secret fields (the rotate form)."""
    out = []
    for f in spec.fields:
        secret = _is_secret(f)
        if (only_secret and not secret) or f.type == "hidden":
            continue  # a hidden field is never shown: set by `vultrino add --field` only
        if f.type in ("textarea", "file"):  # a file field: its contents, pasted
            kind, input_type = "textarea", ""
        elif f.type == "select":
            kind, input_type = "select", ""
        elif f.type == "checkbox":
            kind, input_type = "checkbox", ""
        else:
            kind = "input"
            input_type = "password" if secret else _INPUT.get(f.type, "text")
        value = "" if secret else _text(f.default)
        if previous is not None and not secret and f.name in previous:
            value = previous[f.name]
        out.append(
            FormField(
                name=FIELD_PREFIX + f.name,
                id=f"f-{f.name}",
                label=f.label or f.name,
                help=f.help_text,
                kind=kind,
                input_type=input_type,
                required=f.required and f.default is None,
                secret=secret,
                value=value,
                placeholder=f.placeholder,
                options=tuple(f.options),
                pattern=f.validation_pattern,
                min_length=f.min_length,
                max_length=f.max_length,
            )
        )
    return out


def submitted_fields(
    spec: CredentialTypeSpec, form: Mapping[str, str], *, only_secret: bool = False
) -> dict[str, str]:
    """The ``fields`` of a submitted form: each field's text; an empty optional field is left
    out (so its default applies); an unchecked checkbox is ``false``."""
    values: dict[str, str] = {}
    for f in spec.fields:
        if (only_secret and not _is_secret(f)) or f.type == "hidden":
            continue
        raw = form.get(FIELD_PREFIX + f.name)
        if f.type == "checkbox":
            values[f.name] = "true" if raw is not None else "false"
            continue
        text = "" if raw is None else str(raw)
        # browsers send a textarea's lines with CRLF; a PEM block has LF
        multiline = f.type in ("textarea", "file")
        text = text.replace("\r\n", "\n") if multiline else text.strip()
        if text == "" and not (f.required and f.default is None):
            continue
        values[f.name] = text
    return values
