"""The REST API under ``/api/v1``: thin handlers over the facade and the call pipeline.

Every credential use is one :class:`~vultrino.pipeline.Pipeline` call made as the request's
identity (:mod:`vultrino.server.auth`): an API key or agent token acts as its profile, with the
approvals inbox as the person who approves, ``source="api"``, and the key and the client's
address in the audit record; the server token acts as the home's owner. The gate, the
scrubbing and the audit are the pipeline's, as for every other way in. Errors are answered
``{"error": message, "code": code}`` from one table over the exception tree (:data:`ERRORS`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vultrino._json import jsonable
from vultrino._version import __version__
from vultrino.agents import AgentScope
from vultrino.core import Vultrino
from vultrino.errors import (
    AccessDeniedError,
    AgentError,
    AgentNotFoundError,
    AgentPolicyError,
    ApprovalError,
    ApprovalNotFoundError,
    AuthenticationError,
    ConfigError,
    CredentialDeniedError,
    CredentialNotFoundError,
    InvalidApiKeyError,
    KeyNotFoundError,
    MissingApiKeyError,
    PermissionDeniedError,
    PluginBusyError,
    PluginDisabledError,
    PluginNotFoundError,
    RateLimitedError,
    RequestError,
    StoreError,
    VultrinoError,
)
from vultrino.info import CredentialInfo
from vultrino.server.auth import Authenticator, Identity
from vultrino.server.inbox import Inbox

__all__ = ["ERRORS", "PREFIX", "Api", "error_body", "error_status"]

logger = logging.getLogger("vultrino.server")

PREFIX = "/api/v1"
_MAX_BODY = 4 << 20

Message = Callable[[VultrinoError], str]

#: The one table from the exception tree to an HTTP answer: (status, code, message); the most
#: specific class wins (the error's MRO is walked). Codes of the original Vultrino are kept:
#: missing_api_key, invalid_api_key, permission_denied, credential_denied, execute_error.
ERRORS: dict[type[VultrinoError], tuple[int, str, Message | None]] = {
    MissingApiKeyError: (401, "missing_api_key", None),
    InvalidApiKeyError: (401, "invalid_api_key", None),  # ExpiredApiKeyError too
    AuthenticationError: (401, "invalid_api_key", None),
    PermissionDeniedError: (403, "permission_denied", None),
    CredentialDeniedError: (
        403,
        "credential_denied",
        lambda e: f"Access denied to credential: {getattr(e, 'alias', '')}",
    ),
    RateLimitedError: (429, "rate_limited", None),
    ApprovalError: (403, "approval_denied", None),
    AgentPolicyError: (403, "permission_denied", None),
    AccessDeniedError: (403, "access_denied", None),
    CredentialNotFoundError: (404, "not_found", None),
    PluginNotFoundError: (404, "not_found", None),
    KeyNotFoundError: (404, "not_found", None),
    AgentNotFoundError: (404, "not_found", None),
    ApprovalNotFoundError: (404, "not_found", None),
    RequestError: (400, "invalid_request", None),
    ConfigError: (400, "invalid_request", None),
    AgentError: (400, "invalid_request", None),
    StoreError: (503, "store_unavailable", None),
    PluginBusyError: (503, "busy", None),
    PluginDisabledError: (409, "plugin_disabled", None),
    VultrinoError: (400, "execute_error", None),  # a call that failed, as the original says
}


def error_status(exc: VultrinoError) -> tuple[int, str, str]:
    """(status, code, message) of an error, from :data:`ERRORS`."""
    for cls in type(exc).__mro__:
        entry = ERRORS.get(cls)
        if entry is not None:
            status, code, message = entry
            return status, code, message(exc) if message else str(exc)
    return 500, "internal_error", "internal error"  # pragma: no cover - VultrinoError is there


def error_body(exc: VultrinoError) -> Response:
    status, code, message = error_status(exc)
    headers = {}
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if isinstance(exc, PluginBusyError):
        headers["Retry-After"] = "1"
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="vultrino"'
    # `type` (the error's class in vultrino.errors) is this server's addition to the original's
    # {error, code}: the remote CLI exits with the same code as it would locally
    return JSONResponse(
        {"error": message, "code": code, "type": type(exc).__name__}, status, headers
    )


class _Calls(Protocol):
    """What a handler calls: the facade (the server token) or an agent scope (a profile)."""

    def credentials(self) -> list[CredentialInfo]: ...
    def credential_info(self, alias: str) -> CredentialInfo: ...
    def execute(
        self,
        alias: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        plugin: str | None = None,
        source: str = "api",
        from_cli: bool = False,
    ) -> Any: ...
    def run_action(
        self,
        plugin: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        source: str,
        from_cli: bool = False,
    ) -> Any: ...


def _credential(c: CredentialInfo) -> dict[str, Any]:
    # `credential_type` is the original's name for the field; `type` is this one's
    return {**c.to_dict(), "credential_type": c.type}


_HTTP_KEYS = frozenset({"credential", "method", "url", "headers", "body", "query", "timeout"})
_ACTION_KEYS = frozenset({"credential", "plugin", "action", "params", "string_params"})


def execute_call(
    body: Any,
) -> tuple[str | None, str | None, str, dict[str, Any], bool, bool]:
    """(alias, plugin, action, params, is_http, string_params) of an ``/execute`` body:
    ``{credential?, plugin?, action, params, string_params?}`` for a plugin action, else the
    original's HTTP shape ``{credential, method, url, headers?, body?, query?}``
    (RequestError names what is wrong). ``string_params``: the values are a command line's
    strings, converted to each parameter's declared type as the CLI converts them."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object (see /api/v1/openapi.json)")
    if "action" in body:
        extra = sorted(set(body) - _ACTION_KEYS)
        if extra:
            raise RequestError(f"unknown field(s) {extra}; a plugin action takes {_ACTION_KEYS}")
        alias, plugin, action = body.get("credential"), body.get("plugin"), body["action"]
        given = body.get("params", {})
        for name, value in (("credential", alias), ("plugin", plugin)):
            if value is not None and not isinstance(value, str):
                raise RequestError(f"{name} must be a string")
        if not isinstance(action, str) or not action:
            raise RequestError("action must be a non-empty string")
        if not isinstance(given, dict):
            raise RequestError("params must be a JSON object")
        if alias is None and plugin is None:
            raise RequestError("name a credential, or the plugin of an action that needs none")
        strings = body.get("string_params", False)
        if not isinstance(strings, bool):
            raise RequestError("string_params must be true or false")
        return alias, plugin, action, given, False, strings
    extra = sorted(set(body) - _HTTP_KEYS)
    if extra:
        raise RequestError(
            f"unknown field(s) {extra}: an HTTP request takes credential, method, url, headers, "
            "body, query (or send action and params to run a plugin action)"
        )
    alias, url = body.get("credential"), body.get("url")
    if not isinstance(alias, str) or not alias:
        raise RequestError("credential must be the alias of a credential (a string)")
    if not isinstance(url, str) or not url:
        raise RequestError("url must be an absolute http(s) URL (a string)")
    method = body.get("method", "GET")
    if not isinstance(method, str):
        raise RequestError("method must be a string such as GET")
    params: dict[str, Any] = {"method": method.upper(), "url": url}
    for name in ("headers", "query"):
        value = body.get(name)
        if value:
            if not isinstance(value, dict):
                raise RequestError(f"{name} must be a JSON object")
            params[name] = value
    if "timeout" in body:
        params["timeout"] = body["timeout"]
    payload = body.get("body")
    if isinstance(payload, str):
        params["body"] = payload
    elif isinstance(payload, dict):
        params["body_json"] = payload
    elif payload is not None:  # a list or a scalar: sent as its JSON
        params["body"] = json.dumps(payload)
        headers = dict(params.get("headers") or {})
        if not any(str(k).lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        params["headers"] = headers
    return alias, None, "request", params, True, False


class Api:
    """The handlers, over one facade, its authenticator and the approvals inbox."""

    def __init__(self, v: Vultrino, auth: Authenticator, inbox: Inbox) -> None:
        self.v = v
        self.auth = auth
        self.inbox = inbox

    def routes(self) -> list[Route]:
        p = PREFIX
        return [
            Route(f"{p}/health", self.health, methods=["GET"]),
            Route(f"{p}/credentials", self.credentials, methods=["GET"]),
            Route(f"{p}/credentials/{{alias:path}}", self.credential, methods=["GET"]),
            Route(f"{p}/execute", self.execute, methods=["POST"]),
            Route(f"{p}/audit", self.audit, methods=["GET"]),
            Route(f"{p}/plugins", self.plugins, methods=["GET"]),
            Route(f"{p}/approvals", self.approvals, methods=["GET"]),
            Route(f"{p}/approvals/{{approval_id}}", self.decide, methods=["POST"]),
            Route(f"{p}/openapi.json", self.openapi, methods=["GET"]),
        ]

    # --- the edge -----------------------------------------------------------------------

    def _calls(self, who: Identity, request: Request) -> _Calls:
        if who.profile is None:
            return self.v
        client = request.client.host if request.client else None
        scope: AgentScope = self.v.as_agent(
            who.profile,
            approver=self.inbox.approver(who.name if who.kind == "key" else None, who.key_id),
            key=who.label if who.kind == "key" else None,
            client=client,
        )
        return scope

    async def _run(self, request: Request, work: Callable[[Identity], Any]) -> Response:
        """Identify the caller and run ``work``, in one worker thread (one hop per request);
        answer its JSON or its error."""
        header = request.headers.get("authorization")

        def identified() -> Any:
            return work(self.auth.identify(header))

        try:
            result = await anyio.to_thread.run_sync(identified)
        except VultrinoError as exc:
            return error_body(exc)
        if isinstance(result, Response):
            return result
        return JSONResponse(jsonable(result))

    # --- handlers -----------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def openapi(self, request: Request) -> Response:
        from vultrino.server.openapi import document

        return JSONResponse(document())

    async def credentials(self, request: Request) -> Response:
        def work(who: Identity) -> Any:
            return {
                "credentials": [_credential(c) for c in self._calls(who, request).credentials()]
            }

        return await self._run(request, work)

    async def credential(self, request: Request) -> Response:
        alias = request.path_params["alias"]

        def work(who: Identity) -> Any:
            return _credential(self._calls(who, request).credential_info(alias))

        return await self._run(request, work)

    async def execute(self, request: Request) -> Response:
        try:
            raw = await request.body()
            if len(raw) > _MAX_BODY:
                raise RequestError(f"the body is over {_MAX_BODY} bytes")
            try:
                body = json.loads(raw)
            except ValueError:
                raise RequestError("the body is not JSON: send a JSON object") from None
            alias, plugin, action, params, is_http, strings = execute_call(body)
        except VultrinoError as exc:
            return error_body(exc)

        def work(who: Identity) -> Any:
            calls = self._calls(who, request)
            if alias is None:
                assert plugin is not None
                return {
                    "result": calls.run_action(
                        plugin, action, params, source="api", from_cli=strings
                    )
                }
            value = calls.execute(
                alias, action, params, plugin=plugin, source="api", from_cli=strings
            )
            return value if is_http else {"result": value}

        return await self._run(request, work)

    async def audit(self, request: Request) -> Response:
        q = request.query_params
        unknown = sorted(set(q) - {"agent", "alias", "outcome", "since", "limit"})

        def work(who: Identity) -> Any:
            self.auth.require(who, "admin")
            if unknown:
                raise RequestError(
                    f"unknown filter(s) {unknown}: use agent, alias, outcome, since, limit"
                )
            limit_text = q.get("limit")
            if limit_text is not None and not limit_text.isdigit():
                raise RequestError("limit must be a whole number")
            records = self.v.audit(
                agent=q.get("agent"),
                alias=q.get("alias"),
                outcome=q.get("outcome"),
                since=q.get("since"),
                limit=int(limit_text) if limit_text is not None else None,
            )
            return {"records": records}

        return await self._run(request, work)

    async def plugins(self, request: Request) -> Response:
        def work(who: Identity) -> Any:
            self.auth.require(who, "read")
            rows: list[dict[str, Any]] = []
            for p in self.v.plugins():
                m = p.manifest
                rows.append(
                    {
                        "name": p.name,
                        "version": m.plugin.version,
                        "builtin": p.builtin,
                        "status": "ok",
                        "description": m.plugin.description,
                        "credential_types": [t.name for t in m.credential_types],
                        "actions": [a.name for a in m.actions],
                        "tools": [t.name for t in m.mcp_tools],
                    }
                )
            rows += [
                {"name": name, "status": "broken", "reason": reason}
                for name, reason in sorted(self.v.broken_plugins().items())
            ]
            return {"plugins": rows}

        return await self._run(request, work)

    async def approvals(self, request: Request) -> Response:
        def work(who: Identity) -> Any:
            self.auth.require(who, "admin")
            return {"approvals": self.inbox.waiting()}

        return await self._run(request, work)

    async def decide(self, request: Request) -> Response:
        approval_id = request.path_params["approval_id"]
        try:
            body = json.loads(await request.body() or b"{}")
            decision = body.get("decision") if isinstance(body, dict) else None
            if decision not in ("approve", "deny"):
                raise RequestError('send {"decision": "approve"} or {"decision": "deny"}')
        except ValueError:
            return error_body(RequestError("the body is not JSON"))
        except VultrinoError as exc:
            return error_body(exc)

        def work(who: Identity) -> Any:
            self.auth.require(who, "admin")
            item = self.inbox.decide(
                approval_id, approve=decision == "approve", by=who.label, by_key=who.key_id
            )
            return {"id": item.id, "outcome": item.outcome, "decided_by": item.decided_by}

        return await self._run(request, work)
