"""The compiled-module cache on real engines and real files (DESIGN.md 5.5, issue 2 item 6).

An entry is keyed by module sha256 + engine + engine version + engine fingerprint. A corrupt,
truncated or foreign entry is detected before the engine sees it, ignored, and rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import guests
from vultrino.runtime import Limits, WasmRuntime, available_engines, load_engine
from vultrino.runtime.cache import MAGIC, SUFFIX, ModuleCache
from vultrino.runtime.engine import Engine

LIMITS = Limits(deadline_s=2)
REQUEST = {"action": "echo", "params": {"n": 1}, "credential": None}


class CountingEngine:
    """A real engine that counts compile and deserialize calls (a spy, not a stand-in)."""

    def __init__(self, inner: Engine) -> None:
        self._inner = inner
        self.name = inner.name
        self.version = inner.version
        self.capabilities = inner.capabilities
        self.compiles = 0
        self.loads = 0

    def fingerprint(self, limits: Limits) -> str:
        return self._inner.fingerprint(limits)

    def compile(self, wasm: bytes, limits: Limits) -> object:
        self.compiles += 1
        return self._inner.compile(wasm, limits)

    def deserialize(self, data: bytes) -> object:
        self.loads += 1
        return self._inner.deserialize(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


@pytest.fixture(scope="module", params=["wasmtime", "wasmer"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    if request.param not in available_engines():
        pytest.skip(f"the {request.param} engine is not installed in this Python")
    eng = load_engine(request.param)
    yield eng
    eng.close()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def runtime(engine: Engine, cache_dir: Path | None) -> tuple[WasmRuntime, CountingEngine]:
    spy = CountingEngine(engine)
    return WasmRuntime(spy, cache_dir=cache_dir, limits=LIMITS), spy  # type: ignore[arg-type]


def entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob(f"*{SUFFIX}"))


def test_second_runtime_loads_from_the_cache(engine: Engine, cache_dir: Path) -> None:
    wasm = guests.echo()
    rt, spy = runtime(engine, cache_dir)
    rt.load(wasm, plugin="p").close()
    assert (spy.compiles, spy.loads) == (1, 0)
    [entry] = entries(cache_dir)
    assert entry.name.startswith(rt.inspect(wasm).sha256 + "." + engine.name + ".")
    assert entry.read_bytes().startswith(MAGIC)

    rt2, spy2 = runtime(engine, cache_dir)
    module = rt2.load(wasm, plugin="p")
    assert (spy2.compiles, spy2.loads) == (0, 1)
    assert module.execute(REQUEST) == {"ok": REQUEST}
    module.close()


def test_cache_dir_is_private_and_holds_no_temporary_files(engine: Engine, cache_dir: Path) -> None:
    rt, _ = runtime(engine, cache_dir)
    rt.load(guests.echo(), plugin="p").close()
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    assert [p.name for p in cache_dir.iterdir() if not p.name.endswith(SUFFIX)] == []


def _corrupt_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x55
    path.write_bytes(bytes(data))


def _corrupt_truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_foreign(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def _corrupt_empty(path: Path) -> None:
    path.write_bytes(b"")


def _corrupt_header(path: Path) -> None:
    """A well-formed entry with a valid checksum, but built with another engine config."""
    data = path.read_bytes()
    size = int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "little")
    start = len(MAGIC) + 4
    header = json.loads(data[start : start + size])
    header["fingerprint"] = "another-config"
    head = json.dumps(header).encode()
    path.write_bytes(MAGIC + len(head).to_bytes(4, "little") + head + data[start + size :])


@pytest.mark.parametrize(
    "corrupt",
    [_corrupt_flip, _corrupt_truncate, _corrupt_foreign, _corrupt_empty, _corrupt_header],
    ids=["bit-flip", "truncated", "foreign", "empty", "other-build"],
)
def test_bad_entry_is_ignored_and_rebuilt(
    engine: Engine, cache_dir: Path, corrupt: object, caplog: pytest.LogCaptureFixture
) -> None:
    wasm = guests.echo()
    rt, _ = runtime(engine, cache_dir)
    rt.load(wasm, plugin="p").close()
    [entry] = entries(cache_dir)
    good = entry.read_bytes()
    corrupt(entry)  # type: ignore[operator]

    caplog.set_level(logging.WARNING, logger="vultrino.runtime.cache")
    rt2, spy2 = runtime(engine, cache_dir)
    module = rt2.load(wasm, plugin="p")
    assert (spy2.compiles, spy2.loads) == (1, 0)  # never handed to the engine
    assert module.execute(REQUEST) == {"ok": REQUEST}
    module.close()
    assert any("ignoring cached module" in r.getMessage() for r in caplog.records)
    assert entries(cache_dir) == [entry]
    assert len(entry.read_bytes()) == len(good)  # rebuilt

    rt3, spy3 = runtime(engine, cache_dir)
    rt3.load(wasm, plugin="p").close()
    assert (spy3.compiles, spy3.loads) == (0, 1)


def test_other_engine_version_gets_its_own_entry(engine: Engine, cache_dir: Path) -> None:
    wasm = guests.echo()
    rt, spy = runtime(engine, cache_dir)
    spy.version = "0.0.0-other"
    rt.load(wasm, plugin="p").close()
    rt2, spy2 = runtime(engine, cache_dir)
    rt2.load(wasm, plugin="p").close()
    assert spy2.compiles == 1  # the other version's entry was not used
    assert len(entries(cache_dir)) == 2


def test_drop_cache_removes_the_module_entries(engine: Engine, cache_dir: Path) -> None:
    echo, hostile = guests.echo(), guests.hostile()
    rt, spy = runtime(engine, cache_dir)
    sha = rt.inspect(echo).sha256
    rt.inspect(hostile)
    assert len(entries(cache_dir)) == 2
    assert rt.drop_cache(sha) == 1
    assert rt.drop_cache(sha) == 0
    assert len(entries(cache_dir)) == 1
    rt.load(echo, plugin="p").close()  # compiled again, in memory and on disk
    assert spy.compiles == 3
    assert len(entries(cache_dir)) == 2


def test_no_cache_dir_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    rt, spy = runtime(engine, None)
    wasm = guests.echo()
    rt.load(wasm, plugin="p").close()
    rt.load(wasm, plugin="p").close()
    assert spy.compiles == 1  # kept in memory
    assert list(tmp_path.iterdir()) == []


def test_unwritable_cache_dir_is_skipped(engine: Engine, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rt, _ = runtime(engine, blocker / "cache")
    module = rt.load(guests.echo(), plugin="p")
    assert module.execute(REQUEST) == {"ok": REQUEST}
    module.close()


def test_module_cache_refuses_a_bad_sha(tmp_path: Path) -> None:
    cache = ModuleCache(tmp_path)
    with pytest.raises(ValueError, match="sha256"):
        cache.drop("../../etc")
    with pytest.raises(ValueError, match="sha256"):
        cache.path("*", "wasmtime", "1", "x")


def test_loaded_module_outlives_drop_cache(engine: Engine, cache_dir: Path) -> None:
    """Replacing a plugin drops its cache entries; a module already loaded keeps working,
    also on threads that never ran it (thread-affine engines rebuild it per thread)."""
    rt, _ = runtime(engine, cache_dir)
    module = rt.load(guests.echo(), plugin="p")
    assert rt.drop_cache(module.sha256) == 1
    answers: list[object] = []
    worker = threading.Thread(target=lambda: answers.append(module.execute(REQUEST)))
    worker.start()
    worker.join()
    assert answers == [{"ok": REQUEST}]
    assert module.execute(REQUEST) == {"ok": REQUEST}
    module.close()
