"""The masked-call controller: inbound leg from the trunk → binding lookup → fresh outbound leg.

Each call is an ``engine.calls.Call``; this module performs what its state
changes ask for: SIP through the sans-IO ``Endpoint``, media through the RTP
relay, the call record through the store.  Privacy rules (DESIGN.md "B2BUA
rules"): the outbound leg is built from scratch — new Call-ID, tags, branch,
CSeq; From and P-Asserted-Identity carry X; SDP is rewritten to our media
ports; nothing of the other side's identity or addresses is copied.

What the caller hears from maskline itself (engine.call_media does the packets):

- **Enterprise ringback.** When the binding's code (else the pool's) names a tone with audio and
  the caller offered G.711 under a static payload type, the offer relayed to the callee is cut
  to that one codec (plus telephone-event, CN). At the callee's first 18x the caller gets 183
  Session Progress with our own SDP answer (``media.sdp.local_answer``, side a of the relay)
  and the tone, looped, as early media; later 18x are not relayed (the caller has its early
  media). The callee's own early media, if any, takes over at its first RTP packet; at the
  answer the tone stops and the 200 carries the same SDP as the 183 — the callee's answer,
  necessarily in the same codec, only tells the relay where to send. A caller requiring
  100rel gets the 183 reliably and the 200 after its PRACK, as every relayed 18x. Calls
  without a tone are relayed exactly as before (the callee's SDP, rewritten, in each 18x/200).
- **Announcements.** An intercepted call with such an offer: 183 with our answer, the cause's
  prompt once, then the final response of ``INTERCEPT_STATUS`` (state ANNOUNCING; a CANCEL
  meanwhile gets 487). The relay session exists for the prompt only.
- **AXN-extension IVR.** See the section of that name below: the caller is answered by us
  (200), keys the extension (RFC 4733 or INFO), and the call to A follows in state CONNECTING.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from config import Settings, TrunkSettings
from engine.call_media import (
    CallMedia,
    ExtensionFound,
    ExtensionIvr,
    ExtensionNotFound,
    PromptFrames,
    ringing_tone_frames,
)
from engine.calls import (
    CALLER_ANSWERED_STATES,
    Q850_MEDIA_TIMEOUT,
    Q850_NO_ANSWER,
    Q850_NORMAL_CLEARING,
    Q850_RECOVERY_ON_TIMER_EXPIRY,
    Q850_UNALLOCATED,
    Call,
    CallInput,
    CallState,
    DelayQueue,
    KeptFor,
    Leg,
    new_call_ref,
    q850_for_status,
)
from engine.eager import start_eagerly
from engine.logging import get_logger
from engine.overload import OverloadGuard
from media.dtmf import DtmfError, parse_info_body, telephone_event_payload_type
from media.ivr import DEFAULT_MAX_LENGTH
from media.prompts import prompt_for_cause
from media.recording import CallRecording
from media.relay import MediaRelay, MediaSession
from media.sdp import (
    Direction,
    NotRelayable,
    SdpError,
    SessionDescription,
    answer_codec,
    keep_relayable_formats,
    local_answer,
    media_endpoint,
    parse_sdp,
    ports_for_stream,
    relayable_stream,
    rewrite_for_leg,
)
from routing.index import BindingIndex, Intercept, NeedsExtension, Route
from routing.model import Binding, InterceptCause, PhoneNumber
from routing.numbers import for_trunk, from_sip_user
from sip.auth import answer_challenge
from sip.builders import make_response, new_call_id, new_tag
from sip.dialog import Dialog, DialogRole, DialogState
from sip.endpoint import Endpoint
from sip.errors import SipError, SipUsageError
from sip.events import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
    TransportFailed,
    TxKey,
)
from sip.headers import HeaderList, parse_name_addr
from sip.message import Request, Response
from sip.reliable import OPTION_TAG as REL_OPTION_TAG
from sip.reliable import (
    RAck,
    first_rseq,
    format_rack,
    parse_rack,
    parse_rseq,
    requires_100rel,
)
from sip.session_timer import (
    OPTION_TAG,
    Negotiated,
    Refresher,
    SessionExpires,
    TooSmall,
    expiry_after_s,
    format_session_expires,
    negotiate_as_uac,
    negotiate_as_uas,
    parse_min_se,
    refresh_after_s,
)
from sip.transport import Peer
from sip.uri import SipUri, TelUri
from store.records import ReleaseDir

_log = get_logger("engine.b2bua")

SDP = "application/sdp"
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO"

# SIP answer to the caller per interception cause (after the cause's announcement, when the
# caller offered media we can play it in).
INTERCEPT_STATUS: dict[InterceptCause, tuple[int, str]] = {
    InterceptCause.NO_BINDING: (404, "Not Found (no binding)"),
    InterceptCause.EXPIRED: (404, "Not Found (binding expired)"),
    InterceptCause.RESTRICTED: (403, "Forbidden (restricted)"),
    InterceptCause.NOT_IN_GROUP: (403, "Forbidden (not in group)"),
    InterceptCause.BLACKLISTED: (403, "Forbidden (blacklisted)"),
    InterceptCause.UNVERIFIED: (403, "Forbidden (number not verified)"),
    InterceptCause.NO_DEFAULT_B: (404, "Not Found (no default B)"),
}


RecordSink = Callable[[Call, CallRecording | None], Awaitable[None]]


class CallEvents(Protocol):
    """Who hears of a call's progress as it happens (the tenant's start, ring and pick-up
    reports, SPEC §6): each method returns at once and never waits on disk or network."""

    def call_started(self, call: Call) -> None:
        """The call's routing outcome is known (routed or intercepted)."""

    def call_ringing(self, call: Call) -> None:
        """The callee rings (first provisional response of the outbound leg)."""

    def call_answered(self, call: Call) -> None:
        """The callee answered."""


def _cancel_handle(handle: object) -> None:
    """Cancel a loop timer handle. uvloop's ``TimerHandle`` is not an ``asyncio.TimerHandle``
    (an isinstance test left every uvloop timer armed: a refreshed session timer's old expiry
    still fired), so any object with ``cancel`` is cancelled."""
    cancel = getattr(handle, "cancel", None)
    if callable(cancel):
        cancel()


class _CallTimers:
    """Timers of one delay for many calls (``engine.calls.DelayQueue``) behind one loop timer,
    armed at the queue's head. A call's timer is cancelled like a loop timer handle (it goes in
    ``call.timers``); the loop timer stays armed then and, when it fires early, finds nothing
    due and re-arms at the new head: cheaper than re-arming on every cancel."""

    def __init__(self, delay_s: float, fire: Callable[[Call], None]) -> None:
        self._queue: DelayQueue[str, Call] = DelayQueue(delay_s)
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None

    def start(self, call: Call) -> _CallTimer:
        """``fire(call)`` in ``delay_s``, unless the returned timer is cancelled first."""
        loop = asyncio.get_running_loop()
        self._queue.add(call.call_id, call, loop.time())
        if self._handle is None:  # else armed at an earlier head: every new item comes later
            self._arm(loop)
        return _CallTimer(self._queue, call.call_id)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        due = self._queue.next_due()
        self._handle = None if due is None else loop.call_at(due, self._run)

    def _run(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._handle = None
        while (call := self._queue.pop_due(now)) is not None:
            self._fire(call)
        if self._handle is None:  # (firing may have started one: then it is armed)
            self._arm(loop)


class _CallTimer:
    """A call's entry in a :class:`_CallTimers`; ``cancel`` as on a loop timer handle."""

    __slots__ = ("_call_id", "_queue")

    def __init__(self, queue: DelayQueue[str, Call], call_id: str) -> None:
        self._queue = queue
        self._call_id = call_id

    def cancel(self) -> None:
        self._queue.cancel(self._call_id)


class _NoCallEvents:
    def call_started(self, call: Call) -> None:
        pass

    def call_ringing(self, call: Call) -> None:
        pass

    def call_answered(self, call: Call) -> None:
        pass


"""Writes an ended call's record; the recording, when there is one, first (engine.records)."""

RingbackSource = Callable[[Binding, int, int], Awaitable[Sequence[bytes]]]
"""``ringback(binding, call_type, payload_type)``: the enterprise ringback of a routed call as
20 ms payloads of ``payload_type`` (0 PCMU, 8 PCMA); empty when neither the binding nor its
pool sets a tone for this direction, or the tone has no audio (engine.server builds it from
the pool's codes and the tone files, so this module needs neither the API nor the store)."""


@dataclass(slots=True)
class _Reinvite:
    """A re-INVITE received on one leg and relayed on the other, awaiting its answer."""

    server_tx: TxKey
    request: Request
    from_caller: bool
    client_tx: TxKey
    seq: int
    method: str  # INVITE or UPDATE
    # RFC 4028: the session timer the request asks of the leg it came on (None: none), set on
    # that leg when the other leg's 2xx is relayed back.
    session: Negotiated | None = None
    offer: bytes = b""  # the SDP sent on the other leg with the relayed request
    offer_sendrecv: bool = True  # the relayed stream of that offer is sendrecv


@dataclass(slots=True)
class _Refresh:
    """A session refresh we sent on one leg (RFC 4028 §7.4), awaiting its final response."""

    call: Call
    leg: Leg
    method: str  # UPDATE or INVITE
    seq: int


@dataclass(slots=True)
class _ReliableUas:
    """RFC 3262 §3 on the inbound leg: the caller required 100rel, so every 18x we relay to
    it is sent reliably, one at a time, and the 200 waits for the last PRACK."""

    next_rseq: int  # RSeq of the next reliable provisional (random start, +1 each, §3)
    unacked: Response | None = None  # the reliable 18x awaiting its PRACK
    unacked_rseq: int = 0
    handle: asyncio.TimerHandle | None = None  # its next retransmission
    interval_s: float = 0.0  # T1, doubling per retransmission (§3)
    deadline: float = 0.0  # 64*T1 after the first transmission: then the call is released
    # 18x to relay once the pending one is PRACKed (§3: one unacknowledged at a time)
    queued: list[tuple[int, bytes]] = field(default_factory=list)
    held_answer: Callable[[], None] | None = None  # the 200, sent when the last PRACK arrives


@dataclass(slots=True, init=False)
class _MediaState:
    """The relayed media of one call."""

    session: MediaSession | None = None
    sdp_version: int = 0
    stream: int = 0  # index of the m= section relayed (media.sdp.relayable_stream)
    # The latest offer and answer both leave the relayed stream sendrecv: RTP is expected from
    # both parties, so the dead-media sweep watches the call (answered calls only). A hold
    # (sendonly/recvonly/inactive) pauses the watch: many phones send nothing while holding.
    offer_sendrecv: bool = True
    sendrecv: bool = True
    # The call's recording when its binding asks for one: made with the session, fed by the
    # relay's on_packet hook from the answer on, written by the record sink after the call.
    recording: CallRecording | None = None
    # The G.711 payload type we answer the caller with ourselves (media.sdp.answer_codec) and
    # the caller's telephone-event type; codec None: no audio of ours can reach this caller.
    codec: int | None = None
    event_payload_type: int | None = None
    # What the call does with its media beyond relaying (engine.call_media), made on first use.
    call_media: CallMedia | None = None
    # Enterprise ringback: the tone played while the callee rings (empty: none, plain relay).
    ringback: Sequence[bytes] = ()
    # Our own SDP answer to the caller (ringback 183, announcement 183, IVR 200). Once sent,
    # every later response to the caller's INVITE carries it unchanged: the callee's answer
    # only tells the relay where to send (the outbound offer was cut to the same codec).
    caller_answer: bytes = b""
    caller_answer_version: int = 0  # the o= version of caller_answer
    early_answered: bool = False  # our 183 with caller_answer went to the caller
    # The extension IVR while it runs, and the caller's offer the outbound leg is built from.
    ivr: ExtensionIvr[Route] | None = None
    offer: SessionDescription | None = None

    # An explicit __init__ (the dataclass has init=False): mypyc compiles it, whereas the one
    # dataclasses generates stays interpreted (build_compiled.py); one per call.
    def __init__(
        self,
        *,
        session: MediaSession | None = None,
        sdp_version: int = 0,
        stream: int = 0,
        offer_sendrecv: bool = True,
        sendrecv: bool = True,
        recording: CallRecording | None = None,
        codec: int | None = None,
        event_payload_type: int | None = None,
        call_media: CallMedia | None = None,
        ringback: Sequence[bytes] = (),
        caller_answer: bytes = b"",
        caller_answer_version: int = 0,
        early_answered: bool = False,
        ivr: ExtensionIvr[Route] | None = None,
        offer: SessionDescription | None = None,
    ) -> None:
        self.session = session
        self.sdp_version = sdp_version
        self.stream = stream
        self.offer_sendrecv = offer_sendrecv
        self.sendrecv = sendrecv
        self.recording = recording
        self.codec = codec
        self.event_payload_type = event_payload_type
        self.call_media = call_media
        self.ringback = ringback
        self.caller_answer = caller_answer
        self.caller_answer_version = caller_answer_version
        self.early_answered = early_answered
        self.ivr = ivr
        self.offer = offer


def _q850_reason(cause: int, text: str) -> str:
    """An RFC 3326 Reason header value carrying a Q.850 cause."""
    return f'Q.850;cause={cause};text="{text}"'


# Reason header (RFC 3326) of the BYEs that release a call whose media died.
_MEDIA_TIMEOUT_REASON = _q850_reason(Q850_MEDIA_TIMEOUT, "media timeout")
# How long an ended call stays findable by late retransmissions and requests at least: 64*T1
# of a peer on the default T1 of 500 ms, the longest it re-sends a 2xx (RFC 3261 §13.3.1.4).
# Longer when our own T1 is larger (``keep_ended_call_s``). And how late past that an ended
# call may be let go: ended calls are forgotten in batches (``_keep_ended``).
KEEP_ENDED_CALL_S = 32.0
FORGET_BATCH_S = 0.1


def keep_ended_call_s(t1_s: float) -> float:
    """How long an ended call stays findable with our T1 of ``t1_s``: at least
    KEEP_ENDED_CALL_S, and no less than our transactions live (64*T1, RFC 3261 §17.1.1.2 and
    RFC 6026 §7.2) — a 2xx retransmission our INVITE client transaction still passes up must
    find its call to be ACKed, not be dropped as belonging to none."""
    return max(KEEP_ENDED_CALL_S, 64 * t1_s)


# Longest pause between two dead-media sweeps: a call is released at most this long after its
# timeout ran out. One timer for all calls; each sweep reads two counters per watched call.
_MEDIA_SWEEP_MAX_PERIOD_S = 1.0
# Source hosts whose trunk (or its absence) is remembered; past this the memory starts again.
_TRUNK_CACHE_HOSTS = 4096


class B2bua:
    """Routes calls to X numbers through bindings; one instance per engine."""

    def __init__(
        self,
        *,
        endpoint: Endpoint,
        index: BindingIndex,
        relay: MediaRelay,
        settings: Settings,
        record_sink: RecordSink,
        flush: Callable[[], None],
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        x_usable: Callable[[PhoneNumber, float], bool] | None = None,
        prompts: PromptFrames | None = None,
        ringback: RingbackSource | None = None,
        events: CallEvents | None = None,
    ) -> None:
        """``prompts``: announcements and the extension IVR's prompts (media.prompts); None
        answers intercepted calls at once and intercepts AXN-extension calls. ``ringback``:
        enterprise ringback (None: none). ``events``: progress reports (None: none)."""
        self._endpoint = endpoint
        self._events: CallEvents = events if events is not None else _NoCallEvents()
        self._prompts = prompts
        self._ringback = ringback
        self._index = index
        # False for an X whose user's real-person verification is overdue (SPEC §3): its calls
        # are intercepted. None: every X is usable.
        self._x_usable = x_usable
        self._relay = relay
        self._settings = settings
        # Read per call: settings' properties are interpreted Python, these plain attributes not.
        self._listen_host: str = settings.sip.listen_host
        self._listen_port: int = settings.sip.listen_port
        self._local_hostport: str = f"{settings.sip.listen_host}:{settings.sip.listen_port}"
        self._record_sink = record_sink
        self._flush = flush
        self._clock = clock  # monotonic loop time for SIP
        self._wall_clock = wall_clock  # UTC epoch seconds for bindings and records
        self._calls_by_tx: dict[TxKey, Call] = {}
        self._calls_by_leg: dict[tuple[str, str], Call] = {}  # (Call-ID, our tag) → call
        self._media: dict[str, _MediaState] = {}
        self._reinvites: dict[str, _Reinvite] = {}
        self._call_trunks: dict[str, TrunkSettings] = {}
        self._authenticated: set[str] = set()  # calls whose outbound INVITE carries credentials
        self._min_se_retried: set[str] = set()  # calls whose outbound INVITE was re-sent after 422
        self._refreshes: dict[TxKey, _Refresh] = {}  # session refreshes we sent, by transaction
        self._reliable: dict[str, _ReliableUas] = {}  # calls whose caller required 100rel
        self._contacts: dict[str, str] = {}  # X → our Contact for it (one per number served)
        # Source host → the trunk it may enter through (None: none). Settings are fixed for the
        # process, so an answer stays true; bounded, as a flood may come from many hosts.
        self._trunk_of_host: dict[str, TrunkSettings | None] = {}
        self._outbound_rseq: dict[str, int] = {}  # last in-order RSeq PRACKed on the outbound leg
        self._tasks: set[asyncio.Task[None]] = set()
        self._active: dict[str, Call] = {}  # calls not yet released
        self._media_sweep: asyncio.TimerHandle | None = None  # the dead-media sweep, when armed
        # Ended calls still findable, and the one timer that lets them go (``_keep_ended``).
        self._ended: KeptFor[Call] = KeptFor(
            keep_ended_call_s(settings.sip.t1_ms / 1000), FORGET_BATCH_S
        )
        self._ended_timer: asyncio.TimerHandle | None = None
        self._ring_timers: dict[str, _CallTimer] = {}  # calls' ringing timeouts
        # The timers of one delay for every call, each behind one loop timer: the maximum
        # duration (one setting), the ringing timeouts (a queue per binding timeout in use:
        # whole seconds, 5 to 180, routing.model).
        self._max_durations = _CallTimers(settings.sip.max_call_duration_s, self._max_duration)
        self._ring_timeouts: dict[int, _CallTimers] = {}
        # Overload protection ([overload], engine.overload), installed on the endpoint: new
        # requests are judged there, before any transaction or 100 Trying exists. The SIP
        # transport measures the lag (engine.transport) and keeps it on the endpoint.
        self.overload = OverloadGuard(
            settings.overload,
            active_calls=self._active.__len__,
            transactions=lambda: endpoint.transaction_count,
            loop_lag_s=lambda: endpoint.loop_lag_s,
            known_dialog=self.owns_dialog,
            media_room=self._media_room,
        )
        endpoint.admission = self.overload

    @property
    def active_calls(self) -> int:
        """Calls between their INVITE and their release."""
        return len(self._active)

    def _media_room(self) -> int:
        """Relay sessions a new call could still count on: those free (two RTP ports each)
        less one for every call let in that has not opened its own yet (its set-up task has
        not run; an intercepted call without announcement never does, but ends at once)."""
        setting_up = len(self._active) - len(self._media)
        return self._relay.ports_available // 2 - max(0, setting_up)

    def owns_dialog(self, call_id: str, local_tag: str) -> bool:
        """True when a request with this Call-ID and To tag belongs to one of our calls' legs
        (up, or ended within ``keep_ended_call_s``): such requests are never refused for
        overload."""
        return (call_id, local_tag) in self._calls_by_leg

    # -- entry points from the signalling layer ------------------------------------------

    def on_invite(self, event: RequestReceived) -> None:
        """A new INVITE outside any dialog: route it or intercept it."""
        request = event.request
        trunk = self._trunk_for(event.peer)
        if trunk is None:
            self._answer(event.tx_key, request, 403, "Forbidden (source not in any trunk)")
            return
        session = self._negotiate_inbound(event)
        if session is False:
            return  # answered 400 or 422: the caller retries or gives up, no call yet
        x = from_sip_user(uri_user(request.uri))
        caller = caller_number(request)
        now = self._wall_clock()
        local_tag = new_tag()
        inbound = Leg(
            peer=event.peer,
            call_id=request.call_id,
            local_tag=local_tag,
            tx_key=event.tx_key,
            request=request,
            session_timer=session,
            peer_allows_update=_allows_update(request),
        )
        call = Call(
            call_id=new_call_ref(),
            inbound=inbound,
            x=x or "",
            caller=caller,
            call_time=now,
        )
        self._calls_by_tx[event.tx_key] = call
        self._calls_by_leg[(inbound.call_id, local_tag)] = call
        self._active[call.call_id] = call
        if requires_100rel(request):
            # RFC 3262 §3: reliable provisionals only when the caller requires them. A caller
            # that merely supports 100rel gets ordinary 18x: always correct, and no PRACK
            # round trip delays its ringback.
            self._reliable[call.call_id] = _ReliableUas(next_rseq=first_rseq())
        decision = (
            self._index.resolve(x, caller, now=now)
            if x is not None
            else Intercept(cause=InterceptCause.NO_BINDING, binding=None)
        )
        if isinstance(decision, NeedsExtension):
            if self._x_usable is not None and not self._x_usable(decision.x, now):
                decision = Intercept(cause=InterceptCause.UNVERIFIED, binding=None)
            else:
                # The X's pool, in the record whatever happens (the tenant's report).
                call.pool_key = decision.pool_key
                offer = self._answerable_offer(request)
                if offer is not None and self._prompts is not None:
                    self._spawn(self._start_ivr(call, decision, trunk, offer))
                    return
                # No offer we can answer with our prompt in it: nobody to key an extension.
                decision = Intercept(cause=InterceptCause.NO_BINDING, binding=None)
        if (
            isinstance(decision, Route)
            and self._x_usable is not None
            and not self._x_usable(decision.binding.x, now)
        ):
            decision = Intercept(cause=InterceptCause.UNVERIFIED, binding=decision.binding)
        if isinstance(decision, Intercept):
            self._intercept(call, decision)
            return
        # At once, not on the loop's next turn: it rarely has to wait for anything, and the
        # turn's wait was part of the post-dial delay (engine/eager.py).
        self._spawn(self._connect(call, decision, trunk), eagerly=True)

    def on_cancel(self, event: CancelReceived) -> None:
        """The caller gave up before the answer (the 200 to CANCEL is already sent)."""
        call = self._calls_by_tx.get(event.invite_tx_key)
        if call is None or not call.can(CallInput.CALLER_CANCELLED):
            return
        call.release_dir = ReleaseDir.CALLER
        call.release_cause = Q850_NORMAL_CLEARING
        self._cancel_outbound(call)
        self._answer_inbound(call, 487)
        call.fire(CallInput.CALLER_CANCELLED)
        self._finish(call)

    def on_in_dialog(self, event: RequestReceived) -> bool:
        """A request inside a dialog; False when no call owns it (answer 481)."""
        request = event.request
        call = self._calls_by_leg.get((request.call_id, request.to_tag or ""))
        if call is None:
            return False
        from_caller = request.call_id == call.inbound.call_id
        leg = call.inbound if from_caller else call.outbound
        if leg is None or leg.dialog is None:
            return False
        try:
            leg.dialog.receive_request(request)
        except SipError as error:
            self._answer(event.tx_key, request, error.status_code, error.reason_phrase)
            return True
        if request.method == "PRACK":
            self._on_prack(call, event, from_caller=from_caller)
            return True
        if request.method == "BYE":
            self._answer(event.tx_key, request, 200)
            hung_up = CallInput.CALLER_HUNG_UP if from_caller else CallInput.CALLEE_HUNG_UP
            if call.can(hung_up):
                call.release_dir = ReleaseDir.CALLER if from_caller else ReleaseDir.CALLEE
                call.release_cause = Q850_NORMAL_CLEARING
                if call.state is CallState.CONNECTING:
                    self._cancel_outbound(call)  # A is still ringing: CANCEL, not BYE
                else:
                    other = call.outbound if from_caller else call.inbound
                    if other is not None:
                        self._send_bye(other)
                call.fire(hung_up)
                self._finish(call)
            return True
        if request.method in ("INVITE", "UPDATE") and call.state is CallState.ANSWERED:
            self._relay_reinvite(call, event, from_caller=from_caller)
            return True
        if (
            request.method in ("INVITE", "UPDATE")
            and from_caller
            and call.state in (CallState.IVR, CallState.CONNECTING)
        ):
            self._answer_offer_locally(call, event)
            return True
        if request.method == "INFO" and from_caller and call.state is CallState.IVR:
            self._on_info_key(call, event)
            return True
        # UPDATE before the answer, INFO…: not relayed yet; refuse an offer so the call stays up.
        status = 488 if request.method in ("INVITE", "UPDATE") else 200
        self._answer(event.tx_key, request, status)
        return True

    def _on_info_key(self, call: Call, event: RequestReceived) -> None:
        """A SIP INFO from the caller while it keys an extension: the digit goes to the IVR.

        ``application/dtmf-relay`` or ``application/dtmf`` with one key → 200; another content
        type → 415, a body that is not one key → 400 (media.dtmf). An INFO without a body (a
        keep-alive some phones send) → 200. Digits are never logged.
        """
        request = event.request
        media = self._media.get(call.call_id)
        if not request.body or media is None or media.call_media is None:
            self._answer(event.tx_key, request, 200)
            return
        try:
            key = parse_info_body(request.headers.get("Content-Type") or "", request.body)
        except DtmfError as error:
            self._answer(event.tx_key, request, error.status_code)
            return
        self._answer(event.tx_key, request, 200)
        media.call_media.key_from_info(key.digit)
        self._flush()

    def _answer_offer_locally(self, call: Call, event: RequestReceived) -> None:
        """A re-INVITE or UPDATE from the caller while we answer for the call (IVR, A ringing).

        There is no other leg to relay it to: we answer with our own SDP (same codec, the
        caller's new address noted for the relay; RFC 3264 §8) and take it as a session
        refresh (RFC 4028 §10). An offer that drops our codec or is not relayable → 488, the
        session goes on as it was (RFC 3261 §14.2).
        """
        request = event.request
        media = self._media.get(call.call_id)
        if media is None or media.session is None or media.codec is None:
            self._answer(event.tx_key, request, 488)
            return
        session_timer = self._negotiate_inbound(event)
        if session_timer is False:
            return
        body = b""
        if request.body:
            offer = self._mid_call_offer(event, stream=media.stream)
            if offer is None:
                return
            if str(media.codec) not in offer.media[media.stream].formats:
                self._answer(event.tx_key, request, 488, "Not Acceptable Here (codec change)")
                return
            media.session.expect("a", media_endpoint(offer, media.stream))
            media.offer = offer
            body = self._caller_sdp(call, offer, media, changed_only=True)
            media.caller_answer = body
        elif request.method == "INVITE":
            body = media.caller_answer  # an INVITE without offer: our SDP is the offer (§14.2)
        inbound = call.inbound
        reply = make_response(
            request,
            200,
            None,
            extra=[
                ("Contact", self._local_contact_text(call)),
                *_session_timer_response_headers(session_timer),
            ],
            body=body,
            content_type=SDP if body else None,
        )
        with contextlib.suppress(SipUsageError):
            self._endpoint.send_response(event.tx_key, reply, self._clock())
        if body:
            inbound.local_sdp = body
        self._refreshed(call, inbound, session_timer)
        self._flush()

    def _relay_reinvite(self, call: Call, event: RequestReceived, *, from_caller: bool) -> None:
        """Relay a mid-call re-INVITE or UPDATE to the other leg; its answer goes back.

        RFC 3261 §14 (re-INVITE) and RFC 3311 (UPDATE): the offer is rewritten
        to our relay port on the other leg, the answer to ours on this leg.
        """
        request = event.request
        if call.call_id in self._reinvites:
            # One offer at a time per call: glare (§14.1, RFC 3261 491 Request Pending).
            self._answer(event.tx_key, request, 491)
            return
        media = self._media.get(call.call_id)
        other = call.outbound if from_caller else call.inbound
        if media is None or media.session is None or other is None or other.dialog is None:
            self._answer(event.tx_key, request, 488)
            return
        session = self._negotiate_inbound(event)
        if session is False:
            return  # a refresh asking for less than our Min-SE: 422 (RFC 4028 §9)
        body = b""
        offer_sendrecv = True
        if request.body:
            offer = self._mid_call_offer(event, stream=media.stream)
            if offer is None:
                return
            media.session.expect("a" if from_caller else "b", media_endpoint(offer, media.stream))
            offer_sendrecv = _sendrecv(offer, media.stream)
            media.sdp_version += 1
            body = rewrite_for_leg(
                offer,
                address=self._settings.media.address,
                ports=ports_for_stream(
                    offer,
                    media.stream,
                    media.session.port_b if from_caller else media.session.port_a,
                ),
                session_id=int(call.call_time) + (0 if from_caller else 1),
                version=media.sdp_version,
            )
        reinvite = other.dialog.create_request(
            request.method,
            extra_headers=self._refresh_headers(other),
            body=body,
            content_type=SDP if body else None,
        )
        client_tx = self._endpoint.send_request(
            reinvite, _target_peer(other.dialog, other.peer), self._clock()
        )
        self._calls_by_tx[client_tx] = call
        self._reinvites[call.call_id] = _Reinvite(
            server_tx=event.tx_key,
            request=request,
            from_caller=from_caller,
            client_tx=client_tx,
            seq=reinvite.cseq.seq,
            method=request.method,
            session=session,
            offer=body,
            offer_sendrecv=offer_sendrecv,
        )

    def _on_reinvite_response(self, call: Call, pending: _Reinvite, response: Response) -> None:
        status = response.status_code
        if status < 200:
            return
        del self._reinvites[call.call_id]
        self._calls_by_tx.pop(pending.client_tx, None)
        other = call.outbound if pending.from_caller else call.inbound
        if other is None or other.dialog is None:
            return
        other.dialog.receive_response(pending.method, response)
        body = b""
        this = call.inbound if pending.from_caller else call.outbound
        extra: list[tuple[str, str]] = []
        if status < 300:
            if pending.method == "INVITE":
                self._send_ack(other, pending.seq)
            if pending.offer:
                other.local_sdp = pending.offer
            # RFC 4028 §7.4/§10: a 2xx re-INVITE/UPDATE is a session refresh of both legs.
            self._refreshed(call, other, _uac_session(response, other.session_timer))
            if this is not None:
                self._refreshed(call, this, pending.session)
                extra = _session_timer_response_headers(pending.session)
            media = self._media.get(call.call_id)
            if response.body and media is not None and media.session is not None:
                try:
                    answer = parse_sdp(response.body)
                except SdpError:
                    answer = None
                if answer is not None:
                    media.session.expect(
                        "b" if pending.from_caller else "a", media_endpoint(answer, media.stream)
                    )
                    media.sdp_version += 1
                    body = rewrite_for_leg(
                        answer,
                        address=self._settings.media.address,
                        ports=ports_for_stream(
                            answer,
                            media.stream,
                            media.session.port_a if pending.from_caller else media.session.port_b,
                        ),
                        session_id=int(call.call_time) + (1 if pending.from_caller else 0),
                        version=media.sdp_version,
                    )
                    media.sendrecv = pending.offer_sendrecv and _sendrecv(answer, media.stream)
                    self._update_media_watch(call)
        contact = [("Contact", self._local_contact_text(call))] if status < 300 else []
        if body and this is not None:
            this.local_sdp = body
        reply = make_response(
            pending.request,
            status,
            response.reason or None,
            extra=contact + extra,
            body=body,
            content_type=SDP if body else None,
        )
        with contextlib.suppress(SipUsageError):
            self._endpoint.send_response(pending.server_tx, reply, self._clock())
        self._flush()

    def on_ack(self, event: AckReceived) -> None:
        """ACK for our 2xx: nothing to do beyond the transaction having stopped re-sending."""

    def on_response(self, event: ResponseReceived) -> None:
        """A response on the outbound leg."""
        response = event.response
        call = self._calls_by_tx.get(event.tx_key) if event.tx_key is not None else None
        if call is None:
            if event.tx_key is None:
                self._ack_stray_2xx(response)
            return
        refresh = self._refreshes.get(event.tx_key) if event.tx_key is not None else None
        if refresh is not None and event.tx_key is not None:
            self._on_refresh_response(refresh, event.tx_key, response)
            return
        pending = self._reinvites.get(call.call_id)
        if pending is not None and event.tx_key == pending.client_tx:
            self._on_reinvite_response(call, pending, response)
            return
        outbound = call.outbound
        if outbound is None or event.tx_key != outbound.tx_key:
            return  # response to a BYE or CANCEL we sent: nothing to relay
        status = response.status_code
        if status == 100:
            return
        if status < 200:
            self._on_provisional(call, response)
        elif status < 300:
            self._on_answer(call, response)
        else:
            self._on_rejected(call, response)

    def on_timeout(self, event: TransactionTimedOut | TransportFailed) -> None:
        """A transaction of a call gave up."""
        call = self._calls_by_tx.get(event.tx_key)
        if call is None or call.state is CallState.ENDED:
            return
        refresh = self._refreshes.pop(event.tx_key, None)
        if refresh is not None:
            # RFC 4028 §10: a refresh that times out ends the session.
            self._release_session(call, cause=Q850_RECOVERY_ON_TIMER_EXPIRY, why="refresh_timeout")
            return
        if call.outbound is not None and event.tx_key == call.outbound.tx_key:
            if call.state is CallState.CONNECTING:
                # A never answered our INVITE; the caller, answered by us, gets a BYE.
                cause = Q850_RECOVERY_ON_TIMER_EXPIRY
                reason = _q850_reason(cause, "no response")
                self._release_answered(call, CallInput.FAILED, cause=cause, reason=reason)
            elif call.can(CallInput.FAILED):
                call.release_dir = ReleaseDir.PLATFORM
                call.release_cause = Q850_RECOVERY_ON_TIMER_EXPIRY
                self._answer_inbound(call, 408)
                call.fire(CallInput.FAILED)
                self._finish(call)
        elif event.tx_key == call.inbound.tx_key and call.state in CALLER_ANSWERED_STATES:
            # Our 2xx was never acknowledged (Timer L): the caller is gone.
            self._release_answered(call, CallInput.FAILED, cause=Q850_RECOVERY_ON_TIMER_EXPIRY)

    async def close(self, *, timeout_s: float = 5.0) -> None:
        """Graceful stop: release every call still up, then let their records be written.

        Answered calls get a BYE on both legs, calls still ringing are cancelled
        and refused with 503; every one ends with its call record, so a restart
        loses nothing acknowledged.  Must run while the SIP transport is open.
        """
        for call in list(self._active.values()):
            if call.state in CALLER_ANSWERED_STATES:
                self._release_answered(call, CallInput.FAILED, cause=Q850_NORMAL_CLEARING)
                continue
            call.release_dir = ReleaseDir.PLATFORM
            call.release_cause = Q850_NORMAL_CLEARING
            if call.can(CallInput.FAILED):
                self._cancel_outbound(call)
                self._answer_inbound(call, 503, "Service Unavailable (shutting down)")
                call.fire(CallInput.FAILED)
            self._finish(call)
        self._flush()
        if self._media_sweep is not None:
            self._media_sweep.cancel()
            self._media_sweep = None
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout_s)
            for task in late:
                task.cancel()
            if late:
                # A call cancelled while its WAV was rendering still writes its record
                # (engine.records, without the file): give those writes the same time again.
                await asyncio.wait(late, timeout=timeout_s)
        if self._ended_timer is not None:
            self._ended_timer.cancel()
            self._ended_timer = None
        self._max_durations.close()
        for timers in self._ring_timeouts.values():
            timers.close()

    # -- call set-up ---------------------------------------------------------------------------

    async def _connect(self, call: Call, route: Route, trunk: TrunkSettings) -> None:
        binding = route.binding
        self._take_route(call, route)
        inbound_request = call.inbound.request
        assert inbound_request is not None
        if not inbound_request.body:
            # Late offer (INVITE without SDP) is not relayed yet.
            self._fail_setup(call, 488, "Not Acceptable Here (offer required)")
            return
        try:
            offer = self._relayable_offer(inbound_request.body)
        except NotRelayable as error:
            # Refused before any port is taken or any outbound leg exists.
            _log.info("offer_not_relayable", call=call.call_id, warning=error.warning_code)
            self._fail_setup(call, 488, extra=[("Warning", self._warning(error))])
            return
        except SdpError:
            self._fail_setup(call, 488, "Not Acceptable Here (unreadable SDP)")
            return
        stream = relayable_stream(offer)
        codec = answer_codec(offer, stream)
        tone: Sequence[bytes] = ()
        if codec is not None and self._ringback is not None:
            tone = await self._ringback_for(call, binding, route.call_type, codec)
            if call.state is not CallState.ROUTING:
                return  # cancelled while the tone was looked up: nothing opened yet
        if tone and codec is not None:
            # We answer the caller ourselves with this codec (the 183 of the ringback): the
            # callee is offered nothing else, so its answer cannot disagree.
            offer = keep_relayable_formats(offer, stream, codec=codec)
        try:
            session = await self._relay.open_session(call.call_id)
        except Exception:
            _log.exception("media_session_failed", call=call.call_id)
            self._fail_setup(call, 503, "Service Unavailable (no media ports)")
            return
        media = self._media[call.call_id] = _MediaState(
            session=session,
            stream=stream,
            offer_sendrecv=_sendrecv(offer, stream),
            codec=codec,
            # No event_payload_type: a routed call's keys go to the callee, never to us.
        )
        if binding.record:  # the binding's flag, the pool's default already resolved into it
            media.recording = CallRecording(
                clock=self._clock, max_duration_s=self._settings.sip.max_call_duration_s
            )
        if call.state is not CallState.ROUTING:  # cancelled while the ports were opened
            await self._close_media(call)
            return
        session.expect("a", media_endpoint(offer, stream))
        if tone:
            media.ringback = tone
            media.caller_answer = self._caller_sdp(call, offer, media)
        self._send_outbound(call, route, trunk, offer, media)
        self._flush()

    def _take_route(self, call: Call, route: Route) -> None:
        """The call record's facts of the binding the call is routed by."""
        binding = route.binding
        call.sub_id = binding.sub_id
        call.pool_key = binding.pool_key
        call.out_id = binding.out_id
        call.call_type = route.call_type
        call.phone_no = route.phone_no
        call.peer_no = route.peer_no
        call.callee = route.callee
        call.unconnected_cause = 0
        self._events.call_started(call)

    def _send_outbound(
        self,
        call: Call,
        route: Route,
        trunk: TrunkSettings,
        offer: SessionDescription,
        media: _MediaState,
    ) -> None:
        """Send the INVITE to the callee: the caller's offer anchored on our side-b port."""
        session = media.session
        assert session is not None
        inbound_request = call.inbound.request
        assert inbound_request is not None
        media.sdp_version += 1
        body = rewrite_for_leg(
            offer,
            address=self._settings.media.address,
            ports=ports_for_stream(offer, media.stream, session.port_b),
            session_id=int(call.call_time),
            version=media.sdp_version,
        )
        outbound_request = self._build_outbound_invite(call, route, trunk, inbound_request, body)
        outbound_peer = Peer(trunk.transport.upper(), trunk.outbound.host, trunk.outbound.port)
        outbound = Leg(
            peer=outbound_peer,
            call_id=outbound_request.call_id,
            local_tag=outbound_request.from_tag or "",
            request=outbound_request,
            local_sdp=body,
        )
        call.outbound = outbound
        self._call_trunks[call.call_id] = trunk
        outbound.tx_key = self._endpoint.send_request(
            outbound_request, outbound_peer, self._clock()
        )
        self._calls_by_tx[outbound.tx_key] = call
        self._calls_by_leg[(outbound.call_id, outbound.local_tag)] = call
        call.call_out_time = self._wall_clock()
        call.fire(CallInput.OUTBOUND_SENT)
        ring_timeout_s = route.binding.ring_timeout_s
        timers = self._ring_timeouts.get(ring_timeout_s)
        if timers is None:
            timers = self._ring_timeouts[ring_timeout_s] = _CallTimers(
                ring_timeout_s, self._ring_timeout
            )
        handle = timers.start(call)
        call.timers.append(handle)
        self._ring_timers[call.call_id] = handle

    async def _ringback_for(
        self, call: Call, binding: Binding, call_type: int, codec: int
    ) -> Sequence[bytes]:
        """The enterprise ringback of a routed call; empty when none (or on any failure: a
        call never fails for its ringback)."""
        assert self._ringback is not None
        try:
            return await self._ringback(binding, call_type, codec)
        except Exception:
            _log.exception("ringback_lookup_failed", call=call.call_id)
            return ()

    def _caller_sdp(
        self,
        call: Call,
        offer: SessionDescription,
        media: _MediaState,
        *,
        changed_only: bool = False,
    ) -> bytes:
        """Our own SDP answer to the caller's ``offer`` (media.sdp.local_answer), on side a.

        ``changed_only``: a re-offer; the version moves on only when the answer's content
        changes (RFC 3264 §8), the same answer again keeps it.
        """
        session = media.session
        assert session is not None and media.codec is not None

        def render(version: int) -> bytes:
            return local_answer(
                offer,
                media.stream,
                payload_type=media.codec if media.codec is not None else 0,
                address=self._settings.media.address,
                port=session.port_a,
                session_id=int(call.call_time) + 1,
                version=version,
            )

        if changed_only and media.caller_answer:
            same = render(media.caller_answer_version)
            if same == media.caller_answer:
                return same
        media.sdp_version += 1
        media.caller_answer_version = media.sdp_version
        return render(media.sdp_version)

    def _call_media(self, media: _MediaState) -> CallMedia:
        """The call's CallMedia, made on first use (recording, ringback, prompts, keys)."""
        if media.call_media is None:
            assert media.session is not None
            media.call_media = CallMedia(
                media.session,
                # A plain recorded call may have no codec of ours: it plays nothing then.
                caller_payload_type=media.codec if media.codec is not None else 0,
                event_payload_type=media.event_payload_type,
            )
        return media.call_media

    def _answerable_offer(self, request: Request) -> tuple[SessionDescription, int, int] | None:
        """(relayable offer, its stream, our codec) when we can answer the caller ourselves:
        an INVITE with a G.711 sendrecv offer under a static payload type; else None."""
        if not request.body:
            return None
        try:
            offer = self._relayable_offer(request.body)
        except SdpError:  # NotRelayable included
            return None
        stream = relayable_stream(offer)
        codec = answer_codec(offer, stream)
        return None if codec is None else (offer, stream, codec)

    def _build_outbound_invite(
        self,
        call: Call,
        route: Route,
        trunk: TrunkSettings,
        inbound_request: Request,
        body: bytes,
    ) -> Request:
        sip = self._settings.sip
        fmt = str(trunk.number_format)
        x_user = for_trunk(PhoneNumber(call.x), fmt)
        callee_user = for_trunk(route.callee, fmt)
        host = trunk.outbound.host
        target = f"sip:{callee_user}@{trunk.outbound}"
        local = self._local_hostport
        headers = HeaderList()
        inbound_max_forwards = inbound_request.max_forwards
        max_forwards = 70 if inbound_max_forwards is None else min(70, inbound_max_forwards - 1)
        headers.add("Max-Forwards", str(max_forwards))
        headers.add("From", f"<sip:{x_user}@{local}>;tag={new_tag()}")
        headers.add("To", f"<sip:{callee_user}@{host}>")
        headers.add("Call-ID", new_call_id(self._listen_host))
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", f"<sip:{x_user}@{local}>")
        headers.add("P-Asserted-Identity", f"<sip:{x_user}@{local}>")
        headers.add("Allow", ALLOW)
        # RFC 4028 §7.1: we support session timers and ask for ours; the callee picks the refresher.
        # RFC 3262 §4: we PRACK reliable provisionals the trunk sends.
        headers.add("Supported", f"{OPTION_TAG}, {REL_OPTION_TAG}")
        headers.add("Session-Expires", str(sip.session_expires_s))
        headers.add("Min-SE", str(sip.min_se_s))
        headers.add("Content-Type", SDP)
        return Request("INVITE", target, headers, body)

    # -- responses on the outbound leg ----------------------------------------------------------

    def _on_provisional(self, call: Call, response: Response) -> None:
        if not call.can(CallInput.PROVISIONAL):
            return
        outbound = call.outbound
        assert outbound is not None and outbound.request is not None
        if response.to_tag and outbound.dialog is None:
            outbound.dialog = Dialog.create_uac(outbound.request, response)
        if requires_100rel(response) and not self._prack_outbound(call, outbound, response):
            return  # a retransmission of a reliable 18x already PRACKed and relayed (§4)
        if call.ring_time is None:
            call.ring_time = self._wall_clock()
            self._events.call_ringing(call)
        media = self._media.get(call.call_id)
        if call.state is CallState.CONNECTING or (media is not None and media.ringback):
            # The caller hears us, not the callee's signalling: our 183 with our own answer
            # (ringback) went or goes out once; an extension caller is answered already. The
            # callee's early SDP, if any, only points the relay at it: its first RTP packet
            # then takes over from our tone (CallMedia handover).
            if response.body:
                self._expect_callee(call, response)
            if media is not None and media.ringback and not media.early_answered:
                media.early_answered = True
                self._send_provisional(call, 183, media.caller_answer)
                self._call_media(media).play_to_caller(
                    media.ringback, loop=True, until_callee_media=True
                )
                _log.info("ringback_started", call=call.call_id)
            call.fire(CallInput.PROVISIONAL)
            self._flush()
            return
        body = self._answer_sdp_for_caller(call, response) if response.body else b""
        status = response.status_code if response.status_code in (180, 183) else 180
        self._send_provisional(call, status, body)
        call.fire(CallInput.PROVISIONAL)
        self._flush()

    # -- RFC 3262 reliable provisionals ------------------------------------------------------

    def _prack_outbound(self, call: Call, outbound: Leg, response: Response) -> bool:
        """PRACK a reliable 18x from the trunk; False for a retransmission (§4).

        §4: the UAC PRACKs each reliable provisional once, in RSeq order; one
        whose RSeq is not above the last one PRACKed is a retransmission (our
        PRACK transaction does its own retransmitting). The PRACK goes in the
        early dialog, ``RAck: <RSeq> <CSeq-number> INVITE`` (§7.2). An 18x
        without a readable RSeq is relayed as an ordinary one.
        """
        raw = response.headers.get("RSeq")
        dialog = outbound.dialog
        request = outbound.request
        if raw is None or dialog is None or request is None:
            return True
        if dialog.remote_tag != (response.to_tag or "") or dialog.is_terminated:
            return True  # another fork's early dialog: not ours to acknowledge
        try:
            rseq = parse_rseq(raw)
        except SipError:
            return True
        last = self._outbound_rseq.get(call.call_id)
        if last is not None and rseq <= last:
            return False
        self._outbound_rseq[call.call_id] = rseq
        rack = RAck(rseq, request.cseq.seq, "INVITE")
        prack = dialog.create_request("PRACK", extra_headers=[("RAck", format_rack(rack))])
        # The 200 to PRACK needs nothing further: its transaction is not tracked by the call.
        self._endpoint.send_request(prack, _target_peer(dialog, outbound.peer), self._clock())
        _log.debug("prack_sent", call=call.call_id, rseq=rseq)
        return True

    def _send_provisional(self, call: Call, status: int, body: bytes) -> None:
        """Relay an 18x to the caller: reliably when it required 100rel (RFC 3262 §3)."""
        reliable = self._reliable.get(call.call_id)
        if reliable is None:
            self._answer_inbound(call, status, body=body)
            return
        if reliable.unacked is not None:
            # §3: a UAS SHOULD NOT send a second reliable provisional before the PRACK of
            # the first; it goes out when that PRACK arrives.
            reliable.queued.append((status, body))
            return
        self._send_reliable(call, reliable, status, body)

    def _send_reliable(self, call: Call, reliable: _ReliableUas, status: int, body: bytes) -> None:
        """Send one reliable 18x (Require: 100rel, RSeq, §3) and start its retransmission."""
        inbound = call.inbound
        request = inbound.request
        if request is None:
            return
        if inbound.dialog is None:
            # The PRACK comes in the early dialog our To tag creates (§3, RFC 3261 §12.1.1).
            try:
                inbound.dialog = Dialog.create_uas(
                    request, inbound.local_tag, self._local_contact(call)
                )
            except SipError:  # no Contact to send a PRACK's 200 back to: relay it unreliably
                self._answer_inbound(call, status, body=body)
                return
        rseq = reliable.next_rseq
        reliable.next_rseq += 1
        extra = [("Require", REL_OPTION_TAG), ("RSeq", str(rseq))]
        response = self._inbound_response(call, status, body=body, extra=extra)
        if response is None:
            return
        self._send_inbound(call, response)
        t1_s = self._settings.sip.t1_ms / 1000
        reliable.unacked = response
        reliable.unacked_rseq = rseq
        reliable.interval_s = t1_s
        reliable.deadline = self._clock() + 64 * t1_s
        reliable.handle = asyncio.get_running_loop().call_later(
            t1_s, self._retransmit_reliable, call, reliable
        )

    def _retransmit_reliable(self, call: Call, reliable: _ReliableUas) -> None:
        """§3: re-send at T1, 2*T1, 4*T1…; no PRACK after 64*T1 releases the call."""
        reliable.handle = None
        response = reliable.unacked
        if response is None or call.state is CallState.ENDED:
            return
        now = self._clock()
        if now >= reliable.deadline - 1e-3:
            self._reliable_timed_out(call, reliable)
            return
        self._send_inbound(call, response)
        reliable.interval_s *= 2
        delay_s = min(reliable.interval_s, max(reliable.deadline - now, 0.0))
        reliable.handle = asyncio.get_running_loop().call_later(
            delay_s, self._retransmit_reliable, call, reliable
        )
        self._flush()

    def _reliable_timed_out(self, call: Call, reliable: _ReliableUas) -> None:
        """§3: the PRACK never came: reject the INVITE with 5xx, release the outbound leg."""
        if not call.can(CallInput.FAILED):
            return
        _log.info("prack_timeout", call=call.call_id, rseq=reliable.unacked_rseq)
        reliable.unacked = None
        reliable.queued.clear()
        reliable.held_answer = None
        call.release_dir = ReleaseDir.PLATFORM
        call.release_cause = Q850_RECOVERY_ON_TIMER_EXPIRY
        if call.state is CallState.ANSWERED and call.outbound is not None:
            self._send_bye(call.outbound)  # the callee answered while we waited
        else:
            self._cancel_outbound(call)
        self._answer_inbound(call, 500, "Server Internal Error (no PRACK)")
        if call.inbound.dialog is not None:
            call.inbound.dialog.terminate()
        call.fire(CallInput.FAILED)
        self._finish(call)
        self._flush()

    def _on_prack(self, call: Call, event: RequestReceived, *, from_caller: bool) -> None:
        """A PRACK on the inbound early dialog (§3): 200 if its RAck matches, else 481."""
        request = event.request
        reliable = self._reliable.get(call.call_id) if from_caller else None
        inbound_request = call.inbound.request
        rack: RAck | None = None
        raw = request.headers.get("RAck")
        if raw is not None:
            with contextlib.suppress(SipError):
                rack = parse_rack(raw)
        if (
            reliable is None
            or reliable.unacked is None
            or inbound_request is None
            or rack != RAck(reliable.unacked_rseq, inbound_request.cseq.seq, "INVITE")
        ):
            # §3: a PRACK matching no unacknowledged reliable provisional gets 481.
            self._answer(
                event.tx_key, request, 481, "Call/Transaction Does Not Exist (RAck matches nothing)"
            )
            return
        self._answer(event.tx_key, request, 200)
        if reliable.handle is not None:
            reliable.handle.cancel()
            reliable.handle = None
        reliable.unacked = None
        if reliable.queued:
            status, body = reliable.queued.pop(0)
            self._send_reliable(call, reliable, status, body)
        elif reliable.held_answer is not None:
            send_answer, reliable.held_answer = reliable.held_answer, None
            send_answer()
        self._flush()

    def _on_answer(self, call: Call, response: Response) -> None:
        outbound = call.outbound
        assert outbound is not None and outbound.request is not None
        if outbound.dialog is None or outbound.dialog.remote_tag != (response.to_tag or ""):
            outbound.dialog = Dialog.create_uac(outbound.request, response)
        else:
            outbound.dialog.receive_response("INVITE", response)
        self._send_ack(outbound, outbound.request.cseq.seq)
        if not call.can(CallInput.ANSWERED):
            if call.state is CallState.ENDED:
                self._send_bye(outbound)  # answered after we gave up (RFC 3261 §15)
            self._flush()
            return  # a 2xx retransmission: the ACK above was all it needed
        media = self._media.get(call.call_id)
        if media is not None and media.caller_answer:
            # The caller has our own answer already (ringback 183, IVR 200) and keeps it; our
            # tone stops now, and the callee's media is relayed from its first packet.
            self._expect_callee(call, response)
            body = media.caller_answer
            if media.call_media is not None:
                media.call_media.stop_playback()
        else:
            body = self._answer_sdp_for_caller(call, response)
        outbound.session_timer = _uac_session(response, None)
        outbound.peer_allows_update = _allows_update(response)
        connecting = call.state is CallState.CONNECTING
        if not connecting:
            reliable = self._reliable.get(call.call_id)
            if reliable is not None and (reliable.unacked is not None or reliable.queued):
                # RFC 3262 §3: no final response before the PRACK of every reliable provisional.
                call.inbound.local_sdp = body
                reliable.held_answer = functools.partial(self._answer_caller, call, body)
            else:
                self._answer_caller(call, body)
        call.start_time = self._wall_clock()
        self._events.call_answered(call)
        call.fire(CallInput.ANSWERED)
        if connecting:
            # The caller's leg has been up since the IVR: its session timer and maximum
            # duration run on; only the ringing timeout ends.
            ring_timer = self._ring_timers.pop(call.call_id, None)
            if ring_timer is not None:
                ring_timer.cancel()
                with contextlib.suppress(ValueError):
                    call.timers.remove(ring_timer)
        else:
            self._cancel_timers(call)
        self._update_media_watch(call)
        self._start_recording(call)
        if not connecting:
            call.timers.append(self._max_durations.start(call))
            self._arm_session_timer(call, call.inbound)
        self._arm_session_timer(call, outbound)
        self._flush()

    def _answer_caller(self, call: Call, body: bytes) -> None:
        """Send the 200 to the caller's INVITE with ``body`` and confirm its dialog."""
        inbound = call.inbound
        inbound_request = inbound.request
        assert inbound_request is not None
        inbound.local_sdp = body
        # RFC 4028 §9: the 2xx tells the caller the interval and who refreshes.
        self._answer_inbound(
            call, 200, body=body, extra=_session_timer_response_headers(inbound.session_timer)
        )
        dialog = inbound.dialog
        if dialog is None:
            dialog = inbound.dialog = Dialog.create_uas(
                inbound_request, inbound.local_tag, self._local_contact(call)
            )
        if dialog.state is DialogState.EARLY:
            dialog.confirm()

    def _on_rejected(self, call: Call, response: Response) -> None:
        if not call.can(CallInput.CALLEE_REJECTED):
            return
        status = response.status_code
        if status == 422:
            if self._retry_with_min_se(call, response):
                return
            # Our interval is the trunk's business, not the caller's: never relay the 422.
            status = 500
            response = Response(500, "Server Internal Error (trunk session interval refused)")
        if status in (401, 407):
            if self._retry_with_credentials(call, response):
                return
            # The caller cannot answer our trunk's challenge: refuse, never relay it.
            status = 403
            response = Response(403, "Forbidden (trunk authentication failed)")
        call.release_dir = ReleaseDir.CALLEE
        call.release_cause = q850_for_status(status)
        if call.state is CallState.CONNECTING:
            # The caller's leg is up (extension IVR): A's refusal ends it with a BYE whose
            # Reason carries the cause (RFC 3326), e.g. 17 user busy for a 486.
            text = (response.reason or "").strip().replace('"', "'") or f"SIP {status}"
            self._send_bye(call.inbound, reason=_q850_reason(call.release_cause, text))
            call.fire(CallInput.CALLEE_REJECTED)
            self._finish(call)
            self._flush()
            return
        self._answer_inbound(call, status if status != 487 else 480, response.reason or None)
        call.fire(CallInput.CALLEE_REJECTED)
        self._finish(call)

    def _retry_with_credentials(self, call: Call, response: Response) -> bool:
        """Answer the trunk's 401/407 once with the configured Digest credentials (§22.2)."""
        trunk = self._call_trunks.get(call.call_id)
        outbound = call.outbound
        if (
            trunk is None
            or trunk.auth_username is None
            or trunk.auth_password is None
            or outbound is None
            or outbound.request is None
            or call.call_id in self._authenticated
        ):
            return False
        answer = answer_challenge(
            response,
            outbound.request,
            username=trunk.auth_username,
            password=trunk.auth_password,
        )
        if answer is None:
            return False
        name, credentials = answer
        self._authenticated.add(call.call_id)
        self._resend_outbound_invite(call, outbound, {name: credentials})
        return True

    def _retry_with_min_se(self, call: Call, response: Response) -> bool:
        """Answer the trunk's 422 once, asking at least its Min-SE (RFC 4028 §7.3)."""
        outbound = call.outbound
        raw = response.headers.get("Min-SE")
        if (
            outbound is None
            or outbound.request is None
            or raw is None
            or call.call_id in self._min_se_retried
        ):
            return False
        try:
            their_min_s = parse_min_se(raw)
        except SipError:
            return False
        self._min_se_retried.add(call.call_id)
        interval_s = max(self._settings.sip.session_expires_s, their_min_s)
        self._resend_outbound_invite(
            call,
            outbound,
            {"Session-Expires": str(interval_s), "Min-SE": str(their_min_s)},
        )
        return True

    def _resend_outbound_invite(self, call: Call, outbound: Leg, changes: dict[str, str]) -> None:
        """The outbound INVITE again with a new CSeq and ``changes`` set (§22.2, RFC 4028 §7.3)."""
        previous = outbound.request
        assert previous is not None
        retry = Request("INVITE", previous.uri, previous.headers.copy(), previous.body)
        retry.headers.remove("Via")  # the endpoint adds a fresh top Via and branch
        retry.headers.set("CSeq", f"{previous.cseq.seq + 1} INVITE")
        for name, value in changes.items():
            retry.headers.set(name, value)
        if outbound.tx_key is not None:
            self._calls_by_tx.pop(outbound.tx_key, None)
        outbound.request = retry
        outbound.tx_key = self._endpoint.send_request(retry, outbound.peer, self._clock())
        self._calls_by_tx[outbound.tx_key] = call
        self._flush()

    def _expect_callee(self, call: Call, response: Response) -> None:
        """Point the relay's side b at the address of the callee's answer (early or final)."""
        media = self._media.get(call.call_id)
        if media is None or media.session is None or not response.body:
            return
        try:
            answer = parse_sdp(response.body)
        except SdpError:
            return
        media.session.expect("b", media_endpoint(answer, media.stream))
        media.sendrecv = media.offer_sendrecv and _sendrecv(answer, media.stream)

    def _answer_sdp_for_caller(self, call: Call, response: Response) -> bytes:
        media = self._media.get(call.call_id)
        if media is None or media.session is None or not response.body:
            return b""
        try:
            answer = parse_sdp(response.body)
        except SdpError:
            return b""
        media.session.expect("b", media_endpoint(answer, media.stream))
        media.sendrecv = media.offer_sendrecv and _sendrecv(answer, media.stream)
        media.sdp_version += 1
        return rewrite_for_leg(
            answer,
            address=self._settings.media.address,
            ports=ports_for_stream(answer, media.stream, media.session.port_a),
            session_id=int(call.call_time) + 1,
            version=media.sdp_version,
        )

    def _mid_call_offer(self, event: RequestReceived, *, stream: int) -> SessionDescription | None:
        """The relayable offer of a re-INVITE/UPDATE, or None once it is refused with 488 (RFC
        3261 §14.2: the request fails, the session goes on as it was)."""
        request = event.request
        try:
            return self._relayable_offer(request.body, stream=stream)
        except NotRelayable as error:
            self._answer(event.tx_key, request, 488, extra=[("Warning", self._warning(error))])
        except SdpError:
            self._answer(event.tx_key, request, 488, "Not Acceptable Here (unreadable SDP)")
        return None

    def _relayable_offer(self, body: bytes, *, stream: int | None = None) -> SessionDescription:
        """The offer in ``body`` with its relayed stream reduced to what we handle (G.711,
        telephone-event, CN; see media.sdp). ``stream``: the stream a re-offer must keep
        relayable (m= lines never move, RFC 3264 §8). Raises ``NotRelayable`` or ``SdpError``.
        """
        offer = parse_sdp(body)
        index = relayable_stream(offer)
        if stream is not None and index != stream:
            raise NotRelayable(305, "the relayed stream is no longer G.711 audio")
        return keep_relayable_formats(offer, index)

    def _warning(self, error: NotRelayable) -> str:
        """RFC 3261 §20.43 Warning value, our SIP address as the warn-agent."""
        return error.warning(self._local_hostport)

    # -- timers -------------------------------------------------------------------------------

    def _ring_timeout(self, call: Call) -> None:
        self._ring_timers.pop(call.call_id, None)
        if not call.can(CallInput.RING_TIMEOUT):
            return
        if call.state is CallState.CONNECTING:
            reason = _q850_reason(Q850_NO_ANSWER, "no answer")
            self._release_answered(
                call, CallInput.RING_TIMEOUT, cause=Q850_NO_ANSWER, reason=reason
            )
            self._flush()
            return
        call.release_dir = ReleaseDir.PLATFORM
        call.release_cause = Q850_NO_ANSWER
        self._cancel_outbound(call)
        self._answer_inbound(call, 480, "Temporarily Unavailable (no answer)")
        call.fire(CallInput.RING_TIMEOUT)
        self._finish(call)
        self._flush()

    def _max_duration(self, call: Call) -> None:
        if not call.can(CallInput.MAX_DURATION):
            return
        self._release_answered(call, CallInput.MAX_DURATION, cause=Q850_NORMAL_CLEARING)
        self._flush()

    # -- dead media ---------------------------------------------------------------------------
    #
    # Answered calls only: before the answer a call is bounded by its ringing timeout, and a
    # callee that rings without early media (a plain 180) sends no RTP at all. The clock starts
    # at the answer (media that never starts is dead media too) and runs while the relayed
    # stream is sendrecv both ways. The relay counts packets per call anyway; one timer for all
    # calls compares the counters sweep to sweep (MediaRelay.sweep_idle), so the per-packet
    # path reads no clock.

    # -- recording ----------------------------------------------------------------------------

    def _start_recording(self, call: Call) -> None:
        """Record the conversation from the answer on: the recording's sample 0 is now.

        The call's CallMedia installs the relay hook (unrecorded calls relay with none once any
        tone has stopped: one ``is None`` test per packet). The recording appends the datagram
        and its arrival time, nothing more; decoding and writing happen after the call, off the
        loop (records).
        """
        media = self._media.get(call.call_id)
        if media is None or media.session is None or media.recording is None:
            return
        media.recording.started_at = self._clock()
        self._call_media(media).record(media.recording)

    def _update_media_watch(self, call: Call) -> None:
        """Start or pause the dead-media watch of an answered call after an offer/answer."""
        media = self._media.get(call.call_id)
        if media is None or media.session is None or call.state not in CALLER_ANSWERED_STATES:
            return
        session = media.session
        if not media.sendrecv:
            session.stop_watching()
        elif not session.watched:
            # Already watched (a refresh, a move): the clock goes on, so a peer re-INVITEing
            # more often than the timeout cannot keep a dead call up.
            session.watch_inactivity(self._clock())
            self._arm_media_sweep()

    def _arm_media_sweep(self) -> None:
        if self._media_sweep is not None:
            return
        timeout_s = self._settings.media.inactivity_timeout_s
        period_s = min(_MEDIA_SWEEP_MAX_PERIOD_S, timeout_s / 4)
        loop = asyncio.get_running_loop()
        self._media_sweep = loop.call_later(period_s, self._sweep_media)

    def _sweep_media(self) -> None:
        """Release every answered call whose media has been silent for the timeout."""
        self._media_sweep = None
        timeout_s = self._settings.media.inactivity_timeout_s
        released = False
        for session in self._relay.sweep_idle(self._clock(), timeout_s):
            call = self._active.get(session.label)
            if call is None or not call.can(CallInput.MEDIA_TIMEOUT):
                session.stop_watching()  # closing already, or not ours to release
                continue
            _log.info(
                "media_timeout",
                call=call.call_id,
                timeout_s=timeout_s,
                packets_a_to_b=session.packets_a_to_b,
                packets_b_to_a=session.packets_b_to_a,
            )
            session.stop_watching()
            self._release_answered(
                call,
                CallInput.MEDIA_TIMEOUT,
                cause=Q850_MEDIA_TIMEOUT,
                reason=_MEDIA_TIMEOUT_REASON,
            )
            released = True
        if released:
            self._flush()
        if self._relay.watched_sessions:
            self._arm_media_sweep()

    # -- session timers (RFC 4028) -------------------------------------------------------------

    def _negotiate_inbound(self, event: RequestReceived) -> Negotiated | Literal[False] | None:
        """The session timer a request from a peer asks for (RFC 4028 §9), or False once refused.

        A Session-Expires below our ``min_se_s`` is answered 422 with our Min-SE
        (§8.1/§9), a malformed one 400; both end the transaction here.
        """
        request = event.request
        sip = self._settings.sip
        try:
            result = negotiate_as_uas(
                request.headers, min_se_s=sip.min_se_s, session_expires_s=sip.session_expires_s
            )
        except SipError as error:
            self._answer(event.tx_key, request, error.status_code, "Bad Request (session timer)")
            return False
        if isinstance(result, TooSmall):
            response = make_response(
                request, 422, None, to_tag=new_tag(), extra=[("Min-SE", str(result.min_se_s))]
            )
            self._endpoint.send_response(event.tx_key, response, self._clock())
            return False
        return result

    def _refresh_headers(self, leg: Leg) -> list[tuple[str, str]]:
        """Session timer headers of a re-INVITE/UPDATE we send on ``leg`` (RFC 4028 §7.4)."""
        timer = leg.session_timer
        if timer is None:
            return []
        # In a request we send we are the UAC: "uac" says we keep refreshing.
        refresher = Refresher.UAC if timer.local_refreshes else Refresher.UAS
        min_se_s = min(self._settings.sip.min_se_s, timer.interval_s)
        value = format_session_expires(SessionExpires(timer.interval_s, refresher))
        return [("Supported", OPTION_TAG), ("Session-Expires", value), ("Min-SE", str(min_se_s))]

    def _refreshed(self, call: Call, leg: Leg, session: Negotiated | None) -> None:
        """A 2xx refresh on ``leg``: the session timer it set, counted from now."""
        leg.session_timer = session
        self._arm_session_timer(call, leg)

    def _arm_session_timer(self, call: Call, leg: Leg) -> None:
        """(Re)start the expiry of ``leg`` and, when we are its refresher, its next refresh."""
        for handle in leg.session_handles:
            _cancel_handle(handle)
            with contextlib.suppress(ValueError):
                call.timers.remove(handle)
        leg.session_handles.clear()
        timer = leg.session_timer
        if timer is None or call.state not in CALLER_ANSWERED_STATES:
            return
        loop = asyncio.get_running_loop()
        expiry_s = expiry_after_s(timer.interval_s, local_refreshes=timer.local_refreshes)
        handles = [loop.call_later(expiry_s, self._session_expired, call, leg)]
        if timer.local_refreshes:
            refresh_s = refresh_after_s(timer.interval_s)
            handles.append(loop.call_later(refresh_s, self._send_refresh, call, leg))
        leg.session_handles.extend(handles)
        call.timers.extend(handles)

    def _send_refresh(self, call: Call, leg: Leg) -> None:
        """We are the refresher of ``leg``: UPDATE without body if the peer allows it, else a
        re-INVITE offering the SDP we last sent, unchanged (RFC 4028 §7.4, RFC 3264 §8)."""
        dialog = leg.dialog
        if (
            call.state not in CALLER_ANSWERED_STATES
            or leg.session_timer is None
            or dialog is None
            or dialog.is_terminated
        ):
            return
        use_update = leg.peer_allows_update or not leg.local_sdp
        if not use_update and call.call_id in self._reinvites:
            # An INVITE relayed through this call may be in progress on this leg: one INVITE
            # transaction at a time (RFC 3261 §14.1). Its 2xx refreshes the leg anyway; retry soon.
            handle = asyncio.get_running_loop().call_later(2.0, self._send_refresh, call, leg)
            leg.session_handles.append(handle)
            call.timers.append(handle)
            return
        method = "UPDATE" if use_update else "INVITE"
        body = b"" if use_update else leg.local_sdp
        request = dialog.create_request(
            method,
            extra_headers=self._refresh_headers(leg),
            body=body,
            content_type=SDP if body else None,
        )
        tx_key = self._endpoint.send_request(request, _target_peer(dialog, leg.peer), self._clock())
        self._calls_by_tx[tx_key] = call
        self._refreshes[tx_key] = _Refresh(call=call, leg=leg, method=method, seq=request.cseq.seq)
        _log.debug("session_refresh_sent", call=call.call_id, method=method)
        self._flush()

    def _on_refresh_response(self, refresh: _Refresh, tx_key: TxKey, response: Response) -> None:
        """The final answer to our refresh: 2xx restarts the timer, 408/481 end the call (§10)."""
        status = response.status_code
        if status < 200:
            return
        del self._refreshes[tx_key]
        self._calls_by_tx.pop(tx_key, None)
        call, leg = refresh.call, refresh.leg
        dialog = leg.dialog
        if dialog is None:
            return
        dialog.receive_response(refresh.method, response)
        if status < 300:
            if refresh.method == "INVITE":
                self._send_ack(leg, refresh.seq)
            # §7.2: the 2xx says the interval from now on (none: no more session expiration).
            self._refreshed(call, leg, _uac_session(response, leg.session_timer))
        elif status in (408, 481):
            self._release_session(call, cause=q850_for_status(status), why=f"refresh_{status}")
        else:
            # Any other refusal (491, 5xx…) leaves the session as it was: the expiry timer,
            # still running, releases the call unless a later refresh succeeds.
            _log.info("session_refresh_refused", call=call.call_id, status=status)
        self._flush()

    def _session_expired(self, call: Call, leg: Leg) -> None:
        side = "inbound" if leg is call.inbound else "outbound"
        self._release_session(
            call, cause=Q850_RECOVERY_ON_TIMER_EXPIRY, why=f"session_expired_{side}"
        )

    def _release_session(self, call: Call, *, cause: int, why: str) -> None:
        """A leg's session is over (RFC 4028 §10): BYE on both legs, the platform released."""
        if not call.can(CallInput.SESSION_EXPIRED):
            return
        _log.info("session_timer_release", call=call.call_id, reason=why)
        self._release_answered(call, CallInput.SESSION_EXPIRED, cause=cause)
        self._flush()

    # -- helpers ------------------------------------------------------------------------------

    def _release_answered(
        self, call: Call, call_input: CallInput, *, cause: int, reason: str | None = None
    ) -> None:
        """The platform ends a call whose caller is answered: BYE on both legs (with
        ``reason`` as their RFC 3326 Reason header, if given) — CANCEL instead of BYE for an
        outbound leg still ringing (CONNECTING) — then the usual release."""
        call.release_dir = ReleaseDir.PLATFORM
        call.release_cause = cause
        self._send_bye(call.inbound, reason=reason)
        if call.state is CallState.CONNECTING:
            self._cancel_outbound(call)
        elif call.outbound is not None:
            self._send_bye(call.outbound, reason=reason)
        call.fire(call_input)
        self._finish(call)

    def _intercept(self, call: Call, decision: Intercept) -> None:
        binding = decision.binding
        if binding is not None:
            call.sub_id = binding.sub_id
            call.pool_key = binding.pool_key
            call.out_id = binding.out_id
            call.phone_no = binding.a
        call.call_type = 4
        call.unconnected_cause = decision.cause.unconnected_cause
        self._events.call_started(call)
        status, reason = INTERCEPT_STATUS[decision.cause]
        call.release_dir = ReleaseDir.PLATFORM
        call.release_cause = q850_for_status(status)
        announcement = self._announcement(call, decision.cause)
        if announcement is not None:
            call.fire(CallInput.ANNOUNCE)
            self._spawn(self._announce(call, *announcement, status=status, reason=reason))
            return
        self._answer_inbound(call, status, reason)
        call.fire(CallInput.FAILED)
        self._finish(call)

    # -- announcements ------------------------------------------------------------------------
    #
    # An intercepted call whose caller offered G.711 hears why (SPEC §4): 183 Session Progress
    # with our own SDP answer, the cause's prompt once as early media, then the final response
    # it always got (INTERCEPT_STATUS). A relay session is opened for the prompt only and closed
    # with the call. No offer, no G.711 or no prompt file: the final response at once. A CANCEL
    # during the prompt ends it (487); the record is the intercept's, with the caller's release.

    def _announcement(
        self, call: Call, cause: InterceptCause
    ) -> tuple[SessionDescription, int, int, Sequence[bytes]] | None:
        """(offer, stream, codec, prompt frames) to announce ``cause`` with, or None."""
        if self._prompts is None or call.inbound.request is None:
            return None
        answerable = self._answerable_offer(call.inbound.request)
        if answerable is None:
            return None
        offer, stream, codec = answerable
        frames = self._prompts.frames(prompt_for_cause(cause), codec)
        return (offer, stream, codec, frames) if frames else None

    async def _announce(
        self,
        call: Call,
        offer: SessionDescription,
        stream: int,
        codec: int,
        frames: Sequence[bytes],
        *,
        status: int,
        reason: str,
    ) -> None:
        try:
            session = await self._relay.open_session(call.call_id)
        except Exception:
            _log.exception("media_session_failed", call=call.call_id)
            session = None
        if session is not None:
            media = self._media[call.call_id] = _MediaState(
                session=session, stream=stream, codec=codec
            )
            if call.state is not CallState.ANNOUNCING:  # cancelled while the ports were opened
                await self._close_media(call)
                return
            session.expect("a", media_endpoint(offer, stream))
            media.caller_answer = self._caller_sdp(call, offer, media)
            self._send_provisional(call, 183, media.caller_answer)
            self._flush()
            _log.info("announcement_started", call=call.call_id, cause=call.unconnected_cause)
            await self._call_media(media).play_to_caller(frames)
        if not call.can(CallInput.FAILED):
            return  # cancelled (487 sent) or released at shutdown during the prompt
        self._answer_inbound(call, status, reason)
        call.fire(CallInput.FAILED)
        self._finish(call)
        self._flush()

    # -- the AXN-extension IVR ----------------------------------------------------------------
    #
    # N calls an AXN-extension X (NeedsExtension): we answer the caller ourselves (200 with our
    # SDP answer), watch its media for inactivity and run ExtensionIvr: the prompt, keys from
    # RFC 4733 events (the relay hook, via CallMedia) and from SIP INFO (_on_info_key), lookups
    # in the binding index with the extension, retries. Found → the INVITE to A goes out as in
    # _connect, cut to the caller's codec, while the caller hears the enterprise ringback (or
    # the national ringing tone) until A's own media or answer; A's answer only starts the
    # relay, the caller has had our SDP since the IVR. A busy, unanswered or failing → BYE to
    # the caller with the Q.850 cause in a Reason header. Not found after [ivr] max_tries → the
    # not-found prompt, then BYE; the record is an intercept (NO_BINDING) of the X's pool.

    async def _start_ivr(
        self,
        call: Call,
        need: NeedsExtension,
        trunk: TrunkSettings,
        answerable: tuple[SessionDescription, int, int],
    ) -> None:
        offer, stream, codec = answerable
        try:
            session = await self._relay.open_session(call.call_id)
        except Exception:
            _log.exception("media_session_failed", call=call.call_id)
            self._fail_setup(call, 503, "Service Unavailable (no media ports)")
            return
        media = self._media[call.call_id] = _MediaState(
            session=session,
            stream=stream,
            codec=codec,
            event_payload_type=telephone_event_payload_type(offer.media[stream]),
            offer=offer,
        )
        if call.state is not CallState.ROUTING:  # cancelled while the ports were opened
            await self._close_media(call)
            return
        session.expect("a", media_endpoint(offer, stream))
        media.caller_answer = self._caller_sdp(call, offer, media)
        try:
            self._answer_caller(call, media.caller_answer)
        except SipError:  # no Contact to build the dialog on (RFC 3261 §12.1.1)
            self._fail_setup(call, 400, "Bad Request (no Contact)")
            return
        call.fire(CallInput.IVR_ANSWERED)
        call.timers.append(self._max_durations.start(call))
        self._arm_session_timer(call, call.inbound)
        self._update_media_watch(call)
        assert self._prompts is not None
        settings = self._settings.ivr
        media.ivr = ExtensionIvr(
            self._call_media(media),
            self._prompts,
            lookup=functools.partial(self._lookup_extension, need),
            on_outcome=functools.partial(self._on_ivr_outcome, call, trunk),
            max_tries=settings.max_tries,
            inter_digit_timeout_s=settings.inter_digit_timeout_s,
            max_length=DEFAULT_MAX_LENGTH,
        )
        media.ivr.start()
        _log.info("ivr_started", call=call.call_id)
        self._flush()

    def _lookup_extension(self, need: NeedsExtension, extension: str) -> Route | None:
        """The route of the binding (X, extension) for this caller now, or None for anything
        that would not connect (unknown, expired, blocked, restricted, X unverified)."""
        now = self._wall_clock()
        decision = self._index.resolve(need.x, need.caller, now=now, extension=extension)
        if not isinstance(decision, Route):
            return None
        if self._x_usable is not None and not self._x_usable(decision.binding.x, now):
            return None
        return decision

    def _on_ivr_outcome(
        self,
        call: Call,
        trunk: TrunkSettings,
        outcome: ExtensionFound[Route] | ExtensionNotFound,
    ) -> None:
        media = self._media.get(call.call_id)
        if media is not None:
            media.ivr = None
        if call.state is not CallState.IVR:
            return
        if isinstance(outcome, ExtensionFound):
            _log.info("extension_found", call=call.call_id)
            self._spawn(self._connect_extension(call, outcome.found, trunk))
            return
        _log.info("extension_not_found", call=call.call_id)
        call.call_type = 4
        call.unconnected_cause = InterceptCause.NO_BINDING.unconnected_cause
        self._events.call_started(call)
        reason = _q850_reason(Q850_UNALLOCATED, "extension not found")
        self._release_answered(
            call, CallInput.EXTENSION_NOT_FOUND, cause=Q850_UNALLOCATED, reason=reason
        )
        self._flush()

    async def _connect_extension(self, call: Call, route: Route, trunk: TrunkSettings) -> None:
        """Ring A for an extension caller already answered by us (IVR → CONNECTING)."""
        media = self._media.get(call.call_id)
        if media is None or media.session is None or media.offer is None or media.codec is None:
            return
        self._take_route(call, route)
        tone: Sequence[bytes] = ()
        if self._ringback is not None:
            tone = await self._ringback_for(call, route.binding, route.call_type, media.codec)
            if call.state is not CallState.IVR:
                return  # the caller hung up meanwhile
        if route.binding.record:
            media.recording = CallRecording(
                clock=self._clock, max_duration_s=self._settings.sip.max_call_duration_s
            )
        offer = keep_relayable_formats(media.offer, media.stream, codec=media.codec)
        self._send_outbound(call, route, trunk, offer, media)
        # While A rings the ringing timeout bounds the call; the dead-media watch resumes at
        # the answer (a caller's phone may well send nothing while it listens to ringback).
        media.session.stop_watching()
        self._call_media(media).play_to_caller(
            tone or ringing_tone_frames(media.codec), loop=True, until_callee_media=True
        )
        self._flush()

    def _fail_setup(
        self,
        call: Call,
        status: int,
        reason: str | None = None,
        *,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        if not call.can(CallInput.FAILED):
            return
        call.release_dir = ReleaseDir.PLATFORM
        call.release_cause = q850_for_status(status)
        self._answer_inbound(call, status, reason, extra=extra)
        call.fire(CallInput.FAILED)
        self._finish(call)
        self._flush()

    def _answer(
        self,
        tx_key: TxKey,
        request: Request,
        status: int,
        reason: str | None = None,
        *,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        response = make_response(request, status, reason, to_tag=new_tag(), extra=extra)
        self._endpoint.send_response(tx_key, response, self._clock())

    def _answer_inbound(
        self,
        call: Call,
        status: int,
        reason: str | None = None,
        *,
        body: bytes = b"",
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        response = self._inbound_response(call, status, reason, body=body, extra=extra)
        if response is not None:
            self._send_inbound(call, response)

    def _inbound_response(
        self,
        call: Call,
        status: int,
        reason: str | None = None,
        *,
        body: bytes = b"",
        extra: list[tuple[str, str]] | None = None,
    ) -> Response | None:
        """A response to the caller's INVITE (None when there is no INVITE to answer)."""
        inbound = call.inbound
        if inbound.tx_key is None or inbound.request is None:
            return None
        extra = list(extra or [])
        if status < 300:
            extra.append(("Contact", self._local_contact_text(call)))
        if status >= 200 or body:
            extra.append(("Allow", ALLOW))
        return make_response(
            inbound.request,
            status,
            reason,
            to_tag=inbound.local_tag,
            extra=extra,
            body=body,
            content_type=SDP if body else None,
        )

    def _send_inbound(self, call: Call, response: Response) -> None:
        tx_key = call.inbound.tx_key
        if tx_key is None:
            return
        try:
            self._endpoint.send_response(tx_key, response, self._clock())
        except SipUsageError:  # the inbound transaction already ended
            _log.warning("inbound_answer_failed", call=call.call_id, status=response.status_code)

    def _local_contact(self, call: Call) -> SipUri:
        return SipUri(
            user=call.x.lstrip("+") or None, host=self._listen_host, port=self._listen_port
        )

    def _local_contact_text(self, call: Call) -> str:
        """``_local_contact`` rendered, once per X (every response with a Contact needs it)."""
        text = self._contacts.get(call.x)
        if text is None:
            text = self._contacts[call.x] = str(self._local_contact(call))
        return text

    def _cancel_outbound(self, call: Call) -> None:
        outbound = call.outbound
        if outbound is None or outbound.tx_key is None:
            return
        # The transaction already ended: a final response is on its way.
        with contextlib.suppress(SipUsageError):
            self._endpoint.send_cancel(outbound.tx_key, self._clock())

    def _send_bye(self, leg: Leg, *, reason: str | None = None) -> None:
        dialog = leg.dialog
        if dialog is None or dialog.is_terminated:
            return
        if dialog.role is DialogRole.UAS and dialog.state is DialogState.EARLY:
            return  # RFC 3261 §15: never a BYE on our early UAS dialog (a 200 held for PRACK)
        bye = dialog.create_request(
            "BYE", extra_headers=[("Reason", reason)] if reason is not None else None
        )
        peer = _target_peer(dialog, leg.peer)
        self._endpoint.send_request(bye, peer, self._clock())

    def _send_ack(self, leg: Leg, invite_seq: int) -> None:
        dialog = leg.dialog
        assert dialog is not None
        ack = dialog.create_ack(invite_seq)
        self._endpoint.send_ack(ack, _target_peer(dialog, leg.peer))

    def _ack_stray_2xx(self, response: Response) -> None:
        call = self._calls_by_leg.get((response.call_id, response.from_tag or ""))
        if call is None:
            return
        # Our refresh re-INVITEs go on either leg: the Call-ID says which (RFC 4028 §7.4).
        leg = call.inbound if response.call_id == call.inbound.call_id else call.outbound
        if leg is not None and leg.dialog is not None and response.cseq.method == "INVITE":
            with contextlib.suppress(SipUsageError):
                self._send_ack(leg, response.cseq.seq)
            self._flush()

    def _cancel_timers(self, call: Call) -> None:
        for handle in call.timers:
            _cancel_handle(handle)
        call.timers.clear()

    def _finish(self, call: Call) -> None:
        """The call ended: stop its timers, free media, write its record, forget it later."""
        if call.release_time is not None:
            return
        call.release_time = self._wall_clock()
        self._reinvites.pop(call.call_id, None)
        self._call_trunks.pop(call.call_id, None)
        self._authenticated.discard(call.call_id)
        self._min_se_retried.discard(call.call_id)
        self._outbound_rseq.pop(call.call_id, None)
        self._ring_timers.pop(call.call_id, None)
        media = self._media.get(call.call_id)
        if media is not None:
            # Nothing more is played or keyed from now; the session closes right after.
            if media.ivr is not None:
                media.ivr.close()
                media.ivr = None
            if media.call_media is not None:
                media.call_media.close()
        reliable = self._reliable.pop(call.call_id, None)
        if reliable is not None:
            if reliable.handle is not None:
                reliable.handle.cancel()
            if reliable.held_answer is not None:
                # The call ended while its 200 waited for a PRACK: the INVITE still needs a
                # final response (RFC 3261 §15: 487 after a BYE on the early dialog).
                self._answer_inbound(call, 487)
        for tx_key in [key for key, refresh in self._refreshes.items() if refresh.call is call]:
            del self._refreshes[tx_key]
        self._cancel_timers(call)
        self._active.pop(call.call_id, None)
        self._spawn(self._close_call(call))

    async def _close_call(self, call: Call) -> None:
        recording = await self._close_media(call)
        try:
            await self._record_sink(call, recording)
        except Exception:
            _log.exception("call_record_failed", call=call.call_id)
        # Keep the mappings 64*T1 longer so late retransmissions still find the call: what they
        # need is the dialogs and our INVITE (a late 2xx is ACKed, and BYEd after the end: RFC
        # 3261 §15). The caller's INVITE, answered for good, and the SDP we sent are let go:
        # under load the calls kept are most of what a full collection walks (bench/heap.py).
        call.inbound.request = None
        call.inbound.local_sdp = b""
        if call.outbound is not None:
            call.outbound.local_sdp = b""
        self._keep_ended(call)

    def _keep_ended(self, call: Call) -> None:
        """Keep ``call`` findable ``keep_ended_call_s`` more, then forget it: one queue and one
        timer for all ended calls (``engine.calls.KeptFor``), instead of a loop timer per call
        (a handle, its context, a bound method and uvloop's timer held 32 s where a tuple is
        now: at 1,000 calls/s ~96,000 fewer objects for a full collection to walk,
        bench/heap.py); under load the timer runs ~10 times a second, not once per call."""
        loop = asyncio.get_running_loop()
        if self._ended.add(call, loop.time()):
            self._arm_forget(loop)

    def _arm_forget(self, loop: asyncio.AbstractEventLoop) -> None:
        due = self._ended.next_due()
        self._ended_timer = None if due is None else loop.call_at(due, self._forget_ended)

    def _forget_ended(self) -> None:
        loop = asyncio.get_running_loop()
        for call in self._ended.pop_due(loop.time()):
            self._forget(call)
        self._arm_forget(loop)

    async def _close_media(self, call: Call) -> CallRecording | None:
        """Close the call's relay session; its recording, complete now, is returned."""
        media = self._media.pop(call.call_id, None)
        if media is None:
            return None
        if media.session is not None:
            session = media.session
            session.on_packet = None
            await session.close()
            # Logged with the call record (engine.records call_ended): one line per call.
            call.media_packets = (
                session.packets_a_to_b,
                session.packets_b_to_a,
                session.dropped,  # strangers and non-RTP (media.relay latching)
            )
        return media.recording

    def _forget(self, call: Call) -> None:
        for leg in (call.inbound, call.outbound):
            if leg is None:
                continue
            if leg.tx_key is not None:
                self._calls_by_tx.pop(leg.tx_key, None)
            self._calls_by_leg.pop((leg.call_id, leg.local_tag), None)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], *, eagerly: bool = False) -> None:
        task = start_eagerly(coroutine) if eagerly else asyncio.ensure_future(coroutine)
        if task is not None:  # None: it finished without waiting for anything
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _trunk_for(self, peer: Peer) -> TrunkSettings | None:
        host = peer.host
        try:
            return self._trunk_of_host[host]
        except KeyError:
            pass
        found: TrunkSettings | None = None
        for trunk in self._settings.trunks:
            if trunk.allows(host):
                found = trunk
                break
        if len(self._trunk_of_host) >= _TRUNK_CACHE_HOSTS:
            self._trunk_of_host.clear()  # a flood from many sources: start again, stay bounded
        self._trunk_of_host[host] = found
        return found


def uri_user(uri: object) -> str | None:
    """The user part of a SIP URI or the number of a tel URI (None for anything else)."""
    if isinstance(uri, SipUri):
        return uri.user
    if isinstance(uri, TelUri):
        return uri.number
    return None


def caller_number(request: Request) -> PhoneNumber | None:
    """The caller's real number: P-Asserted-Identity first (RFC 3325), else From."""
    pai = request.headers.get("P-Asserted-Identity")
    if pai is not None:
        try:
            number = from_sip_user(uri_user(parse_name_addr(pai.split(",")[0]).uri))
            if number is not None:
                return number
        except SipError:
            pass
    try:
        return from_sip_user(uri_user(request.from_.uri))
    except SipError:
        return None


def _sendrecv(sdp: SessionDescription, stream: int) -> bool:
    """Stream ``stream`` of ``sdp`` exists and is sendrecv (RFC 3264 §5.1), not a hold."""
    return stream < len(sdp.media) and sdp.media[stream].direction is Direction.SENDRECV


def _allows_update(message: Request | Response) -> bool:
    """The peer's Allow lists UPDATE (RFC 3311 §5.1), so a refresh can be an UPDATE."""
    return any(method.upper() == "UPDATE" for method in message.headers.get_list("Allow"))


def _uac_session(response: Response, fallback: Negotiated | None) -> Negotiated | None:
    """The session timer a 2xx to our INVITE/UPDATE sets (RFC 4028 §7.2); ``fallback`` if
    its Session-Expires is unreadable (the call is up: keep what we had)."""
    try:
        return negotiate_as_uac(response.headers)
    except SipError:
        return fallback


def _session_timer_response_headers(session: Negotiated | None) -> list[tuple[str, str]]:
    """Session timer headers of a 2xx we send as UAS (RFC 4028 §9).

    In our response the peer is the UAC: "uac" says the peer refreshes, and then
    Require: timer is mandatory.
    """
    if session is None:
        return []
    refresher = Refresher.UAS if session.local_refreshes else Refresher.UAC
    headers = [
        ("Supported", OPTION_TAG),
        ("Session-Expires", format_session_expires(SessionExpires(session.interval_s, refresher))),
    ]
    if refresher is Refresher.UAC:
        headers.append(("Require", OPTION_TAG))
    return headers


def _target_peer(dialog: Dialog, fallback: Peer) -> Peer:
    """Where in-dialog requests go: the first route or the remote target (host:port)."""
    target = dialog.route_set[0].uri if dialog.route_set else dialog.remote_target
    if isinstance(target, SipUri) and target.host[:1].isdigit():
        return Peer(fallback.transport, target.host, target.port or 5060)
    return fallback
