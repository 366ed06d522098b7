"""The leak scanner every end-to-end test uses.

A test registers the secret values it used; at the end, everything the test saw — stdout,
stderr, error messages — and every file in the Vultrino home except the sealed store itself
(audit.log, .installed.json, plugin files, the compiled-module cache, logs) is searched for each
secret in plain, base64 (standard and URL-safe, padded or not) and hex form.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SEALED = {"credentials.enc"}


def forms_of(secret: str) -> dict[str, bytes]:
    raw = secret.encode()
    b64 = base64.b64encode(raw)
    forms = {
        "plain": raw,
        "base64": b64.rstrip(b"="),
        "base64url": base64.urlsafe_b64encode(raw).rstrip(b"="),
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
    }
    # Inside a longer base64 value the secret starts at any byte offset mod 3. For each offset,
    # the characters that depend on the secret's bytes alone: drop the groups it shares with
    # its neighbours (the first one unless aligned, and the last one).
    for shift in (0, 1, 2):
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            middle = encode(b"\0" * shift + raw)[4 if shift else 0 : -4]
            if len(middle) >= 8:
                forms[f"{name}+{shift}"] = middle
    return forms


@dataclass
class LeakCheck:
    secrets: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    def add(self, *values: str) -> None:
        self.secrets.extend(v for v in values if v)

    def scan(self, data: str | bytes | None, where: str) -> None:
        if not data:
            return
        blob = data.encode() if isinstance(data, str) else data
        for secret in self.secrets:
            for kind, form in forms_of(secret).items():
                if form in blob:
                    self.findings.append(f"{where}: secret #{self.secrets.index(secret)} ({kind})")

    def scan_home(self, home: Path) -> None:
        if not home.exists():
            return
        for path in sorted(home.rglob("*")):
            if path.is_file() and path.name not in SEALED and not path.name.endswith(".lock"):
                self.scan(path.read_bytes(), str(path.relative_to(home)))

    def scan_all(self, outputs: Iterable[tuple[str, str | bytes | None]], home: Path) -> None:
        for where, data in outputs:
            self.scan(data, where)
        self.scan_home(home)

    def assert_clean(self) -> None:
        assert not self.findings, "secret leaked: " + "; ".join(self.findings)
