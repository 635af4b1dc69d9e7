"""media.prompts: default Mandarin texts, building the files with espeak-ng, the loaded library."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from audio_support import dominant_hz, encode, tone

from media import g711, prompts
from media.audio import SAMPLE_RATE_HZ, AudioError, AudioErrorCode, read_wav, write_wav
from media.prompts import (
    DEFAULT_PROMPTS,
    PromptLibrary,
    PromptName,
    ensure_prompts,
    missing_prompts,
    prompt_for_cause,
    prompt_path,
)
from routing.model import InterceptCause

_PINYIN_SYLLABLE = re.compile(r"[a-zü]+[1-5]\Z")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default prompts, made once for the module (ten espeak-ng runs)."""
    folder = tmp_path_factory.mktemp("prompts")
    ensure_prompts(folder, voice="cmn-latn-pinyin")
    return folder


def _copy(built: Path, tmp_path: Path) -> Path:
    target = tmp_path / "prompts"
    shutil.copytree(built, target)
    return target


def test_every_intercept_cause_and_the_ivr_have_a_default_prompt() -> None:
    for cause in InterceptCause:
        assert prompt_for_cause(cause).value == cause.value
    ivr = {PromptName.ENTER_EXTENSION, PromptName.EXTENSION_RETRY, PromptName.EXTENSION_NOT_FOUND}
    assert (
        set(DEFAULT_PROMPTS)
        == set(PromptName)
        == {PromptName(c.value) for c in InterceptCause} | ivr
    )


def test_default_texts_are_pinyin_with_tone_numbers_that_espeak_reads_as_mandarin() -> None:
    for name, text in DEFAULT_PROMPTS.items():
        words = re.sub(r"[,.]", " ", text.pinyin).split()
        assert words, name
        assert all(_PINYIN_SYLLABLE.match(w) for w in words), (name, text.pinyin)
        assert text.hanzi and not text.hanzi.isascii()
    # espeak-ng marks a switch to English pronunciation with "(en)": none for our texts, i.e.
    # every syllable is read as Mandarin pinyin by the default voice.
    everything = " ".join(t.pinyin for t in DEFAULT_PROMPTS.values())
    phonemes = subprocess.run(
        ["espeak-ng", "-v", "cmn-latn-pinyin", "-q", "-x", "--stdin"],
        input=everything.encode(),
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert phonemes.strip()
    assert "(en)" not in phonemes


def test_ensure_prompts_makes_every_file_as_8khz_speech(built: Path) -> None:
    assert missing_prompts(built) == []
    for name in PromptName:
        pcm = read_wav(prompt_path(built, name))  # refuses anything but 8 kHz 16-bit mono
        seconds = pcm.size / SAMPLE_RATE_HZ
        assert 0.8 < seconds < 8.0, (name, seconds)
        assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 500, name
    # The longest text says the most.
    lengths = {name: read_wav(prompt_path(built, name)).size for name in PromptName}
    assert max(lengths, key=lengths.__getitem__) is PromptName.UNVERIFIED


def test_an_operators_recording_is_never_overwritten(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _copy(built, tmp_path)
    mine = prompt_path(folder, PromptName.NO_BINDING)
    mine.write_bytes(b"the operator's own recording")
    prompt_path(folder, PromptName.EXPIRED).unlink()
    spoken: list[str] = []
    real = prompts.synthesize

    def counting(text: str, *, voice: str) -> np.ndarray:  # type: ignore[type-arg]
        spoken.append(text)
        return real(text, voice=voice)

    monkeypatch.setattr(prompts, "synthesize", counting)
    paths = ensure_prompts(folder, voice="cmn-latn-pinyin")
    assert set(paths) == {n.value for n in PromptName}
    assert mine.read_bytes() == b"the operator's own recording"
    assert spoken == [DEFAULT_PROMPTS[PromptName.EXPIRED].pinyin]  # only the missing one
    assert prompt_path(folder, PromptName.EXPIRED).exists()


def test_force_rebuilds_every_default(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _copy(built, tmp_path)
    prompt_path(folder, PromptName.NO_BINDING).write_bytes(b"old")
    silence = np.zeros(800, dtype=np.int16)
    monkeypatch.setattr(prompts, "synthesize", lambda text, *, voice: silence)
    ensure_prompts(folder, voice="cmn-latn-pinyin", force=True)
    for name in PromptName:
        assert np.array_equal(read_wav(prompt_path(folder, name)), silence)


def test_a_tts_failure_is_an_error_and_leaves_no_partial_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError) as caught:
        ensure_prompts(tmp_path, voice="xx-no-such-voice")
    assert caught.value.code is AudioErrorCode.TTS_VOICE_ILLEGAL
    assert list(tmp_path.iterdir()) == []


def test_library_serves_cached_g711_frames_of_each_prompt(built: Path) -> None:
    library = PromptLibrary(built)
    for name in PromptName:
        assert name in library
    ulaw = library.frames(PromptName.ENTER_EXTENSION, g711.PAYLOAD_TYPE_PCMU)
    alaw = library.frames(PromptName.ENTER_EXTENSION, g711.PAYLOAD_TYPE_PCMA)
    pcm = read_wav(prompt_path(built, PromptName.ENTER_EXTENSION))
    assert len(ulaw) == len(alaw) == -(-pcm.size // 160)
    assert all(len(f) == 160 for f in ulaw)
    assert b"".join(ulaw)[: pcm.size] == g711.encode(0, pcm)
    assert b"".join(alaw)[: pcm.size] == g711.encode(8, pcm)
    # Encoded once per (prompt, payload type).
    assert library.frames(PromptName.ENTER_EXTENSION, 0) is ulaw


def test_library_converts_an_operators_recording_in_another_format(
    built: Path, tmp_path: Path
) -> None:
    folder = _copy(built, tmp_path)
    recording = tone(1000, seconds=1.0, rate=44100, channels=2)
    prompt_path(folder, PromptName.BLACKLISTED).write_bytes(
        encode(recording, rate=44100, container="mp3", codec="libmp3lame")
    )
    library = PromptLibrary(folder)
    pcm = library.pcm(PromptName.BLACKLISTED)
    assert pcm is not None
    assert dominant_hz(pcm) == pytest.approx(1000, abs=2)
    decoded = g711.decode(0, b"".join(library.frames(PromptName.BLACKLISTED, 0)))
    assert dominant_hz(decoded) == pytest.approx(1000, abs=2)


def test_missing_or_unusable_prompts_play_as_nothing(
    built: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _copy(built, tmp_path)
    prompt_path(folder, PromptName.EXPIRED).unlink()
    prompt_path(folder, PromptName.RESTRICTED).write_text("not audio")
    with caplog.at_level(logging.WARNING, logger="maskline.media.prompts"):
        library = PromptLibrary(folder)
    assert PromptName.EXPIRED not in library
    assert library.frames(PromptName.EXPIRED, 0) == ()
    assert library.frames(PromptName.RESTRICTED, 8) == ()
    assert library.frames(PromptName.NO_BINDING, 8)  # the others still play
    messages = {r.getMessage() for r in caplog.records}
    assert {"prompt missing", "prompt unusable"} <= messages
    with pytest.raises(ValueError, match="payload type"):
        library.frames(PromptName.EXPIRED, 18)


def test_write_then_load_round_trip_keeps_samples(tmp_path: Path) -> None:
    pcm = (np.sin(np.arange(1600) / 3) * 9000).astype(np.int16)
    write_wav(prompt_path(tmp_path, PromptName.EXTENSION_RETRY), pcm)
    library = PromptLibrary(tmp_path)
    loaded = library.pcm(PromptName.EXTENSION_RETRY)
    assert loaded is not None and np.array_equal(loaded, pcm)
