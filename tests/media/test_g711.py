"""media.g711 against the standard library's audioop (Python ≤ 3.12) as an independent oracle."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from media import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ALL_CODES = bytes(range(256))
ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)


def test_ulaw_decode_matches_audioop_for_every_code() -> None:
    expected = np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), dtype=np.int16)
    assert np.array_equal(g711.ulaw_decode(ALL_CODES), expected)


def test_alaw_decode_matches_audioop_for_every_code() -> None:
    expected = np.frombuffer(audioop.alaw2lin(ALL_CODES, 2), dtype=np.int16)
    assert np.array_equal(g711.alaw_decode(ALL_CODES), expected)


def test_ulaw_encode_matches_audioop_for_every_sample() -> None:
    assert g711.ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2)


def test_alaw_encode_matches_audioop_for_every_sample() -> None:
    assert g711.alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES.tobytes(), 2)


@pytest.mark.parametrize("payload_type", [g711.PAYLOAD_TYPE_PCMU, g711.PAYLOAD_TYPE_PCMA])
def test_encode_then_decode_keeps_every_code(payload_type: int) -> None:
    # Decoding then encoding a code gives the code back (µ-law's two zeros aside).
    decoded = g711.decode(payload_type, ALL_CODES)
    again = g711.encode(payload_type, decoded)
    same = [a == b for a, b in zip(again, ALL_CODES, strict=True)]
    assert sum(same) >= 255


def test_other_payload_types_are_refused() -> None:
    with pytest.raises(ValueError, match=r"not a G\.711 payload type"):
        g711.decode(18, b"\x00")
    with pytest.raises(ValueError, match=r"not a G\.711 payload type"):
        g711.encode(9, np.zeros(1, dtype=np.int16))
