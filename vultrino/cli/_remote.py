"""The remote CLI: ``list``, ``info``, ``request`` and ``audit`` against a `vultrino serve`.

``vultrino --remote URL --key K`` (or ``VULTRINO_API_URL`` / ``VULTRINO_API_KEY``) makes those
commands call the server's REST API instead of opening the store. :class:`Remote` answers the
few facade methods they use, with the same values (``CredentialInfo``, the action's result,
audit records), so the commands format them exactly as they format local ones. The server's
errors come back as the same classes of the exception tree (:data:`CODES`, refined by the
``type`` the server names), so the exit codes are the same too.

The key goes into one header of one HTTP client (:class:`vultrino._net.ApiClient`); it is
never printed, logged or put in an error message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from vultrino import errors as err_tree

if TYPE_CHECKING:
    from vultrino.info import CredentialInfo

__all__ = ["CODES", "REMOTE_COMMANDS", "Calls", "Remote", "RemoteTarget", "remote_error"]

#: The commands that talk to the server when a remote is set.
REMOTE_COMMANDS = ("list", "info", "request", "audit")

URL_ENV = "VULTRINO_API_URL"
KEY_ENV = "VULTRINO_API_KEY"


class Calls(Protocol):
    """What the remote-capable commands call: the facade, or :class:`Remote`."""

    def credentials(self) -> list[CredentialInfo]: ...
    def credential_info(self, alias: str) -> CredentialInfo: ...
    def execute(
        self,
        alias: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        from_cli: bool = False,
        plugin: str | None = None,
        source: str = "api",
    ) -> Any: ...
    def run_action(
        self,
        plugin: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        from_cli: bool = False,
        source: str = "api",
    ) -> Any: ...


Build = Callable[[str, Mapping[str, str]], err_tree.VultrinoError]

#: The one table from the REST API's error codes (server/api.py ``ERRORS``) back onto the
#: exception tree. The ``type`` the server sends refines it when it names a class of
#: vultrino.errors that takes just a message (``execute_error`` covers parameter errors, plugin
#: failures and engine errors, which exit differently).
CODES: dict[str, Build] = {
    "missing_api_key": lambda m, h: err_tree.MissingApiKeyError(m),
    "invalid_api_key": lambda m, h: err_tree.InvalidApiKeyError(m),
    "permission_denied": lambda m, h: err_tree.PermissionDeniedError(m, agent="", verb=""),
    "credential_denied": lambda m, h: err_tree.CredentialDeniedError(m),
    "approval_denied": lambda m, h: err_tree.ApprovalError(m, agent="", approval="declined"),
    "access_denied": lambda m, h: err_tree.AccessDeniedError(m),
    "rate_limited": lambda m, h: err_tree.RateLimitedError(
        m, agent="", retry_after=_seconds(h.get("retry-after"))
    ),
    "not_found": lambda m, h: err_tree.CredentialNotFoundError(m),
    "invalid_request": lambda m, h: err_tree.RequestError(m),
    "execute_error": lambda m, h: err_tree.ActionFailedError(m),
    "store_unavailable": lambda m, h: err_tree.StoreError(m),
    "busy": lambda m, h: err_tree.PluginBusyError(m),
    "invalid_host": lambda m, h: err_tree.ServerError(m),
    "invalid_origin": lambda m, h: err_tree.ServerError(m),
    "internal_error": lambda m, h: err_tree.ServerError(m),
}

_KEY_HINT = "; check --key or VULTRINO_API_KEY (`vultrino key create` on the server's host)"


def _seconds(text: str | None) -> float:
    try:
        return max(1.0, float(text or 1))
    except ValueError:
        return 1.0


def remote_error(
    status: int, data: Any, headers: Mapping[str, str], url: str
) -> err_tree.VultrinoError:
    """The exception-tree error of a refused REST call."""
    if not isinstance(data, dict) or not isinstance(data.get("code"), str):
        return err_tree.ServerError(
            f"{url} answered HTTP {status} without a Vultrino error: is it a `vultrino serve` "
            "(check --remote or VULTRINO_API_URL)?"
        )
    code = data["code"]
    message = str(data.get("error") or code)
    if code in ("missing_api_key", "invalid_api_key"):
        message = f"the server refused the API key: {message}{_KEY_HINT}"
    build: Build = CODES.get(code, _server_error)
    exc = build(message, headers)
    named = getattr(err_tree, str(data.get("type", "")), None)
    if (
        isinstance(named, type)
        and issubclass(named, err_tree.VultrinoError)
        and named is not type(exc)
        and not issubclass(named, err_tree.AgentPolicyError)  # these carry more than a message
    ):
        try:
            refined: err_tree.VultrinoError = named(message)
        except TypeError:
            return exc
        return refined
    return exc


def _server_error(message: str, headers: Mapping[str, str]) -> err_tree.VultrinoError:
    return err_tree.ServerError(message)


@dataclass(frozen=True)
class RemoteTarget:
    """Where the remote commands go: the server's base URL and the key (never shown).
    ``explicit`` when ``--remote`` was on the command line (then no other command runs)."""

    url: str
    key: str | None
    explicit: bool

    def __repr__(self) -> str:
        return f"RemoteTarget({self.url!r}, explicit={self.explicit})"


def url_from_env() -> str | None:
    return os.environ.get(URL_ENV) or None


def target(url: str | None, key: str | None) -> RemoteTarget | None:
    """The remote of ``--remote``/``--key``, else of the environment, else None."""
    env_url = os.environ.get(URL_ENV) or None
    chosen = url or env_url
    if chosen is None:
        return None
    return RemoteTarget(chosen, key or os.environ.get(KEY_ENV) or None, explicit=url is not None)


class Remote:
    """The facade methods of the remote commands, over the REST API of one server."""

    def __init__(self, where: RemoteTarget) -> None:
        from vultrino._net import ApiClient

        if not where.key:
            raise err_tree.MissingApiKeyError(
                f"--remote {where.url}: no API key; pass --key KEY or set {KEY_ENV} (create "
                "one with `vultrino key create NAME --role ROLE` on the server's host)"
            )
        self.url = where.url.rstrip("/")
        self._client = ApiClient(self.url, where.key)

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _call(
        self, method: str, path: str, *, body: Any = None, query: dict[str, str] | None = None
    ) -> Any:
        from vultrino._net import NetError

        try:
            status, data, headers = self._client.call(
                method, "/api/v1" + path, body=body, query=query
            )
        except NetError as exc:
            if exc.kind == "invalid":
                raise err_tree.ConfigError(f"--remote / {URL_ENV}: {exc}") from None
            if exc.kind == "encoding":
                raise err_tree.InvalidApiKeyError(f"{exc}{_KEY_HINT}") from None
            raise err_tree.ServerNotRunningError(
                f"{exc}; is `vultrino serve` running there? (check --remote or {URL_ENV})"
            ) from None
        if status == 200:
            return data
        raise remote_error(status, data, headers, self.url)

    # --- the facade's methods -------------------------------------------------------------

    def credentials(self) -> list[CredentialInfo]:
        return [_info(row) for row in self._call("GET", "/credentials")["credentials"]]

    def credential_info(self, alias: str) -> CredentialInfo:
        from urllib.parse import quote

        return _info(self._call("GET", "/credentials/" + quote(alias, safe="")))

    def execute(
        self,
        alias: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        from_cli: bool = False,
        plugin: str | None = None,
        source: str = "api",
    ) -> Any:
        body: dict[str, Any] = {"credential": alias, "action": action, "params": dict(params or {})}
        if plugin is not None:
            body["plugin"] = plugin
        if from_cli:
            body["string_params"] = True
        return self._call("POST", "/execute", body=body)["result"]

    def run_action(
        self,
        plugin: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        from_cli: bool = False,
        source: str = "api",
    ) -> Any:
        body: dict[str, Any] = {"plugin": plugin, "action": action, "params": dict(params or {})}
        if from_cli:
            body["string_params"] = True
        return self._call("POST", "/execute", body=body)["result"]

    def audit(
        self,
        *,
        agent: str | None = None,
        alias: str | None = None,
        outcome: str | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        given = {"agent": agent, "alias": alias, "outcome": outcome, "since": since}
        query = {k: v for k, v in given.items() if v is not None}
        if limit is not None:
            query["limit"] = str(limit)
        records: list[dict[str, Any]] = self._call("GET", "/audit", query=query)["records"]
        return records


def _info(row: Any) -> CredentialInfo:
    from vultrino.info import CredentialInfo

    if not isinstance(row, dict):
        raise err_tree.ServerError(
            "the server's answer is not a credential (is it a `vultrino serve`?)"
        )
    try:
        return CredentialInfo(
            alias=str(row["alias"]),
            id=str(row.get("id") or ""),
            type=str(row["type"]),
            description=str(row.get("description") or ""),
            plugin=row.get("plugin"),
            allow=tuple(row.get("allow") or ()),
            fields=dict(row.get("fields") or {}),
            created_at=str(row.get("created_at") or ""),
            updated_at=str(row.get("updated_at") or ""),
            version=int(row.get("version") or 1),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise err_tree.ServerError(f"the server's credential is missing {exc}") from None
