"""``vultrino plugin new NAME [--lang python]``: a new plugin project from an SDK template.

The templates (``sdk-rust-template/`` and ``sdk-python-template/`` in a source checkout,
``vultrino/_data/sdk-*-template`` in an installed wheel; see :mod:`._shipped`) are real,
buildable plugins called ``my-plugin``: Rust built with cargo into a core module, Python built
with componentize-py into a WASI 0.2 component. Scaffolding copies it and renames it: every
occurrence of a placeholder in :data:`PLACEHOLDERS` — in file contents and file names — is
replaced by the matching form of the new name. Build output (``target/``) and VCS folders are
not copied.

The template holds only the plugin's own code; the guest SDK is not part of it. A Rust project
gets a copy of the ``vultrino-pdk`` crate this Vultrino ships, in ``vultrino-pdk/``, and its
``Cargo.toml`` path dependency is pointed there, so the project builds anywhere, offline, with
no path into a Vultrino checkout. A Python project gets nothing: the componentize step adds the
``vultrino_pdk`` package of the installed Vultrino when it builds.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from vultrino.errors import ManifestError, PluginError
from vultrino.plugins.install._shipped import RUST_PDK, shipped
from vultrino.plugins.manifest import MAX_NAME_LENGTH, PLUGIN_NAME_RE

__all__ = [
    "LANGUAGES",
    "PDK_DIR_NAME",
    "PLACEHOLDERS",
    "find_rust_pdk",
    "find_template",
    "new_plugin",
]

TEMPLATE_DIR_NAME = "sdk-rust-template"
#: Template directory and the file that marks it, per language.
LANGUAGES: dict[str, tuple[str, str]] = {
    "rust": (TEMPLATE_DIR_NAME, "Cargo.toml"),
    "python": ("sdk-python-template", "app.py"),
}

#: Placeholder text in the template -> how to spell the new plugin's name there. Longer
#: placeholders are replaced first, so ``{{crate_name}}`` never half-matches ``{{name}}``.
PLACEHOLDERS: dict[str, Callable[[str], str]] = {
    "{{crate_name}}": lambda name: name.replace("-", "_"),
    "{{name}}": lambda name: name,
    "my-plugin": lambda name: name,
    "my_plugin": lambda name: name.replace("-", "_"),
}

_SKIP = frozenset({"target", ".git", ".hg", ".svn", ".keep", "__pycache__"})

#: Where a Rust project keeps its copy of the guest SDK crate.
PDK_DIR_NAME = "vultrino-pdk"
# The `vultrino-pdk = { ..., path = "..." }` dependency line of a Cargo.toml.
_PDK_DEPENDENCY = re.compile(r'^(vultrino-pdk\s*=\s*\{[^}\n]*\bpath\s*=\s*)"[^"\n]*"', re.M)


def _language(lang: str) -> tuple[str, str]:
    try:
        return LANGUAGES[lang]
    except KeyError:
        raise PluginError(
            f"no plugin template for {lang!r}; choose one of {', '.join(LANGUAGES)}"
        ) from None


def find_template(lang: str = "rust") -> Path:
    """The template directory: a source checkout's top-level one, else the packaged copy."""
    dirname, marker = _language(lang)
    found = shipped(dirname, marker=marker)
    if found is None:
        raise PluginError(
            f"the {lang} plugin template ({dirname}) is missing from this Vultrino "
            "installation; reinstall vultrino, or pass a template directory"
        )
    return found


def find_rust_pdk() -> Path:
    """The ``vultrino-pdk`` crate this Vultrino ships (the checkout's ``sdk/rust/``, else the
    wheel's copy)."""
    found = shipped(RUST_PDK, marker="Cargo.toml")
    if found is None:
        raise PluginError(
            "the Rust plugin SDK (vultrino-pdk) is missing from this Vultrino installation; "
            "reinstall vultrino"
        )
    return found


def check_scaffold_name(name: str) -> None:
    """The manifest's plugin-name rule, plus a leading letter (a crate name and the derived
    MCP tool names cannot start with a digit)."""
    problems: list[str] = []
    if not PLUGIN_NAME_RE.fullmatch(name):
        problems.append(
            f"plugin.name: {name!r} is not a valid name: use lowercase letters, digits and "
            "single '-' between them"
        )
    elif not name[0].isalpha():
        problems.append(f"plugin.name: {name!r} must start with a letter (it becomes a crate name)")
    elif len(name) > MAX_NAME_LENGTH:
        problems.append(f"plugin.name: must be at most {MAX_NAME_LENGTH} characters long")
    if problems:
        raise ManifestError(f"cannot create plugin {name!r}: {problems[0]}", problems=problems)


def _substitute(text: str, name: str) -> str:
    for placeholder in sorted(PLACEHOLDERS, key=len, reverse=True):
        text = text.replace(placeholder, PLACEHOLDERS[placeholder](name))
    return text


def new_plugin(
    name: str, dest: Path, *, template_dir: Path | None = None, lang: str = "rust"
) -> Path:
    """Create a plugin project called ``name`` in ``dest`` (absent or an empty directory).

    Returns ``dest``. Raises :class:`ManifestError` for a name that is not a valid plugin name
    and :class:`PluginError` when ``dest`` is not empty or the template is missing. On error
    nothing is left behind.
    """
    check_scaffold_name(name)
    _, marker = _language(lang)
    template = Path(template_dir) if template_dir is not None else find_template(lang)
    if not (template / marker).is_file():
        raise PluginError(f"{template} is not a {lang} plugin template (it has no {marker})")
    dest = Path(dest)
    created = not dest.exists()
    if not created:
        if not dest.is_dir():
            raise PluginError(f"{dest} exists and is not a directory; choose another --path")
        if any(dest.iterdir()):
            raise PluginError(
                f"{dest} is not empty; choose another --path or an empty directory",
                plugin=name,
            )
    try:
        dest.mkdir(parents=True, exist_ok=True)
        _copy(template, dest, name)
        if lang == "rust":
            _vendor_rust_pdk(dest)
    except BaseException:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        else:
            for child in dest.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise
    return dest


def _vendor_rust_pdk(project: Path) -> None:
    """Copy the SDK crate into the project and point its path dependency at the copy (a
    template that does not depend on ``vultrino-pdk`` is left alone)."""
    cargo_toml = project / "Cargo.toml"
    text = cargo_toml.read_text(encoding="utf-8")
    if not _PDK_DEPENDENCY.search(text):
        return
    shutil.copytree(
        find_rust_pdk(),
        project / PDK_DIR_NAME,
        ignore=shutil.ignore_patterns(*_SKIP, "Cargo.lock"),
    )
    cargo_toml.write_text(
        _PDK_DEPENDENCY.sub(lambda m: f'{m.group(1)}"{PDK_DIR_NAME}"', text), encoding="utf-8"
    )


def _copy(template: Path, dest: Path, name: str) -> None:
    for dirpath, dirnames, filenames in os.walk(template):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP)
        out = dest / _substitute(str(here.relative_to(template)), name)
        out.mkdir(parents=True, exist_ok=True)
        for filename in sorted(filenames):
            if filename in _SKIP:
                continue
            src = here / filename
            dst = out / _substitute(filename, name)
            data = src.read_bytes()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                dst.write_bytes(data)  # binary: copied as is
            else:
                dst.write_bytes(_substitute(text, name).encode("utf-8"))
            shutil.copymode(src, dst)
