"""The audit log: one JSON object per line per action, never a secret value.

Each record: ``ts`` (UTC ISO-8601), ``alias``, ``plugin``, ``action``, ``agent`` (the agent
profile the call ran under, ``null`` when it ran with no profile), ``outcome`` (``ok``,
``error``, or ``denied`` when an agent profile refused it), ``error`` (the error class or plugin
error code), ``approval`` (``granted``, ``declined`` or ``unavailable``, only when the profile
asked for approval), ``tool`` (only on an agent's call of a tool outside its profile),
``duration_ms`` (milliseconds to the microsecond, always with a fraction), ``source``
(``cli``, ``mcp`` or ``api``). A string longer than :data:`MAX_FIELD_CHARS` is cut and marked
with its length (an agent can name any alias, stored or not). Lines are appended with a single
``write`` on an ``O_APPEND`` descriptor, so concurrent writers never interleave within a line.

**The chain.** Every record ends with ``seq`` (its line number in the file, from 1) and
``prev`` (the hex SHA-256 of the previous line's exact bytes, its newline included; for line 1
:data:`GENESIS`). A writer appends under an exclusive ``flock`` on the log, so writers in
several processes extend one chain. It keeps the last line's hash and the file's size in
memory and reads the file's tail again only when the size is not the one its own last write
left (another process wrote, or the log was rotated). Lines written before the chain existed
carry neither field; the chain starts at the first line that does.

**The signed head.** Given a signer (the store's Ed25519 key, :mod:`vultrino.services`), the
writer signs the head of the chain, ``{"count", "head", "ts", "key", "sig"}`` (``head`` is the
hash of line ``count``), into ``audit.log.head``, written atomically: after every
:data:`CHECKPOINT_RECORDS` records it wrote, at the first record :data:`CHECKPOINT_SECONDS`
after its last head, and on ``close()`` when it wrote since. :func:`verify` checks the chain
and the head (docs/agents.md, "Verifying the log").

:class:`AuditLog` keeps that descriptor open between records (each record is still written,
unbuffered, before the action returns). At most every :data:`REOPEN_CHECK_SECONDS` it checks
that the path still names the file it has open and reopens it if not, so a rotated or deleted
log is followed within that bound; records written meanwhile land in the rotated file.

:func:`query` reads them back with filters (``vultrino audit``, ``Vultrino.audit``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from vultrino._fs import atomic_write
from vultrino.errors import ConfigError, VultrinoError

__all__ = [
    "CHECKPOINT_RECORDS",
    "CHECKPOINT_SECONDS",
    "GENESIS",
    "MAX_FIELD_CHARS",
    "OUTCOMES",
    "REOPEN_CHECK_SECONDS",
    "AuditLog",
    "Filter",
    "SignatureCheck",
    "Signer",
    "Verdict",
    "append_record",
    "head_message",
    "head_path",
    "fields_text",
    "follow",
    "json_text",
    "millis_text",
    "parse_since",
    "query",
    "query_from",
    "read_records",
    "tail",
    "verify",
    "verify_data",
    "row_message",
    "verify_rows",
]

OUTCOMES = ("ok", "error", "denied")
_RELATIVE = re.compile(r"^(\d+)\s*(s|m|min|h|d|w)$")
_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
#: A string field longer than this (an alias, action or plugin name an agent made up) is cut,
#: so one call cannot write megabytes to the log; stored aliases are at most 128 characters.
MAX_FIELD_CHARS = 200

REOPEN_CHECK_SECONDS = 1.0

#: ``prev`` of a log's first line.
GENESIS = "0" * 64
#: A writer signs the head after this many of its own records...
CHECKPOINT_RECORDS = 10_000
#: ... or at its first record this many seconds after its last head (and on close).
CHECKPOINT_SECONDS = 60.0

#: Signs an audit head: the message to (signature, public key), or None when no key is at hand.
Signer = Callable[[bytes], "tuple[bytes, bytes] | None"]

# Read and write: the writer reads the file's tail to continue the chain.
_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_TAIL_CHUNK = 4096
_flock, _LOCK_EX, _LOCK_UN = fcntl.flock, fcntl.LOCK_EX, fcntl.LOCK_UN
_lseek, _SEEK_END, _write, _sha256 = os.lseek, os.SEEK_END, os.write, hashlib.sha256
_encode_str = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _text(value: str) -> str:
    if len(value) > MAX_FIELD_CHARS:
        value = f"{value[:MAX_FIELD_CHARS]}...[{len(value)} characters]"
    return str(_encode_str(value))


def _value(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _text(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        return repr(value)
    if kind is dict or kind is list:
        try:
            encoded = _dumps(value)
        except (TypeError, ValueError):  # a value JSON cannot hold
            return _text(str(value))
        return encoded if len(encoded) <= MAX_FIELD_CHARS else _text(encoded)
    # Anything else (a str subclass, a caller's odd alias, a NaN) is written as its bounded
    # text, so a record can neither grow without end nor fail to encode.
    return _text(str(value))


_MILLIS = tuple(f".{ms:03d}+00:00" for ms in range(1000))
_FRACTIONS = tuple(f".{us:03d}" for us in range(1000))


def millis_text(nanos: int) -> str:
    """A duration given in nanoseconds as ``duration_ms`` is written: milliseconds to the
    microsecond, always with a fraction (a JSON float), without float formatting."""
    micros = nanos // 1000
    return str(micros // 1000) + _FRACTIONS[micros % 1000]


class _Clock:
    """UTC timestamps to the millisecond; the formatting of the whole second is reused."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        second, nanos = divmod(time.time_ns(), 1_000_000_000)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S"
            )
            self._second = second
        return self._prefix + _MILLIS[nanos // 1_000_000]


_KEYS: dict[str, str] = {}  # record key -> its JSON text and the separators around it


def json_text(value: str) -> str:
    """A string field's value as the log writes it: JSON, cut at :data:`MAX_FIELD_CHARS`."""
    return _text(value) if type(value) is str else _value(value)


def fields_text(record: dict[str, Any]) -> str:
    """The JSON text of ``record``'s fields as a line holds them after ``ts`` (each with its
    leading comma), for :meth:`AuditLog.write_text`."""
    out = ""
    for key, value in record.items():
        head = _KEYS.get(key)
        if head is None:
            head = "," + str(_encode_str(key)) + ":"
            if len(_KEYS) < 64:
                _KEYS[key] = head
        out += head + (_text(value) if type(value) is str else _value(value))
    return out


def head_path(path: Path) -> Path:
    """Where the signed head of the log at ``path`` is kept: ``<name>.head`` beside it."""
    return path.with_name(path.name + ".head")


def head_message(count: int, head: str, ts: str) -> bytes:
    """The bytes an audit head's signature covers."""
    return f"vultrino audit head v1\n{count}\n{head}\n{ts}\n".encode()


def _last_line(fd: int, end: int) -> bytes:
    """The file's last line (with its newline, if it has one), read backwards from ``end``."""
    size = _TAIL_CHUNK
    while True:
        start = max(0, end - size)
        buf = os.pread(fd, end - start, start)
        cut = buf.rfind(b"\n", 0, len(buf) - 1)
        if cut >= 0:
            return buf[cut + 1 :]
        if start == 0:
            return buf
        size *= 4


def _line_count(fd: int, end: int) -> int:
    count, offset = 0, 0
    while offset < end:
        chunk = os.pread(fd, min(1 << 20, end - offset), offset)
        if not chunk:
            break
        count += chunk.count(b"\n")
        offset += len(chunk)
    return count


class AuditLog:
    """An audit log file kept open for appending; thread-safe; ``close()`` releases it.

    ``signer`` signs the chain's head (see the module docstring); without one no head is
    written."""

    def __init__(self, path: Path, *, signer: Signer | None = None) -> None:
        self.path = Path(path)
        self.head_path = head_path(self.path)
        self._name = os.fspath(self.path)
        self._fd: int | None = None
        self._identity: tuple[int, int] = (0, 0)
        self._checked = 0.0
        self._clock = _Clock()
        self._lock = threading.Lock()
        self._signer = signer
        # The chain as this writer last left it: the file's size after its write (-1: read
        # the tail first), the last line's number and hash, and a newline owed to a last line
        # that lacks one.
        self._end = -1
        self._seq = 0
        self._last = GENESIS
        self._gap = b""
        self._unsigned = 0  # records written since this writer's last head
        self._signed_at = time.monotonic()

    def _open(self) -> int:
        fd = os.open(self._name, _FLAGS, 0o600)
        st = os.fstat(fd)
        self._fd, self._identity, self._checked = fd, (st.st_dev, st.st_ino), time.monotonic()
        self._end = -1
        return fd

    def _current_fd(self) -> int:
        fd = self._fd
        if fd is None:
            return self._open()
        now = time.monotonic()
        if now - self._checked < REOPEN_CHECK_SECONDS:
            return fd
        self._checked = now
        try:
            st = os.stat(self._name)
            same = (st.st_dev, st.st_ino) == self._identity
        except OSError:
            same = False
        if same:
            return fd
        self._fd = None
        os.close(fd)
        return self._open()

    def append(self, **record: Any) -> None:
        """Append one record (created 0600), written before this returns."""
        self.write(record)

    def write(self, record: dict[str, Any]) -> None:
        """:meth:`append` with the record as a mapping (its keys in order after ``ts``)."""
        self.write_text(fields_text(record))

    def write_text(self, fields: str) -> None:
        """Append a record whose fields are already text made by :func:`fields_text` (a
        caller that writes the same fields often encodes them once)."""
        with self._lock:
            now = time.monotonic()
            fd = self._fd
            if fd is None or now - self._checked >= REOPEN_CHECK_SECONDS:
                fd = self._current_fd()
            _flock(fd, _LOCK_EX)
            try:
                end = _lseek(fd, 0, _SEEK_END)
                if end != self._end:
                    self._follow(fd, end)
                seq = self._seq + 1
                line = f'{{"ts":"{self._clock.now()}"{fields},"seq":{seq},"prev":"{self._last}"}}\n'
                record = data = line.encode()
                if self._gap:  # the newline a torn last line lacks
                    data, self._gap = self._gap + record, b""
                written = _write(fd, data)
                if written == len(data):
                    self._end = end + written
                    self._seq, self._last = seq, _sha256(record).hexdigest()
                else:  # a short write (disk full): whatever is there, read it next time
                    self._end = -1
                self._unsigned += 1
                if self._signer is not None and (
                    self._unsigned >= CHECKPOINT_RECORDS
                    or now - self._signed_at >= CHECKPOINT_SECONDS
                ):
                    self._sign_head(fd)
            finally:
                _flock(fd, _LOCK_UN)

    def _follow(self, fd: int, end: int) -> None:
        """Continue the chain from the file as it is: its last line's number and hash."""
        self._end = end
        if end == 0:
            self._seq, self._last, self._gap = 0, GENESIS, b""
            return
        last = _last_line(fd, end)
        self._gap = b"" if last.endswith(b"\n") else b"\n"
        seq = None
        if not self._gap:
            try:
                rec = json.loads(last)
                seq = rec.get("seq") if isinstance(rec, dict) else None
            except ValueError:
                seq = None
        if type(seq) is not int or seq < 1:  # a line from before the chain, or garbage
            seq = _line_count(fd, end) + (1 if self._gap else 0)
        self._seq, self._last = seq, hashlib.sha256(last + self._gap).hexdigest()

    def _sign_head(self, fd: int) -> None:
        """Sign the chain's head into the head file. Caller holds the lock and the flock."""
        self._unsigned, self._signed_at = 0, time.monotonic()
        signer = self._signer
        if signer is None:
            return
        end = os.lseek(fd, 0, os.SEEK_END)
        if end != self._end:
            self._follow(fd, end)
        if self._seq == 0 or self._gap:
            return  # nothing to sign, or a torn last line the next record completes
        count, head, ts = self._seq, self._last, self._clock.now()
        try:
            signed = signer(head_message(count, head, ts))
            if signed is None:
                return
            sig, key = signed
            body = {"count": count, "head": head, "ts": ts, "key": key.hex(), "sig": sig.hex()}
            atomic_write(self.head_path, (json.dumps(body) + "\n").encode(), mode=0o600)
        except (VultrinoError, OSError):
            # The records are written; a head that cannot be signed now (a store locked by
            # another writer, a full disk) is signed next time.
            return

    def checkpoint(self) -> None:
        """Sign the head now (when this writer has a signer and the log has a record)."""
        with self._lock:
            fd = self._fd if self._fd is not None else self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._sign_head(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Sign the head if this writer wrote since its last one, then close the descriptor
        (idempotent); the next ``append`` opens it again."""
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            try:
                if self._unsigned and self._signer is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    self._sign_head(fd)  # closing the descriptor releases the flock
            finally:
                os.close(fd)


def append_record(path: Path, **record: Any) -> None:
    """Append one record to ``path`` (created 0600), opening and closing it."""
    log = AuditLog(path)
    try:
        log.append(**record)
    finally:
        log.close()


def read_records(path: Path) -> list[dict[str, Any]]:
    """All records, oldest first (an absent log is empty)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """``since`` as an aware UTC datetime: relative (``30s``, ``15m``, ``1h``, ``2d``, ``1w``)
    or ISO-8601 (``2026-01-31``, ``2026-01-31T12:00:00Z``; no zone means UTC)."""
    raw = text.strip()
    m = _RELATIVE.match(raw.lower())
    if m:
        return (now or datetime.now(timezone.utc)) - timedelta(
            seconds=int(m.group(1)) * _SECONDS[m.group(2)]
        )
    iso = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise ConfigError(
            f"--since {text[:40]!r} is neither a duration (30s, 15m, 1h, 2d, 1w) nor an "
            "ISO-8601 time (2026-01-31 or 2026-01-31T12:00:00Z)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


class Filter:
    """The filters of ``vultrino audit``: a record matches when it passes every one given.

    ``agent`` matches the record's agent (``"-"`` selects records with no agent), ``alias`` and
    ``outcome`` match exactly, ``since`` keeps records at or after that time (see
    :func:`parse_since`)."""

    def __init__(
        self,
        *,
        agent: str | None = None,
        alias: str | None = None,
        outcome: str | None = None,
        since: str | datetime | None = None,
    ) -> None:
        if outcome is not None and outcome not in OUTCOMES:
            raise ConfigError(f"unknown outcome {outcome!r}; use one of {', '.join(OUTCOMES)}")
        cutoff = parse_since(since) if isinstance(since, str) else since
        if cutoff is not None and cutoff.tzinfo is None:
            cutoff = cutoff.replace(tzinfo=timezone.utc)
        self.agent = agent
        self.alias = alias
        self.outcome = outcome
        self.cutoff = cutoff

    def record(self, line: str) -> dict[str, Any] | None:
        """The record on ``line`` when it matches; None for another record or a line that is
        not a JSON object (a log damaged by hand is skipped, not fatal)."""
        try:
            rec = json.loads(line)
        except ValueError:
            return None
        if not isinstance(rec, dict):
            return None
        if self.agent is not None and rec.get("agent") != (
            None if self.agent == "-" else self.agent
        ):
            return None
        if self.alias is not None and rec.get("alias") != self.alias:
            return None
        if self.outcome is not None and rec.get("outcome") != self.outcome:
            return None
        if self.cutoff is not None and not _at_or_after(rec.get("ts"), self.cutoff):
            return None
        return rec


def _read_from(path: Path, offset: int) -> tuple[bytes, int]:
    """The log's bytes from ``offset`` up to its last complete line, and the offset after it;
    a log shorter than ``offset`` (replaced by a new one) is read from its start."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < offset:
                offset = 0
            f.seek(offset)
            data = f.read(size - offset)
    except FileNotFoundError:
        return b"", 0
    except OSError as exc:
        raise ConfigError(f"cannot read the audit log {path} ({exc.strerror})") from exc
    end = data.rfind(b"\n") + 1  # a line still being written is read on the next turn
    return data[:end], offset + end


def query(
    path: Path,
    *,
    agent: str | None = None,
    alias: str | None = None,
    outcome: str | None = None,
    since: str | datetime | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Records of the log at ``path``, oldest first, that match every filter given (see
    :class:`Filter`); ``limit`` keeps the newest N."""
    return query_from(path, Filter(agent=agent, alias=alias, outcome=outcome, since=since), limit)[
        0
    ]


def query_from(
    path: Path, match: Filter, limit: int | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The matching records (the newest ``limit`` of them) and the offset just past the last
    complete line read, where :func:`follow` goes on."""
    if limit is not None and limit < 0:
        raise ConfigError("the limit must not be negative")
    data, offset = _read_from(path, 0)
    out: list[dict[str, Any]] = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        rec = match.record(line)
        if rec is not None:
            out.append(rec)
    if limit is not None:
        out = out[len(out) - limit :] if limit else []
    return out, offset


_TAIL_BLOCK = 1 << 16


def tail(
    path: Path, match: Filter, limit: int, *, skip: int = 0
) -> tuple[list[dict[str, Any]], bool]:
    """The newest ``limit`` records matching ``match``, newest first, after skipping the
    ``skip`` newest matches (a page), and whether older matches remain. Reads the log
    backwards in blocks and stops as soon as the page is full, so the cost follows how far
    back the page lies, not the size of the log. A line still being written is left out."""
    if limit < 0 or skip < 0:
        raise ConfigError("the limit and the offset must not be negative")
    out: list[dict[str, Any]] = []
    want = skip + limit + 1  # one more than the page: is there an older one?
    seen = 0
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return [], False
    except OSError as exc:
        raise ConfigError(f"cannot read the audit log {path} ({exc.strerror})") from exc
    with f:
        end = os.fstat(f.fileno()).st_size
        pos = end
        carry = b""
        first = True
        while pos > 0 and seen < want:
            start = max(0, pos - _TAIL_BLOCK)
            f.seek(start)
            block = f.read(pos - start) + carry
            pos = start
            lines = block.split(b"\n")
            if first:
                lines.pop()  # after the last newline: empty, or a line still being written
                first = False
            carry = lines.pop(0) if pos > 0 else b""
            for raw in reversed(lines):
                if not raw:
                    continue
                rec = match.record(raw.decode("utf-8", errors="replace"))
                if rec is None:
                    continue
                seen += 1
                if seen > skip:
                    out.append(rec)
                if seen >= want:
                    break
    more = len(out) > limit
    return out[:limit], more


def follow(
    path: Path, match: Filter, offset: int, *, interval: float = 0.2
) -> Iterator[dict[str, Any]]:
    """The matching records appended to the log after ``offset``, as they are written (polls
    every ``interval`` seconds; runs until the caller stops iterating)."""
    while True:
        data, offset = _read_from(path, offset)
        for line in data.decode("utf-8", errors="replace").splitlines():
            rec = match.record(line)
            if rec is not None:
                yield rec
        if not data:
            time.sleep(interval)


def _at_or_after(ts: Any, cutoff: datetime) -> bool:
    if not isinstance(ts, str):
        return False
    try:
        when = datetime.fromisoformat(ts[:-1] + "+00:00" if ts.endswith("Z") else ts)
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when >= cutoff


# --- verification ----------------------------------------------------------------------------

#: Checks an Ed25519 signature: (public key, message, signature) -> valid.
SignatureCheck = Callable[[bytes, bytes, bytes], bool]


@dataclass(frozen=True)
class Verdict:
    """What :func:`verify` found. ``ok`` is False when ``line`` names the first line that is
    wrong (or, for a problem of the head file alone, is None) and ``problem`` says how:
    ``edited``, ``missing``, ``reordered``, ``inserted``, ``truncated``, ``malformed``,
    ``forged`` (the head's signature), ``unsigned`` (records past the signed head, only when
    asked to refuse them)."""

    ok: bool
    records: int
    chain_start: int | None  # the first line with chain fields; None: no line has them
    signed_count: int | None  # how many lines the signed head covers; None: no head
    signed_at: str | None
    key: str | None  # the head's public key, hex
    line: int | None
    problem: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(
    path: Path,
    check: SignatureCheck,
    *,
    key: bytes | None = None,
    strict: bool = False,
) -> Verdict:
    """Check the log at ``path`` and its signed head (``<name>.head``).

    The chain: every line from the first that carries ``seq``/``prev`` must be record
    ``seq`` = its line number and name the hash of the line before it. The head: its
    signature must verify (``check``; against ``key`` when given, else the key it names), and
    line ``count`` must exist and hash to ``head``. ``strict`` also refuses lines past the
    signed head (use it when no Vultrino process is writing)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    except OSError as exc:
        raise ConfigError(f"cannot read the audit log {path} ({exc.strerror})") from exc
    head_file = head_path(path)
    try:
        head_text = head_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        head_text = None
    except OSError as exc:
        raise ConfigError(f"cannot read {head_file} ({exc.strerror})") from exc
    return verify_data(data, head_text, head_file.name, check, key=key, strict=strict)


def verify_data(
    data: bytes,
    head_text: str | None,
    head_name: str,
    check: SignatureCheck,
    *,
    key: bytes | None = None,
    strict: bool = False,
) -> Verdict:
    """:func:`verify` of a log's bytes and its signed head's text (None: no head), wherever
    they were read from (the file, or the PostgreSQL audit table's lines in order)."""
    parts = data.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])  # a torn last line
    hashes = [_sha(line) for line in lines]
    first_at: dict[str, int] = {}
    for number, digest in enumerate(hashes, 1):
        first_at.setdefault(digest, number)
    total = len(lines)
    start: int | None = None
    head_fields: dict[str, Any] = {}

    def verdict(line: int | None, problem: str | None, message: str) -> Verdict:
        return Verdict(
            ok=problem is None,
            records=total,
            chain_start=start,
            signed_count=head_fields.get("count"),
            signed_at=head_fields.get("ts"),
            key=head_fields.get("key"),
            line=line,
            problem=problem,
            message=message,
        )

    expected = GENESIS
    for number, raw in enumerate(lines, 1):
        try:
            rec = json.loads(raw)
        except ValueError:
            rec = None
        if not isinstance(rec, dict):
            return verdict(number, "malformed", f"line {number} is not a JSON record")
        prev, seq = rec.get("prev"), rec.get("seq")
        if prev is None and seq is None:
            if start is None:  # written before the chain existed
                expected = hashes[number - 1]
                continue
            return verdict(
                number,
                "edited",
                f"line {number} has no chain fields (seq, prev), yet the chain starts at "
                f"line {start}: it was edited or written by something else",
            )
        if start is None:
            start = number
        if type(seq) is not int or not isinstance(prev, str):
            return verdict(number, "edited", f"line {number} has malformed chain fields")
        if prev != expected:
            later = first_at.get(prev)
            if later is not None and later > number:
                return verdict(
                    number,
                    "reordered",
                    f"line {number} (record {seq}) follows line {later} in the chain: "
                    "records were reordered",
                )
            if seq > number and later is None:
                missing = seq - number
                return verdict(
                    number,
                    "missing",
                    f"{missing} record{'s' if missing > 1 else ''} missing before line "
                    f"{number} (it is record {seq})",
                )
            if seq == number and later is None and number > 1:
                return verdict(
                    number - 1,
                    "edited",
                    f"line {number - 1} was changed: line {number} vouches for a different "
                    f"record {number - 1}",
                )
            if seq == number == 1:
                return verdict(1, "edited", "line 1 names a predecessor, but the log has none")
            return verdict(
                number,
                "inserted",
                f"line {number} (record {seq}) does not follow line {number - 1}: a record "
                "was inserted, copied or forged",
            )
        if seq != number:
            return verdict(
                number, "edited", f"line {number} calls itself record {seq}: it was edited"
            )
        expected = hashes[number - 1]

    if head_text is not None:
        try:
            head = json.loads(head_text)
            count, digest, ts = head["count"], head["head"], head["ts"]
            claimed, sig = bytes.fromhex(head["key"]), bytes.fromhex(head["sig"])
            if type(count) is not int or not isinstance(digest, str) or not isinstance(ts, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return verdict(None, "forged", f"{head_name} is not a signed audit head")
        if key is not None and claimed != key:
            return verdict(
                None,
                "forged",
                f"{head_name} is signed by key {claimed.hex()[:16]}, not by the store's "
                + (f"key {key.hex()[:16]}" if key else "(the store holds no audit key)"),
            )
        if not check(claimed, head_message(count, digest, ts), sig):
            return verdict(None, "forged", f"the signature of {head_name} does not verify: forged")
        head_fields = {"count": count, "ts": ts, "key": claimed.hex()}
        if count > total:
            return verdict(
                total + 1,
                "truncated",
                f"the log ends at line {total} but its head, signed {ts}, covers {count} "
                f"records: record{'s' if count - total > 1 else ''} "
                f"{total + 1}{f'-{count}' if count - total > 1 else ''} "
                f"{'were' if count - total > 1 else 'was'} removed",
            )
        if count < 1 or hashes[count - 1] != digest:
            return verdict(
                count,
                "edited",
                f"line {count} is not the record the head signed {ts} covers: the records "
                f"up to line {count} were rewritten",
            )
    elif key is not None and total:
        return verdict(None, "forged", f"{head_name} is missing: the log has no signed head")
    if strict and total > (head_fields.get("count") or 0):
        first = (head_fields.get("count") or 0) + 1
        return verdict(
            first,
            "unsigned",
            f"lines {first}-{total} are past the signed head (no signature covers them)",
        )
    return verdict(None, None, _summary(total, start, head_fields))


def row_message(line: str) -> bytes:
    """The bytes a PostgreSQL audit row's signature covers: its line (which names its
    ``seq`` and the hash of the line before it), kept apart from a head's message."""
    return b"vultrino audit row v1\n" + line.encode()


def verify_rows(
    rows: list[tuple[str, bytes | None, bytes | None]],
    check: SignatureCheck,
    *,
    key: bytes | None = None,
) -> Verdict:
    """Check the PostgreSQL audit table: its rows' (line, signature, public key) in ``seq``
    order. The hash chain as :func:`verify_data` checks a file's; then every row from the
    first signed one must be signed, all by one key (``key`` when given: the store's own),
    over its line. Rows before the first signed one were written before rows were signed
    and are reported as such. The first bad row is named (its line number is its seq)."""
    data = "".join(line + "\n" for line, _, _ in rows).encode()
    chain = verify_data(data, None, "the audit table", check)
    signer: bytes | None = key if key else None
    first_signed: int | None = None
    bad: tuple[int, str, str] | None = None
    for number, (line, sig, pub) in enumerate(rows, 1):
        if chain.line is not None and number >= chain.line:
            break
        if sig is None or pub is None:
            if first_signed is None:
                continue  # written before rows were signed
            bad = (number, "unsigned", f"row {number} is not signed: it was not written "
                   "by a replica holding the store's audit key (forged or inserted)")  # fmt: skip
            break
        if first_signed is None:
            first_signed = number
        if key is not None and pub != key:
            bad = (number, "forged", f"row {number} is signed by key {pub.hex()[:16]}, not by "
                   f"the store's key {key.hex()[:16]}")  # fmt: skip
            break
        if signer is None:
            signer = pub
        elif pub != signer:
            bad = (number, "forged", f"row {number} is signed by key {pub.hex()[:16]}, not by "
                   f"key {signer.hex()[:16]} that signed the rows before it")  # fmt: skip
            break
        if not check(pub, row_message(line), sig):
            bad = (number, "forged", f"the signature of row {number} does not verify: it "
                   "was edited, re-linked or forged")  # fmt: skip
            break
    if bad is not None:
        return replace(chain, ok=False, line=bad[0], problem=bad[1], message=bad[2])
    if not chain.ok:
        return chain
    total = len(rows)
    if not total:
        return chain
    if first_signed is None:
        text = (
            f"{_plural(total, 'row')}, chain intact, none signed (written before rows were signed)"
        )
    else:
        text = (
            f"{_plural(total, 'row')}, chain intact, rows {first_signed}-{total} signed by "
            f"key {signer.hex()[:16] if signer else ''}" + (" (the store's own)" if key else "")
        )
        if first_signed > 1:
            text += f"; rows 1-{first_signed - 1} written before rows were signed"
    return replace(chain, key=signer.hex() if signer else None, message=text)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _summary(total: int, start: int | None, head: dict[str, Any]) -> str:
    if not total:
        return "the audit log is empty"
    if start is None:
        return f"{_plural(total, 'record')}, none chained (written before the chain existed)"
    text = f"{_plural(total, 'record')}, chain intact"
    if start > 1:
        text += f" from line {start} (lines 1-{start - 1} predate the chain)"
    if not head:
        return text + ", no signed head"
    count = head["count"]
    text += f", last checkpoint at record {count} signed {head['ts']} by key {head['key'][:16]}"
    if count < total:
        text += f" ({_plural(total - count, 'later record')} not signed yet)"
    return text
