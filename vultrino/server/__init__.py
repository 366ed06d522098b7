"""`vultrino serve`: one ASGI application for agents, scripts and (later) people.

- :mod:`~vultrino.server.settings` — what to listen on, checked before anything is bound;
- :mod:`~vultrino.server.auth` — identity at the edge (API keys, agent tokens, the server token);
- :mod:`~vultrino.server.api` — the REST API under ``/api/v1`` and its one error table;
- :mod:`~vultrino.server.openapi` — the OpenAPI 3.1 document;
- :mod:`~vultrino.server.inbox` — the approvals inbox;
- :mod:`~vultrino.server.app` — the application: Host/Origin guard, REST, ``/mcp`` mounted;
- :mod:`~vultrino.server.run` — uvicorn, TLS, SIGTERM, ``server.json``.

Every credential use goes through the call pipeline (:mod:`vultrino.pipeline`), like every other
way in; nothing here decides what a caller may do (:mod:`vultrino.policy` does).
"""
