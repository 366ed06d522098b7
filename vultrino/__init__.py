"""Vultrino: a credential proxy for AI agents, extended by sandboxed WebAssembly plugins."""

from vultrino._version import __version__

__all__ = ["__version__"]
