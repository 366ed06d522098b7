"""The curated public surface: `vultrino.__all__` is sorted, complete and importable."""

from __future__ import annotations

import inspect

import vultrino
from vultrino import errors


def test_all_is_sorted_and_unique() -> None:
    names = [n for n in vultrino.__all__ if n != "__version__"]
    assert names == sorted(names)
    assert len(set(vultrino.__all__)) == len(vultrino.__all__)


def test_every_exported_name_exists() -> None:
    for name in vultrino.__all__:
        assert hasattr(vultrino, name), name


def test_every_error_is_exported() -> None:
    for name, obj in vars(errors).items():
        if inspect.isclass(obj) and issubclass(obj, errors.VultrinoError):
            assert name in vultrino.__all__, f"{name} is an error but not in vultrino.__all__"
            assert name in errors.__all__


def test_every_error_is_drawn_in_the_tree_and_documented() -> None:
    doc = errors.__doc__ or ""
    for name, obj in vars(errors).items():
        if inspect.isclass(obj) and issubclass(obj, errors.VultrinoError):
            assert name in doc, f"{name} is missing from the tree in errors.py's docstring"
            assert obj.__doc__, f"{name} needs a docstring"


def test_public_non_error_names_are_the_facade() -> None:
    others = {
        n
        for n in vultrino.__all__
        if not (
            inspect.isclass(getattr(vultrino, n)) and issubclass(getattr(vultrino, n), Exception)
        )
    }
    assert others == {
        "AgentInfo",
        "AgentScope",
        "ApprovalRequest",
        "CredentialInfo",
        "CredentialVersion",
        "ReplaceDrops",
        "KeyInfo",
        "RoleInfo",
        "ToolInfo",
        "TypeInfo",
        "Vultrino",
        "__version__",
    }
