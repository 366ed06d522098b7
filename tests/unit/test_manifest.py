"""plugin.toml parsing and validation: one test per rule of docs/plugins/manifest.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vultrino import __version__
from vultrino.errors import ManifestError
from vultrino.plugins.manifest import (
    MAX_MANIFEST_BYTES,
    compare_versions,
    load_manifest,
    parse_manifest,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "manifests"

HEAD = """
[plugin]
name = "demo"
version = "1.0.0"
wasm_module = "demo.wasm"
"""

ONE_TYPE = """
[[credential_types]]
name = "token"

[[credential_types.fields]]
name = "value"
type = "password"
required = true
"""


def problems(text: str) -> list[str]:
    """The problems of an invalid manifest (fails the test when it parses)."""
    with pytest.raises(ManifestError) as info:
        parse_manifest(text)
    assert info.value.problems, "a ManifestError must list its problems"
    for p in info.value.problems:
        assert p in str(info.value)
    return info.value.problems


def only_problem(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


# --- the published pgp-signing manifest ------------------------------------------------------


def test_pgp_signing_manifest_parses_unchanged() -> None:
    m = load_manifest(FIXTURES / "pgp-signing.toml")
    assert m.name == "pgp-signing"
    assert m.plugin.version == "1.0.0"
    assert m.plugin.format == "wasm"
    assert m.plugin.wasm_module == "pgp_signing.wasm"
    assert m.plugin.author == "Vultrino"
    assert m.warnings == ()
    (ctype,) = m.credential_types
    assert ctype.name == "pgp_key"
    assert ctype.display_name == "PGP/GPG Key"
    assert [(f.name, f.type, f.required, f.secret) for f in ctype.fields] == [
        ("private_key", "textarea", True, True),
        ("passphrase", "password", False, True),
        ("key_id", "text", False, False),
    ]
    assert ctype.fields[0].placeholder == "-----BEGIN PGP PRIVATE KEY BLOCK-----\n..."
    assert set(ctype.secret_fields) == {"private_key", "passphrase"}
    assert [a.name for a in m.actions] == ["sign", "sign_cleartext", "verify", "get_public_key"]
    # The only type is the default credential type of every action.
    assert {a.credential_type for a in m.actions} == {"pgp_key"}
    sign = m.action("sign")
    assert sign is not None
    assert [(p.name, p.type, p.required) for p in sign.parameters] == [
        ("data", "string", True),
        ("armor", "boolean", False),
    ]
    assert [(t.name, t.action) for t in m.mcp_tools] == [
        ("pgp_sign", "sign"),
        ("pgp_sign_cleartext", "sign_cleartext"),
        ("pgp_verify", "verify"),
        ("pgp_get_public_key", "get_public_key"),
    ]


def test_every_fixture_parses() -> None:
    for path in sorted(FIXTURES.glob("*.toml")):
        assert load_manifest(path).name, path


def test_full_manifest_reads_every_key() -> None:
    m = load_manifest(FIXTURES / "full.toml")
    assert m.warnings == ()
    info = m.plugin
    assert (info.description, info.author, info.license) == (
        "Every manifest key, set",
        "Example Author <author@example.com>",
        "MIT",
    )
    assert info.homepage == "https://example.com/full"
    assert info.repository == "https://example.com/full.git"
    assert info.min_vultrino_version == "0.1.0"
    ctype = m.credential_type("service_token")
    assert ctype is not None
    assert ctype.description == "A token for the example service"
    token = ctype.field("token")
    assert token is not None
    assert (token.label, token.help_text, token.placeholder) == (
        "Token",
        "Starts with tok_",
        "tok_...",
    )
    assert (token.min_length, token.max_length) == (8, 128)
    assert token.validation_pattern == "tok_[A-Za-z0-9]+"
    region = ctype.field("region")
    assert region is not None and region.options == ("eu", "us") and region.default == "eu"
    verify = ctype.field("verify_tls")
    assert verify is not None and verify.default is True
    call = m.action("call")
    assert call is not None and call.description == "Call the service"
    method = call.parameter("method")
    assert method is not None
    assert method.enum_values == ("GET", "POST") and method.default == "GET"
    body = call.parameter("body")
    assert body is not None and body.default == {"kind": "empty"}
    assert m.mcp_tools[0].description == "Call the example service"


def test_minimal_manifest_defaults() -> None:
    m = load_manifest(FIXTURES / "minimal.toml")
    assert m.plugin.format == "wasm"
    assert m.plugin.description == ""
    assert m.plugin.min_vultrino_version is None
    assert (m.credential_types, m.actions, m.mcp_tools) == ((), (), ())


# --- reading the file ------------------------------------------------------------------------


def test_missing_file_is_a_manifest_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no plugin manifest here"):
        load_manifest(tmp_path / "plugin.toml")


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plugin.toml"
    path.write_bytes(HEAD.encode() + b'description = "\xff\xfe"\n')
    with pytest.raises(ManifestError, match="not UTF-8"):
        load_manifest(path)


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plugin.toml"
    path.write_bytes(HEAD.encode() + b"#" * MAX_MANIFEST_BYTES)
    with pytest.raises(ManifestError, match="too large"):
        load_manifest(path)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "plugin.toml"
    path.write_bytes(b"\xef\xbb\xbf" + HEAD.encode())
    assert load_manifest(path).name == "demo"


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "plugin.toml"
    path.write_text('[plugin]\nname = "demo"\nversion = = "1"\n')
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3:")
    assert "invalid TOML" in message
    assert info.value.problems[0].startswith("line 3: invalid TOML")


def test_toml_error_at_end_of_document_names_last_line() -> None:
    with pytest.raises(ManifestError, match=r"plugin\.toml:3 \(end of file\)"):
        parse_manifest('[plugin]\nname = "x"\nversion = [')


def test_source_names_the_manifest_in_messages() -> None:
    with pytest.raises(ManifestError, match=r"^somewhere/plugin\.toml"):
        parse_manifest("[plugin]\n", source="somewhere/plugin.toml")


def test_deeply_nested_toml_is_a_manifest_error() -> None:
    with pytest.raises(ManifestError):
        parse_manifest(HEAD + "x = " + "[" * 5000 + "]" * 5000 + "\n")


# --- [plugin] --------------------------------------------------------------------------------


def test_plugin_table_is_required() -> None:
    assert only_problem('[[actions]]\nname = "a"\nrequires_credential = false\n').startswith(
        "plugin: missing the [plugin] table"
    )


def test_plugin_must_be_a_table() -> None:
    assert only_problem('plugin = "x"\n') == "plugin: expected a table ([plugin]), got string"


def test_plugin_name_is_required() -> None:
    assert only_problem('[plugin]\nversion = "1.0.0"\nwasm_module = "a.wasm"\n') == (
        "plugin.name: required"
    )


@pytest.mark.parametrize(
    "name",
    ["Demo", "my_plugin", "-demo", "demo-", "de--mo", "de mo", "", "dé", "a" * 65, "demo\n"],
)
def test_plugin_name_rules(name: str) -> None:
    text = HEAD.replace('name = "demo"', f"name = {_toml_str(name)}")
    assert only_problem(text).startswith("plugin.name: ")


@pytest.mark.parametrize("name", ["a", "pgp-signing", "x2", "0day", "a-b-c", "a" * 64])
def test_plugin_name_accepts(name: str) -> None:
    assert parse_manifest(HEAD.replace('name = "demo"', f'name = "{name}"')).name == name


def test_plugin_version_is_required() -> None:
    assert only_problem('[plugin]\nname = "demo"\nwasm_module = "a.wasm"\n') == (
        "plugin.version: required"
    )


@pytest.mark.parametrize("version", ["1.0", "1", "v1.0.0", "01.0.0", "1.0.0-", "1.0.0+", "latest"])
def test_plugin_version_must_be_semver(version: str) -> None:
    text = HEAD.replace('version = "1.0.0"', f'version = "{version}"')
    assert only_problem(text).startswith("plugin.version: ")


@pytest.mark.parametrize("version", ["0.0.0", "1.2.3-alpha.1", "1.2.3+build.7", "10.20.30-rc.1+x"])
def test_plugin_version_accepts_semver(version: str) -> None:
    text = HEAD.replace('version = "1.0.0"', f'version = "{version}"')
    assert parse_manifest(text).plugin.version == version


def test_version_of_wrong_toml_type() -> None:
    text = HEAD.replace('version = "1.0.0"', "version = 1979-05-27")
    assert only_problem(text) == "plugin.version: expected a string, got date"


def test_format_defaults_to_wasm_and_nothing_else_is_accepted() -> None:
    assert parse_manifest(HEAD).plugin.format == "wasm"
    assert only_problem(HEAD + 'format = "builtin"\n').startswith('plugin.format: expected "wasm"')


def test_wasm_module_is_required() -> None:
    text = HEAD.replace('wasm_module = "demo.wasm"\n', "")
    assert only_problem(text).startswith("plugin.wasm_module: required")


@pytest.mark.parametrize(
    "module",
    [
        "../evil.wasm",
        "sub/demo.wasm",
        "/abs/demo.wasm",
        "sub\\\\demo.wasm",
        "..",
        ".",
        "",
        "c:demo.wasm",
        "a\\u0000b.wasm",
    ],
)
def test_wasm_module_must_be_a_bare_file_name(module: str) -> None:
    text = HEAD.replace('wasm_module = "demo.wasm"', f'wasm_module = "{module}"')
    assert only_problem(text).startswith("plugin.wasm_module: ")


def test_min_vultrino_version_newer_than_this_is_an_error() -> None:
    problem = only_problem(HEAD + 'min_vultrino_version = "999.0.0"\n')
    assert problem.startswith("plugin.min_vultrino_version: this plugin needs Vultrino 999.0.0")
    assert __version__ in problem
    assert "upgrade" in problem


@pytest.mark.parametrize("minimum", ["0.0.1", __version__, "0.1", "0"])
def test_min_vultrino_version_satisfied(minimum: str) -> None:
    m = parse_manifest(HEAD + f'min_vultrino_version = "{minimum}"\n')
    assert m.plugin.min_vultrino_version == minimum


def test_min_vultrino_version_garbage() -> None:
    assert only_problem(HEAD + 'min_vultrino_version = ">=1"\n').startswith(
        'plugin.min_vultrino_version: ">=1" is not a version'
    )


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0.0", "1.0.0", 0),
        ("1.0.0", "2.0.0", -1),
        ("1.10.0", "1.9.0", 1),
        ("1.0.0-alpha", "1.0.0", -1),
        ("1.0.0-alpha", "1.0.0-alpha.1", -1),
        ("1.0.0-alpha.1", "1.0.0-alpha.beta", -1),
        ("1.0.0-beta.2", "1.0.0-beta.11", -1),
        ("1.0.0-rc.1", "1.0.0-beta", 1),
        ("1.0.0+a", "1.0.0+b", 0),
    ],
)
def test_compare_versions_follows_semver_precedence(a: str, b: str, expected: int) -> None:
    assert compare_versions(a, b) == expected
    assert compare_versions(b, a) == -expected


def test_compare_versions_rejects_non_semver() -> None:
    with pytest.raises(ValueError, match="not a semver"):
        compare_versions("1.0", "1.0.0")


# --- [[credential_types]] --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["PgpKey", "pgp-key", "1key", "_key", ""])
def test_credential_type_name_is_snake_case(name: str) -> None:
    text = HEAD + ONE_TYPE.replace('name = "token"', f'name = "{name}"')
    assert only_problem(text).startswith("credential_types[0].name: ")


def test_credential_type_name_is_required() -> None:
    assert only_problem(HEAD + "[[credential_types]]\n") == "credential_types[0].name: required"


def test_duplicate_credential_type_is_an_error() -> None:
    text = HEAD + ONE_TYPE + ONE_TYPE
    found = problems(text)
    assert (
        'credential_types[1].name: duplicate name "token" (first used at credential_types[0].name)'
        in found
    )


def test_credential_types_must_be_an_array_of_tables() -> None:
    assert only_problem(HEAD.replace("[plugin]", 'credential_types = "x"\n[plugin]')) == (
        "credential_types: expected an array of tables ([[credential_types]]), got string"
    )


def _field(extra: str, kind: str = "text") -> str:
    return (
        HEAD
        + '[[credential_types]]\nname = "token"\n[[credential_types.fields]]\n'
        + f'name = "f"\ntype = "{kind}"\n{extra}\n'
    )


FIELD = "credential_types[0].fields[0]"


def test_field_type_must_be_a_field_kind() -> None:
    problem = only_problem(_field("", kind="image"))
    assert problem == (
        f"{FIELD}.type: expected one of text, password, textarea, select, checkbox, number, "
        'file, hidden, got "image"'
    )


def test_field_defaults() -> None:
    m = parse_manifest(
        HEAD + '[[credential_types]]\nname = "t"\n[[credential_types.fields]]\nname = "f"\n'
    )
    f = m.credential_types[0].fields[0]
    assert (f.type, f.required, f.secret, f.label, f.default, f.options) == (
        "text",
        False,
        False,
        "",
        None,
        (),
    )


def test_field_name_is_required_and_checked() -> None:
    assert only_problem(_field("").replace('name = "f"\n', "")) == f"{FIELD}.name: required"
    assert only_problem(_field("").replace('name = "f"', 'name = "a b"')).startswith(
        f'{FIELD}.name: "a b" is not a valid name'
    )


def test_duplicate_field_is_an_error() -> None:
    text = _field("") + '[[credential_types.fields]]\nname = "f"\n'
    assert only_problem(text).startswith("credential_types[0].fields[1].name: duplicate name")


def test_select_needs_options() -> None:
    assert only_problem(_field("", kind="select")).startswith(f"{FIELD}.options: required")


def test_select_options_as_strings_or_value_tables() -> None:
    m = parse_manifest(_field('options = ["a", { value = "b", label = "B" }]', kind="select"))
    assert m.credential_types[0].fields[0].options == ("a", "b")


def test_select_options_must_be_strings_without_duplicates() -> None:
    found = problems(_field('options = ["a", 1, "a"]', kind="select"))
    assert found == [
        f"{FIELD}.options[1]: expected a string, got integer",
        f'{FIELD}.options[2]: duplicate option "a"',
    ]


def test_options_on_a_non_select_field_is_a_warning() -> None:
    m = parse_manifest(_field('options = ["a"]'))
    assert m.warnings == (f"{FIELD}.options: only used by select fields; this field is text",)


@pytest.mark.parametrize(
    ("kind", "extra", "expected"),
    [
        ("select", 'options = ["a", "b"]\ndefault = "c"', "must be one of: a, b"),
        ("checkbox", 'default = "yes"', "expected true or false"),
        ("number", "default = true", "expected a number"),
        ("number", "default = nan", "expected a number"),
        ("text", "default = 3", "expected a string"),
        ("text", 'max_length = 2\ndefault = "abc"', "at most 2 characters"),
        ("text", 'min_length = 5\ndefault = "abc"', "at least 5 characters"),
        ("text", 'validation_pattern = "[0-9]+"\ndefault = "12a"', "does not match the pattern"),
    ],
)
def test_field_default_must_fit_the_type(kind: str, extra: str, expected: str) -> None:
    problem = only_problem(_field(extra, kind=kind))
    assert problem.startswith(f"{FIELD}.default: does not fit the {kind} field: ")
    assert expected in problem


@pytest.mark.parametrize(
    ("kind", "extra", "default"),
    [
        ("select", 'options = ["a", "b"]\ndefault = "b"', "b"),
        ("checkbox", "default = false", False),
        ("number", "default = 2.5", 2.5),
        ("text", 'validation_pattern = "[0-9]+"\ndefault = "12"', "12"),
    ],
)
def test_field_default_that_fits(kind: str, extra: str, default: object) -> None:
    m = parse_manifest(_field(extra, kind=kind))
    assert m.credential_types[0].fields[0].default == default


@pytest.mark.parametrize("value", ["-1", "1.5", '"3"', "true"])
def test_lengths_are_whole_numbers(value: str) -> None:
    assert only_problem(_field(f"min_length = {value}")).startswith(
        f"{FIELD}.min_length: expected a whole number >= 0"
    )


def test_min_length_not_above_max_length() -> None:
    assert only_problem(_field("min_length = 5\nmax_length = 2")) == (
        f"{FIELD}.min_length: 5 is greater than max_length (2)"
    )


def test_validation_pattern_must_compile() -> None:
    assert only_problem(_field('validation_pattern = "[a-"')).startswith(
        f"{FIELD}.validation_pattern: not a valid regular expression"
    )


def test_text_constraints_on_a_checkbox_are_warnings() -> None:
    m = parse_manifest(_field('max_length = 3\nvalidation_pattern = "x"', kind="checkbox"))
    assert len(m.warnings) == 2
    assert all("only applies to text fields" in w for w in m.warnings)


def test_required_and_secret_must_be_booleans() -> None:
    assert problems(_field('required = "yes"\nsecret = 1')) == [
        f"{FIELD}.required: expected true or false, got string",
        f"{FIELD}.secret: expected true or false, got integer",
    ]


# --- [[actions]] -----------------------------------------------------------------------------


def test_action_name_is_snake_case() -> None:
    assert only_problem(HEAD + '[[actions]]\nname = "Sign-It"\n').startswith(
        'actions[0].name: "Sign-It" is not a valid name: use snake_case'
    )


def test_duplicate_action_is_an_error() -> None:
    text = HEAD + ONE_TYPE + '[[actions]]\nname = "a"\n[[actions]]\nname = "a"\n'
    assert (
        only_problem(text) == 'actions[1].name: duplicate name "a" (first used at actions[0].name)'
    )


def test_action_credential_type_defaults_to_the_only_type() -> None:
    m = parse_manifest(HEAD + ONE_TYPE + '[[actions]]\nname = "a"\n')
    assert m.actions[0].credential_type == "token"


def test_action_credential_type_must_name_a_type_of_this_plugin() -> None:
    text = HEAD + ONE_TYPE + '[[actions]]\nname = "a"\ncredential_type = "api_key"\n'
    assert only_problem(text).startswith(
        'actions[0].credential_type: "api_key" is not a credential type of this plugin '
        "(types: token)"
    )


def test_action_credential_type_required_with_several_types() -> None:
    two = ONE_TYPE + ONE_TYPE.replace('name = "token"', 'name = "other"')
    problem = only_problem(HEAD + two + '[[actions]]\nname = "a"\n')
    assert problem.startswith("actions[0].credential_type: required because the plugin defines")
    assert "requires_credential = false" in problem


def test_action_with_several_types_names_one() -> None:
    two = ONE_TYPE + ONE_TYPE.replace('name = "token"', 'name = "other"')
    m = parse_manifest(HEAD + two + '[[actions]]\nname = "a"\ncredential_type = "other"\n')
    assert m.actions[0].credential_type == "other"


def test_action_can_opt_out_of_a_credential() -> None:
    m = parse_manifest(HEAD + ONE_TYPE + '[[actions]]\nname = "a"\nrequires_credential = false\n')
    assert m.actions[0].credential_type is None


def test_action_without_types_needs_no_credential() -> None:
    assert parse_manifest(HEAD + '[[actions]]\nname = "a"\n').actions[0].credential_type is None


def test_opting_out_and_naming_a_type_contradict() -> None:
    text = (
        HEAD
        + ONE_TYPE
        + '[[actions]]\nname = "a"\nrequires_credential = false\ncredential_type = "token"\n'
    )
    assert only_problem(text).startswith("actions[0].credential_type: set, but requires_credential")


def test_empty_credential_type_is_not_an_opt_out() -> None:
    text = HEAD + ONE_TYPE + '[[actions]]\nname = "a"\ncredential_type = ""\n'
    assert "requires_credential = false" in only_problem(text)


def test_legacy_credential_types_list_with_one_type() -> None:
    text = HEAD + ONE_TYPE + '[[actions]]\nname = "a"\ncredential_types = ["token"]\n'
    assert parse_manifest(text).actions[0].credential_type == "token"


def test_legacy_credential_types_list_with_two_types_is_an_error() -> None:
    two = ONE_TYPE + ONE_TYPE.replace('name = "token"', 'name = "other"')
    text = HEAD + two + '[[actions]]\nname = "a"\ncredential_types = ["token", "other"]\n'
    assert only_problem(text).startswith("actions[0].credential_types: an action acts on one")


def _param(extra: str, kind: str = "string") -> str:
    return (
        HEAD
        + '[[actions]]\nname = "act"\n[[actions.parameters]]\n'
        + f'name = "p"\ntype = "{kind}"\n{extra}\n'
    )


PARAM = "actions[0].parameters[0]"


def test_parameter_type_must_be_a_param_kind() -> None:
    assert only_problem(_param("", kind="str")) == (
        f'{PARAM}.type: expected one of string, integer, number, boolean, object, array, got "str"'
    )


def test_key_path_points_at_the_right_entry() -> None:
    text = (
        HEAD
        + '[[actions]]\nname = "first"\n'
        + '[[actions]]\nname = "second"\n'
        + '[[actions.parameters]]\nname = "ok"\n'
        + '[[actions.parameters]]\nname = "bad"\ntype = "float"\n'
    )
    assert only_problem(text).startswith("actions[1].parameters[1].type: expected one of string,")


def test_parameter_defaults() -> None:
    p = parse_manifest(_param("").replace('type = "string"\n', "")).actions[0].parameters[0]
    assert (p.type, p.required, p.default, p.enum_values, p.description) == (
        "string",
        False,
        None,
        (),
        "",
    )


@pytest.mark.parametrize(
    ("kind", "default"),
    [
        ("string", "1"),
        ("integer", '"1"'),
        ("integer", "1.5"),
        ("integer", "true"),
        ("number", '"x"'),
        ("boolean", "1"),
        ("object", "[1]"),
        ("array", "{a = 1}"),
    ],
)
def test_parameter_default_must_fit_the_type(kind: str, default: str) -> None:
    assert only_problem(_param(f"default = {default}", kind=kind)).startswith(
        f"{PARAM}.default: expected "
    )


@pytest.mark.parametrize(
    ("kind", "default", "value"),
    [
        ("string", '"x"', "x"),
        ("integer", "3", 3),
        ("number", "3", 3),
        ("number", "0.5", 0.5),
        ("boolean", "false", False),
        ("object", "{a = 1}", {"a": 1}),
        ("array", "[1, 2]", [1, 2]),
    ],
)
def test_parameter_default_that_fits(kind: str, default: str, value: object) -> None:
    assert (
        parse_manifest(_param(f"default = {default}", kind=kind)).actions[0].parameters[0].default
        == value
    )


def test_enum_values_must_fit_the_type_and_be_unique() -> None:
    assert problems(_param("enum_values = [1, 2, 1]", kind="integer")) == [
        f"{PARAM}.enum_values[2]: duplicate value 1"
    ]
    assert problems(_param('enum_values = ["a", 2]')) == [
        f"{PARAM}.enum_values[1]: expected a string, got integer"
    ]


def test_enum_values_must_be_a_non_empty_array() -> None:
    assert only_problem(_param("enum_values = []")).startswith(
        f"{PARAM}.enum_values: expected a non-empty"
    )


def test_enum_values_not_for_objects() -> None:
    assert only_problem(_param("enum_values = [{a = 1}]", kind="object")) == (
        f"{PARAM}.enum_values: not supported for object parameters"
    )


def test_default_must_be_one_of_enum_values() -> None:
    assert only_problem(_param('enum_values = ["a", "b"]\ndefault = "c"')) == (
        f'{PARAM}.default: "c" is not one of enum_values'
    )


def test_duplicate_parameter_is_an_error() -> None:
    text = _param("") + '[[actions.parameters]]\nname = "p"\n'
    assert only_problem(text).startswith("actions[0].parameters[1].name: duplicate name")


def test_parameter_named_credential_is_reserved() -> None:
    text = _param("").replace('name = "p"', 'name = "credential"')
    assert only_problem(text).startswith(f'{PARAM}.name: "credential" is reserved')


# --- [[mcp_tools]] ---------------------------------------------------------------------------

TOOL_BASE = HEAD + '[[actions]]\nname = "act"\n'


@pytest.mark.parametrize("name", ["Tool", "1tool", "_tool", "my-tool", "tool!", "a" * 65])
def test_tool_name_rules(name: str) -> None:
    text = TOOL_BASE + f'[[mcp_tools]]\nname = "{name}"\naction = "act"\n'
    assert only_problem(text).startswith("mcp_tools[0].name: ")


def test_tool_action_must_exist() -> None:
    text = TOOL_BASE + '[[mcp_tools]]\nname = "t"\naction = "nope"\n'
    assert (
        only_problem(text)
        == 'mcp_tools[0].action: "nope" is not an action of this plugin (actions: act)'
    )


def test_tool_action_is_required() -> None:
    assert (
        only_problem(TOOL_BASE + '[[mcp_tools]]\nname = "t"\n') == "mcp_tools[0].action: required"
    )


def test_duplicate_tool_is_an_error() -> None:
    tool = '[[mcp_tools]]\nname = "t"\naction = "act"\n'
    assert only_problem(TOOL_BASE + tool + tool).startswith("mcp_tools[1].name: duplicate name")


# --- reporting -------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once() -> None:
    text = """
[plugin]
name = "Bad"
version = "one"
wasm_module = "../x.wasm"

[[credential_types]]
name = "Key"

[[actions]]
name = "act"
credential_type = "missing"

[[actions.parameters]]
name = "p"
type = "float"

[[mcp_tools]]
name = "t"
action = "nope"
"""
    with pytest.raises(ManifestError) as info:
        parse_manifest(text)
    paths = [p.split(":")[0] for p in info.value.problems]
    assert paths == [
        "plugin.name",
        "plugin.version",
        "plugin.wasm_module",
        "credential_types[0].name",
        "actions[0].credential_type",
        "actions[0].parameters[0].type",
        "mcp_tools[0].action",
    ]
    assert "7 problems" in str(info.value)
    assert info.value.plugin is None


def test_manifest_error_names_the_plugin_when_known() -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(HEAD + 'format = "zip"\n')
    assert info.value.plugin == "demo"
    assert "(plugin demo)" in str(info.value)


def test_unknown_keys_are_warnings_with_key_paths() -> None:
    text = (
        "flavour = 1\n"
        + HEAD
        + "colour = 'red'\n"
        + ONE_TYPE.replace("required = true", "required = true\nmask = true")
        + '[[actions]]\nname = "a"\n"odd key" = 1\n'
    )
    m = parse_manifest(text)
    assert [w.split(":")[0] for w in m.warnings] == [
        "flavour",
        "plugin.colour",
        "credential_types[0].fields[0].mask",
        'actions[0]."odd key"',
    ]
    assert all("unknown key, ignored" in w for w in m.warnings)


def test_legacy_rust_keys_are_warnings() -> None:
    m = load_manifest(FIXTURES / "legacy-rust.toml")
    assert [w.split(":")[0] for w in m.warnings] == [
        "url_patterns",
        "credential_types[0].icon",
        "credential_types[0].fields[0].validation_message",
    ]
    (tool,) = m.mcp_tools
    assert tool.parameter_mappings == (("payload", "data"),)  # the tool's payload is data
    assert json.loads(tool.input_schema or "")["required"] == ["payload"]
    assert m.credential_types[0].fields[1].options == ("fast", "safe")
    sign = m.action("sign")
    assert sign is not None and sign.credential_type == "legacy_key"
    version_info = m.action("version_info")
    assert version_info is not None and version_info.credential_type is None


def test_warnings_do_not_affect_equality() -> None:
    assert parse_manifest(HEAD) == parse_manifest(HEAD + "extra = 1\n")


def test_non_table_array_entries_are_reported() -> None:
    text = 'actions = [1, { name = "a" }]\n' + HEAD
    assert only_problem(text) == "actions[0]: expected a table, got integer"


def _toml_str(value: str) -> str:
    """A TOML basic string for ``value``."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


# --- MCP behaviour hints ---------------------------------------------------------------------

ACTION_AND_TOOL = """
[[actions]]
name = "sign"
credential_type = "token"

[[mcp_tools]]
name = "sign_it"
action = "sign"
"""


def test_tool_hints_become_mcp_annotations() -> None:
    m = parse_manifest(
        HEAD + ONE_TYPE + ACTION_AND_TOOL + "read_only = true\nidempotent = true\n"
        "open_world = false\n"
    )
    [tool] = m.mcp_tools
    assert (tool.read_only, tool.destructive, tool.idempotent, tool.open_world) == (
        True,
        None,
        True,
        False,
    )
    assert tool.annotations() == {
        "readOnlyHint": True,
        "idempotentHint": True,
        "openWorldHint": False,
    }


def test_a_tool_without_hints_declares_none() -> None:
    [tool] = parse_manifest(HEAD + ONE_TYPE + ACTION_AND_TOOL).mcp_tools
    assert tool.annotations() == {}


def test_tool_hints_must_be_booleans_and_consistent() -> None:
    assert "mcp_tools[0].destructive: expected true or false, got string" in only_problem(
        HEAD + ONE_TYPE + ACTION_AND_TOOL + 'destructive = "yes"\n'
    )
    assert "a read_only tool cannot be destructive" in only_problem(
        HEAD + ONE_TYPE + ACTION_AND_TOOL + "read_only = true\ndestructive = true\n"
    )
