"""SMS over SIP (RFC 3428 MESSAGE, SPEC §5): text messages to X in, smart SMS out over the trunk.

**Inbound.** A MESSAGE outside any dialog from a configured trunk to an X number is read here —
its text (``text/plain``, UTF-8), X from the Request-URI, the sender from P-Asserted-Identity or
From, with the B2BUA's number reading — and handed to the SMS service (``api.sms``), whose
verdict (202 taken, 403/404 refused…) is the answer. The service writes durably before it
answers (a few ms): meanwhile the endpoint's non-INVITE server transaction absorbs the sender's
retransmissions. A service that fails is answered 500, one that takes longer than
``answer_timeout_s`` is answered 500 too (its write still finishes): the transaction is never
left without a final response, which would hold it until the sender's Timer F.

What the UAS checks of ``sip.uas`` already refused: other bodies than ``text/plain`` (415 with
Accept, e.g. ``application/vnd.3gpp.sms``). Refused here: another charset than UTF-8 (415),
bytes that are not UTF-8 (400), a source outside every trunk (403), a Request-URI that is not a
number (404).

**Outbound.** :meth:`SmsGateway.send` sends a new MESSAGE from X to a recipient over the trunk —
the trunk the inbound message being handled came in through (as the B2BUA sends a call's
outbound INVITE back over its inbound trunk), else the first configured trunk — in its number
format, built from scratch: nothing of the original sender reaches the recipient. It resolves
with the final status, or None when the transaction timed out or the transport failed. A 401/407
is answered once with the trunk's Digest credentials, as for INVITEs.

Message text is tenant data: it is never logged, only its length and a keyed hash (stable
within one process, so a message's lines can be correlated; a short text like ``T`` cannot be
recovered from it).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from api.sms import InboundSms, SmsVerdict
from config import Settings, TrunkSettings
from engine.b2bua import caller_number, uri_user
from engine.logging import get_logger
from routing.model import PhoneNumber
from routing.numbers import for_trunk, from_sip_user
from routing.sms import text_digest
from sip.auth import answer_challenge
from sip.builders import new_call_id, new_tag
from sip.endpoint import Endpoint
from sip.errors import SipUsageError
from sip.events import (
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
    TransportFailed,
    TxKey,
)
from sip.headers import HeaderList
from sip.message import Request, Response
from sip.transport import Peer

_log = get_logger("engine.sms")

TEXT_PLAIN = "text/plain"
# RFC 3428 has no charset default of its own; RFC 2046 says US-ASCII, a subset of UTF-8.
_UTF8_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii"})
OUTBOUND_CONTENT_TYPE = "text/plain;charset=UTF-8"
# Longer than a durable write ever takes, well inside the sender's Timer F (64*T1 = 32 s).
DEFAULT_ANSWER_TIMEOUT_S = 10.0

# The trunk of the inbound MESSAGE whose handling is under way: a smart SMS sent while the
# service handles it (in its task, or a task it starts) goes back over that trunk.
_inbound_trunk: contextvars.ContextVar[TrunkSettings | None] = contextvars.ContextVar(
    "sms_inbound_trunk", default=None
)

ReceiveSms = Callable[[InboundSms], Awaitable[SmsVerdict]]


# ---------------------------------------------------------------------------- pure reading


@dataclass(frozen=True, slots=True)
class MessageRefused:
    """The final response a MESSAGE gets without reaching the SMS service."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class MessageRead:
    """What an inbound MESSAGE says: X (from the Request-URI), the sender, the text."""

    x: PhoneNumber
    sender: PhoneNumber | None
    text: str


def read_text(request: Request) -> str | MessageRefused:
    """The MESSAGE body as text: ``text/plain`` in UTF-8 (or no charset, or US-ASCII).

    The UAS checks have refused other media types; an empty body is an empty text.
    """
    body = request.body
    if not body:
        return ""
    charset = _charset(request.headers.get("Content-Type") or "")
    if charset is not None and charset not in _UTF8_CHARSETS:
        return MessageRefused(415, f"Unsupported Media Type (charset {charset} not taken; UTF-8)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return MessageRefused(400, "Bad Request (body is not valid UTF-8)")
    if charset == "us-ascii" and not text.isascii():
        return MessageRefused(400, "Bad Request (body is not US-ASCII as declared)")
    return text.removeprefix("\ufeff")  # a byte-order mark is not part of the message


def _charset(content_type: str) -> str | None:
    """The charset parameter of a Content-Type value, lower-case and unquoted; None if absent."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def read_message(request: Request) -> MessageRead | MessageRefused:
    """X, sender and text of an inbound MESSAGE, or the response refusing it."""
    x = from_sip_user(uri_user(request.uri))
    if x is None:
        return MessageRefused(404, "Not Found (not a number)")
    text = read_text(request)
    if isinstance(text, MessageRefused):
        return text
    return MessageRead(x=x, sender=caller_number(request), text=text)


def trunk_for(trunks: tuple[TrunkSettings, ...], host: str) -> TrunkSettings | None:
    """The first trunk whose ACL lets ``host`` in (the B2BUA's rule for INVITEs)."""
    for trunk in trunks:
        if trunk.allows(host):
            return trunk
    return None


def build_outbound_message(
    *, to: PhoneNumber, from_x: PhoneNumber, text: str, trunk: TrunkSettings, local: str
) -> Request:
    """A new MESSAGE from X to ``to`` over ``trunk``, in its number format (``local`` is our
    host:port). Built from scratch; RFC 3428 §4: no Contact (a MESSAGE starts no dialog)."""
    fmt = str(trunk.number_format)
    x_user = for_trunk(from_x, fmt)
    to_user = for_trunk(to, fmt)
    headers = HeaderList()
    headers.add("Max-Forwards", "70")
    headers.add("From", f"<sip:{x_user}@{local}>;tag={new_tag()}")
    headers.add("To", f"<sip:{to_user}@{trunk.outbound.host}>")
    headers.add("Call-ID", new_call_id(local.rsplit(":", 1)[0]))
    headers.add("CSeq", "1 MESSAGE")
    headers.add("P-Asserted-Identity", f"<sip:{x_user}@{local}>")
    headers.add("Content-Type", OUTBOUND_CONTENT_TYPE)
    return Request("MESSAGE", f"sip:{to_user}@{trunk.outbound}", headers, text.encode("utf-8"))


# ----------------------------------------------------------------------------------- I/O


@dataclass(slots=True)
class _Outgoing:
    """A MESSAGE we sent, awaiting its final response."""

    future: asyncio.Future[int | None]
    request: Request
    peer: Peer
    trunk: TrunkSettings
    authenticated: bool = False


class SmsGateway:
    """MESSAGE in (to the SMS service) and out (smart SMS); one instance per engine."""

    def __init__(
        self,
        *,
        endpoint: Endpoint,
        settings: Settings,
        flush: Callable[[], None],
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        receive: ReceiveSms | None = None,
        answer_timeout_s: float = DEFAULT_ANSWER_TIMEOUT_S,
    ) -> None:
        """``clock``: the loop's monotonic time for SIP; ``wall_clock``: epoch seconds for the
        message's ``received_at``. ``receive``: the SMS service (``SmsService.receive``); until
        one is attached (:meth:`attach`) every MESSAGE is answered 480."""
        self._endpoint = endpoint
        self._trunks = settings.trunks
        self._local = f"{settings.sip.listen_host}:{settings.sip.listen_port}"
        self._flush = flush
        self._clock = clock
        self._wall_clock = wall_clock
        self._receive = receive
        self.answer_timeout_s = answer_timeout_s
        self._outgoing: dict[TxKey, _Outgoing] = {}
        # The client transactions of our MESSAGEs, for the signalling's dispatch of every
        # response: a lookup in this (the same dict) costs no interpreted call, ``owns`` one.
        self.sending: Mapping[TxKey, object] = self._outgoing
        self._answering: dict[TxKey, asyncio.Task[None]] = {}
        self._work: set[asyncio.Task[SmsVerdict]] = set()  # service calls under way

    def attach(self, receive: ReceiveSms) -> None:
        """Hand inbound messages to ``receive`` from now on."""
        self._receive = receive

    # -- inbound --------------------------------------------------------------------------

    def on_message(self, event: RequestReceived) -> None:
        """A MESSAGE outside any dialog: refuse it here or hand it to the service."""
        request = event.request
        trunk = trunk_for(self._trunks, event.peer.host)
        if trunk is None:
            _log.info("sms_not_taken", status=403, why="source not in any trunk",
                      source=event.peer.host)  # fmt: skip
            self._answer(event.tx_key, 403, "Forbidden (source not in any trunk)")
            return
        read = read_message(request)
        if isinstance(read, MessageRefused):
            _log.info("sms_not_taken", status=read.status, why=read.reason, trunk=trunk.name,
                      sip_call_id=request.call_id)  # fmt: skip
            self._answer(event.tx_key, read.status, read.reason)
            return
        receive = self._receive
        if receive is None:
            self._answer(event.tx_key, 480, "Temporarily Unavailable (no SMS service)")
            return
        message = InboundSms(
            x=read.x,
            sender=read.sender,
            text=read.text,
            received_at=self._wall_clock(),
            call_id=request.call_id,
        )
        task = asyncio.ensure_future(self._hand_over(event.tx_key, message, trunk, receive))
        self._answering[event.tx_key] = task
        task.add_done_callback(lambda _: self._answering.pop(event.tx_key, None))

    async def _hand_over(
        self, tx_key: TxKey, message: InboundSms, trunk: TrunkSettings, receive: ReceiveSms
    ) -> None:
        """Await the service's verdict (bounded) and answer with it."""
        _inbound_trunk.set(trunk)  # this task's context: sends made while handling it
        fields = {
            "sip_call_id": message.call_id,
            "x": message.x,
            "sender": message.sender,
            "chars": len(message.text),
            "text_digest": text_digest(message.text),
        }
        work: asyncio.Task[SmsVerdict] = asyncio.ensure_future(receive(message))
        self._keep(work)
        try:
            # Shielded: at the timeout the sender is answered, the service's write goes on.
            verdict = await asyncio.wait_for(asyncio.shield(work), self.answer_timeout_s)
        except TimeoutError:
            _log.error("sms_service_slow", timeout_s=self.answer_timeout_s, **fields)
            self._answer(tx_key, 500, "Server Internal Error (SMS service did not answer)")
            return
        except asyncio.CancelledError:
            self._answer(tx_key, 503, "Service Unavailable (shutting down)")
            raise
        except Exception as error:  # the service's fault: answered, logged without the text
            _log.error("sms_service_failed", error=type(error).__name__, **fields)
            self._answer(tx_key, 500, "Server Internal Error (SMS service failed)")
            return
        if not 200 <= verdict.status < 700:
            _log.error("sms_service_bad_verdict", status=verdict.status, **fields)
            self._answer(tx_key, 500, "Server Internal Error (SMS service verdict)")
            return
        _log.info("sms_received", status=verdict.status, verdict=verdict.reason, **fields)
        self._answer(tx_key, verdict.status, verdict.reason)

    def _answer(self, tx_key: TxKey, status: int, reason: str) -> None:
        # RFC 3428 §7: a 2xx carries no body and no Contact (make_response adds neither).
        try:
            response = self._endpoint.response_for(tx_key, status, reason)
            self._endpoint.send_response(tx_key, response, self._clock())
        except (KeyError, SipUsageError):
            return  # the transaction is gone (it cannot be, short of a bug): nothing to answer
        self._flush()

    # -- outbound -------------------------------------------------------------------------

    def owns(self, tx_key: TxKey | None) -> bool:
        """True for a client transaction of a MESSAGE this gateway sent."""
        return tx_key is not None and tx_key in self._outgoing

    async def send(self, to: PhoneNumber, from_x: PhoneNumber, text: str) -> int | None:
        """Send ``text`` from X to ``to`` over the trunk; the final status, None on a timeout
        or transport failure (or when no trunk is configured)."""
        trunk = _inbound_trunk.get() or (self._trunks[0] if self._trunks else None)
        fields = {"x": from_x, "to": to, "chars": len(text), "text_digest": text_digest(text)}
        if trunk is None:
            _log.error("sms_not_sent", why="no trunk configured", **fields)
            return None
        request = build_outbound_message(
            to=to, from_x=from_x, text=text, trunk=trunk, local=self._local
        )
        # RFC 3428 §10 asks UDP MESSAGEs to stay under 1300 bytes unless the path MTU is known;
        # a long smart SMS (about 250 Chinese characters and up) still goes as one datagram —
        # a carrier trunk is a known path, and one with long texts is best set to TCP.
        peer = Peer(trunk.transport.upper(), trunk.outbound.host, trunk.outbound.port)
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        outgoing = _Outgoing(future=future, request=request, peer=peer, trunk=trunk)
        tx_key = self._endpoint.send_request(request, peer, self._clock())
        self._outgoing[tx_key] = outgoing
        self._flush()
        try:
            status = await future
        finally:
            for key in [k for k, v in self._outgoing.items() if v is outgoing]:
                del self._outgoing[key]
        _log.info("sms_sent", status=status, trunk=trunk.name, **fields)
        return status

    def on_response(self, event: ResponseReceived) -> None:
        """A response to a MESSAGE we sent."""
        tx_key = event.tx_key
        outgoing = self._outgoing.get(tx_key) if tx_key is not None else None
        if outgoing is None or tx_key is None:
            return
        status = event.response.status_code
        if status < 200:
            return
        if status in (401, 407) and self._retry_with_credentials(tx_key, outgoing, event.response):
            return
        if not outgoing.future.done():
            outgoing.future.set_result(status)

    def on_failure(self, event: TransactionTimedOut | TransportFailed) -> None:
        """A MESSAGE we sent got no final response (Timer F) or could not be sent."""
        outgoing = self._outgoing.get(event.tx_key)
        if outgoing is not None and not outgoing.future.done():
            outgoing.future.set_result(None)

    def _retry_with_credentials(
        self, tx_key: TxKey, outgoing: _Outgoing, response: Response
    ) -> bool:
        """Answer the trunk's 401/407 once with its Digest credentials (RFC 3261 §22.2)."""
        trunk = outgoing.trunk
        username, password = trunk.auth_username, trunk.auth_password
        if username is None or password is None or outgoing.authenticated:
            return False
        previous = outgoing.request
        answer = answer_challenge(response, previous, username=username, password=password)
        if answer is None:
            return False
        name, credentials = answer
        retry = Request("MESSAGE", previous.uri, previous.headers.copy(), previous.body)
        retry.headers.remove("Via")  # the endpoint adds a fresh top Via and branch
        retry.headers.set("CSeq", f"{previous.cseq.seq + 1} MESSAGE")
        retry.headers.set(name, credentials)
        outgoing.request = retry
        outgoing.authenticated = True
        del self._outgoing[tx_key]
        self._outgoing[self._endpoint.send_request(retry, outgoing.peer, self._clock())] = outgoing
        self._flush()
        return True

    # -- life -----------------------------------------------------------------------------

    def _keep(self, task: asyncio.Task[SmsVerdict]) -> None:
        """Hold a service call until it ends; a failure after its sender was answered (the
        timeout) is retrieved here, already logged as slow, never as an unretrieved error."""
        self._work.add(task)

        def done(finished: asyncio.Task[SmsVerdict]) -> None:
            self._work.discard(finished)
            if not finished.cancelled():
                finished.exception()

        task.add_done_callback(done)

    async def close(self, *, timeout_s: float = 5.0) -> None:
        """Stop, SIP still up: messages being handled get their verdict, MESSAGEs we sent their
        response, within ``timeout_s`` together; then the rest are answered 503 (inbound) or
        resolve to None (outbound)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        answering = list(self._answering.values())
        if answering:
            _, late = await asyncio.wait(answering, timeout=timeout_s)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        sending = [o.future for o in self._outgoing.values() if not o.future.done()]
        if sending:
            await asyncio.wait(sending, timeout=max(0.0, deadline - loop.time()))
        for outgoing in self._outgoing.values():
            if not outgoing.future.done():
                outgoing.future.set_result(None)
