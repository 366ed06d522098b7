"""The deployment files under deploy/: the systemd units pass ``systemd-analyze verify`` with
nothing to say, and the Docker files hold together with the project they deploy.

The image itself is never built here (that needs a Docker daemon): what is checked is what can
be without one — the Dockerfile parses with BuildKit's own parser (the ``dockerfile``
package), its COPY set builds the package's wheel, its CMD's flags are accepted by the real
CLI, its healthcheck command answers for a real ``vultrino serve``, and compose.yaml wires the
services, secrets and volume the Dockerfile expects.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.mcp_helpers import HANG_GUARD_S, McpHome, make_home
from tests.e2e.serve_helpers import serve

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
DOCKER = ROOT / "deploy" / "docker"
SYSTEM_UNIT = SYSTEMD / "vultrino.service"
USER_UNIT = SYSTEMD / "vultrino-user.service"

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian package `systemd`; scripts/setup.sh "
    "installs it as root)",
)


# --- systemd ------------------------------------------------------------------------------


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit (keys may repeat), comments and sections dropped."""
    found: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key, []).append(value)
    return found


def exec_start(path: Path) -> list[str]:
    return unit_settings(path)["ExecStart"][0].split()


def verify_system_unit(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify --root=ROOT`` of the unit, as installed in a small root tree
    that holds the system's own units (for its After=/WantedBy= targets) and an executable at
    the unit's ExecStart path (verify checks that it exists)."""
    root = tmp_path / "root"
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    binary = root / exec_start(SYSTEM_UNIT)[0].lstrip("/")
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    (units / "vultrino.service").write_text(unit_text)
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "/etc/systemd/system/vultrino.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def verify_user_unit(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze --user verify`` with HOME at a directory holding ~/.local/bin/vultrino
    (the unit's %h/.local/bin/vultrino)."""
    home = tmp_path / "home"
    binary = home / ".local" / "bin" / "vultrino"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    (tmp_path / "vultrino.service").write_text(unit_text)
    return subprocess.run(
        ["systemd-analyze", "--user", "verify", "./vultrino.service"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)},
    )


def diagnostics(result: subprocess.CompletedProcess[str]) -> str:
    """What verify said. It exits 0 on a directive it ignores (a typo, a bad value), so the
    check is that it says nothing at all."""
    return (result.stdout + result.stderr).strip()


@needs_systemd_analyze
def test_system_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    result = verify_system_unit(SYSTEM_UNIT.read_text(), tmp_path)
    assert result.returncode == 0, diagnostics(result)
    assert diagnostics(result) == ""


@needs_systemd_analyze
def test_user_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    result = verify_user_unit(USER_UNIT.read_text(), tmp_path)
    assert result.returncode == 0, diagnostics(result)
    assert diagnostics(result) == ""


@needs_systemd_analyze
@pytest.mark.parametrize(
    ("good", "bad", "said"),
    [
        ("ProtectHome=yes", "ProtectHome=maybe", "protect home"),
        ("SystemCallFilter=@system-service", "SystemCallFilter=@no-such-group", "system call"),
        ("NoNewPrivileges=yes", "NoNewPrivilege=yes", "NoNewPrivilege"),
    ],
)
def test_the_verify_check_catches_a_broken_unit(
    tmp_path: Path, good: str, bad: str, said: str
) -> None:
    """The checks above can fail: verify reports a bad value, an unknown group, a typo."""
    text = SYSTEM_UNIT.read_text()
    assert good in text
    result = verify_system_unit(text.replace(good, bad), tmp_path)
    assert said in diagnostics(result)


def test_system_unit_hardening() -> None:
    s = unit_settings(SYSTEM_UNIT)
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "StateDirectory": "vultrino",
        "CapabilityBoundingSet": "",
        "SystemCallFilter": "@system-service",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "User": "vultrino",
    }
    for key, value in expected.items():
        assert s.get(key) == [value], key
    # the JIT of both engines needs memory it wrote to become executable
    assert "MemoryDenyWriteExecute" not in s
    assert "MemoryDenyWriteExecute= is deliberately NOT set" in SYSTEM_UNIT.read_text()
    # the password comes from a systemd credential, never the environment
    assert s["LoadCredential"] == ["password:/etc/vultrino/password"]
    assert "VULTRINO_PASSWORD_FILE=%d/password" in s["Environment"]
    assert "VULTRINO_HOME=%S/vultrino" in s["Environment"]
    assert not any(e.startswith("VULTRINO_PASSWORD=") for e in s["Environment"])
    assert exec_start(SYSTEM_UNIT)[1:] == ["serve", "--bind", "127.0.0.1:7879"]


def test_user_unit_hardening() -> None:
    s = unit_settings(USER_UNIT)
    assert s["NoNewPrivileges"] == ["yes"]
    assert s["SystemCallFilter"] == ["@system-service"]
    assert "MemoryDenyWriteExecute" not in s
    assert s["Environment"] == ["VULTRINO_PASSWORD_FILE=%h/.config/vultrino/password"]


@pytest.mark.parametrize("unit", [SYSTEM_UNIT, USER_UNIT], ids=["system", "user"])
def test_units_exec_start_flags_are_the_clis(unit: Path) -> None:
    """The ExecStart's arguments are accepted by the real ``vultrino`` (an unknown flag would
    exit 2 before --help)."""
    args = exec_start(unit)[1:]
    run = subprocess.run(
        [sys.executable, "-m", "vultrino", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr


def expand_filter(group: str) -> set[str]:
    """The system calls a ``SystemCallFilter=`` group allows, its nested groups expanded."""
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter", group],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    names: set[str] = set()
    for line in listing.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        names |= expand_filter(item) if item.startswith("@") else {item}
    return names


@contextlib.contextmanager
def traced_server(home: McpHome, trace: Path) -> Iterator[str]:
    """``strace -f -o TRACE python -m vultrino serve --bind 127.0.0.1:0`` on ``home``; yields
    its URL, then stops the server with SIGTERM (its pid from server.json) and waits for both
    to exit, so the trace ends with the clean stop."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog:
        proc = subprocess.Popen(
            ["strace", "-f", "-qq", "-o", str(trace), sys.executable, "-m", "vultrino",
             "serve", "--bind", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
            env=home.env(),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + HANG_GUARD_S
            url = None
            while url is None:
                errlog.seek(0)
                found = re.search(r"Vultrino server listening on (\S+)", errlog.read())
                if found:
                    url = found.group(1)
                elif proc.poll() is not None or time.monotonic() > deadline:
                    errlog.seek(0)
                    raise RuntimeError(f"the traced server did not start: {errlog.read()}")
                else:
                    time.sleep(0.05)
            yield url
            pid = json.loads((home.root / "server.json").read_text())["pid"]
            os.kill(pid, signal.SIGTERM)
            assert proc.wait(timeout=HANG_GUARD_S) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@needs_systemd_analyze
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_server_stays_within_the_units_syscall_filter_and_address_families(
    tmp_path: Path,
) -> None:
    """``vultrino serve`` traced with strace from start to a clean SIGTERM stop, through a
    WebAssembly plugin call, an HTTP plugin call to a local server and a web UI page, makes
    only system calls the unit's SystemCallFilter= allows and opens only sockets of its
    RestrictAddressFamilies= (what the unit's seccomp filter would otherwise kill or refuse)."""
    from tests.localhttp import Recorder, serving

    httpx = pytest.importorskip("httpx")
    settings = unit_settings(SYSTEM_UNIT)
    (group,) = settings["SystemCallFilter"]
    allowed = expand_filter(group)
    families = set(settings["RestrictAddressFamilies"][0].split())
    probe = subprocess.run(["strace", "-qq", "-o", os.devnull, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here: {probe.stderr.decode().strip()}")

    home = make_home(tmp_path / "home")  # with the echo WebAssembly plugin
    trace = tmp_path / "trace"
    with serving(Recorder()) as upstream:
        add = home.cli("add", "--alias", "up", "--type", "api_key", "--field", "key=t0ken",
                       "--allow", f"{upstream.base}/*")  # fmt: skip
        assert add.returncode == 0, add.stderr
        key = home.cli("key", "create", "probe", "--role", "admin").stdout.strip()
        auth = {"Authorization": f"Bearer {key}"}
        with traced_server(home, trace) as base:
            with httpx.Client(timeout=60) as client:
                calls = [
                    client.get(base + "/api/v1/health"),
                    client.post(base + "/api/v1/execute", headers=auth, json={
                        "credential": "echo-one", "action": "echo", "params": {"message": "hi"}}),
                    client.post(base + "/api/v1/execute", headers=auth, json={
                        "credential": "up", "method": "GET", "url": upstream.base + "/x"}),
                    client.get(base + "/login"),
                ]  # fmt: skip
            assert [c.status_code for c in calls] == [200, 200, 200, 200], [c.text for c in calls]
        assert upstream.paths == ["GET /x"]

    used: set[str] = set()
    opened: set[str] = set()
    for line in trace.read_text().splitlines():
        call = re.match(r"^\d+\s+(?:<\.\.\. )?([a-z_0-9]+)[( ]", line)
        if call:
            used.add(call.group(1))
        sock = re.match(r"^\d+\s+socket\((AF_[A-Z0-9]+)", line)
        if sock:
            opened.add(sock.group(1))
    assert {"execve", "bind", "accept4", "connect", "mprotect"} <= used  # it did trace
    assert used - allowed == set()
    assert opened - families == set()


# --- Docker -------------------------------------------------------------------------------


def dockerfile_commands() -> list[Any]:
    dockerfile = pytest.importorskip("dockerfile", reason="the dev extra's `dockerfile` parser")
    return list(dockerfile.parse_file(str(DOCKER / "Dockerfile")))


def one(cmds: list[Any], name: str) -> Any:
    found = [c for c in cmds if c.cmd == name]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


def test_dockerfile_parses_and_has_the_expected_shape() -> None:
    cmds = dockerfile_commands()
    assert one(cmds, "FROM").value == ("python:3.11-slim",)
    assert one(cmds, "USER").value == ("vultrino",)
    # the user the image runs as is the one created, and not root
    useradd = " ".join(c.value[0] for c in cmds if c.cmd == "RUN")
    assert "useradd --system --uid 10001" in useradd
    assert one(cmds, "VOLUME").value == ("/data",)
    env = dict(zip(*[iter(v for c in cmds if c.cmd == "ENV" for v in c.value)] * 2, strict=True))
    assert env["VULTRINO_HOME"] == "/data"
    assert env["VULTRINO_PASSWORD_FILE"] == "/run/secrets/vultrino_password"
    assert "VULTRINO_PASSWORD" not in env
    assert one(cmds, "ENTRYPOINT").value == ("vultrino",)
    assert one(cmds, "EXPOSE").value == ("7879",)


def test_dockerfile_cmd_flags_are_the_clis() -> None:
    cmds = dockerfile_commands()
    cmd = one(cmds, "CMD")
    assert cmd.json
    assert cmd.value[0] == "serve"
    run = subprocess.run(
        [sys.executable, "-m", "vultrino", *cmd.value, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr


def test_dockerfile_copy_set_builds_the_wheel(tmp_path: Path) -> None:
    """A build context holding only what the Dockerfile COPYs builds the package (with its
    bundled plugins, WIT file and SDKs), as ``pip install /src`` in the image would."""
    pytest.importorskip("hatchling", reason="the dev extra's hatchling (the build backend)")
    cmds = dockerfile_commands()
    src = tmp_path / "src"
    src.mkdir()
    for copy in (c for c in cmds if c.cmd == "COPY"):
        *sources, dest = copy.value
        into_dir = dest.endswith("/") or dest == "."
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: not in the repository"
            target = (src / dest / path.name) if into_dir else (src / dest)
            if path.is_dir():
                shutil.copytree(path, target, ignore=shutil.ignore_patterns("target", "*.pyc"))
            else:
                shutil.copy2(path, target)
    out = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = out.glob("vultrino-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    forced = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    for inside in forced.values():
        assert any(n == inside or n.startswith(inside + "/") for n in names), inside
    assert "vultrino/__init__.py" in names
    assert any(n.startswith("vultrino/server/") for n in names)


def healthcheck_argv() -> list[str]:
    cmds = dockerfile_commands()
    health = one(cmds, "HEALTHCHECK")
    assert health.sub_cmd == "CMD" or health.value[0] == "CMD"
    return [v for v in health.value if v != "CMD"]


def test_dockerfile_healthcheck_answers_for_a_real_server(tmp_path: Path) -> None:
    """The HEALTHCHECK command, run as written but for the port, exits 0 against a running
    ``vultrino serve`` and non-zero once it has stopped."""
    argv = healthcheck_argv()
    assert argv[0] == "python"
    script = argv[-1]
    assert "http://127.0.0.1:7879/api/v1/health" in script
    home = make_home(tmp_path, plugins=())
    with serve(home) as server:
        port = server.url.rsplit(":", 1)[1]
        ours = script.replace("127.0.0.1:7879", f"127.0.0.1:{port}")
        up = subprocess.run([sys.executable, *argv[1:-1], ours], timeout=30, capture_output=True)
        assert up.returncode == 0, up.stderr
    down = subprocess.run([sys.executable, *argv[1:-1], ours], timeout=30, capture_output=True)
    assert down.returncode != 0


def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="the dev extra's PyYAML")
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_file_wires_server_secrets_and_volume() -> None:
    c = compose()
    assert set(c["services"]) == {"vultrino", "postgres"}
    v = c["services"]["vultrino"]
    build = v["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    # published on the host's loopback only: the container serves plain HTTP
    assert v["ports"] == ["127.0.0.1:7879:7879"]
    # the password is a secret file the Dockerfile's VULTRINO_PASSWORD_FILE names
    assert v["environment"]["VULTRINO_PASSWORD_FILE"] == "/run/secrets/vultrino_password"
    assert "VULTRINO_PASSWORD" not in v["environment"]
    for name in v["secrets"]:
        assert name in c["secrets"]
        assert c["secrets"][name]["file"].startswith("./secrets/")
    # the home is a named volume at the Dockerfile's VOLUME
    (volume,) = v["volumes"]
    name, _, mount = volume.partition(":")
    assert mount == "/data"
    assert name in c["volumes"]
    assert v["read_only"] is True
    assert v["cap_drop"] == ["ALL"]
    # PostgreSQL only with its profile; the store URL is empty (the volume's file) otherwise
    pg = c["services"]["postgres"]
    assert pg["profiles"] == ["postgres"]
    assert v["depends_on"]["postgres"]["required"] is False
    assert v["environment"]["VULTRINO_STORE_URL"] == "${VULTRINO_STORE_URL:-}"
    assert pg["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert pg["secrets"] == ["postgres_password"]


def test_compose_documents_a_store_url_the_config_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PostgreSQL URL compose.yaml's comment tells you to set names the postgres service,
    the database and user it creates, and Vultrino's configuration accepts it."""
    from vultrino.config import load_config

    text = (DOCKER / "compose.yaml").read_text()
    (url,) = re.findall(r"VULTRINO_STORE_URL=(\S+)", text)
    assert url == "postgresql://vultrino@postgres:5432/vultrino"
    pg = compose()["services"]["postgres"]["environment"]
    assert (pg["POSTGRES_USER"], pg["POSTGRES_DB"]) == ("vultrino", "vultrino")
    monkeypatch.setenv("VULTRINO_STORE_URL", url)
    assert load_config(tmp_path / "config.toml").store_url == url


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="the Docker Compose plugin is not installed: compose.yaml is checked as YAML above",
)
def test_compose_config_is_valid_for_docker_compose(tmp_path: Path) -> None:
    here = tmp_path / "deploy" / "docker"
    shutil.copytree(DOCKER, here)
    (here / "secrets").mkdir(exist_ok=True)
    for name in ("vultrino_password", "vultrino_pgpass", "postgres_password"):
        (here / "secrets" / name).touch()
    run = subprocess.run(
        ["docker", "compose", "-f", str(here / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr


# --- the docs -----------------------------------------------------------------------------


def test_deployment_doc_names_every_deploy_file_and_is_linked() -> None:
    doc = (ROOT / "docs" / "deployment.md").read_text()
    for path in sorted((ROOT / "deploy").rglob("*")):
        if path.is_file() and path.name not in (".gitignore", "Dockerfile.dockerignore"):
            assert f"`{path.relative_to(ROOT).as_posix()}`" in doc, path
    for name in re.findall(r"`(deploy/[^`\s]+)`", doc):
        made_by_you = "/secrets/" in name or name.endswith("/.env")  # compose.yaml's inputs
        assert made_by_you or (ROOT / name).exists(), name
    for target in re.findall(r"\]\(([^)#]+)", doc):
        assert (ROOT / "docs" / target).exists(), target
    assert "(docs/deployment.md)" in (ROOT / "README.md").read_text()
    assert "(deployment.md)" in (ROOT / "docs" / "server.md").read_text()
