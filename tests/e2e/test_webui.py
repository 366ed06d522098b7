"""The web admin UI of `vultrino serve`, over a plain HTTP client: login, sessions, CSRF,
lockout, escaping and security headers, against a real server process on 127.0.0.1.

The browser walk-through (a real chromium) is tests/e2e/test_webui_browser.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.e2e.mcp_helpers import ECHO_WAT, HANG_GUARD_S, McpHome, make_home, write_plugin
from tests.e2e.serve_helpers import Server, audit_records, serve

ADMIN_PASSWORD = "admin password 7d41"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def home(isolated_home: Path) -> McpHome:
    h = make_home(isolated_home)
    r = h.cli("admin", "set-password", "--stdin", input=ADMIN_PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    return h


def _client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=HANG_GUARD_S, follow_redirects=False)


def _csrf(html: str) -> str:
    found = _CSRF.search(html)
    assert found, html
    return found.group(1)


def login(c: httpx.Client, password: str = ADMIN_PASSWORD) -> httpx.Response:
    page = c.get("/login")
    assert page.status_code == 200
    return c.post("/login", data={"csrf": _csrf(page.text), "password": password, "next": "/"})


def test_admin_set_password_explains_what_is_wrong(home: McpHome) -> None:
    r = home.cli("admin", "set-password")
    assert r.returncode != 0 and "--stdin" in r.stderr  # no terminal to ask on
    short = home.cli("admin", "set-password", "--stdin", input="short\n")
    assert short.returncode != 0 and "at least 8 characters" in short.stderr
    assert "short" not in short.stdout
    ok = home.cli("admin", "set-password", "--stdin", input="another password\n")
    assert ok.returncode == 0, ok.stderr
    with serve(home) as s, _client(s) as c:
        assert login(c).status_code == 401  # the old one no longer works
        assert login(c, "another password").status_code == 303
    assert any(r["action"] == "admin.password" for r in audit_records(home))
    assert "another password" not in (home.root / "audit.log").read_text()


def test_login_starts_a_new_session_and_logout_ends_it(home: McpHome) -> None:
    with serve(home) as s, _client(s) as c:
        first = c.get("/", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/login?next=%2F"
        # an id planted by someone else is not taken over: the login page issues its own
        c.cookies.set("vultrino_session", "planted-by-an-attacker")
        page = c.get("/login")
        anonymous = page.cookies["vultrino_session"]
        assert anonymous != "planted-by-an-attacker"
        cookie = page.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
        r = c.post(
            "/login", data={"csrf": _csrf(page.text), "password": ADMIN_PASSWORD, "next": "/"}
        )
        assert r.status_code == 303 and r.headers["location"] == "/"
        logged_in = r.cookies["vultrino_session"]
        assert logged_in != anonymous  # a new id at login: no fixation
        assert c.get("/").status_code == 200
        # the pre-login id is worth nothing now
        with _client(s) as other:
            other.cookies.set("vultrino_session", anonymous)
            assert other.get("/").status_code == 303
        dash = c.get("/")
        r = c.post("/logout", data={"csrf": _csrf(dash.text)})
        assert r.status_code == 303 and r.headers["location"] == "/login"
        with _client(s) as other:
            other.cookies.set("vultrino_session", logged_in)
            assert other.get("/").status_code == 303  # ended on the server, not just forgotten


def test_next_after_login_stays_on_this_server(home: McpHome) -> None:
    with serve(home) as s, _client(s) as c:
        page = c.get("/login?next=//evil.example/x")
        r = c.post(
            "/login",
            data={"csrf": _csrf(page.text), "password": ADMIN_PASSWORD, "next": "//evil.example"},
        )
        assert r.status_code == 303 and r.headers["location"] == "/"


def test_a_post_without_the_right_csrf_token_is_refused_and_changes_nothing(
    home: McpHome,
) -> None:
    with serve(home) as s, _client(s) as c:
        assert login(c).status_code == 303
        token = _csrf(c.get("/credentials").text)
        missing = c.post("/credentials/delete", data={"alias": "github"})
        assert missing.status_code == 403 and "CSRF" in missing.text
        wrong = c.post("/credentials/delete", data={"alias": "github", "csrf": token + "x"})
        assert wrong.status_code == 403
        # another session's token is no good either
        with _client(s) as other:
            assert login(other).status_code == 303
            foreign = _csrf(other.get("/").text)
        assert foreign != token
        r = c.post("/credentials/delete", data={"alias": "github", "csrf": foreign})
        assert r.status_code == 403
        assert "github" in c.get("/credentials").text
        # and the login form: no token, no login
        with _client(s) as fresh:
            fresh.get("/login")
            r = fresh.post("/login", data={"password": ADMIN_PASSWORD})
            assert r.status_code == 403 and "vultrino_session" not in r.cookies
        # not logged in at all: refused before anything else
        with _client(s) as anonymous:
            r = anonymous.post("/credentials/delete", data={"alias": "github", "csrf": token})
            assert r.status_code == 403
        ok = c.post("/credentials/delete", data={"alias": "github", "csrf": token})
        assert ok.status_code == 303
        assert "Deleted credential github" in c.get("/credentials").text
    assert any(r["action"] == "credential.remove" for r in audit_records(home))


def test_five_failures_lock_the_client_out(home: McpHome) -> None:
    with serve(home) as s, _client(s) as c:
        for attempt in range(1, 5):
            r = login(c, f"wrong {attempt}")
            assert r.status_code == 401 and "Wrong password." in r.text
        fifth = login(c, "wrong 5")
        assert fifth.status_code == 429 and "Too many failed logins" in fifth.text
        assert "15 more minutes" in fifth.text
        right = login(c)  # even the right password, while locked out
        assert right.status_code == 429
        assert c.get("/").status_code == 303
        assert ADMIN_PASSWORD not in s.log() and "wrong 1" not in s.log()


def test_hostile_text_is_shown_as_text(home: McpHome, tmp_path: Path) -> None:
    script = "<script>alert('x')</script>"
    image = '<img src=x onerror="alert(1)">'
    src = write_plugin(tmp_path, "hostile", ECHO_WAT, tool="hostile_tool")
    manifest = (src / "plugin.toml").read_text()
    manifest = manifest.replace('description = "test plugin hostile"', f"description = '{image}'")
    manifest = manifest.replace('display_name = "hostile key"', f'display_name = "{script}"')
    (src / "plugin.toml").write_text(manifest)
    r = home.cli("plugin", "install", str(src))
    assert r.returncode == 0, r.stderr
    with serve(home) as s, _client(s) as c:
        assert login(c).status_code == 303
        page = c.get("/credentials/new?type=plugin:hostile:key")
        token = _csrf(page.text)
        r = c.post(
            "/credentials/new",
            data={
                "csrf": token,
                "type": "plugin:hostile:key",
                "alias": f"a{script}",
                "description": image,
                "field.token": "tok-4b1e",
            },
        )
        assert r.status_code == 303, r.text
        pages = [
            c.get("/credentials").text,
            c.get("/plugins").text,
            c.get("/credentials/new?type=plugin:hostile:key").text,
            c.get("/").text,
            c.get("/audit").text,
        ]
    for html in pages:
        assert "<script>alert" not in html and "<img src=x" not in html
    assert "a&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in pages[0]
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in pages[1]
    assert "&lt;script&gt;" in pages[2]
    assert "tok-4b1e" not in "".join(pages)


def test_security_headers_on_every_page(home: McpHome) -> None:
    with serve(home) as s, _client(s) as c:
        responses = [c.get("/login"), c.get("/static/app.css"), c.get("/nope")]
        assert login(c).status_code == 303
        responses += [c.get(p) for p in ("/", "/credentials", "/audit", "/approvals")]
        for r in responses:
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["x-content-type-options"] == "nosniff"
        for r in responses[3:]:
            assert r.status_code == 200
            assert "<script>" not in r.text and " on" + "click=" not in r.text  # nothing inline
        assert responses[1].headers["content-type"].startswith("text/css")


def test_a_wrong_form_is_refused_with_its_reason_and_keeps_what_was_typed(
    home: McpHome,
) -> None:
    with serve(home) as s, _client(s) as c:
        assert login(c).status_code == 303
        page = c.get("/credentials/new?type=api_key")
        r = c.post(
            "/credentials/new",
            data={
                "csrf": _csrf(page.text),
                "type": "api_key",
                "alias": "github",  # taken
                "description": "kept description",
                "field.key": "secret-value-9e1",
            },
        )
        assert r.status_code == 400
        assert "already exists" in r.text and "kept description" in r.text
        assert "secret-value-9e1" not in r.text  # a secret is never echoed back
        unknown = c.get("/credentials/new?type=plugin:nope:nope")
        assert unknown.status_code == 400 and "Unknown credential type" in unknown.text
        bad = c.get("/audit?outcome=maybe")
        assert bad.status_code == 400 and "unknown outcome" in bad.text


def test_under_tls_the_session_cookie_is_secure(home: McpHome, tmp_path: Path) -> None:
    import ssl
    import subprocess

    cert, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key_file), "-out", str(cert)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    with serve(home, "--tls-cert", str(cert), "--tls-key", str(key_file)) as s:
        assert s.url.startswith("https://")
        verify = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=s.url, timeout=HANG_GUARD_S, verify=verify) as c:
            page = c.get("/login")
            assert "secure" in page.headers["set-cookie"].lower()
            r = c.post(
                "/login", data={"csrf": _csrf(page.text), "password": ADMIN_PASSWORD, "next": "/"}
            )
            assert r.status_code == 303
            cookie = r.headers["set-cookie"].lower()
            assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
            assert "strict-transport-security" in r.headers
            assert c.get("/").status_code == 200


def test_plugins_roles_agents_and_keys_through_the_forms(home: McpHome) -> None:
    broken = home.root / "plugins" / "halfway"
    broken.mkdir()
    (broken / "plugin.toml").write_text('[plugin]\nname = "halfway"\n')  # no version, no module
    with serve(home) as s, _client(s) as c:
        assert login(c).status_code == 303
        plugins = c.get("/plugins").text
        assert "halfway" in plugins and "broken" in plugins and "version" in plugins
        token = _csrf(plugins)

        def post(path: str, **data: str | list[str]) -> httpx.Response:
            r = c.post(path, data={"csrf": token, **data})
            assert r.status_code in (303, 400), r.text
            return c.get(r.headers["location"]) if r.status_code == 303 else r

        assert "Installed plugin hmac." in post("/plugins/install", source="hmac").text
        again = post("/plugins/install", source="hmac").text
        assert "already installed" in again  # the installer's own words, shown as they are
        assert "Removed plugin hmac." in post("/plugins/remove", name="hmac").text
        assert "plugin:hmac:" not in c.get("/credentials/new").text

        r = post("/access/role", name="ops", permission=["read", "execute"], credentials="echo-*")
        assert "Created role ops." in r.text
        bad = post("/access/role", name="nope", permission=["fly"])
        assert "fly" in bad.text  # the unknown verb is named
        r = post("/access/agent", name="bot", credentials="github")
        secret = re.search(r'id="new-secret"[^>]*value="([^"]+)"', r.text)
        assert secret and secret.group(1).startswith("vagent_")
        assert secret.group(1) not in c.get("/access").text  # shown once
        r = post("/access/key", name="k1", role="ops", expires="30d")
        key = re.search(r'id="new-secret"[^>]*value="([^"]+)"', r.text)
        assert key and key.group(1).startswith("vk_")
        listed = httpx.get(
            s.api + "/credentials", headers={"Authorization": f"Bearer {key.group(1)}"}
        )
        assert [x["alias"] for x in listed.json()["credentials"]] == ["echo-one"]
        in_use = post("/access/role/delete", name="ops")
        assert "revoke them first" in in_use.text
        key_id = re.search(r'name="id" value="([^"]+)"', c.get("/access").text)
        assert key_id
        assert "Revoked key k1" in post("/access/key/revoke", id=key_id.group(1)).text
        revoked = httpx.get(
            s.api + "/credentials", headers={"Authorization": f"Bearer {key.group(1)}"}
        )
        assert revoked.status_code == 401
        assert "Deleted role ops." in post("/access/role/delete", name="ops").text
        assert "Removed agent bot." in post("/access/agent/remove", name="bot").text
    actions = [r["action"] for r in audit_records(home) if r.get("source") == "admin"]
    for done in ("plugin.install", "plugin.remove", "role.add", "agent.add", "key.create",
                 "key.revoke", "role.remove", "agent.remove"):  # fmt: skip
        assert done in actions, done
