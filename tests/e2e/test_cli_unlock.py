"""`vultrino unlock` / `vultrino lock` through the real CLI: the agent, its socket, its ends.

Every command runs as a real ``python -m vultrino`` process; the agent is the real detached
process those start. Each test has its own runtime directory (``XDG_RUNTIME_DIR``), and every
agent a test started is locked (or, failing that, killed by its pid) at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.leakcheck import LeakCheck

PASSWORD = "unlock-e2e correct horse 6f1d"
NEW_PASSWORD = "unlock-e2e re-keyed 93ab"
TOTP_SECRET = "JBSWY3DPEHPK3PXP"
HANG_GUARD_S = 60.0


class Cli:
    """`python -m vultrino` with this test's environment (no password unless given)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.pids: list[int] = []

    def __call__(
        self, *args: str, password: str | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if password is not None:
            env["VULTRINO_PASSWORD"] = password
        r = subprocess.run(
            [sys.executable, "-m", "vultrino", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_S,
            check=False,
        )
        if r.returncode == 0 and args[:1] == ("unlock",) and "--json" in args:
            self.pids.append(json.loads(r.stdout).get("pid", 0))
        return r

    def unlock(self, *extra: str) -> dict[str, object]:
        r = self("unlock", "--json", *extra, password=PASSWORD)
        assert r.returncode == 0, r.stderr
        data: dict[str, object] = json.loads(r.stdout)
        assert data["unlocked"] is True
        return data

    def status(self) -> dict[str, object]:
        r = self("unlock", "--status", "--json")
        assert r.returncode == 0, r.stderr
        data: dict[str, object] = json.loads(r.stdout)
        return data


def gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped counts: it holds no memory)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def wait_until_gone(pid: int) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not gone(pid):
        assert time.monotonic() < deadline, f"the agent {pid} is still running"
        time.sleep(0.05)


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    # short: a Unix socket path has room for about 100 bytes
    path = Path(tempfile.mkdtemp(prefix="vr", dir="/tmp"))
    os.chmod(path, 0o700)
    yield path
    with contextlib.suppress(OSError):
        for p in sorted(path.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        path.rmdir()


@pytest.fixture
def cli(isolated_home: Path, runtime_dir: Path, leakcheck: LeakCheck) -> Iterator[Cli]:
    """A home with the totp plugin and one TOTP credential, ``t``; minimal KDF."""
    leakcheck.add(PASSWORD, NEW_PASSWORD, TOTP_SECRET)
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_PASSWORD")}
    env.update(XDG_RUNTIME_DIR=str(runtime_dir), VULTRINO_HOME=str(isolated_home))
    c = Cli(env)
    for args, stdin in (
        (["init"], None),
        (["plugin", "install", "totp"], None),
        (["add", "--alias", "t", "--type", "plugin:totp:totp", "--field", "secret=-"], TOTP_SECRET),
    ):
        r = c(*args, password=PASSWORD, stdin=stdin)
        assert r.returncode == 0, r.stderr
    yield c
    c("lock")
    for pid in c.pids:
        if pid and not gone(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def code_of(cli: Cli) -> subprocess.CompletedProcess[str]:
    return cli("request", "t", "--action", "code", "--field", "code")


def test_unlock_then_commands_need_no_password_until_lock(cli: Cli, runtime_dir: Path) -> None:
    locked = code_of(cli)
    assert locked.returncode == 3
    assert "locked" in locked.stderr and "vultrino unlock" in locked.stderr

    data = cli.unlock("--for", "10m")
    assert 590 <= int(str(data["seconds_left"])) <= 600
    r = code_of(cli)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().isdigit() and len(r.stdout.strip()) == 6
    assert cli("list", "--json").returncode == 0

    status = cli.status()
    assert status["unlocked"] is True and status["pid"] == data["pid"]
    text = cli("lock", "--status")
    assert text.returncode == 0 and "unlocked until" in text.stderr

    r = cli("lock")
    assert r.returncode == 0 and r.stderr.strip() == "locked"
    wait_until_gone(int(str(data["pid"])))
    assert cli.status()["unlocked"] is False
    after = code_of(cli)
    assert after.returncode == 3
    assert "run `vultrino unlock` first" in after.stderr
    assert not list((runtime_dir / "vultrino").iterdir())  # the socket went with the agent


def test_the_socket_and_its_directory_are_private(cli: Cli, runtime_dir: Path) -> None:
    data = cli.unlock()
    sock = Path(str(data["socket"]))
    assert sock.parent == runtime_dir / "vultrino"
    assert stat.S_IMODE(os.lstat(sock.parent).st_mode) == 0o700
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)
    assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600


def test_the_agent_holds_no_password_and_cannot_dump_core(cli: Cli) -> None:
    pid = int(str(cli.unlock()["pid"]))
    proc = Path(f"/proc/{pid}")
    for name in ("environ", "cmdline"):
        assert PASSWORD.encode() not in (proc / name).read_bytes()
    limits = (proc / "limits").read_text()
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"]
    if os.geteuid() == 0:  # root may always mlock; others depend on RLIMIT_MEMLOCK
        vmlck = next(line for line in (proc / "status").read_text().splitlines() if "VmLck" in line)
        assert int(vmlck.split()[1]) > 0


def test_the_session_ends_by_itself_when_its_time_is_up(cli: Cli) -> None:
    data = cli.unlock("--for", "2s")
    assert code_of(cli).returncode == 0
    wait_until_gone(int(str(data["pid"])))  # no timing asserted: it must end, whenever
    assert cli.status()["unlocked"] is False
    assert code_of(cli).returncode == 3


def test_a_socket_others_could_reach_is_refused(cli: Cli) -> None:
    data = cli.unlock()
    sock = Path(str(data["socket"]))
    os.chmod(sock, 0o666)
    r = code_of(cli)
    assert r.returncode == 3
    assert "refusing the unlock agent's socket" in r.stderr and "0666" in r.stderr
    os.chmod(sock, 0o600)
    os.chmod(sock.parent, 0o755)
    r = code_of(cli)
    assert r.returncode == 3
    assert "refusing the unlock agent's directory" in r.stderr and "0755" in r.stderr
    os.chmod(sock.parent, 0o700)
    assert code_of(cli).returncode == 0


def test_a_file_planted_in_place_of_the_socket_is_refused(cli: Cli, runtime_dir: Path) -> None:
    data = cli.unlock()
    sock = Path(str(data["socket"]))
    assert cli("lock").returncode == 0
    wait_until_gone(int(str(data["pid"])))
    sock.write_text("not a socket")
    os.chmod(sock, 0o600)
    r = code_of(cli)
    assert r.returncode == 3 and "it is not a socket" in r.stderr
    r = cli("unlock", password=PASSWORD)
    assert r.returncode == 3 and "it is not a socket" in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
def test_the_agent_answers_no_other_user(cli: Cli, runtime_dir: Path) -> None:
    data = cli.unlock()
    sock = Path(str(data["socket"]))
    os.chmod(runtime_dir, 0o711)  # let the other user reach the socket at all
    os.chmod(sock.parent, 0o711)
    os.chmod(sock, 0o666)
    try:
        probe = (
            "import os, socket, sys\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "s.settimeout(10)\n"
            "s.connect(sys.argv[1])\n"
            "try:\n"
            '    s.sendall(b\'{"op": "key"}\\n\')\n'
            "    got = s.recv(4096)\n"
            "except (BrokenPipeError, ConnectionResetError):\n"
            "    got = b''\n"
            "sys.stdout.write(repr(got))\n"
        )
        r = subprocess.run(
            [sys.executable, "-c", probe, str(sock)],
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_S,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout == "b''"  # connected, and hung up on without a word
    finally:
        os.chmod(sock, 0o600)
        os.chmod(sock.parent, 0o700)
    assert code_of(cli).returncode == 0  # and it still serves its own user


def test_rekey_locks_the_session(cli: Cli, tmp_path: Path) -> None:
    data = cli.unlock()
    new = tmp_path / "new-password"
    new.write_text(NEW_PASSWORD)
    new.chmod(0o600)
    r = cli("rekey", "--new-password-file", str(new))
    assert r.returncode == 3  # even while unlocked, rekey wants the current password
    assert "no terminal" in r.stderr
    r = cli("rekey", "--new-password-file", str(new), password=PASSWORD)
    assert r.returncode == 0, r.stderr
    wait_until_gone(int(str(data["pid"])))
    assert cli.status()["unlocked"] is False
    assert code_of(cli).returncode == 3
    assert cli("request", "t", "--action", "code", password=NEW_PASSWORD).returncode == 0


def test_an_agent_never_hands_out_a_key_the_store_no_longer_takes(
    cli: Cli, isolated_home: Path
) -> None:
    """A rekey by another route than `vultrino rekey` (here: the store API of another
    process) is noticed by the agent itself, which locks instead of answering."""
    data = cli.unlock()
    rekey = (
        "import sys\n"
        "from pathlib import Path\n"
        "from vultrino.store import CredentialStore\n"
        "with CredentialStore.open(Path(sys.argv[1]), sys.argv[2]) as s:\n"
        "    s.rekey(sys.argv[3])\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", rekey, str(isolated_home / "credentials.enc"), PASSWORD, "x" * 12],
        capture_output=True,
        text=True,
        check=False,
        env=cli.env,
    )
    assert r.returncode == 0, r.stderr
    after = code_of(cli)
    assert after.returncode == 3 and "locked" in after.stderr
    wait_until_gone(int(str(data["pid"])))


def test_the_password_from_the_environment_comes_before_the_session(cli: Cli) -> None:
    cli.unlock()
    r = cli("request", "t", "--action", "code", password="not the password")
    assert r.returncode == 3 and "wrong password" in r.stderr


def test_unlock_checks_the_password_and_starts_nothing_when_it_is_wrong(cli: Cli) -> None:
    r = cli("unlock", "--json", password="not the password")
    assert r.returncode == 3
    assert json.loads(r.stdout)["error"]["type"] == "WrongPasswordError"
    assert cli.status()["unlocked"] is False


def test_unlocking_again_replaces_the_session(cli: Cli) -> None:
    first = cli.unlock("--for", "1h")
    second = cli.unlock("--for", "5m")
    wait_until_gone(int(str(first["pid"])))
    status = cli.status()
    assert status["pid"] == second["pid"] and int(str(status["seconds_left"])) <= 300


@pytest.mark.parametrize(
    ("duration", "message"),
    [
        ("15", None),
        ("2h30m", None),
        ("soon", "expected a duration such as 30s, 15m"),
        ("0s", "from 1 second to 7 days"),
        ("8d", "from 1 second to 7 days"),
        ("10m5", "expected a duration"),
    ],
)
def test_durations(cli: Cli, duration: str, message: str | None) -> None:
    r = cli("unlock", "--for", duration, password=PASSWORD)
    if message is None:
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 2 and message in r.stderr
        assert cli.status()["unlocked"] is False


def test_status_takes_no_other_options(cli: Cli) -> None:
    r = cli("unlock", "--status", "--remember")
    assert r.returncode == 2 and "--status only reports" in r.stderr
    r = cli("lock", "--status", "--forget")
    assert r.returncode == 2 and "--status only reports" in r.stderr


def test_lock_when_nothing_is_unlocked_says_so(cli: Cli) -> None:
    r = cli("lock")
    assert r.returncode == 0 and "no session was running" in r.stderr
    r = cli("lock", "--json")
    assert json.loads(r.stdout) == {"locked": True, "was_unlocked": False, "forgot_password": False}


def test_unlock_and_lock_are_audited(cli: Cli) -> None:
    cli.unlock()
    assert cli("lock").returncode == 0
    r = cli("audit", "--json")
    assert r.returncode == 0, r.stderr
    actions = [rec["action"] for rec in json.loads(r.stdout)]
    assert actions[-2:] == ["session.unlock", "session.lock"]


def test_a_stale_socket_of_a_dead_agent_is_replaced(cli: Cli) -> None:
    data = cli.unlock()
    pid = int(str(data["pid"]))
    os.kill(pid, signal.SIGKILL)  # no chance to remove its socket
    wait_until_gone(pid)
    sock = Path(str(data["socket"]))
    assert sock.exists()
    r = code_of(cli)
    assert r.returncode == 3 and "run `vultrino unlock` first" in r.stderr
    cli.unlock()
    assert code_of(cli).returncode == 0


def test_sigterm_ends_the_session(cli: Cli) -> None:
    data = cli.unlock()
    pid = int(str(data["pid"]))
    os.kill(pid, signal.SIGTERM)
    wait_until_gone(pid)
    assert not Path(str(data["socket"])).exists()
    assert cli.status()["unlocked"] is False


def test_a_second_home_has_its_own_session(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "other-home"
    r = cli("--home", str(other), "init", password=PASSWORD)
    assert r.returncode == 0, r.stderr
    cli.unlock()
    r = cli("--home", str(other), "list")
    assert r.returncode == 3 and "locked" in r.stderr
    assert code_of(cli).returncode == 0


def test_the_socket_path_is_the_same_for_every_spelling_of_the_home(
    cli: Cli, isolated_home: Path, tmp_path: Path
) -> None:
    link = tmp_path / "home-link"
    link.symlink_to(isolated_home)
    cli.unlock()
    r = cli("--home", str(link), "request", "t", "--action", "code")
    assert r.returncode == 0, r.stderr


def test_unlock_needs_the_keyring_extra_or_a_backend_for_remember(
    cli: Cli, isolated_home: Path, tmp_path: Path
) -> None:
    """No usable backend, for real: keyring's own `fail` backend, which it falls back to
    where there is no Secret Service, KWallet or Keychain."""
    cli.env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    cli.env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    r = cli("unlock", "--remember", password=PASSWORD)
    assert r.returncode == 3
    assert "no usable OS keyring backend" in r.stderr
    assert "keyring.backends.fail.Keyring" in r.stderr
    assert not (isolated_home / "keyring.json").exists()
    assert cli.status()["unlocked"] is False  # nothing started either


# --- the opted-in OS keyring, on a real backend --------------------------------------------


@pytest.fixture
def keyring_env(cli: Cli, tmp_path: Path) -> Iterator[dict[str, str]]:
    """keyrings.alt's file backend: a real keyring backend that runs offline (its file lives
    under this test's XDG_DATA_HOME, never a real user's)."""
    pytest.importorskip("keyrings.alt.file")
    env = {
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    cli.env.update(env)
    yield env


def keyring_entry(env: dict[str, str], account: str) -> str | None:
    """What the keyring holds for the home, read by keyring itself in a fresh process."""
    probe = (
        "import sys, keyring\n"
        "v = keyring.get_password('vultrino', sys.argv[1])\n"
        "sys.stdout.write('<none>' if v is None else v)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe, account],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return None if r.stdout == "<none>" else r.stdout


def test_a_remembered_password_opens_the_store_until_forgotten(
    cli: Cli, keyring_env: dict[str, str], isolated_home: Path, tmp_path: Path
) -> None:
    account = str(isolated_home.resolve())
    r = cli("unlock", "--remember", "--for", "1m", password=PASSWORD)
    assert r.returncode == 0, r.stderr
    assert "kept in the OS keyring (keyrings.alt.file.PlaintextKeyring)" in r.stderr
    assert keyring_entry(keyring_env, account) == PASSWORD
    assert stat.S_IMODE((isolated_home / "keyring.json").stat().st_mode) == 0o600
    assert cli.status()["password_in_keyring"] is True
    assert cli("lock").returncode == 0

    r = code_of(cli)  # locked, no password anywhere but the keyring
    assert r.returncode == 0, r.stderr

    new = tmp_path / "new-password"
    new.write_text(NEW_PASSWORD)
    new.chmod(0o600)
    r = cli("rekey", "--new-password-file", str(new))  # the keyring gives the current one
    assert r.returncode == 0, r.stderr
    assert keyring_entry(keyring_env, account) == NEW_PASSWORD
    assert code_of(cli).returncode == 0

    r = cli("lock", "--forget")
    assert r.returncode == 0 and "removed the store password" in r.stderr
    assert keyring_entry(keyring_env, account) is None
    assert not (isolated_home / "keyring.json").exists()
    r = code_of(cli)
    assert r.returncode == 3 and "run `vultrino unlock` first" in r.stderr


def test_a_wrong_password_in_the_keyring_is_a_clear_error(
    cli: Cli, keyring_env: dict[str, str], isolated_home: Path
) -> None:
    assert cli("unlock", "--remember", password=PASSWORD).returncode == 0
    assert cli("lock").returncode == 0
    probe = "import sys, keyring; keyring.set_password('vultrino', sys.argv[1], 'stale')"
    subprocess.run(
        [sys.executable, "-c", probe, str(isolated_home.resolve())],
        env={**os.environ, **keyring_env},
        check=True,
    )
    r = code_of(cli)
    assert r.returncode == 3
    assert "the password kept in the OS keyring" in r.stderr
    assert "vultrino unlock --remember" in r.stderr


def test_the_keyring_is_not_read_unless_opted_in(cli: Cli, isolated_home: Path) -> None:
    """A keyring entry made by someone else is not used: only `--remember` opts in."""
    cli.env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"  # would fail if read
    r = code_of(cli)
    assert r.returncode == 3 and "run `vultrino unlock` first" in r.stderr
    assert "keyring" not in r.stderr
    r = cli("lock", "--forget")  # forgetting needs the keyring: says why it cannot
    assert r.returncode == 3 and "no usable OS keyring backend" in r.stderr


# --- the prompt: first, and three tries ------------------------------------------------------


class Terminal:
    """`python -m vultrino ARGS` on a fresh pty (its controlling terminal), no password in
    its environment; the test is the user at the master side."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        import fcntl
        import termios

        self.master, slave = os.openpty()

        def controlling_tty() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vultrino", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=controlling_tty,
        )
        os.close(slave)
        self.seen = ""
        self.pos = 0

    def _read(self, timeout: float) -> bool:
        import select

        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        if not chunk:
            return False
        self.seen += chunk.decode("utf-8", "replace")
        return True

    def expect(self, pattern: str) -> str:
        """Read until ``pattern`` appears after the last match; what came before it."""

        deadline = time.monotonic() + HANG_GUARD_S
        while (found := re.search(pattern, self.seen[self.pos :])) is None:
            if not self._read(max(deadline - time.monotonic(), 0)):
                raise AssertionError(f"no {pattern!r} on the terminal; it shows:\n{self.seen}")
        before = self.seen[self.pos : self.pos + found.start()]
        self.pos += found.end()
        return before

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def finish(self) -> int:
        try:
            code = self.proc.wait(timeout=HANG_GUARD_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        while self._read(0):
            pass
        os.close(self.master)
        return code


SECRET_PROMPT = "Secret (base32)"  # the totp plugin's label of its secret field
ADD_TOTP = (
    "add", "--alias", "t2", "--type", "plugin:totp:totp",
    "--field", "digits=6", "--field", "period=30", "--field", "algorithm=SHA1",
)  # fmt: skip


def test_two_wrong_passwords_then_the_right_one(cli: Cli) -> None:
    t = Terminal(cli.env, "request", "t", "--action", "code", "--field", "code")
    t.expect("Store password: ")
    t.type("wrong once\n")
    t.expect(r"wrong password, try again \(2 left\)\s+Store password: ")
    t.type("wrong twice\n")
    t.expect(r"wrong password, try again \(1 left\)\s+Store password: ")
    t.type(PASSWORD + "\n")
    t.expect(r"\d{6}")
    assert t.finish() == 0, t.seen
    assert "wrong once" not in t.seen and PASSWORD not in t.seen  # never echoed


def test_three_wrong_passwords_fail_before_any_field_is_asked(
    cli: Cli, isolated_home: Path
) -> None:
    store = isolated_home / "credentials.enc"
    before = store.read_bytes()
    t = Terminal(cli.env, *ADD_TOTP)
    for _ in range(3):
        t.expect("Store password: ")  # typed before the prompt, getpass would discard it
        t.type("not it\n")
    code = t.finish()
    assert code == 3, t.seen  # WrongPasswordError's exit code
    assert "wrong password, or the file was modified" in t.seen
    assert SECRET_PROMPT not in t.seen  # no field was asked
    assert store.read_bytes() == before  # nothing written
    r = cli("list", "--json", password=PASSWORD)
    assert [c["alias"] for c in json.loads(r.stdout)] == ["t"]


def test_interactive_add_asks_for_the_password_first(cli: Cli) -> None:
    t = Terminal(cli.env, *ADD_TOTP)
    assert SECRET_PROMPT not in t.expect("Store password: ")
    t.type("typo\n")
    t.expect(r"wrong password, try again \(2 left\)\s+Store password: ")
    t.type(PASSWORD + "\n")
    t.expect(re.escape(SECRET_PROMPT) + r"[^\n]*:")
    t.type(TOTP_SECRET + "\n")
    assert t.finish() == 0, t.seen
    assert "added t2" in t.seen
    assert cli("request", "t2", "--action", "code", password=PASSWORD).returncode == 0


def test_interactive_add_while_unlocked_asks_no_password(cli: Cli) -> None:
    cli.unlock()
    t = Terminal(cli.env, *ADD_TOTP)
    t.expect(re.escape(SECRET_PROMPT) + r"[^\n]*:")
    t.type(TOTP_SECRET + "\n")
    assert t.finish() == 0, t.seen
    assert "Store password" not in t.seen
    assert "added t2" in t.seen


def test_unlock_asks_on_the_terminal(cli: Cli) -> None:
    t = Terminal(cli.env, "unlock", "--for", "1m", "--json")
    t.expect("Store password: ")
    t.type(PASSWORD + "\n")
    t.expect(r"\}")
    assert t.finish() == 0, t.seen
    data = json.loads(t.seen[t.seen.index("{") :])
    cli.pids.append(int(data["pid"]))
    assert data["unlocked"] is True
    assert code_of(cli).returncode == 0


def test_the_first_api_key_does_not_end_the_session(cli: Cli) -> None:
    # The first API key or role writes the store as format 2: the same password, salt and KDF,
    # so the same key. The session must go on (the format byte is not part of the binding).
    data = cli.unlock("--for", "10m")
    made = cli("key", "create", "ci", "--role", "read-only")
    assert made.returncode == 0, made.stderr
    assert cli.status()["unlocked"] is True and cli.status()["pid"] == data["pid"]
    r = code_of(cli)
    assert r.returncode == 0, r.stderr
