"""The web admin UI of `vultrino serve`: server-rendered pages under ``/`` (docs/server.md).

:class:`~vultrino.server.ui.views.WebUI` holds the handlers; ``sessions`` the login sessions,
CSRF tokens and lockout; ``forms`` the credential forms generated from plugin manifests;
``_templates`` the Jinja2 environment (the only importer of jinja2); ``templates/`` and
``static/`` every page and asset, served from the package (no CDN, no build step).
"""

from __future__ import annotations

from vultrino.server.ui.views import COOKIE, DECIDED_BY, WebUI

__all__ = ["COOKIE", "DECIDED_BY", "WebUI"]
