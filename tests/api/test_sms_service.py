"""api.sms.SmsService over a real SQLite file with a fake trunk sender: every pool mode, 95AXN,
smart delivery and its failure, unsubscribe, whitelist, confirm-before-send and its expiry,
retention, a crash left in delivery, tenant isolation, and no message body in any log line."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog
from api_support import Api
from test_sms_support import (
    A_NO,
    B_NO,
    CONFIRM_EXPIRY_S,
    N_NO,
    RETENTION_DAYS,
    STRANGER,
    FakeTrunk,
    SmsScene,
    make_sms_scene,
    messages,
    reports_of,
    rows,
)

from api.errors import Conflict, InvalidInput, NotFound
from api.principal import OPERATOR, Principal
from api.sms import SMS_NOT_EXIST, SMS_NOT_PENDING, SmsService
from routing.sms import SIGNATURE, UNSUBSCRIBE_SUFFIX
from store import SmsMode

BODY = "包裹已到小区门口，请下楼取件 secret-body-7731"


@pytest.fixture
async def scene(api: Api) -> AsyncIterator[SmsScene]:
    made = await make_sms_scene(api)
    yield made
    await made.service.close()
    await made.reports.close()


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every log entry of the test (asserted free of message bodies at the end)."""
    with structlog.testing.capture_logs() as captured:
        yield captured
    for entry in captured:
        line = repr(entry)
        assert "secret-body" not in line and "包裹" not in line, line
        assert "13800138000" not in line and "13900139000" not in line, line


def tenant(scene: SmsScene, which: str) -> Principal:
    return Principal(scene.a.tenant_id if which == "a" else scene.b.tenant_id)


# ------------------------------------------------------------------------------- refusals


async def test_off_refuses_and_stores_nothing(scene: SmsScene, logs: list[Any]) -> None:
    before = rows(scene.db_path, "SELECT COUNT(*) FROM report_outbox")
    verdict = await scene.text(scene.axb_binding.x, A_NO, BODY)
    assert (verdict.status, verdict.reason) == (403, "SMS off for this pool")
    assert messages(scene.db_path) == []
    assert rows(scene.db_path, "SELECT COUNT(*) FROM report_outbox") == before
    assert scene.trunk.sent == []
    assert any(e["event"] == "sms_refused" for e in logs)


async def test_95axn_never_takes_sms(scene: SmsScene, logs: list[Any]) -> None:
    # Even if the mode were set behind the API's back, a 95AXN pool refuses.
    with pytest.raises(InvalidInput):
        await scene.mode(scene.axn95, SmsMode.SMART)
    conn = sqlite3.connect(scene.db_path)
    conn.execute("UPDATE pools SET sms_mode = 'smart' WHERE pool_key = ?", (scene.axn95,))
    conn.commit()
    conn.close()
    verdict = await scene.text(scene.axn95_binding.x, N_NO, BODY)
    assert verdict.status == 403 and "95AXN" in verdict.reason
    assert messages(scene.db_path) == [] and scene.trunk.sent == []


async def test_x_in_no_pool_is_not_found(scene: SmsScene, logs: list[Any]) -> None:
    verdict = await scene.text("+8617000009999", A_NO, BODY)
    assert verdict.status == 404
    assert messages(scene.db_path) == []


# ------------------------------------------------------------------------------- intercept


async def test_intercept_stores_and_reports_with_content(scene: SmsScene, logs: list[Any]) -> None:
    await scene.mode(scene.axb, SmsMode.INTERCEPT)
    verdict = await scene.text(scene.axb_binding.x, B_NO, BODY)
    assert verdict.status == 202
    [stored] = messages(scene.db_path)
    assert stored["state"] == "intercepted" and stored["text"] == BODY
    assert stored["segments"] == 1 and stored["text_chars"] == len(BODY)
    assert stored["sub_id"] == scene.axb_binding.sub_id
    assert scene.trunk.sent == []
    [content] = reports_of(scene.db_path, "sms_intercept")
    assert content["sms_content"] == BODY and content["call_type"] == 5
    assert content["secret_no"] == scene.axb_binding.x and content["sender_no"] == B_NO
    assert content["out_id"] == "order-1"
    [end] = reports_of(scene.db_path, "end")
    assert end["call_type"] == 5 and end["sms_result"] == "intercepted"
    assert end["phone_no"] == A_NO and end["peer_no"] == B_NO
    assert end["id"] == stored["id"] and "sms_content" not in end
    [record] = rows(scene.db_path, "SELECT call_type, unconnected_cause FROM call_records")
    assert record == (5, 4)
    # Outbox rows belong to tenant A's queue.
    owners = rows(
        scene.db_path, "SELECT DISTINCT tenant_id FROM report_outbox WHERE kind != 'pool_warning'"
    )
    assert owners == [(scene.a.tenant_id,)]


async def test_intercept_refuses_a_stranger_full_intercept_takes_it(
    scene: SmsScene, logs: list[Any]
) -> None:
    await scene.mode(scene.axb, SmsMode.INTERCEPT)
    refused = await scene.text(scene.axb_binding.x, STRANGER, BODY)
    assert refused.status == 404 and messages(scene.db_path) == []
    await scene.mode(scene.axb, SmsMode.FULL_INTERCEPT)
    taken = await scene.text(scene.axb_binding.x, STRANGER, BODY)
    assert taken.status == 202
    [stored] = messages(scene.db_path)
    assert (stored["state"], stored["cause"], stored["sub_id"]) == (
        "intercepted",
        "no_binding",
        None,
    )
    [end] = reports_of(scene.db_path, "end")
    assert end["call_type"] == 5 and end["unconnected_cause"] == 2 and end["phone_no"] is None
    anonymous = await scene.text(scene.axb_binding.x, None, BODY)
    assert anonymous.status == 202  # full intercept keeps anonymous messages too


# ------------------------------------------------------------------------------- smart SMS


async def test_smart_delivers_to_the_peer_from_x(scene: SmsScene, logs: list[Any]) -> None:
    await scene.mode(scene.axb, SmsMode.SMART)
    x = scene.axb_binding.x
    assert (await scene.text(x, A_NO, BODY)).status == 202
    assert (await scene.text(x, B_NO, "好的", call_id="sip-call-2")).status == 202
    await scene.service.settle()
    assert scene.trunk.sent == [
        (B_NO, x, f"{SIGNATURE}{BODY}{UNSUBSCRIBE_SUFFIX}"),
        (A_NO, x, f"{SIGNATURE}好的{UNSUBSCRIBE_SUFFIX}"),
    ]
    first, second = messages(scene.db_path)
    assert first["state"] == second["state"] == "delivered"
    assert first["sip_status"] == 200
    # Billed as sent: 14 wrapper code points + the text.
    assert first["segments"] == 1 and second["segments"] == 1
    ends = reports_of(scene.db_path, "end")
    assert [(e["call_type"], e["phone_no"], e["peer_no"]) for e in ends] == [
        (2, A_NO, B_NO),  # A sent it
        (3, A_NO, B_NO),  # A received it
    ]
    assert all(e["sms_result"] == "delivered" and e["called_display_no"] == x for e in ends)
    assert reports_of(scene.db_path, "sms_intercept") == []  # delivered: no content report


async def test_axn_smart_goes_to_a(scene: SmsScene, logs: list[Any]) -> None:
    await scene.mode(scene.axn, SmsMode.SMART)
    assert (await scene.text(scene.axn_binding.x, N_NO, BODY)).status == 202
    await scene.service.settle()
    assert [to for to, _x, _t in scene.trunk.sent] == [A_NO]
    # A texting its AXN X has no default B: kept, not sent.
    assert (await scene.text(scene.axn_binding.x, A_NO, BODY)).status == 202
    assert messages(scene.db_path)[-1]["cause"] == "no_default_b"
    assert len(scene.trunk.sent) == 1


@pytest.mark.parametrize("status", [480, 503, None])
async def test_smart_failure_is_reported_and_kept(
    api: Api, status: int | None, logs: list[Any]
) -> None:
    scene = await make_sms_scene(api, trunk=FakeTrunk(status=status))
    try:
        await scene.mode(scene.axb, SmsMode.SMART)
        long_text = "长" * 60  # 1 segment as received, 2 as it would have been sent (74)
        assert (await scene.text(scene.axb_binding.x, A_NO, long_text)).status == 202
        await scene.service.settle()
        [stored] = messages(scene.db_path)
        assert (stored["state"], stored["sip_status"]) == ("failed", status)
        assert stored["segments"] == 1  # billed as an intercept: the text as received
        [content] = reports_of(scene.db_path, "sms_intercept")
        assert content["sms_content"] == long_text and content["sms_cause"] == "delivery_failed"
        [end] = reports_of(scene.db_path, "end")
        assert (end["call_type"], end["sms_result"], end["sip_status"]) == (5, "failed", status)
    finally:
        await scene.service.close()
        await scene.reports.close()


# ------------------------------------------------------------------------------- unsubscribe


async def test_t_unsubscribes_the_recipient(scene: SmsScene, logs: list[Any]) -> None:
    await scene.mode(scene.axb, SmsMode.SMART)
    x = scene.axb_binding.x
    assert (await scene.text(x, B_NO, " t ")).status == 202
    await scene.service.settle()
    assert scene.trunk.sent == []  # the T itself is not delivered
    assert rows(scene.db_path, "SELECT x, number FROM sms_unsubscribes") == [(x, B_NO)]
    [end] = reports_of(scene.db_path, "end")
    assert end["sms_result"] == "unsubscribe" and end["call_type"] == 5
    # A's next smart SMS to B is intercepted and reported, not sent.
    assert (await scene.text(x, A_NO, BODY)).status == 202
    await scene.service.settle()
    assert scene.trunk.sent == []
    last = messages(scene.db_path)[-1]
    assert (last["state"], last["cause"]) == ("intercepted", "unsubscribed")
    [content] = reports_of(scene.db_path, "sms_intercept")
    assert content["sms_cause"] == "unsubscribed" and content["sms_content"] == BODY
    # B → A still works: only B unsubscribed.
    assert (await scene.text(x, B_NO, "还在吗")).status == 202
    await scene.service.settle()
    assert [to for to, _x, _t in scene.trunk.sent] == [A_NO]


# ------------------------------------------------------------------------------- whitelist


async def test_whitelist_delivers_in_intercept_mode(scene: SmsScene, logs: list[Any]) -> None:
    await scene.mode(scene.axb, SmsMode.INTERCEPT)
    a = tenant(scene, "a")
    configured = await scene.service.configure_pool(
        a, scene.axb, keywords=[" 验证码 ", "", "验证码"]
    )
    assert configured.keywords == ("验证码",)
    x = scene.axb_binding.x
    assert (await scene.text(x, A_NO, "您的验证码是 4321")).status == 202
    assert (await scene.text(x, A_NO, BODY)).status == 202
    await scene.service.settle()
    assert [text for _to, _x, text in scene.trunk.sent] == [
        f"{SIGNATURE}您的验证码是 4321{UNSUBSCRIBE_SUFFIX}"
    ]
    assert [m["state"] for m in messages(scene.db_path)] == ["delivered", "intercepted"]
    with pytest.raises(NotFound):  # tenant B cannot configure tenant A's pool
        await scene.service.configure_pool(tenant(scene, "b"), scene.axb, keywords=["x"])
    with pytest.raises(InvalidInput):
        await scene.service.configure_pool(a, scene.axb, keywords=["k" * 65])


# ------------------------------------------------------------------------------- confirm


async def test_confirm_before_send(scene: SmsScene, logs: list[Any]) -> None:
    await scene.mode(scene.axb, SmsMode.SMART)
    a, b = tenant(scene, "a"), tenant(scene, "b")
    await scene.service.configure_pool(a, scene.axb, confirm=True)
    assert (await scene.text(scene.axb_binding.x, A_NO, BODY)).status == 202
    await scene.service.settle()
    assert scene.trunk.sent == []
    [held] = messages(scene.db_path)
    assert held["state"] == "pending"
    assert held["confirm_deadline"] == scene.api.clock.now + CONFIRM_EXPIRY_S
    [content] = reports_of(scene.db_path, "sms_intercept")
    assert content["sms_state"] == "pending" and content["message_id"] == held["id"]
    # Tenant isolation: B sees nothing, cannot confirm or discard.
    assert await scene.service.list_messages(b) == []
    for action in (scene.service.confirm, scene.service.discard, scene.service.get):
        with pytest.raises(NotFound) as error:
            await action(b, held["id"])
        assert error.value.code == SMS_NOT_EXIST
    [listed] = await scene.service.list_messages(a, state="pending")
    assert listed.id == held["id"]
    confirmed = await scene.service.confirm(a, held["id"])
    assert confirmed.state.value == "sending"
    await scene.service.settle()
    assert [to for to, _x, _t in scene.trunk.sent] == [B_NO]
    assert messages(scene.db_path)[0]["state"] == "delivered"
    with pytest.raises(Conflict) as twice:
        await scene.service.confirm(a, held["id"])
    assert twice.value.code == SMS_NOT_PENDING
    # The content went to the tenant once (at hold time), the record once (delivered).
    assert len(reports_of(scene.db_path, "sms_intercept")) == 1
    assert [e["sms_result"] for e in reports_of(scene.db_path, "end")] == ["delivered"]


async def test_held_message_expires_and_is_reported(scene: SmsScene, logs: list[Any]) -> None:
    await scene.mode(scene.axb, SmsMode.SMART)
    a = tenant(scene, "a")
    await scene.service.configure_pool(a, scene.axb, confirm=True)
    await scene.text(scene.axb_binding.x, A_NO, BODY)
    await scene.text(scene.axb_binding.x, B_NO, BODY)
    scene.api.clock.now += CONFIRM_EXPIRY_S - 1
    assert (await scene.service.periodic_pass())["expired"] == 0
    rejected = await scene.service.discard(a, messages(scene.db_path)[1]["id"])
    assert (rejected.state.value, rejected.cause) == ("discarded", "rejected")
    scene.api.clock.now += 1
    assert (await scene.service.periodic_pass())["expired"] == 1
    assert [(m["state"], m["cause"]) for m in messages(scene.db_path)] == [
        ("discarded", "confirm_expired"),
        ("discarded", "rejected"),
    ]
    assert scene.trunk.sent == []
    ends = reports_of(scene.db_path, "end")
    assert sorted(e["sms_result"] for e in ends) == ["discarded", "discarded"]
    assert all(e["call_type"] == 5 for e in ends)
    with pytest.raises(Conflict):  # too late to confirm
        await scene.service.confirm(a, messages(scene.db_path)[0]["id"])


# ------------------------------------------------------------------------------- retention


async def test_retention_deletes_texts_keeps_records(scene: SmsScene, logs: list[Any]) -> None:
    await scene.mode(scene.axb, SmsMode.INTERCEPT)
    await scene.text(scene.axb_binding.x, A_NO, BODY)
    scene.api.clock.now += RETENTION_DAYS * 86_400 - 1
    assert (await scene.service.periodic_pass())["texts_deleted"] == 0
    await scene.text(scene.axb_binding.x, B_NO, "newer")
    scene.api.clock.now += 2
    assert (await scene.service.periodic_pass())["texts_deleted"] == 1
    old, new = messages(scene.db_path)
    assert old["text"] is None and old["text_deleted_at"] == scene.api.clock.now
    assert old["text_chars"] == len(BODY) and old["segments"] == 1  # the charge's basis stays
    assert new["text"] == "newer"
    contents = reports_of(scene.db_path, "sms_intercept")
    assert contents[0]["sms_content"] is None and contents[0]["sms_content_deleted"] is True
    assert contents[1]["sms_content"] == "newer"
    assert len(rows(scene.db_path, "SELECT id FROM call_records")) == 2
    viewed = await scene.service.get(OPERATOR, old["id"])
    assert viewed.text is None


# ------------------------------------------------------------------------------- recovery


async def test_message_left_sending_is_sent_by_the_periodic_job(
    scene: SmsScene, logs: list[Any]
) -> None:
    await scene.mode(scene.axb, SmsMode.SMART)
    gate = asyncio.Event()
    scene.trunk.gate = gate
    await scene.text(scene.axb_binding.x, A_NO, BODY)
    assert messages(scene.db_path)[0]["state"] == "sending"  # durable before the send ends
    await scene.service.close(grace_s=0.01)  # the send is cut: the row stays 'sending'
    assert messages(scene.db_path)[0]["state"] == "sending"
    # A new process: a new service over the same database resends it.
    restarted = SmsService(
        control=scene.api.control, reports=scene.reports, settings=scene.service.settings,
        clock=scene.api.clock,
    )  # fmt: skip
    trunk = FakeTrunk()
    restarted.attach_sender(trunk)
    assert (await restarted.periodic_pass())["resent"] == 1
    await restarted.settle()
    assert [to for to, _x, _t in trunk.sent] == [B_NO]
    assert messages(scene.db_path)[0]["state"] == "delivered"
    assert (await restarted.periodic_pass())["resent"] == 0
    await restarted.close()


async def test_closing_service_answers_503(scene: SmsScene) -> None:
    await scene.service.close()
    verdict = await scene.text(scene.axb_binding.x, A_NO, BODY)
    assert verdict.status == 503
    assert messages(scene.db_path) == []


async def test_list_scoping_and_validation(scene: SmsScene, logs: list[Any]) -> None:
    await scene.mode(scene.axb, SmsMode.INTERCEPT)
    await scene.text(scene.axb_binding.x, A_NO, BODY)
    a, b = tenant(scene, "a"), tenant(scene, "b")
    assert len(await scene.service.list_messages(a)) == 1
    assert len(await scene.service.list_messages(OPERATOR)) == 1
    assert await scene.service.list_messages(a, pool_key=scene.axn) == []
    with pytest.raises(NotFound):
        await scene.service.list_messages(b, pool_key=scene.axb)
    with pytest.raises(InvalidInput):
        await scene.service.list_messages(a, state="lost")
    with pytest.raises(InvalidInput):
        await scene.service.list_messages(a, limit=0)


async def test_held_message_to_a_recipient_who_unsubscribed_is_not_sent(
    scene: SmsScene, logs: list[Any]
) -> None:
    await scene.mode(scene.axb, SmsMode.SMART)
    a = tenant(scene, "a")
    await scene.service.configure_pool(a, scene.axb, confirm=True)
    await scene.text(scene.axb_binding.x, A_NO, BODY)  # held, for B
    await scene.text(scene.axb_binding.x, B_NO, "T")  # B unsubscribes meanwhile
    held = messages(scene.db_path)[0]
    await scene.service.confirm(a, held["id"])
    await scene.service.settle()
    assert scene.trunk.sent == []
    assert (messages(scene.db_path)[0]["state"], messages(scene.db_path)[0]["cause"]) == (
        "intercepted",
        "unsubscribed",
    )
    # Its content was reported when it was held: not a second time.
    assert len(reports_of(scene.db_path, "sms_intercept")) == 1


async def test_a_message_that_cannot_be_stored_is_not_taken(api: Api, logs: list[Any]) -> None:
    scene = await make_sms_scene(api)
    await scene.mode(scene.axb, SmsMode.INTERCEPT)
    await scene.reports.close()
    await scene.api.control.db.close()  # the disk is gone: nothing can be made durable
    verdict = await scene.text(scene.axb_binding.x, A_NO, BODY)
    assert verdict.status == 500 and "not stored" in verdict.reason
    assert any(e["event"] == "sms_not_stored" for e in logs)
    await scene.service.close()
