"""The web admin UI in a real browser: Debian's chromium, headless, driven by Playwright.

One walk-through of what a person does: log in, add a TOTP credential through the form the
totp plugin's field definitions generate, rotate it, create an API key (shown once), watch a
call made with that key wait in the approvals inbox (the list refreshes by itself), approve
it, and find the call in the audit view. A screenshot of each page is written under the
test's ``tmp_path``/screenshots.

Skipped only when there is no chromium on PATH (scripts/setup.sh installs it; CI has it).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.mcp_helpers import HANG_GUARD_S, McpHome, make_home
from tests.e2e.serve_helpers import audit_records, serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium; scripts/setup.sh)"
)

ADMIN_PASSWORD = "browser admin 0c9e"
TOTP_SECRET = "JBSWY3DPEHPK3PXP"
TOTP_ROTATED = "KRSXG5CTMVRXEZLU"


@pytest.fixture
def home(isolated_home: Path) -> McpHome:
    h = make_home(isolated_home)
    for args, stdin in (
        (("admin", "set-password", "--stdin"), ADMIN_PASSWORD + "\n"),
        (("plugin", "install", "totp"), None),
        (
            ("role", "create", "gated", "-p", "read,execute", "-c", "echo-*", "--approve", "echo"),
            None,
        ),
    ):
        r = h.cli(*args, input=stdin)
        assert r.returncode == 0, r.stderr
    return h


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # chromium refuses to run as root inside its own sandbox; the test is the sandbox here
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield b
        finally:
            b.close()


def test_a_person_administers_vultrino_in_a_browser(
    home: McpHome, browser: Any, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    errors: list[str] = []

    with serve(home) as s:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(HANG_GUARD_S * 1000)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        failed: list[tuple[str, int]] = []
        page.on(
            "response",
            lambda r: (
                failed.append((r.url.removeprefix(s.url), r.status)) if r.status >= 400 else None
            ),
        )

        def shot(name: str) -> None:
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

        # --- log in ------------------------------------------------------------------------
        page.goto(s.url + "/")
        assert page.url.startswith(s.url + "/login")
        shot("01-login")
        page.get_by_label("Admin password").fill("not the password")
        page.get_by_role("button", name="Log in").click()
        assert page.get_by_role("alert").inner_text() == "Wrong password."
        page.get_by_label("Admin password").fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("heading", name="Dashboard").wait_for()
        shot("02-dashboard")
        page.keyboard.press("Tab")  # the first stop is the skip link, then the navigation
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"

        # --- a credential from the totp plugin's generated form ------------------------------
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Credentials").click()
        page.get_by_role("link", name="Add a credential").click()
        page.get_by_label("Type").select_option("plugin:totp:totp")
        page.get_by_role("button", name="Choose this type").click()
        secret_box = page.get_by_label("Secret (base32) (required)")
        assert secret_box.get_attribute("type") == "password"
        assert page.get_by_text("The base32 key shown when setting up").is_visible()
        assert page.get_by_label("Digits").input_value() == "6"  # the manifest's default
        algorithm = page.get_by_label("Algorithm")
        assert algorithm.evaluate("e => [...e.options].map(o => o.value)") == [
            "",
            "SHA1",
            "SHA256",
            "SHA512",
        ]
        page.get_by_label("Alias (required)").fill("totp-main")
        page.get_by_label("Description").fill("the ops console")
        secret_box.fill(TOTP_SECRET)
        algorithm.select_option("SHA256")
        shot("03-credential-form")
        page.get_by_role("button", name="Add credential").click()
        page.get_by_text("Added credential totp-main.").wait_for()
        row = page.get_by_role("row", name="totp-main")
        assert "plugin:totp:totp" in row.inner_text() and "the ops console" in row.inner_text()
        shot("04-credentials")
        assert TOTP_SECRET not in page.content()

        page.get_by_role("link", name="Rotate totp-main").click()
        page.get_by_label("Secret (base32) (required)").fill(TOTP_ROTATED)
        shot("05-rotate")
        page.get_by_role("button", name="Rotate").click()
        page.get_by_text("Rotated totp-main: now at version 2.").wait_for()

        # --- an API key, shown once ----------------------------------------------------------
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Agents").click()
        page.get_by_label("Name", exact=True).first.fill("web-key")
        page.get_by_label("Role", exact=True).select_option("gated")
        page.get_by_role("button", name="Create key").click()
        key = page.get_by_label("Value").input_value()
        assert key.startswith("vk_")
        assert page.get_by_text("it is shown this once").is_visible()
        shot("06-key-created")
        page.reload()
        assert key not in page.content()
        assert page.get_by_role("row", name="web-key").is_visible()

        # --- a call with that key waits; the approvals page shows it by itself -------------
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Approvals").click()
        page.get_by_text("Nothing waits for approval.").wait_for()
        result: dict[str, httpx.Response] = {}

        def call() -> None:
            result["r"] = httpx.post(
                s.api + "/execute",
                headers={"Authorization": f"Bearer {key}"},
                json={"credential": "echo-one", "action": "echo", "params": {"message": "ship"}},
                timeout=HANG_GUARD_S,
            )

        caller = threading.Thread(target=call)
        caller.start()
        approve = page.get_by_role("button", name="Approve call")
        approve.wait_for()  # appears without a reload: the page's own script refreshed it
        assert "web-key" in page.locator("#waiting").inner_text()
        shot("07-approvals")
        approve.click()
        page.get_by_text("Approved call").wait_for()
        caller.join(HANG_GUARD_S)
        assert result["r"].status_code == 200, result["r"].text
        assert result["r"].json()["result"]["params"] == {"message": "ship"}

        # --- the call in the audit view ------------------------------------------------------
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
        page.get_by_label("Credential").fill("echo-one")
        page.get_by_role("button", name="Filter").click()
        records = page.get_by_role("table").inner_text()
        assert "echo:echo" in records and "key=key:web-key" in records
        assert "decided_by=admin (web)" in records
        shot("08-audit")

        page.get_by_role("navigation", name="Main").get_by_role("link", name="Plugins").click()
        assert page.get_by_role("row", name="totp").first.is_visible()
        shot("09-plugins")
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
        assert "gated" in page.get_by_role("table").last.inner_text()  # calls per agent
        for count in ("3 credentials", "3 plugins", "0 agents", "1 API keys", "0 waiting"):
            assert page.get_by_role("link", name=count).is_visible(), count
        shot("10-dashboard-after")
        page.get_by_role("button", name="Log out").click()
        page.get_by_role("heading", name="Log in").wait_for()

    # the wrong password was the only refused request: no missing asset, no script error, no
    # CSP violation
    assert failed == [("/login", 401)], failed
    assert errors == [
        "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    ], errors
    decision = next(r for r in audit_records(home) if r["action"] == "approval.granted")
    assert decision["decided_by"] == "admin (web)"
    added = [r["action"] for r in audit_records(home) if r.get("alias") == "totp-main"]
    assert added == ["credential.add", "credential.rotate"]
    assert len(list(shots.glob("*.png"))) == 10
