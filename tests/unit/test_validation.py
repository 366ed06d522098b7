"""Credential fields and action parameters checked against their specs."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vultrino.errors import CredentialValidationError, ParameterError
from vultrino.plugins.base import ActionSpec, CredentialTypeSpec, FieldSpec, ParameterSpec
from vultrino.plugins.validation import params_json_schema, validate_fields, validate_params

SECRET = "s3cr3t-Value-that-must-never-show"

CTYPE = CredentialTypeSpec(
    name="service",
    fields=(
        FieldSpec("token", type="password", required=True, min_length=8, max_length=64),
        FieldSpec("pem", type="textarea", secret=True, validation_pattern=r"-----BEGIN .*"),
        FieldSpec("region", type="select", options=("eu", "us"), default="eu"),
        FieldSpec("verify", type="checkbox", default=True),
        FieldSpec("timeout", type="number"),
        FieldSpec("account", type="text", validation_pattern=r"[a-z]+", max_length=10),
    ),
)


def field_problems(fields: dict[str, Any]) -> str:
    with pytest.raises(CredentialValidationError) as info:
        validate_fields(CTYPE, fields)
    return str(info.value)


# --- validate_fields -------------------------------------------------------------------------


def test_valid_fields_get_defaults() -> None:
    assert validate_fields(CTYPE, {"token": SECRET}) == {
        "token": SECRET,
        "region": "eu",
        "verify": True,
    }


def test_required_field_missing() -> None:
    assert "token: required" in field_problems({})


@pytest.mark.parametrize("blank", [None, ""])
def test_blank_value_counts_as_missing(blank: str | None) -> None:
    assert "token: required" in field_problems({"token": blank})
    assert validate_fields(CTYPE, {"token": SECRET, "region": blank}) == {
        "token": SECRET,
        "region": "eu",
        "verify": True,
    }


def test_unknown_field_rejected() -> None:
    message = field_problems({"token": SECRET, "tokne": "x"})
    assert (
        "tokne: unknown field (did you mean token? "
        "fields of service: token, pem, region, verify, timeout, account)" in message
    )


def test_unknown_field_far_from_any_gets_no_guess() -> None:
    message = field_problems({"token": SECRET, "zzzzzz": "x"})
    assert "zzzzzz: unknown field (fields of service:" in message


def test_select_option_enforced() -> None:
    message = field_problems({"token": SECRET, "region": "mars"})
    assert 'region: must be one of: eu, us, got "mars"' in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("short", "at least 8 characters long (got 5)"),
        ("x" * 65, "at most 64 characters long (got 65)"),
    ],
)
def test_lengths_enforced(value: str, expected: str) -> None:
    message = field_problems({"token": value})
    assert f"token: must be {expected}" in message
    assert value not in message  # a secret field's value is never quoted


def test_pattern_must_match_the_whole_value() -> None:
    assert validate_fields(CTYPE, {"token": SECRET, "account": "abc"})["account"] == "abc"
    message = field_problems({"token": SECRET, "account": "abc1"})
    assert 'account: value ("abc1") does not match the pattern [a-z]+' in message


@pytest.mark.parametrize(
    ("text", "number"),
    [("42", 42), (" -7 ", -7), ("2.5", 2.5), ("1e3", 1000.0), (3, 3), (0.5, 0.5)],
)
def test_number_conversion(text: Any, number: float) -> None:
    out = validate_fields(CTYPE, {"token": SECRET, "timeout": text})
    assert out["timeout"] == number
    assert type(out["timeout"]) is type(number)


@pytest.mark.parametrize("bad", ["forty", "nan", "inf", True, [1]])
def test_number_rejects(bad: Any) -> None:
    assert "timeout: expected a number" in field_problems({"token": SECRET, "timeout": bad})


@pytest.mark.parametrize(
    ("value", "flag"),
    [
        ("true", True),
        ("FALSE", False),
        ("yes", True),
        ("no", False),
        ("1", True),
        ("0", False),
        (" Yes ", True),
        (True, True),
        (False, False),
        (1, True),
        (0, False),
    ],
)
def test_checkbox_conversion(value: Any, flag: bool) -> None:
    assert validate_fields(CTYPE, {"token": SECRET, "verify": value})["verify"] is flag


@pytest.mark.parametrize("bad", ["maybe", 2, 1.0, ["true"]])
def test_checkbox_rejects(bad: Any) -> None:
    assert "verify: expected a checkbox value" in field_problems({"token": SECRET, "verify": bad})


def test_text_field_needs_a_string() -> None:
    assert "account: expected text, got integer" in field_problems({"token": SECRET, "account": 5})


def test_every_problem_listed_at_once() -> None:
    message = field_problems({"token": "short", "region": "mars", "timeout": "x", "bogus": 1})
    assert "(4 problems)" in message
    for name in ("token:", "region:", "timeout:", "bogus:"):
        assert name in message


@pytest.mark.parametrize(
    "fields",
    [
        {"token": SECRET + "\n" * 60},  # too long
        {"token": SECRET, "pem": SECRET},  # pattern mismatch on a secret textarea
        {"token": SECRET[:5]},  # too short: a prefix must not show either
    ],
)
def test_secret_values_never_quoted(fields: dict[str, Any]) -> None:
    message = field_problems(fields)
    assert SECRET[:5] not in message


def test_secret_select_value_not_quoted() -> None:
    ctype = CredentialTypeSpec(
        "t", fields=(FieldSpec("tier", type="select", secret=True, options=("a", "b")),)
    )
    with pytest.raises(CredentialValidationError) as info:
        validate_fields(ctype, {"tier": SECRET})
    assert SECRET not in str(info.value)
    assert "tier: must be one of: a, b" in str(info.value)


# --- validate_params -------------------------------------------------------------------------

ACTION = ActionSpec(
    name="call",
    parameters=(
        ParameterSpec("url", type="string", required=True, description="Where"),
        ParameterSpec("retries", type="integer", default=3),
        ParameterSpec("ratio", type="number"),
        ParameterSpec("dry_run", type="boolean"),
        ParameterSpec("body", type="object", default={"k": [1]}),
        ParameterSpec("tags", type="array"),
        ParameterSpec("method", type="string", enum_values=("GET", "POST"), default="GET"),
    ),
)


def param_problems(params: dict[str, Any], *, from_cli: bool = False) -> str:
    with pytest.raises(ParameterError) as info:
        validate_params(ACTION, params, from_cli=from_cli, plugin="demo")
    assert info.value.plugin == "demo"
    return str(info.value)


def test_params_defaults_applied() -> None:
    assert validate_params(ACTION, {"url": "u"}) == {
        "url": "u",
        "retries": 3,
        "body": {"k": [1]},
        "method": "GET",
    }


def test_param_defaults_are_deep_copies() -> None:
    out = validate_params(ACTION, {"url": "u"})
    out["body"]["k"].append(2)
    assert ACTION.parameters[4].default == {"k": [1]}


def test_required_param_missing() -> None:
    assert "url: required (string)" in param_problems({})


def test_unknown_param_rejected() -> None:
    message = param_problems({"url": "u", "verbose": True})
    assert (
        "verbose: unknown parameter (parameters: url, retries, ratio, dry_run, body, tags, method)"
        in message
    )


def test_unknown_param_on_action_without_parameters() -> None:
    with pytest.raises(ParameterError, match="x: unknown parameter \\(it takes no parameters\\)"):
        validate_params(ActionSpec("a"), {"x": 1})


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("retries", "3", "expected an integer, got string"),
        ("retries", True, "expected an integer, got boolean"),
        ("retries", 1.5, "expected an integer, got float"),
        ("ratio", "0.5", "expected a number, got string"),
        ("ratio", float("nan"), "expected a number, got float"),
        ("dry_run", "true", "expected a boolean (true/false), got string"),
        ("dry_run", 1, "expected a boolean (true/false), got integer"),
        ("body", "{}", "expected an object (table), got string"),
        ("tags", "a,b", "expected an array, got string"),
        ("url", 5, "expected a string, got integer"),
    ],
)
def test_native_types_are_strict(name: str, value: Any, expected: str) -> None:
    assert f"{name}: {expected}" in param_problems({"url": "u", name: value})


@pytest.mark.parametrize(
    ("name", "value", "converted"),
    [("retries", 2.0, 2), ("ratio", 2, 2), ("tags", ("a",), ["a"]), ("body", {"a": 1}, {"a": 1})],
)
def test_native_values_accepted(name: str, value: Any, converted: Any) -> None:
    out = validate_params(ACTION, {"url": "u", name: value})
    assert out[name] == converted
    assert type(out[name]) is type(converted)


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("retries", "42", 42),
        ("retries", " -1 ", -1),
        ("ratio", "2.5", 2.5),
        ("ratio", "7", 7),
        ("dry_run", "yes", True),
        ("dry_run", "False", False),
        ("dry_run", "0", False),
        ("body", '{"a": [1, 2]}', {"a": [1, 2]}),
        ("tags", '["x", 1]', ["x", 1]),
        ("url", "42", "42"),
    ],
)
def test_cli_strings_converted(name: str, text: str, value: Any) -> None:
    out = validate_params(ACTION, {"url": "u", name: text}, from_cli=True)
    assert out[name] == value
    assert type(out[name]) is type(value)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("retries", "4.5", 'expected an integer, got "4.5"'),
        ("ratio", "inf", 'expected a number, got "inf"'),
        ("dry_run", "perhaps", 'expected a boolean (true/false), got "perhaps"'),
        ("body", "{nope", "expected a JSON object, and this is not valid JSON"),
        ("body", "[1]", "expected a JSON object, got array"),
        ("tags", '{"a": 1}', "expected a JSON array, got table"),
    ],
)
def test_cli_strings_that_do_not_convert(name: str, text: str, expected: str) -> None:
    assert f"{name}: {expected}" in param_problems({"url": "u", name: text}, from_cli=True)


def test_enum_values_enforced() -> None:
    assert 'method: must be one of "GET", "POST", got "PUT"' in param_problems(
        {"url": "u", "method": "PUT"}
    )
    assert validate_params(ACTION, {"url": "u", "method": "POST"})["method"] == "POST"


def test_every_param_problem_listed_with_its_name() -> None:
    message = param_problems({"retries": "x", "method": "PUT", "extra": 1})
    assert "(4 problems)" in message
    assert "invalid parameters for demo action call" in message
    for name in ("url:", "retries:", "method:", "extra:"):
        assert name in message


def test_an_explicit_null_is_refused_not_taken_as_absent() -> None:
    # JSON null for an integer parameter is a wrong type; silently applying the default hid
    # the caller's bug.
    with pytest.raises(ParameterError) as exc:
        validate_params(ACTION, {"url": "u", "retries": None})
    assert "retries: null is not an integer; leave the parameter out to get its default" in str(
        exc.value
    )
    with pytest.raises(ParameterError, match="url: null is not a string"):
        validate_params(ACTION, {"url": None})
    assert validate_params(ACTION, {"url": "u"})["retries"] == 3  # absent: the default


# --- params_json_schema ----------------------------------------------------------------------


def test_params_json_schema() -> None:
    schema = params_json_schema(ACTION)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["url"]
    assert schema["properties"]["url"] == {"type": "string", "description": "Where"}
    assert schema["properties"]["retries"] == {"type": "integer", "default": 3}
    assert schema["properties"]["method"] == {
        "type": "string",
        "enum": ["GET", "POST"],
        "default": "GET",
    }
    assert list(schema["properties"]) == [p.name for p in ACTION.parameters]


def test_params_json_schema_without_parameters() -> None:
    assert params_json_schema(ActionSpec("a")) == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }


# An action of string parameters only takes a shortcut when the caller's dict already is what
# the plugin gets; whatever the parameters, the answer must be the full check's.
string_params = st.lists(
    st.builds(
        ParameterSpec,
        name=st.sampled_from(["a", "b", "c"]),
        required=st.booleans(),
        default=st.one_of(st.none(), st.just("d")),
        enum_values=st.sampled_from([(), (), ("x", "y")]),
    ),
    max_size=3,
    unique_by=lambda p: p.name,
)
given_params = st.dictionaries(
    st.sampled_from(["a", "b", "c", "z"]),
    st.one_of(st.sampled_from(["x", "y", "w"]), st.none(), st.integers(), st.just(["x"])),
    max_size=4,
)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(parameters=string_params, params=given_params, from_cli=st.booleans())
def test_the_string_shortcut_answers_what_the_full_check_answers(
    parameters: list[ParameterSpec], params: dict[str, Any], from_cli: bool
) -> None:
    action = ActionSpec("act", parameters=tuple(parameters))

    def outcome(given: Mapping[str, Any]) -> object:
        try:
            return validate_params(action, given, from_cli=from_cli)
        except ParameterError as exc:
            return str(exc)

    # A mapping that is not a dict always takes the full check.
    assert outcome(dict(params)) == outcome(MappingProxyType(params))
