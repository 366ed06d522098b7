"""WASI preview 1 with no capabilities, as engine-neutral host functions.

Why not the engines' own WASI: wasmtime's and wasmer's WASI contexts differ in what they allow,
and both hold real file descriptors. These few functions behave identically on every engine and
never touch a host file: there are no preopened directories (``fd_prestat_get`` answers
``EBADF``, so a libc finds nothing to open), no environment, no arguments, an empty stdin.
Clocks and ``random_get`` work. Whatever the guest writes to fd 1 or 2 is handed, line by line,
to the plugin log (:class:`GuestOutput`) — never to the host's stdout, which is the MCP channel
in stdio mode. ``proc_exit`` ends the call by raising :class:`~vultrino.runtime.engine.GuestExit`.

Any other ``wasi_snapshot_preview1`` function a module imports gets a stub that returns
``ENOSYS`` with the signature the module declared. A pointer that leaves the guest's memory
makes a function return ``EFAULT`` rather than trap, as a kernel would.

Every pointer and length a guest passes is an i32 that the engines hand over *signed*; each
function masks them to u32 and checks the whole range against the memory's current size before
it allocates anything for it (``random_get``, the ``fd_write`` iovecs, the ``log`` import in
:mod:`.abi`), so a guest cannot make the host allocate more than its own memory could hold.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from typing import Final

from vultrino.errors import PluginABIError
from vultrino.runtime.engine import FuncType, GuestExit, HostFunc, Memory, ValType

__all__ = [
    "MODULE",
    "SIGNATURES",
    "GuestOutput",
    "host_functions",
]

MODULE: Final = "wasi_snapshot_preview1"

# errno values from the preview 1 witx
ESUCCESS: Final = 0
EBADF: Final = 8
EFAULT: Final = 21
EINVAL: Final = 28
ENOSYS: Final = 52
ESPIPE: Final = 70
ENOTCAPABLE: Final = 76

_I32: Final[ValType] = "i32"
_I64: Final[ValType] = "i64"


def _sig(params: str, results: str = "i") -> FuncType:
    """Spell a signature compactly: ``i`` is i32, ``I`` is i64."""
    table: dict[str, ValType] = {"i": _I32, "I": _I64}
    return FuncType(tuple(table[c] for c in params), tuple(table[c] for c in results))


#: Every preview 1 function with its core signature. A module that imports one of these with a
#: different signature is rejected at load (it was not built for preview 1).
SIGNATURES: Final[dict[str, FuncType]] = {
    "args_get": _sig("ii"),
    "args_sizes_get": _sig("ii"),
    "environ_get": _sig("ii"),
    "environ_sizes_get": _sig("ii"),
    "clock_res_get": _sig("ii"),
    "clock_time_get": _sig("iIi"),
    "fd_advise": _sig("iIIi"),
    "fd_allocate": _sig("iII"),
    "fd_close": _sig("i"),
    "fd_datasync": _sig("i"),
    "fd_fdstat_get": _sig("ii"),
    "fd_fdstat_set_flags": _sig("ii"),
    "fd_fdstat_set_rights": _sig("iII"),
    "fd_filestat_get": _sig("ii"),
    "fd_filestat_set_size": _sig("iI"),
    "fd_filestat_set_times": _sig("iIIi"),
    "fd_pread": _sig("iiiIi"),
    "fd_prestat_get": _sig("ii"),
    "fd_prestat_dir_name": _sig("iii"),
    "fd_pwrite": _sig("iiiIi"),
    "fd_read": _sig("iiii"),
    "fd_readdir": _sig("iiiIi"),
    "fd_renumber": _sig("ii"),
    "fd_seek": _sig("iIii"),
    "fd_sync": _sig("i"),
    "fd_tell": _sig("ii"),
    "fd_write": _sig("iiii"),
    "path_create_directory": _sig("iii"),
    "path_filestat_get": _sig("iiiii"),
    "path_filestat_set_times": _sig("iiiiIIi"),
    "path_link": _sig("iiiiiii"),
    "path_open": _sig("iiiiiIIii"),
    "path_readlink": _sig("iiiiii"),
    "path_remove_directory": _sig("iii"),
    "path_rename": _sig("iiiiii"),
    "path_symlink": _sig("iiiii"),
    "path_unlink_file": _sig("iii"),
    "poll_oneoff": _sig("iiii"),
    "proc_exit": _sig("i", ""),
    "proc_raise": _sig("i"),
    "random_get": _sig("ii"),
    "sched_yield": _sig(""),
    "sock_accept": _sig("iii"),
    "sock_recv": _sig("iiiiii"),
    "sock_send": _sig("iiiii"),
    "sock_shutdown": _sig("ii"),
}

_STDIN, _STDOUT, _STDERR = 0, 1, 2
_U32 = struct.Struct("<I")
_U32X2 = struct.Struct("<II")
_U64 = struct.Struct("<Q")
# fdstat: filetype u8, (pad), flags u16, (pad), rights_base u64, rights_inheriting u64
_FDSTAT = struct.Struct("<BxHxxxxQQ")
_FILETYPE_CHARACTER_DEVICE = 2
_RIGHT_FD_READ = 1 << 1
_RIGHT_FD_WRITE = 1 << 6
_FILESTAT_SIZE = 64
_FILESTAT_FILETYPE_OFFSET = 16
_MAX_IOVECS = 1024
_M32 = 0xFFFF_FFFF
_RANDOM_CHUNK = 65536

_CLOCKS: dict[int, tuple[Callable[[], int], int]] = {
    0: (time.time_ns, 1_000),  # realtime
    1: (time.monotonic_ns, 1),  # monotonic
    2: (time.process_time_ns, 1_000),  # process cputime
    3: (time.thread_time_ns, 1_000),  # thread cputime
}


class GuestOutput:
    """Turns what a guest writes to stdout/stderr into plugin log lines.

    Writes are split into lines; a partial line waits for its newline or for :meth:`flush`,
    which the host calls after every guest call. ``sink(level, text)`` receives ``info`` for
    stdout and ``warn`` for stderr. A line longer than ``max_line`` bytes is cut there.
    """

    def __init__(self, sink: Callable[[str, str], None], *, max_line: int = 4096) -> None:
        self._sink = sink
        self._max_line = max_line
        #: Called before a line is passed on: lines the guest logged earlier and the host
        #: still holds (a buffered ``log``) go first, so the plugin log keeps the guest's order.
        self.before: Callable[[], None] | None = None
        self._partial: dict[int, bytearray] = {}
        #: True when a partial line waits for its newline (a plain attribute: it is read on
        #: every call's hot path).
        self.pending = False

    def write(self, fd: int, data: bytes) -> None:
        buf = self._partial.setdefault(fd, bytearray())
        buf += data
        start, end = 0, len(buf)  # scan by index: re-slicing per line is quadratic
        while True:
            cut = buf.find(b"\n", start, min(end, start + self._max_line + 1))
            if cut >= 0:
                line, start = bytes(buf[start:cut]), cut + 1
            elif end - start >= self._max_line:
                line, start = bytes(buf[start : start + self._max_line]), start + self._max_line
            else:
                break
            self._emit(fd, line)
        del buf[:start]
        if buf:
            self._partial[fd] = buf
        else:
            self._partial.pop(fd, None)
        self.pending = bool(self._partial)

    def flush(self) -> None:
        partial, self._partial = self._partial, {}
        self.pending = False
        for fd, buf in sorted(partial.items()):
            if buf:
                self._emit(fd, bytes(buf))

    def _emit(self, fd: int, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if self.before is not None:
            self.before()
        self._sink("warn" if fd == _STDERR else "info", line.decode("utf-8", "replace"))


class _Wasi:
    """The implementations; each method is ``fn(memory, *args) -> errno``."""

    def __init__(self, output: GuestOutput, max_output_bytes: int) -> None:
        self._output = output
        self._max_output = max_output_bytes

    # --- arguments and environment: always empty ---

    def args_get(self, memory: Memory, argv: int, argv_buf: int) -> int:
        return ESUCCESS

    def args_sizes_get(self, memory: Memory, count_ptr: int, size_ptr: int) -> int:
        return _store_pair(memory, count_ptr, size_ptr)

    environ_get = args_get
    environ_sizes_get = args_sizes_get

    # --- clocks and randomness ---

    def clock_res_get(self, memory: Memory, clock: int, res_ptr: int) -> int:
        entry = _CLOCKS.get(clock)
        if entry is None:
            return EINVAL
        return _store(memory, res_ptr, _U64.pack(entry[1]))

    def clock_time_get(self, memory: Memory, clock: int, precision: int, time_ptr: int) -> int:
        entry = _CLOCKS.get(clock)
        if entry is None:
            return EINVAL
        return _store(memory, time_ptr, _U64.pack(entry[0]() & 0xFFFF_FFFF_FFFF_FFFF))

    def random_get(self, memory: Memory, buf: int, length: int) -> int:
        # Engines hand i32 arguments over signed: a "negative" pointer is an address past
        # 2 GiB. Both are u32, and the range is checked against the memory *before* anything
        # is allocated, which then happens in small chunks: the host never allocates more
        # than the guest could hold, whatever it asks for.
        buf &= _M32
        length &= _M32
        if buf + length > memory.size():
            return EFAULT
        for offset in range(0, length, _RANDOM_CHUNK):
            n = min(_RANDOM_CHUNK, length - offset)
            if _store(memory, buf + offset, os.urandom(n)):
                return EFAULT
        return ESUCCESS

    def sched_yield(self, memory: Memory) -> int:
        return ESUCCESS

    def proc_exit(self, memory: Memory, code: int) -> None:
        raise GuestExit(code & _M32)

    # --- the three standard streams ---

    def fd_write(self, memory: Memory, fd: int, iovs: int, iovs_len: int, nwritten: int) -> int:
        if fd not in (_STDOUT, _STDERR):
            return EBADF if fd != _STDIN else ENOTCAPABLE
        try:
            total = 0
            for ptr, length in _iovecs(memory, iovs, iovs_len):
                room = max(0, self._max_output - total)
                if length and room:
                    self._output.write(fd, memory.read(ptr, min(length, room)))
                total += length
            memory.write(nwritten & _M32, _U32.pack(total & _M32))
        except PluginABIError:
            return EFAULT
        return ESUCCESS

    def fd_read(self, memory: Memory, fd: int, iovs: int, iovs_len: int, nread: int) -> int:
        if fd != _STDIN:
            return EBADF if fd not in (_STDOUT, _STDERR) else ENOTCAPABLE
        return _store(memory, nread, _U32.pack(0))  # end of file, at once

    def fd_fdstat_get(self, memory: Memory, fd: int, stat_ptr: int) -> int:
        if fd not in (_STDIN, _STDOUT, _STDERR):
            return EBADF
        rights = _RIGHT_FD_READ if fd == _STDIN else _RIGHT_FD_WRITE
        return _store(memory, stat_ptr, _FDSTAT.pack(_FILETYPE_CHARACTER_DEVICE, 0, rights, 0))

    def fd_filestat_get(self, memory: Memory, fd: int, stat_ptr: int) -> int:
        if fd not in (_STDIN, _STDOUT, _STDERR):
            return EBADF
        stat = bytearray(_FILESTAT_SIZE)
        stat[_FILESTAT_FILETYPE_OFFSET] = _FILETYPE_CHARACTER_DEVICE
        return _store(memory, stat_ptr, bytes(stat))

    def fd_close(self, memory: Memory, fd: int) -> int:
        return ESUCCESS if fd in (_STDIN, _STDOUT, _STDERR) else EBADF

    def fd_seek(self, memory: Memory, fd: int, offset: int, whence: int, new_ptr: int) -> int:
        return ESPIPE if fd in (_STDIN, _STDOUT, _STDERR) else EBADF

    def fd_tell(self, memory: Memory, fd: int, offset_ptr: int) -> int:
        return ESPIPE if fd in (_STDIN, _STDOUT, _STDERR) else EBADF

    def fd_sync(self, memory: Memory, fd: int) -> int:
        return ESUCCESS if fd in (_STDOUT, _STDERR) else EBADF

    fd_datasync = fd_sync

    # --- no preopens: nothing to open ---

    def fd_prestat_get(self, memory: Memory, fd: int, prestat_ptr: int) -> int:
        return EBADF

    def fd_prestat_dir_name(self, memory: Memory, fd: int, path: int, path_len: int) -> int:
        return EBADF


def _no_capability(name: str, ftype: FuncType) -> Callable[..., int | float | None]:
    """``path_*`` and friends: the directory fd is never a preopen, so nothing is reachable."""

    def refuse(memory: Memory, fd: int, *rest: int) -> int:
        return ENOTCAPABLE if fd in (_STDIN, _STDOUT, _STDERR) else EBADF

    refuse.__name__ = name
    return refuse


def _enosys(name: str, ftype: FuncType) -> Callable[..., int | float | None]:
    """A stub with the imported signature: ENOSYS for an i32 result, zero otherwise."""
    result: int | float | None
    if not ftype.results:
        result = None
    elif ftype.results[0] == "i32":
        result = ENOSYS
    elif ftype.results[0] in ("f32", "f64"):
        result = 0.0
    else:
        result = 0

    def stub(memory: Memory, *args: int | float) -> int | float | None:
        return result

    stub.__name__ = name
    return stub


_PATH_FUNCTIONS: Final = frozenset(
    {
        "path_create_directory",
        "path_filestat_get",
        "path_filestat_set_times",
        "path_link",
        "path_open",
        "path_readlink",
        "path_remove_directory",
        "path_rename",
        "path_symlink",
        "path_unlink_file",
    }
)


def host_functions(
    imports: dict[str, FuncType], output: GuestOutput, *, max_output_bytes: int
) -> list[HostFunc]:
    """Host functions for exactly the WASI functions a module imports (name -> its type).

    ``max_output_bytes`` caps what one ``fd_write`` passes on (the rest is counted as written
    and dropped), so a guest cannot flood the log with one huge write.
    """
    impl = _Wasi(output, max_output_bytes)
    out = []
    for name, ftype in imports.items():
        fn: Callable[..., int | float | None] | None = None
        if SIGNATURES.get(name) == ftype:
            fn = getattr(impl, name, None)
            if fn is None and name in _PATH_FUNCTIONS:
                fn = _no_capability(name, ftype)
        if fn is None:
            fn = _enosys(name, ftype)
        out.append(HostFunc(MODULE, name, ftype, fn))
    return out


def _iovecs(memory: Memory, iovs: int, count: int) -> list[tuple[int, int]]:
    count &= _M32
    if count > _MAX_IOVECS:
        raise PluginABIError("too many iovecs")
    raw = memory.read(iovs & _M32, 8 * count)
    return [_U32X2.unpack_from(raw, 8 * i) for i in range(count)]


def _store(memory: Memory, ptr: int, data: bytes) -> int:
    try:
        memory.write(ptr & _M32, data)
    except PluginABIError:
        return EFAULT
    return ESUCCESS


def _store_pair(memory: Memory, first: int, second: int) -> int:
    """Write two u32 zeros (a count and a size)."""
    if _store(memory, first, _U32.pack(0)) or _store(memory, second, _U32.pack(0)):
        return EFAULT
    return ESUCCESS
