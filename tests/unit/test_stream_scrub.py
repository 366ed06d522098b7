"""The stream scrubber: a body scrubbed chunk by chunk comes out exactly as the whole body
scrubbed at once, wherever the chunk boundaries fall — a secret split between two chunks (or
spread over many one-byte chunks) is replaced all the same, and nothing of it is sent early."""

from __future__ import annotations

import random

import pytest

from vultrino._scrub import REDACTED, StreamScrubber, scrubber

SECRETS = ["sk-live-ABCDEF1234567890", "hunter2pass", "abcabcab"]


def _streamed(secrets: list[str], data: bytes, cuts: list[int]) -> tuple[bytes, list[bytes]]:
    stream = StreamScrubber(scrubber(secrets))
    outs = []
    last = 0
    for cut in [*cuts, len(data)]:
        outs.append(stream.feed(data[last:cut]))
        last = cut
    outs.append(stream.finish())
    return b"".join(outs), outs


def test_a_secret_split_at_every_possible_point_is_replaced() -> None:
    secret = SECRETS[0]
    data = b"head " + secret.encode() + b" tail"
    for cut in range(1, len(data)):
        out, pieces = _streamed([secret], data, [cut])
        assert out == b"head " + REDACTED.encode() + b" tail", cut
        # no piece handed out before the end holds any prefix of the secret longer than 3
        assert not any(secret[:4].encode() in p for p in pieces)


def test_one_byte_chunks_and_overlapping_secrets() -> None:
    data = b"..abcabcabcab..hunter2passhunter2pass.." + b"sk-live-ABCDEF1234567890"
    out, _ = _streamed(SECRETS, data, list(range(1, len(data))))
    assert out == scrubber(SECRETS).data(data)
    assert b"hunter2" not in out and b"ABCDEF" not in out


@pytest.mark.parametrize("seed", range(4))
def test_random_chunkings_match_scrubbing_the_whole(seed: int) -> None:
    s = scrubber(SECRETS)
    rng = random.Random(seed)
    for _ in range(400):
        parts = []
        for _ in range(rng.randint(0, 12)):
            if rng.random() < 0.3:
                parts.append(rng.choice(s.forms).encode())  # base64, hex, percent forms too
            else:
                parts.append(bytes(rng.choice(b"abcxyz-=%") for _ in range(rng.randint(0, 30))))
        data = b"".join(parts)
        k = max(0, min(len(data) - 1, rng.randint(0, 6)))
        cuts = sorted(rng.sample(range(1, max(1, len(data))), k))
        out, _ = _streamed(SECRETS, data, cuts)
        assert out == s.data(data), (data, cuts)


def test_no_secrets_passes_chunks_through() -> None:
    stream = StreamScrubber(scrubber([]))
    assert stream.feed(b"abc") == b"abc"
    assert stream.finish() == b""


def test_memory_is_one_chunk_plus_the_longest_form() -> None:
    s = scrubber(SECRETS)
    stream = StreamScrubber(s)
    longest = max(len(f.encode()) for f in s.forms)
    sent = 0
    for _ in range(100):
        sent += len(stream.feed(b"x" * 65536))
    # everything but the held-back tail went out as it came
    assert sent == 100 * 65536 - (longest - 1)
    assert stream.finish() == b"x" * (longest - 1)
