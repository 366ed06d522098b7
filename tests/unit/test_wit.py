"""``vultrino.runtime.wit`` spells the plugin world's names once; they must match the WIT file,
and no other module of the package spells them again."""

from __future__ import annotations

import re
from pathlib import Path

import vultrino
from vultrino.runtime import wit

ROOT = Path(__file__).resolve().parents[2]
PKG = Path(vultrino.__file__).parent
SOURCE = (ROOT / wit.WIT_FILE).read_text(encoding="utf-8")


def _block(keyword: str, name: str) -> str:
    match = re.search(rf"^{keyword} {re.escape(name)} \{{(.*?)^\}}", SOURCE, re.S | re.M)
    assert match, f"no `{keyword} {name}` in {wit.WIT_FILE}"
    return match.group(1)


def test_package_and_world() -> None:
    package = re.search(r"^package ([a-z-]+:[a-z-]+)@([0-9.]+);", SOURCE, re.M)
    assert package, f"no package line in {wit.WIT_FILE}"
    assert package.groups() == (wit.PACKAGE, wit.VERSION)
    world = _block("world", wit.WORLD)
    assert re.search(r"^\s*import host;", world, re.M)
    assert re.search(r"^\s*export handler;", world, re.M)
    # component-model names of the interfaces: <package>/<interface>@<version>
    name, version = package.groups()
    assert (f"{name}/host@{version}", f"{name}/handler@{version}") == (wit.HOST, wit.HANDLER)


def test_host_interface() -> None:
    host = _block("interface", "host")
    levels = re.search(rf"enum {wit.LOG_LEVEL} \{{([^}}]*)\}}", host)
    assert levels, f"no `enum {wit.LOG_LEVEL}` in the host interface"
    assert tuple(x.strip() for x in levels.group(1).split(",")) == wit.LOG_LEVELS
    assert re.search(
        rf"^\s*{wit.LOG}: func\(level: {wit.LOG_LEVEL}, message: string\);", host, re.M
    )


def test_handler_interface() -> None:
    handler = _block("interface", "handler")
    assert re.search(rf"^\s*{wit.EXECUTE}: func\(request: list<u8>\) -> list<u8>;", handler, re.M)
    # the canonical-ABI lowering's export names, as wit-bindgen writes them
    assert (wit.EXECUTE_EXPORT, wit.POST_EXECUTE_EXPORT) == (
        "vultrino:plugin/handler@1.3.0#execute",
        "cabi_post_vultrino:plugin/handler@1.3.0#execute",
    )
    # 1.1.0 adds execute-text, marked as such so a 1.0.0 reader knows it is new
    assert re.search(
        rf"@since\(version = 1\.1\.0\)\s*{wit.EXECUTE_TEXT}: func\(request: string\) -> string;",
        handler,
    )


def test_every_version_is_still_accepted() -> None:
    assert wit.VERSIONS == ("1.3.0", "1.2.0", "1.1.0", "1.0.0")
    assert wit.HOSTS == (
        "vultrino:plugin/host@1.3.0",
        "vultrino:plugin/host@1.2.0",
        "vultrino:plugin/host@1.1.0",
        "vultrino:plugin/host@1.0.0",
    )
    assert wit.EXECUTE_EXPORTS[1] == "vultrino:plugin/handler@1.2.0#execute"
    assert wit.EXECUTE_EXPORTS[2] == "vultrino:plugin/handler@1.1.0#execute"
    assert wit.EXECUTE_EXPORTS[3] == "vultrino:plugin/handler@1.0.0#execute"
    assert wit.POST_EXECUTE_EXPORTS[3] == "cabi_post_vultrino:plugin/handler@1.0.0#execute"
    assert wit.KEYS_MODULES == ("vultrino:plugin/keys@1.3.0", "vultrino:plugin/keys@1.2.0")
    # a 1.2.0 plugin's keys interface has only the 1.2.0 functions
    old = wit.keys_functions(wit.KEYS_MODULES[1])
    assert "ed25519-verify" not in old and "hmac-sha256" in old
    assert "hmac-sha384" not in old
    assert wit.keys_functions(wit.KEYS_MODULES[0]) == wit.KEYS_FUNCTIONS
    # an enum case cannot carry @since: each version's key-format has its own cases
    assert wit.KEY_FORMATS_SINCE["1.2.0"] == ("raw", "hex", "base64", "pem")
    assert wit.KEY_FORMATS_SINCE["1.3.0"][4:] == ("openpgp", "base32")


def test_the_1_2_world_is_kept_as_it_was() -> None:
    """1.3.0 only adds: the 1.2.0 file is the new one less the @since(1.3.0) functions and the
    `openpgp` and `base32` cases of `key-format` (with the lines that document them and the
    version note)."""
    old = (ROOT / wit.WIT_FILE_1_2).read_text(encoding="utf-8")
    assert "package vultrino:plugin@1.2.0;" in old
    assert "openpgp" not in old and "interface http" not in old
    assert "base32" not in old and "hmac-sha384" not in old
    body = SOURCE.split("package vultrino:plugin@1.3.0;", 1)[1]
    # the http interface: its doc comment, @since line and block (its import goes below)
    body = re.sub(
        r"\n(?:///[^\n]*\n)*@since\(version = 1\.3\.0\)\ninterface http \{.*?^\}\n",
        "\n",
        body,
        flags=re.S | re.M,
    )
    # each added function: its doc comment, the @since line and the declaration
    body = re.sub(
        r"\n(?:[ \t]*///[^\n]*\n)*[ \t]*@since\(version = 1\.3\.0\)\n[^\n]*(?=\n)", "", body
    )
    body = re.sub(r"(?:\s*///[^\n]*\n)*\s*(?:openpgp|base32),\n", "\n", body)
    strip = re.compile(r"\s+")
    assert strip.sub(" ", body) == strip.sub(" ", old.split("package vultrino:plugin@1.2.0;", 1)[1])


def test_the_1_1_world_is_kept_as_it_was() -> None:
    """1.2.0 only adds: the 1.1.0 file is the new one less the @since(1.2.0) items (the keys
    interface and its import)."""
    old = (ROOT / wit.WIT_FILE_1_1).read_text(encoding="utf-8")
    assert "package vultrino:plugin@1.1.0;" in old
    assert "interface keys" not in old
    source = (ROOT / wit.WIT_FILE_1_2).read_text(encoding="utf-8")
    body = source.split("package vultrino:plugin@1.2.0;", 1)[1]
    body = re.sub(
        r"\n(?:///[^\n]*\n)*@since\(version = 1\.2\.0\)\ninterface keys \{.*?^\}\n",
        "",
        body,
        flags=re.S | re.M,
    )
    body = re.sub(r"\s*@since\(version = 1\.2\.0\)\n\s*import keys;", "", body)
    assert body == old.split("package vultrino:plugin@1.1.0;", 1)[1]


def test_keys_interface() -> None:
    keys = _block("interface", "keys")
    for enum, cases in (("key-error", wit.KEY_ERRORS), ("key-format", wit.KEY_FORMATS)):
        found = re.search(rf"enum {enum} \{{(.*?)\}}", keys, re.S)
        assert found, f"no `enum {enum}` in the keys interface"
        text = re.sub(r"///[^\n]*", "", found.group(1))
        assert tuple(x.strip() for x in text.split(",") if x.strip()) == cases
    shapes = {
        "sign": r"\(field: string, format: key-format, \w+: list<u8>\) -> "
        r"result<list<u8>, key-error>",
        "public": r"\(field: string, format: key-format\) -> result<list<u8>, key-error>",
        "hash": r"\(data: list<u8>\) -> list<u8>",
        "verify": r"\(public-key: list<u8>, message: list<u8>, signature: list<u8>\) -> bool",
    }
    declared = re.findall(r"^\s*([a-z0-9-]+): func", keys, re.M)
    assert tuple(declared) == tuple(wit.KEYS_FUNCTIONS)
    for name, kind in wit.KEYS_FUNCTIONS.items():
        assert re.search(rf"^\s*{name}: func{shapes[kind]};", keys, re.M), name
    assert wit.KEYS == "vultrino:plugin/keys@1.3.0"
    assert re.search(r"@since\(version = 1\.2\.0\)\s*import keys;", _block("world", wit.WORLD))


def test_the_1_0_world_is_kept_as_it_was() -> None:
    """1.1.0 only adds: the 1.0.0 file is the 1.1.0 one less the @since(1.1.0) items."""
    old = (ROOT / wit.WIT_FILE_1_0).read_text(encoding="utf-8")
    assert "package vultrino:plugin@1.0.0;" in old
    assert wit.EXECUTE_TEXT not in old
    source = (ROOT / wit.WIT_FILE_1_1).read_text(encoding="utf-8")
    body = source.split("package vultrino:plugin@1.1.0;", 1)[1]
    added = re.compile(r"\n\n(?:\s*///[^\n]*\n)*\s*@since\(version = 1\.1\.0\)\n[^\n]*\n")
    assert added.sub("\n", body) == old.split("package vultrino:plugin@1.0.0;", 1)[1]


def test_no_other_module_spells_the_names() -> None:
    home = Path(wit.__file__)
    spelled = [
        str(path.relative_to(PKG.parent))
        for path in sorted(PKG.rglob("*.py"))
        if path != home and wit.PACKAGE in path.read_text(encoding="utf-8")
    ]
    assert not spelled, f"{spelled} spell {wit.PACKAGE!r}; import the names from {wit.__name__}"


def test_http_interface() -> None:
    http = _block("interface", "http")
    assert re.search(rf"^\s*{wit.HTTP_SEND}: func\(request: list<u8>\) -> list<u8>;", http, re.M)
    for code in wit.HTTP_ERRORS:
        assert f"`{code}`" in http, code
    assert wit.HTTP == "vultrino:plugin/http@1.3.0"
    assert re.search(r"@since\(version = 1\.3\.0\)\s*import http;", _block("world", wit.WORLD))
