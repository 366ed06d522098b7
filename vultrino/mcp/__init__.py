"""Vultrino's MCP server, built on the official ``mcp`` SDK: one module per transport.

::

    vultrino/mcp/
      server.py     the server core: VultrinoMCP (tools/list, tools/call, approvals, change
                    notifications) and how tools, results and errors look over MCP
      stdio.py      `vultrino mcp`: serve_stdio, the one stdio entry point (stdlib only)
      _front.py     its start-up front: answers initialize and ping before the SDK is imported
      _relay.py     its SDK side: the SDK server takes the stream over from the front
      _identity.py  the server's name, instructions and initialize answer (stdlib only)
      http.py       `vultrino mcp --http`: streamable HTTP with bearer auth, the token file
      clients.py    `vultrino mcp config`: client configurations for MCP hosts

Only ``server``, ``_relay`` and ``http`` import the SDK (``http`` alone Starlette and uvicorn);
importing this package, ``stdio``, ``_front`` or ``_identity`` does not, so the stdio front can
answer while the SDK loads. Nothing here imports ``vultrino.cli``; the package reaches the rest
of Vultrino through the facade (``vultrino.core``). docs/mcp.md is the contract.
"""
