"""Property tests for the scrubber (vultrino._scrub): however a server or a URL re-encodes a
secret, the encoded form does not survive scrubbing.

1. Each echo form — plain, percent-encoded (every byte, path-style keeping ``/``, form-style
   ``+``, upper- and lower-case hex), JSON-escaped (ASCII or not, ``/`` plain or ``\\/``),
   base64 and hex — embedded in arbitrary text, as ``str`` and as UTF-8 ``bytes``, is gone.
2. Scrubbing an exception keeps its type and attributes and scrubs its message.
3. Text that holds no secret form is left exactly as it was.
4. Scrubbing a tree in place (what the facade does to a result) gives exactly what the copying
   walk gives, and no form survives in any key or leaf.

Runs derandomized, so the examples are the same on every run.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable
from urllib.parse import quote, quote_plus

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vultrino._scrub import (
    MIN_SECRET_LEN,
    REDACTED,
    scrub,
    scrub_error,
    scrubber,
    secret_forms,
)
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


# Trees of what a plugin can answer (and what a Python plugin may build): maps with text, number
# or bytes keys, lists and tuples, and leaves of every plain kind; some text holds a secret form.
def _trees(secret: str) -> st.SearchStrategy[object]:
    forms = [f(secret) for f in ECHOES.values()]
    texts = st.one_of(
        st.text(max_size=8),
        st.builds(lambda a, f, b: a + f + b, context, st.sampled_from(forms), context),
    )
    leaves = st.one_of(
        texts,
        st.integers(),
        st.floats(allow_nan=False),
        st.booleans(),
        st.none(),
        st.binary(max_size=8),
        texts.map(str.encode),
    )
    keys = st.one_of(texts, st.integers(), st.binary(max_size=4))
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.lists(inner, max_size=3).map(tuple),
            st.dictionaries(keys, inner, max_size=4),
        ),
        max_leaves=20,
    )


@FUZZ
@given(data=st.data(), secret=secrets)
def test_scrubbing_in_place_gives_what_the_copying_walk_gives(
    data: st.DataObject, secret: str
) -> None:
    assume("[" not in secret and "]" not in secret)
    tree = data.draw(_trees(secret))
    matcher = scrubber([secret])
    expected = matcher(tree)
    own = copy.deepcopy(tree)
    result = matcher.in_place(own)
    assert result == expected
    assert type(result) is type(expected)
    if isinstance(own, (dict, list)):
        assert result is own  # changed where it stood, not copied
    forms = secret_forms([secret])
    for leaf in _leaves(result):
        if isinstance(leaf, str):
            assert not any(f in leaf for f in forms), leaf
        elif isinstance(leaf, bytes):
            assert not any(f.encode() in leaf for f in forms), leaf


def _leaves(value: object) -> list[object]:
    """Every key and leaf of a tree."""
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in (*_leaves(k), *_leaves(v))]
    if isinstance(value, (list, tuple)):
        return [x for item in value for x in _leaves(item)]
    return [value]
