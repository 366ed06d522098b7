"""Every example under examples/ runs, as a user would run it, and does what it says.

The shell examples run with ``bash`` and find ``vultrino`` on PATH (a shim that runs this
checkout's ``python -m vultrino``); each makes its own throwaway home and, where it needs one,
its own ``vultrino serve`` on 127.0.0.1. The API their credentials are for is taken from
EXAMPLE_API_URL, which points at a real HTTP server on 127.0.0.1 that records what reached it,
so the test sees the credential arrive upstream and never leave through the output. No example
reaches any address but 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.mcp_helpers import HANG_GUARD_S, McpHome, make_home
from tests.e2e.serve_helpers import make_key, serve
from tests.localhttp import Recorder, serving

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MCP_CONFIGS = sorted((EXAMPLES / "mcp").glob("*.json"))

TOKEN = "ghp_exampleTestToken5c0ffee5c0ffee5c0ffee"
UPSTREAM_BODY = b'{"login": "octocat-from-the-test"}'


@pytest.fixture
def upstream() -> Iterator[Recorder]:
    with serving(Recorder(UPSTREAM_BODY)) as server:
        yield server


@pytest.fixture
def env(tmp_path: Path, upstream: Recorder) -> dict[str, str]:
    """A user's environment: ``vultrino`` on PATH, a HOME of its own (so ~/.vultrino is never
    a real one), TMPDIR where the examples put their throwaway homes, no VULTRINO_* setting."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "vultrino"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m vultrino "$@"\n')
    shim.chmod(0o755)
    (tmp_path / "home").mkdir()
    (tmp_path / "tmp").mkdir()
    out = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
    out.update(
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        HOME=str(tmp_path / "home"),
        TMPDIR=str(tmp_path / "tmp"),
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        EXAMPLE_API_URL=upstream.base,
        GITHUB_TOKEN=TOKEN,
    )
    if os.environ.get("VULTRINO_ENGINE"):
        out["VULTRINO_ENGINE"] = os.environ["VULTRINO_ENGINE"]
    return out


def run_example(name: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    path = EXAMPLES / name
    argv = ["bash", str(path)] if name.endswith(".sh") else [sys.executable, str(path)]
    return subprocess.run(
        [*argv, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S * 3,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
    )


def output(r: subprocess.CompletedProcess[str]) -> str:
    return r.stdout + r.stderr


def assert_left_nothing(env: dict[str, str]) -> None:
    """The throwaway home is gone, and no home was made in HOME."""
    assert list(Path(env["TMPDIR"]).iterdir()) == []
    assert not (Path(env["HOME"]) / ".vultrino").exists()


# --- the shell examples -------------------------------------------------------------------


def test_basic_usage(env: dict[str, str], upstream: Recorder) -> None:
    r = run_example("basic-usage.sh", env)
    out = output(r)
    assert r.returncode == 0, out
    # the request made locally and the one made through the server with an API key
    assert out.count(UPSTREAM_BODY.decode()) == 2
    assert upstream.paths == ["GET /user", "GET /user"]
    assert upstream.auth == [f"Bearer {TOKEN}"] * 2
    assert "github-api  api_key" in out  # the listing
    assert "(refused, as it should be)" in out  # the revoked key
    assert TOKEN not in out
    assert_left_nothing(env)


def test_curl_examples_on_their_own_server(env: dict[str, str], upstream: Recorder) -> None:
    r = run_example("curl-examples.sh", env)
    out = output(r)
    assert r.returncode == 0, out
    assert upstream.paths == ["GET /search/repositories?q=vultrino", "POST /user/repos"]
    assert upstream.auth == [f"Bearer {TOKEN}"] * 2
    statuses = re.findall(r"^HTTP (\d+)$", r.stdout, re.MULTILINE)
    assert statuses == ["200"] * 4 + ["401", "401", "403", "403", "403"]
    for code in (
        "missing_api_key",
        "invalid_api_key",
        "permission_denied",
        "credential_denied",
        "access_denied",
    ):
        assert f'"code": "{code}"' in out
    assert '"key": "********"' in out  # the listing masks the secret
    assert TOKEN not in out
    assert_left_nothing(env)


def test_curl_examples_against_a_running_server(
    env: dict[str, str], upstream: Recorder, tmp_path: Path
) -> None:
    """With VULTRINO_URL and VULTRINO_API_KEY the script uses that server and creates nothing."""
    home = make_home(tmp_path / "server-home", plugins=())
    add = home.cli("add", "--alias", "gh", "--type", "api_key", "--field", f"key={TOKEN}",
                   "--allow", f"{upstream.base}/*")  # fmt: skip
    assert add.returncode == 0, add.stderr
    key = make_key(home, "curl", "executor")
    with serve(home) as server:
        r = run_example(
            "curl-examples.sh",
            {
                **env,
                "VULTRINO_URL": server.url,
                "VULTRINO_API_KEY": key,
                "EXAMPLE_CREDENTIAL": "gh",
            },
        )
    out = output(r)
    assert r.returncode == 0, out
    assert re.findall(r"^HTTP (\d+)$", r.stdout, re.MULTILINE) == ["200"] * 4 + ["401", "401"]
    assert upstream.auth == [f"Bearer {TOKEN}"] * 2
    assert "Setting up" not in out
    assert key not in out
    assert_left_nothing(env)


def test_multi_agent_setup(env: dict[str, str], upstream: Recorder) -> None:
    r = run_example("multi-agent-setup.sh", env)
    out = output(r)
    assert r.returncode == 0, out
    # only the calls each profile allows reached the API
    assert upstream.paths == [
        "GET /user",
        "GET /repos/octocat/hello-world",
        "POST /v1/customers",
    ]
    assert upstream.auth[2] == "Bearer sk_test_madeUpExampleKey000000000000"
    assert out.count("(refused, as it should be)") == 4
    assert "Access denied to credential: stripe-api" in out
    assert "outside the URL patterns of agent 'code-bot'" in out
    assert "does not have the 'execute' permission" in out
    # the audit listing names code-bot's calls, the refusals too
    audit = out[out.index("== 10.") :]
    assert audit.count("code-bot") >= 5
    assert "denied" in audit
    assert_left_nothing(env)


def test_shell_examples_serve_on_loopback_only() -> None:
    common = (EXAMPLES / "_common.sh").read_text()
    assert re.findall(r"serve --bind (\S+)", common) == ["127.0.0.1:0"]
    for script in EXAMPLES.glob("*.sh"):
        assert "--bind" not in script.read_text() or script.name == "_common.sh", script.name


# --- the Python examples ------------------------------------------------------------------


def test_python_api(env: dict[str, str], upstream: Recorder) -> None:
    r = run_example("python_api.py", env)
    out = output(r)
    assert r.returncode == 0, out
    assert upstream.paths == ["GET /user", "GET /user"]  # the script's and code-bot's
    assert upstream.auth == [f"Bearer {TOKEN}"] * 2
    assert "code-bot sees: ['github-api']" in out
    assert "code-bot and stripe-api: refused" in out
    assert "audit: code-bot stripe-api denied" in out
    assert TOKEN not in out
    assert_left_nothing(env)


def test_rest_client(env: dict[str, str], upstream: Recorder, tmp_path: Path) -> None:
    home = make_home(tmp_path / "server-home", plugins=())
    add = home.cli("add", "--alias", "gh", "--type", "api_key", "--field", f"key={TOKEN}",
                   "--allow", f"{upstream.base}/*")  # fmt: skip
    assert add.returncode == 0, add.stderr
    key = make_key(home, "app", "executor")
    with serve(home) as server:
        base = {**env, "VULTRINO_URL": server.url}
        r = run_example("rest_client.py", {**base, "VULTRINO_API_KEY": key})
        missing = run_example("rest_client.py", base)
        wrong = run_example("rest_client.py", {**base, "VULTRINO_API_KEY": "vk_notAKey"})
    out = output(r)
    assert r.returncode == 0, out
    assert "server " + server.url + ": ok" in out
    assert f"GET {upstream.base}/user with gh: 200" in out  # the first credential it may see
    assert "refused (access_denied)" in out
    assert upstream.paths == ["GET /user"]
    assert upstream.auth == [f"Bearer {TOKEN}"]
    assert TOKEN not in out and key not in out
    assert missing.returncode == 2
    assert "set VULTRINO_API_KEY" in missing.stderr
    # an error answer is raised with the server's code
    assert wrong.returncode != 0
    assert "401 invalid_api_key" in wrong.stderr


# --- MCP client configurations ------------------------------------------------------------


def mcp_servers(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    servers = data.get("mcpServers") or data.get("servers")
    assert isinstance(servers, dict) and servers, path.name
    return servers


def test_mcp_configs_are_json_naming_real_commands() -> None:
    assert {p.name for p in MCP_CONFIGS} == {
        "claude-desktop.json",
        "claude-code-http.json",
        "cursor.json",
        "vscode.json",
    }
    kinds = set()
    for path in MCP_CONFIGS:
        for name, entry in mcp_servers(path).items():
            if "command" in entry:
                kinds.add("stdio")
                assert entry["command"] == "vultrino", (path.name, name)
                assert entry["args"][0] == "mcp"
                # the real CLI accepts the arguments (an unknown option exits 2 before --help)
                run = subprocess.run(
                    [sys.executable, "-m", "vultrino", *entry["args"], "--help"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert run.returncode == 0, (path.name, name, run.stderr)
                # the password comes from a file, never from the configuration
                assert set(entry.get("env", {})) == {"VULTRINO_PASSWORD_FILE"}
            else:
                kinds.add("http")
                assert entry["url"] == "http://127.0.0.1:7879/mcp", (path.name, name)
                auth = entry["headers"]["Authorization"]
                # a variable the client fills in, never a key written into the file
                assert re.fullmatch(r"Bearer \$\{[^}]+\}", auth), (path.name, name)
    assert kinds == {"stdio", "http"}


@pytest.fixture
def user_home(env: dict[str, str]) -> McpHome:
    """A store at ~/.vultrino of the test's HOME, its password at the place the configs name
    (~/.config/vultrino/password), an agent code-bot (cursor.json starts the server as it)."""
    home_dir = Path(env["HOME"])
    home = make_home(home_dir / ".vultrino", plugins=())
    config = home_dir / ".config" / "vultrino"
    config.mkdir(parents=True)
    shutil.copy(home.password_file, config / "password")
    (config / "password").chmod(0o600)
    added = home.cli("agent", "add", "code-bot", "--credential", "github*", "--tool",
                     "list_credentials")  # fmt: skip
    assert added.returncode == 0, added.stderr
    return home


def run_mcp_client(config: Path, env: dict[str, str], *args: str) -> str:
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / "mcp_client.py"), str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, output(r)
    return r.stdout


def test_mcp_stdio_configs_work_with_the_sdk_client(
    env: dict[str, str], user_home: McpHome, tmp_path: Path
) -> None:
    """The MCP SDK's client starts the server each stdio entry names and lists its tools."""
    # VS Code's: ${userHome} is the user's home, as VS Code fills it in
    out = run_mcp_client(EXAMPLES / "mcp" / "vscode.json", env, "vultrino")
    assert "tools: get_credential_info, http_request, list_credentials" in out
    assert '"alias": "github"' in out
    # Claude Desktop's: the one path to adapt is its placeholder home
    claude = tmp_path / "claude_desktop_config.json"
    text = (EXAMPLES / "mcp" / "claude-desktop.json").read_text()
    assert text.count("YOUR_HOME") == 1
    claude.write_text(text.replace("YOUR_HOME", env["HOME"]))
    assert "http_request" in run_mcp_client(claude, env)
    # Cursor's runs the server as the code-bot profile: only the tools it may call
    out = run_mcp_client(EXAMPLES / "mcp" / "cursor.json", env, "vultrino")
    assert "tools: get_credential_info, list_credentials\n" in out  # no http_request


@pytest.mark.parametrize(
    "case",
    [
        ("vscode.json", "vultrino-server", "MCP_INPUT_VULTRINO_API_KEY"),
        ("cursor.json", "vultrino-server", "VULTRINO_API_KEY"),
        ("claude-code-http.json", "vultrino", "VULTRINO_API_KEY"),
    ],
    ids=["vscode", "cursor", "claude-code"],
)
def test_mcp_http_configs_work_with_the_sdk_client(
    env: dict[str, str], user_home: McpHome, tmp_path: Path, case: tuple[str, str, str]
) -> None:
    """The HTTP entries reach `vultrino serve`'s /mcp with an API key the client fills in
    (the port is the one thing changed: the test's server listens on a free one)."""
    config, entry, variable = case
    key = make_key(user_home, "editor", "executor")
    with serve(user_home) as server:
        copy = tmp_path / config
        text = (EXAMPLES / "mcp" / config).read_text()
        copy.write_text(text.replace("http://127.0.0.1:7879", server.url))
        out = run_mcp_client(copy, {**env, variable: key}, entry)
    assert "http_request" in out
    assert '"alias": "github"' in out
    assert key not in out


# --- the index ----------------------------------------------------------------------------


def test_every_example_is_indexed_and_says_what_it_shows() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    files = [p for p in EXAMPLES.rglob("*") if p.is_file() and p.name != "README.md"]
    for path in files:
        rel = path.relative_to(EXAMPLES).as_posix()
        if rel == "_common.sh" or "__pycache__" in rel:
            continue
        assert f"`{rel}`" in readme, rel
        if path.suffix in (".sh", ".py"):
            # what it shows (the first lines) and how to run it, at the top
            head = "\n".join(path.read_text().splitlines()[:12])
            how = "bash examples/" if path.suffix == ".sh" else "python examples/"
            assert re.search(r"^(# |\"\"\")\w", head, re.MULTILINE), rel
            assert how + path.name in head, rel
