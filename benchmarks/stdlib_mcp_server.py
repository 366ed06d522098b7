"""The floor of the MCP start-up benchmark: a JSON-RPC server in the standard library alone,
answering initialize, tools/list and tools/call with one trivial tool. Nothing can answer a
spawned process's tools/list much sooner than this Python can start and read a line."""

import json
import sys

TOOLS = [{"name": "ping", "inputSchema": {"type": "object"}}]

for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue
    method = msg["method"]
    if method == "initialize":
        result = {
            "protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "floor", "version": "0"},
        }
    elif method == "tools/list":
        result = {"tools": TOOLS}
    else:
        result = {"content": [{"type": "text", "text": "[]"}], "isError": False}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
    sys.stdout.flush()
