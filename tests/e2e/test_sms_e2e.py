"""SMS through X end to end (issue 8, acceptance 1–3 and 5): the real ``maskline serve``, SIPp
sending MESSAGEs as the trunk does and receiving smart SMS as the far end of the trunk, the
tenant's report receiver on loopback.

One server for the module; each test has its own X (its own pool) so that no test's messages,
unsubscribes or settings touch another's. Every text sent is kept: the last test asserts that
none of them appears in the process's log.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from e2e_support import MasklineServer, start_server, stop_server
from test_calls_e2e import EXPIRES, _api_client, _await_listening, _configured, _ok, _sipp
from test_reports_e2e import Receiver

from billing.ledger_run import rate_sms_messages
from store.db import Database

pytestmark = pytest.mark.e2e

A = "13800138061"
B = "13900139061"
STRANGER = "13700137061"
SIGNATURE = "【号码隐私保护】"
SUFFIX = "【回T退订】"
SERVER_ZONE = ZoneInfo("Asia/Shanghai")  # [time] zone's default: the months of charges
KEYWORD = "验证码"
CONFIRM_EXPIRY_S = 10  # the least [sms] allows
# (pool name, pool type, SMS mode, X, number spec); every pool but "full" binds A–B on its X.
POOLS = (
    ("off", "AXB", "off", "17000000061", 1),
    ("intercept", "AXB", "intercept", "17000000062", 1),
    ("full", "AXB", "full_intercept", "17000000063", 1),
    ("smart", "AXB", "smart", "17000000064", 1),
    ("failure", "AXB", "smart", "17000000065", 1),
    ("unsubscribe", "AXB", "smart", "17000000066", 1),
    ("whitelist", "AXB", "intercept", "17000000067", 1),
    ("confirm", "AXB", "smart", "17000000068", 1),
    ("expiry", "AXB", "smart", "17000000069", 1),
    ("95", "95AXN", "off", "95013000061", 3),
    ("logs", "AXB", "intercept", "17000000060", 1),
)
TEXTS_SENT: list[str] = []


@dataclass
class Pool:
    key: str
    x: str


@dataclass
class SmsScene:
    server: MasklineServer
    api: httpx.Client
    callee_port: int
    receiver: Receiver
    workdir: Path
    pools: dict[str, Pool]


def _provision(api: httpx.Client, url: str) -> dict[str, Pool]:
    tenant = str(_ok(api.post("/tenants", json={"name": "SMS Co"}))["tenant_id"])
    _ok(api.put(f"/tenants/{tenant}/report-urls/default", json={"url": url}))
    pools: dict[str, Pool] = {}
    for name, kind, mode, x, spec in POOLS:
        # One number in stock at a time, so the pool gets the X this test wants.
        rows = f"number,city,province,carrier,spec\n{x},北京,北京,CMCC,{spec}\n"
        _ok(api.post("/numbers/import", content=rows, headers={"Content-Type": "text/csv"}))
        body = {"type": kind, "name": f"sms-{name}", "tenant_id": tenant}
        key = str(_ok(api.post("/pools", json=body))["pool_key"])
        assert _ok(api.post(f"/pools/{key}/numbers", json={"count": 1}))["numbers"] == ["+86" + x]
        if mode != "off":
            _ok(api.patch(f"/pools/{key}", json={"sms_mode": mode}))
        if name != "full":
            binding = {"type": kind, "a": A, "x": x, "expires": EXPIRES, "out_id": f"o-{name}"}
            if kind == "AXB":
                binding["b"] = B
            _ok(api.post(f"/pools/{key}/bindings", json=binding))
        pools[name] = Pool(key, x)
    _ok(api.put(f"/pools/{pools['whitelist'].key}/sms", json={"keywords": [KEYWORD]}))
    for name in ("confirm", "expiry"):
        _ok(api.put(f"/pools/{pools[name].key}/sms", json={"confirm": True}))
    return pools


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmsScene]:
    workdir = tmp_path_factory.mktemp("sms")
    config, sip_port, callee_port = _configured(workdir)
    with config.open("a", encoding="utf-8") as f:
        f.write(f"\n[sms]\nconfirm_expiry_s = {CONFIRM_EXPIRY_S}\n")
    server = start_server(config, workdir, sip_port)
    api = _api_client(config, sip_port)
    receiver = Receiver()
    try:
        pools = _provision(api, receiver.start())
        yield SmsScene(server, api, callee_port, receiver, workdir, pools)
    finally:
        receiver.stop()
        api.close()
        stop_server(server)


# ------------------------------------------------------------------------------ helpers


@dataclass
class Sent:
    """One MESSAGE sent to X: the status it got, its reason, the recipient's trace if any."""

    status: int
    reason: str
    recipient_trace: str | None


def _text(label: str) -> str:
    """A text unique to this test run (so the log check can look for it), Chinese included."""
    text = f"快递到了 {label} {time.monotonic_ns() % 10**9}"
    TEXTS_SENT.append(text)
    return text


def _recipient(
    scene: SmsScene, workdir: Path, scenario: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """The far end of the trunk, on the trunk's outbound port, for one MESSAGE."""
    command, trace = _sipp(scenario, workdir, "recipient", [])
    command[command.index("-p") + 1] = str(scene.callee_port)
    proc = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    _await_listening(scene.callee_port, proc)
    return proc, trace


def _send(
    scene: SmsScene,
    name: str,
    *,
    pool: str,
    sender: str,
    text: str,
    expect: int,
    recipient: str | None = None,
) -> Sent:
    """SIPp sends ``text`` from ``sender`` to the pool's X and must get ``expect``; with
    ``recipient`` (a uas_message*.xml scenario) the far end runs for one MESSAGE."""
    workdir = scene.workdir / name
    workdir.mkdir()
    far = _recipient(scene, workdir, recipient) if recipient is not None else None
    x = scene.pools[pool].x
    keys = ["-s", x, "-key", "sender", sender, "-key", "text", text, "-key", "expect", str(expect)]
    command, trace = _sipp("uac_message.xml", workdir, "sender", keys)
    command.append(f"{scene.server.sip[0]}:{scene.server.sip[1]}")
    done = subprocess.run(command, cwd=workdir, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=60, check=False)  # fmt: skip
    sent_trace = trace.read_text("utf-8", "replace")
    assert done.returncode == 0, sent_trace[-3000:] + done.stdout.decode("utf-8", "replace")[-1500:]
    recipient_trace = None
    if far is not None:
        proc, far_trace = far
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("the far end never got the smart SMS") from None
        recipient_trace = far_trace.read_text("utf-8", "replace")
        assert code == 0, recipient_trace[-3000:]
    return Sent(expect, _reason(sent_trace), recipient_trace)


def _reason(trace: str) -> str:
    """The reason phrase of the final response in a SIPp -trace_msg log."""
    lines = [line for line in trace.splitlines() if line.startswith("SIP/2.0 ")]
    finals = [line for line in lines if int(line.split()[1]) >= 200]
    assert finals, trace[-2000:]
    return finals[-1].split(" ", 2)[2].strip()


def _reports(
    scene: SmsScene, pool: str, *, types: set[str], timeout_s: float = 15
) -> list[dict[str, Any]]:
    """The reports of the pool's X once one of each type in ``types`` arrived (one message per
    X at a time in these tests; duplicates by id dropped)."""
    x = "+86" + scene.pools[pool].x
    deadline = time.monotonic() + timeout_s
    while True:
        with scene.receiver.lock:
            mine = {r["id"]: r for r in scene.receiver.reports if r.get("secret_no") == x}
        reports = list(mine.values())
        if types <= {r["report_type"] for r in reports}:
            return reports
        if time.monotonic() > deadline:
            raise AssertionError(f"no {types} reports for {x} within {timeout_s} s: {reports}")
        time.sleep(0.05)


def _one(reports: list[dict[str, Any]], report_type: str, **match: object) -> dict[str, Any]:
    found = [
        r
        for r in reports
        if r["report_type"] == report_type and all(r.get(k) == v for k, v in match.items())
    ]
    assert len(found) == 1, (report_type, match, reports)
    return found[0]


def _records_of(scene: SmsScene, pool: str) -> list[dict[str, Any]]:
    """The call records (SMS included) of the pool's X, through the API."""
    records = _ok(scene.api.get("/calls", params={"limit": 200}))["calls"]
    assert isinstance(records, list)
    x = "+86" + scene.pools[pool].x
    return [r for r in records if isinstance(r, dict) and r.get("secret_no") == x]


def _charges(scene: SmsScene, message_id: str) -> list[tuple[str, int, Decimal]]:
    """The ledger lines (item, segments, amount) of one message, after a rating pass.

    The pass is the billing job's own function, run here on the server's database (WAL: a
    second writer waits its turn; a message is rated once whichever pass gets it first)."""

    async def rate() -> None:
        db = await Database.open(scene.workdir / "maskline.sqlite3")
        try:
            await rate_sms_messages(db, zone=SERVER_ZONE)
        finally:
            await db.close()

    asyncio.run(rate())
    conn = sqlite3.connect(scene.workdir / "maskline.sqlite3")
    try:
        rows = conn.execute(
            "SELECT item, quantity, amount FROM ledger WHERE ref = ? ORDER BY id", (message_id,)
        ).fetchall()
    finally:
        conn.close()
    return [(str(item), int(quantity), Decimal(amount)) for item, quantity, amount in rows]


def _messages_to(trace: str) -> list[str]:
    """The MESSAGE requests in a recipient's -trace_msg log, each as text."""
    blocks = trace.split("MESSAGE sip:")[1:]
    return ["MESSAGE sip:" + block.split("-----------------")[0] for block in blocks]


# -------------------------------------------------------------------------------- modes


def test_off_mode_refuses_and_stores_nothing(scene: SmsScene) -> None:
    sent = _send(scene, "off", pool="off", sender=A, text=_text("off"), expect=403)
    assert "off" in sent.reason.lower()
    # A stored message has its record before the answer (the intercept test sees its own).
    assert _records_of(scene, "off") == []


def test_intercept_mode_stores_and_reports_the_content_without_delivering(
    scene: SmsScene,
) -> None:
    text = _text("intercept")
    sent = _send(scene, "intercept", pool="intercept", sender=A, text=text, expect=202)
    assert sent.reason.startswith("Accepted")
    reports = _reports(scene, "intercept", types={"sms_intercept", "end"})
    content = _one(reports, "sms_intercept")
    assert content["sms_content"] == text and content["sms_state"] == "intercepted"
    assert content["sender_no"] == "+86" + A and content["out_id"] == "o-intercept"
    end = _one(reports, "end")
    assert end["call_type"] == 5 and end["sms_result"] == "intercepted"
    assert end["call_id"] == content["call_id"]
    assert [r["call_id"] for r in _records_of(scene, "intercept")] == [end["call_id"]]


def test_full_intercept_takes_messages_without_a_binding(scene: SmsScene) -> None:
    text = _text("full")
    _send(scene, "full", pool="full", sender=STRANGER, text=text, expect=202)
    reports = _reports(scene, "full", types={"sms_intercept", "end"})
    assert _one(reports, "sms_intercept")["sms_content"] == text
    end = _one(reports, "end")
    assert end["call_type"] == 5 and end["unconnected_cause"] == 2  # no binding


def test_intercept_mode_refuses_a_sender_without_a_binding(scene: SmsScene) -> None:
    sent = _send(scene, "intercept-stranger", pool="intercept", sender=STRANGER,
                 text=_text("stranger"), expect=404)  # fmt: skip
    assert "binding" in sent.reason.lower()


def test_smart_sms_reaches_the_peer_from_x_with_signature_and_suffix(scene: SmsScene) -> None:
    text = _text("smart")
    x = scene.pools["smart"].x
    sent = _send(scene, "smart", pool="smart", sender=A, text=text, expect=202,
                 recipient="uas_message.xml")  # fmt: skip
    assert sent.recipient_trace is not None
    [message] = _messages_to(sent.recipient_trace)
    head, _, body = message.partition("\n\n")
    body = body.strip()
    assert body == SIGNATURE + text + SUFFIX
    assert head.startswith(f"MESSAGE sip:{B}@")  # the trunk's national format
    from_line = next(line for line in head.splitlines() if line.lower().startswith("from:"))
    assert f"sip:{x}@" in from_line
    assert A not in message  # never A's number, in any form (+86… contains it too)
    reports = _reports(scene, "smart", types={"end"})
    end = _one(reports, "end")
    assert end["call_type"] == 2 and end["sms_result"] == "delivered" and end["sip_status"] == 200
    assert end["phone_no"] == "+86" + A and end["peer_no"] == "+86" + B
    assert not [r for r in reports if r["report_type"] == "sms_intercept"]
    # 0.1 per 70-character segment of the text as sent, signature and suffix included.
    sent_segments = -(-len(SIGNATURE + text + SUFFIX) // 70)
    assert _charges(scene, end["call_id"]) == [
        ("sms_smart", sent_segments, Decimal("0.1") * sent_segments)
    ]


def test_smart_sms_refused_by_the_peer_is_a_failure_billed_as_an_intercept(
    scene: SmsScene,
) -> None:
    text = _text("failure")
    sent = _send(scene, "failure", pool="failure", sender=A, text=text, expect=202,
                 recipient="uas_message_reject.xml")  # fmt: skip
    assert sent.recipient_trace is not None and len(_messages_to(sent.recipient_trace)) == 1
    reports = _reports(scene, "failure", types={"end", "sms_intercept"})
    end = _one(reports, "end")
    assert end["call_type"] == 5 and end["sms_result"] == "failed" and end["sip_status"] == 480
    assert end["sms_segments"] == 1  # the text as received: an intercept's charge
    assert _one(reports, "sms_intercept")["sms_content"] == text
    assert _charges(scene, end["call_id"]) == [("sms_intercept", 1, Decimal("0.025"))]


def test_95axn_numbers_refuse_sms_with_a_clear_cause(scene: SmsScene) -> None:
    sent = _send(scene, "95", pool="95", sender=A, text=_text("95"), expect=403)
    assert "95" in sent.reason


# -------------------------------------------------------------------------- unsubscribe


def test_t_reply_unsubscribes_and_the_next_smart_sms_is_intercepted(scene: SmsScene) -> None:
    _send(scene, "unsubscribe-t", pool="unsubscribe", sender=B, text=" t ", expect=202)
    reports = _reports(scene, "unsubscribe", types={"end"})
    assert _one(reports, "end")["sms_result"] == "unsubscribe"
    text = _text("after-unsubscribe")
    _send(scene, "unsubscribe-next", pool="unsubscribe", sender=A, text=text, expect=202)
    reports = _reports(scene, "unsubscribe", types={"end", "sms_intercept"})
    content = _one(reports, "sms_intercept")
    assert content["sms_content"] == text and content["sms_cause"] == "unsubscribed"
    ends = [r for r in reports if r["report_type"] == "end"]
    assert sorted(r["sms_result"] for r in ends) == ["intercepted", "unsubscribe"]


# --------------------------------------------------------- whitelist, confirm-before-send


def test_a_whitelisted_message_is_delivered_in_intercept_mode(scene: SmsScene) -> None:
    text = _text(f"您的{KEYWORD}是 4821")
    sent = _send(scene, "whitelist", pool="whitelist", sender=A, text=text, expect=202,
                 recipient="uas_message.xml")  # fmt: skip
    assert sent.recipient_trace is not None
    [message] = _messages_to(sent.recipient_trace)
    assert message.rstrip().endswith(SIGNATURE + text + SUFFIX)
    end = _one(_reports(scene, "whitelist", types={"end"}), "end")
    assert end["sms_result"] == "delivered" and end["call_type"] == 2


def test_a_held_message_waits_for_the_tenants_confirmation_then_goes(scene: SmsScene) -> None:
    text = _text("confirm")
    sent = _send(scene, "confirm", pool="confirm", sender=A, text=text, expect=202)
    assert "held" in sent.reason
    content = _one(_reports(scene, "confirm", types={"sms_intercept"}), "sms_intercept")
    assert content["sms_state"] == "pending" and content["sms_content"] == text
    message_id = content["message_id"]
    listed = _ok(scene.api.get("/sms", params={"state": "pending"}))["messages"]
    assert isinstance(listed, list) and message_id in [m["id"] for m in listed]
    workdir = scene.workdir / "confirm-recipient"
    workdir.mkdir()
    proc, trace = _recipient(scene, workdir, "uas_message.xml")
    try:
        confirmed = _ok(scene.api.post(f"/sms/{message_id}/confirm"))
        assert confirmed["state"] in ("sending", "delivered")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    [delivered] = _messages_to(trace.read_text("utf-8", "replace"))
    assert delivered.rstrip().endswith(SIGNATURE + text + SUFFIX)
    end = _one(_reports(scene, "confirm", types={"end"}), "end")
    assert end["sms_result"] == "delivered" and end["call_id"] == message_id
    again = scene.api.post(f"/sms/{message_id}/confirm")
    assert again.status_code == 409 and again.json()["code"] == "SMS_NOT_PENDING"


def test_a_held_message_nobody_confirms_is_discarded_at_its_expiry(scene: SmsScene) -> None:
    text = _text("expiry")
    _send(scene, "expiry", pool="expiry", sender=A, text=text, expect=202)
    content = _one(_reports(scene, "expiry", types={"sms_intercept"}), "sms_intercept")
    assert content["sms_state"] == "pending"
    # [sms] confirm_expiry_s, then the SMS job's next pass (every 5 s).
    reports = _reports(scene, "expiry", types={"end"}, timeout_s=CONFIRM_EXPIRY_S + 15)
    end = _one(reports, "end")
    assert end["sms_result"] == "discarded" and end["call_type"] == 5
    assert end["call_id"] == content["message_id"]
    late = scene.api.post(f"/sms/{content['message_id']}/confirm")
    assert late.status_code == 409


# ------------------------------------------------------------------------------- logs


def test_no_message_text_appears_in_the_log(scene: SmsScene) -> None:
    """Acceptance 5: the process logs messages (lengths, hashes), never their text."""
    text = _text("logs")
    _send(scene, "logs", pool="logs", sender=A, text=text, expect=202)
    _reports(scene, "logs", types={"end"})
    log = scene.server.stderr_path.read_text("utf-8", "replace")
    assert '"sms_received"' in log  # the gateway did log the messages
    leaked = [t for t in TEXTS_SENT if t in log or t.split()[-1] in log]
    assert not leaked, leaked
    assert "快递" not in log
