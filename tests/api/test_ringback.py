"""Enterprise ringback tones over REST and the CLI: upload, TTS, replace, delete, isolation.

Real parts throughout: audio files encoded with PyAV (MP3) and the standard library (WAV), the
real espeak-ng, a real SQLite file, the WAV files on disk read back and checked by FFT, and the
engine's side (resolver + RingbackLibrary) reading what the API stored.
"""

from __future__ import annotations

import io
import json
import wave
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.audio.stream
import numpy as np
import numpy.typing as npt
import pytest
from api_support import Api
from cli_support import Cli
from tenants_support import basic, snapshot_tables

from api import routes_ringback
from api.ringback import ringback_service
from engine.cli import main
from media import g711
from media.audio import read_wav
from media.ringback import RingbackLibrary, ringback_tone_for
from routing.index import CALL_TYPE_A_TO_PEER, CALL_TYPE_PEER_TO_A
from routing.model import BindingType
from store import ringback as tone_store


def _sine(frequency_hz: float, seconds: float, rate: int) -> npt.NDArray[np.int16]:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * frequency_hz * t) * 12000).astype(np.int16)


def wav_bytes(frequency_hz: float, *, seconds: float = 1.0, rate: int = 16000) -> bytes:
    """A mono 16-bit WAV (standard library) at ``rate``."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(_sine(frequency_hz, seconds, rate).tobytes())
    return out.getvalue()


def mp3_bytes(frequency_hz: float, *, seconds: float = 1.0, rate: int = 44100) -> bytes:
    """A stereo MP3 (LAME through PyAV)."""
    samples = _sine(frequency_hz, seconds, rate).astype(np.float32) / 32768
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp3") as box:
        stream = box.add_stream("libmp3lame", rate=rate)
        assert isinstance(stream, av.audio.stream.AudioStream)
        stream.layout = "stereo"
        step = stream.codec_context.frame_size or 1152
        for start in range(0, samples.size, step):
            chunk = samples[start : start + step]
            planes = np.ascontiguousarray(np.vstack([chunk, chunk]))
            frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                box.mux(packet)
        for packet in stream.encode(None):
            box.mux(packet)
    return out.getvalue()


def dominant_hz(samples: npt.NDArray[np.int16]) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(samples.size)))
    spectrum[0] = 0
    return float(np.argmax(spectrum) * 8000 / samples.size)


async def _tenant(api: Api, name: str = "Acme") -> dict[str, Any]:
    response = await api.client.post("/v1/tenants", json={"name": name})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _as(tenant: dict[str, Any]) -> dict[str, str]:
    return basic(tenant["access_key_id"], tenant["access_key_secret"])


def _files(api: Api) -> dict[str, bytes]:
    folder = ringback_service(api.control).ringback_dir
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}


def _state(api: Api) -> tuple[object, ...]:
    return snapshot_tables(api.db_path, ["ringback_tones"]), _files(api)


async def _put(
    api: Api,
    tenant_id: str,
    tone_id: str,
    data: bytes,
    *,
    content_type: str = "audio/mpeg",
    headers: dict[str, str] | None = None,
) -> Any:
    return await api.client.put(
        f"/v1/tenants/{tenant_id}/ringback/{tone_id}",
        content=data,
        headers={"content-type": content_type, **(headers or {})},
    )


async def test_upload_stores_8khz_telephony_audio_of_the_same_tone(api: Api) -> None:
    acme = await _tenant(api)
    answer = await _put(api, acme["tenant_id"], "tone-7", mp3_bytes(1000, seconds=1.2))
    assert answer.status_code == 200, answer.text
    tone = answer.json()
    assert tone["tenant_id"] == acme["tenant_id"]
    assert tone["tone_id"] == "tone-7"
    assert tone["source"] == "upload"
    assert tone["voice"] is None and tone["text"] is None
    assert abs(tone["duration_ms"] - 1200) <= 60
    assert tone["created"] == tone["updated"]

    path = ringback_service(api.control).path_for(acme["tenant_id"], "tone-7")
    pcm = read_wav(path)  # 8 kHz 16-bit mono or it raises
    assert abs(pcm.size - 9600) <= 480
    assert dominant_hz(pcm) == pytest.approx(1000, abs=2)
    # No part of the id typed by the client is used raw as a file name.
    assert path.parent == ringback_service(api.control).ringback_dir
    row = await tone_store.get_tone(api.control.db, acme["tenant_id"], "tone-7")
    assert row is not None and row.file_name == path.name

    shown = await api.client.get(f"/v1/tenants/{acme['tenant_id']}/ringback/tone-7")
    assert shown.status_code == 200 and shown.json() == tone


async def test_a_tenant_makes_a_tone_from_text_and_lists_its_tones(api: Api) -> None:
    acme = await _tenant(api)
    await _put(api, acme["tenant_id"], "upload-1", wav_bytes(440))
    answer = await api.client.post(
        f"/v1/tenants/{acme['tenant_id']}/ringback/welcome/tts",
        json={"text": "欢迎致电，正在为您接通"},
        headers=_as(acme),
    )
    assert answer.status_code == 200, answer.text
    tone = answer.json()
    assert (tone["source"], tone["voice"], tone["text"]) == (
        "tts",
        "cmn-latn-pinyin",
        "欢迎致电，正在为您接通",
    )
    pcm = read_wav(ringback_service(api.control).path_for(acme["tenant_id"], "welcome"))
    assert 1.0 < pcm.size / 8000 < 8.0
    assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 500
    assert tone["duration_ms"] == pcm.size * 1000 // 8000

    listed = await api.client.get(f"/v1/tenants/{acme['tenant_id']}/ringback", headers=_as(acme))
    assert listed.status_code == 200
    assert [t["tone_id"] for t in listed.json()["tones"]] == ["upload-1", "welcome"]


async def test_replacing_a_tone_swaps_the_audio_and_keeps_its_creation_time(api: Api) -> None:
    acme = await _tenant(api)
    tenant_id = acme["tenant_id"]
    first = (await _put(api, tenant_id, "tone-7", wav_bytes(440))).json()
    library = RingbackLibrary(ringback_service(api.control).ringback_dir)
    before = library.frames(tenant_id, "tone-7", g711.PAYLOAD_TYPE_PCMU)
    assert dominant_hz(g711.decode(0, b"".join(before))) == pytest.approx(440, abs=2)

    api.clock.now += 3600
    replaced = await _put(api, tenant_id, "tone-7", mp3_bytes(1000, seconds=0.5))
    assert replaced.status_code == 200, replaced.text
    second = replaced.json()
    assert second["created"] == first["created"]
    assert second["updated"] != first["updated"]
    assert abs(second["duration_ms"] - 500) <= 60
    # The engine's library notices the new file by itself.
    after = library.frames(tenant_id, "tone-7", g711.PAYLOAD_TYPE_PCMU)
    assert dominant_hz(g711.decode(0, b"".join(after))) == pytest.approx(1000, abs=2)
    assert len(_files(api)) == 1  # replaced in place, no backup or temporary left


async def test_a_refused_replacement_changes_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = await _tenant(api)
    await _put(api, acme["tenant_id"], "tone-7", wav_bytes(440))
    before = _state(api)

    garbage = await _put(api, acme["tenant_id"], "tone-7", b"this is not audio" * 100)
    assert garbage.status_code == 400
    assert garbage.json()["code"] == "AUDIO_UNDECODABLE"
    assert _state(api) == before

    # The database refuses after the new file was put in place: the old file comes back.
    async def failing(*_args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(tone_store, "upsert_tone", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        await ringback_service(api.control).add_from_audio(
            _operator(), acme["tenant_id"], "tone-7", wav_bytes(1000)
        )
    with pytest.raises(RuntimeError, match="disk full"):
        await ringback_service(api.control).add_from_audio(
            _operator(), acme["tenant_id"], "brand-new", wav_bytes(1000)
        )
    assert _state(api) == before


def _operator() -> Any:
    from api.principal import OPERATOR

    return OPERATOR


async def test_delete_removes_row_and_file(api: Api) -> None:
    acme = await _tenant(api)
    tenant_id = acme["tenant_id"]
    await _put(api, tenant_id, "tone-7", wav_bytes(440))
    await _put(api, tenant_id, "tone-8", wav_bytes(500))
    path = ringback_service(api.control).path_for(tenant_id, "tone-7")
    deleted = await api.client.delete(f"/v1/tenants/{tenant_id}/ringback/tone-7", headers=_as(acme))
    assert deleted.status_code == 200 and deleted.json() == {"ok": True}
    assert not path.exists()
    assert RingbackLibrary(path.parent).frames(tenant_id, "tone-7", 0) == ()
    gone = await api.client.get(f"/v1/tenants/{tenant_id}/ringback/tone-7")
    assert (gone.status_code, gone.json()["code"]) == (404, "RINGBACK_NOT_EXIST")
    again = await api.client.delete(f"/v1/tenants/{tenant_id}/ringback/tone-7")
    assert (again.status_code, again.json()["code"]) == (404, "RINGBACK_NOT_EXIST")
    listed = (await api.client.get(f"/v1/tenants/{tenant_id}/ringback")).json()["tones"]
    assert [t["tone_id"] for t in listed] == ["tone-8"]


async def test_another_tenants_tones_are_not_found_and_untouched(api: Api) -> None:
    a, b = await _tenant(api, "A"), await _tenant(api, "B")
    await _put(api, a["tenant_id"], "tone-7", wav_bytes(440))
    before = _state(api)
    base = f"/v1/tenants/{a['tenant_id']}/ringback"
    nowhere = "/v1/tenants/T000000000000/ringback"
    attempts = [
        ("GET", "", None, None),
        ("GET", "/tone-7", None, None),
        ("DELETE", "/tone-7", None, None),
        ("PUT", "/tone-7", wav_bytes(1000), None),
        ("PUT", "/tone-9", b"not even audio", None),  # refused as foreign before decoding
        ("POST", "/tone-7/tts", None, {"text": "ni3 hao3"}),
    ]
    for method, suffix, content, body in attempts:
        foreign = await api.client.request(
            method, base + suffix, content=content, json=body, headers=_as(b)
        )
        missing = await api.client.request(method, nowhere + suffix, content=content, json=body)
        assert foreign.status_code == missing.status_code == 404, (method, suffix, foreign.text)
        assert foreign.json()["code"] == missing.json()["code"] == "TENANT_NOT_EXIST"
    assert _state(api) == before
    # B's own tone of the same id is a different tone and a different file.
    own = await _put(api, b["tenant_id"], "tone-7", wav_bytes(1000), headers=_as(b))
    assert own.status_code == 200
    service = ringback_service(api.control)
    assert service.path_for(a["tenant_id"], "tone-7") != service.path_for(b["tenant_id"], "tone-7")
    assert dominant_hz(read_wav(service.path_for(a["tenant_id"], "tone-7"))) == pytest.approx(
        440, abs=2
    )


@pytest.mark.parametrize(
    ("method", "suffix", "kwargs", "status", "code"),
    [
        (
            "PUT",
            "/t",
            {"content": b"", "headers": {"content-type": "audio/wav"}},
            400,
            "AUDIO_EMPTY",
        ),
        (
            "PUT",
            "/t",
            {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data; boundary=x"}},
            400,
            "PARAMETER_ILLEGAL",
        ),
        ("PUT", "/" + "x" * 65, {"content": b"RIFF"}, 400, "PARAMETER_ILLEGAL"),
        ("PUT", "/%20%20", {"content": b"RIFF"}, 400, "PARAMETER_ILLEGAL"),
        ("POST", "/t/tts", {"json": {"text": ""}}, 400, "PARAMETER_ILLEGAL"),
        ("POST", "/t/tts", {"json": {"text": "\x07"}}, 400, "TTS_TEXT_ILLEGAL"),
        ("POST", "/t/tts", {"json": {"text": "ni3", "voice": "xx-nope"}}, 400, "TTS_VOICE_ILLEGAL"),
        (
            "POST",
            "/t/tts",
            {"json": {"text": "ni3", "voice": "-w /tmp/x"}},
            400,
            "TTS_VOICE_ILLEGAL",
        ),
        ("POST", "/t/tts", {"json": {"text": "ni3", "extra": 1}}, 400, "PARAMETER_ILLEGAL"),
        ("GET", "/nope", {}, 404, "RINGBACK_NOT_EXIST"),
    ],
)
async def test_bad_requests_are_clear_errors_and_change_nothing(  # noqa: PLR0917  (parametrized)
    api: Api, method: str, suffix: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    acme = await _tenant(api)
    before = _state(api)
    answer = await api.client.request(
        method, f"/v1/tenants/{acme['tenant_id']}/ringback{suffix}", **kwargs
    )
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"code", "message"}
    assert answer.json()["code"] == code
    assert _state(api) == before


async def test_too_large_an_upload_is_refused_while_reading(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = await _tenant(api)
    monkeypatch.setattr(routes_ringback, "MAX_INPUT_BYTES", 10_000)
    answer = await _put(api, acme["tenant_id"], "big", wav_bytes(440, seconds=1.0))
    assert (answer.status_code, answer.json()["code"]) == (413, "AUDIO_TOO_LARGE")
    assert _files(api) == {}


async def test_tone_ids_with_any_characters_get_sanitised_file_names(api: Api) -> None:
    acme = await _tenant(api)
    for tone_id, quoted in (
        ("彩铃/一号", "%E5%BD%A9%E9%93%83%2F%E4%B8%80%E5%8F%B7"),
        ("../..", "..%2F.."),
    ):
        answer = await _put(api, acme["tenant_id"], quoted, wav_bytes(440))
        assert answer.status_code == 200, answer.text
        assert answer.json()["tone_id"] == tone_id
    names = sorted(_files(api))
    assert len(names) == 2
    assert all(n.isascii() and "/" not in n and not n.startswith(".") for n in names)
    tts = await api.client.post(
        f"/v1/tenants/{acme['tenant_id']}/ringback/%E5%BD%A9%E9%93%83%2F%E4%B8%80%E5%8F%B7/tts",
        json={"text": "ni3 hao3"},
    )
    assert tts.status_code == 200 and tts.json()["tone_id"] == "彩铃/一号"


async def test_the_engine_plays_the_binding_tone_over_the_pool_tone(api: Api) -> None:
    # SPEC §2: binding-level code first, else the pool's; the engine resolves, then loads frames.
    acme = await _tenant(api)
    tenant_id = acme["tenant_id"]
    await api.import_inventory()
    await _put(api, tenant_id, "pool-tone", wav_bytes(500))
    await _put(api, tenant_id, "bind-tone", wav_bytes(1000))
    pool_key = (
        await api.client.post(
            "/v1/pools", json={"type": "AXB", "name": "p", "tenant_id": tenant_id}
        )
    ).json()["pool_key"]
    assert (await api.client.post(f"/v1/pools/{pool_key}/numbers", json={"count": 1})).is_success
    configured = await api.client.patch(
        f"/v1/pools/{pool_key}",
        json={"ringback": {"AXBRing_A": "pool-tone", "AXBRing_B": "pool-tone"}},
    )
    assert configured.status_code == 200, configured.text
    bound = await api.client.post(
        f"/v1/pools/{pool_key}/bindings",
        json={
            "type": "AXB",
            "a": "13800138000",
            "b": "13900139000",
            "expires": api.expires(),
            "ringback": {"AXBRing_B": "bind-tone"},
        },
    )
    assert bound.status_code == 201, bound.text
    binding = await api.control.get_binding(pool_key, bound.json()["sub_id"])
    pool = await api.control.get_pool(pool_key)
    library = RingbackLibrary(ringback_service(api.control).ringback_dir)
    heard = {}
    for call_type in (CALL_TYPE_A_TO_PEER, CALL_TYPE_PEER_TO_A):
        tone = ringback_tone_for(
            binding.ringback, pool.ringback, binding_type=BindingType.AXB, call_type=call_type
        )
        assert tone is not None and pool.tenant_id == tenant_id
        payloads = library.frames(pool.tenant_id, tone, g711.PAYLOAD_TYPE_PCMA)
        heard[call_type] = dominant_hz(g711.decode(8, b"".join(payloads)))
    assert heard[CALL_TYPE_A_TO_PEER] == pytest.approx(500, abs=2)  # the pool's AXBRing_A
    assert heard[CALL_TYPE_PEER_TO_A] == pytest.approx(1000, abs=2)  # the binding's AXBRing_B


# ------------------------------------------------------------------------------- CLI


async def test_cli_adds_lists_shows_and_removes_tones(api: Api, cli: Cli, tmp_path: Path) -> None:
    acme = await _tenant(api)
    tenant_id = acme["tenant_id"]
    song = tmp_path / "song.mp3"
    song.write_bytes(mp3_bytes(1000, seconds=0.8))
    code, [added] = await cli(
        "ringback", "add", "--tenant", tenant_id, "--tone", "t1", "--file", str(song)
    )
    assert code == 0, added
    assert (added["tone_id"], added["source"]) == ("t1", "upload")
    assert abs(added["duration_ms"] - 800) <= 60
    code, [spoken] = await cli(
        "ringback", "add", "--tenant", tenant_id, "--tone", "t2", "--text", "ni3 hao3",
        "--voice", "cmn-latn-pinyin",
    )  # fmt: skip
    assert code == 0, spoken
    assert (spoken["source"], spoken["voice"], spoken["text"]) == (
        "tts",
        "cmn-latn-pinyin",
        "ni3 hao3",
    )

    code, listed = await cli("ringback", "list", "--tenant", tenant_id)
    assert code == 0
    assert [t["tone_id"] for t in listed] == ["t1", "t2"]
    code, [shown] = await cli("ringback", "show", "--tenant", tenant_id, "--tone", "t1")
    assert (code, shown) == (0, added)

    code, [removed] = await cli("ringback", "remove", "--tenant", tenant_id, "--tone", "t1")
    assert (code, removed) == (0, {"tenant_id": tenant_id, "tone_id": "t1", "removed": True})
    code, [error] = await cli("ringback", "remove", "--tenant", tenant_id, "--tone", "t1")
    assert (code, error["code"]) == (1, "RINGBACK_NOT_EXIST")


async def test_cli_errors_are_json(api: Api, cli: Cli, tmp_path: Path) -> None:
    acme = await _tenant(api)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF but not really a wave file" * 10)
    code, [error] = await cli(
        "ringback", "add", "--tenant", acme["tenant_id"], "--tone", "t", "--file", str(junk)
    )
    assert (code, error["code"]) == (1, "AUDIO_UNDECODABLE")
    code, [error] = await cli(
        "ringback",
        "add",
        "--tenant",
        acme["tenant_id"],
        "--tone",
        "t",
        "--file",
        str(tmp_path / "nope.mp3"),
    )
    assert (code, error["code"]) == (2, "FILE_UNREADABLE")
    code, [error] = await cli("ringback", "add", "--tenant", acme["tenant_id"], "--tone", "t")
    assert (code, error["code"]) == (2, "USAGE")
    code, [error] = await cli("ringback", "list", "--tenant", "T000000000000")
    assert (code, error["code"]) == (1, "TENANT_NOT_EXIST")
    assert _files(api) == {}


def test_cli_prompts_build_makes_missing_prompts_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts_dir = tmp_path / "prompts"
    config = tmp_path / "maskline.toml"
    config.write_text(
        f'[audio]\nprompts_dir = "{prompts_dir}"\ntts_voice = "cmn-latn-pinyin"\n', encoding="utf-8"
    )

    def run(*argv: str) -> tuple[int, list[dict[str, Any]]]:
        capsys.readouterr()
        code = main(["--config", str(config), "prompts", "build", *argv])
        return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    code, lines = run()
    assert code == 0
    assert len(lines) == 10 and all(line["created"] for line in lines)
    assert {line["prompt"] for line in lines} >= {"NO_BINDING", "ENTER_EXTENSION"}
    for line in lines:
        assert read_wav(Path(line["file"])).size > 8000 * 0.8  # real speech, 8 kHz mono

    mine = prompts_dir / "NO_BINDING.wav"
    mine.write_bytes(wav_bytes(440))  # the operator's own recording
    (prompts_dir / "EXPIRED.wav").unlink()
    code, lines = run()
    assert code == 0
    assert {line["prompt"] for line in lines if line["created"]} == {"EXPIRED"}
    assert mine.read_bytes() == wav_bytes(440)

    from media import prompts

    monkeypatch.setattr(prompts, "synthesize", lambda text, *, voice: np.zeros(800, np.int16))
    code, lines = run("--force")
    assert code == 0 and all(line["created"] for line in lines)
    assert read_wav(mine).size == 800  # --force replaces the operator's file too

    config.write_text(
        '[audio]\ntts_voice = "xx-nope"\nprompts_dir = "' + str(tmp_path / "p2") + '"\n'
    )
    monkeypatch.undo()
    code, lines = run()
    assert (code, lines[0]["code"]) == (1, "TTS_VOICE_ILLEGAL")
