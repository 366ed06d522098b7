"""The names of the plugin world, ``wit/vultrino-plugin.wit``: the one place they are spelled.

Everything that names an item of the world imports it from here: the ABI 2 codec and its
module check (``abi.py``), the component world check and linker (``wasmtime/_component.py``),
and the Python plugin build (``vultrino.plugins.install._componentize``). The WIT file itself is the
contract for plugin authors; ``tests/unit/test_wit.py`` checks that these names match it.

Two spellings of the same items exist: a *component* names an interface
(:data:`HOST`, :data:`HANDLER`) and its functions (:data:`LOG`, :data:`EXECUTE`); a *core module*
(ABI 2) names their canonical-ABI lowering (:data:`HOST` as import module, :data:`EXECUTE_EXPORT`,
:data:`POST_EXECUTE_EXPORT`, :data:`REALLOC`).

Versions: the file is at :data:`VERSION` (1.3.0, which adds OpenPGP keys and signature checks
to :data:`KEYS` and the :data:`HTTP` interface; 1.2.0 added the :data:`KEYS` interface; 1.1.0
added :data:`EXECUTE_TEXT`); plugins built for an older version in :data:`VERSIONS` keep
running. Names that differ by version come as tuples, newest first (:data:`HOSTS`,
:data:`HANDLERS`, :data:`EXECUTE_EXPORTS`, :data:`POST_EXECUTE_EXPORTS`, :data:`KEYS_MODULES`);
the 1.0.0, 1.1.0 and 1.2.0 worlds are kept as they were in :data:`WIT_FILE_1_0`,
:data:`WIT_FILE_1_1` and :data:`WIT_FILE_1_2`.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "EXECUTE",
    "EXECUTE_EXPORT",
    "EXECUTE_EXPORTS",
    "EXECUTE_TEXT",
    "HANDLER",
    "HANDLERS",
    "HOST",
    "HOSTS",
    "HTTP",
    "HTTP_ERRORS",
    "HTTP_SEND",
    "HTTP_VERSION",
    "KEYS",
    "KEYS_FUNCTIONS",
    "KEYS_MODULES",
    "KEYS_SINCE",
    "KEYS_VERSION",
    "KEYS_VERSIONS",
    "KEY_ERRORS",
    "KEY_FORMATS",
    "KEY_FORMATS_SINCE",
    "LOG",
    "LOG_LEVEL",
    "LOG_LEVELS",
    "PACKAGE",
    "POST_EXECUTE_EXPORT",
    "POST_EXECUTE_EXPORTS",
    "REALLOC",
    "VERSION",
    "VERSIONS",
    "WIT_FILE",
    "WIT_FILE_1_0",
    "WIT_FILE_1_1",
    "WIT_FILE_1_2",
    "WORLD",
    "keys_functions",
]

#: Where the world is written down, for messages that send the reader there.
WIT_FILE: Final = "wit/vultrino-plugin.wit"
#: The 1.0.0 world, unchanged, for tools that must match a 1.0.0 module (``wasm-tools
#: component embed`` of a module built before 1.1.0: ``scripts/rust-component.sh``).
WIT_FILE_1_0: Final = "wit/v1.0.0/vultrino-plugin.wit"
WIT_FILE_1_1: Final = "wit/v1.1.0/vultrino-plugin.wit"
WIT_FILE_1_2: Final = "wit/v1.2.0/vultrino-plugin.wit"
PACKAGE: Final = "vultrino:plugin"
VERSION: Final = "1.3.0"
#: Every version of the world this host runs, newest first.
VERSIONS: Final = (VERSION, "1.2.0", "1.1.0", "1.0.0")
#: The world a plugin targets (``--world plugin`` for wasm-tools, ``-w plugin`` for
#: componentize-py).
WORLD: Final = "plugin"

#: The interface the host provides: ``log: func(level: log-level, message: string)``.
HOST: Final = f"{PACKAGE}/host@{VERSION}"
HOSTS: Final = tuple(f"{PACKAGE}/host@{v}" for v in VERSIONS)
LOG: Final = "log"
LOG_LEVEL: Final = "log-level"
#: The cases of ``enum log-level``, in order (their index is the level a core module passes).
LOG_LEVELS: Final = ("debug", "info", "warn", "error")

#: The interface the plugin exports: ``execute: func(request: list<u8>) -> list<u8>``.
HANDLER: Final = f"{PACKAGE}/handler@{VERSION}"
HANDLERS: Final = tuple(f"{PACKAGE}/handler@{v}" for v in VERSIONS)
EXECUTE: Final = "execute"
#: ``execute-text: func(request: string) -> string`` (since 1.1.0): ``execute`` with each byte
#: carried as the character of the same value, which the component model copies in bulk.
EXECUTE_TEXT: Final = "execute-text"

#: The core-module (canonical ABI) names of the same items.
EXECUTE_EXPORT: Final = f"{HANDLER}#{EXECUTE}"
POST_EXECUTE_EXPORT: Final = f"cabi_post_{EXECUTE_EXPORT}"
EXECUTE_EXPORTS: Final = tuple(f"{h}#{EXECUTE}" for h in HANDLERS)
POST_EXECUTE_EXPORTS: Final = tuple(f"cabi_post_{e}" for e in EXECUTE_EXPORTS)
REALLOC: Final = "cabi_realloc"

#: The interface of keys that stay in the host (since 1.2.0): its name, as a component names it
#: and as a core module's import module, in the current version (:data:`KEYS`) and in every
#: version that has it (:data:`KEYS_MODULES`, newest first).
KEYS_VERSION: Final = VERSION
KEYS_VERSIONS: Final = (VERSION, "1.2.0")
KEYS: Final = f"{PACKAGE}/keys@{KEYS_VERSION}"
KEYS_MODULES: Final = tuple(f"{PACKAGE}/keys@{v}" for v in KEYS_VERSIONS)
#: The cases of ``enum key-error`` and ``enum key-format``, in order (a core module passes and
#: receives their index). ``openpgp`` and ``base32`` are new in 1.3.0
#: (:data:`KEY_FORMATS_SINCE`).
KEY_ERRORS: Final = ("no-credential", "unknown-field", "bad-format", "bad-key", "bad-input")
KEY_FORMATS: Final = ("raw", "hex", "base64", "pem", "openpgp", "base32")
#: The cases of ``enum key-format`` in each version of ``keys`` (an enum case cannot carry
#: ``@since``: the 1.2.0 enum has the first four, 1.3.0 all of them).
KEY_FORMATS_SINCE: Final = {"1.2.0": KEY_FORMATS[:4], "1.3.0": KEY_FORMATS}
#: Every function of ``keys`` and its kind: ``sign`` is ``(field, format, data) ->
#: result<list<u8>, key-error>``, ``public`` is ``(field, format) -> result<list<u8>,
#: key-error>``, ``verify`` is ``(public-key, message, signature: list<u8>) -> bool``, ``hash``
#: is ``(data) -> list<u8>``.
KEYS_FUNCTIONS: Final = {
    "hmac-sha1": "sign",
    "hmac-sha256": "sign",
    "hmac-sha512": "sign",
    "hmac-sha384": "sign",
    "ed25519-sign": "sign",
    "ed25519-public-key": "public",
    "p256-sign": "sign",
    "p256-public-key": "public",
    "secp256k1-sign": "sign",
    "secp256k1-public-key": "public",
    "rsa-sign-pkcs1-sha256": "sign",
    "rsa-sign-pss-sha256": "sign",
    "rsa-public-key": "public",
    "openpgp-public-key": "public",
    "ed25519-verify": "verify",
    "rsa-verify-pkcs1-sha256": "verify",
    "rsa-verify-pkcs1-sha512": "verify",
    "sha256": "hash",
    "sha512": "hash",
    "keccak256": "hash",
}
#: The version of the world each ``keys`` function first appeared in; a plugin of an older
#: version cannot import a newer one (its ``keys`` interface does not have it).
KEYS_SINCE: Final = {
    name: "1.3.0"
    if name
    in (
        "hmac-sha384",
        "openpgp-public-key",
        "ed25519-verify",
        "rsa-verify-pkcs1-sha256",
        "rsa-verify-pkcs1-sha512",
    )
    else "1.2.0"
    for name in KEYS_FUNCTIONS
}


def keys_functions(module: str) -> dict[str, str]:
    """The ``keys`` functions (and their kinds) of the ``keys`` interface named ``module`` (one
    of :data:`KEYS_MODULES`)."""
    version = module.rsplit("@", 1)[-1]
    order = {v: i for i, v in enumerate(reversed(VERSIONS))}
    return {
        name: kind
        for name, kind in KEYS_FUNCTIONS.items()
        if order[KEYS_SINCE[name]] <= order[version]
    }


#: The interface of HTTP requests the host authenticates (since 1.3.0): ``send: func(request:
#: list<u8>) -> list<u8>``, MessagePack both ways; a core module imports ``send`` from
#: :data:`HTTP` with the lowering ``(ptr, len, retptr) -> ()``.
HTTP_VERSION: Final = "1.3.0"
HTTP: Final = f"{PACKAGE}/http@{HTTP_VERSION}"
HTTP_SEND: Final = "send"
#: The ``code`` of an ``{"error": ...}`` answer of ``send``.
HTTP_ERRORS: Final = (
    "no-credential",
    "unknown-auth",
    "host-not-declared",
    "denied",
    "invalid-request",
    "failed",
)
