"""SMS through X (SPEC §5, issue 8): the service below the SIP layer.

The engine turns a SIP MESSAGE to X into an :class:`InboundSms`, awaits
:meth:`SmsService.receive` and answers the MESSAGE with the returned :class:`SmsVerdict`; it
gives the service a :data:`SendSms` (:meth:`SmsService.attach_sender`) that sends a MESSAGE from
X over the trunk, and runs :meth:`SmsService.run_periodic` beside the other jobs.

What happens to a message is decided by ``routing.sms.decide`` (the table, with the reasons);
this module gathers the facts (the pool holding X, ``BindingIndex.resolve`` — the same
resolution as calls —, unsubscribes, the pool's whitelist and confirm flag) and applies the
outcome. Storage (``store.sms``, schema 0008) happens **before** the verdict is returned: a 202
means the message is durable. Each final state writes, in the same transaction:

* a call record (``call_records``, id = the message id) with ``call_type`` 2 (the binding's A
  sent it) or 3 (A received it) when delivered, 5 (SMS intercepted) otherwise — and its ``end``
  report, the end-of-call fields of SPEC §6 plus ``sms_result``, ``sms_cause``, ``sms_chars``,
  ``sms_segments`` and ``sip_status``;
* for a message whose content the tenant has not been sent yet and that is not delivered (or is
  held for confirmation): an ``sms_intercept`` report carrying the content (``sms_content``).

Charges are written by the billing job (``billing.ledger_run``): delivered → ``sms_smart`` per
segment of the text as sent (signature and suffix included); intercepted, failed, discarded →
``sms_intercept`` per segment of the text as received; an unsubscribe reply is free.

The text is tenant data: log lines carry its length and a hash (``routing.sms.text_digest``),
numbers masked; the retention job deletes it after ``[sms] retention_days``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import secrets
import sqlite3
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo

from api.errors import Conflict, InvalidInput, NotFound
from api.principal import Principal, visible_to
from api.reports import end_payload, reports_of
from config.settings import SmsSettings
from engine.logging import get_logger
from routing.index import CALL_TYPE_A_TO_PEER, Intercept, NeedsExtension, Route
from routing.masking import mask_number
from routing.model import BindingType, InterceptCause, PhoneNumber, PoolKey, SubId
from routing.numbers import home_location
from routing.sms import (
    Action,
    Mode,
    Reach,
    SmsFacts,
    decide,
    is_unsubscribe,
    segments,
    smart_text,
    text_digest,
    whitelisted,
)
from store import outbox
from store import sms as sms_store
from store.db import Database, DatabaseClosedError
from store.outbox import NewReport, ReportType
from store.pools import PoolSettings
from store.records import CallRecord, CallType, ReleaseDir, UnconnectedCause, local_time
from store.repositories import SmsMode
from store.sms import MAX_KEYWORD_CHARS, MAX_KEYWORDS, PoolSms, SmsMessage, SmsState

if TYPE_CHECKING:
    from api.control import ControlPlane
    from api.reports import CallReports

__all__ = [
    "CONTENT_REPORT_SUFFIX",
    "SMS_NOT_EXIST",
    "SMS_NOT_PENDING",
    "InboundSms",
    "SendSms",
    "SmsService",
    "SmsVerdict",
    "attach_sms",
    "check_keywords",
    "message_view",
    "sms_of",
]

_log = get_logger("api.sms")

SMS_NOT_EXIST: Final = "SMS_NOT_EXIST"
SMS_NOT_PENDING: Final = "SMS_NOT_PENDING"
#: The ``sms_intercept`` report of a message has the id ``<message id>-content``.
CONTENT_REPORT_SUFFIX: Final = "-content"
#: How long ``close`` waits for smart SMS in flight before cutting them (they are sent again
#: after the restart: the row stays ``sending``).
CLOSE_GRACE_S: Final = 5.0
#: Texts deleted per transaction by the retention job (``store.sms.delete_old_texts``).
RETENTION_BATCH: Final = 1000
#: Seconds between two passes of the periodic job (expiry, retention, resend).
PERIODIC_INTERVAL_S: Final = 5.0

# Q.850 cause of the record (SPEC §6 release_cause): 16 normal clearing for a delivered message
# and an unsubscribe; 21 call rejected for one the platform kept; a failed delivery by the SIP
# status as RFC 3398 maps it (timeout: 102 recovery on timer expiry).
_NORMAL: Final = 16
_REJECTED: Final = 21
_SIP_TO_Q850: Final = {
    403: 21, 404: 1, 408: 102, 410: 22, 480: 18, 484: 28, 486: 17, 487: 127, 488: 65,
    500: 41, 502: 38, 503: 41, 504: 102, 600: 17, 603: 21, 604: 1,
}  # fmt: skip
# The intercept causes of calls, as SMS causes (unconnected_cause follows InterceptCause).
_BLOCKED: Final = frozenset(
    {
        InterceptCause.BLACKLISTED,
        InterceptCause.RESTRICTED,
        InterceptCause.NO_DEFAULT_B,
        InterceptCause.UNVERIFIED,
    }
)
_UNCONNECTED: Final = {
    "no_binding": UnconnectedCause.NO_BINDING,
    "blacklisted": UnconnectedCause.BLACKLIST,
    "restricted": UnconnectedCause.RESTRICTION,
}


@dataclass(frozen=True, slots=True)
class InboundSms:
    """A text message that reached X (a SIP MESSAGE from the trunk, RFC 3428)."""

    x: PhoneNumber  # the dialled middle number (E.164, as routing.numbers gives it)
    sender: PhoneNumber | None  # the From number (None: anonymous / not a number)
    text: str  # the decoded text/plain UTF-8 body
    received_at: float  # UTC epoch seconds
    call_id: str  # the MESSAGE's Call-ID (logs only; never a phone number)


@dataclass(frozen=True, slots=True)
class SmsVerdict:
    """How to answer the MESSAGE: SIP status and a reason phrase for a telecom engineer."""

    status: int  # 202 taken; 403 refused by the pool's settings; 404 no such X / no binding
    reason: str


#: ``send(to, from_x, text)`` → the final SIP status of the outbound MESSAGE; None: timeout or
#: transport failure.
SendSms = Callable[[PhoneNumber, PhoneNumber, str], Awaitable[int | None]]


@dataclass(frozen=True, slots=True)
class _Party:
    """Who the message is about, from the binding index."""

    reach: Reach
    cause: str | None = None  # why not routed (an InterceptCause, lower case)
    sub_id: str | None = None
    out_id: str | None = None
    phone_no: PhoneNumber | None = None  # the binding's A
    peer_no: PhoneNumber | None = None
    recipient: PhoneNumber | None = None  # routed: where a smart SMS goes
    call_type: int | None = None  # routed: 2 A sent it, 3 A receives it


def check_keywords(keywords: Sequence[str]) -> tuple[str, ...]:
    """A pool whitelist as given, trimmed, blanks and duplicates dropped; ``InvalidInput`` for
    too many or too long keywords."""
    kept: list[str] = []
    for raw in keywords:
        if not isinstance(raw, str):
            raise InvalidInput("PARAMETER_ILLEGAL", "keywords are strings")
        keyword = raw.strip()
        if len(keyword) > MAX_KEYWORD_CHARS:
            raise InvalidInput(
                "PARAMETER_ILLEGAL", f"a keyword has at most {MAX_KEYWORD_CHARS} characters"
            )
        if keyword and keyword not in kept:
            kept.append(keyword)
    if len(kept) > MAX_KEYWORDS:
        raise InvalidInput("PARAMETER_ILLEGAL", f"at most {MAX_KEYWORDS} keywords per pool")
    return tuple(kept)


def message_view(message: SmsMessage, zone: ZoneInfo) -> dict[str, object]:
    """A stored message as the API shows it (times local ``YYYY-MM-DD HH:MM:SS``)."""
    return {
        "id": message.id,
        "pool_key": message.pool_key,
        "sub_id": message.sub_id,
        "out_id": message.out_id,
        "secret_no": message.x,
        "sender_no": message.sender,
        "receiver_no": message.recipient,
        "state": str(message.state),
        "cause": message.cause,
        "content": message.text,
        "content_deleted": message.text_deleted_at is not None,
        "chars": message.text_chars,
        "segments": message.segments,
        "received_time": local_time(message.received_at, zone),
        "confirm_deadline": local_time(message.confirm_deadline, zone),
        "confirmed_time": local_time(message.confirmed_at, zone),
        "sent_time": local_time(message.sent_at, zone),
        "sip_status": message.sip_status,
    }


class SmsService:
    """SMS use cases: receive (the engine), confirm/discard/list (REST, CLI), periodic jobs."""

    def __init__(
        self,
        *,
        control: ControlPlane,
        reports: CallReports,
        settings: SmsSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``control``: its database, binding index (as calls resolve), pools, zone;
        ``reports``: the outbox's listeners are told of SMS reports; ``clock``: UTC epoch s."""
        self.control = control
        self.reports = reports
        self.settings = settings
        self.clock = clock
        self._send: SendSms | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._closing = False

    @property
    def db(self) -> Database:
        """The control plane's database."""
        return self.control.db

    def attach_sender(self, send: SendSms) -> None:
        """Use ``send`` for smart SMS (the engine's outbound MESSAGE over the trunk)."""
        self._send = send

    # ------------------------------------------------------------------------ receive

    async def receive(self, message: InboundSms) -> SmsVerdict:
        """Decide by the pool's SMS mode, store durably what must be stored, then return
        (202: taken). A smart SMS is sent afterwards by a task this starts."""
        if self._closing:
            return SmsVerdict(503, "Service shutting down")
        try:
            return await self._receive(message)
        except Exception as error:
            # Not durable, so not taken: the sender's SMSC tries again later. (Logged by type:
            # an exception's text could quote the message.)
            _log.error(
                "sms_not_stored",
                sip_call_id=message.call_id,
                x=mask_number(message.x),
                chars=len(message.text),
                text_sha256=text_digest(message.text),
                error=type(error).__name__,
            )
            return SmsVerdict(500, "Server Internal Error (message not stored)")

    async def _receive(self, message: InboundSms) -> SmsVerdict:
        pool = await sms_store.pool_of_number(self.db, message.x)
        party = self._party(message, pool)
        unsubscribed = False
        if pool is not None and party.recipient is not None:
            recipient = party.recipient
            unsubscribed = await self.db.read(
                lambda conn: sms_store.is_unsubscribed_in(conn, message.x, recipient)
            )
        facts = SmsFacts(
            in_pool=pool is not None,
            pool_is_95=pool is not None and pool.type is BindingType.AXN95,
            mode=Mode(str(pool.mode)) if pool is not None else Mode.OFF,
            reach=party.reach,
            unsubscribe=message.sender is not None and is_unsubscribe(message.text),
            recipient_unsubscribed=unsubscribed,
            whitelisted=pool is not None and whitelisted(message.text, pool.keywords),
            confirm=pool is not None and pool.confirm,
        )
        outcome = decide(facts)
        log = {
            "sip_call_id": message.call_id,
            "x": mask_number(message.x),
            "chars": len(message.text),
            "text_sha256": text_digest(message.text),
            "cause": outcome.cause,
        }
        if outcome.action is Action.REFUSE or pool is None:
            _log.info("sms_refused", status=outcome.status, **log)
            return SmsVerdict(outcome.status, outcome.reason)
        cause = party.cause if outcome.cause == "blocked" and party.cause else outcome.cause
        stored = self._new_message(message, pool, party, cause)
        await self._store(stored, outcome.action)
        _log.info("sms_taken", message_id=stored.id, action=str(outcome.action), **log)
        return SmsVerdict(outcome.status, outcome.reason)

    async def _store(self, stored: SmsMessage, action: Action) -> None:
        """Write ``stored`` as ``action`` wants it (with its reports), durably."""
        if action is Action.UNSUBSCRIBE:
            await self._write(self._unsubscribe_op(stored))
        elif action is Action.INTERCEPT:
            await self._write(self._finish_op(stored, SmsState.INTERCEPTED, at=stored.received_at))
        elif action is Action.HOLD:
            held = dataclasses.replace(
                stored,
                state=SmsState.PENDING,
                confirm_deadline=stored.received_at + self.settings.confirm_expiry_s,
            )
            await self._write(self._hold_op(held))
        else:
            sending = dataclasses.replace(stored, state=SmsState.SENDING)
            await self.db.write(lambda conn: sms_store.insert_message_in(conn, sending))
            self._start_delivery(sending)

    def _party(self, message: InboundSms, pool: PoolSms | None) -> _Party:
        """What the binding index says about sender → X (the resolution calls get)."""
        if pool is None:
            return _Party(Reach.NO_BINDING, "no_binding")
        now = message.received_at
        if not self.control.inventory.is_bindable(message.x, now):
            return _Party(Reach.BLOCKED, InterceptCause.UNVERIFIED.value.lower())
        resolution = self.control.index.resolve(message.x, message.sender, now=now)
        if isinstance(resolution, Route):
            binding = resolution.binding
            a_sent = resolution.call_type == CALL_TYPE_A_TO_PEER
            return _Party(
                Reach.ROUTED,
                sub_id=binding.sub_id,
                out_id=binding.out_id,
                phone_no=resolution.phone_no,
                peer_no=resolution.peer_no,
                recipient=resolution.callee,
                call_type=int(CallType.SMS_SENT if a_sent else CallType.SMS_RECEIVED),
            )
        if isinstance(resolution, NeedsExtension):
            # An N texting an AXN-extension X: no way to key an extension in an SMS.
            return _Party(Reach.BLOCKED, "needs_extension", peer_no=message.sender)
        assert isinstance(resolution, Intercept)
        found = resolution.binding
        cause = resolution.cause.value.lower()
        if found is None or resolution.cause not in _BLOCKED:
            return _Party(Reach.NO_BINDING, "no_binding", peer_no=message.sender)
        a_sent = message.sender == found.a
        return _Party(
            Reach.BLOCKED,
            cause,
            sub_id=found.sub_id,
            out_id=found.out_id,
            phone_no=found.a,
            peer_no=found.b if a_sent else message.sender,
        )

    def _new_message(
        self, message: InboundSms, pool: PoolSms, party: _Party, cause: str
    ) -> SmsMessage:
        text = message.text
        return SmsMessage(
            id=secrets.token_hex(16),
            sip_call_id=message.call_id,
            pool_key=pool.pool_key,
            tenant_id=pool.tenant_id,
            x=message.x,
            state=SmsState.INTERCEPTED,
            cause=cause,
            text=text,
            text_chars=len(text),
            text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            segments=segments(text),
            received_at=message.received_at,
            sub_id=party.sub_id,
            out_id=party.out_id,
            sender=message.sender,
            recipient=party.recipient,
            phone_no=party.phone_no,
            peer_no=party.peer_no,
            call_type=party.call_type,
        )

    # ------------------------------------------------------------------------ transactions

    async def _write(self, op: Callable[[sqlite3.Connection], set[str | None]]) -> None:
        tenants = await self.db.write(op)
        self.reports.notify_written(tenants)

    def _reports_in(
        self, conn: sqlite3.Connection, message: SmsMessage, *, content: bool, record: bool
    ) -> set[str | None]:
        """Queue the message's content report and/or its record + end report."""
        zone = self.control.zone
        now = self.clock()
        queued: list[NewReport] = []
        if content:
            report_id = message.id + CONTENT_REPORT_SUFFIX
            queued.append(
                NewReport(
                    id=report_id,
                    type=ReportType.SMS_INTERCEPT,
                    payload=_content_payload(message, report_id, zone),
                    call_id=message.id,
                    pool_key=message.pool_key,
                    secret_no=message.x,
                )
            )
        if record:
            call = _call_record(message)
            outbox.insert_call_record_row(conn, call)
            payload = end_payload(call, zone)
            payload.update(
                sms_result=str(message.state),
                sms_cause=message.cause,
                sms_chars=message.text_chars,
                sms_segments=message.segments,
                sip_status=message.sip_status,
            )
            queued.append(
                NewReport(
                    id=call.id,
                    type=ReportType.END,
                    payload=payload,
                    call_id=message.id,
                    pool_key=message.pool_key,
                    secret_no=message.x,
                )
            )
        return outbox.insert_reports(conn, queued, now=now)

    def _unsubscribe_op(
        self, message: SmsMessage
    ) -> Callable[[sqlite3.Connection], set[str | None]]:
        done = dataclasses.replace(
            message, state=SmsState.UNSUBSCRIBE, finished_at=message.received_at
        )

        def op(conn: sqlite3.Connection) -> set[str | None]:
            assert done.sender is not None
            sms_store.insert_message_in(conn, done)
            sms_store.add_unsubscribe_in(
                conn,
                x=done.x,
                number=done.sender,
                pool_key=done.pool_key,
                message_id=done.id,
                now=done.received_at,
            )
            return self._reports_in(conn, done, content=False, record=True)

        return op

    def _hold_op(self, message: SmsMessage) -> Callable[[sqlite3.Connection], set[str | None]]:
        held = dataclasses.replace(message, content_reported=True)

        def op(conn: sqlite3.Connection) -> set[str | None]:
            sms_store.insert_message_in(conn, held)
            return self._reports_in(conn, held, content=True, record=False)

        return op

    def _finish_op(
        self,
        message: SmsMessage,
        state: SmsState,
        *,
        at: float,
        expect: SmsState | None = None,
        **changes: object,
    ) -> Callable[[sqlite3.Connection], set[str | None]]:
        """Move ``message`` to the final ``state`` (insert it when ``expect`` is None, else
        update it if it is still in ``expect``: ``Conflict`` otherwise), with its reports."""

        def op(conn: sqlite3.Connection) -> set[str | None]:
            current = message
            if expect is not None:
                stored = sms_store.message_in(conn, message.id)
                if stored is None or stored.state is not expect:
                    held = expect is SmsState.PENDING
                    raise Conflict(
                        SMS_NOT_PENDING,
                        f"SMS {message.id!r} is not "
                        + ("held for confirmation" if held else f"in state {expect}"),
                    )
                current = stored
            # The tenant gets the content once, unless the message reached its recipient.
            content = state is not SmsState.DELIVERED and not current.content_reported
            done = dataclasses.replace(
                current,
                state=state,
                finished_at=at,
                content_reported=current.content_reported or content,
                **changes,  # type: ignore[arg-type]
            )
            if expect is None:
                sms_store.insert_message_in(conn, done)
            else:
                sms_store.update_message_in(conn, done)
            return self._reports_in(conn, done, content=content, record=True)

        return op

    # ------------------------------------------------------------------------ delivery

    def _start_delivery(self, message: SmsMessage) -> None:
        if self._send is None:
            # No trunk sender yet: the periodic job sends it once one is attached.
            _log.warning("sms_no_sender", message_id=message.id)
            return
        if message.id in self._inflight or self._closing:
            return
        task = asyncio.get_running_loop().create_task(
            self._deliver(message), name=f"maskline-sms-{message.id}"
        )
        self._inflight[message.id] = task
        task.add_done_callback(lambda _t: self._inflight.pop(message.id, None))

    async def _deliver(self, message: SmsMessage) -> None:
        send = self._send
        assert send is not None and message.recipient is not None and message.text is not None
        recipient = message.recipient
        # A message held for confirmation (or left by a crash) may reach its recipient after
        # they replied T: checked again right before sending.
        if await self.db.read(
            lambda conn: sms_store.is_unsubscribed_in(conn, message.x, recipient)
        ):
            await self._write(
                self._finish_op(
                    message,
                    SmsState.INTERCEPTED,
                    at=self.clock(),
                    expect=SmsState.SENDING,
                    cause="unsubscribed",
                )
            )
            _log.info("sms_not_sent_unsubscribed", message_id=message.id)
            return
        sent_text = smart_text(message.text)
        try:
            status = await send(message.recipient, message.x, sent_text)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("sms_send_error", message_id=message.id)
            status = None
        now = self.clock()
        delivered = status is not None and 200 <= status < 300
        state = SmsState.DELIVERED if delivered else SmsState.FAILED
        try:
            await self._write(
                self._finish_op(
                    message,
                    state,
                    at=now,
                    expect=SmsState.SENDING,
                    sent_at=now,
                    sip_status=status,
                    cause=message.cause if delivered else "delivery_failed",
                    # Delivered: billed as sent (signature and suffix); failed: as an intercept.
                    segments=segments(sent_text) if delivered else message.segments,
                )
            )
        except Exception:
            _log.exception("sms_result_not_written", message_id=message.id)
            return
        _log.info(
            "sms_delivered" if delivered else "sms_delivery_failed",
            message_id=message.id,
            sip_status=status,
            chars=len(sent_text),
            text_sha256=text_digest(sent_text),
        )

    # ------------------------------------------------------------------------ tenant API

    async def _visible(self, principal: Principal, message_id: str) -> SmsMessage:
        message = await sms_store.get_message(self.db, message_id)
        if message is None or not visible_to(message.tenant_id, principal.tenant_id):
            raise NotFound(SMS_NOT_EXIST, f"no SMS {message_id!r}")
        return message

    async def get(self, principal: Principal, message_id: str) -> SmsMessage:
        """One message (another tenant's answers as an unknown id: ``SMS_NOT_EXIST``)."""
        return await self._visible(principal, message_id)

    async def list_messages(
        self,
        principal: Principal,
        *,
        pool_key: str | None = None,
        state: str | None = None,
        limit: int = 100,
    ) -> list[SmsMessage]:
        """Messages of the caller's pools (or of ``pool_key``), newest first."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("PARAMETER_ILLEGAL", "limit must be 1..1000")
        try:
            wanted = None if state is None else SmsState(state)
        except ValueError:
            known = ", ".join(s.value for s in SmsState)
            raise InvalidInput("PARAMETER_ILLEGAL", f"state is one of {known}") from None
        keys: list[PoolKey] | None
        if pool_key is not None:
            keys = [(await self.control.get_pool(pool_key, tenant=principal.tenant_id)).pool_key]
        elif principal.is_operator:
            keys = None
        else:
            keys = [p.pool_key for p in await self.control.list_pools(tenant=principal.tenant_id)]
        return await sms_store.list_messages(self.db, pool_keys=keys, state=wanted, limit=limit)

    async def confirm(self, principal: Principal, message_id: str) -> SmsMessage:
        """Send a held message now (``SMS_NOT_PENDING`` 409 unless it is held)."""
        message = await self._visible(principal, message_id)
        now = self.clock()

        def op(conn: sqlite3.Connection) -> SmsMessage:
            stored = sms_store.message_in(conn, message.id)
            if stored is None or stored.state is not SmsState.PENDING:
                raise Conflict(SMS_NOT_PENDING, f"SMS {message_id!r} is not held for confirmation")
            sending = dataclasses.replace(stored, state=SmsState.SENDING, confirmed_at=now)
            sms_store.update_message_in(conn, sending)
            return sending

        sending = await self.db.write(op)
        _log.info("sms_confirmed", message_id=message.id)
        self._start_delivery(sending)
        return sending

    async def discard(self, principal: Principal, message_id: str) -> SmsMessage:
        """Drop a held message (reported, billed as an intercept)."""
        message = await self._visible(principal, message_id)
        await self._discard(message, cause="rejected")
        stored = await sms_store.get_message(self.db, message.id)
        assert stored is not None
        return stored

    async def _discard(self, message: SmsMessage, *, cause: str) -> None:
        await self._write(
            self._finish_op(
                message, SmsState.DISCARDED, at=self.clock(), expect=SmsState.PENDING, cause=cause
            )
        )
        _log.info("sms_discarded", message_id=message.id, cause=cause)

    async def pool_settings(self, principal: Principal, pool_key: str) -> PoolSms:
        """The pool's SMS mode, whitelist and confirm flag."""
        pool = await self.control.get_pool(pool_key, tenant=principal.tenant_id)
        found = await sms_store.get_pool_sms(self.db, pool.pool_key)
        assert found is not None
        return found

    async def configure_pool(
        self,
        principal: Principal,
        pool_key: str,
        *,
        mode: SmsMode | None = None,
        keywords: Sequence[str] | None = None,
        confirm: bool | None = None,
    ) -> PoolSms:
        """Change the pool's SMS mode (through ``ControlPlane.configure_pool``, which refuses
        SMS on 95AXN pools), whitelist and/or confirm flag; None: unchanged. Everything is
        checked before anything is written."""
        pool = await self.control.get_pool(pool_key, tenant=principal.tenant_id)
        checked = None if keywords is None else check_keywords(keywords)
        if pool.type is BindingType.AXN95 and (
            checked or confirm or mode not in (None, SmsMode.OFF)
        ):
            raise InvalidInput("PARAMETER_ILLEGAL", "95AXN pools carry no SMS")
        if mode is not None:
            await self.control.configure_pool(
                pool.pool_key, PoolSettings(sms_mode=mode), tenant=principal.tenant_id
            )
        await sms_store.set_pool_sms(self.db, pool.pool_key, keywords=checked, confirm=confirm)
        _log.info("pool_sms_configured", pool_key=pool.pool_key)
        return await self.pool_settings(principal, pool_key)

    # ------------------------------------------------------------------------ periodic

    async def periodic_pass(self) -> dict[str, int]:
        """One pass: send messages left ``sending`` (a crash, or no sender then), discard held
        messages past their deadline, delete texts past retention. Returns what it did."""
        now = self.clock()
        resent = 0
        if self._send is not None:
            for message in await sms_store.sending_messages(self.db):
                if message.id not in self._inflight:
                    self._start_delivery(message)
                    resent += 1
        expired = 0
        for message in await sms_store.due_pending(self.db, now):
            with contextlib.suppress(Conflict):  # confirmed meanwhile
                await self._discard(message, cause="confirm_expired")
                expired += 1
        cutoff = now - self.settings.retention_days * 86_400
        deleted = 0
        while True:  # in batches: one transaction stays short however much is due
            batch = await sms_store.delete_old_texts(
                self.db,
                before=cutoff,
                now=now,
                report_ids=(CONTENT_REPORT_SUFFIX,),
                limit=RETENTION_BATCH,
            )
            deleted += batch
            if batch < RETENTION_BATCH:
                break
        if resent or expired or deleted:
            _log.info("sms_periodic", resent=resent, expired=expired, texts_deleted=deleted)
        return {"resent": resent, "expired": expired, "texts_deleted": deleted}

    async def run_periodic(self, interval_s: float = PERIODIC_INTERVAL_S) -> None:
        """:meth:`periodic_pass` now and every ``interval_s`` until cancelled (a failing pass
        is logged and retried at the next one)."""
        while True:
            try:
                await self.periodic_pass()
            except DatabaseClosedError:
                return
            except Exception:
                _log.exception("sms_periodic_failed")
            await asyncio.sleep(interval_s)

    async def close(self, grace_s: float = CLOSE_GRACE_S) -> None:
        """Refuse new messages (503), wait up to ``grace_s`` for smart SMS in flight, then cut
        them (they stay ``sending`` and go out after the restart)."""
        self._closing = True
        tasks = list(self._inflight.values())
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def settle(self) -> None:
        """Wait for every delivery in flight (tests)."""
        while self._inflight:
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)


def _call_record(message: SmsMessage) -> CallRecord:
    """The SPEC §6 record of a message in a final state."""
    assert message.finished_at is not None
    delivered = message.state is SmsState.DELIVERED
    if delivered:
        assert message.call_type is not None
        call_type = CallType(message.call_type)
        cause = _NORMAL
        unconnected = UnconnectedCause.NORMAL
    else:
        call_type = CallType.SMS_INTERCEPTED
        if message.state is SmsState.UNSUBSCRIBE:
            cause = _NORMAL
        elif message.state is SmsState.FAILED:
            cause = _SIP_TO_Q850.get(message.sip_status or 408, 31)
        else:
            cause = _REJECTED
        unconnected = _UNCONNECTED.get(message.cause, UnconnectedCause.OTHER)
        if message.state is SmsState.UNSUBSCRIBE:
            unconnected = UnconnectedCause.NORMAL
    return CallRecord(
        id=message.id,
        call_id=message.id,
        secret_no=message.x,
        call_type=call_type,
        call_time=message.received_at,
        release_time=message.finished_at,
        release_dir=ReleaseDir.PLATFORM,
        release_cause=cause,
        unconnected_cause=unconnected,
        pool_key=message.pool_key,
        sub_id=None if message.sub_id is None else SubId(message.sub_id),
        phone_no=message.phone_no,
        peer_no=message.peer_no,
        called_display_no=message.x if delivered else None,
        city=home_location(message.x).city,
        call_out_time=message.confirmed_at or (message.sent_at if message.sent_at else None),
        start_time=message.sent_at if delivered else None,
        out_id=message.out_id,
    )


def _content_payload(message: SmsMessage, report_id: str, zone: ZoneInfo) -> dict[str, object]:
    """The ``sms_intercept`` report: the message with its content."""
    return {
        "id": report_id,
        "report_type": str(ReportType.SMS_INTERCEPT),
        "message_id": message.id,
        "pool_key": message.pool_key,
        "sub_id": message.sub_id,
        "call_id": message.id,
        "phone_no": message.phone_no,
        "secret_no": message.x,
        "peer_no": message.peer_no,
        "sender_no": message.sender,
        "receiver_no": message.recipient,
        "call_type": int(CallType.SMS_INTERCEPTED),
        "sms_state": str(message.state),
        "sms_cause": message.cause,
        "sms_content": message.text,
        "sms_chars": message.text_chars,
        "sms_segments": message.segments,
        "send_time": local_time(message.received_at, zone),
        "confirm_deadline": local_time(message.confirm_deadline, zone),
        "out_id": message.out_id,
    }


# ------------------------------------------------------------------------------- wiring

_SERVICES: weakref.WeakKeyDictionary[ControlPlane, SmsService] = weakref.WeakKeyDictionary()


def attach_sms(
    control: ControlPlane,
    *,
    reports: CallReports,
    settings: SmsSettings,
    clock: Callable[[], float] = time.time,
) -> SmsService:
    """Make the SMS service of ``control`` (the server: once, with ``[sms]``); the REST routes
    find it through :func:`sms_of`."""
    service = SmsService(control=control, reports=reports, settings=settings, clock=clock)
    _SERVICES[control] = service
    return service


def sms_of(control: ControlPlane) -> SmsService:
    """The SMS service of ``control`` (made with the default ``[sms]`` settings when none was
    attached: the tenant API works, nothing is sent until a sender is attached)."""
    service = _SERVICES.get(control)
    if service is None:
        service = attach_sms(
            control, reports=reports_of(control), settings=SmsSettings(), clock=control.clock
        )
    return service
