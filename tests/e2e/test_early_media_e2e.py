"""What the caller hears from maskline itself: enterprise ringback, announcements, extension IVR.

Issue 5 acceptance 2, 3 and 4 against the real ``maskline serve``: SIPp callers whose SDP offers
the port of an :class:`RtpEndpoint` this test owns (``*_rtp_port*.xml``), so every RTP packet
maskline plays to the caller is recorded here, decoded and compared with the audio maskline
stored — the tenant's ringback tone files and the prompts made with espeak-ng into this server's
``[audio] prompts_dir`` at start. Extension keys go back from the same port as RFC 4733
telephone-event packets, or by SIP INFO from the caller SIPp.

One server for the module, with ``[ivr] inter_digit_timeout_s = 2``:

- AXB X_TONES of a tenant's pool whose codes set ``pool-tone`` both ways; binding A/B sets
  ``binding-tone`` for A's calls only (AXBRing_A). Both tones are seeded noise: the same audio
  correlates near 1 at some lag, another noise near 0.
- AXB X_TTS: binding C/D with ``AXBRing_A`` = a tone made from text (TTS).
- AXN_EXT X_EXT: A1 on extension 12, A2 on extension 567.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from e2e_support import (
    LOOPBACK,
    SipReply,
    UdpClient,
    new_branch,
    new_call_id,
    parse_reply,
    start_server,
    stop_server,
)
from media_support import (
    SAMPLE_RATE,
    Pcm,
    ReceivedPacket,
    RtpEndpoint,
    best_correlation,
    decode_stream,
)
from test_calls_e2e import (
    CallServer,
    _api_client,
    _await_listening,
    _configured,
    _latest_record,
    _logged_at_s,
    _message_block,
    _newest_id,
    _ok,
    _sipp,
    assert_private,
)

from media.audio import read_wav, write_wav
from media.dtmf import telephone_event_packets
from media.prompts import PromptName, prompt_path
from media.ringback import tone_file_name

pytestmark = pytest.mark.e2e

X_TONES = "17000000031"
X_TTS = "17000000032"
X_EXT = "17000000033"
A = "13800138000"
B = "13900139000"
C = "13300133000"
D = "13200132000"
A1 = "13100131000"  # extension 12
A2 = "13000130000"  # extension 567
N = "13600136000"  # an N calling the extension X
STRANGER = "13500135000"
EXPIRES = "2030-01-01 00:00:00"
INTER_DIGIT_TIMEOUT_S = 2
RING_S = 2.0  # how long the callee SIPp rings before it answers
EVENT_PT = 101  # the telephone-event type of the caller scenarios' SDP


@dataclass
class EarlyServer(CallServer):
    workdir: Path = Path()
    tenant_id: str = ""

    def tone(self, tone_id: str) -> Pcm:
        """A tenant's tone as maskline stored it (8 kHz)."""
        return read_wav(self.workdir / "ringback" / tone_file_name(self.tenant_id, tone_id))

    def prompt(self, name: PromptName) -> Pcm:
        return read_wav(prompt_path(self.workdir / "prompts", name))


def _noise(seed: int, seconds: float) -> Pcm:
    """Seeded noise, band-limited by a short moving average so G.711 keeps it faithful."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(0.0, 1.0, int(seconds * SAMPLE_RATE) + 4)
    smooth = np.convolve(raw, np.ones(4) / 4, mode="valid")[: int(seconds * SAMPLE_RATE)]
    return (smooth / np.max(np.abs(smooth)) * 12000).astype(np.int16)


def _wav_bytes(pcm: Pcm, directory: Path, name: str) -> bytes:
    path = directory / f"{name}.wav"
    write_wav(path, pcm)
    return path.read_bytes()


@pytest.fixture(scope="module")
def early(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EarlyServer]:
    workdir = tmp_path_factory.mktemp("early")
    config, sip_port, callee_port = _configured(workdir)
    config.write_text(
        config.read_text("utf-8")
        + f"""
[audio]
prompts_dir = "{workdir / "prompts"}"
ringback_dir = "{workdir / "ringback"}"

[ivr]
inter_digit_timeout_s = {INTER_DIGIT_TIMEOUT_S}
max_tries = 3
""",
        "utf-8",
    )
    server = start_server(config, workdir, sip_port)
    api = _api_client(config, sip_port)
    tenant = str(_ok(api.post("/tenants", json={"name": "early media"}))["tenant_id"])
    pools: dict[str, str] = {}
    for kind, x in (("AXB", X_TONES), ("AXB", X_TTS), ("AXN_EXT", X_EXT)):
        csv_rows = f"number,city,province,carrier,spec\n{x},北京,北京,CMCC,1\n"
        _ok(api.post("/numbers/import", content=csv_rows, headers={"Content-Type": "text/csv"}))
        created = _ok(api.post("/pools", json={"type": kind, "name": x, "tenant_id": tenant}))
        pool = str(created["pool_key"])
        assert _ok(api.post(f"/pools/{pool}/numbers", json={"count": 1}))["numbers"] == ["+86" + x]
        pools[x] = pool
    for tone_id, seed in (("pool-tone", 1), ("binding-tone", 2)):
        _ok(
            api.put(
                f"/tenants/{tenant}/ringback/{tone_id}",
                content=_wav_bytes(_noise(seed, 2.0), workdir, tone_id),
                headers={"Content-Type": "audio/wav"},
            )
        )
    _ok(
        api.post(
            f"/tenants/{tenant}/ringback/tts-tone/tts",
            json={"text": "huan1 ying2 zhi4 dian4, zheng4 zai4 wei4 nin2 jie1 tong1"},
        )
    )
    _ok(
        api.patch(
            f"/pools/{pools[X_TONES]}",
            json={"ringback": {"AXBRing_A": "pool-tone", "AXBRing_B": "pool-tone"}},
        )
    )
    bindings = [
        (X_TONES, {"type": "AXB", "a": A, "b": B, "ringback": {"AXBRing_A": "binding-tone"}}),
        (X_TTS, {"type": "AXB", "a": C, "b": D, "ringback": {"AXBRing_A": "tts-tone"}}),
        (X_EXT, {"type": "AXN_EXT", "a": A1, "extension": "12"}),
        (X_EXT, {"type": "AXN_EXT", "a": A2, "extension": "567"}),
    ]
    for x, body in bindings:
        _ok(api.post(f"/pools/{pools[x]}/bindings", json={**body, "x": x, "expires": EXPIRES}))
    yield EarlyServer(server, api, callee_port, pools, workdir=workdir, tenant_id=tenant)
    api.close()
    stop_server(server)


# ----------------------------------------------------------------------------------- calls


@dataclass
class EarlyCall:
    caller_code: int
    callee_code: int | None
    caller_trace: str
    callee_trace: str
    caller_output: str
    record: dict[str, object]
    heard: list[ReceivedPacket] = field(default_factory=list)
    # wall clock (epoch s) = monotonic + offset: packet arrivals next to SIPp's trace stamps
    clock_offset_s: float = 0.0

    def at(self, packet: ReceivedPacket) -> float:
        return packet.arrival + self.clock_offset_s

    def caller_got(self, start_line: str) -> float:
        return _logged_at_s(self.caller_trace, start_line)

    def heard_between(self, start: float, end: float) -> list[ReceivedPacket]:
        return [p for p in self.heard if start <= self.at(p) <= end]


def run_call(
    early: EarlyServer,
    workdir: Path,
    *,
    x: str,
    caller: str,
    caller_scenario: str,
    caller_args: tuple[str, ...] = (),
    callee_scenario: str | None = None,
    callee_args: tuple[str, ...] = (),
    during: Callable[[RtpEndpoint], None] | None = None,
) -> EarlyCall:
    """One call with the caller's media at an RtpEndpoint; ``during(endpoint)`` runs while the
    caller SIPp runs (to key digits); the record of the call is awaited."""
    workdir.mkdir(parents=True, exist_ok=True)
    mark = _newest_id(early)
    endpoint = RtpEndpoint()
    callee = None
    callee_trace = workdir / "none"
    try:
        if callee_scenario is not None:
            command, callee_trace = _sipp(callee_scenario, workdir, "callee", list(callee_args))
            command[command.index("-p") + 1] = str(early.callee_port)
            callee = subprocess.Popen(
                command, cwd=workdir, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
            _await_listening(early.callee_port, callee)
        command, caller_trace = _sipp(
            caller_scenario,
            workdir,
            "caller",
            ["-s", x, "-key", "caller", caller, "-key", "rtp_port", str(endpoint.port),
             *caller_args],
        )  # fmt: skip
        command.append(f"{early.server.sip[0]}:{early.server.sip[1]}")
        offset = time.time() - time.monotonic()
        caller_proc = subprocess.Popen(
            command, cwd=workdir, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            if during is not None:
                during(endpoint)
            output, _ = caller_proc.communicate(timeout=60)
        finally:
            if caller_proc.poll() is None:
                caller_proc.kill()
                caller_proc.wait()
        callee_code = None
        if callee is not None:
            try:
                callee_code = callee.wait(timeout=30)
            except subprocess.TimeoutExpired:
                callee.kill()
                callee_code = callee.wait()
        time.sleep(0.1)  # the last datagrams in flight on loopback
        heard = endpoint.received()
    finally:
        if callee is not None and callee.poll() is None:
            callee.kill()
        endpoint.close()
    early.server.assert_alive()
    return EarlyCall(
        caller_code=caller_proc.returncode,
        callee_code=callee_code,
        caller_trace=caller_trace.read_text("utf-8", "replace") if caller_trace.exists() else "",
        callee_trace=callee_trace.read_text("utf-8", "replace") if callee_trace.exists() else "",
        caller_output=output.decode("utf-8", "replace"),
        record=_latest_record(early, mark),
        heard=heard,
        clock_offset_s=offset,
    )


def _message(trace: str, start_line: str) -> str:
    """The first message of a SIPp ``-trace_msg`` log starting ``start_line``, body included."""
    for block in trace.split("\n-----"):
        body = block.split("\n\n", 1)[-1] if "\n\n" in block else ""
        if body.lstrip().startswith(start_line):
            return body.strip()
    raise AssertionError(f"no {start_line!r} in the trace:\n{trace[-2000:]}")


def _media_line(message: str) -> list[str]:
    """The fields of the ``m=audio`` line of a message's SDP."""
    return next(line for line in message.splitlines() if line.startswith("m=audio ")).split()


def _loudest(pcm: Pcm, seconds: float, *, within_s: float | None = None) -> Pcm:
    """The ``seconds`` window of ``pcm`` with the most energy (in its first ``within_s``)."""
    size = int(seconds * SAMPLE_RATE)
    search = pcm if within_s is None else pcm[: int(within_s * SAMPLE_RATE)]
    energy = np.concatenate(([0.0], np.cumsum(search.astype(np.float64) ** 2)))
    sums = energy[size:] - energy[:-size]
    start = int(np.argmax(sums))
    return pcm[start : start + size]


# ------------------------------------------------------------------------- ringback (2)


def _assert_ringback(call: EarlyCall, *, hears: Pcm, not_: Pcm) -> None:
    assert call.caller_code == 0, call.caller_output
    assert call.callee_code == 0, call.callee_trace[-2000:]
    early_ok = _message(call.caller_trace, "SIP/2.0 183")
    assert "Content-Type: application/sdp" in early_ok, early_ok
    port = int(_media_line(early_ok)[1])
    # One codec answered (the caller's first, PCMA) plus its telephone-event; the callee was
    # offered exactly that, so its answer cannot disagree with what the caller has.
    assert "a=rtpmap:8 PCMA/8000" in early_ok and "PCMU" not in early_ok, early_ok
    far_invite = _message(call.callee_trace, "INVITE sip:")
    assert _media_line(far_invite)[3:] == ["8", "101"], far_invite
    answered = _message(call.caller_trace, "SIP/2.0 200")
    assert _origin(answered) == _origin(early_ok), "the 200 repeats the 183's answer"
    got_183, got_200 = call.caller_got("SIP/2.0 183"), call.caller_got("SIP/2.0 200")
    assert got_200 - got_183 > RING_S - 0.5
    # Stamps of two processes on one clock; a loaded machine may log a message a little late.
    ringback = call.heard_between(got_183 - 0.2, got_200 + 0.2)
    assert ringback == call.heard, "the callee sends no media: all the caller hears is ringback"
    assert {p.source for p in ringback} == {(LOOPBACK, port)}, "from the port of our answer"
    assert len(ringback) >= (RING_S - 0.5) / 0.02, f"{len(ringback)} packets of ringback"
    audio = decode_stream(ringback)
    reference = hears[: SAMPLE_RATE // 2] if len(hears) <= SAMPLE_RATE else hears
    assert best_correlation(audio, reference) > 0.9
    assert best_correlation(audio, not_[: SAMPLE_RATE // 2]) < 0.3


def _origin(block: str) -> str:
    return next(line for line in block.splitlines() if line.startswith("o="))


def test_ringback_of_the_binding_overrides_the_pools(early: EarlyServer, tmp_path: Path) -> None:
    call = run_call(
        early, tmp_path, x=X_TONES, caller=A,
        caller_scenario="uac_call_rtp_port.xml", caller_args=("-d", "500"),
        callee_scenario="uas_ring_then_answer.xml", callee_args=("-d", str(int(RING_S * 1000))),
    )  # fmt: skip
    binding_tone, pool_tone = early.tone("binding-tone"), early.tone("pool-tone")
    _assert_ringback(call, hears=binding_tone[:SAMPLE_RATE], not_=pool_tone)
    assert_private(call, A)  # type: ignore[arg-type]
    assert call.record["call_type"] == 0 and call.record["start_time"] is not None


def test_ringback_of_the_pool_when_the_binding_sets_none(
    early: EarlyServer, tmp_path: Path
) -> None:
    """B calls A: the binding has no AXBRing_B, the pool's tone plays."""
    call = run_call(
        early, tmp_path, x=X_TONES, caller=B,
        caller_scenario="uac_call_rtp_port.xml", caller_args=("-d", "500"),
        callee_scenario="uas_ring_then_answer.xml", callee_args=("-d", str(int(RING_S * 1000))),
    )  # fmt: skip
    binding_tone, pool_tone = early.tone("binding-tone"), early.tone("pool-tone")
    _assert_ringback(call, hears=pool_tone[:SAMPLE_RATE], not_=binding_tone)
    assert call.record["call_type"] == 1


def test_ringback_made_from_text(early: EarlyServer, tmp_path: Path) -> None:
    call = run_call(
        early, tmp_path, x=X_TTS, caller=C,
        caller_scenario="uac_call_rtp_port.xml", caller_args=("-d", "500"),
        callee_scenario="uas_ring_then_answer.xml", callee_args=("-d", str(int(RING_S * 1000))),
    )  # fmt: skip
    spoken = early.tone("tts-tone")
    assert len(spoken) > SAMPLE_RATE, "espeak-ng made a real tone"
    # The loudest half second among what the caller can have heard before the answer.
    _assert_ringback(
        call, hears=_loudest(spoken, 0.5, within_s=RING_S - 0.5), not_=early.tone("pool-tone")
    )


# --------------------------------------------------------------------- announcements (3)


def test_intercepted_call_hears_its_announcement_then_404(
    early: EarlyServer, tmp_path: Path
) -> None:
    call = run_call(
        early, tmp_path, x=X_TONES, caller=STRANGER,
        caller_scenario="uac_call_rejected_rtp_port.xml",
    )  # fmt: skip
    assert call.caller_code == 0, call.caller_output
    final = _message_block(call.caller_trace, "SIP/2.0 404")
    got_183, got_404 = call.caller_got("SIP/2.0 183"), call.caller_got("SIP/2.0 404")
    prompt = early.prompt(PromptName.NO_BINDING)
    prompt_s = len(prompt) / SAMPLE_RATE
    assert got_404 - got_183 >= prompt_s - 0.2, final
    assert call.heard == call.heard_between(got_183 - 0.2, got_404 + 0.2)
    audio = decode_stream(call.heard)
    assert abs(len(audio) / SAMPLE_RATE - prompt_s) < 0.3  # played once, whole
    assert best_correlation(audio, _loudest(prompt, 0.5)) > 0.9
    # …and not another cause's prompt.
    assert best_correlation(audio, _loudest(early.prompt(PromptName.EXPIRED), 0.5)) < 0.6
    record = call.record
    assert record["call_type"] == 4 and record["unconnected_cause"] == 2
    assert record["start_time"] is None and record["release_dir"] == 0


def test_cancel_during_the_announcement_gets_487(early: EarlyServer, tmp_path: Path) -> None:
    call = run_call(
        early, tmp_path, x=X_TONES, caller=STRANGER,
        caller_scenario="uac_cancel_during_announcement.xml", caller_args=("-d", "500"),
    )  # fmt: skip
    assert call.caller_code == 0, call.caller_output  # 200 to the CANCEL, 487 to the INVITE
    got_487 = call.caller_got("SIP/2.0 487")
    assert call.heard and all(call.at(p) <= got_487 + 0.2 for p in call.heard)
    heard_s = len(call.heard) * 0.02
    assert heard_s < len(early.prompt(PromptName.NO_BINDING)) / SAMPLE_RATE - 0.5
    record = call.record
    assert record["call_type"] == 4 and record["unconnected_cause"] == 2
    assert record["release_dir"] == 1


# ---------------------------------------------------------------------- extension IVR (4)


class KeyPad:
    """Keys pressed at the caller's phone: RFC 4733 events from the RtpEndpoint's port."""

    def __init__(self, endpoint: RtpEndpoint) -> None:
        self.endpoint = endpoint
        self.sequence = 1000
        self.timestamp = 80_000
        self.last_key_at = 0.0  # wall clock when the last key's end packets left

    def maskline(self) -> tuple[str, int]:
        """maskline's port for this caller: where its prompt comes from."""
        packets = self.endpoint.wait_for_packets(1, timeout=10)
        assert packets, "no prompt reached the caller"
        return packets[0].source

    def press(self, digits: str, *, gap_s: float = 0.12) -> None:
        to = self.maskline()
        for digit in digits:
            packets = telephone_event_packets(
                digit, ssrc=0xCA11E4, sequence=self.sequence, timestamp=self.timestamp,
                payload_type=EVENT_PT,
            )  # fmt: skip
            for packet in packets:
                self.endpoint.send(packet, to)
                time.sleep(0.02)
            self.last_key_at = time.time()
            self.sequence += len(packets)
            self.timestamp += 1600
            time.sleep(gap_s)


def _invite_to(call: EarlyCall) -> str:
    invite = _message_block(call.callee_trace, "INVITE sip:")
    return invite.split("INVITE sip:", 1)[1]


def test_extension_keyed_by_rfc4733_reaches_its_a(early: EarlyServer, tmp_path: Path) -> None:
    pad: list[KeyPad] = []

    def key(endpoint: RtpEndpoint) -> None:
        pad.append(KeyPad(endpoint))
        pad[0].press("12#")

    call = run_call(
        early, tmp_path, x=X_EXT, caller=N,
        caller_scenario="uac_call_rtp_port.xml", caller_args=("-d", "4000"),
        callee_scenario="uas_answer.xml", during=key,
    )  # fmt: skip
    assert call.caller_code == 0, call.caller_output
    assert call.callee_code == 0, call.callee_trace[-2000:]
    assert _invite_to(call).startswith(A1), "extension 12 rings A1"
    invite = _message_block(call.callee_trace, "INVITE sip:")
    assert f"From: <sip:{X_EXT}@" in invite and N not in call.callee_trace
    # '#' ended the entry: the INVITE left well before the inter-digit timeout would have.
    assert _logged_at_s(call.callee_trace, "INVITE sip:") - pad[0].last_key_at < 1.5
    record = call.record
    assert record["call_type"] == 1 and record["phone_no"] == "+86" + A1
    assert record["peer_no"] == "+86" + N and record["start_time"] is not None
    assert record["unconnected_cause"] == 0


def test_extension_keyed_by_sip_info_reaches_its_a(early: EarlyServer, tmp_path: Path) -> None:
    call = run_call(
        early, tmp_path, x=X_EXT, caller=N,
        caller_scenario="uac_call_info_dtmf.xml",
        # 5 6 7 fills the three digits an extension may have; the '#' after it changes nothing
        caller_args=("-key", "d1", "5", "-key", "d2", "6", "-key", "d3", "7",
                     "-key", "d4", "#", "-d", "2000"),
        callee_scenario="uas_answer.xml",
    )  # fmt: skip
    assert call.caller_code == 0, call.caller_output  # every INFO got its 200
    assert call.callee_code == 0, call.callee_trace[-2000:]
    assert _invite_to(call).startswith(A2), "extension 567 rings A2"
    assert call.record["call_type"] == 1 and call.record["phone_no"] == "+86" + A2
    # The prompt played to the caller until its first key.
    assert call.heard, "the caller heard the extension prompt"


def test_inter_digit_timeout_ends_the_entry(early: EarlyServer, tmp_path: Path) -> None:
    pad: list[KeyPad] = []

    def key(endpoint: RtpEndpoint) -> None:
        pad.append(KeyPad(endpoint))
        pad[0].press("12")  # no '#'

    call = run_call(
        early, tmp_path, x=X_EXT, caller=N,
        caller_scenario="uac_call_rtp_port.xml", caller_args=("-d", "6000"),
        callee_scenario="uas_answer.xml", during=key,
    )  # fmt: skip
    assert call.caller_code == 0, call.caller_output
    assert _invite_to(call).startswith(A1)
    waited_s = _logged_at_s(call.callee_trace, "INVITE sip:") - pad[0].last_key_at
    assert INTER_DIGIT_TIMEOUT_S - 0.3 < waited_s < INTER_DIGIT_TIMEOUT_S + 1.5, waited_s


def test_wrong_extension_three_times_hears_not_found_then_bye(
    early: EarlyServer, tmp_path: Path
) -> None:
    pad: list[KeyPad] = []

    def key(endpoint: RtpEndpoint) -> None:
        pad.append(KeyPad(endpoint))
        for _ in range(3):
            pad[0].press("99#")
            time.sleep(0.3)

    call = run_call(
        early, tmp_path, x=X_EXT, caller=N,
        caller_scenario="uac_call_rtp_port_await_bye.xml", during=key,
    )  # fmt: skip
    assert call.caller_code == 0, call.caller_output
    bye = _message_block(call.caller_trace, "BYE sip:")
    assert 'Reason: Q.850;cause=1;text="extension not found"' in bye, bye
    got_bye = call.caller_got("BYE sip:")
    last = call.heard_between(pad[0].last_key_at, got_bye + 0.05)
    not_found = early.prompt(PromptName.EXTENSION_NOT_FOUND)
    assert best_correlation(decode_stream(last), _loudest(not_found, 0.5)) > 0.9
    # The BYE follows the whole prompt.
    assert got_bye - call.at(last[0]) >= len(not_found) / SAMPLE_RATE - 0.3
    record = call.record
    assert record["call_type"] == 4 and record["unconnected_cause"] == 2
    assert record["release_dir"] == 0 and record["release_cause"] == 1
    assert record["pool_key"] == early.pools[X_EXT] and record["start_time"] is None


def test_extension_found_but_a_busy_gets_bye_with_cause_17(
    early: EarlyServer, tmp_path: Path
) -> None:
    """The caller is answered already: A's 486 becomes a BYE whose Reason says user busy."""

    def key(endpoint: RtpEndpoint) -> None:
        KeyPad(endpoint).press("12#")

    call = run_call(
        early, tmp_path, x=X_EXT, caller=N,
        caller_scenario="uac_call_rtp_port_await_bye.xml", during=key,
        callee_scenario="uas_busy.xml",
    )  # fmt: skip
    assert call.caller_code == 0, call.caller_output
    assert call.callee_code == 0, call.callee_trace[-2000:]
    assert _invite_to(call).startswith(A1)
    bye = _message_block(call.caller_trace, "BYE sip:")
    assert "Reason: Q.850;cause=17;" in bye, bye
    record = call.record
    assert record["call_type"] == 1 and record["release_dir"] == 2
    assert record["release_cause"] == 17 and record["start_time"] is None


def _raw(lines: list[str], body: str = "") -> bytes:
    return ("\r\n".join([*lines, f"Content-Length: {len(body)}", "", ""]) + body).encode()


def test_info_bodies_other_than_one_key_are_refused(early: EarlyServer) -> None:
    """INFO while keying: DTMF bodies → 200 (and the key counts), another type → 415 (the
    UAS checks), a DTMF type whose body is not one key → 400; the call goes on."""
    mark = _newest_id(early)
    endpoint = RtpEndpoint()
    client = UdpClient(early.server.sip)
    host, port = client.local
    server = f"{early.server.sip[0]}:{early.server.sip[1]}"
    call_id, tag = new_call_id(), "info" + new_branch()[-8:]
    dialog = [
        f"From: <sip:{N}@{host}:{port}>;tag={tag}",
        f"Call-ID: {call_id}",
        "Max-Forwards: 70",
    ]
    sdp = (
        f"v=0\r\no=n 1 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
        f"m=audio {endpoint.port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
    )
    to = f"<sip:{X_EXT}@{server}>"

    def request(method: str, cseq: int, extra: list[str], body: str = "") -> SipReply:
        via = f"Via: SIP/2.0/UDP {host}:{port};branch={new_branch()};rport"
        client.send(
            _raw([f"{method} sip:{X_EXT}@{server} SIP/2.0", via, *dialog, f"To: {to}",
                  f"CSeq: {cseq} {method}", f"Contact: <sip:{N}@{host}:{port}>", *extra], body)
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            data = client.receive(deadline - time.monotonic())
            if data is None:
                break
            reply = parse_reply(data)
            if reply.get("cseq") == f"{cseq} {method}" and reply.status >= 200:
                return reply
        raise AssertionError(f"no final reply to {method}")

    try:
        ok = request("INVITE", 1, ["Content-Type: application/sdp"], sdp)
        assert ok.status == 200, ok.raw
        to = ok.get("to") or ""
        client.send(_raw([f"ACK sip:{X_EXT}@{server} SIP/2.0",
                          f"Via: SIP/2.0/UDP {host}:{port};branch={new_branch()};rport",
                          *dialog, f"To: {to}", "CSeq: 1 ACK"]))  # fmt: skip
        assert request("INFO", 2, ["Content-Type: text/plain"], "Signal=1\r\n").status == 415
        bad = request("INFO", 3, ["Content-Type: application/dtmf-relay"], "Signal=Z\r\n")
        assert bad.status == 400
        assert request("INFO", 4, ["Content-Type: application/dtmf"], "9").status == 200
        assert (
            request("INFO", 5, ["Content-Type: application/dtmf-relay"], "Signal=#\r\n").status
            == 200
        )
        # "9#" is an unknown extension: the IVR says so by prompting again, the call stays up.
        time.sleep(0.5)
        assert request("BYE", 6, []).status == 200
    finally:
        client.close()
        endpoint.close()
    early.server.assert_alive()
    record = _latest_record(early, mark)  # the caller hung up while keying
    assert record["release_dir"] == 1 and record["start_time"] is None
    assert record["pool_key"] == early.pools[X_EXT]


def test_ringback_to_a_caller_requiring_100rel(early: EarlyServer, tmp_path: Path) -> None:
    """RFC 3262: the ringback's 183 is reliable (Require: 100rel, RSeq) and the 200 waits for
    its PRACK; the tone plays meanwhile and the 200 repeats the 183's SDP."""
    mark = _newest_id(early)
    endpoint = RtpEndpoint()
    client = UdpClient(early.server.sip)
    host, port = client.local
    server = f"{early.server.sip[0]}:{early.server.sip[1]}"
    call_id, tag = new_call_id(), "rel" + new_branch()[-8:]
    dialog = [f"From: <sip:{A}@{host}:{port}>;tag={tag}", f"Call-ID: {call_id}", "Max-Forwards: 70"]
    sdp = (
        f"v=0\r\no=a 1 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
        f"m=audio {endpoint.port} RTP/AVP 0 8\r\n"
    )
    via = f"Via: SIP/2.0/UDP {host}:{port};branch={new_branch()};rport"
    command, _ = _sipp("uas_ring_then_answer.xml", tmp_path, "callee", ["-d", "1500"])
    command[command.index("-p") + 1] = str(early.callee_port)
    callee = subprocess.Popen(command, cwd=tmp_path, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    replies: list[SipReply] = []

    def next_reply(wanted: Callable[[SipReply], bool]) -> SipReply:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            data = client.receive(deadline - time.monotonic())
            if data is None:
                break
            reply = parse_reply(data)
            replies.append(reply)
            if wanted(reply):
                return reply
        raise AssertionError(f"no such reply in {[r.status for r in replies]}")

    try:
        _await_listening(early.callee_port, callee)
        client.send(_raw([f"INVITE sip:{X_TONES}@{server} SIP/2.0", via, *dialog,
                          f"To: <sip:{X_TONES}@{server}>", "CSeq: 1 INVITE",
                          f"Contact: <sip:{A}@{host}:{port}>", "Require: 100rel",
                          "Content-Type: application/sdp"], sdp))  # fmt: skip
        early_ok = next_reply(lambda r: r.status == 183)
        assert "100rel" in early_ok.tokens("require") and early_ok.get("rseq"), early_ok.raw
        to = early_ok.get("to") or ""
        # PCMU is the caller's first codec: the answer and the tone are PCMU.
        assert b"m=audio " in early_ok.body and b"a=rtpmap:0 PCMU/8000" in early_ok.body
        assert endpoint.wait_for_packets(10, timeout=5)[0].payload_type == 0
        # The callee answers 1.5 s in; until our PRACK the 200 must not come (only 183 again).
        held_until = time.monotonic() + 2.5
        while (left := held_until - time.monotonic()) > 0:
            data = client.receive(left)
            if data is not None:
                assert parse_reply(data).status == 183, data[:200]
        client.send(_raw([f"PRACK sip:{X_TONES}@{server} SIP/2.0",
                          f"Via: SIP/2.0/UDP {host}:{port};branch={new_branch()};rport",
                          *dialog, f"To: {to}", "CSeq: 2 PRACK",
                          f"RAck: {early_ok.get('rseq')} 1 INVITE"]))  # fmt: skip
        next_reply(lambda r: r.status == 200 and (r.get("cseq") or "").endswith("PRACK"))
        answered = next_reply(lambda r: r.status == 200 and r.get("cseq") == "1 INVITE")
        assert answered.body == early_ok.body, "the 200 repeats the 183's answer"
        client.send(_raw([f"ACK sip:{X_TONES}@{server} SIP/2.0",
                          f"Via: SIP/2.0/UDP {host}:{port};branch={new_branch()};rport",
                          *dialog, f"To: {to}", "CSeq: 1 ACK"]))  # fmt: skip
        client.send(_raw([f"BYE sip:{X_TONES}@{server} SIP/2.0",
                          f"Via: SIP/2.0/UDP {host}:{port};branch={new_branch()};rport",
                          *dialog, f"To: {to}", "CSeq: 3 BYE"]))  # fmt: skip
        next_reply(lambda r: r.get("cseq") == "3 BYE")
        assert callee.wait(timeout=10) == 0
        ringback = endpoint.received(payload_types=(0,))
    finally:
        if callee.poll() is None:
            callee.kill()
        client.close()
        endpoint.close()
    audio = decode_stream(ringback)
    assert len(ringback) >= 50  # the callee rang 1.5 s
    assert best_correlation(audio, early.tone("binding-tone")[: SAMPLE_RATE // 2]) > 0.9
    assert _latest_record(early, mark)["start_time"] is not None
