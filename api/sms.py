"""SMS through X (SPEC §5, issue 8): the service below the SIP layer.

The engine (S2) turns a SIP MESSAGE to X into an :class:`InboundSms`, awaits
:meth:`SmsService.receive` and answers the MESSAGE with the returned :class:`SmsVerdict`; it also
gives the service a :data:`SendSms` (``attach_sender``) that sends a MESSAGE from X over the
trunk. Everything else — the decision by pool SMS mode, storage, reports, unsubscribe, whitelist,
confirm-before-send, retention — is here (skeleton: filled in by the following commits).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from routing.model import PhoneNumber

__all__ = ["InboundSms", "SendSms", "SmsService", "SmsVerdict"]


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


class SmsService:
    """SMS use cases: receive (the engine), confirm/list (REST, CLI), periodic jobs."""

    def attach_sender(self, send: SendSms) -> None:
        """Use ``send`` for smart SMS (the engine's outbound MESSAGE over the trunk)."""
        raise NotImplementedError

    async def receive(self, message: InboundSms) -> SmsVerdict:
        """Decide by the pool's SMS mode, store durably what must be stored, then return
        (202: taken). A smart SMS is sent afterwards by a task this starts."""
        raise NotImplementedError

    async def run_periodic(self) -> None:
        """Until cancelled: resend messages a crash left unsent, expire held messages, delete
        texts past retention."""
        raise NotImplementedError

    async def close(self) -> None:
        """Wait for deliveries in flight (bounded), then stop."""
        raise NotImplementedError
