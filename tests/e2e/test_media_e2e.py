"""Media features end to end: recording, dead-media teardown, offers we cannot relay.

Real ``maskline serve`` (``[media] inactivity_timeout_s = 2``), SIPp caller and callee over
loopback. Both SIPps talk: each plays a pcap written by the test (``tests/e2e/rtp_pcap.py``;
SIPp's ``play_pcap_audio`` sends from raw sockets, so these tests run as root, as CI does), the
caller a 440 Hz tone, the callee a 1 kHz one, so what maskline relayed and recorded can be told
apart by frequency.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_support import free_port_udp_and_tcp, start_server, stop_server
from rtp_pcap import tone_pcap
from test_calls_e2e import (
    CallResult,
    CallServer,
    _api_client,
    _await_listening,
    _configured,
    _final_status,
    _latest_record,
    _newest_id,
    _ok,
    _sipp,
    assert_private,
)

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
) -> TalkingCall:
    """One call where both SIPps play their tone pcap from ``workdir`` (their cwd)."""
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
    done = subprocess.run(
        command, cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
        check=False,
    )  # fmt: skip
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
        caller_code=done.returncode,
        callee_code=callee_code,
        caller_trace=caller_trace.read_text("utf-8", "replace") if caller_trace.exists() else "",
        callee_trace=callee_trace.read_text("utf-8", "replace") if callee_trace.exists() else "",
        caller_output=(done.stdout + done.stderr).decode("utf-8", "replace"),
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
