"""The store across real processes: concurrent writers, SIGKILL mid-write, resource failures.

Crash safety (DESIGN.md 4): a process killed at any instant leaves either the old or the new
store, and every write it acknowledged (add() returned) is in the store afterwards.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from vultrino.errors import StoreLockedError
from vultrino.store import Credential, CredentialStore, KdfParams

PASSWORD = "multi-process password"
MIN = KdfParams.minimal()

# A child that opens the store, says "ready", waits for "go" on stdin, then runs its job.
# The password travels in the environment, never on the command line.
CHILD_PRELUDE = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from vultrino.store import Credential, CredentialStore
    store = CredentialStore.open(Path(sys.argv[1]), os.environ["STORE_TEST_PASSWORD"])
    tag, n = sys.argv[2], int(sys.argv[3])
    print("ready", flush=True)
    sys.stdin.readline()
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["STORE_TEST_PASSWORD"] = PASSWORD
    return env


def _spawn(script: str, path: Path, tag: str, n: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(script), str(path), tag, str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _run_together(procs: list[subprocess.Popen[str]]) -> list[str]:
    """Wait until every child is ready, release them at once, collect their stdout."""
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "ready\n", proc.communicate()[1]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(out)
    return outputs


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "home" / "credentials.enc"
    CredentialStore.create(path, PASSWORD, MIN).close()
    return path


def _aliases(path: Path) -> set[str]:
    with CredentialStore.open(path, PASSWORD) as store:
        return {c.alias for c in store.credentials()}


def _temp_files(path: Path) -> list[str]:
    return [n for n in os.listdir(path.parent) if n.endswith(".tmp")]


# --- concurrency -----------------------------------------------------------------------------


def test_concurrent_adders_lose_nothing(store_path: Path) -> None:
    k, n = 4, 25
    script = """
        for i in range(n):
            store.add(Credential(f"{tag}-{i}", "api_key", {"key": f"secret-{tag}-{i}"}))
    """
    _run_together([_spawn(script, store_path, f"p{p}", n) for p in range(k)])
    expected = {f"p{p}-{i}" for p in range(k) for i in range(n)}
    assert _aliases(store_path) == expected
    with CredentialStore.open(store_path, PASSWORD) as store:
        assert store.get("p3-24").fields == {"key": "secret-p3-24"}
    assert _temp_files(store_path) == []


def test_concurrent_add_remove_and_state_updates(store_path: Path) -> None:
    k, n = 3, 20
    script = """
        for i in range(n):
            store.add(Credential(f"{tag}-{i}", "api_key", {"key": "v"}))
        for i in range(n):
            if i % 2 == 0:
                store.remove(f"{tag}-{i}")
            else:
                store.update_state(f"{tag}-{i}", {"owner": tag, "i": i})
    """
    _run_together([_spawn(script, store_path, f"w{p}", n) for p in range(k)])
    with CredentialStore.open(store_path, PASSWORD) as store:
        creds = store.credentials()
    assert {c.alias for c in creds} == {f"w{p}-{i}" for p in range(k) for i in range(1, n, 2)}
    for cred in creds:
        owner, index = cred.alias.split("-")
        assert cred.state == {"owner": owner, "i": int(index)}


def test_readers_never_see_a_torn_store_while_writers_write(store_path: Path) -> None:
    writer = """
        for i in range(n):
            store.add(Credential(f"{tag}-{i}", "api_key", {"key": "x" * 2000}))
    """
    reader = """
        seen = 0
        for _ in range(n):
            now = len(store.credentials())
            assert now >= seen, (now, seen)
            seen = now
        print(seen)
    """
    outputs = _run_together(
        [_spawn(writer, store_path, "a", 60), _spawn(reader, store_path, "r", 300)]
    )
    assert int(outputs[1].split()[-1]) <= 60
    assert len(_aliases(store_path)) == 60


def test_a_lock_held_by_another_process_times_out_then_frees_on_its_death(
    store_path: Path,
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, time
                from pathlib import Path
                from vultrino.store._lock import FileLock, lock_path_for
                with FileLock(lock_path_for(Path(sys.argv[1])), timeout=5):
                    print("locked", flush=True)
                    time.sleep(60)
                """
            ),
            str(store_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"
        with CredentialStore.open(store_path, PASSWORD, lock_timeout=0.3) as store:
            with pytest.raises(StoreLockedError, match="another process"):
                store.add(Credential("a", "api_key", {}))
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=10)
            store.add(Credential("a", "api_key", {}))  # the kernel released the dead holder's lock
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()
    assert _aliases(store_path) == {"a"}


# --- crash safety: SIGKILL at random moments -------------------------------------------------

FORK_ROUNDS = 200
SUBPROCESS_ROUNDS = 10
SEED = 20240531


def _writer(path: Path, prefix: str, ack_fd: int) -> None:
    """Forked child: add credentials forever, acknowledging each one after add() returns."""
    try:
        store = CredentialStore.open(path, PASSWORD)
        i = 0
        while True:
            alias = f"{prefix}-{i}"
            store.add(Credential(alias, "api_key", {"key": f"value-{alias}" * 20}))
            os.write(ack_fd, f"{alias}\n".encode())
            i += 1
    except BaseException as exc:
        os.write(ack_fd, f"ERROR {type(exc).__name__}: {exc}\n".encode())
    finally:
        os._exit(1)


def _read_lines(fd: int, count: int, timeout: float = 30.0) -> bytes:
    """Read from ``fd`` until ``count`` complete lines arrived (or EOF, or the timeout)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while buf.count(b"\n") < count:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
    return buf


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _check_round(path: Path, prefix: str, output: str, everything: set[str]) -> tuple[int, int]:
    """The store opens, holds every acknowledged alias, and nothing this round never tried."""
    lines = output.split("\n")[:-1]  # the last piece is empty or a partial line
    assert not any(line.startswith("ERROR") for line in lines), lines
    acked = set(lines)
    everything |= acked
    present = _aliases(path)
    assert everything <= present, sorted(everything - present)[:5]
    mine = {a for a in present if a.startswith(prefix + "-")}
    tried = {f"{prefix}-{i}" for i in range(len(acked) + 1)}
    assert mine <= tried, sorted(mine - tried)
    everything |= mine
    return len(acked), len(mine - acked)


def test_sigkill_at_random_moments_loses_no_acknowledged_write(store_path: Path) -> None:
    rng = random.Random(SEED)
    acknowledged: set[str] = set()  # acknowledged, or seen committed: must never disappear
    kills = acked_total = unacked_but_present = left_temp = 0

    # Most rounds fork the test process (milliseconds to start, so many kills fit in seconds).
    for round_no in range(FORK_ROUNDS):
        prefix = f"f{round_no}"
        read_fd, write_fd = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.close(read_fd)
            _writer(store_path, prefix, write_fd)
        os.close(write_fd)
        # Kill at a random moment: after 0-2 acknowledged writes, plus 0-30 ms.
        early = _read_lines(read_fd, rng.choice([0, 0, 1, 1, 2]))
        time.sleep(rng.uniform(0.0, 0.03))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        output = (early + _read_all(read_fd)).decode()
        os.close(read_fd)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, output
        kills += 1
        left_temp += bool(_temp_files(store_path))
        n_acked, n_extra = _check_round(store_path, prefix, output, acknowledged)
        acked_total += n_acked
        unacked_but_present += n_extra

    # A few rounds kill a freshly started interpreter, exactly as a user's process would die.
    script = """
        i = 0
        while True:
            store.add(Credential(f"{tag}-{i}", "api_key", {"key": "v" * 100}))
            print(f"{tag}-{i}", flush=True)
            i += 1
    """
    for round_no in range(SUBPROCESS_ROUNDS):
        prefix = f"s{round_no}"
        proc = _spawn(script, store_path, prefix, 0)
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "ready\n"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        early = "".join(proc.stdout.readline() for _ in range(rng.choice([0, 1, 2])))
        time.sleep(rng.uniform(0.0, 0.03))
        proc.send_signal(signal.SIGKILL)
        # Read the rest through the same buffered reader: communicate() reads the pipe
        # directly and would lose what readline() above had already buffered.
        proc.stdin.close()
        output = early + proc.stdout.read()
        proc.wait(timeout=30)
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        kills += 1
        left_temp += bool(_temp_files(store_path))
        n_acked, n_extra = _check_round(store_path, prefix, output, acknowledged)
        acked_total += n_acked
        unacked_but_present += n_extra

    assert kills >= 200
    assert acked_total > 0
    assert acked_total + unacked_but_present == len(acknowledged)
    # The next successful write sweeps any temp file a killed writer left behind.
    with CredentialStore.open(store_path, PASSWORD) as store:
        store.add(Credential("final", "api_key", {}))
    assert _temp_files(store_path) == []
    print(
        f"\nSIGKILL harness: {kills} kills, {acked_total} acknowledged writes all present, "
        f"{unacked_but_present} unacknowledged-but-committed writes, "
        f"{left_temp} kills left a temp file behind (swept by the next write)"
    )


# --- resource failures -----------------------------------------------------------------------


def _run_child(code: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(path)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )


def test_a_write_that_hits_the_file_size_limit_changes_nothing(store_path: Path) -> None:
    with CredentialStore.open(store_path, PASSWORD) as store:
        store.add(Credential("before", "api_key", {"key": "kept"}))
    before = store_path.read_bytes()
    result = _run_child(
        """
        import os, resource, signal, sys
        from pathlib import Path
        from vultrino.errors import StoreError
        from vultrino.store import Credential, CredentialStore
        store = CredentialStore.open(Path(sys.argv[1]), os.environ["STORE_TEST_PASSWORD"])
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
        try:
            store.add(Credential("huge", "api_key", {"key": "x" * 1_000_000}))
        except StoreError as exc:
            print(type(exc).__name__, exc)
        else:
            print("no error")
        """,
        store_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("StoreError cannot write"), result.stdout
    assert "the store is unchanged" in result.stdout
    assert store_path.read_bytes() == before
    assert _temp_files(store_path) == []
    assert _aliases(store_path) == {"before"}


def test_key_derivation_out_of_memory_is_a_store_error(tmp_path: Path) -> None:
    result = _run_child(
        """
        import resource, sys
        from pathlib import Path
        from vultrino.errors import StoreError
        from vultrino.store import CredentialStore, KdfParams
        resource.setrlimit(resource.RLIMIT_AS, (768 << 20, resource.RLIM_INFINITY))
        try:
            CredentialStore.create(Path(sys.argv[1]), "pw", KdfParams(1, 1 << 30))
        except StoreError as exc:
            print(type(exc).__name__, exc)
        else:
            print("no error")
        """,
        tmp_path / "h" / "credentials.enc",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("StoreError key derivation failed"), result.stdout
    assert not (tmp_path / "h" / "credentials.enc").exists()
