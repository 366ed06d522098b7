"""Plugin results as plain JSON data, for the CLI's --json output and MCP results.

Plugins answer in msgpack, which also has bytes (shown as base64), non-string map keys and
non-finite floats; none of them may break an output.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data. Plugins answer in msgpack, which also has bytes (shown as
    base64), non-string map keys and non-finite floats; none of them may break a result."""
    if isinstance(value, str) or value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {_json_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [jsonable(v) for v in sorted(value, key=repr)]
    return str(value)


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).decode("utf-8", "replace")
    return json.dumps(jsonable(key)) if not isinstance(key, (int, float, bool)) else str(key)
