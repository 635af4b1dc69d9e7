"""media.audio: decoding any format to 8 kHz mono, espeak-ng TTS, WAV files, G.711 frames.

Inputs are real encoded files made here with PyAV's encoders (WAV, MP3 via LAME, Opus in OGG,
FLAC); the check is on what a listener would notice: the length and the tone's frequency (FFT).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from audio_support import dominant_hz, encode, tone

from media import audio, g711
from media.audio import (
    FRAME_SAMPLES,
    SAMPLE_RATE_HZ,
    AudioError,
    AudioErrorCode,
    decode_audio,
    frames,
    read_wav,
    synthesize,
    write_wav,
)


@pytest.mark.parametrize(
    ("container", "codec", "rate", "channels", "frequency_hz"),
    [
        ("wav", "pcm_s16le", 44100, 2, 440.0),
        ("mp3", "libmp3lame", 44100, 2, 1000.0),
        ("ogg", "libopus", 48000, 1, 600.0),
        ("flac", "flac", 22050, 1, 350.0),
    ],
)
def test_decode_resamples_to_8khz_mono_keeping_the_tone(
    container: str, codec: str, rate: int, channels: int, frequency_hz: float
) -> None:
    data = encode(
        tone(frequency_hz, seconds=1.5, rate=rate, channels=channels),
        rate=rate,
        container=container,
        codec=codec,
    )
    pcm = decode_audio(data)
    assert pcm.dtype == np.int16
    assert pcm.ndim == 1
    # 1.5 s, give or take the codec's priming/padding (a few tens of ms for MP3/Opus).
    assert abs(pcm.size - 1.5 * SAMPLE_RATE_HZ) <= 0.06 * SAMPLE_RATE_HZ
    assert dominant_hz(pcm) == pytest.approx(frequency_hz, abs=2.0)
    # Mixed down, not halved or clipped: a 0.5 amplitude sine stays near 16,000.
    assert 12_000 < np.abs(pcm).max() < 20_000


def test_stereo_channels_are_mixed_not_one_of_them_dropped() -> None:
    rate = 44100
    both = np.vstack([tone(440, seconds=1.0, rate=rate)[0], tone(1000, seconds=1.0, rate=rate)[0]])
    pcm = decode_audio(encode(both, rate=rate, container="wav", codec="pcm_s16le"))
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    bin_hz = SAMPLE_RATE_HZ / pcm.size
    left, right = spectrum[round(440 / bin_hz)], spectrum[round(1000 / bin_hz)]
    assert left > 0 and right > 0
    assert 0.5 < left / right < 2.0


def test_resampling_filters_what_8khz_cannot_carry() -> None:
    # 6 kHz is above the 4 kHz Nyquist limit of telephony audio: naive decimation would fold
    # it to 2 kHz; a proper resampler removes it and keeps the 500 Hz tone.
    rate = 44100
    mixed = tone(500, seconds=1.0, rate=rate, amplitude=0.3) + tone(
        6000, seconds=1.0, rate=rate, amplitude=0.3
    )
    pcm = decode_audio(encode(mixed, rate=rate, container="wav", codec="pcm_s16le"))
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    bin_hz = SAMPLE_RATE_HZ / pcm.size
    assert dominant_hz(pcm) == pytest.approx(500, abs=2.0)
    assert spectrum[round(2000 / bin_hz)] < 0.01 * spectrum[round(500 / bin_hz)]


@pytest.mark.parametrize(
    "data", [b"not audio at all " * 200, bytes(range(256)) * 40, b"RIFF\x00\x00\x00\x00WAVE"]
)
def test_garbage_is_undecodable(data: bytes) -> None:
    with pytest.raises(AudioError) as caught:
        decode_audio(data)
    assert caught.value.code in (AudioErrorCode.AUDIO_UNDECODABLE, AudioErrorCode.AUDIO_EMPTY)


def test_random_bytes_are_refused() -> None:
    noise = np.random.default_rng(5).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    with pytest.raises(AudioError) as caught:
        decode_audio(noise)
    assert caught.value.code is AudioErrorCode.AUDIO_UNDECODABLE


def test_empty_and_too_short_audio_are_refused() -> None:
    with pytest.raises(AudioError) as caught:
        decode_audio(b"")
    assert caught.value.code is AudioErrorCode.AUDIO_EMPTY
    five_ms = encode(
        tone(440, seconds=0.005, rate=8000), rate=8000, container="wav", codec="pcm_s16le"
    )
    with pytest.raises(AudioError) as caught:
        decode_audio(five_ms)
    assert caught.value.code is AudioErrorCode.AUDIO_EMPTY


def test_longer_than_the_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A 3 s file against a cap lowered to 2 s (the check runs while decoding).
    monkeypatch.setattr(audio, "_MAX_SAMPLES", 2 * SAMPLE_RATE_HZ)
    data = encode(tone(440, seconds=3.0, rate=8000), rate=8000, container="wav", codec="pcm_s16le")
    with pytest.raises(AudioError) as caught:
        decode_audio(data)
    assert caught.value.code is AudioErrorCode.AUDIO_TOO_LONG
    assert decode_audio(data[: len(data) // 2]).size < 2 * SAMPLE_RATE_HZ  # under the cap: fine


def test_input_larger_than_the_cap_is_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audio, "MAX_INPUT_BYTES", 1000)
    with pytest.raises(AudioError) as caught:
        decode_audio(b"\0" * 1001)
    assert caught.value.code is AudioErrorCode.AUDIO_TOO_LARGE


# ------------------------------------------------------------------------------- TTS


def test_synthesize_speaks_mandarin_pinyin_at_8khz() -> None:
    pcm = synthesize("qing3 shu1 ru4 fen1 ji1 hao4", voice="cmn-latn-pinyin")
    seconds = pcm.size / SAMPLE_RATE_HZ
    assert 0.8 < seconds < 5.0  # six syllables
    rms = np.sqrt(np.mean(pcm.astype(np.float64) ** 2))
    assert rms > 500  # speech, not silence
    # Speech energy sits in the telephone band, below 4 kHz by construction at 8 kHz.
    assert pcm.dtype == np.int16


def test_text_is_spoken_not_read_as_options() -> None:
    # Passed on stdin: "--version" is two words to say, not espeak-ng's version banner.
    pcm = synthesize("--version -v en", voice="cmn-latn-pinyin")
    assert pcm.size > FRAME_SAMPLES


def test_unknown_voice_is_a_clear_error() -> None:
    with pytest.raises(AudioError) as caught:
        synthesize("ni3 hao3", voice="xx-no-such-voice")
    assert caught.value.code is AudioErrorCode.TTS_VOICE_ILLEGAL


@pytest.mark.parametrize("voice", ["-w /tmp/x", "", "cmn latn", "a/b", "x" * 65])
def test_malformed_voice_is_refused_without_running_espeak(
    voice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audio, "_ESPEAK", "/nonexistent/espeak-ng")  # would be TTS_FAILED
    with pytest.raises(AudioError) as caught:
        synthesize("ni3 hao3", voice=voice)
    assert caught.value.code is AudioErrorCode.TTS_VOICE_ILLEGAL


@pytest.mark.parametrize("text", ["", "   \n\t ", "ni3\x00hao3", "a" * 1001])
def test_unspeakable_text_is_refused(text: str) -> None:
    with pytest.raises(AudioError) as caught:
        synthesize(text)
    assert caught.value.code is AudioErrorCode.TTS_TEXT_ILLEGAL


def test_missing_espeak_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio, "_ESPEAK", "/nonexistent/espeak-ng")
    with pytest.raises(AudioError) as caught:
        synthesize("ni3 hao3")
    assert caught.value.code is AudioErrorCode.TTS_FAILED
    assert "not installed" in caught.value.message


# ------------------------------------------------------------------------------- WAV files


def test_wav_round_trip_is_8khz_16bit_mono(tmp_path: Path) -> None:
    pcm = (np.sin(np.arange(4000) / 7) * 20000).astype(np.int16)
    path = tmp_path / "sub" / "tone.wav"
    write_wav(path, pcm)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getnframes() == 4000
    assert np.array_equal(read_wav(path), pcm)
    assert [p.name for p in path.parent.iterdir()] == ["tone.wav"]  # no temporary left


def test_write_wav_replaces_an_existing_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    write_wav(path, np.full(8000, 1000, dtype=np.int16))
    write_wav(path, np.full(160, -5, dtype=np.int16))
    assert np.array_equal(read_wav(path), np.full(160, -5, dtype=np.int16))
    assert len(list(tmp_path.iterdir())) == 1


def test_read_wav_refuses_other_formats(tmp_path: Path) -> None:
    stereo = tmp_path / "stereo.wav"
    stereo.write_bytes(
        encode(
            tone(440, seconds=0.1, rate=8000, channels=2),
            rate=8000,
            container="wav",
            codec="pcm_s16le",
        )
    )
    hifi = tmp_path / "hifi.wav"
    hifi.write_bytes(
        encode(tone(440, seconds=0.1, rate=44100), rate=44100, container="wav", codec="pcm_s16le")
    )
    text = tmp_path / "text.wav"
    text.write_text("hello")
    for path in (stereo, hifi, text):
        with pytest.raises(AudioError) as caught:
            read_wav(path)
        assert caught.value.code is AudioErrorCode.WAV_FORMAT_ILLEGAL
    # ... which decode_audio converts.
    assert decode_audio(hifi.read_bytes()).size == pytest.approx(800, abs=10)


# ------------------------------------------------------------------------------- frames


@pytest.mark.parametrize(
    ("payload_type", "silence"), [(g711.PAYLOAD_TYPE_PCMU, 0xFF), (g711.PAYLOAD_TYPE_PCMA, 0xD5)]
)
def test_frames_are_20ms_payloads_padded_with_silence(payload_type: int, silence: int) -> None:
    pcm = (np.arange(2 * FRAME_SAMPLES + 1) * 97 % 20000 - 10000).astype(np.int16)
    cut = frames(pcm, payload_type)
    assert [len(f) for f in cut] == [160, 160, 160]
    assert b"".join(cut)[: pcm.size] == g711.encode(payload_type, pcm)
    assert cut[2][1:] == bytes([silence]) * 159
    # Silence: A-law has no exact zero, its smallest step is ±8.
    assert np.all(np.abs(g711.decode(payload_type, cut[2][1:])) <= 8)


def test_frames_of_whole_frames_add_no_padding_and_empty_gives_none() -> None:
    assert len(frames(np.zeros(3 * FRAME_SAMPLES, dtype=np.int16), 0)) == 3
    assert frames(np.zeros(0, dtype=np.int16), 8) == []
    with pytest.raises(ValueError, match="payload type"):
        frames(np.zeros(160, dtype=np.int16), 18)
