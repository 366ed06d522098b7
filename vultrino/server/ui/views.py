"""The web admin UI's handlers: thin, over the facade and the approvals inbox.

Every page needs a logged-in session (:mod:`vultrino.server.ui.sessions`); every form posts
its session's CSRF token, and a POST without the right one is refused (403) before anything
is read or changed. Each action is one facade call, the same one the CLI makes —
``add_credential``, ``rotate``, ``remove_credential``, ``install_plugin``, ``create_key`` … —
run in a worker thread; approvals are decided through the inbox, audited as decided by
``admin (web)``. Nothing here reaches a plugin, the store or the audit log any other way.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from vultrino._version import __version__
from vultrino.core import Vultrino
from vultrino.errors import RequestError, VultrinoError
from vultrino.server.inbox import Inbox
from vultrino.server.ui._templates import render
from vultrino.server.ui.forms import form_fields, submitted_fields
from vultrino.server.ui.sessions import LoginLimiter, Session, Sessions

__all__ = ["COOKIE", "DECIDED_BY", "WebUI"]

COOKIE = "vultrino_session"
DECIDED_BY = "admin (web)"
PAGE_SIZE = 50
RECENT = 10
PER_AGENT_WINDOW = 1000  # the calls per agent on the dashboard: over this many newest records
_MAX_FORM = 1 << 20
_STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
_PERMISSIONS = ("read", "execute", "write", "admin")

Form = dict[str, list[str]]
Handler = Callable[[Request, Session, Form], Awaitable[Response]]
T = TypeVar("T")


def _one(form: Form, name: str, default: str = "") -> str:
    values = form.get(name)
    return values[0] if values else default


def _globs(text: str) -> list[str]:
    """Comma- or whitespace-separated patterns, as typed into one text box."""
    return [p for p in text.replace(",", " ").split() if p]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


class WebUI:
    """The pages under ``/``, over one facade and the approvals inbox."""

    def __init__(self, v: Vultrino, inbox: Inbox, *, tls: bool) -> None:
        self.v = v
        self.inbox = inbox
        self.secure = tls
        self.sessions = Sessions()
        self.limiter = LoginLimiter()
        self._static = {
            p.name: (p.read_bytes(), _STATIC_TYPES[p.suffix])
            for p in _STATIC.iterdir()
            if p.suffix in _STATIC_TYPES
        }

    def routes(self) -> list[BaseRoute]:
        a = self._admin
        return [
            Route("/", a(self.dashboard), methods=["GET"]),
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", a(self.logout), methods=["POST"]),
            Route("/credentials", a(self.credentials), methods=["GET"]),
            Route("/credentials/new", a(self.credential_new), methods=["GET", "POST"]),
            Route("/credentials/rotate", a(self.credential_rotate), methods=["GET", "POST"]),
            Route("/credentials/delete", a(self.credential_delete), methods=["GET", "POST"]),
            Route("/plugins", a(self.plugins), methods=["GET"]),
            Route("/plugins/install", a(self.plugin_install), methods=["POST"]),
            Route("/plugins/remove", a(self.plugin_remove), methods=["POST"]),
            Route("/access", a(self.access), methods=["GET"]),
            Route("/access/key", a(self.key_create), methods=["POST"]),
            Route("/access/key/revoke", a(self.key_revoke), methods=["POST"]),
            Route("/access/role", a(self.role_create), methods=["POST"]),
            Route("/access/role/delete", a(self.role_delete), methods=["POST"]),
            Route("/access/agent", a(self.agent_create), methods=["POST"]),
            Route("/access/agent/remove", a(self.agent_remove), methods=["POST"]),
            Route("/audit", a(self.audit), methods=["GET"]),
            Route("/approvals", a(self.approvals), methods=["GET"]),
            Route("/approvals/decide", a(self.decide), methods=["POST"]),
            Route("/static/{name}", self.static, methods=["GET"]),
        ]

    # --- the edge ---------------------------------------------------------------------------

    def _session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def _cookie(self, response: Response, session: Session | None) -> None:
        if session is None:
            response.delete_cookie(
                COOKIE, path="/", httponly=True, samesite="strict", secure=self.secure
            )
        else:
            response.set_cookie(
                COOKIE, session.id, path="/", httponly=True, samesite="strict", secure=self.secure
            )

    async def _form(self, request: Request) -> Form:
        body = await request.body()
        if len(body) > _MAX_FORM:
            raise RequestError(f"the form is over {_MAX_FORM} bytes")
        form: Form = {}
        for key, value in parse_qsl(
            body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=1000
        ):
            form.setdefault(key, []).append(value)
        return form

    def _admin(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A logged-in session, and on a POST the session's CSRF token, before ``handler``."""

        async def endpoint(request: Request) -> Response:
            session = self._session(request)
            if session is None or not session.authenticated:
                if request.method != "GET":
                    return self._refuse(
                        request, 403, "Log in first: this session is not logged in."
                    )
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?{urlencode({'next': target})}", 303)
            form: Form = {}
            if request.method == "POST":
                try:
                    form = await self._form(request)
                except (VultrinoError, ValueError) as exc:
                    return self._refuse(request, 400, str(exc))
                if not session.csrf_ok(_one(form, "csrf") or None):
                    return self._refuse(
                        request,
                        403,
                        "The form's security token is missing or wrong (CSRF). Reload the page "
                        "and submit it again.",
                    )
            return await handler(request, session, form)

        return endpoint

    def _page(
        self,
        request: Request,
        session: Session | None,
        template: str,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        flash = session.data.pop("flash", "") if session is not None else ""
        error = session.data.pop("error", "") if session is not None else ""
        html = render(
            template,
            csrf=session.csrf if session is not None else "",
            logged_in=session is not None and session.authenticated,
            path=request.url.path,
            flash=flash,
            flash_error=error,
            waiting_count=len(self.inbox.waiting()) if session and session.authenticated else 0,
            version=__version__,
            **context,
        )
        return HTMLResponse(html, status)

    def _refuse(self, request: Request, status: int, message: str) -> HTMLResponse:
        session = self._session(request)
        return self._page(request, session, "error.html", status, message=message)

    def _back(
        self, session: Session, to: str, *, flash: str = "", error: str = ""
    ) -> RedirectResponse:
        if flash:
            session.data["flash"] = flash
        if error:
            session.data["error"] = error
        return RedirectResponse(to, 303)

    @staticmethod
    async def _call(fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn)

    # --- login ------------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        session = self._session(request)
        if session is not None and session.authenticated:
            return RedirectResponse("/", 303)
        if session is None:
            session = self.sessions.anonymous()
        has_password = await self._call(self.v.admin_password_set)
        response = self._page(
            request,
            session,
            "login.html",
            next=_safe_next(request.query_params.get("next")),
            has_password=has_password,
            error="",
        )
        self._cookie(response, session)
        return response

    async def login(self, request: Request) -> Response:
        client = request.client.host if request.client else "?"
        session = self._session(request)
        try:
            form = await self._form(request)
        except (VultrinoError, ValueError) as exc:
            return self._refuse(request, 400, str(exc))
        next_url = _safe_next(_one(form, "next"))

        def again(status: int, error: str) -> Response:
            fresh = session or self.sessions.anonymous()
            page = self._page(
                request,
                fresh,
                "login.html",
                status,
                next=next_url,
                has_password=True,
                error=error,
            )
            self._cookie(page, fresh)
            return page

        locked = self.limiter.locked_for(client)
        if locked:
            return again(429, _locked_message(locked))
        if session is None or session.authenticated or not session.csrf_ok(_one(form, "csrf")):
            return self._refuse(
                request,
                403,
                "The login form's security token is missing or wrong (CSRF). Open the login "
                "page again and retry.",
            )
        password = _one(form, "password")
        ok = bool(password) and await self._call(lambda: self.v.check_admin_password(password))
        if not ok:
            if self.limiter.failed(client):
                return again(429, _locked_message(self.limiter.locked_for(client)))
            if not await self._call(self.v.admin_password_set):
                return again(
                    401, "No admin password is set: run `vultrino admin set-password` first."
                )
            return again(401, "Wrong password.")
        self.limiter.succeeded(client)
        fresh = self.sessions.login(session)  # a new id: one planted before login is dead
        response = RedirectResponse(next_url, 303)
        self._cookie(response, fresh)
        return response

    async def logout(self, request: Request, session: Session, form: Form) -> Response:
        self.sessions.end(session.id)
        response = RedirectResponse("/login", 303)
        self._cookie(response, None)
        return response

    # --- dashboard --------------------------------------------------------------------------

    async def dashboard(self, request: Request, session: Session, form: Form) -> Response:
        context = await self._call(lambda: dashboard_data(self.v))
        context["waiting"] = self.inbox.waiting()
        return self._page(request, session, "dashboard.html", **context)

    # --- credentials ------------------------------------------------------------------------

    async def credentials(self, request: Request, session: Session, form: Form) -> Response:
        rows = await self._call(self.v.credentials)
        return self._page(request, session, "credentials.html", credentials=rows)

    async def credential_new(self, request: Request, session: Session, form: Form) -> Response:
        types = await self._call(self.v.types)
        chosen = _one(form, "type") if form else request.query_params.get("type", "")
        info = next((t for t in types if t.name == chosen), None)

        def page(
            status: int = 200, error: str = "", previous: dict[str, str] | None = None
        ) -> Response:
            fields = form_fields(info.spec, previous) if info is not None else []
            return self._page(
                request,
                session,
                "credential_new.html",
                status,
                types=types,
                chosen=info,
                fields=fields,
                error=error,
                alias=_one(form, "alias"),
                description=_one(form, "description"),
                allow=_one(form, "allow"),
                builtin=info is not None and info.plugin == "http",
            )

        if request.method == "GET":
            if chosen and info is None:
                return page(400, f"Unknown credential type {chosen!r}: pick one from the list.")
            return page()
        if info is None:
            return page(400, f"Unknown credential type {chosen!r}: pick one from the list.")
        spec = info.spec
        values = submitted_fields(spec, {k: v[0] for k, v in form.items() if v})
        alias = _one(form, "alias").strip()
        allow = _lines(_one(form, "allow"))
        try:
            added = await self._call(
                lambda: self.v.add_credential(
                    alias, info.name, values, _one(form, "description").strip() or None, allow
                )
            )
        except VultrinoError as exc:
            shown = {k: v for k, v in values.items() if k not in spec.secret_fields}
            return page(400, str(exc), shown)
        return self._back(session, "/credentials", flash=f"Added credential {added.alias}.")

    async def credential_rotate(self, request: Request, session: Session, form: Form) -> Response:
        alias = _one(form, "alias") if form else request.query_params.get("alias", "")
        try:
            info = await self._call(lambda: self.v.credential_info(alias))
            _, spec = await self._call(lambda: self.v.credential_type(info.type))
        except VultrinoError as exc:
            return self._back(session, "/credentials", error=str(exc))

        def page(status: int = 200, error: str = "") -> Response:
            return self._page(
                request,
                session,
                "credential_rotate.html",
                status,
                credential=info,
                fields=form_fields(spec, only_secret=True),
                error=error,
            )

        if request.method == "GET":
            return page()
        values = submitted_fields(spec, {k: v[0] for k, v in form.items() if v}, only_secret=True)
        try:
            rotated = await self._call(lambda: self.v.rotate(alias, values))
        except VultrinoError as exc:
            return page(400, str(exc))
        return self._back(
            session,
            "/credentials",
            flash=f"Rotated {rotated.alias}: now at version {rotated.version}.",
        )

    async def credential_delete(self, request: Request, session: Session, form: Form) -> Response:
        alias = _one(form, "alias") if form else request.query_params.get("alias", "")
        if request.method == "GET":
            try:
                info = await self._call(lambda: self.v.credential_info(alias))
            except VultrinoError as exc:
                return self._back(session, "/credentials", error=str(exc))
            return self._page(request, session, "credential_delete.html", credential=info)
        try:
            removed = await self._call(lambda: self.v.remove_credential(alias))
        except VultrinoError as exc:
            return self._back(session, "/credentials", error=str(exc))
        return self._back(session, "/credentials", flash=f"Deleted credential {removed.alias}.")

    # --- plugins ----------------------------------------------------------------------------

    async def plugins(self, request: Request, session: Session, form: Form) -> Response:
        def data() -> dict[str, Any]:
            return {
                "plugins": sorted(self.v.plugins(), key=lambda p: (not p.builtin, p.name)),
                "broken": sorted(self.v.broken_plugins().items()),
            }

        return self._page(request, session, "plugins.html", **await self._call(data))

    async def plugin_install(self, request: Request, session: Session, form: Form) -> Response:
        source = _one(form, "source").strip()
        if not source:
            return self._back(session, "/plugins", error="Give a path or URL to install from.")
        try:
            result = await self._call(
                lambda: self.v.install_plugin(source, force=bool(_one(form, "force")))
            )
        except VultrinoError as exc:
            return self._back(session, "/plugins", error=str(exc))
        return self._back(session, "/plugins", flash=f"Installed plugin {result.name}.")

    async def plugin_remove(self, request: Request, session: Session, form: Form) -> Response:
        name = _one(form, "name")
        try:
            await self._call(lambda: self.v.remove_plugin(name))
        except VultrinoError as exc:
            return self._back(session, "/plugins", error=str(exc))
        return self._back(session, "/plugins", flash=f"Removed plugin {name}.")

    # --- agents, roles, keys ----------------------------------------------------------------

    async def _access_page(
        self, request: Request, session: Session, status: int = 200, **extra: Any
    ) -> Response:
        def data() -> dict[str, Any]:
            return {"agents": self.v.agents(), "roles": self.v.roles(), "keys": self.v.keys()}

        shown = session.data.pop("new_secret", None)
        new_secret = None
        if shown is not None:
            what, _, value = shown.partition("\n")
            new_secret = {"what": what, "value": value}
        context: dict[str, Any] = {"new_secret": new_secret, "error": "", **extra}
        return self._page(
            request,
            session,
            "access.html",
            status,
            permissions=_PERMISSIONS,
            **await self._call(data),
            **context,
        )

    async def access(self, request: Request, session: Session, form: Form) -> Response:
        return await self._access_page(request, session)

    async def key_create(self, request: Request, session: Session, form: Form) -> Response:
        name, role = _one(form, "name").strip(), _one(form, "role")
        expires = _one(form, "expires").strip() or "never"
        try:
            info, secret = await self._call(
                lambda: self.v.create_key(name, role=role, expires=expires)
            )
        except VultrinoError as exc:
            return await self._access_page(request, session, 400, error=str(exc))
        return self._shown_once(session, f"API key {info.name} (role {info.role})", secret)

    def _shown_once(self, session: Session, what: str, value: str) -> Response:
        """Redirect to the access page, which shows ``value`` once: it waits in the session
        only until that page is drawn (a reload then neither shows it nor makes another)."""
        session.data["new_secret"] = f"{what}\n{value}"
        return RedirectResponse("/access", 303)

    async def key_revoke(self, request: Request, session: Session, form: Form) -> Response:
        ref = _one(form, "id")
        try:
            info = await self._call(lambda: self.v.revoke_key(ref))
        except VultrinoError as exc:
            return self._back(session, "/access", error=str(exc))
        return self._back(session, "/access", flash=f"Revoked key {info.name} ({info.prefix}...).")

    async def role_create(self, request: Request, session: Session, form: Form) -> Response:
        name = _one(form, "name").strip()
        try:
            await self._call(
                lambda: self.v.add_role(
                    name,
                    permissions=form.get("permission", []),
                    credentials=_globs(_one(form, "credentials")),
                    tools=_globs(_one(form, "tools")),
                    approve=_globs(_one(form, "approve")),
                    rate=_one(form, "rate").strip() or None,
                    description=_one(form, "description").strip(),
                )
            )
        except VultrinoError as exc:
            return await self._access_page(request, session, 400, error=str(exc))
        return self._back(session, "/access", flash=f"Created role {name}.")

    async def role_delete(self, request: Request, session: Session, form: Form) -> Response:
        name = _one(form, "name")
        try:
            await self._call(lambda: self.v.remove_role(name))
        except VultrinoError as exc:
            return self._back(session, "/access", error=str(exc))
        return self._back(session, "/access", flash=f"Deleted role {name}.")

    async def agent_create(self, request: Request, session: Session, form: Form) -> Response:
        name = _one(form, "name").strip()
        try:
            info, token = await self._call(
                lambda: self.v.add_agent(
                    name,
                    credentials=_globs(_one(form, "credentials")),
                    tools=_globs(_one(form, "tools")),
                    approve=_globs(_one(form, "approve")),
                    rate=_one(form, "rate").strip() or None,
                    description=_one(form, "description").strip(),
                )
            )
        except VultrinoError as exc:
            return await self._access_page(request, session, 400, error=str(exc))
        return self._shown_once(session, f"agent {info.name}'s token", token)

    async def agent_remove(self, request: Request, session: Session, form: Form) -> Response:
        name = _one(form, "name")
        try:
            await self._call(lambda: self.v.remove_agent(name))
        except VultrinoError as exc:
            return self._back(session, "/access", error=str(exc))
        return self._back(session, "/access", flash=f"Removed agent {name}.")

    # --- audit ------------------------------------------------------------------------------

    async def audit(self, request: Request, session: Session, form: Form) -> Response:
        q = request.query_params
        filters = {k: q.get(k, "").strip() for k in ("agent", "alias", "outcome", "since")}
        page_text = q.get("page", "1")
        page = int(page_text) if page_text.isdigit() and int(page_text) >= 1 else 1
        given = {k: v for k, v in filters.items() if v}
        try:
            records, more = await self._call(
                lambda: self.v.audit_page(**given, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
            )
            error, status = "", 200
        except VultrinoError as exc:
            records, more, error, status = [], False, str(exc), 400

        def link(n: int) -> str:
            return "/audit?" + urlencode({**given, "page": str(n)})

        return self._page(
            request,
            session,
            "audit.html",
            status,
            records=[_row(r) for r in records],
            filters=filters,
            page=page,
            prev_url=link(page - 1) if page > 1 else None,
            next_url=link(page + 1) if more else None,
            error=error,
        )

    # --- approvals --------------------------------------------------------------------------

    async def approvals(self, request: Request, session: Session, form: Form) -> Response:
        return self._page(request, session, "approvals.html", waiting=self.inbox.waiting())

    async def decide(self, request: Request, session: Session, form: Form) -> Response:
        approval_id = _one(form, "id")
        decision = _one(form, "decision")
        if decision not in ("approve", "deny"):
            return self._back(session, "/approvals", error="Choose approve or deny.")
        try:
            item = await self._call(
                lambda: self.inbox.decide(
                    approval_id, approve=decision == "approve", by=DECIDED_BY, by_key=None
                )
            )
        except VultrinoError as exc:
            return self._back(session, "/approvals", error=str(exc))
        verb = "Approved" if item.outcome == "granted" else "Denied"
        return self._back(session, "/approvals", flash=f"{verb} call {item.id}.")

    # --- assets -----------------------------------------------------------------------------

    async def static(self, request: Request) -> Response:
        found = self._static.get(request.path_params["name"])
        if found is None:
            return Response("not found", 404, media_type="text/plain")
        body, media_type = found
        return Response(body, media_type=media_type)


def _safe_next(value: str | None) -> str:
    """Where to go after login: a path on this server only (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _locked_message(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return (
        "Too many failed logins from this address: logins are refused for "
        f"{minutes} more minute{'s' if minutes != 1 else ''}."
    )


def _row(rec: dict[str, Any]) -> dict[str, Any]:
    """An audit record as the table shows it."""
    extra = {
        k: rec[k]
        for k in ("error", "approval", "tool", "subject", "decided_by", "key", "client")
        if rec.get(k) is not None
    }
    return {
        "ts": rec.get("ts", ""),
        "agent": rec.get("agent") or "—",
        "alias": rec.get("alias") or "—",
        "plugin": rec.get("plugin") or "",
        "action": rec.get("action") or "",
        "outcome": rec.get("outcome") or "",
        "source": rec.get("source") or "",
        "duration_ms": rec.get("duration_ms"),
        "detail": ", ".join(f"{k}={v}" for k, v in extra.items()),
    }


def dashboard_data(v: Vultrino) -> dict[str, Any]:
    """What the dashboard shows: counts, the newest records, calls per agent over the newest
    :data:`PER_AGENT_WINDOW` records. The audit log is read from its end, never whole."""
    recent, _ = v.audit_page(limit=RECENT)
    window, _ = v.audit_page(limit=PER_AGENT_WINDOW)
    per_agent = Counter(
        r.get("agent") or "(no agent)" for r in window if r.get("source") != "admin"
    )
    return {
        "counts": {
            "credentials": v.credential_count(),
            "plugins": len(v.plugins()),
            "broken": len(v.broken_plugins()),
            "agents": len(v.agents()),
            "api_keys": len(v.keys()),
        },
        "recent": [_row(r) for r in recent],
        "per_agent": per_agent.most_common(20),
        "window": PER_AGENT_WINDOW,
    }
