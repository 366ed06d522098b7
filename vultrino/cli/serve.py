"""`vultrino serve` and `vultrino approvals list|approve|deny`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vultrino.cli._common import (
    HomeOpt,
    JsonOpt,
    emit_json,
    err,
    handle_errors,
    home_arg,
    table,
)

app = typer.Typer(invoke_without_command=True)

#: Where `vultrino serve --proxy` listens, the original Vultrino's proxy address.
DEFAULT_PROXY_LISTEN = "127.0.0.1:7878"
approvals_app = typer.Typer(
    no_args_is_help=True, help="Calls waiting in the running server's approvals inbox."
)


@app.callback()
@handle_errors(json_flag=None)
def serve(
    ctx: typer.Context,
    bind: Annotated[
        str | None,
        typer.Option(
            "--bind",
            help="HOST:PORT to listen on (default [server] bind, else "
            "127.0.0.1:7879; port 0 picks a free one).",
        ),
    ] = None,
    tls_cert: Annotated[
        str | None, typer.Option("--tls-cert", help="PEM certificate (chain) to serve HTTPS.")
    ] = None,
    tls_key: Annotated[str | None, typer.Option("--tls-key", help="Its PEM private key.")] = None,
    insecure_http: Annotated[
        bool,
        typer.Option(
            "--insecure-http", help="Allow plain HTTP on an address that is not loopback."
        ),
    ] = False,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-proxy",
            help="Address or network of a reverse proxy whose X-Forwarded-For/-Proto are "
            "believed (repeat).",
        ),
    ] = None,
    mcp: Annotated[
        bool,
        typer.Option(
            "--mcp", help="Serve MCP over stdio instead (the original's form of `vultrino mcp`)."
        ),
    ] = False,
    proxy: Annotated[
        bool,
        typer.Option(
            "--proxy",
            help="Also run the forward proxy (http://PROXY/https://api.example.com/path with "
            "X-Vultrino-Credential), in this process on its own port.",
        ),
    ] = False,
    proxy_listen: Annotated[
        str | None,
        typer.Option(
            "--proxy-listen",
            help="HOST:PORT of the forward proxy (default 127.0.0.1:7878; implies --proxy).",
        ),
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Serve the REST API (/api/v1), MCP over streamable HTTP (/mcp) and API keys.

    The store is unlocked once at start from VULTRINO_PASSWORD or VULTRINO_PASSWORD_FILE (or a
    prompt on a terminal). SIGTERM stops accepting connections and lets calls in flight
    finish. Binding anything but loopback needs --tls-cert and --tls-key, or --insecure-http.

    Examples:

      vultrino serve                                  (http://127.0.0.1:7879)

      vultrino serve --bind 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem

      vultrino serve --bind 127.0.0.1:7879 --trusted-proxy 127.0.0.1   (behind Caddy/nginx)

      vultrino serve --proxy        (and the forward proxy on http://127.0.0.1:7878)
    """
    if ctx.invoked_subcommand is not None:
        return
    if mcp:
        given = [
            name
            for name, value in (
                ("--bind", bind),
                ("--tls-cert", tls_cert),
                ("--tls-key", tls_key),
                ("--insecure-http", insecure_http),
                ("--trusted-proxy", trusted_proxy),
                ("--proxy", proxy),
                ("--proxy-listen", proxy_listen),
            )
            if value
        ]
        if given:
            err(
                f"error: --mcp serves MCP over stdio, where {', '.join(given)} mean nothing; "
                "leave them out, or use `vultrino mcp --http` for MCP over HTTP"
            )
            raise typer.Exit(2)
        from vultrino.cli.mcp import mcp_serve

        mcp_serve(ctx, home=home)
        return
    from vultrino.cli._common import open_vultrino
    from vultrino.server.run import serve as run_server
    from vultrino.server.settings import settings

    with open_vultrino(home) as v:
        s = settings(
            v.config,
            bind=bind,
            tls_cert=tls_cert,
            tls_key=tls_key,
            insecure_http=insecure_http,
            trusted_proxies=tuple(trusted_proxy or ()),
            proxy_listen=proxy_listen or (DEFAULT_PROXY_LISTEN if proxy else None),
        )
        if s.public and s.tls_cert is None:
            err(
                f"warning: serving plain HTTP on {s.host}, which is not loopback "
                "(--insecure-http): API keys and results cross the network unencrypted"
            )
        run_server(v, s)


def _client(home: Any) -> tuple[str, str, str | None]:
    """(base URL, server token, the server's certificate) of the server on this home."""
    from vultrino.mcp.http import TOKEN_FILE, ensure_http_token
    from vultrino.paths import resolve_home
    from vultrino.server.run import running_server

    h = resolve_home(home_arg(home))
    info = running_server(h.root)
    if not (h.root / TOKEN_FILE).exists():
        from vultrino.errors import ServerNotRunningError

        raise ServerNotRunningError(f"no server token in {h.root}; is `vultrino serve` running?")
    token, _ = ensure_http_token(h.root)
    return str(info["url"]), token, info.get("tls_cert")


def _call(home: Any, method: str, path: str, body: Any = None) -> Any:
    from vultrino._net import NetError, local_api
    from vultrino.errors import (
        ApprovalNotFoundError,
        PermissionDeniedError,
        ServerError,
        ServerNotRunningError,
    )

    url, token, cert = _client(home)
    try:
        status, data = local_api(method, url + path, token=token, body=body, cafile=cert)
    except NetError as exc:
        raise ServerNotRunningError(
            f"the server recorded in the home does not answer ({exc}); is `vultrino serve` "
            "still running?"
        ) from None
    if status == 200:
        return data
    message = data.get("error") if isinstance(data, dict) else None
    code = data.get("code") if isinstance(data, dict) else None
    text = f"the server answered {status}: {message or 'no message'}"
    if code == "not_found":
        raise ApprovalNotFoundError(text)
    if code == "permission_denied":
        raise PermissionDeniedError(text, agent="", verb="admin")
    raise ServerError(text)


@approvals_app.command("list")
@handle_errors()
def approvals_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """List the calls waiting for approval in the running server.

    Example: vultrino approvals list
    """
    rows = _call(home, "GET", "/api/v1/approvals")["approvals"]
    if json_out:
        emit_json(rows)
        return
    if not rows:
        err("no call waits for approval")
        return
    table(
        [
            (
                r["id"],
                r.get("agent") or "(user)",
                f"{r['plugin']}:{r['action']}",
                r.get("credential") or "-",
                f"{r['expires_in_s']:.0f}s",
                r["summary"],
            )
            for r in rows
        ],
        ("id", "agent", "action", "credential", "left", "call"),
    )


def _decide(home: Any, approval_id: str, decision: str, json_out: bool) -> None:
    result = _call(home, "POST", f"/api/v1/approvals/{approval_id}", {"decision": decision})
    if json_out:
        emit_json(result)
    else:
        err(f"{result['outcome']} call {result['id']}")


@approvals_app.command("approve")
@handle_errors()
def approvals_approve(
    approval_id: Annotated[str, typer.Argument(help="The id `approvals list` shows.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Approve a waiting call: it runs now, and the decision is audited.

    Example: vultrino approvals approve 3f9a1c07
    """
    _decide(home, approval_id, "approve", json_out)


@approvals_app.command("deny")
@handle_errors()
def approvals_deny(
    approval_id: Annotated[str, typer.Argument(help="The id `approvals list` shows.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Deny a waiting call: it is refused, and the decision is audited.

    Example: vultrino approvals deny 3f9a1c07
    """
    _decide(home, approval_id, "deny", json_out)
