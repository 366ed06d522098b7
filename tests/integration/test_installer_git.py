"""Installing from real git repositories reached over ``file://``, with the real ``git``.

Covers the default branch, ``#branch``, ``#tag``, ``#commit`` (full and short SHA), bare and
working-tree repository paths, links that leave the tree, hooks and submodules that must not
run or be fetched, and the ABI 1 fixture laid out like the published pgp-signing plugin.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import wasmtime

from tests.integration.test_installer import make_plugin_dir, new_runtime, snapshot
from vultrino.errors import InstallError, UnsafeSourceError
from vultrino.plugins.base import CredentialView
from vultrino.plugins.install import installer
from vultrino.plugins.registry import PluginRegistry
from vultrino.runtime import WasmRuntime

FIXTURE = Path(__file__).parent.parent / "fixtures" / "abi1_plugin"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture(autouse=True)
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private global git config, so the user's config neither helps nor hurts."""
    config = tmp_path / "gitconfig"
    config.write_text("[user]\n\tname = Test\n\temail = test@example.invalid\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    return config


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> dict[str, str]:
    """main: v1 (tagged v1.0.0) then v2; branch beta: a third answer."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    make_plugin_dir(path, answer="one", version="1.0.0")
    first = commit_all(path, "v1")
    git(path, "tag", "-a", "v1.0.0", "-m", "release 1.0.0")
    make_plugin_dir(path, answer="two", version="1.1.0")
    second = commit_all(path, "v2")
    git(path, "checkout", "-q", "-b", "beta")
    make_plugin_dir(path, answer="beta", version="2.0.0")
    beta = commit_all(path, "beta")
    git(path, "checkout", "-q", "main")
    return {"path": str(path), "url": path.as_uri(), "v1": first, "v2": second, "beta": beta}


@pytest.fixture
def runtime(tmp_path: Path) -> WasmRuntime:
    return new_runtime(tmp_path / "cache")


def answer(plugins: Path, name: str = "hello") -> object:
    with PluginRegistry(plugins, new_runtime()) as registry:
        registry.load_all()
        assert not registry.broken(), registry.broken()
        cred = CredentialView(alias="t", type="token", fields={"value": "x"})
        return registry.get(name).execute("greet", {}, cred).value


@pytest.mark.parametrize(
    "case",
    [
        (None, "two", "v2"),
        ("main", "two", "v2"),
        ("v1.0.0", "one", "v1"),
        ("beta", "beta", "beta"),
        ("{v1}", "one", "v1"),
        ("{v1_short}", "one", "v1"),
        ("{beta}", "beta", "beta"),
    ],
)
def test_install_from_git(
    tmp_path: Path, repo: dict[str, str], runtime: WasmRuntime, case: tuple[str | None, str, str]
) -> None:
    ref, expected, commit = case
    plugins = tmp_path / "plugins"
    ref_text = (
        ref.format(v1=repo["v1"], v1_short=repo["v1"][:10], beta=repo["beta"]) if ref else None
    )
    source = repo["url"] + (f"#{ref_text}" if ref_text else "")
    result = installer.install(source, plugins_dir=plugins, runtime=runtime)
    assert result.commit == repo[commit]
    assert result.ref == ref_text
    assert result.source == repo["url"]
    meta = installer.read_metadata(result.path)
    assert (meta["commit"], meta["ref"], meta["kind"]) == (repo[commit], ref_text, "git")
    assert ".git" not in os.listdir(result.path)
    assert sorted(os.listdir(plugins)) == ["hello"]
    assert answer(plugins) == expected


def test_unknown_ref(tmp_path: Path, repo: dict[str, str], runtime: WasmRuntime) -> None:
    before = snapshot(tmp_path)
    for ref in ("no-such-branch", "deadbeefdeadbeef"):
        with pytest.raises(InstallError, match=r"no-such-branch|deadbeefdeadbeef"):
            installer.install(
                f"{repo['url']}#{ref}", plugins_dir=tmp_path / "plugins", runtime=runtime
            )
    after = snapshot(tmp_path)
    assert after.pop("plugins") == "dir"  # created empty, nothing left inside
    assert after == before


def test_unreachable_repository(tmp_path: Path, runtime: WasmRuntime) -> None:
    with pytest.raises(InstallError, match="git clone failed"):
        installer.install(
            (tmp_path / "nope").as_uri(), plugins_dir=tmp_path / "plugins", runtime=runtime
        )
    assert os.listdir(tmp_path / "plugins") == []


def test_local_repository_path_with_ref(
    tmp_path: Path, repo: dict[str, str], runtime: WasmRuntime
) -> None:
    result = installer.install(
        f"{repo['path']}#v1.0.0", plugins_dir=tmp_path / "plugins", runtime=runtime
    )
    assert result.commit == repo["v1"]
    assert result.source == repo["path"]


def test_bare_repository_path(tmp_path: Path, repo: dict[str, str], runtime: WasmRuntime) -> None:
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", repo["path"], str(bare))
    result = installer.install(str(bare), plugins_dir=tmp_path / "plugins", runtime=runtime)
    assert result.commit == repo["v2"]
    assert answer(tmp_path / "plugins") == "two"


def test_working_tree_path_installs_the_files_as_they_are(
    tmp_path: Path, repo: dict[str, str], runtime: WasmRuntime
) -> None:
    """Without #ref a local checkout is a directory: uncommitted changes are what you get."""
    make_plugin_dir(Path(repo["path"]), answer="dirty")
    result = installer.install(repo["path"], plugins_dir=tmp_path / "plugins", runtime=runtime)
    assert result.commit is None
    assert answer(tmp_path / "plugins") == "dirty"


def test_symlink_leaving_the_repository_refused(
    tmp_path: Path, repo: dict[str, str], runtime: WasmRuntime
) -> None:
    path = Path(repo["path"])
    (path / "docs").mkdir()
    (path / "docs" / "passwd").symlink_to("../../../../../../etc/passwd")
    commit_all(path, "a link out")
    before = snapshot(tmp_path)
    with pytest.raises(UnsafeSourceError, match="docs/passwd"):
        installer.install(repo["url"], plugins_dir=tmp_path / "plugins", runtime=runtime)
    after = snapshot(tmp_path)
    after.pop("plugins")
    assert after == before


def test_symlinked_module_inside_repository_works(
    tmp_path: Path, repo: dict[str, str], runtime: WasmRuntime
) -> None:
    path = Path(repo["path"])
    (path / "build").mkdir()
    (path / "hello.wasm").rename(path / "build" / "hello.wasm")
    (path / "hello.wasm").symlink_to("build/hello.wasm")
    commit_all(path, "module behind an in-tree link")
    result = installer.install(repo["url"], plugins_dir=tmp_path / "plugins", runtime=runtime)
    assert not (result.path / "hello.wasm").is_symlink()  # installed as a plain copy
    assert answer(tmp_path / "plugins") == "two"


def test_hooks_from_user_config_do_not_run(
    tmp_path: Path, repo: dict[str, str], runtime: WasmRuntime, isolated_git: Path
) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    marker = tmp_path / "hook-ran"
    for hook in ("post-checkout", "post-merge", "reference-transaction"):
        script = hooks / hook
        script.write_text(f"#!/bin/sh\ntouch {marker}\n")
        script.chmod(0o755)
    with isolated_git.open("a") as fh:
        fh.write(f"[core]\n\thooksPath = {hooks}\n[submodule]\n\trecurse = true\n")
    installer.install(repo["url"], plugins_dir=tmp_path / "plugins", runtime=runtime)
    assert not marker.exists()


def test_submodules_are_not_fetched(
    tmp_path: Path,
    repo: dict[str, str],
    runtime: WasmRuntime,
    isolated_git: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A submodule would make git fetch another URL: the installer never recurses, whatever
    the user's config says (git's own trace shows which commands ran)."""
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q", "-b", "main")
    (other / "secret.txt").write_text("from another repository")
    commit_all(other, "other")
    path = Path(repo["path"])
    git(
        path, "-c", "protocol.file.allow=always", "submodule", "add", "-q", other.as_uri(), "vendor"
    )
    commit_all(path, "add a submodule")
    with isolated_git.open("a") as fh:
        fh.write('[submodule]\n\trecurse = true\n[protocol "file"]\n\tallow = always\n')
    trace = tmp_path / "git-trace.log"
    monkeypatch.setenv("GIT_TRACE", str(trace))
    plugins = tmp_path / "plugins"
    result = installer.install(repo["url"], plugins_dir=plugins, runtime=runtime)
    assert result.name == "hello"
    log = trace.read_text()
    assert "git clone" in log or "'clone'" in log  # the trace is real
    assert str(other) not in log
    assert "git submodule" not in log
    assert answer(plugins) == "two"


# --- the ABI 1 fixture, laid out like the published pgp-signing plugin ----------------------


@pytest.fixture
def pgp_repo(tmp_path: Path) -> Path:
    """A git repository with ``plugins/pgp-signing/{plugin.toml, pgp_signing.wasm, Cargo.toml}``
    (the module prebuilt from the fixture's WAT), next to other code, like the Rust Vultrino."""
    repo = tmp_path / "vultrino-rs"
    plugin = repo / "plugins" / "pgp-signing"
    plugin.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "Cargo.toml").write_text('[workspace]\nmembers = ["plugins/pgp-signing"]\n')
    (repo / "README.md").write_text("# Vultrino (Rust)\n")
    shutil.copy(FIXTURE / "plugin.toml", plugin / "plugin.toml")
    shutil.copy(FIXTURE / "Cargo.toml", plugin / "Cargo.toml")
    wasm = wasmtime.wat2wasm((FIXTURE / "pgp_signing.wat").read_text())
    (plugin / "pgp_signing.wasm").write_bytes(wasm)
    commit_all(repo, "pgp-signing plugin")
    return repo


def test_abi1_pgp_signing_installs_from_git_subdir_without_building(
    tmp_path: Path, pgp_repo: Path, runtime: WasmRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    tripwire = tmp_path / "cargo-ran"
    fake_cargo = tmp_path / "cargo"
    fake_cargo.write_text(f"#!/bin/sh\ntouch {tripwire}\necho 'cargo must not run' >&2\nexit 101\n")
    fake_cargo.chmod(0o755)
    monkeypatch.setenv("VULTRINO_CARGO", str(fake_cargo))
    plugins = tmp_path / "plugins"
    lines: list[str] = []

    result = installer.install(
        pgp_repo.as_uri(),
        plugins_dir=plugins,
        runtime=runtime,
        subdir="plugins/pgp-signing",
        build_output=lines.append,
    )

    assert not tripwire.exists() and lines == []
    assert (result.name, result.version, result.abi, result.built) == (
        "pgp-signing",
        "1.0.0",
        1,
        False,
    )
    assert result.commit == git(pgp_repo, "rev-parse", "HEAD")
    assert sorted(os.listdir(result.path)) == [".installed.json", "pgp_signing.wasm", "plugin.toml"]
    assert installer.read_metadata(result.path)["subdir"] == "plugins/pgp-signing"
    assert (result.path / "plugin.toml").read_bytes() == (FIXTURE / "plugin.toml").read_bytes()

    with PluginRegistry(plugins, new_runtime()) as registry:
        registry.load_all()
        assert not registry.broken(), registry.broken()
        plugin = registry.get("pgp-signing")
        assert {t.name for t in plugin.manifest.mcp_tools} >= {"pgp_sign_cleartext"}
        cred = CredentialView(
            alias="release-key",
            type="pgp_key",
            fields={"private_key": "-----BEGIN PGP PRIVATE KEY BLOCK-----", "passphrase": ""},
        )
        out = plugin.execute("sign_cleartext", {"message": "I approve"}, cred)
        assert out.value == "signed:I approve"


def test_url_password_never_shown(tmp_path: Path, runtime: WasmRuntime) -> None:
    """Port 1 on 127.0.0.1 refuses the connection at once; the error must not echo the token."""
    url = "https://user:tok3n-s3cret@127.0.0.1:1/repo.git"
    with pytest.raises(InstallError) as info:
        installer.install(url, plugins_dir=tmp_path / "plugins", runtime=runtime)
    assert "tok3n-s3cret" not in str(info.value)
    assert "user:***@127.0.0.1:1" in str(info.value)


def test_git_location_variables_are_ignored(
    tmp_path: Path, repo: dict[str, str], runtime: WasmRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIT_DIR / GIT_WORK_TREE (set inside git hooks, for instance) must not redirect the clone."""
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    git(decoy, "init", "-q", "-b", "main")
    monkeypatch.setenv("GIT_DIR", str(decoy / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(decoy))
    result = installer.install(repo["url"], plugins_dir=tmp_path / "plugins", runtime=runtime)
    assert result.commit == repo["v2"]
    assert os.listdir(decoy) == [".git"]
