"""The only importer of msgpack: the one encoding used by the store and the ABI 2 codec."""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = ["DecodeError", "packb", "unpackb"]


class DecodeError(ValueError):
    """Bytes that are not one complete, well-formed MessagePack document."""


_packer = msgpack.Packer(use_bin_type=True, datetime=False)


def packb(obj: Any) -> bytes:
    """Encode ``obj`` (str keys, bytes as bin, str as str); TypeError for unsupported values."""
    return _packer.pack(obj)  # type: ignore[no-any-return]


def unpackb(data: bytes | memoryview, *, max_bytes: int | None = None) -> Any:
    """Decode exactly one document; any malformation or trailing data is a DecodeError."""
    if max_bytes is not None and len(data) > max_bytes:
        raise DecodeError(f"not valid MessagePack: {len(data)} bytes is over the {max_bytes} cap")
    try:
        # msgpack.unpackb has no max_buffer_size (that is Unpacker's); its per-object limits
        # already default to len(data), so the size check above is the only cap needed.
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
        msgpack.OutOfData,
        UnicodeDecodeError,
    ) as exc:
        raise DecodeError(f"not valid MessagePack: {exc}") from exc
