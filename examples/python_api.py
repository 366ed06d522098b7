#!/usr/bin/env python3
"""The Python API: a script opens the store, adds a credential, makes a request with it, and
hands an agent a scope that can do only what its profile allows.

    python examples/python_api.py

EXAMPLE_API_URL  the API the credential is for (default https://api.github.com)
GITHUB_TOKEN     the token to store (default: a made-up one; the API then answers 401)

Everything happens on a throwaway home in a temporary directory, removed at the end; your own
~/.vultrino is not touched. A real script opens its home with ``Vultrino.open()`` (the home
from VULTRINO_HOME, the password from VULTRINO_PASSWORD_FILE or an unlock session).
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path

from vultrino import CredentialDeniedError, Vultrino, VultrinoError

API_URL = os.environ.get("EXAMPLE_API_URL", "https://api.github.com").rstrip("/")
TOKEN = os.environ.get("GITHUB_TOKEN", "ghp_madeUpExampleToken0000000000000000")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="vultrino-example-") as work:
        home = Path(work) / "home"
        password = secrets.token_urlsafe(24)

        # 1. A new sealed store (Vultrino.open(home) opens an existing one).
        with Vultrino.init(home, password) as v:
            # 2. A credential bound to one API: the host refuses to send it anywhere else.
            v.add_credential(
                "github-api",
                "api_key",
                {"key": TOKEN},
                description="GitHub for the example",
                allow=[f"{API_URL}/*"],
            )
            v.add_credential(
                "stripe-api", "api_key", {"key": "sk_test_madeUp0000"}, allow=[f"{API_URL}/*"]
            )

            # 3. Metadata only: the secret field is masked.
            for info in v.credentials():
                print(f"{info.alias:12} {info.type:8} id={info.id} fields={info.fields}")

            # 4. A request: the result never holds the token (the host scrubs it).
            result = v.execute("github-api", "request", {"url": f"{API_URL}/user"})
            print(f"GET {API_URL}/user -> {result['status']}: {result['body'][:60]}")

            # 5. An agent's scope: only github-* and the HTTP tool.
            v.add_agent("code-bot", credentials=["github-*"], tools=["http_request"])
            agent = v.as_agent("code-bot")
            print("code-bot sees:", [c.alias for c in agent.credentials()])
            print("code-bot's tools:", [t.name for t in agent.tools()])
            agent.execute("github-api", "request", {"url": f"{API_URL}/user"})
            try:
                agent.execute("stripe-api", "request", {"url": f"{API_URL}/v1/customers"})
            except CredentialDeniedError as exc:
                print(f"code-bot and stripe-api: refused ({exc})")
            else:
                print("code-bot used stripe-api: its profile was not applied", file=sys.stderr)
                return 1

            # 6. The audit log: one record per call, refusals included, never a secret.
            for record in v.audit(agent="code-bot"):
                print(f"audit: {record['agent']} {record['alias']} {record['outcome']}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VultrinoError as exc:  # every Vultrino error says what happened and what to do
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
