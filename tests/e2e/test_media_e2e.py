"""Media features end to end: recording, dead-media teardown, offers we cannot relay.

Real ``maskline serve`` (``[media] inactivity_timeout_s = 2``), SIPp caller and callee over
loopback. Both SIPps talk: each plays a pcap written by the test (``tests/e2e/rtp_pcap.py``;
SIPp's ``play_pcap_audio`` sends from raw sockets, so these tests run as root, as CI does), the
caller a 440 Hz tone, the callee a 1 kHz one, so what maskline relayed and recorded can be told
apart by frequency.
"""

from __future__ import annotations

import socket
import subprocess
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from e2e_support import LOOPBACK, MasklineServer, free_port_udp_and_tcp, start_server, stop_server
from media_support import dominant_frequency
from rtp_pcap import rtp_frames, tone_pcap
from test_calls_e2e import (
    CallResult,
    CallServer,
    _api_client,
    _await_listening,
    _configured,
    _final_status,
    _latest_record,
    _media_closed_line,
    _newest_id,
    _ok,
    _sipp,
    assert_private,
)
from test_media_path_e2e import _answer_media_port

from api.recording_urls import RecordingUrlSigner, derive_url_key
from api.tenants import load_master_key
from media import g711

pytestmark = pytest.mark.e2e

INACTIVITY_TIMEOUT_S = 2
X_RECORDED = "17000000021"  # AXB A/B with recording on
X_PLAIN = "17000000022"  # AXB A/B, no recording
A = "13800138000"
B = "13900139000"
EXPIRES = "2030-01-01 00:00:00"
CALLER_HZ = 440.0
CALLEE_HZ = 1000.0
STRANGER_HZ = 3000.0  # what a third party sprays at the relay's ports mid-call


@pytest.fixture(scope="module")
def media_calls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CallServer]:
    workdir = tmp_path_factory.mktemp("media")
    config, sip_port, callee_port = _configured(workdir)
    text = config.read_text("utf-8")
    config.write_text(
        text.replace("[media]\n", f"[media]\ninactivity_timeout_s = {INACTIVITY_TIMEOUT_S}\n"),
        "utf-8",
    )
    server = start_server(config, workdir, sip_port)
    api = _api_client(config, sip_port)
    pools: dict[str, str] = {}
    for x, record in ((X_RECORDED, True), (X_PLAIN, False)):
        csv_rows = f"number,city,province,carrier,spec\n{x},北京,北京,CMCC,1\n"
        _ok(api.post("/numbers/import", content=csv_rows, headers={"Content-Type": "text/csv"}))
        pool = str(_ok(api.post("/pools", json={"type": "AXB", "name": f"media-{x}"}))["pool_key"])
        assert _ok(api.post(f"/pools/{pool}/numbers", json={"count": 1}))["numbers"] == ["+86" + x]
        _ok(
            api.post(
                f"/pools/{pool}/bindings",
                json={"type": "AXB", "a": A, "b": B, "x": x, "expires": EXPIRES, "record": record},
            )
        )
        pools[x] = pool
    yield CallServer(server, api, callee_port, pools)
    api.close()
    stop_server(server)


@dataclass
class TalkingCall(CallResult):
    elapsed_s: float = 0.0  # caller SIPp start to exit


def talking_call(
    calls: CallServer,
    workdir: Path,
    *,
    x: str,
    caller_scenario: str,
    callee_scenario: str | None,
    caller_args: tuple[str, ...] = (),
    tone_s: float = 3.0,
    while_talking: Callable[[Path, Path], None] | None = None,
) -> TalkingCall:
    """One call where both SIPps play their tone pcap from ``workdir`` (their cwd).

    ``while_talking(caller_trace, callee_trace)`` runs once the caller SIPp is started, before
    it is awaited.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    tone_pcap(workdir / "caller.pcap", frequency_hz=CALLER_HZ, seconds=tone_s,
              payload_type=g711.PAYLOAD_TYPE_PCMA, ssrc=0x0A11CE)  # fmt: skip
    tone_pcap(workdir / "callee.pcap", frequency_hz=CALLEE_HZ, seconds=tone_s,
              payload_type=g711.PAYLOAD_TYPE_PCMA, ssrc=0x0B0B)  # fmt: skip
    mark = _newest_id(calls)
    callee = None
    callee_trace = workdir / "none"
    if callee_scenario is not None:
        command, callee_trace = _sipp(
            callee_scenario, workdir, "callee", ["-mp", str(free_port_udp_and_tcp())]
        )
        command[command.index("-p") + 1] = str(calls.callee_port)
        callee = subprocess.Popen(
            command, cwd=workdir, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        _await_listening(calls.callee_port, callee)
    command, caller_trace = _sipp(
        caller_scenario,
        workdir,
        "caller",
        ["-s", x, "-key", "caller", A, "-mp", str(free_port_udp_and_tcp()), *caller_args],
    )
    command.append(f"{calls.server.sip[0]}:{calls.server.sip[1]}")
    started = time.monotonic()
    caller = subprocess.Popen(
        command, cwd=workdir, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        if while_talking is not None:
            while_talking(caller_trace, callee_trace)
        output, _ = caller.communicate(timeout=60)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
    elapsed_s = time.monotonic() - started
    callee_code = None
    if callee is not None:
        try:
            callee_code = callee.wait(timeout=30)
        except subprocess.TimeoutExpired:
            callee.kill()
            callee_code = callee.wait()
    calls.server.assert_alive()
    result = TalkingCall(
        caller_code=caller.returncode,
        callee_code=callee_code,
        caller_trace=caller_trace.read_text("utf-8", "replace") if caller_trace.exists() else "",
        callee_trace=callee_trace.read_text("utf-8", "replace") if callee_trace.exists() else "",
        caller_output=output.decode("utf-8", "replace"),
        record=_latest_record(calls, mark),
        elapsed_s=elapsed_s,
    )
    assert_private(result, A)
    return result


def _bye_received(trace: str) -> str:
    """The BYE request a SIPp received (its -trace_msg log), headers only."""
    for block in trace.split("-----"):
        if "message received" in block and "\nBYE sip:" in block:
            return block.split("\nBYE sip:", 1)[1].split("\n\n", 1)[0]
    raise AssertionError(f"no BYE was received:\n{trace[-3000:]}")


# ------------------------------------------------------------------------------------ tests


def test_dead_media_releases_both_legs_with_bye(media_calls: CallServer, tmp_path: Path) -> None:
    """Acceptance 5: media flows 1 s, then stops; after the timeout both parties get a BYE."""
    result = talking_call(
        media_calls,
        tmp_path,
        x=X_PLAIN,
        caller_scenario="uac_call_play_await_bye.xml",
        callee_scenario="uas_answer_play.xml",
        tone_s=1.0,
    )
    assert result.caller_code == 0, result.caller_output
    assert result.callee_code == 0, result.callee_trace[-3000:]
    for trace in (result.caller_trace, result.callee_trace):
        bye = _bye_received(trace)
        assert 'Reason: Q.850;cause=102;text="media timeout"' in bye, bye
    # 1 s of media, then the 2 s timeout and at most one sweep period (0.5 s) on top; SIPp
    # start-up and signalling add a little. Never before the timeout ran out.
    assert 1.0 + INACTIVITY_TIMEOUT_S <= result.elapsed_s < 1.0 + INACTIVITY_TIMEOUT_S + 2.0
    record = result.record
    assert record["start_time"] is not None, "an answered call"
    assert record["release_dir"] == 0, "released by the platform"
    assert record["release_cause"] == 102, "recovery on timer expiry: the media timer"


def test_media_that_never_starts_is_dead_too(media_calls: CallServer, tmp_path: Path) -> None:
    """Neither party sends a packet after the answer: released after the timeout all the same."""
    started = time.monotonic()
    result = talking_call(
        media_calls,
        tmp_path,
        x=X_PLAIN,
        caller_scenario="uac_call_answered_remote_bye.xml",
        callee_scenario="uas_answer.xml",
    )
    assert result.caller_code == 0 and result.callee_code == 0, result.caller_output
    assert time.monotonic() - started >= INACTIVITY_TIMEOUT_S
    _bye_received(result.caller_trace)
    _bye_received(result.callee_trace)
    assert (result.record["release_dir"], result.record["release_cause"]) == (0, 102)


def test_offer_without_g711_gets_488_with_warning_and_no_outbound_leg(
    media_calls: CallServer, tmp_path: Path
) -> None:
    """An offer of G.729 only: 488 + Warning 305 to the caller; the trunk never sees an INVITE."""
    result = talking_call(
        media_calls,
        tmp_path,
        x=X_PLAIN,
        caller_scenario="uac_call_unsupported_codec.xml",
        callee_scenario=None,
    )
    assert result.caller_code == 0, result.caller_output  # the scenario checked the Warning
    assert _final_status(result.caller_trace) == 488
    warning = next(line for line in result.caller_trace.splitlines() if line.startswith("Warning:"))
    host, port = media_calls.server.sip
    assert warning == f'Warning: 305 {host}:{port} "Incompatible media format"'
    record = result.record
    assert record["start_time"] is None and record["call_out_time"] is None, "no outbound leg"
    assert (record["release_dir"], record["release_cause"]) == (0, 127)  # RFC 3398: 488 → 127


def test_reinvite_without_g711_gets_488_and_the_call_stays_up(
    media_calls: CallServer, tmp_path: Path
) -> None:
    """A re-offer of G.729 only is refused on that leg; the far leg never sees it."""
    result = talking_call(
        media_calls,
        tmp_path,
        x=X_PLAIN,
        caller_scenario="uac_call_reinvite_unsupported_codec.xml",
        callee_scenario="uas_answer_play.xml",
        caller_args=("-d", "500"),
    )
    assert result.caller_code == 0, result.caller_output  # 488 + Warning, then BYE answered
    assert result.callee_code == 0
    assert result.callee_trace.count("INVITE sip:") == 1, "the re-INVITE stayed on its leg"
    assert "G729" not in result.callee_trace
    record = result.record
    assert (record["release_dir"], record["release_cause"]) == (1, 16), "the caller hung up"


# ------------------------------------------------------------------------- recording


def _latched_lines(server: MasklineServer) -> int:
    text = server.stderr_path.read_text("utf-8", "replace")
    return text.count('"event": "rtp latched"')


def _await_latched(server: MasklineServer, before: int, count: int, timeout_s: float) -> None:
    """Until the relay has logged ``count`` more latches than ``before`` (both far parties)."""
    deadline = time.monotonic() + timeout_s
    while _latched_lines(server) < before + count:
        assert time.monotonic() < deadline, "the relay never latched onto both parties"
        time.sleep(0.02)


def _offer_media_port(trace: Path) -> int:
    """The media port of the INVITE's SDP the callee received (its -trace_msg file)."""
    text = trace.read_text("utf-8", "replace")
    invite = text.split("INVITE sip:", 1)[1]
    return int(invite.split("\nm=audio ", 1)[1].split()[0])


def _spray(ports: tuple[int, int], *, seconds: float) -> int:
    """A stranger on the parties' own IP, other port, sends a 3 kHz tone to both relay ports."""
    t = np.arange(round(seconds * 8000)) / 8000
    tone = (8000 * np.sin(2 * np.pi * STRANGER_HZ * t)).astype(np.int16)
    packets = rtp_frames(tone, payload_type=g711.PAYLOAD_TYPE_PCMA, ssrc=0xBAD)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind((LOOPBACK, 0))
        start = time.monotonic()
        for n, packet in enumerate(packets):
            for port in ports:
                stranger.sendto(packet, (LOOPBACK, port))
            time.sleep(max(0.0, start + (n + 1) * 0.02 - time.monotonic()))
    return len(packets)


def _band_power(samples: npt.NDArray[np.int16], frequency_hz: float) -> float:
    """Spectral power within ±25 Hz of ``frequency_hz`` (Hann window)."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples)))) ** 2
    bins = np.fft.rfftfreq(len(samples), 1 / 8000)
    return float(spectrum[np.abs(bins - frequency_hz) <= 25].sum())


def _onset_s(samples: npt.NDArray[np.int16]) -> float:
    """When a channel first carries sound (|sample| above 1,000 of 32,767), in seconds."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 1000)
    assert loud.size, "the channel is silent"
    return float(loud[0]) / 8000


def test_recorded_call_caller_left_callee_right_signed_url(
    media_calls: CallServer, tmp_path: Path
) -> None:
    """Acceptance 1: a recorded AXB call with 440 Hz from A and 1 kHz from B, 3 s each.

    A stranger sprays 3 kHz at both relay ports meanwhile: latched sessions drop it, so it is
    neither relayed nor recorded. The WAV is where the call's month and reference say, its
    signed URL downloads it, a tampered or expired URL gets 403.
    """
    tone_s = 3.0
    server = media_calls.server
    latched_before = _latched_lines(server)
    sprayed: list[int] = []

    def stranger(caller_trace: Path, callee_trace: Path) -> None:
        port_a = _answer_media_port(caller_trace, timeout=10)  # ours, facing the caller
        port_b = _offer_media_port(callee_trace)  # ours, facing the callee
        _await_latched(server, latched_before, 2, timeout_s=5)
        sprayed.append(_spray((port_a, port_b), seconds=1.0))

    result = talking_call(
        media_calls,
        tmp_path,
        x=X_RECORDED,
        caller_scenario="uac_call_play.xml",
        callee_scenario="uas_answer_play.xml",
        caller_args=("-d", str(int(tone_s * 1000) + 500)),
        tone_s=tone_s,
        while_talking=stranger,
    )
    assert result.caller_code == 0, result.caller_output
    assert result.callee_code == 0
    assert sprayed == [50]
    record = result.record
    assert record["release_dir"] == 1 and record["start_time"] is not None
    call_id = str(record["call_id"])
    closed = _media_closed_line(server, call_id)
    # Every stranger packet reached the relay and was dropped there, none relayed.
    assert closed["dropped"] == 2 * sprayed[0], closed
    assert closed["packets_a_to_b"] == closed["packets_b_to_a"] == tone_s / 0.02

    # <[recording] dir>/<YYYYMM of the answer, local time>/<call reference>.wav
    month = str(record["start_time"])[:7].replace("-", "")
    path = server.workdir / "recordings" / month / f"{call_id}.wav"
    assert path.is_file(), sorted(str(p) for p in (server.workdir / "recordings").rglob("*"))
    for number in (A, B, X_RECORDED):
        assert number not in str(path)

    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        frames = wav.readframes(wav.getnframes())
    stereo = np.frombuffer(frames, dtype="<i2").reshape(-1, 2)
    duration_s = len(stereo) / 8000
    assert abs(duration_s - tone_s) <= 0.2, duration_s
    left, right = stereo[:, 0], stereo[:, 1]
    assert abs(dominant_frequency(left) - CALLER_HZ) < 5, "the caller on the left"
    assert abs(dominant_frequency(right) - CALLEE_HZ) < 5, "the callee on the right"
    # Each channel carries its own party only, and nothing of the stranger.
    assert _band_power(left, CALLER_HZ) > 1000 * _band_power(left, CALLEE_HZ)
    assert _band_power(right, CALLEE_HZ) > 1000 * _band_power(right, CALLER_HZ)
    for channel in (left, right):
        assert _band_power(channel, STRANGER_HZ) < 1e-4 * _band_power(channel, CALLER_HZ) + 1e-4 * (
            _band_power(channel, CALLEE_HZ)
        )
    # Both parties started talking at their ACK, a few ms apart: the channels stay aligned.
    assert abs(_onset_s(left) - _onset_s(right)) < 0.1
    assert _onset_s(left) < 0.2 and _onset_s(right) < 0.2

    # The signed URL downloads exactly the file; tampered or expired URLs get 403.
    api = media_calls.api
    signed = _ok(api.get(f"/calls/{call_id}/recording"))
    url = str(signed["url"])
    assert f"/recordings/{call_id}.wav?" in url
    with httpx.Client() as anonymous:
        download = anonymous.get(url)
        assert download.status_code == 200, download.text
        assert download.content == path.read_bytes()
        base, _, query = url.partition("?")
        params = dict(part.split("=", 1) for part in query.split("&"))
        signature = params["signature"]
        flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
        for bad in (
            {**params, "signature": flipped},
            {**params, "expires": str(int(params["expires"]) + 3600)},
        ):
            refused = anonymous.get(base, params=bad)
            assert refused.status_code == 403, refused.text
            assert refused.json()["code"] == "FORBIDDEN"
        # Expired, with a genuine signature: made with the server's own key and signer.
        master_key, created = load_master_key(server.workdir / "master.key")
        assert not created, "the server's master key is where the test looks"
        signer = RecordingUrlSigner(derive_url_key(master_key), ttl_s=60)
        expired = signer.sign(call_id, now=time.time() - 120)
        api_root = base.split("/recordings/", 1)[0]
        refused = anonymous.get(api_root + expired.path)
        assert refused.status_code == 403 and "expired" in refused.text, refused.text
        fresh = signer.sign(call_id, now=time.time())
        assert anonymous.get(api_root + fresh.path).status_code == 200, "the key is the server's"
