"""Masked calls end to end: real ``maskline serve``, SIPp caller and SIPp callee over loopback UDP.

The callee SIPp stands for the trunk's far end (the trunk's ``outbound``); the caller SIPp
stands for the carrier delivering calls to X.  Bindings are provisioned through the operator
API, except the expired one, written to the database before the server starts (an expiry in
the past cannot be bound through the API, by design).
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from e2e_support import (
    LOOPBACK,
    SCENARIOS,
    MasklineServer,
    free_port_udp_and_tcp,
    start_server,
    stop_server,
    write_config,
)

from routing.model import Binding, BindingType, NumberSpec, PhoneNumber, PoolKey, SubId
from store.db import Database
from store.repositories import (
    NumberRow,
    add_numbers_to_pool,
    create_pool,
    import_numbers,
    insert_binding,
)

pytestmark = pytest.mark.e2e

TOKEN = "e2e-operator-token"
_CALL_NUMBERS = itertools.count(1)
X_AXB = "17000000001"
X_AXN = "17000000002"
X_AXG = "17000000003"
X_EXPIRED = "17000000004"
X_95 = "95013000012"
A = "13800138000"
B = "13900139000"
C = "13700137000"
N = "13600136000"
D = "13500135000"  # AXB pair D/E on X_AXB with a 5 s ringing timeout
E = "13300133000"
EXPIRES = "2030-01-01 00:00:00"


@dataclass
class CallServer:
    server: MasklineServer
    api: httpx.Client
    callee_port: int
    pools: dict[str, str]


def _provision_expired(db_path: Path) -> None:
    """An AXB binding already expired, straight into the store before the server starts."""

    async def run() -> None:
        db = await Database.open(db_path)
        try:
            await import_numbers(
                db,
                [
                    NumberRow(
                        PhoneNumber("+86" + X_EXPIRED), "北京", "北京", "CMCC", NumberSpec.VIRTUAL
                    )
                ],
            )
            pool = await create_pool(db, type=BindingType.AXB, name="expired", tenant_id=None)
            await add_numbers_to_pool(db, pool_key=pool, count=1, city=None)
            await insert_binding(
                db,
                Binding(
                    sub_id=SubId("expired-1"),
                    pool_key=PoolKey(pool),
                    type=BindingType.AXB,
                    x=PhoneNumber("+86" + X_EXPIRED),
                    a=PhoneNumber("+86" + A),
                    b=PhoneNumber("+86" + B),
                    expires_at=time.time() - 3600,
                ),
            )
        finally:
            await db.close()

    asyncio.run(run())


def _with_trunk(config: Path, callee_port: int) -> None:
    text = config.read_text("utf-8").replace('level = "info"', 'level = "debug"')
    text += f"""
[[trunks]]
name = "carrier"
inbound_cidrs = ["127.0.0.1/32"]
outbound = "{LOOPBACK}:{callee_port}"
transport = "udp"
number_format = "national"
auth_username = "ml"
auth_password = "trunk-secret"
"""
    config.write_text(text, "utf-8")


def _api_listen(config: Path, sip_port: int) -> str:
    return next(
        line.split("=", 1)[1].strip().strip('"')
        for line in config.read_text().splitlines()
        if line.startswith("listen") and str(sip_port) not in line
    )


def _api_client(config: Path, sip_port: int) -> httpx.Client:
    """The operator API of the server configured by ``config``, with its token."""
    return httpx.Client(
        base_url=f"http://{_api_listen(config, sip_port)}/v1",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


def _configured(workdir: Path) -> tuple[Path, int, int]:
    sip_port = free_port_udp_and_tcp()
    callee_port = free_port_udp_and_tcp()
    config = write_config(workdir, sip_port)
    _with_trunk(config, callee_port)
    return config, sip_port, callee_port


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CallServer]:
    workdir = tmp_path_factory.mktemp("calls")
    config, sip_port, callee_port = _configured(workdir)
    _provision_expired(workdir / "maskline.sqlite3")
    server = start_server(config, workdir, sip_port)
    api = _api_client(config, sip_port)
    pools = _provision(api)
    yield CallServer(server, api, callee_port, pools)
    api.close()
    stop_server(server)


def _ok(response: httpx.Response) -> dict[str, object]:
    assert response.status_code < 300, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


def _provision(api: httpx.Client) -> dict[str, str]:
    pools: dict[str, str] = {}
    numbers = (("AXB", X_AXB, 1), ("AXN", X_AXN, 1), ("AXG", X_AXG, 1), ("95AXN", X_95, 3))
    for kind, x, spec in numbers:
        # One number in stock at a time, so the random pick is the X this test wants.
        csv_rows = f"number,city,province,carrier,spec\n{x},北京,北京,CMCC,{spec}\n"
        _ok(api.post("/numbers/import", content=csv_rows, headers={"Content-Type": "text/csv"}))
        pool = str(_ok(api.post("/pools", json={"type": kind, "name": kind}))["pool_key"])
        pools[kind] = pool
        assert _ok(api.post(f"/pools/{pool}/numbers", json={"count": 1}))["numbers"] == ["+86" + x]
    _ok(
        api.post(
            f"/pools/{pools['AXB']}/bindings",
            json={"type": "AXB", "a": A, "b": B, "x": X_AXB, "expires": EXPIRES},
        )
    )
    _ok(
        api.post(
            f"/pools/{pools['AXB']}/bindings",
            json={
                "type": "AXB",
                "a": D,
                "b": E,
                "x": X_AXB,
                "expires": EXPIRES,
                "ring_timeout_s": 5,
            },
        )
    )
    _ok(
        api.post(
            f"/pools/{pools['AXN']}/bindings",
            json={"type": "AXN", "a": A, "b": B, "x": X_AXN, "expires": EXPIRES},
        )
    )
    group = _ok(api.post(f"/pools/{pools['AXG']}/groups", json={"name": "family", "numbers": [N]}))
    _ok(
        api.post(
            f"/pools/{pools['AXG']}/bindings",
            json={
                "type": "AXG",
                "a": A,
                "x": X_AXG,
                "group_id": group["group_id"],
                "expires": EXPIRES,
            },
        )
    )
    _ok(
        api.post(
            f"/pools/{pools['95AXN']}/bindings",
            json={"type": "95AXN", "a": A, "x": X_95, "expires": EXPIRES},
        )
    )
    return pools


@dataclass
class CallResult:
    caller_code: int
    callee_code: int | None
    caller_trace: str
    callee_trace: str
    caller_output: str
    record: dict[str, object]  # the one call record this call wrote


def _sipp(
    scenario: str, workdir: Path, name: str, extra: list[str], *, timeout_s: int = 30
) -> tuple[list[str], Path]:
    trace = workdir / f"{name}.msg"
    port = free_port_udp_and_tcp()
    return (
        [
            "sipp",
            "-sf",
            str(SCENARIOS / scenario),
            "-m",
            "1",
            "-i",
            LOOPBACK,
            "-p",
            str(port),
            "-nostdin",
            "-timeout",
            f"{timeout_s}s",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
            str(trace),
            *extra,
        ],
        trace,
    )


def _spawn_sipp(command: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    """Start a SIPp of ``_sipp``'s making in the background, in ``cwd`` (its traces go there)."""
    return subprocess.Popen(
        command,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def place_call(
    calls: CallServer,
    tmp_path: Path,
    *,
    x: str,
    caller: str,
    caller_scenario: str = "uac_call.xml",
    callee_scenario: str | None = "uas_answer.xml",
    callee_args: tuple[str, ...] = (),
    caller_args: tuple[str, ...] = (),
    sipp_timeout_s: int = 30,
    expect_record: bool = True,
) -> CallResult:
    """One call: the callee SIPp (if any) listens on the trunk port, the caller dials X.

    ``sipp_timeout_s`` bounds each SIPp run (longer for calls that wait on session timers).
    """
    tmp_path = tmp_path / f"call-{next(_CALL_NUMBERS)}"  # SIPp traces of one call each
    tmp_path.mkdir(parents=True)
    mark = _newest_id(calls)
    callee_proc = None
    callee_trace = tmp_path / "none"
    if callee_scenario is not None:
        command, callee_trace = _sipp(
            callee_scenario,
            tmp_path,
            "callee",
            ["-d", "300", *callee_args],
            timeout_s=sipp_timeout_s,
        )
        command[command.index("-p") + 1] = str(calls.callee_port)
        callee_proc = _spawn_sipp(command, tmp_path)
        _await_listening(calls.callee_port, callee_proc)
    command, caller_trace = _sipp(
        caller_scenario,
        tmp_path,
        "caller",
        ["-s", x, "-key", "caller", caller, "-d", "300", *caller_args],
        timeout_s=sipp_timeout_s,
    )
    command.append(f"{calls.server.sip[0]}:{calls.server.sip[1]}")
    done = subprocess.run(
        command,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=sipp_timeout_s + 30,
        check=False,
    )
    callee_code = None
    if callee_proc is not None:
        try:
            callee_code = callee_proc.wait(timeout=sipp_timeout_s + 10)
        except subprocess.TimeoutExpired:
            callee_proc.kill()
            callee_code = callee_proc.wait()
    calls.server.assert_alive()
    result = CallResult(
        caller_code=done.returncode,
        callee_code=callee_code,
        caller_trace=caller_trace.read_text("utf-8", "replace") if caller_trace.exists() else "",
        callee_trace=callee_trace.read_text("utf-8", "replace") if callee_trace.exists() else "",
        caller_output=(done.stdout + done.stderr).decode("utf-8", "replace"),
        # Every call that reaches a trunk writes exactly one record, after both legs end.
        record=_latest_record(calls, mark) if expect_record else {},
    )
    if not expect_record:
        assert _newest_id(calls) == mark, "this exchange must not write a call record"
    elif callee_scenario is not None:
        # The call reached the trunk, so it held relay ports: they are freed with the call (its
        # call_ended line, logged once the record is durable, says how many packets went through).
        _media_closed_line(calls.server, str(result.record["call_id"]))
    assert_private(result, caller)
    return result


def assert_private(result: CallResult, caller: str) -> None:
    """Acceptance 2, for every call: nothing identifying the caller reaches the far leg."""
    far = result.callee_trace
    if not far or not result.caller_trace:
        return
    lines = result.caller_trace.splitlines()
    sent_invite = lines[lines.index(next(line for line in lines if line.startswith("INVITE "))) :]
    call_id = next(
        line.split(":", 1)[1].strip() for line in sent_invite if line.startswith("Call-ID:")
    )
    from_tag = next(
        line.split("tag=")[1].strip()
        for line in sent_invite
        if line.startswith("From:") and "tag=" in line
    )
    via_port = next(
        line.split(":")[2].split(";")[0] for line in sent_invite if line.startswith("Via:")
    )
    media_port = next(line.split()[1] for line in sent_invite if line.startswith("m=audio"))
    for secret in (caller, call_id, from_tag, f":{via_port}", f"audio {media_port} "):
        assert secret not in far, f"{secret!r} leaked to the far leg"


def _await_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    """SIPp binds its UDP port at start: wait until the port is taken (no sleep-and-hope)."""
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.poll() is None, "callee SIPp exited at start"
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return  # taken: SIPp is up
        finally:
            probe.close()
        time.sleep(0.02)
    raise AssertionError("callee SIPp did not bind its port")


def _final_status(trace: str) -> int | None:
    """The last final status line the caller received."""
    codes = [
        int(line.split()[1])
        for line in trace.splitlines()
        if line.startswith("SIP/2.0 ") and int(line.split()[1]) >= 200
    ]
    return codes[-1] if codes else None


def _calls(calls: CallServer, limit: int = 50) -> list[dict[str, object]]:
    body = _ok(calls.api.get("/calls", params={"limit": limit}))
    records = body["calls"]
    assert isinstance(records, list)
    return records


def _newest_id(calls: CallServer) -> str | None:
    """Id of the newest call record (the mark a test takes before placing its call)."""
    records = _calls(calls, limit=1)
    return str(records[0]["id"]) if records else None


def _latest_record(calls: CallServer, before: str | None) -> dict[str, object]:
    """Await the record of the call just placed (records are written after both legs end)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        records = _calls(calls, limit=3)
        ids = [str(r["id"]) for r in records]
        if ids and ids[0] != before:
            new = ids.index(before) if before in ids else len(ids)
            assert new == 1, "one call must write exactly one record"
            return records[0]
        time.sleep(0.05)
    raise AssertionError("no call record was written")


# ------------------------------------------------------------------------------------ tests


def test_axb_a_calls_x_rings_b_and_nothing_of_a_leaks(calls: CallServer, tmp_path: Path) -> None:
    result = place_call(calls, tmp_path, x=X_AXB, caller=A)
    assert result.caller_code == 0, result.caller_output
    assert result.callee_code == 0
    far = result.callee_trace
    invite = far.split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
    assert invite.startswith(B), "the far leg must ring B"
    assert f"From: <sip:{X_AXB}@" in far and f"P-Asserted-Identity: <sip:{X_AXB}@" in far
    # Privacy: nothing of the caller reaches the callee's side.
    caller_call_id = next(
        line.split(":", 1)[1].strip()
        for line in result.caller_trace.splitlines()
        if line.startswith("Call-ID:")
    )
    caller_tag = next(
        line.split("tag=")[1].strip()
        for line in result.caller_trace.splitlines()
        if line.startswith("From:") and "tag=" in line
    )
    caller_port = next(
        line.split(":")[2].split(";")[0]
        for line in result.caller_trace.splitlines()
        if line.startswith("Via:")
    )
    caller_media_port = next(
        line.split()[1] for line in result.caller_trace.splitlines() if line.startswith("m=audio")
    )
    for secret in (A, caller_call_id, caller_tag, f":{caller_port}", f"audio {caller_media_port} "):
        assert secret not in far, f"{secret!r} leaked to the far leg"
    # …and nothing of B reaches the caller.
    assert B not in result.caller_trace
    record = result.record
    assert record["secret_no"] == "+86" + X_AXB
    assert record["phone_no"] == "+86" + A and record["peer_no"] == "+86" + B
    assert record["call_type"] == 0 and record["release_dir"] == 1
    assert record["release_cause"] == 16 and record["unconnected_cause"] == 0
    assert record["start_time"] is not None


def test_axb_b_calls_x_rings_a(calls: CallServer, tmp_path: Path) -> None:
    result = place_call(calls, tmp_path, x=X_AXB, caller=B)
    assert result.caller_code == 0, result.caller_output
    assert result.callee_trace.split("INVITE sip:", 1)[1].startswith(A)
    assert B not in result.callee_trace
    record = result.record
    assert record["call_type"] == 1 and record["peer_no"] == "+86" + B


@pytest.mark.parametrize(
    ("x", "caller", "status", "unconnected"),
    [
        (X_AXB, C, 404, 2),  # a stranger on AXB: no binding
        (X_EXPIRED, A, 404, 2),  # expired binding
        (X_AXG, C, 403, 4),  # AXG non-member
        ("17099999999", A, 404, 2),  # an X nobody bound
    ],
)
def test_intercepted_calls(  # noqa: PLR0917 - parametrized test
    calls: CallServer, tmp_path: Path, x: str, caller: str, status: int, unconnected: int
) -> None:
    result = place_call(
        calls,
        tmp_path,
        x=x,
        caller=caller,
        caller_scenario="uac_call_rejected.xml",
        callee_scenario=None,
    )
    assert result.caller_code == 0, result.caller_output
    assert _final_status(result.caller_trace) == status
    record = result.record
    assert record["call_type"] == 4 and record["unconnected_cause"] == unconnected
    assert record["start_time"] is None


@pytest.mark.parametrize(
    ("x", "caller", "callee"),
    [
        (X_AXN, N, A),  # AXN: any N rings A
        (X_AXN, A, B),  # AXN: A rings the default B
        (X_AXG, N, A),  # AXG: a group member rings A
        (X_95, N, A),  # 95AXN
    ],
)
def test_other_types_route(
    calls: CallServer, tmp_path: Path, x: str, caller: str, callee: str
) -> None:
    result = place_call(calls, tmp_path, x=x, caller=caller)
    assert result.caller_code == 0, result.caller_output
    far = result.callee_trace
    assert far.split("INVITE sip:", 1)[1].startswith(callee)
    assert caller not in far


def test_callee_busy(calls: CallServer, tmp_path: Path) -> None:
    result = place_call(
        calls,
        tmp_path,
        x=X_AXB,
        caller=A,
        caller_scenario="uac_call_rejected.xml",
        callee_scenario="uas_busy.xml",
    )
    assert result.caller_code == 0 and result.callee_code == 0, result.caller_output
    assert _final_status(result.caller_trace) == 486
    record = result.record
    assert record["release_dir"] == 2 and record["release_cause"] == 17


def test_callee_hangs_up(calls: CallServer, tmp_path: Path) -> None:
    result = place_call(
        calls,
        tmp_path,
        x=X_AXB,
        caller=A,
        caller_scenario="uac_call_answered_remote_bye.xml",
        callee_scenario="uas_hangup.xml",
    )
    assert result.caller_code == 0, result.caller_output
    assert result.callee_code == 0
    record = result.record
    assert record["release_dir"] == 2 and record["release_cause"] == 16


def test_caller_cancels_while_ringing(calls: CallServer, tmp_path: Path) -> None:
    result = place_call(
        calls,
        tmp_path,
        x=X_AXB,
        caller=A,
        caller_scenario="uac_call_cancel.xml",
        callee_scenario="uas_noanswer.xml",
    )
    assert result.caller_code == 0, result.caller_output
    assert result.callee_code == 0, "the far leg must be cancelled too"
    assert "CANCEL sip:" + B in result.callee_trace
    record = result.record
    assert record["release_dir"] == 1 and record["start_time"] is None
    assert record["ring_time"] is not None


def test_ringing_timeout_of_the_binding(calls: CallServer, tmp_path: Path) -> None:
    started = time.monotonic()
    result = place_call(
        calls,
        tmp_path,
        x=X_AXB,
        caller=D,
        caller_scenario="uac_call_rejected.xml",
        callee_scenario="uas_noanswer.xml",
    )
    assert result.caller_code == 0 and result.callee_code == 0, result.caller_output
    assert _final_status(result.caller_trace) == 480
    assert time.monotonic() - started >= 5.0, "the binding's 5 s ringing timeout"
    record = result.record
    assert record["release_dir"] == 0 and record["release_cause"] == 19


def test_bindings_survive_kill_9_and_route_after_restart(tmp_path: Path) -> None:
    workdir = tmp_path / "server"
    workdir.mkdir()
    config, sip_port, callee_port = _configured(workdir)
    server = start_server(config, workdir, sip_port)
    api = _api_client(config, sip_port)
    try:
        pools = _provision(api)
        first = place_call(
            CallServer(server, api, callee_port, pools), tmp_path / "before", x=X_AXB, caller=A
        )
        assert first.caller_code == 0, first.caller_output
        server.proc.kill()  # SIGKILL: no shutdown, no flush
        server.proc.wait()
        server = start_server(config, workdir, sip_port)
        restarted = CallServer(server, api, callee_port, pools)
        assert len(_calls(restarted)) == 1, "the completed call's record survived the crash"
        for caller, callee in ((A, B), (N, A)):
            x = X_AXB if caller == A else X_AXN
            result = place_call(restarted, tmp_path / "after", x=x, caller=caller)
            assert result.caller_code == 0, result.caller_output
            assert result.callee_trace.split("INVITE sip:", 1)[1].startswith(callee)
    finally:
        api.close()
        stop_server(server)


def _media_closed_lines(server: MasklineServer) -> list[dict[str, object]]:
    """The calls whose relay session closed: their call_ended line carries its packet counts."""
    return [line for line in _log_lines(server, "call_ended") if "packets_a_to_b" in line]


def _media_closed_line(
    server: MasklineServer, call_id: str, timeout_s: float = 10.0
) -> dict[str, object]:
    """The call_ended line of ``call_id`` with its relay session's packet counts: it is logged
    once the record is durable, so a moment after the row can be read."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [line for line in _media_closed_lines(server) if line["call"] == call_id]
        if found:
            (line,) = found
            return line
        assert time.monotonic() < deadline, f"the media session of {call_id} was not closed"
        time.sleep(0.02)


def _log_lines(server: MasklineServer, event: str) -> list[dict[str, object]]:
    lines = []
    for line in server.stderr_path.read_text("utf-8", "replace").splitlines():
        if f'"{event}"' in line:
            entry = json.loads(line)
            assert isinstance(entry, dict)
            lines.append(entry)
    return lines


def test_200_simultaneous_calls_with_g711_media(calls: CallServer, tmp_path: Path) -> None:
    """Acceptance 4: 200 calls at once, RTP both ways through the relay, 0 failed calls."""
    total = 200
    already_closed = len(_media_closed_lines(calls.server))
    already_ended = len(_log_lines(calls.server, "call_ended"))
    command, _ = _sipp("uas_answer.xml", tmp_path, "callee", ["-rtp_echo"])
    command[command.index("-p") + 1] = str(calls.callee_port)
    command[command.index("-m") + 1] = str(total)
    command.remove("-trace_msg")
    index = command.index("-message_file")
    del command[index : index + 2]
    callee = _spawn_sipp(command, tmp_path)
    _await_listening(calls.callee_port, callee)
    stat_file = tmp_path / "caller_stat.csv"
    caller = subprocess.run(
        [
            "sipp",
            "-sf",
            str(SCENARIOS / "uac_call_pcap.xml"),
            "-i",
            LOOPBACK,
            "-p",
            str(free_port_udp_and_tcp()),
            "-mp",
            str(free_port_udp_and_tcp()),
            "-s",
            X_AXB,
            "-key",
            "caller",
            A,
            "-m",
            str(total),
            "-l",
            str(total),
            "-r",
            "100",
            "-nostdin",
            "-timeout",
            "90s",
            "-timeout_error",
            "-trace_stat",
            "-stf",
            str(stat_file),
            f"{calls.server.sip[0]}:{calls.server.sip[1]}",
        ],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=False,
    )
    callee_code = callee.wait(timeout=60)
    output = (caller.stdout + caller.stderr).decode("utf-8", "replace")
    assert caller.returncode == 0, output[-3000:]
    assert callee_code == 0
    with stat_file.open(newline="", encoding="utf-8") as f:
        stats = list(csv.DictReader(f, delimiter=";"))[-1]
    assert int(stats["SuccessfulCall(C)"]) == total and int(stats["FailedCall(C)"]) == 0
    deadline = time.monotonic() + 20
    while len(_media_closed_lines(calls.server)) < already_closed + total:
        assert time.monotonic() < deadline, "not every media session was closed"
        time.sleep(0.1)
    # And every record written (after its media closed), so none lands in the next test's.
    while len(_log_lines(calls.server, "call_ended")) < already_ended + total:
        assert time.monotonic() < deadline, "not every call record was written"
        time.sleep(0.1)
    sessions = _media_closed_lines(calls.server)[already_closed:]
    forward = [int(str(s["packets_a_to_b"])) for s in sessions]
    back = [int(str(s["packets_b_to_a"])) for s in sessions]
    # g711a.pcap is 236 packets; every call must carry (nearly) all of them each way.
    assert min(forward) >= 230, f"caller→callee packets per call: min {min(forward)}"
    assert min(back) >= 230, f"callee→caller (echo) packets per call: min {min(back)}"


def test_reinvite_mid_call_is_relayed(calls: CallServer, tmp_path: Path) -> None:
    result = place_call(
        calls,
        tmp_path,
        x=X_AXB,
        caller=A,
        caller_scenario="uac_call_reinvite.xml",
        callee_scenario="uas_answer_reinvite.xml",
    )
    assert result.caller_code == 0, result.caller_output
    assert result.callee_code == 0
    far = result.callee_trace
    assert far.count("INVITE sip:") == 2, "the re-INVITE reached the far leg"
    assert "a=sendonly" in far, "the hold offer was relayed"
    assert "a=recvonly" in result.caller_trace, "the far answer came back"
    assert A not in far
    record = result.record
    assert record["release_dir"] == 1 and record["start_time"] is not None


def test_trunk_digest_challenge_answered_with_configured_credentials(
    calls: CallServer, tmp_path: Path
) -> None:
    result = place_call(calls, tmp_path, x=X_AXB, caller=A, callee_scenario="uas_auth.xml")
    assert result.caller_code == 0, result.caller_output
    assert result.callee_code == 0
    assert 'Authorization: Digest username="ml"' in result.callee_trace
    assert "trunk-secret" not in result.callee_trace


def test_trunk_refusing_the_credentials_fails_the_call(calls: CallServer, tmp_path: Path) -> None:
    result = place_call(
        calls,
        tmp_path,
        x=X_AXB,
        caller=A,
        callee_scenario="uas_auth_refused.xml",
        caller_scenario="uac_call_rejected.xml",
    )
    assert result.caller_code == 0, result.caller_output
    assert result.callee_code == 0, "exactly one authenticated retry"
    assert _final_status(result.caller_trace) == 403
    assert "Proxy-Authenticate" not in result.caller_trace, "the challenge is never relayed"


def test_invite_from_outside_every_trunk_is_refused(calls: CallServer, tmp_path: Path) -> None:
    """The trunk ACL: 127.0.0.2 is loopback too, but not in the trunk's 127.0.0.1/32."""
    command, trace = _sipp(
        "uac_call_rejected.xml", tmp_path, "stranger", ["-s", X_AXB, "-key", "caller", A]
    )
    command[command.index("-i") + 1] = "127.0.0.2"
    command.append(f"{calls.server.sip[0]}:{calls.server.sip[1]}")
    done = subprocess.run(
        command,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr).decode("utf-8", "replace")
    assert _final_status(trace.read_text("utf-8", "replace")) == 403


def _answered_call_awaiting_bye(
    tmp_path: Path, *, sip_port: int, callee_port: int
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], Path, Path]:
    """A call from A to the AXB X, answered, both SIPps left waiting for maskline's BYE: the
    caller and callee processes and their message traces, once the caller has the 200."""
    callee_cmd, callee_trace = _sipp("uas_answer.xml", tmp_path, "callee", [])
    callee_cmd[callee_cmd.index("-p") + 1] = str(callee_port)
    callee = _spawn_sipp(callee_cmd, tmp_path)
    _await_listening(callee_port, callee)
    caller_cmd, caller_trace = _sipp(
        "uac_call_answered_remote_bye.xml",
        tmp_path,
        "caller",
        ["-s", X_AXB, "-key", "caller", A],
    )
    caller_cmd.append(f"{LOOPBACK}:{sip_port}")
    caller = _spawn_sipp(caller_cmd, tmp_path)
    deadline = time.monotonic() + 10
    while "SIP/2.0 200" not in (
        caller_trace.read_text("utf-8", "replace") if caller_trace.exists() else ""
    ):
        assert time.monotonic() < deadline, "the call was not answered"
        time.sleep(0.05)
    return caller, callee, caller_trace, callee_trace


def test_sigterm_releases_calls_in_progress_with_bye_and_records_them(tmp_path: Path) -> None:
    workdir = tmp_path / "server"
    workdir.mkdir()
    config, sip_port, callee_port = _configured(workdir)
    server = start_server(config, workdir, sip_port)
    api = _api_client(config, sip_port)
    try:
        _provision(api)
        caller, callee, caller_trace, callee_trace = _answered_call_awaiting_bye(
            tmp_path, sip_port=sip_port, callee_port=callee_port
        )
        api.close()
        stop_server(server)  # SIGTERM, exit code 0 asserted
        assert caller.wait(timeout=20) == 0, "the caller got maskline's BYE and answered it"
        assert callee.wait(timeout=20) == 0, "the callee got maskline's BYE and answered it"
        caller_text = caller_trace.read_text("utf-8", "replace")
        callee_text = callee_trace.read_text("utf-8", "replace")
        assert "BYE sip:" in caller_text and "BYE sip:" in callee_text
        assert_private(CallResult(0, 0, caller_text, callee_text, "", record={}), A)
        server = start_server(config, workdir, sip_port)
        api = _api_client(config, sip_port)
        (record,) = _calls(CallServer(server, api, callee_port, {}))
        assert record["release_dir"] == 0 and record["start_time"] is not None
    finally:
        api.close()
        stop_server(server)


def test_maximum_call_duration_releases_both_legs_with_bye(tmp_path: Path) -> None:
    """[sip] max_call_duration_s (here its least, 10 s) ends an answered call: a BYE to each
    leg 10 s after the answer (engine.b2bua, one loop timer for every call's)."""
    workdir = tmp_path / "server"
    workdir.mkdir()
    config, sip_port, callee_port = _configured(workdir)
    text = config.read_text()
    config.write_text(text.replace("[sip]\n", "[sip]\nmax_call_duration_s = 10\n", 1))
    server = start_server(config, workdir, sip_port)
    api = _api_client(config, sip_port)
    try:
        _provision(api)
        caller, callee, caller_trace, callee_trace = _answered_call_awaiting_bye(
            tmp_path, sip_port=sip_port, callee_port=callee_port
        )
        answered = time.monotonic()
        assert caller.wait(timeout=30) == 0, "the caller got maskline's BYE and answered it"
        assert callee.wait(timeout=30) == 0, "the callee got maskline's BYE and answered it"
        held_s = time.monotonic() - answered
        assert 9.5 <= held_s < 14, f"released {held_s:.1f} s after the answer, not 10 s"
        caller_text = caller_trace.read_text("utf-8", "replace")
        callee_text = callee_trace.read_text("utf-8", "replace")
        assert "BYE sip:" in caller_text and "BYE sip:" in callee_text
        assert_private(CallResult(0, 0, caller_text, callee_text, "", record={}), A)
        (record,) = _calls(CallServer(server, api, callee_port, {}))
        assert record["release_dir"] == 0 and record["release_cause"] == 16
        start, release = (
            datetime.strptime(str(record[name]), "%Y-%m-%d %H:%M:%S")
            for name in ("start_time", "release_time")
        )
        assert 9 <= (release - start).total_seconds() <= 12  # whole seconds, as the reference
    finally:
        api.close()
        stop_server(server)


# ----------------------------------------------------------------- session timers (RFC 4028)


def _message_block(trace: str, start_line: str) -> str:
    """The first message in a SIPp ``-trace_msg`` log whose start line begins ``start_line``."""
    lines = trace.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start_line))
    block = []
    for line in lines[first:]:
        if not line.strip() or line.startswith("-----"):
            break
        block.append(line)
    return "\n".join(block)


def _logged_at_s(trace: str, start_line: str) -> float:
    """When SIPp logged the first message starting ``start_line`` (epoch seconds)."""
    stamp = None
    for line in trace.splitlines():
        if line.startswith("-----"):
            stamp = line.rsplit(" ", 2)[-2:]
        elif line.startswith(start_line):
            assert stamp is not None
            return datetime.strptime(" ".join(stamp), "%Y-%m-%d %H:%M:%S.%f").timestamp()
    raise AssertionError(f"no {start_line!r} in the trace")


def test_session_timer_caller_refreshes_and_far_leg_gets_ours(
    calls: CallServer, tmp_path: Path
) -> None:
    result = place_call(
        calls,
        tmp_path,
        x=X_AXB,
        caller=A,
        caller_scenario="uac_call_timer.xml",
        caller_args=("-key", "se", "1800"),
    )
    assert result.caller_code == 0, result.caller_output
    assert result.callee_code == 0
    ok = _message_block(result.caller_trace, "SIP/2.0 200")
    assert "Session-Expires: 1800;refresher=uac" in ok, ok
    assert "Require: timer" in ok, ok
    far_invite = _message_block(result.callee_trace, "INVITE sip:")
    assert "Supported: timer" in far_invite
    assert "Session-Expires: 1800" in far_invite and "Min-SE: 90" in far_invite, far_invite


def test_session_interval_too_brief_gets_422_with_min_se(calls: CallServer, tmp_path: Path) -> None:
    result = place_call(
        calls,
        tmp_path,
        x=X_AXB,
        caller=A,
        caller_scenario="uac_call_timer_too_brief.xml",
        callee_scenario=None,
        caller_args=("-key", "se", "30"),
        expect_record=False,
    )
    assert result.caller_code == 0, result.caller_output
    assert _final_status(result.caller_trace) == 422
    assert "Min-SE: 90" in _message_block(result.caller_trace, "SIP/2.0 422")


def test_trunk_422_is_retried_once_with_its_min_se(calls: CallServer, tmp_path: Path) -> None:
    result = place_call(
        calls, tmp_path, x=X_AXB, caller=A, callee_scenario="uas_timer_too_brief.xml"
    )
    assert result.caller_code == 0, result.caller_output
    assert result.callee_code == 0, result.callee_trace[-2000:]
    invites = result.callee_trace.split("INVITE sip:")[1:]
    assert len(invites) == 2, "exactly one retry"
    retry = invites[1].split("\n\n", 1)[0]
    assert "CSeq: 2 INVITE" in retry, retry
    assert "Session-Expires: 3600" in retry and "Min-SE: 3600" in retry, retry
    assert "SIP/2.0 422" not in result.caller_trace, "the trunk's 422 is never relayed"


def test_session_expiry_releases_the_call_while_maskline_refreshes_the_far_leg(
    calls: CallServer, tmp_path: Path
) -> None:
    """One call, both directions of RFC 4028 (slow by nature: ~60 s).

    The caller asks for 90 s as refresher and never refreshes: maskline releases the call
    90 - min(32, 90/3) = 60 s after the answer, with a BYE on both legs. Meanwhile the callee
    answered 90 s with refresher=uac, so maskline refreshes the far leg with an UPDATE at 45 s.
    """
    started = time.monotonic()
    result = place_call(
        calls,
        tmp_path,
        x=X_AXB,
        caller=A,
        caller_scenario="uac_call_timer_expires.xml",
        callee_scenario="uas_answer_timer_refresh.xml",
        caller_args=("-key", "se", "90"),
        sipp_timeout_s=120,
    )
    elapsed_s = time.monotonic() - started
    assert result.caller_code == 0, result.caller_output
    assert result.callee_code == 0, result.callee_trace[-2000:]
    assert 59 <= elapsed_s < 80, elapsed_s
    assert "Session-Expires: 90;refresher=uac" in _message_block(result.caller_trace, "SIP/2.0 200")
    update = _message_block(result.callee_trace, "UPDATE sip:")
    answered_s = _logged_at_s(result.callee_trace, "SIP/2.0 200")
    refresh_after_s = _logged_at_s(result.callee_trace, "UPDATE sip:") - answered_s
    assert 44 <= refresh_after_s <= 50, f"refresh after {refresh_after_s:.1f} s, not N/2 = 45 s"
    assert "Session-Expires: 90;refresher=uac" in update, update
    assert "BYE sip:" in result.caller_trace and "BYE sip:" in result.callee_trace
    record = result.record
    assert record["release_dir"] == 0 and record["release_cause"] == 102
    assert record["start_time"] is not None


# ------------------------------------------------------- reliable provisionals (RFC 3262)


def test_caller_requiring_100rel_gets_a_reliable_180_and_the_200_after_its_prack(
    calls: CallServer, tmp_path: Path
) -> None:
    result = place_call(calls, tmp_path, x=X_AXB, caller=A, caller_scenario="uac_call_100rel.xml")
    assert result.caller_code == 0, result.caller_output
    assert result.callee_code == 0, result.callee_trace[-2000:]
    ringing = _message_block(result.caller_trace, "SIP/2.0 180")
    assert "Require: 100rel" in ringing, ringing
    rseq = int(
        next(line.split(":", 1)[1] for line in ringing.splitlines() if line.startswith("RSeq:"))
    )
    assert 1 <= rseq < 2**31
    assert f"RAck: {rseq} 1 INVITE" in _message_block(result.caller_trace, "PRACK sip:")
    # §3: the 200 to the INVITE only after the 200 to the PRACK.
    messages = result.caller_trace.split("-----------------------------------------------")
    oks = [
        next(line for line in m.splitlines() if line.startswith("CSeq:"))
        for m in messages
        if "\nSIP/2.0 200" in m
    ]
    assert oks[:2] == ["CSeq: 2 PRACK", "CSeq: 1 INVITE"], oks
    # The far leg stays an ordinary call: it saw no 100rel requirement and no PRACK.
    far_invite = _message_block(result.callee_trace, "INVITE sip:")
    assert "Require:" not in far_invite and "Supported: timer, 100rel" in far_invite, far_invite
    assert "PRACK" not in result.callee_trace
    assert result.record["start_time"] is not None


def test_callee_reliable_180_is_pracked_and_the_call_connects(
    calls: CallServer, tmp_path: Path
) -> None:
    result = place_call(calls, tmp_path, x=X_AXB, caller=A, callee_scenario="uas_answer_100rel.xml")
    assert result.caller_code == 0, result.caller_output
    assert result.callee_code == 0, result.callee_trace[-2000:]
    pracks = [block for block in result.callee_trace.split("\n\n") if "PRACK sip:" in block]
    prack = _message_block(result.callee_trace, "PRACK sip:")
    assert "RAck: 1 1 INVITE" in prack and "CSeq: 2 PRACK" in prack, prack
    assert len(pracks) == 1, "a reliable 180 is PRACKed once"
    # The caller did not ask for 100rel: its 180 is an ordinary one.
    assert "RSeq:" not in _message_block(result.caller_trace, "SIP/2.0 180")
    assert result.record["start_time"] is not None


X_SDK = {None: "17000000009", "v2": "17000000010"}  # per signature scheme
F = "13200132000"  # the pair bound through the reference SDK
G = "13100131000"


@pytest.mark.parametrize("signature", [None, "v2"])
def test_bind_axb_through_the_reference_sdk_routes_the_next_call(
    calls: CallServer, tmp_path: Path, signature: str | None
) -> None:
    """Acceptance 5 of issue 4: a tenant's BindAxb via the official SDK routes a call at once."""
    from alibabacloud_dyplsapi20170525 import models as dm
    from alibabacloud_dyplsapi20170525.client import Client
    from alibabacloud_tea_openapi.models import Config

    tenant = _ok(calls.api.post("/tenants", json={"name": f"sdk {signature}"}))
    pool = str(_ok(calls.api.post(
        "/pools", json={"type": "AXB", "name": "sdk", "tenant_id": tenant["tenant_id"]}
    ))["pool_key"])  # fmt: skip
    # One number in stock at a time, so the random pick is this X; tenants never share an X.
    x = X_SDK[signature]
    csv_rows = f"number,city,province,carrier,spec\n{x},北京,北京,CMCC,1\n"
    _ok(calls.api.post("/numbers/import", content=csv_rows, headers={"Content-Type": "text/csv"}))
    assert _ok(calls.api.post(f"/pools/{pool}/numbers", json={"count": 1}))["numbers"] == [
        "+86" + x
    ]
    config = Config(
        access_key_id=str(tenant["access_key_id"]),
        access_key_secret=str(tenant["access_key_secret"]),
        endpoint=_api_listen(calls.server.config_path, calls.server.sip[1]),
        protocol="http",
    )
    if signature is not None:
        config.signature_algorithm = signature
    answer = Client(config).bind_axb(
        dm.BindAxbRequest(pool_key=pool, phone_no_a=F, phone_no_b=G, expiration=EXPIRES)
    )
    assert answer.status_code == 200 and answer.body.code == "OK", answer.body
    assert answer.body.secret_bind_dto.secret_no == x
    result = place_call(calls, tmp_path, x=x, caller=F)
    assert result.caller_code == 0, result.caller_output
    assert result.callee_trace.split("INVITE sip:", 1)[1].startswith(G)
    assert result.record["sub_id"] == answer.body.secret_bind_dto.subs_id
    assert result.record["pool_key"] == pool
    unbound = Client(config).unbind_subscription(
        dm.UnbindSubscriptionRequest(
            pool_key=pool, secret_no=x, subs_id=answer.body.secret_bind_dto.subs_id
        )
    )
    assert unbound.body.code == "OK"
