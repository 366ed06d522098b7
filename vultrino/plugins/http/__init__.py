"""The built-in HTTP plugin: authenticated requests to the URLs a credential's allowlist admits.

:mod:`._plugin` holds :class:`HttpPlugin`: its manifest (credential types ``api_key``,
``bearer``, ``basic_auth``, ``oauth2``, ...; the ``request`` action), request parameters and
header rules, redirects followed by hand, oauth2 tokens, and the scrubbing of results. URL
patterns are matched by :mod:`vultrino._allowlist`; the network is reached through
:mod:`vultrino._net`, loaded on the first request. User documentation: docs/http.md.
"""

from __future__ import annotations

from vultrino.plugins.http._plugin import DEFAULT_MAX_RESPONSE_BYTES, MANIFEST, HttpPlugin

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "MANIFEST", "HttpPlugin"]
