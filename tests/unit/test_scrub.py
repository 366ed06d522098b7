"""The scrubber: every form of every secret replaced, in any str/bytes inside any container."""

from __future__ import annotations

import base64

from vultrino._scrub import REDACTED, Scrubber, scrub, scrubber, secret_forms

SECRET = "sk-live-abcdef0123456789"


def test_plain_hex_and_base64_forms_are_replaced_everywhere() -> None:
    s = scrubber([SECRET])
    raw = SECRET.encode()
    value = {
        "a": f"x{SECRET}y",
        SECRET: [raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode()],
        "b": ("t", base64.urlsafe_b64encode(raw)),
        "n": [1, 2.5, True, None],
    }
    out = s(value)
    assert out == {
        "a": f"x{REDACTED}y",
        REDACTED: [REDACTED, REDACTED, REDACTED],
        "b": ["t", REDACTED.encode()],
        "n": [1, 2.5, True, None],
    }


def test_text_without_a_secret_is_returned_as_is() -> None:
    text = "nothing to see here " * 10
    assert scrubber([SECRET]).text(text) is text
    assert scrubber([SECRET]).data(text.encode()) == text.encode()


def test_overlapping_forms_are_redacted_as_their_union() -> None:
    # Sequential replacement would leave part of one secret readable; the union does not.
    s = Scrubber(["abcd", "cdefgh"])
    assert s.text("xxabcdefghyy") == f"xx{REDACTED}yy"
    assert s.text("abcd cdefgh") == f"{REDACTED} {REDACTED}"
    assert s.data(b"zabcdefgh") == b"z" + REDACTED.encode()


def test_adjacent_occurrences_are_each_replaced() -> None:
    assert Scrubber(["abcd"]).text("abcdabcd") == REDACTED * 2


def test_regex_metacharacters_in_secrets_are_literal() -> None:
    s = scrubber(["a.b*c(d)[e]"])
    assert s.text("a.b*c(d)[e]") == REDACTED
    assert s.text("aXbbbc(d)[e]") == "aXbbbc(d)[e]"


def test_short_and_non_string_values_are_ignored() -> None:
    s = scrubber(["abc", None, 12345, SECRET])
    assert s.forms == tuple(secret_forms([SECRET]))
    assert not scrubber(["abc", None])
    value = {"k": ["abc"]}
    assert scrubber([]).__call__(value) is value


def test_the_matcher_of_a_secret_set_is_built_once() -> None:
    assert scrubber([SECRET, "another-secret"]) is scrubber([SECRET, "another-secret"])
    assert scrubber([SECRET]) is not scrubber(["a-changed-secret"])


def test_scrub_accepts_a_form_list_or_a_scrubber() -> None:
    forms = secret_forms([SECRET])
    assert scrub(f"<{SECRET}>", forms) == f"<{REDACTED}>"
    assert scrub(f"<{SECRET}>", scrubber([SECRET])) == f"<{REDACTED}>"
    assert scrub(f"<{SECRET}>", []) == f"<{SECRET}>"


def test_repr_never_shows_a_form() -> None:
    assert SECRET not in repr(scrubber([SECRET]))


def test_subclasses_of_str_dict_and_list_are_scrubbed() -> None:
    class S(str):
        pass

    class D(dict):  # type: ignore[type-arg]
        pass

    out = scrubber([SECRET])(D(k=[S(SECRET)]))
    assert out == {"k": [REDACTED]}


def test_covers_is_inclusion_of_forms() -> None:
    one, both = scrubber([SECRET]), scrubber([SECRET, "another-secret-value"])
    assert both.covers(one) and one.covers(one)
    assert not one.covers(both)
    assert one.covers(scrubber([]))


def test_holds_answers_for_short_and_long_text_and_bytes() -> None:
    s = scrubber([SECRET])
    hexed = SECRET.encode().hex()
    for pad in (0, 600):
        assert s.holds("x" * pad + hexed + "y")
        assert s.holds(("x" * pad + SECRET).encode())
        assert not s.holds("x" * pad + SECRET[:-1])
        assert not s.holds(("x" * pad).encode())
    assert not scrubber([]).holds(SECRET)
