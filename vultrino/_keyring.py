"""The OS keyring, through the optional ``keyring`` package: the only module that imports it.

Imported lazily, and only for a home whose owner opted in (``vultrino unlock --remember``), so
nobody else pays for the import or meets a desktop keyring prompt. Every failure is a
:class:`KeyringError` that says what to do: install ``vultrino[keyring]``, or use another way
to give the password, when there is no usable backend (``keyring``'s ``fail`` and ``null``
backends, or a chainer with nothing in it).
"""

from __future__ import annotations

from typing import Any

from vultrino.errors import KeyringError

__all__ = ["SERVICE", "backend_name", "delete_password", "get_password", "set_password"]

#: The service name of every entry; the account is the home's resolved path.
SERVICE = "vultrino"

_UNUSABLE = ("keyring.backends.fail.", "keyring.backends.null.")


def _name(backend: Any) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _backend() -> Any:
    try:
        import keyring
        import keyring.backends.chainer
    except ImportError:
        raise KeyringError(
            "the OS keyring needs the `keyring` package, which is not installed: install "
            "vultrino[keyring] (pip install 'vultrino[keyring]'), or give the password with "
            "VULTRINO_PASSWORD_FILE or `vultrino unlock`"
        ) from None
    try:
        backend = keyring.get_keyring()
    except Exception as exc:  # a broken backend module or keyringrc.cfg
        raise KeyringError(f"the OS keyring could not be loaded ({exc})") from exc
    name = _name(backend)
    empty_chain = (
        isinstance(backend, keyring.backends.chainer.ChainerBackend) and not backend.backends
    )
    if name.startswith(_UNUSABLE) or empty_chain:
        raise KeyringError(
            f"no usable OS keyring backend here (keyring chose {name}): there is no Secret "
            "Service, KWallet or macOS Keychain to keep the password in; use "
            "`vultrino unlock` for a session, or VULTRINO_PASSWORD_FILE"
        )
    return backend


def _failed(what: str, backend: Any, exc: Exception) -> KeyringError:
    return KeyringError(f"the OS keyring ({_name(backend)}) failed to {what}: {exc}")


def backend_name() -> str:
    """The backend the keyring uses (KeyringError when there is none usable)."""
    return _name(_backend())


def get_password(account: str) -> str | None:
    """The password kept for ``account``, or None when there is no entry."""
    backend = _backend()
    try:
        value = backend.get_password(SERVICE, account)
    except Exception as exc:
        raise _failed("read the password", backend, exc) from exc
    return value if isinstance(value, str) else None


def set_password(account: str, password: str) -> str:
    """Keep ``password`` for ``account``; the backend's name."""
    backend = _backend()
    try:
        backend.set_password(SERVICE, account, password)
    except Exception as exc:
        raise _failed("store the password", backend, exc) from exc
    return _name(backend)


def delete_password(account: str) -> bool:
    """Remove the entry of ``account``; whether there was one."""
    backend = _backend()
    try:
        if backend.get_password(SERVICE, account) is None:
            return False
        backend.delete_password(SERVICE, account)
    except Exception as exc:
        raise _failed("remove the password", backend, exc) from exc
    return True
