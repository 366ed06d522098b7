"""The only importer of msgpack: the one encoding used by the store and the ABI 2 codec.

Decoding untrusted bytes (a plugin's answer) can be bounded: ``max_nodes`` caps how many values
the document holds in all (every map key and value, every array element, the root), and
``max_depth`` how deeply containers nest. Without them one byte of input can become hundreds of
bytes of Python objects (8 MiB of empty maps decode to gigabytes), and a deeply nested value
breaks every recursive consumer after it (scrubbing, JSON conversion). Both are checked while
decoding or straight after, before anything else sees the value.
"""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = ["DecodeError", "LimitError", "packb", "unpackb"]


class DecodeError(ValueError):
    """Bytes that are not one complete, well-formed MessagePack document."""


class LimitError(DecodeError):
    """A well-formed document that holds more values, or nests deeper, than allowed."""


_packer = msgpack.Packer(use_bin_type=True, datetime=False)
_unpackb = msgpack.unpackb

_CONTAINERS = (dict, list)
# The first byte of every container: fixmap, fixarray, array 16/32, map 16/32.
_HEADER_BYTES = bytes([*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF])
_SCAN_MAX = 65536  # longer answers are walked directly: counting their bytes costs as much


def packb(obj: Any) -> bytes:
    """Encode ``obj`` (str keys, bytes as bin, str as str); TypeError for unsupported values."""
    return _packer.pack(obj)  # type: ignore[no-any-return]


class _Counter:
    """The decode hooks: every finished container adds its children to the count."""

    __slots__ = ("left",)

    def __init__(self, max_nodes: int) -> None:
        self.left = max_nodes - 1  # the root

    def array(self, value: list[Any]) -> list[Any]:
        self.left -= len(value)
        if self.left < 0:
            raise LimitError("too many values")
        return value

    def map(self, value: dict[Any, Any]) -> dict[Any, Any]:
        self.left -= 2 * len(value)
        if self.left < 0:
            raise LimitError("too many values")
        return value


def unpackb(
    data: bytes | memoryview,
    *,
    max_bytes: int | None = None,
    max_nodes: int | None = None,
    max_depth: int | None = None,
) -> Any:
    """Decode exactly one document; any malformation or trailing data is a DecodeError, and a
    document over ``max_nodes`` values or ``max_depth`` levels of nesting a LimitError."""
    if max_bytes is not None and len(data) > max_bytes:
        raise DecodeError(f"not valid MessagePack: {len(data)} bytes is over the {max_bytes} cap")
    try:
        # msgpack.unpackb has no max_buffer_size (that is Unpacker's); its per-object limits
        # already default to len(data), so the size check above is the only cap needed.
        # Every value takes at least one byte, so a document no longer than the node budget
        # is within it.
        if max_nodes is None or len(data) <= max_nodes:
            value = _unpackb(data, raw=False, strict_map_key=False)
        else:
            counter = _Counter(max_nodes)
            # One container alone may not be longer than the whole budget: msgpack allocates
            # an array's slots from its header, before any element is decoded.
            value = _unpackb(
                data,
                raw=False,
                strict_map_key=False,
                max_array_len=max_nodes,
                max_map_len=max_nodes,
                list_hook=counter.array,
                object_hook=counter.map,
            )
    except LimitError:
        raise LimitError(f"the document holds more than {max_nodes} values") from None
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
        msgpack.OutOfData,
        UnicodeDecodeError,
    ) as exc:
        if max_nodes is not None and "exceeds max_" in str(exc):
            raise LimitError(f"the document holds more than {max_nodes} values") from None
        raise DecodeError(f"not valid MessagePack: {exc}") from exc
    # Every level of nesting is a container, whose header is one byte of _HEADER_BYTES: with no
    # more such bytes than the limit (counting those inside strings too), it cannot be deeper.
    if (
        max_depth is not None
        and len(data) > max_depth
        and (len(data) > _SCAN_MAX or _headers(data) > max_depth)
        and _deeper_than(value, max_depth)
    ):
        raise LimitError(f"the document nests containers more than {max_depth} levels deep")
    return value


def _headers(data: bytes | memoryview) -> int:
    """How many bytes of ``data`` could start a container (an upper bound on containers)."""
    return len(data) - len(bytes(data).translate(None, _HEADER_BYTES))


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels (iteratively: no recursion)."""
    if not isinstance(value, _CONTAINERS):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, _CONTAINERS):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False
