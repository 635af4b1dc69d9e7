"""media.ringback: which tone a call plays (SPEC §2 codes), tone file names, the frame library."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from audio_support import dominant_hz

from media import g711
from media.audio import write_wav
from media.ringback import (
    RingbackLibrary,
    ringback_codes_for,
    ringback_tone_for,
    tone_file_name,
)
from routing.index import CALL_TYPE_A_TO_PEER as A_CALLS
from routing.index import CALL_TYPE_PEER_TO_A as PEER_CALLS
from routing.model import BindingType

AXB, AXN, EXT, N95, AXG = (
    BindingType.AXB,
    BindingType.AXN,
    BindingType.AXN_EXT,
    BindingType.AXN95,
    BindingType.AXG,
)

EVERY_CODE = {
    "AXBRing_A": "b-axb-a",
    "AXBRing_B": "b-axb-b",
    "AXNRing_AB": "b-axn-ab",
    "AXNRing_A": "b-axn-a",
    "AXNRing_N": "b-axn-n",
    "AXGRing_AB": "b-axg-ab",
    "AXGRing_A": "b-axg-a",
    "AXGRing_G": "b-axg-g",
}


def _pool(codes: dict[str, str]) -> dict[str, str]:
    """The same codes with pool tone ids (p-...)."""
    return {name: "p-" + tone.removeprefix("b-") for name, tone in codes.items()}


def _only(*names: str) -> dict[str, str]:
    return {name: EVERY_CODE[name] for name in names}


# (binding codes, pool codes, type, call type) → tone
TABLE: list[tuple[dict[str, str], dict[str, str], BindingType, int, str | None]] = [
    # AXB: A calls → AXBRing_A, B calls → AXBRing_B; no shared code.
    (EVERY_CODE, {}, AXB, A_CALLS, "b-axb-a"),
    (EVERY_CODE, {}, AXB, PEER_CALLS, "b-axb-b"),
    (_only("AXBRing_B"), {}, AXB, A_CALLS, None),
    (_only("AXBRing_A"), {}, AXB, PEER_CALLS, None),
    # Binding first, else the pool, per code.
    ({}, _pool(EVERY_CODE), AXB, A_CALLS, "p-axb-a"),
    (_only("AXBRing_B"), _pool(EVERY_CODE), AXB, A_CALLS, "p-axb-a"),
    (_only("AXBRing_B"), _pool(EVERY_CODE), AXB, PEER_CALLS, "b-axb-b"),
    # Codes of another type never apply.
    (_only("AXNRing_AB", "AXGRing_AB"), {}, AXB, A_CALLS, None),
    # AXN: A → AXNRing_A, N → AXNRing_N, AXNRing_AB for both when the specific one is unset.
    (EVERY_CODE, {}, AXN, A_CALLS, "b-axn-a"),
    (EVERY_CODE, {}, AXN, PEER_CALLS, "b-axn-n"),
    (_only("AXNRing_AB"), {}, AXN, A_CALLS, "b-axn-ab"),
    (_only("AXNRing_AB"), {}, AXN, PEER_CALLS, "b-axn-ab"),
    (_only("AXNRing_A", "AXNRing_AB"), {}, AXN, PEER_CALLS, "b-axn-ab"),
    (_only("AXNRing_A"), {}, AXN, PEER_CALLS, None),
    # A binding's shared code beats the pool's specific one (the binding was set on purpose).
    (_only("AXNRing_AB"), _pool(EVERY_CODE), AXN, A_CALLS, "b-axn-ab"),
    ({}, _pool(_only("AXNRing_AB")), AXN, PEER_CALLS, "p-axn-ab"),
    ({}, _pool(_only("AXNRing_N", "AXNRing_AB")), AXN, PEER_CALLS, "p-axn-n"),
    # The AXN variants use the AXN codes.
    (EVERY_CODE, {}, EXT, A_CALLS, "b-axn-a"),
    (EVERY_CODE, {}, EXT, PEER_CALLS, "b-axn-n"),
    (EVERY_CODE, {}, N95, PEER_CALLS, "b-axn-n"),
    ({}, _pool(_only("AXNRing_AB")), N95, A_CALLS, "p-axn-ab"),
    # AXG likewise with AXGRing_AB.
    (EVERY_CODE, {}, AXG, A_CALLS, "b-axg-a"),
    (EVERY_CODE, {}, AXG, PEER_CALLS, "b-axg-g"),
    (_only("AXGRing_AB"), {}, AXG, A_CALLS, "b-axg-ab"),
    (_only("AXGRing_AB"), {}, AXG, PEER_CALLS, "b-axg-ab"),
    ({}, _pool(_only("AXGRing_G")), AXG, A_CALLS, None),
    (_only("AXNRing_AB"), {}, AXG, A_CALLS, None),
    # Nothing configured; an empty tone id counts as unset.
    ({}, {}, AXN, A_CALLS, None),
    ({"AXBRing_A": ""}, {"AXBRing_A": "p-axb-a"}, AXB, A_CALLS, "p-axb-a"),
]


@pytest.mark.parametrize(("binding", "pool", "binding_type", "call_type", "expected"), TABLE)
def test_ringback_tone_for(
    binding: dict[str, str],
    pool: dict[str, str],
    binding_type: BindingType,
    call_type: int,
    expected: str | None,
) -> None:
    found = ringback_tone_for(binding, pool, binding_type=binding_type, call_type=call_type)
    assert found == expected


def test_every_code_name_is_reachable_and_known() -> None:
    from api.control import RINGBACK_CODES

    used = {
        name
        for binding_type in BindingType
        for call_type in (A_CALLS, PEER_CALLS)
        for name in ringback_codes_for(binding_type, call_type)
    }
    assert used == RINGBACK_CODES


def test_other_call_types_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="call_type"):
        ringback_tone_for(EVERY_CODE, {}, binding_type=AXB, call_type=4)


# ------------------------------------------------------------------------------- file names


@pytest.mark.parametrize(
    ("tenant_id", "tone_id"),
    [
        ("T000000000001", "tone-7"),
        ("T000000000001", "../../etc/passwd"),
        ("T000000000001", ".hidden"),
        ("T000000000001", "彩铃 一号"),
        ("T000000000001", "a/b\\c:d\0e"),
        ("T000000000001", "x" * 64),
        ("../T1", "-rf"),
    ],
)
def test_tone_file_names_are_sanitised(tenant_id: str, tone_id: str, tmp_path: Path) -> None:
    name = tone_file_name(tenant_id, tone_id)
    assert name.endswith(".wav")
    assert not name.startswith((".", "-"))
    assert all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)
    assert len(name) <= 120
    assert (tmp_path / name).parent == tmp_path


def test_ids_that_sanitise_alike_get_different_files() -> None:
    assert tone_file_name("T1", "a/b") != tone_file_name("T1", "a_b")
    assert tone_file_name("T1", "tone") != tone_file_name("T2", "tone")
    assert tone_file_name("T1", "tone") == tone_file_name("T1", "tone")
    # The tenant/tone boundary is part of the hash: ("T1-", "x") is not ("T1", "-x").
    assert tone_file_name("T1-", "x") != tone_file_name("T1", "-x")
    assert tone_file_name("T1", "彩铃一") != tone_file_name("T1", "彩铃二")


# ------------------------------------------------------------------------------- library


def _sine(frequency_hz: float, seconds: float = 0.5) -> np.ndarray:  # type: ignore[type-arg]
    t = np.arange(int(seconds * 8000)) / 8000
    return (np.sin(2 * np.pi * frequency_hz * t) * 12000).astype(np.int16)


def test_library_serves_frames_and_notices_a_replaced_tone(tmp_path: Path) -> None:
    library = RingbackLibrary(tmp_path)
    path = library.path_for("T1", "tone-7")
    write_wav(path, _sine(440))
    first = library.frames("T1", "tone-7", g711.PAYLOAD_TYPE_PCMU)
    assert len(first) == 25 and all(len(f) == 160 for f in first)
    assert dominant_hz(g711.decode(0, b"".join(first))) == pytest.approx(440, abs=2)
    assert library.frames("T1", "tone-7", 0) is first  # cached
    alaw = library.frames("T1", "tone-7", g711.PAYLOAD_TYPE_PCMA)
    assert dominant_hz(g711.decode(8, b"".join(alaw))) == pytest.approx(440, abs=2)

    write_wav(path, _sine(1000, seconds=0.3))  # replaced atomically, same name
    second = library.frames("T1", "tone-7", 0)
    assert len(second) == 15
    assert dominant_hz(g711.decode(0, b"".join(second))) == pytest.approx(1000, abs=2)
    # Another tenant's tone of the same id is another file; a pool without tenant has none.
    assert library.frames("T2", "tone-7", 0) == ()
    assert library.frames(None, "tone-7", 0) == ()


def test_library_drops_a_deleted_tone_and_survives_a_bad_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    library = RingbackLibrary(tmp_path)
    path = library.path_for("T1", "tone-7")
    write_wav(path, _sine(440))
    assert library.frames("T1", "tone-7", 0)
    path.unlink()
    assert library.frames("T1", "tone-7", 0) == ()
    path.write_bytes(b"RIFF garbage")
    with caplog.at_level(logging.ERROR, logger="maskline.media.ringback"):
        assert library.frames("T1", "tone-7", 0) == ()
    assert any(r.getMessage() == "ringback tone unusable" for r in caplog.records)
    with pytest.raises(ValueError, match="payload type"):
        library.frames("T1", "tone-7", 9)


def test_library_cache_is_bounded(tmp_path: Path) -> None:
    library = RingbackLibrary(tmp_path, max_cached=3)
    for number in range(5):
        write_wav(library.path_for("T1", f"t{number}"), _sine(300 + 100 * number, 0.1))
        library.frames("T1", f"t{number}", 0)
    assert len(library._cache) == 3
    # The least recently used went first; what remains still serves (reloaded when needed).
    assert dominant_hz(g711.decode(0, b"".join(library.frames("T1", "t0", 0)))) == pytest.approx(
        300, abs=40
    )
    os.utime(library.path_for("T1", "t4"))  # touched: reread, same content
    assert len(library.frames("T1", "t4", 0)) == 5
