"""`vultrino unlock` and `vultrino lock`: unlock sessions and the OS keyring (docs/cli.md)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vultrino.cli._common import (
    HomeOpt,
    JsonOpt,
    emit_json,
    err,
    handle_errors,
    open_vultrino,
)

if TYPE_CHECKING:
    from vultrino.core import Vultrino
    from vultrino.unlock import Session

StatusOpt = Annotated[
    bool,
    typer.Option("--status", help="Only say whether the home is unlocked, and until when."),
]


def _left(seconds: float) -> str:
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")


def _describe(session: Session | None, remembered: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"unlocked": session is not None}
    if session is not None:
        data.update(
            expires_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(session.expires_at)),
            seconds_left=round(session.seconds_left),
            pid=session.pid,
            socket=str(session.socket),
        )
    data["password_in_keyring"] = remembered
    return data


def _report(v: Vultrino, session: Session | None, json_out: bool) -> None:
    remembered = v.password_remembered
    if json_out:
        emit_json(_describe(session, remembered))
        return
    if session is None:
        err("locked")
    else:
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(session.expires_at))
        err(f"unlocked until {until} ({_left(session.seconds_left)} left); `vultrino lock` locks")
    if remembered:
        err("the store password is kept in the OS keyring (`vultrino lock --forget` removes it)")


def _not_with_status(status: bool, **options: object) -> None:
    given = [name for name, value in options.items() if value]
    if status and given:
        err(f"error: --status only reports; it does not take {', '.join(given)}")
        raise typer.Exit(2)


@handle_errors()
def unlock(
    duration: Annotated[
        str,
        typer.Option(
            "--for",
            help="How long the session lasts: 30s, 15m, 1h, 2h30m, 1d (at most 7d).",
        ),
    ] = "15m",
    remember: Annotated[
        bool,
        typer.Option(
            "--remember",
            help="Also keep the store password in the OS keyring (needs vultrino[keyring]).",
        ),
    ] = False,
    status: StatusOpt = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Unlock the store for a while: later commands need no password until it locks.

    The password is asked (or taken from VULTRINO_PASSWORD, VULTRINO_PASSWORD_FILE or the OS
    keyring) and checked; then a background agent of yours keeps the derived key in memory,
    never on disk, until the time is up, `vultrino lock`, logout or a rekey.

    Examples: vultrino unlock; vultrino unlock --for 1h; vultrino unlock --status
    """
    if status:
        _not_with_status(status, **{"--remember": remember})
        with open_vultrino(home) as v:
            _report(v, v.session(), json_out)
        return
    from vultrino.unlock import parse_duration

    seconds = parse_duration(duration)
    with open_vultrino(home, unlock=True, use_session=False) as v:
        backend = v.remember_password() if remember else None
        session = v.start_session(seconds)
        if backend is not None and not json_out:
            err(f"the store password is kept in the OS keyring ({backend})")
        _report(v, session, json_out)


@handle_errors()
def lock(
    forget: Annotated[
        bool,
        typer.Option(
            "--forget", help="Also remove the store password from the OS keyring and stop using it."
        ),
    ] = False,
    status: StatusOpt = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Lock the store now: the unlock agent forgets the key and exits.

    Examples: vultrino lock; vultrino lock --forget; vultrino lock --status
    """
    _not_with_status(status, **{"--forget": forget})
    with open_vultrino(home) as v:
        if status:
            _report(v, v.session(), json_out)
            return
        was_unlocked = v.lock()
        forgot = v.forget_password() if forget else False
        if json_out:
            emit_json({"locked": True, "was_unlocked": was_unlocked, "forgot_password": forgot})
            return
        err("locked" if was_unlocked else "locked (no session was running)")
        if forget:
            err(
                "removed the store password from the OS keyring"
                if forgot
                else "no store password was kept in the OS keyring"
            )
