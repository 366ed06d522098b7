#!/usr/bin/env python3
"""A REST client for `vultrino serve`, with httpx: the health check, the credentials a key may
see, and authenticated requests through POST /api/v1/execute, with the server's errors raised
as exceptions that keep its ``code`` (the original Vultrino's python-client.py).

    VULTRINO_URL=http://127.0.0.1:7879 VULTRINO_API_KEY=vk_… python examples/rest_client.py

VULTRINO_URL        the server (default http://127.0.0.1:7879)
VULTRINO_API_KEY    an API key (`vultrino key create my-app --role executor` on the server)
EXAMPLE_CREDENTIAL  the credential to use (default: the first one the key may see)
EXAMPLE_API_URL     the API that credential is for (default https://api.github.com)

Needs httpx (a dependency of vultrino; else `pip install httpx`), nothing else of Vultrino:
the application holds an API key, never a credential or the store's password.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import httpx


class VultrinoAPIError(Exception):
    """An error answer of the server: ``status`` (401, 403, ...), ``code`` (``missing_api_key``,
    ``credential_denied``, ...) and its message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code = status, code


class VultrinoClient:
    def __init__(self, base_url: str, api_key: str, *, timeout: float = 60.0) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
        )

    def __enter__(self) -> VultrinoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            try:
                err = response.json()
            except ValueError:
                err = {"code": "http_error", "error": response.text}
            raise VultrinoAPIError(response.status_code, err.get("code", ""), err.get("error", ""))
        return response.json()

    def health(self) -> dict[str, Any]:
        return self._send("GET", "/health")  # type: ignore[no-any-return]

    def credentials(self) -> list[dict[str, Any]]:
        return self._send("GET", "/credentials")["credentials"]  # type: ignore[no-any-return]

    def execute(
        self,
        credential: str,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        body: Any = None,
    ) -> dict[str, Any]:
        """An HTTP request made with ``credential``: ``{status, headers, body, ...}``."""
        payload: dict[str, Any] = {"credential": credential, "method": method, "url": url}
        if headers:
            payload["headers"] = headers
        if query:
            payload["query"] = query
        if body is not None:
            payload["body"] = body
        return self._send("POST", "/execute", json=payload)  # type: ignore[no-any-return]

    def action(self, credential: str, action: str, params: dict[str, Any]) -> Any:
        """A plugin action (``sign``, ``code``, ...) with ``credential``: its result."""
        payload = {"credential": credential, "action": action, "params": params}
        return self._send("POST", "/execute", json=payload)["result"]


def main() -> int:
    base = os.environ.get("VULTRINO_URL", "http://127.0.0.1:7879")
    key = os.environ.get("VULTRINO_API_KEY", "")
    api = os.environ.get("EXAMPLE_API_URL", "https://api.github.com").rstrip("/")
    if not key:
        print(
            "error: set VULTRINO_API_KEY to an API key of the server at VULTRINO_URL "
            "(`vultrino key create my-app --role executor` on its host)",
            file=sys.stderr,
        )
        return 2

    with VultrinoClient(base, key) as client:
        health = client.health()
        print(f"server {base}: {health['status']}, version {health['version']}")

        creds = client.credentials()
        print("credentials this key may see:")
        for c in creds:
            print(f"  {c['alias']:12} {c['credential_type']:10} allow={c['allow']}")
        if not creds:
            print("no credential to use: add one on the server (`vultrino add`)", file=sys.stderr)
            return 1
        alias = os.environ.get("EXAMPLE_CREDENTIAL", creds[0]["alias"])

        result = client.execute(alias, "GET", f"{api}/user", headers={"Accept": "application/json"})
        print(f"GET {api}/user with {alias}: {result['status']} {result['body'][:80]}")

        try:
            client.execute(alias, "GET", "https://evil.example/steal")
        except VultrinoAPIError as exc:
            print(f"a URL outside the allowlist: refused ({exc.code})")
        else:
            print("a URL outside the allowlist was not refused", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
