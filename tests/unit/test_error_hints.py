"""What a model is told to do next about each error (``VultrinoError.hint``, docs/mcp.md)."""

from __future__ import annotations

import pytest

from vultrino import errors

CRED_HINT = "Call list_credentials to see the aliases you can use."
ENGINE_HINT = "The plugin failed on this call only; you may retry, or tell the user."
STORE_HINT = "Vultrino's credential store is unavailable; tell the user."

CASES: list[tuple[errors.VultrinoError, str]] = [
    (errors.VultrinoError("x"), ""),
    (errors.ConfigError("x"), ""),
    (errors.WrongPasswordError("x"), STORE_HINT),
    (errors.StoreLockedError("x"), STORE_HINT),
    (errors.CredentialNotFoundError("x"), CRED_HINT),
    (errors.CredentialExistsError("x"), ""),
    (
        errors.CredentialMismatchError("x"),
        "Use a credential of the type named in this tool's `credential` description "
        "(list_credentials shows the type of each alias).",
    ),
    (errors.ParameterError("x"), "Fix the arguments to match the tool's input schema."),
    (errors.PluginNotFoundError("x"), "The tool list changed; call tools/list again."),
    (errors.ManifestError("x"), ""),
    (errors.ActionFailedError("x"), ""),
    (errors.ActionFailedError("x", code="invalid_params"), "Fix the arguments and call again."),
    (
        errors.ActionFailedError("x", code="invalid_credential"),
        "This credential cannot be used for this action; try another alias.",
    ),
    (
        errors.AccessDeniedError("x"),
        "The credential's policy refused this call; stay within what it allows.",
    ),
    (
        errors.AgentPolicyError("x", agent="a"),
        "Your agent profile refused this call; stay within what it allows.",
    ),
    (errors.RateLimitedError("x", agent="a", retry_after=1.0), "Wait before calling again."),
    (errors.ApprovalError("x", agent="a", approval="declined"), ""),
    (errors.EngineError("x"), ENGINE_HINT),
    (errors.PluginTimeoutError("x"), ENGINE_HINT),
    (
        errors.PluginBusyError("x"),
        "The plugin is busy with other calls; wait a few seconds, then retry.",
    ),
    (errors.AgentNotFoundError("x"), ""),
]


@pytest.mark.parametrize(("exc", "hint"), CASES, ids=[f"{type(e).__name__}" for e, _ in CASES])
def test_each_error_carries_its_hint(exc: errors.VultrinoError, hint: str) -> None:
    assert exc.hint == hint


def test_an_mcp_error_result_is_the_message_then_the_hint() -> None:
    from vultrino.mcp.server import error_result

    result = error_result(errors.CredentialNotFoundError("no credential named 'gh'"))
    assert result.is_error
    assert [c.text for c in result.content] == [f"no credential named 'gh'. {CRED_HINT}"]  # type: ignore[union-attr]
    bare = error_result(errors.ApprovalError("declined!", agent="a", approval="declined"))
    assert [c.text for c in bare.content] == ["declined!"]  # type: ignore[union-attr]
