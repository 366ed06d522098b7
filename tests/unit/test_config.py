"""config.toml: defaults, values, and errors that name the file, line or key."""

from __future__ import annotations

from pathlib import Path

import pytest

from vultrino.config import load_config
from vultrino.errors import ConfigError
from vultrino.runtime.engine import MIB


def test_absent_file_means_defaults(tmp_path: Path) -> None:
    c = load_config(tmp_path / "config.toml")
    assert c.engine == "wasmtime"
    assert c.limits.deadline_s == 5.0
    assert c.limits.memory_bytes == 128 * MIB
    assert c.limits.output_bytes == 8 * MIB
    assert c.source is None
    assert c.build_sandbox == "auto"
    assert (c.keep_versions, c.keep_versions_days) == (1, 7.0)


def test_values_are_read(tmp_path: Path) -> None:
    p = tmp_path / "config.toml"
    p.write_text(
        'engine = "wasmer"\n[limits]\ndeadline_s = 1.5\nmemory_mb = 32\noutput_mb = 2\n'
        "[store]\nkdf_opslimit = 4\nkdf_memlimit_mb = 128\nkeep_versions = 3\n"
        "keep_versions_days = 0.5\n[http]\nmax_response_mb = 3\n"
        "[mcp]\nport = 9000\n[build]\nsandbox = 'require'\n"
    )
    c = load_config(p)
    assert (c.engine, c.limits.deadline_s, c.limits.memory_bytes) == ("wasmer", 1.5, 32 * MIB)
    assert (c.kdf_opslimit, c.kdf_memlimit) == (4, 128 * MIB)
    assert (c.http_max_response_bytes, c.mcp_port) == (3 * MIB, 9000)
    assert c.build_sandbox == "require"
    assert (c.keep_versions, c.keep_versions_days) == (3, 0.5)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "config.toml"
    p.write_text('engine = "wasmtime"\n[limits\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value)
    assert "line 2" in str(e.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[limits]\ndeadline_s = 'soon'\n", "limits.deadline_s: expected"),
        ("[limits]\nmemory_mb = -1\n", "limits.memory_mb: must be positive"),
        ("[limits]\nmemroy_mb = 1\n", "limits.memroy_mb: unknown key"),
        ("colour = 'blue'\n", "colour: unknown key"),
        ("engine = 'v8'\n", "unknown engine 'v8'"),
        ("[limits]\noutput_mb = true\n", "limits.output_mb: expected int"),
        ("[build]\nsandbox = 'maybe'\n", "build.sandbox: expected one of auto, require, off"),
        ("[store]\nkeep_versions = 0\n", "store.keep_versions: must be positive"),
        ("[store]\nkeep_versions = 1.5\n", "store.keep_versions: expected int"),
        ("[store]\nkeep_versions_days = -1\n", "store.keep_versions_days: must be positive"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "config.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert needle in str(e.value)
    assert str(p) in str(e.value)


def test_env_engine_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "config.toml"
    p.write_text('engine = "wasmtime"\n')
    monkeypatch.setenv("VULTRINO_ENGINE", "wasmer")
    assert load_config(p).engine == "wasmer"
    monkeypatch.setenv("VULTRINO_ENGINE", "nope")
    with pytest.raises(ConfigError, match="VULTRINO_ENGINE"):
        load_config(p)


def test_the_store_url_from_the_file_its_shorthand_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "config.toml"
    assert load_config(p).store_url is None  # the default: the home's credentials.enc
    p.write_text('[store]\nurl = "postgresql://v@db/one"\nkdf_opslimit = 2\n')
    assert (load_config(p).store_url, load_config(p).kdf_opslimit) == ("postgresql://v@db/one", 2)
    p.write_text('store = "postgres://v@db/two"\n')
    assert load_config(p).store_url == "postgres://v@db/two"
    monkeypatch.setenv("VULTRINO_STORE_URL", "postgresql://v@other/three")
    assert load_config(p).store_url == "postgresql://v@other/three"


def test_a_store_url_that_is_not_postgresql_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "config.toml"
    p.write_text('[store]\nurl = "mysql://db/x"\n')
    with pytest.raises(ConfigError, match=r"store\.url: expected a postgresql://"):
        load_config(p)
    p.write_text("")
    monkeypatch.setenv("VULTRINO_STORE_URL", "/var/lib/credentials.enc")
    with pytest.raises(ConfigError, match="VULTRINO_STORE_URL: expected a postgresql://"):
        load_config(p)
