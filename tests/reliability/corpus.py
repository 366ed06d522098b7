"""The hostile plugin corpus: what each guest does, what the host must answer, and how to run
every guest through the three ways in (the Python API, the CLI, MCP).

Each ``tests/fixtures/hostile/<stem>.wat`` is one guest. ABI 2 guests pull in ``_prelude.wat``
(allocator, dispatch) with a ``;;@prelude`` line and define only ``$misbehave``; every guest is
installed as a real plugin directory (``plugin.toml.in`` filled in, the module compiled) named
``hostile-<stem>``, with two actions: ``misbehave`` does the one wrong thing, ``ping`` answers
with the request it received. After each misbehaviour the same facade, server or installed
plugin must answer ``ping`` correctly.

:data:`EXPECT` says, for every guest, what a correct host does. :func:`judge` turns a
:class:`Trial` (what happened) into a list of problems; the tests assert it is empty and
``scripts/evidence.py`` counts the results. Nothing here is mocked: the plugins run on the
configured engine under real limits, the CLI is ``vultrino.cli.app`` (in-process or a real
``python -m vultrino`` process), and MCP is a real ``python -m vultrino mcp`` process spoken to
over raw JSON-RPC.
"""

from __future__ import annotations

import ast
import base64
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import wasmtime

from tests.leakcheck import LeakCheck
from vultrino import errors

MIB = 1024 * 1024
HOSTILE = Path(__file__).resolve().parents[1] / "fixtures" / "hostile"
PRELUDE = ";;@prelude"

#: Small limits keep the corpus fast: a 1 s deadline, a 32 MiB memory cap, a 1 MiB output cap.
CONFIG = "[limits]\ndeadline_s = 1\nmemory_mb = 32\noutput_mb = 1\n"
PASSWORD = "hostile-corpus store password 4c1d9e"
PING_MESSAGE = "still there?"
#: The misbehave request of ``bad_realloc`` must be over 256 bytes.
PAD = "p" * 300
#: How many growing answers the long-lived surfaces ask for before giving up.
MAX_GROWTH_CALLS = 120
#: A guard against a hung process, never a performance assertion.
HANG_GUARD_S = 120.0
#: How much a host's resident memory may grow while it serves one hostile call: every instance
#: of the plugin at the memory cap with full tables (4 x (32 + 2) MiB under CONFIG), plus 64 MiB
#: for everything the host does around the call (compiling, decoding an answer of at most 1 MiB,
#: scrubbing it). A bound from the documented limits, not a measurement target: a guest that made
#: the host allocate outside its sandbox (2 GiB for a bad random_get pointer) exceeds it at once.
HOST_MEMORY_BOUND_MIB = 4 * (32 + 2) + 64


# --- expectations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """What a correct host does with one guest.

    ``refused``: install must fail with this error class and message fragment. Otherwise
    ``errors`` lists the acceptable error classes of ``misbehave`` (empty: it must succeed,
    and ``check`` inspects the result); ``fragment`` must appear in the error message (one of
    its ``|``-separated alternatives: the engines word some errors differently);
    ``may_succeed`` accepts either an answer or one of ``errors`` (floods that a fast machine
    finishes within the deadline and a slow one does not); ``grows`` marks the guest whose
    answers grow from call to call.
    """

    errors: tuple[str, ...] = ()
    fragment: str = ""
    refused: tuple[str, str] | None = None
    may_succeed: bool = False
    check: Callable[[Any, str], list[str]] | None = None
    grows: bool = False


def _all_refused(result: Any, _: str) -> list[str]:
    if not isinstance(result, list) or len(result) != 6:
        return [f"expected six WASI errnos, got {result!r:.200}"]
    return [f"WASI call #{i} succeeded (errno 0)" for i, e in enumerate(result) if e == 0]


def _empty_environment(result: Any, _: str) -> list[str]:
    if isinstance(result, list) and len(result) == 4 and isinstance(result[3], str):
        result = [*result[:3], _json_bytes(result[3])]
    if result != [0, 0, 0, b""]:
        return [f"the guest saw an environment or arguments: {result!r:.300}"]
    return []


def _json_bytes(text: str) -> bytes | str:
    """Bytes as a JSON surface carries them: MCP as base64, the CLI as Python's ``b'...'``."""
    if text.startswith(("b'", 'b"')):
        value = ast.literal_eval(text)
        return value if isinstance(value, bytes) else text
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return text


def _echo_of_misbehave(result: Any, alias: str) -> list[str]:
    expected = echo(alias, "misbehave", {})
    return [] if result == expected else [f"expected {expected!r}, got {result!r:.300}"]


def _logged(result: Any, _: str) -> list[str]:
    return [] if result == "logged" else [f"expected 'logged', got {result!r:.200}"]


def _any_map(result: Any, _: str) -> list[str]:
    return [] if isinstance(result, dict) else [f"expected a map, got {result!r:.200}"]


def _random_errnos(result: Any, _: str) -> list[str]:
    """EFAULT (21) for the three ranges outside memory, success for the one inside."""
    return [] if result == [21, 21, 21, 0] else [f"expected [21, 21, 21, 0], got {result!r:.200}"]


def _hex_scrubbed(result: Any, _: str) -> list[str]:
    if not isinstance(result, str) or "[REDACTED]" not in result:
        return [f"expected a hex string with the secret scrubbed, got {result!r:.200}"]
    return []


def _did_not_sleep(result: Any, _: str) -> list[str]:
    """A WASI errno other than 0: the host gave the guest no clock wait (ENOSYS). MCP carries
    the number as text."""
    if isinstance(result, str) and result.isdigit():
        result = int(result)
    if not isinstance(result, int) or result == 0:
        return [f"poll_oneoff slept (or answered oddly): {result!r:.100}"]
    return []


_TRAP = ("PluginTrapError",)
_ABI = ("PluginABIError",)

EXPECT: dict[str, Expect] = {
    "endless_loop": Expect(("PluginTimeoutError",), "deadline"),
    "memory_bomb": Expect(("PluginMemoryError",), "memory"),
    "huge_allocation": Expect(("PluginTrapError", "PluginMemoryError"), "trapped|memory"),
    "deep_recursion": Expect(_TRAP, "stack"),
    "trap_unreachable": Expect(_TRAP, "unreachable"),
    "divide_by_zero": Expect(_TRAP, "trapped"),
    "proc_exit": Expect(_TRAP, "proc_exit(3)|exited with code 3"),
    "panic_message": Expect(_TRAP, "trapped"),
    "bad_result_pointer": Expect(_ABI, "outside"),
    "bad_retptr": Expect(_ABI, "outside"),
    "bad_realloc": Expect(_ABI, "cabi_realloc"),
    "log_bad_pointer": Expect(_ABI, "outside memory"),
    "not_msgpack": Expect(_ABI, "messagepack"),
    "not_a_response": Expect(_ABI, "answer is not"),
    "bad_error_code": Expect(_ABI, "bogus"),
    "oversized_result": Expect(_ABI, "output cap"),
    "abi1_bad_json": Expect(_ABI, "json"),
    "growing_result": Expect(_ABI, "output cap", grows=True),
    "error_secret": Expect(("ActionFailedError",), "redacted"),
    "unknown_import": Expect(refused=("ModuleError", "get_secret")),
    "missing_export": Expect(refused=("ModuleError", "cabi_realloc")),
    "huge_initial_memory": Expect(refused=("ModuleError", "memory")),
    "many_tables": Expect(refused=("ModuleError", "table")),
    "table_bomb": Expect(check=_echo_of_misbehave),
    "start_loops": Expect(refused=("ModuleError", "deadline")),
    "simd_signature": Expect(refused=("ModuleError", "v128")),
    "gc_signature": Expect(refused=("ModuleError", "GC")),
    "wasi_externref": Expect(refused=("ModuleError", "externref")),
    "start_proc_exit": Expect(refused=("ModuleError", "proc_exit(4)|exited with code 4")),
    "random_bad_pointer": Expect(check=_random_errnos),
    "sleep_poll_oneoff": Expect(check=_did_not_sleep),
    "log_raw_request": Expect(check=_logged),
    "remembers_credential": Expect(check=_echo_of_misbehave),
    "deep_nesting": Expect(_ABI, "levels deep"),
    "empty_map_flood": Expect(_ABI, "values"),
    "wasi_file_open": Expect(check=_all_refused),
    "env_read": Expect(check=_empty_environment),
    "stdout_write": Expect(check=_echo_of_misbehave),
    "invalid_utf8_log": Expect(check=_echo_of_misbehave),
    "log_secret": Expect(check=_logged),
    "result_secret_hex": Expect(check=_hex_scrubbed),
    "odd_result_types": Expect(check=_any_map),
    "log_flood": Expect(("PluginTimeoutError",), "deadline", may_succeed=True),
    "stdout_flood": Expect(("PluginTimeoutError",), "deadline", may_succeed=True),
    "newline_flood": Expect(("PluginTimeoutError",), "deadline", may_succeed=True),
}

#: Guests that cost about a deadline per call; the CI-sized in-process CLI run leaves them to
#: the API and MCP runs (and the slow full CLI run).
EXPENSIVE = frozenset({"endless_loop", "log_flood", "stdout_flood", "newline_flood"})


#: Guests whose credential's secret spans several lines.
MULTILINE_SECRET = frozenset({"log_raw_request"})


@dataclass(frozen=True)
class Guest:
    """One hostile guest, as installed: ``hostile-<stem>`` with tools ``h_<stem>_*``."""

    stem: str
    description: str
    expect: Expect

    @property
    def plugin(self) -> str:
        return "hostile-" + self.stem.replace("_", "-")

    @property
    def alias(self) -> str:
        return f"{self.plugin}-key"

    @property
    def tool(self) -> str:
        return f"h_{self.stem}"

    @property
    def secret(self) -> str:
        """The secret field value of this guest's credential (distinct per guest); the guests
        in :data:`MULTILINE_SECRET` get one that spans three lines, as a PEM key does."""
        secret = f"sk-{self.stem.replace('_', '-')}-Q7z9Xw2Lp4Vb"
        if self.stem in MULTILINE_SECRET:
            return f"-----BEGIN TEST KEY-----\n{secret}\nline-three-{secret[::-1]}\n"
        return secret

    @property
    def module(self) -> str:
        return f"{self.stem}.wasm"

    @property
    def refused(self) -> bool:
        return self.expect.refused is not None

    @property
    def misbehave_params(self) -> dict[str, Any]:
        return {"pad": PAD} if self.stem == "bad_realloc" else {}

    @property
    def pong(self) -> Any:
        """What ``ping`` must answer (given the alias): ABI 1 guests answer a fixed string."""
        return "pong" if self.stem.startswith("abi1_") else echo(self.alias, "ping", PING_PARAMS)


PING_PARAMS = {"message": PING_MESSAGE}


def echo(alias: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
    """The request an echoing guest sends back, after the host scrubbed its secret."""
    return {
        "action": action,
        "params": params,
        "credential": {"alias": alias, "type": "key", "fields": {"token": "[REDACTED]"}},
    }


def guests() -> list[Guest]:
    """Every guest in ``tests/fixtures/hostile``, in name order. A WAT file without an
    expectation (or an expectation without a file) is an error: nothing goes untested."""
    stems = sorted(p.stem for p in HOSTILE.glob("*.wat") if not p.name.startswith("_"))
    if set(stems) != set(EXPECT):
        raise AssertionError(
            f"WAT files without expectations: {sorted(set(stems) - set(EXPECT))}; "
            f"expectations without WAT files: {sorted(set(EXPECT) - set(stems))}"
        )
    out = []
    for stem in stems:
        first = (HOSTILE / f"{stem}.wat").read_text(encoding="utf-8").splitlines()[0]
        out.append(Guest(stem, first.removeprefix(";;").strip(), EXPECT[stem]))
    return out


def by_stem(stem: str) -> Guest:
    return next(g for g in guests() if g.stem == stem)


def wat_source(stem: str) -> str:
    text = (HOSTILE / f"{stem}.wat").read_text(encoding="utf-8")
    if PRELUDE in text:
        text = text.replace(PRELUDE, (HOSTILE / "_prelude.wat").read_text(encoding="utf-8"))
    return text


def build_plugin(guest: Guest, dest: Path) -> Path:
    """A plugin source directory for ``guest`` at ``dest/<plugin>``: manifest and module."""
    d = dest / guest.plugin
    d.mkdir(parents=True, exist_ok=True)
    manifest = (HOSTILE / "plugin.toml.in").read_text(encoding="utf-8")
    for key, value in (("NAME", guest.plugin), ("MODULE", guest.module), ("TOOL", guest.tool)):
        manifest = manifest.replace(f"@{key}@", value)
    (d / "plugin.toml").write_text(manifest, encoding="utf-8")
    (d / guest.module).write_bytes(bytes(wasmtime.wat2wasm(wat_source(guest.stem))))
    return d


# --- the home ----------------------------------------------------------------------------------


@dataclass
class CorpusHome:
    """A home with every installable guest installed (by the real installer) and every refused
    one copied into ``plugins/`` by hand, as a user bypassing the installer would; one
    credential per guest. ``sources`` holds the plugin source directories."""

    root: Path
    sources: Path
    password_file: Path
    guests: list[Guest]
    install_errors: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def secrets(self) -> list[str]:
        return [PASSWORD, *(g.secret for g in self.guests)]

    def env(self) -> dict[str, str]:
        """The environment of a CLI or MCP process on this home."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
        env["VULTRINO_HOME"] = str(self.root)
        env["VULTRINO_PASSWORD_FILE"] = str(self.password_file)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def open(self) -> Any:
        from vultrino.core import Vultrino

        return Vultrino.open(self.root, PASSWORD)


def make_home(
    base: Path, selected: Sequence[Guest] | None = None, *, engine: str | None = None
) -> CorpusHome:
    """Build the corpus home under ``base`` (``base/home``, sources in ``base/src``).

    ``engine`` is written into the home's config.toml, so every surface — this process, CLI
    processes, the MCP server — runs the guests on it (default: Vultrino's default engine).
    """
    import shutil

    from vultrino.core import Vultrino
    from vultrino.store import KdfParams

    chosen = list(selected) if selected is not None else guests()
    root, sources = base / "home", base / "src"
    password_file = base / "password"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(PASSWORD + "\n")
    home = CorpusHome(root, sources, password_file, chosen)
    # Vultrino creates the home itself (so with its own modes); the config comes right after.
    Vultrino.init(root, PASSWORD, kdf=KdfParams.minimal()).close()
    config = (f'engine = "{engine}"\n' if engine else "") + CONFIG
    (root / "config.toml").write_text(config, encoding="utf-8")
    with Vultrino.open(root, PASSWORD) as v:
        for g in chosen:
            src = build_plugin(g, sources)
            try:
                v.install_plugin(str(src))
            except errors.VultrinoError as exc:
                home.install_errors[g.stem] = (type(exc).__name__, str(exc))
                shutil.copytree(src, root / "plugins" / g.plugin)
    with Vultrino.open(root, PASSWORD) as v:  # a fresh facade sees the hand-copied plugins
        for g in chosen:
            v.add_credential(g.alias, f"plugin:{g.plugin}:key", {"token": g.secret})
    return home


# --- trials ------------------------------------------------------------------------------------


@dataclass
class Trial:
    """What happened when one guest met one surface."""

    guest: str
    surface: str
    refused: tuple[str, str] | None = None  # (error class, message) of the install attempt
    error: tuple[str, str] | None = None  # (error class or "", message) of misbehave
    result: Any = None
    sizes: list[int] = field(default_factory=list)  # growing_result: answer sizes, in order
    survived: bool = False
    usable: bool | None = None  # None: not applicable (refused at install)
    seconds: float = 0.0
    #: How much the host's resident memory grew during misbehave (peak minus the RSS before
    #: it; for a CLI process, its peak minus the peak of the same plugin's ping process), in
    #: MiB; None where it could not be measured.
    host_growth_mib: float | None = None
    notes: list[str] = field(default_factory=list)  # surface-specific problems
    #: Everything the trial saw (results, errors, stdout, stderr, plugin log lines), for the
    #: leak scanner.
    outputs: list[tuple[str, Any]] = field(default_factory=list)

    def scan(self, check: LeakCheck) -> list[str]:
        """Feed every output to ``check``; returns the findings about this trial."""
        before = len(check.findings)
        for where, data in self.outputs:
            text = data if isinstance(data, (str, bytes)) else repr(data)
            check.scan(text, f"{self.surface}/{self.guest}: {where}")
        return check.findings[before:]


def judge(guest: Guest, trial: Trial) -> list[str]:
    """Every way ``trial`` falls short of :data:`EXPECT`; empty when the host did right."""
    ex = guest.expect
    problems = list(trial.notes)
    if not trial.survived:
        problems.append("the host did not survive")
    if trial.host_growth_mib is not None and trial.host_growth_mib > HOST_MEMORY_BOUND_MIB:
        problems.append(
            f"the host's memory grew {trial.host_growth_mib:.0f} MiB during the call, past the "
            f"{HOST_MEMORY_BOUND_MIB} MiB the limits allow"
        )
    if ex.refused is not None:
        cls, fragment = ex.refused
        if trial.refused is None:
            problems.append("the install was not refused")
        else:
            problems += _error_problems(guest, trial.refused, (cls,), fragment, trial.surface)
        if trial.surface != "mcp":  # over MCP, `refused` already is the first call's error
            if trial.error is None:
                problems.append("the hand-copied module answered its first call")
            else:
                problems += _error_problems(guest, trial.error, (cls,), fragment, trial.surface)
        return problems
    if trial.refused is not None:
        problems.append(f"the install was refused: {trial.refused}")
    if ex.grows and trial.surface.startswith("cli"):
        expected_errors: tuple[str, ...] = ()  # a fresh process every call: nothing grows
    elif ex.grows:
        expected_errors = ex.errors
        problems += _growth_problems(trial.sizes)
    else:
        expected_errors = ex.errors
    if trial.error is None:
        if expected_errors and not ex.may_succeed:
            problems.append(f"misbehave answered {trial.result!r:.200} instead of failing")
        elif ex.check is not None:
            problems += ex.check(trial.result, guest.alias)
    elif not expected_errors:
        problems.append(f"misbehave failed: {trial.error[0]}: {trial.error[1]:.300}")
    else:
        problems += _error_problems(guest, trial.error, expected_errors, ex.fragment, trial.surface)
    if trial.usable is not True:
        problems.append("ping did not answer correctly afterwards")
    return problems


def _error_problems(
    guest: Guest, error: tuple[str, str], classes: tuple[str, ...], fragment: str, surface: str
) -> list[str]:
    cls, message = error
    problems = []
    if cls and cls not in classes:  # MCP results carry no class, only the message
        problems.append(f"expected {' or '.join(classes)}, got {cls}: {message:.300}")
    if guest.plugin not in message:
        problems.append(f"the error does not name the plugin: {message:.300}")
    if not any(f.lower() in message.lower() for f in fragment.split("|")):
        problems.append(f"the error does not say {fragment!r}: {message:.300}")
    if "Traceback" in message:
        problems.append(f"a traceback reached the {surface} user")
    return problems


def _growth_problems(sizes: list[int]) -> list[str]:
    """The answers grew (each the first one times a power of two: an instance keeps its state;
    a thread-affine engine gives each calling thread its own instance, so several sequences
    may interleave) until the output cap stopped them."""
    if len(sizes) < 2 or max(sizes) <= sizes[0]:
        return [f"the answers did not grow across calls (sizes {sizes})"]
    if any(n % sizes[0] or (n // sizes[0]) & (n // sizes[0] - 1) for n in sizes):
        return [f"answer sizes that no doubling explains: {sizes}"]
    return []
