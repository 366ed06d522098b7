"""The web UI's Jinja2 environment: the only module that imports jinja2.

Templates live in ``templates/`` beside this module and are loaded from the package (no
network, no build step). Autoescaping is on for every template, so a credential alias, a
description or a plugin manifest's text is always shown as text, never as markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

__all__ = ["TEMPLATE_DIR", "render"]

TEMPLATE_DIR = Path(__file__).parent / "templates"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
    autoescape=True,  # every template, whatever its file name
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)


def render(name: str, **context: Any) -> str:
    """The HTML of template ``name`` (compiled once, then cached) with ``context``."""
    return _env.get_template(name).render(**context)
