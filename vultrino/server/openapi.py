"""The OpenAPI 3.1 document of the REST API, served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

from vultrino._version import __version__

__all__ = ["document"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _json(_ref("Error"), "An error: `code` says which (see the `Error` schema)")
_AUTH_ERRORS = {
    "401": _json(_ref("Error"), "missing_api_key or invalid_api_key (also an expired key)"),
    "403": _json(_ref("Error"), "permission_denied: the key's role lacks the verb"),
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "code"],
        "properties": {
            "error": {"type": "string", "description": "What went wrong and what to do"},
            "type": {
                "type": "string",
                "description": "The error's class in Vultrino's exception tree (this server's "
                "addition to the original's {error, code}; the remote CLI exits by it)",
            },
            "code": {
                "type": "string",
                "enum": [
                    "missing_api_key",
                    "invalid_api_key",
                    "permission_denied",
                    "credential_denied",
                    "approval_denied",
                    "access_denied",
                    "rate_limited",
                    "not_found",
                    "invalid_request",
                    "execute_error",
                    "store_unavailable",
                    "busy",
                    "plugin_disabled",
                    "invalid_host",
                    "invalid_origin",
                    "internal_error",
                ],
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "version"],
        "properties": {"status": {"const": "ok"}, "version": {"type": "string"}},
    },
    "Credential": {
        "type": "object",
        "required": ["id", "alias", "type", "credential_type", "description"],
        "properties": {
            "id": {"type": "string", "description": "a UUID; accepted wherever the alias is"},
            "alias": {"type": "string"},
            "type": {"type": "string", "description": "api_key, bearer, plugin:P:T, ..."},
            "credential_type": {"type": "string", "description": "the same as type"},
            "description": {"type": "string"},
            "plugin": {"type": ["string", "null"]},
            "allow": {"type": "array", "items": {"type": "string"}},
            "fields": {
                "type": "object",
                "description": "Non-secret field values; secret ones are '********'",
            },
            "created_at": {"type": "string"},
            "updated_at": {"type": "string"},
        },
    },
    "CredentialList": {
        "type": "object",
        "required": ["credentials"],
        "properties": {"credentials": {"type": "array", "items": _ref("Credential")}},
    },
    "HttpExecute": {
        "type": "object",
        "required": ["credential", "url"],
        "additionalProperties": False,
        "properties": {
            "credential": {"type": "string", "description": "The credential's alias"},
            "method": {"type": "string", "default": "GET"},
            "url": {"type": "string", "description": "Absolute URL in the allowlist"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "body": {"description": "A string is sent as is, an object as JSON"},
            "query": {"type": "object"},
            "timeout": {"type": "number"},
        },
    },
    "ActionExecute": {
        "type": "object",
        "required": ["action"],
        "additionalProperties": False,
        "properties": {
            "credential": {"type": "string"},
            "plugin": {"type": "string"},
            "action": {"type": "string"},
            "params": {"type": "object"},
            "string_params": {
                "type": "boolean",
                "description": "The params are a command line's strings: each is converted to "
                "its declared type, as `vultrino request --param` converts it",
            },
        },
    },
    "HttpResult": {
        "type": "object",
        "required": ["status", "headers", "body"],
        "properties": {
            "status": {"type": "integer"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "body": {"type": "string"},
            "body_encoding": {"enum": ["text", "base64"]},
            "elapsed_ms": {"type": "number"},
            "url": {"type": "string"},
        },
    },
    "ActionResult": {
        "type": "object",
        "required": ["result"],
        "properties": {"result": {"description": "The plugin's result, scrubbed"}},
    },
    "Plugin": {
        "type": "object",
        "required": ["name", "status"],
        "properties": {
            "name": {"type": "string"},
            "status": {"enum": ["ok", "broken"]},
            "version": {"type": "string"},
            "builtin": {"type": "boolean"},
            "description": {"type": "string"},
            "credential_types": {"type": "array", "items": {"type": "string"}},
            "actions": {"type": "array", "items": {"type": "string"}},
            "tools": {"type": "array", "items": {"type": "string"}},
            "reason": {"type": "string"},
        },
    },
    "Approval": {
        "type": "object",
        "required": ["id", "plugin", "action", "summary", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "agent": {"type": ["string", "null"]},
            "key": {"type": ["string", "null"]},
            "plugin": {"type": "string"},
            "action": {"type": "string"},
            "credential": {"type": ["string", "null"]},
            "tool": {"type": ["string", "null"]},
            "summary": {"type": "string", "description": "Exactly what would be sent"},
            "message": {"type": "string"},
            "created_at": {"type": "string"},
            "expires_in_s": {"type": "number"},
        },
    },
    "Decision": {
        "type": "object",
        "required": ["decision"],
        "properties": {"decision": {"enum": ["approve", "deny"]}},
    },
}


def document() -> dict[str, Any]:
    """The whole document (built on each request: it is small)."""
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Vultrino REST API",
            "version": __version__,
            "description": "Use credentials without seeing them. Authenticate with "
            "`Authorization: Bearer KEY` (an API key from `vultrino key create`, an agent "
            "token, or the server token).",
        },
        "servers": [{"url": "/api/v1"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
        },
        "paths": {
            "/health": {
                "get": {
                    "summary": "Liveness and version (no authentication)",
                    "security": [],
                    "responses": {"200": _json(_ref("Health"), "The server is up")},
                }
            },
            "/credentials": {
                "get": {
                    "summary": "Credentials the key's role may see (needs read)",
                    "security": secured,
                    "responses": {
                        "200": _json(_ref("CredentialList"), "Metadata only"),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/credentials/{alias}": {
                "get": {
                    "summary": "One credential's metadata (needs read)",
                    "security": secured,
                    "parameters": [
                        {
                            "name": "alias",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _json(_ref("Credential"), "Metadata only"),
                        **_AUTH_ERRORS,
                        "404": _ERROR,
                    },
                }
            },
            "/execute": {
                "post": {
                    "summary": "Use a credential: an HTTP request, or a plugin action "
                    "(needs execute)",
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"oneOf": [_ref("HttpExecute"), _ref("ActionExecute")]}
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            {"oneOf": [_ref("HttpResult"), _ref("ActionResult")]},
                            "The result, with every form of the credential's secrets removed",
                        ),
                        "400": _ERROR,
                        **_AUTH_ERRORS,
                        "429": {
                            "description": "rate_limited; Retry-After says when to try again",
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                            "content": {"application/json": {"schema": _ref("Error")}},
                        },
                    },
                }
            },
            "/audit": {
                "get": {
                    "summary": "Audit records, oldest first (needs admin)",
                    "security": secured,
                    "parameters": [
                        {"name": n, "in": "query", "schema": {"type": t}}
                        for n, t in (
                            ("agent", "string"),
                            ("alias", "string"),
                            ("outcome", "string"),
                            ("since", "string"),
                            ("limit", "integer"),
                        )
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "records": {"type": "array", "items": {"type": "object"}}
                                },
                            },
                            "The matching records",
                        ),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/plugins": {
                "get": {
                    "summary": "Installed plugins, broken ones with their reason (needs read)",
                    "security": secured,
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "plugins": {"type": "array", "items": _ref("Plugin")}
                                },
                            },
                            "The plugins",
                        ),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/approvals": {
                "get": {
                    "summary": "Calls waiting for a person's approval (needs admin)",
                    "security": secured,
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "approvals": {"type": "array", "items": _ref("Approval")}
                                },
                            },
                            "The waiting calls",
                        ),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/approvals/{id}": {
                "post": {
                    "summary": "Approve or deny a waiting call (needs admin)",
                    "security": secured,
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("Decision")}},
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "string"},
                                    "outcome": {"enum": ["granted", "declined"]},
                                    "decided_by": {"type": "string"},
                                },
                            },
                            "Decided",
                        ),
                        **_AUTH_ERRORS,
                        "404": _ERROR,
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
    }
