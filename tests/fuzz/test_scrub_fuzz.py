"""Property tests for the scrubber (vultrino._scrub): however a server or a URL re-encodes a
secret, the encoded form does not survive scrubbing.

1. Each echo form — plain, percent-encoded (every byte, path-style keeping ``/``, form-style
   ``+``, upper- and lower-case hex), JSON-escaped (ASCII or not, ``/`` plain or ``\\/``),
   base64 and hex — embedded in arbitrary text, as ``str`` and as UTF-8 ``bytes``, is gone.
2. Scrubbing an exception keeps its type and attributes and scrubs its message.
3. Text that holds no secret form is left exactly as it was.

Runs derandomized, so the examples are the same on every run.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from urllib.parse import quote, quote_plus

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vultrino._scrub import MIN_SECRET_LEN, REDACTED, scrub, scrub_error, secret_forms
from vultrino.errors import ActionFailedError

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Characters servers and URLs treat specially, plus ordinary and non-ASCII ones.
SECRET_ALPHABET = st.sampled_from([*"aZ09/+=?&%#:@ ~._-\"\\'", "é", "\u3042", "\U0001f511"])
secrets = st.text(SECRET_ALPHABET, min_size=MIN_SECRET_LEN, max_size=24)
context = st.text(st.sampled_from([*"xyz {}\"':,/\\%"]), max_size=12)


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def _json(value: str, *, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)[1:-1]


ECHOES: dict[str, Callable[[str], str]] = {
    "plain": lambda s: s,
    "percent-all": lambda s: quote(s, safe=""),
    "percent-all-lower": lambda s: _lower_hex(quote(s, safe="")),
    "percent-path": lambda s: quote(s, safe="/"),
    "percent-path-lower": lambda s: _lower_hex(quote(s, safe="/")),
    "form": quote_plus,
    "form-lower": lambda s: _lower_hex(quote_plus(s)),
    "json-ascii": lambda s: _json(s, ascii_only=True),
    "json-utf8": lambda s: _json(s, ascii_only=False),
    "json-ascii-escaped-slash": lambda s: _json(s, ascii_only=True).replace("/", "\\/"),
    "json-utf8-escaped-slash": lambda s: _json(s, ascii_only=False).replace("/", "\\/"),
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
    "base64url-unpadded": lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("="),
    "hex": lambda s: s.encode().hex(),
}


@FUZZ
@given(secret=secrets, before=context, after=context, echo=st.sampled_from(sorted(ECHOES)))
def test_every_echo_form_is_scrubbed(secret: str, before: str, after: str, echo: str) -> None:
    assume("[" not in secret and "]" not in secret)
    form = ECHOES[echo](secret)
    forms = secret_forms([secret])
    text = before + form + after
    out = scrub(text, forms)
    assert form not in out, (echo, form, out)
    assert REDACTED in out
    data = scrub(text.encode(), forms)
    assert form.encode() not in data


@FUZZ
@given(secret=secrets, echo=st.sampled_from(sorted(ECHOES)), code=st.sampled_from(["failed", "x"]))
def test_scrub_error_keeps_type_and_attributes(secret: str, echo: str, code: str) -> None:
    assume("[" not in secret and "]" not in secret)
    form = ECHOES[echo](secret)
    try:
        try:
            raise ValueError(form)
        except ValueError as cause:
            raise ActionFailedError(
                f"redirect to /p/{form} refused", plugin="http", code=code
            ) from cause
    except ActionFailedError as exc:
        raised = exc
        scrubbed = scrub_error(exc, secret_forms([secret]))
    assert scrubbed is raised and type(scrubbed) is ActionFailedError
    assert (scrubbed.plugin, scrubbed.code) == ("http", code)
    assert form not in str(scrubbed) and REDACTED in str(scrubbed)
    assert scrubbed.__cause__ is None and scrubbed.__suppress_context__


@FUZZ
@given(secret=secrets, text=st.text(max_size=60))
def test_text_without_the_secret_is_untouched(secret: str, text: str) -> None:
    forms = secret_forms([secret])
    assume(not any(f in text for f in forms))
    assert scrub(text, forms) == text
