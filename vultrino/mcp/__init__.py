"""Vultrino's MCP server: one module per transport.

::

    vultrino/mcp/
      server.py     the SDK server core: VultrinoMCP (handlers, approvals, change notifications)
      stdio.py      `vultrino mcp`: serve_stdio, the one stdio entry point (stdlib only)
      _front.py     its front: reads stdin from the first byte, decides who serves the stream
      _session.py   the stdlib JSON-RPC server for handshake-era clients (the method table)
      _relay.py     its SDK side, for any other opening (a 2026-07-28 client)
      _tools.py     what tools/list and tools/call do, for every server (stdlib only)
      _shapes.py    how tools, results and errors look over MCP, as JSON data (stdlib only)
      _identity.py  the server's name, instructions and initialize answer (stdlib only)
      http.py       `vultrino mcp --http`: streamable HTTP with bearer auth, the token file
      clients.py    `vultrino mcp config`: client configurations for MCP hosts

Only ``server``, ``_relay`` and ``http`` import the SDK (``http`` alone Starlette and uvicorn);
importing this package, ``stdio``, ``_front``, ``_session``, ``_tools``, ``_shapes`` or
``_identity`` does not, so a stdio session never waits for it. Nothing here imports
``vultrino.cli``; the package reaches the rest of Vultrino through the facade
(``vultrino.core``). docs/mcp.md is the contract.
"""
