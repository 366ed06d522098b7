"""Red-team findings about inputs and what leaves the host, through the real CLI and MCP server.

* a secret that spans lines reached the plugin log: ``log`` escaped its newlines before the
  scrubber looked, and stderr was cut into lines, one fragment each;
* a plugin instance that kept credential A from an earlier call could hand it back during a call
  made with credential B (also when A's field is secret only by how A was stored);
* a secret typed on the command line (``--field key=VALUE``) gets a warning;
* an alias an agent makes up cannot bloat the audit log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.leakcheck import LeakCheck
from tests.reliability import corpus, surfaces
from vultrino.core import Vultrino
from vultrino.store import KdfParams


def _cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vultrino", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _fragments(secret: str) -> list[str]:
    return [line for line in secret.splitlines() if len(line.strip()) >= 4]


def test_multiline_secret_is_scrubbed_from_the_plugin_log_in_every_form(tmp_path: Path) -> None:
    """The guest logs its raw request through ``log`` and writes it to stderr. A real CLI
    process writes plugin log lines to the plugin's log file (``vultrino plugin logs``): no
    line of the three-line secret may be there, or in the CLI's output, raw or escaped."""
    guest = corpus.by_stem("log_raw_request")
    home = corpus.make_home(tmp_path, [guest])
    r = _cli(home.env(), "request", guest.alias, "--action", "misbehave", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "logged"
    logged = (home.root / "logs" / f"{guest.plugin}.log").read_text(encoding="utf-8")
    assert "[REDACTED]" in logged  # the log lines did reach the file, scrubbed
    shown = _cli(home.env(), "plugin", "logs", guest.plugin)
    assert shown.returncode == 0 and "[REDACTED]" in shown.stdout
    secret = guest.secret
    assert "\n" in secret
    from vultrino.runtime._logtext import escape_control

    for form in [secret, escape_control(secret), *_fragments(secret)]:
        for seen in (r.stderr, r.stdout, logged, shown.stdout):
            assert form not in seen, f"{form!r} leaked"
    check = LeakCheck()
    check.add(*home.secrets, *_fragments(secret))
    check.scan_all([("stdout", r.stdout), ("stderr", r.stderr)], home.root)
    check.assert_clean()


def test_secret_of_an_earlier_credential_is_scrubbed_from_a_later_call(tmp_path: Path) -> None:
    """One real MCP server; the guest answers each call with the request of the call before.
    Called with credential B right after A, it hands back A's request: A's secret must come
    back redacted, though B's call never involved A.

    "The call before" is the one its instance served: on wasmer an instance belongs to the
    thread that calls it, and the server may run the two calls on different threads, so the
    pair is repeated until B's call landed on the instance that served A's."""
    guest = corpus.by_stem("remembers_credential")
    home = corpus.make_home(tmp_path, [guest])
    other_alias, other_secret = "second-key", "sk-the-other-credential-8Hq2Zr"
    with Vultrino.open(home.root, corpus.PASSWORD) as v:
        v.add_credential(other_alias, f"plugin:{guest.plugin}:key", {"token": other_secret})
    tool = f"{guest.tool}_misbehave"
    with (
        tempfile.TemporaryFile("w+", encoding="utf-8") as errlog,
        surfaces.mcp_server(home, errlog) as client,
    ):
        answers: list[Any] = []
        for _ in range(50):
            first = client.request(
                "tools/call", {"name": tool, "arguments": {"credential": other_alias}}
            )
            second = client.request(
                "tools/call", {"name": tool, "arguments": {"credential": guest.alias}}
            )
            answers += [first, second]
            handed = second["result"].get("structuredContent") or {}
            if (handed.get("credential") or {}).get("alias") == other_alias:
                break
        errlog.seek(0)
        server_stderr = errlog.read()
    assert not first["result"].get("isError"), first
    answer = second["result"]
    assert not answer.get("isError"), answer
    handed_back = answer["structuredContent"]
    assert handed_back["credential"]["alias"] == other_alias  # it really returned A's request
    assert handed_back["credential"]["fields"] == {"token": "[REDACTED]"}
    check = LeakCheck()
    check.add(*home.secrets, other_secret)
    check.scan_all(
        [("answers", json.dumps(answers)), ("stderr", server_stderr)],
        home.root,
    )
    check.assert_clean()


def test_a_field_stored_as_secret_stays_secret_after_the_manifest_stops_saying_so(
    tmp_path: Path,
) -> None:
    """A credential keeps the secret fields it was stored with. After a plugin update marks
    its field as plain text, the plugin can still hand that credential's value back during a
    call with another credential: it is scrubbed as a secret of every credential the plugin
    was handed, by the stored marking as well as the manifest's."""
    guest = corpus.by_stem("remembers_credential")
    plugins = tmp_path / "home" / "plugins"
    source = corpus.build_plugin(guest, plugins)
    first, second = "sk-stored-as-secret-2Jd8Qw5Zt", "sk-the-second-key-7Hn3Lp0Vx"
    with Vultrino.init(tmp_path / "home", "pw-inputs", kdf=KdfParams.minimal()) as v:
        kind = f"plugin:{guest.plugin}:key"
        v.add_credential("first", kind, {"token": first})
        v.add_credential("second", kind, {"token": second})
        manifest = source / "plugin.toml"
        text = manifest.read_text(encoding="utf-8")
        plain = text.replace('type = "password"', 'type = "text"').replace("secret = true\n", "")
        assert plain != text
        manifest.write_text(plain, encoding="utf-8")
        v.reload_plugin(guest.plugin)
        assert v.plugin(guest.plugin).manifest.credential_types[0].secret_fields == ()
        v.execute("first", "misbehave")
        handed_back = v.execute("second", "misbehave")  # answers with the first call's request
    assert handed_back["credential"]["alias"] == "first"
    assert handed_back["credential"]["fields"] == {"token": "[REDACTED]"}
    assert first not in json.dumps(handed_back)


def test_secret_on_the_command_line_gets_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "home"
    Vultrino.init(root, "pw-inputs", kdf=KdfParams.minimal()).close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
    env.update(VULTRINO_HOME=str(root), VULTRINO_PASSWORD="pw-inputs")
    secret = "sk-typed-on-argv-5Kd82Lm"
    r = _cli(env, "add", "--alias", "a1", "--type", "api_key", "--field", f"key={secret}")
    assert r.returncode == 0, r.stderr
    assert "warning: the secret field 'key' was given on the command line" in r.stderr
    assert "key=@FILE" in r.stderr and secret not in r.stderr
    token = tmp_path / "token"
    token.write_text(secret + "\n")
    for form in (f"key=@{token}", "key=-"):
        r = _cli(
            env,
            "add",
            "--alias",
            "a1",
            "--type",
            "api_key",
            "--field",
            form,
            "--replace",
            stdin=secret,
        )
        assert r.returncode == 0, r.stderr
        assert "warning" not in r.stderr, form


def test_made_up_alias_cannot_bloat_the_audit_log(tmp_path: Path) -> None:
    """A 100 000-character alias (what an agent may send): refused, and its audit record
    holds at most 200 characters of it. A stored alias is at most 128 characters."""
    root = tmp_path / "home"
    Vultrino.init(root, "pw-inputs", kdf=KdfParams.minimal()).close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
    env.update(VULTRINO_HOME=str(root), VULTRINO_PASSWORD="pw-inputs")
    huge = "a" * 100_000
    r = _cli(env, "request", huge, "--action", "x")
    assert r.returncode == 4, r.stderr[:300]
    log = (root / "audit.log").read_text(encoding="utf-8")
    record = json.loads(log.splitlines()[-1])
    assert record["alias"] == "a" * 200 + "...[100000 characters]"
    assert len(log) < 1000
    r = _cli(
        env, "add", "--alias", "b" * 129, "--type", "api_key", "--field", "key=-", stdin="x" * 8
    )
    assert r.returncode == 4 and "the limit is 128" in r.stderr
