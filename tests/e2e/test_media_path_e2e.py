"""Audio through a masked call, heard at the caller's own RTP port.

The caller SIPp offers a port this test listens on (``uac_call_rtp_port.xml``); the callee SIPp
echoes RTP (``-rtp_echo``). The test talks a 440 Hz tone into the call from that port and
checks what comes back: the same tone, paced in real time, from maskline's relay address and
never from the callee's.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from media_support import (
    LOOPBACK,
    RtpEndpoint,
    decode_stream,
    dominant_frequency,
    frames,
    rtp_packet,
    tone,
)
from test_calls_e2e import X_AXB, A, CallServer, _await_listening, _sipp, calls

from media import g711

__all__ = ["calls"]  # the module-scoped server fixture, shared with this module

pytestmark = pytest.mark.e2e

_ANSWER_PORT = re.compile(r"^m=audio (\d+) ", re.MULTILINE)


def _answer_media_port(trace: Path, timeout: float) -> int:
    """The media port in the SDP of the 200 OK the caller received (its -trace_msg file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = trace.read_text("utf-8", "replace") if trace.exists() else ""
        for message in text.split("SIP/2.0 200 OK")[1:]:
            found = _ANSWER_PORT.search(message.split("-----", 1)[0])
            if found:
                return int(found.group(1))
        time.sleep(0.02)
    raise AssertionError(f"no 200 OK with SDP reached the caller:\n{text[-2000:]}")


def test_caller_hears_its_own_tone_echoed_through_the_relay(
    calls: CallServer, tmp_path: Path
) -> None:
    endpoint = RtpEndpoint()
    callee_command, _ = _sipp("uas_answer.xml", tmp_path, "callee", ["-rtp_echo", "-d", "300"])
    callee_command[callee_command.index("-p") + 1] = str(calls.callee_port)
    callee = subprocess.Popen(
        callee_command, cwd=tmp_path, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _await_listening(calls.callee_port, callee)
        caller_command, caller_trace = _sipp(
            "uac_call_rtp_port.xml",
            tmp_path,
            "caller",
            ["-s", X_AXB, "-key", "caller", A, "-key", "rtp_port", str(endpoint.port),
             "-d", "4000"],
        )  # fmt: skip
        caller_command.append(f"{calls.server.sip[0]}:{calls.server.sip[1]}")
        caller = subprocess.Popen(
            caller_command, cwd=tmp_path, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        relay = (LOOPBACK, _answer_media_port(caller_trace, timeout=10))
        spoken = tone(440, 2.0)
        payloads = frames(spoken, g711.PAYLOAD_TYPE_PCMA)
        start = time.monotonic()
        for n, payload in enumerate(payloads):
            endpoint.send(
                rtp_packet(payload, payload_type=g711.PAYLOAD_TYPE_PCMA, sequence=n,
                           timestamp=n * 160, ssrc=0x1234, marker=n == 0),
                relay,
            )  # fmt: skip
            time.sleep(max(0.0, start + (n + 1) * 0.02 - time.monotonic()))
        heard = endpoint.wait_for_packets(len(payloads), timeout=3)
        assert caller.wait(timeout=30) == 0, caller.stdout.read() if caller.stdout else ""
        assert callee.wait(timeout=30) == 0
    finally:
        if callee.poll() is None:
            callee.kill()
        endpoint.close()

    assert len(heard) >= len(payloads) * 0.98, f"{len(heard)} of {len(payloads)} came back"
    # Everything the caller hears comes from the address in maskline's SDP answer: the
    # callee's own address never reaches the caller.
    assert {packet.source for packet in heard} == {relay}
    audio = decode_stream(heard)
    assert abs(dominant_frequency(audio) - 440) < 5
    # Real-time pace both ways: 2 s of audio arrives over ~2 s, not in a burst.
    span = heard[-1].arrival - heard[0].arrival
    assert 1.7 < span < 2.6, span
