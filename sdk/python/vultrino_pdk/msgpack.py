"""A small MessagePack codec for Vultrino plugins written in Python.

The guest runs CPython inside a WebAssembly component, where C extensions (like the `msgpack`
package's) cannot load, so the SDK carries this pure-Python codec instead: it covers
everything a request can hold and everything a result may be (nil, bool, int, float, str,
bytes, list/tuple, dict). Extension types are refused.
"""

import struct

__all__ = ["DecodeError", "packb", "unpackb"]


class DecodeError(ValueError):
    """The bytes are not one MessagePack value."""


def packb(value):
    """`value` as MessagePack bytes."""
    out = bytearray()
    _pack(value, out, 0)
    return bytes(out)


def _pack(v, out, depth):
    if depth > 512:
        raise ValueError("value nested too deeply")
    if v is None:
        out.append(0xC0)
    elif v is True:
        out.append(0xC3)
    elif v is False:
        out.append(0xC2)
    elif isinstance(v, int):
        _pack_int(v, out)
    elif isinstance(v, float):
        out.append(0xCB)
        out += struct.pack(">d", v)
    elif isinstance(v, str):
        data = v.encode("utf-8")
        n = len(data)
        if n < 32:
            out.append(0xA0 | n)
        elif n < 0x100:
            out += bytes((0xD9, n))
        elif n < 0x10000:
            out.append(0xDA)
            out += struct.pack(">H", n)
        else:
            out.append(0xDB)
            out += struct.pack(">I", n)
        out += data
    elif isinstance(v, (bytes, bytearray, memoryview)):
        data = bytes(v)
        n = len(data)
        if n < 0x100:
            out += bytes((0xC4, n))
        elif n < 0x10000:
            out.append(0xC5)
            out += struct.pack(">H", n)
        else:
            out.append(0xC6)
            out += struct.pack(">I", n)
        out += data
    elif isinstance(v, (list, tuple)):
        _head(len(v), 0x90, 0xDC, out)
        for item in v:
            _pack(item, out, depth + 1)
    elif isinstance(v, dict):
        _head(len(v), 0x80, 0xDE, out)
        for key, item in v.items():
            _pack(key, out, depth + 1)
            _pack(item, out, depth + 1)
    else:
        raise TypeError(f"cannot encode a {type(v).__name__} as MessagePack")


def _head(n, fix, wide, out):
    if n < 16:
        out.append(fix | n)
    elif n < 0x10000:
        out.append(wide)
        out += struct.pack(">H", n)
    else:
        out.append(wide + 1)
        out += struct.pack(">I", n)


def _pack_int(v, out):
    if 0 <= v < 0x80:
        out.append(v)
    elif -32 <= v < 0:
        out.append(v & 0xFF)
    elif 0 <= v < 1 << 64:
        for code, fmt, limit in ((0xCC, ">B", 1 << 8), (0xCD, ">H", 1 << 16),
                                 (0xCE, ">I", 1 << 32), (0xCF, ">Q", 1 << 64)):
            if v < limit:
                out.append(code)
                out += struct.pack(fmt, v)
                return
    elif -(1 << 63) <= v < 0:
        for code, fmt, limit in ((0xD0, ">b", 1 << 7), (0xD1, ">h", 1 << 15),
                                 (0xD2, ">i", 1 << 31), (0xD3, ">q", 1 << 63)):
            if v >= -limit:
                out.append(code)
                out += struct.pack(fmt, v)
                return
    else:
        raise OverflowError("integer out of MessagePack's range")


def unpackb(data):
    """The one MessagePack value in `data` (`DecodeError` otherwise)."""
    data = bytes(data)
    try:
        value, pos = _unpack(data, 0, 0)
    except (IndexError, struct.error, UnicodeDecodeError, RecursionError) as exc:
        raise DecodeError(f"not MessagePack: {exc}") from None
    if pos != len(data):
        raise DecodeError("extra bytes after the value")
    return value


_FIXED = {0xC0: None, 0xC2: False, 0xC3: True}
_NUMBERS = {
    0xCA: ">f", 0xCB: ">d", 0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
    0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q",
}


def _unpack(data, pos, depth):
    if depth > 512:
        raise DecodeError("value nested too deeply")
    b = data[pos]
    pos += 1
    if b < 0x80:
        return b, pos
    if b >= 0xE0:
        return b - 0x100, pos
    if 0xA0 <= b <= 0xBF:
        return _str(data, pos, b & 0x1F)
    if 0x90 <= b <= 0x9F:
        return _array(data, pos, b & 0x0F, depth)
    if 0x80 <= b <= 0x8F:
        return _map(data, pos, b & 0x0F, depth)
    if b in _FIXED:
        return _FIXED[b], pos
    fmt = _NUMBERS.get(b)
    if fmt is not None:
        size = struct.calcsize(fmt)
        return struct.unpack_from(fmt, data, pos)[0], pos + size
    if b in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
        fmt = {0xD9: ">B", 0xDA: ">H", 0xDB: ">I", 0xC4: ">B", 0xC5: ">H", 0xC6: ">I"}[b]
        (n,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        if b >= 0xD9:
            return _str(data, pos, n)
        if pos + n > len(data):
            raise DecodeError("truncated bytes")
        return data[pos : pos + n], pos + n
    if b in (0xDC, 0xDD, 0xDE, 0xDF):
        fmt = ">H" if b in (0xDC, 0xDE) else ">I"
        (n,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        if b in (0xDC, 0xDD):
            return _array(data, pos, n, depth)
        return _map(data, pos, n, depth)
    raise DecodeError(f"unsupported MessagePack type byte {b:#04x}")


def _str(data, pos, n):
    if pos + n > len(data):
        raise DecodeError("truncated string")
    return data[pos : pos + n].decode("utf-8"), pos + n


def _array(data, pos, n, depth):
    if n > len(data) - pos:
        raise DecodeError("truncated array")
    items = []
    for _ in range(n):
        item, pos = _unpack(data, pos, depth + 1)
        items.append(item)
    return items, pos


def _map(data, pos, n, depth):
    if 2 * n > len(data) - pos:
        raise DecodeError("truncated map")
    out = {}
    for _ in range(n):
        key, pos = _unpack(data, pos, depth + 1)
        value, pos = _unpack(data, pos, depth + 1)
        try:
            out[key] = value
        except TypeError:
            raise DecodeError("a map key is not hashable") from None
    return out, pos
