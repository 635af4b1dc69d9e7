"""The call of the B2BUA as pure data: two legs, one state table, the release facts.

No I/O here: ``engine.b2bua`` feeds inputs and performs the commands.  State
changes go through ``Call.fire`` and the ``CALL_TRANSITIONS`` table only; an
input with no row is a ``CallStateError`` (a bug in the controller, never a
peer's doing: the controller checks the state before acting on peer input).
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Generic, TypeVar

from sip.builders import random_bytes
from sip.dialog import Dialog
from sip.errors import SipUsageError
from sip.events import TxKey
from sip.message import Request
from sip.session_timer import Negotiated
from sip.transport import Peer
from store.records import ReleaseDir

# Letters only: logs mask every run of 7+ digits as a possible phone number, and a call
# reference must stay readable in them. The first 10 letters are the time the reference was
# made — milliseconds since the epoch in base 23, the alphabet in ascending order, so later
# references sort later (until the year 3282) and the call record's and reports' indexes on it
# grow at their right edge (engine/ids.py says why that matters) — then 14 random letters
# (about 63 bits: references of the same millisecond do not collide).
_REF_ALPHABET = "abcdefghjkmnpqrstuvwxyz"


_REF_LENGTH = 24
_REF_TIME_LETTERS = 10
_REF_RANDOM_LETTERS = _REF_LENGTH - _REF_TIME_LETTERS
# Byte values below 253 (11 * 23) map to letters by value mod 23, the three above are deleted:
# every kept byte is uniform over 0..252, so every letter is equally likely.
_REF_USABLE_BYTES = len(_REF_ALPHABET) * (256 // len(_REF_ALPHABET))
_REF_LETTER_OF_BYTE = bytes(
    ord(_REF_ALPHABET[value % len(_REF_ALPHABET)]) if value < _REF_USABLE_BYTES else 0
    for value in range(256)
)
_REF_REJECTED_BYTES = bytes(range(_REF_USABLE_BYTES, 256))
# Bytes drawn per try: 14 are needed, 3/256 are deleted; 20 fall short about once in 10**9.
_REF_DRAW_BYTES = 20


@functools.lru_cache(maxsize=1)  # the calls of one millisecond share it
def ref_time_letters(epoch_ms: int) -> str:
    """The time part of a call reference: ``epoch_ms`` as 10 base-23 letters, most significant
    first (fixed width, so letter order is time order)."""
    base = len(_REF_ALPHABET)
    letters = []
    for _ in range(_REF_TIME_LETTERS):
        epoch_ms, digit = divmod(epoch_ms, base)
        letters.append(_REF_ALPHABET[digit])
    return "".join(reversed(letters))


def new_call_ref() -> str:
    """A unique id for a call record and its log lines (never a SIP Call-ID of either leg)."""
    prefix = ref_time_letters(time.time_ns() // 1_000_000)
    # One draw of CSPRNG bytes mapped to letters by one C-level table lookup (~0.5 µs; 14
    # draws of secrets.choice cost ~30 µs), uniform over the 23**14 random parts.
    while True:
        letters = random_bytes(_REF_DRAW_BYTES).translate(_REF_LETTER_OF_BYTE, _REF_REJECTED_BYTES)
        if len(letters) >= _REF_RANDOM_LETTERS:
            return prefix + letters[:_REF_RANDOM_LETTERS].decode("ascii")


class CallState(Enum):
    """Life of a call seen from the controller.

    A routed call goes ROUTING → CALLING → EARLY → ANSWERED. An intercepted call whose caller
    can hear us goes ROUTING → ANNOUNCING (183 and the cause's prompt) → ENDED with the final
    response. An AXN-extension call is answered by maskline itself: ROUTING → IVR (200 to the
    caller, prompt, keys) → CONNECTING (the INVITE to A is out; the caller's leg is already
    up, so A's provisionals are not relayed and a failure is a BYE, not a final response) →
    ANSWERED, or IVR → ENDED after the not-found prompt.
    """

    # Identity hash: members are singletons compared by identity, and Enum's own __hash__ is
    # Python code, run for both halves of every (state, input) key of the transition table.
    __hash__ = object.__hash__

    ROUTING = auto()  # inbound INVITE accepted, outbound leg being prepared
    CALLING = auto()  # outbound INVITE sent
    EARLY = auto()  # callee ringing / early media relayed to the caller
    ANSWERED = auto()  # 200 relayed, media flowing
    ANNOUNCING = auto()  # intercepted: 183 sent, the announcement plays, then the final response
    IVR = auto()  # AXN extension: we answered the caller, the extension is being keyed
    CONNECTING = auto()  # AXN extension found: the caller's leg is up, A is being called
    ENDED = auto()


# States in which the caller's INVITE has been answered 200: its leg is a confirmed dialog
# (BYE, session timers, dead-media watch), whatever the state of the other leg.
CALLER_ANSWERED_STATES = frozenset({CallState.IVR, CallState.CONNECTING, CallState.ANSWERED})


class CallInput(Enum):
    """What can happen to a call."""

    # Identity hash: members are singletons compared by identity, and Enum's own __hash__ is
    # Python code, run for both halves of every (state, input) key of the transition table.
    __hash__ = object.__hash__

    OUTBOUND_SENT = auto()
    PROVISIONAL = auto()
    ANSWERED = auto()
    CALLEE_REJECTED = auto()  # final 3xx-6xx on the outbound leg
    CALLER_CANCELLED = auto()
    CALLER_HUNG_UP = auto()
    CALLEE_HUNG_UP = auto()
    RING_TIMEOUT = auto()
    MAX_DURATION = auto()
    SESSION_EXPIRED = auto()  # RFC 4028: a leg's session timer ran out without a refresh
    MEDIA_TIMEOUT = auto()  # no RTP from either party for [media] inactivity_timeout_s
    FAILED = auto()  # transaction timeout, transport error, media failure; an announcement over
    ANNOUNCE = auto()  # intercepted with an offer we can answer: the announcement starts
    IVR_ANSWERED = auto()  # AXN extension: we answered the caller to collect the extension
    EXTENSION_NOT_FOUND = auto()  # no valid extension in the tries allowed: prompt, then BYE


S = CallState
In = CallInput
CALL_TRANSITIONS: dict[tuple[CallState, CallInput], CallState] = {
    (S.ROUTING, In.OUTBOUND_SENT): S.CALLING,
    (S.ROUTING, In.CALLER_CANCELLED): S.ENDED,
    (S.ROUTING, In.FAILED): S.ENDED,
    (S.CALLING, In.PROVISIONAL): S.EARLY,
    (S.CALLING, In.ANSWERED): S.ANSWERED,
    (S.CALLING, In.CALLEE_REJECTED): S.ENDED,
    (S.CALLING, In.CALLER_CANCELLED): S.ENDED,
    (S.CALLING, In.RING_TIMEOUT): S.ENDED,
    (S.CALLING, In.FAILED): S.ENDED,
    (S.EARLY, In.PROVISIONAL): S.EARLY,
    (S.EARLY, In.ANSWERED): S.ANSWERED,
    (S.EARLY, In.CALLEE_REJECTED): S.ENDED,
    (S.EARLY, In.CALLER_CANCELLED): S.ENDED,
    (S.EARLY, In.RING_TIMEOUT): S.ENDED,
    (S.EARLY, In.FAILED): S.ENDED,
    (S.ANSWERED, In.CALLER_HUNG_UP): S.ENDED,
    (S.ANSWERED, In.CALLEE_HUNG_UP): S.ENDED,
    (S.ANSWERED, In.MAX_DURATION): S.ENDED,
    (S.ANSWERED, In.SESSION_EXPIRED): S.ENDED,
    (S.ANSWERED, In.MEDIA_TIMEOUT): S.ENDED,
    (S.ANSWERED, In.FAILED): S.ENDED,
    # Intercepted, with an announcement: only the caller's CANCEL or its end can follow.
    (S.ROUTING, In.ANNOUNCE): S.ANNOUNCING,
    (S.ANNOUNCING, In.CALLER_CANCELLED): S.ENDED,
    (S.ANNOUNCING, In.FAILED): S.ENDED,
    # The AXN-extension IVR: the caller's leg is answered by us.
    (S.ROUTING, In.IVR_ANSWERED): S.IVR,
    (S.IVR, In.OUTBOUND_SENT): S.CONNECTING,
    (S.IVR, In.EXTENSION_NOT_FOUND): S.ENDED,
    (S.IVR, In.CALLER_HUNG_UP): S.ENDED,
    (S.IVR, In.MAX_DURATION): S.ENDED,
    (S.IVR, In.SESSION_EXPIRED): S.ENDED,
    (S.IVR, In.MEDIA_TIMEOUT): S.ENDED,
    (S.IVR, In.FAILED): S.ENDED,
    (S.CONNECTING, In.PROVISIONAL): S.CONNECTING,
    (S.CONNECTING, In.ANSWERED): S.ANSWERED,
    (S.CONNECTING, In.CALLEE_REJECTED): S.ENDED,
    (S.CONNECTING, In.RING_TIMEOUT): S.ENDED,
    (S.CONNECTING, In.CALLER_HUNG_UP): S.ENDED,
    (S.CONNECTING, In.MAX_DURATION): S.ENDED,
    (S.CONNECTING, In.SESSION_EXPIRED): S.ENDED,
    (S.CONNECTING, In.MEDIA_TIMEOUT): S.ENDED,
    (S.CONNECTING, In.FAILED): S.ENDED,
}


class CallStateError(SipUsageError):
    """The controller fed an input the call's state has no row for."""


# RFC 3398 §8.2.6.1: SIP final response → Q.850 cause, for release_cause.
# fmt: off
SIP_TO_Q850: dict[int, int] = {
    400: 41, 401: 21, 402: 21, 403: 21, 404: 1, 405: 63, 406: 79, 407: 21, 408: 102,
    410: 22, 413: 127, 414: 127, 415: 79, 416: 127, 420: 127, 421: 127, 423: 127,
    480: 18, 481: 41, 482: 25, 483: 25, 484: 28, 485: 1, 486: 17, 487: 127, 488: 127,
    500: 41, 501: 79, 502: 38, 503: 41, 504: 102, 505: 127, 600: 17, 603: 21, 604: 1,
    606: 58,
}
# fmt: on
Q850_NORMAL_CLEARING = 16
Q850_NO_ANSWER = 19
Q850_RECOVERY_ON_TIMER_EXPIRY = 102  # a SIP timer ran out (RFC 3398 §8.2.6.1: 408 → 102)
# Dead media (SPEC §4 limits): no RTP from either party for [media] inactivity_timeout_s. Q.850
# has no "media lost" cause; the release is a supervision timer of ours running out, which is
# what 102 "recovery on timer expiry" means (and it keeps a report consumer's "timer" bucket
# right, beside 408 → 102 of RFC 3398). The record reads release_dir 0 (platform), release_cause
# 102 on an answered call (start_time set); the BYEs to both parties carry
# Reason: Q.850;cause=102;text="media timeout" (RFC 3326), and the log line is media_timeout,
# which tells it apart from an RFC 4028 session expiry (same cause, other log line).
Q850_MEDIA_TIMEOUT = Q850_RECOVERY_ON_TIMER_EXPIRY
Q850_CALL_REJECTED = 21
Q850_UNALLOCATED = 1


def q850_for_status(status_code: int) -> int:
    """Q.850 cause for a SIP final status (31 "normal, unspecified" when unmapped)."""
    return SIP_TO_Q850.get(status_code, 31)


@dataclass(slots=True, init=False)
class Leg:
    """One side of the call: the inbound leg (UAS towards the caller) or the outbound one."""

    peer: Peer
    call_id: str
    local_tag: str
    tx_key: TxKey | None = None  # the INVITE transaction of this leg
    request: Request | None = None  # the INVITE received (inbound) or sent (outbound)
    dialog: Dialog | None = None
    # RFC 4028 session timer of this leg's dialog (None: no session expiration) and the loop
    # handles of its expiry and refresh (also in ``Call.timers``, so a release cancels them).
    session_timer: Negotiated | None = None
    session_handles: list[object] = field(default_factory=list)
    peer_allows_update: bool = False  # the peer's Allow lists UPDATE (RFC 3311): refresh with it
    local_sdp: bytes = b""  # the last SDP we sent on this leg (re-sent by a re-INVITE refresh)

    # An explicit __init__ (the dataclass has init=False): mypyc compiles it, whereas the one
    # dataclasses generates stays interpreted (build_compiled.py). None: a fresh list.
    def __init__(
        self,
        *,
        peer: Peer,
        call_id: str,
        local_tag: str,
        tx_key: TxKey | None = None,
        request: Request | None = None,
        dialog: Dialog | None = None,
        session_timer: Negotiated | None = None,
        session_handles: list[object] | None = None,
        peer_allows_update: bool = False,
        local_sdp: bytes = b"",
    ) -> None:
        self.peer = peer
        self.call_id = call_id
        self.local_tag = local_tag
        self.tx_key = tx_key
        self.request = request
        self.dialog = dialog
        self.session_timer = session_timer
        self.session_handles = [] if session_handles is None else session_handles
        self.peer_allows_update = peer_allows_update
        self.local_sdp = local_sdp


@dataclass(slots=True, init=False)
class Call:
    """One masked call: state, both legs, and the facts its call record needs."""

    call_id: str  # our id for the call record (the inbound Call-ID is the carrier's)
    inbound: Leg
    x: str
    caller: str | None
    callee: str | None = None
    outbound: Leg | None = None
    state: CallState = CallState.ROUTING
    sub_id: str | None = None
    pool_key: str | None = None
    out_id: str | None = None
    call_type: int = 4
    phone_no: str | None = None
    peer_no: str | None = None
    unconnected_cause: int = 0
    call_time: float = 0.0
    call_out_time: float | None = None
    ring_time: float | None = None
    start_time: float | None = None
    release_time: float | None = None
    release_dir: ReleaseDir = ReleaseDir.PLATFORM
    release_cause: int = Q850_NORMAL_CLEARING
    recording_path: str | None = None  # the call's WAV, once written (engine.records)
    # RTP packets relayed caller→callee and callee→caller, and packets dropped (strangers,
    # non-RTP), once the call's relay session closed; None when it had none.
    media_packets: tuple[int, int, int] | None = None
    timers: list[object] = field(default_factory=list)  # loop handles owned by the controller

    # Explicit, as Leg's. Only what a call starts with is passed in the engine; the rest is
    # set as the call goes.
    def __init__(
        self,
        *,
        call_id: str,
        inbound: Leg,
        x: str,
        caller: str | None,
        callee: str | None = None,
        outbound: Leg | None = None,
        state: CallState = CallState.ROUTING,
        sub_id: str | None = None,
        pool_key: str | None = None,
        out_id: str | None = None,
        call_type: int = 4,
        phone_no: str | None = None,
        peer_no: str | None = None,
        unconnected_cause: int = 0,
        call_time: float = 0.0,
        call_out_time: float | None = None,
        ring_time: float | None = None,
        start_time: float | None = None,
        release_time: float | None = None,
        release_dir: ReleaseDir = ReleaseDir.PLATFORM,
        release_cause: int = Q850_NORMAL_CLEARING,
        recording_path: str | None = None,
        media_packets: tuple[int, int, int] | None = None,
        timers: list[object] | None = None,
    ) -> None:
        self.call_id = call_id
        self.inbound = inbound
        self.x = x
        self.caller = caller
        self.callee = callee
        self.outbound = outbound
        self.state = state
        self.sub_id = sub_id
        self.pool_key = pool_key
        self.out_id = out_id
        self.call_type = call_type
        self.phone_no = phone_no
        self.peer_no = peer_no
        self.unconnected_cause = unconnected_cause
        self.call_time = call_time
        self.call_out_time = call_out_time
        self.ring_time = ring_time
        self.start_time = start_time
        self.release_time = release_time
        self.release_dir = release_dir
        self.release_cause = release_cause
        self.recording_path = recording_path
        self.media_packets = media_packets
        self.timers = [] if timers is None else timers

    def fire(self, call_input: CallInput) -> CallState:
        """Apply ``call_input`` through the table; the only writer of ``state``."""
        try:
            next_state = CALL_TRANSITIONS[(self.state, call_input)]
        except KeyError:
            raise CallStateError(
                f"call in {self.state.name} has no transition for {call_input.name}"
            ) from None
        self.state = next_state
        return next_state

    def can(self, call_input: CallInput) -> bool:
        """True when the table has a row for ``call_input`` in the current state."""
        return (self.state, call_input) in CALL_TRANSITIONS


_Kept = TypeVar("_Kept")


class KeptFor(Generic[_Kept]):
    """Items each kept ``keep_s`` after it was added, then let go in batches.

    Every item waits equally long, so they are let go in the order they came: a queue, whose
    head says when the next batch is due — ``batch_s`` after the head's own time, so that one
    timer run lets go of every item due by then instead of one item a run. An item is kept at
    least ``keep_s`` and at most ``keep_s + batch_s``. Pure: the caller passes the time and
    arms its one timer at :meth:`next_due`.
    """

    def __init__(self, keep_s: float, batch_s: float) -> None:
        self.keep_s = keep_s
        self.batch_s = batch_s
        self._queue: deque[tuple[float, _Kept]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, item: _Kept, now: float) -> bool:
        """Keep ``item`` from ``now``; True when the queue was empty (no timer is armed)."""
        self._queue.append((now + self.keep_s, item))
        return len(self._queue) == 1

    def next_due(self) -> float | None:
        """When the next batch is due, or None with nothing kept."""
        return self._queue[0][0] + self.batch_s if self._queue else None

    def pop_due(self, now: float) -> list[_Kept]:
        """The items whose time is up at ``now``, oldest first (removed)."""
        queue = self._queue
        due: list[_Kept] = []
        while queue and queue[0][0] <= now:
            due.append(queue.popleft()[1])
        return due


_Key = TypeVar("_Key")


class DelayQueue(Generic[_Key, _Kept]):
    """Items each due ``delay_s`` after it was added, by key, cancellable: the timers of one
    delay for many calls (ringing timeout, maximum duration) behind one loop timer.

    Every item waits equally long, so they fall due in the order they were added: an ordered
    dict whose head is the next one due — adding, cancelling and taking the head are O(1), and
    a cancelled item leaves nothing behind. Why not a loop timer per call: uvloop makes a handle
    and a libuv timer for each, and a cancelled one is closed through a callback of its own, a
    turn of the loop with the GIL taken: at 900 calls/s, making, cancelling, closing and freeing
    loop timers were ~1.9 % of the event loop's samples, ~0.9 % with these queues (the
    instructions a call takes hardly change: the saving is in memory traffic). Pure: the caller
    passes the time (never decreasing) and arms its one timer at :meth:`next_due`.
    """

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self._due: OrderedDict[_Key, tuple[float, _Kept]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._due)

    def add(self, key: _Key, item: _Kept, now: float) -> None:
        """``item`` due at ``now + delay_s`` (after every item already queued); a key queued
        already is due again from ``now``."""
        due = self._due
        if key in due:
            del due[key]
        due[key] = (now + self.delay_s, item)

    def cancel(self, key: _Key) -> None:
        """``key`` is not due any more (nothing when it is not queued)."""
        self._due.pop(key, None)

    def next_due(self) -> float | None:
        """When the next item is due, or None with nothing queued."""
        for due_at, _ in self._due.values():
            return due_at
        return None

    def pop_due(self, now: float) -> _Kept | None:
        """The next item if it is due at ``now`` (removed), else None: one at a time, so that
        what the caller does with one may cancel the next."""
        for key, (due_at, item) in self._due.items():
            if due_at > now:
                return None
            del self._due[key]
            return item
        return None
