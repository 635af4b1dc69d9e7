"""RFC 3261 §17 transactions with the RFC 6026 Accepted state, as data-driven state machines.

Each kind of transaction has one table mapping ``(state, input)`` to
``(actions, next_state)``; ``Transaction._fire`` is the only writer of
``state``.  A pair missing from the table is a protocol error
(``TransactionError``), never a silent pass.  Timers are absolute deadlines
(EXAMPLES.md §1.4): which timers run in which state is data too
(``STATE_TIMERS``), so entering a state arms and disarms them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum, auto
from typing import NamedTuple

from sip.builders import make_non2xx_ack, make_response
from sip.errors import SipUsageError
from sip.message import Request, Response
from sip.transport import Peer


class TxKind(Enum):
    """The four transaction state machines of RFC 3261 §17."""

    # Identity hash: Enum's own __hash__ is a Python function, and the tables hash members
    # ~100 times per call.
    __hash__ = object.__hash__

    CLIENT_INVITE = auto()
    CLIENT_NON_INVITE = auto()
    SERVER_INVITE = auto()
    SERVER_NON_INVITE = auto()


class TxState(Enum):
    """Transaction states (RFC 3261 figures 5-8, RFC 6026 figures 5 and 7)."""

    __hash__ = object.__hash__  # as TxKind's

    CALLING = auto()
    TRYING = auto()
    PROCEEDING = auto()
    ACCEPTED = auto()
    COMPLETED = auto()
    CONFIRMED = auto()
    TERMINATED = auto()


class TxInput(Enum):
    """Everything that can happen to a transaction."""

    __hash__ = object.__hash__  # as TxKind's

    RECV_1XX = auto()
    RECV_2XX = auto()
    RECV_3XX_6XX = auto()
    RECV_REQUEST = auto()  # retransmission of the request that created a server transaction
    RECV_ACK = auto()
    SEND_1XX = auto()
    SEND_2XX = auto()
    SEND_3XX_6XX = auto()
    TIMER_A = auto()
    TIMER_B = auto()
    TIMER_D = auto()
    TIMER_E = auto()
    TIMER_F = auto()
    TIMER_G = auto()
    TIMER_H = auto()
    TIMER_I = auto()
    TIMER_J = auto()
    TIMER_K = auto()
    TIMER_L = auto()
    TIMER_M = auto()
    TIMER_TRYING = auto()  # not an RFC 3261 name: the delayed 100 (Trying) of §17.2.1
    TRANSPORT_ERROR = auto()


class Action(Enum):
    """Side effects a table row asks for, executed in order."""

    __hash__ = object.__hash__  # as TxKind's

    PASS_RESPONSE = auto()  # hand the response to the transaction user
    SEND_ACK = auto()  # build, send and remember the ACK for a non-2xx final response
    RESEND_ACK = auto()
    RETRANSMIT_REQUEST = auto()
    SEND_RESPONSE = auto()  # send the user's response and remember it
    RESEND_RESPONSE = auto()  # re-send the last response (retransmission or timer G)
    SEND_TRYING = auto()  # the delayed 100 (Trying), unless a response went out already
    # (RESEND_RESPONSE sends it too, when an INVITE is retransmitted before anything went out)
    PASS_ACK = auto()  # the ACK for our 2xx arrived; stop re-sending the 2xx
    REPORT_TIMEOUT = auto()
    REPORT_TRANSPORT_ERROR = auto()


class TransactionError(SipUsageError):
    """An input the transaction's table has no row for (protocol misuse)."""


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """RFC 3261 timer base values in seconds (§17.1.1.1, table 4).

    ``trying_delay_s``: when set, an INVITE server transaction sends its 100 (Trying) only if
    no response went out within that time, or at once when the INVITE is retransmitted
    (RFC 3261 §17.2.1: the 100 may be left out when the TU answers within 200 ms). A B2BUA
    relaying a fast callee's 180 then never builds or sends one. None: the endpoint sends the
    100 itself on receipt (``Endpoint(auto_trying=...)``).
    """

    t1_s: float = 0.5
    t2_s: float = 4.0
    t4_s: float = 5.0
    trying_delay_s: float | None = None


P = TxState
I = TxInput  # noqa: E741 - short alias keeps the tables readable
A = Action
Row = tuple[tuple[Action, ...], TxState]

# RFC 3261 §17.1.1.2 figure 5, with RFC 6026 §8.4 (Accepted; 2xx never ends the transaction).
CLIENT_INVITE_TABLE: dict[tuple[TxState, TxInput], Row] = {
    (P.CALLING, I.TIMER_A): ((A.RETRANSMIT_REQUEST,), P.CALLING),
    (P.CALLING, I.TIMER_B): ((A.REPORT_TIMEOUT,), P.TERMINATED),
    (P.CALLING, I.RECV_1XX): ((A.PASS_RESPONSE,), P.PROCEEDING),
    (P.CALLING, I.RECV_2XX): ((A.PASS_RESPONSE,), P.ACCEPTED),
    (P.CALLING, I.RECV_3XX_6XX): ((A.PASS_RESPONSE, A.SEND_ACK), P.COMPLETED),
    (P.CALLING, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), P.TERMINATED),
    (P.PROCEEDING, I.RECV_1XX): ((A.PASS_RESPONSE,), P.PROCEEDING),
    (P.PROCEEDING, I.RECV_2XX): ((A.PASS_RESPONSE,), P.ACCEPTED),
    (P.PROCEEDING, I.RECV_3XX_6XX): ((A.PASS_RESPONSE, A.SEND_ACK), P.COMPLETED),
    (P.PROCEEDING, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), P.TERMINATED),
    # RFC 6026 §8.4: every 2xx retransmission goes to the TU, which re-sends its ACK.
    (P.ACCEPTED, I.RECV_1XX): ((), P.ACCEPTED),
    (P.ACCEPTED, I.RECV_2XX): ((A.PASS_RESPONSE,), P.ACCEPTED),
    (P.ACCEPTED, I.RECV_3XX_6XX): ((), P.ACCEPTED),
    (P.ACCEPTED, I.TIMER_M): ((), P.TERMINATED),
    (P.ACCEPTED, I.TRANSPORT_ERROR): ((), P.ACCEPTED),
    # §17.1.1.2: retransmitted finals are answered with the same ACK, never passed up.
    (P.COMPLETED, I.RECV_1XX): ((), P.COMPLETED),
    (P.COMPLETED, I.RECV_2XX): ((), P.COMPLETED),
    (P.COMPLETED, I.RECV_3XX_6XX): ((A.RESEND_ACK,), P.COMPLETED),
    (P.COMPLETED, I.TIMER_D): ((), P.TERMINATED),
    (P.COMPLETED, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), P.TERMINATED),
}

# RFC 3261 §17.1.2.2 figure 6.
CLIENT_NON_INVITE_TABLE: dict[tuple[TxState, TxInput], Row] = {
    (P.TRYING, I.TIMER_E): ((A.RETRANSMIT_REQUEST,), P.TRYING),
    (P.TRYING, I.TIMER_F): ((A.REPORT_TIMEOUT,), P.TERMINATED),
    (P.TRYING, I.RECV_1XX): ((A.PASS_RESPONSE,), P.PROCEEDING),
    (P.TRYING, I.RECV_2XX): ((A.PASS_RESPONSE,), P.COMPLETED),
    (P.TRYING, I.RECV_3XX_6XX): ((A.PASS_RESPONSE,), P.COMPLETED),
    (P.TRYING, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), P.TERMINATED),
    (P.PROCEEDING, I.TIMER_E): ((A.RETRANSMIT_REQUEST,), P.PROCEEDING),
    (P.PROCEEDING, I.TIMER_F): ((A.REPORT_TIMEOUT,), P.TERMINATED),
    (P.PROCEEDING, I.RECV_1XX): ((A.PASS_RESPONSE,), P.PROCEEDING),
    (P.PROCEEDING, I.RECV_2XX): ((A.PASS_RESPONSE,), P.COMPLETED),
    (P.PROCEEDING, I.RECV_3XX_6XX): ((A.PASS_RESPONSE,), P.COMPLETED),
    (P.PROCEEDING, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), P.TERMINATED),
    (P.COMPLETED, I.RECV_1XX): ((), P.COMPLETED),
    (P.COMPLETED, I.RECV_2XX): ((), P.COMPLETED),
    (P.COMPLETED, I.RECV_3XX_6XX): ((), P.COMPLETED),
    (P.COMPLETED, I.TIMER_K): ((), P.TERMINATED),
    (P.COMPLETED, I.TRANSPORT_ERROR): ((), P.COMPLETED),
}

# RFC 3261 §17.2.1 figure 7 with RFC 6026 §8.5-8.7 (Accepted state, Timer L).
# The 2xx retransmission that §13.3.1.4 gives the UAS core runs here on the
# Timer G schedule in Accepted, so the application never re-sends anything.
SERVER_INVITE_TABLE: dict[tuple[TxState, TxInput], Row] = {
    # Re-sends the last response; nothing sent yet (a delayed 100): the 100, now.
    (P.PROCEEDING, I.RECV_REQUEST): ((A.RESEND_RESPONSE,), P.PROCEEDING),
    (P.PROCEEDING, I.TIMER_TRYING): ((A.SEND_TRYING,), P.PROCEEDING),
    # An ACK before any final response acknowledges nothing; a peer can send it anyway.
    (P.PROCEEDING, I.RECV_ACK): ((), P.PROCEEDING),
    (P.PROCEEDING, I.SEND_1XX): ((A.SEND_RESPONSE,), P.PROCEEDING),
    (P.PROCEEDING, I.SEND_2XX): ((A.SEND_RESPONSE,), P.ACCEPTED),
    (P.PROCEEDING, I.SEND_3XX_6XX): ((A.SEND_RESPONSE,), P.COMPLETED),
    (P.PROCEEDING, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), P.TERMINATED),
    (P.ACCEPTED, I.RECV_REQUEST): ((), P.ACCEPTED),
    (P.ACCEPTED, I.RECV_ACK): ((A.PASS_ACK,), P.ACCEPTED),
    (P.ACCEPTED, I.SEND_2XX): ((A.SEND_RESPONSE,), P.ACCEPTED),
    (P.ACCEPTED, I.TIMER_G): ((A.RESEND_RESPONSE,), P.ACCEPTED),
    (P.ACCEPTED, I.TIMER_L): ((A.REPORT_TIMEOUT,), P.TERMINATED),
    (P.ACCEPTED, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), P.ACCEPTED),
    (P.COMPLETED, I.RECV_REQUEST): ((A.RESEND_RESPONSE,), P.COMPLETED),
    (P.COMPLETED, I.RECV_ACK): ((), P.CONFIRMED),
    (P.COMPLETED, I.TIMER_G): ((A.RESEND_RESPONSE,), P.COMPLETED),
    (P.COMPLETED, I.TIMER_H): ((A.REPORT_TIMEOUT,), P.TERMINATED),
    (P.COMPLETED, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), P.TERMINATED),
    (P.CONFIRMED, I.RECV_REQUEST): ((), P.CONFIRMED),
    (P.CONFIRMED, I.RECV_ACK): ((), P.CONFIRMED),
    (P.CONFIRMED, I.TIMER_I): ((), P.TERMINATED),
    (P.CONFIRMED, I.TRANSPORT_ERROR): ((), P.CONFIRMED),
}

# RFC 3261 §17.2.2 figure 8.
SERVER_NON_INVITE_TABLE: dict[tuple[TxState, TxInput], Row] = {
    (P.TRYING, I.RECV_REQUEST): ((), P.TRYING),
    (P.TRYING, I.SEND_1XX): ((A.SEND_RESPONSE,), P.PROCEEDING),
    (P.TRYING, I.SEND_2XX): ((A.SEND_RESPONSE,), P.COMPLETED),
    (P.TRYING, I.SEND_3XX_6XX): ((A.SEND_RESPONSE,), P.COMPLETED),
    (P.TRYING, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), P.TERMINATED),
    (P.PROCEEDING, I.RECV_REQUEST): ((A.RESEND_RESPONSE,), P.PROCEEDING),
    (P.PROCEEDING, I.SEND_1XX): ((A.SEND_RESPONSE,), P.PROCEEDING),
    (P.PROCEEDING, I.SEND_2XX): ((A.SEND_RESPONSE,), P.COMPLETED),
    (P.PROCEEDING, I.SEND_3XX_6XX): ((A.SEND_RESPONSE,), P.COMPLETED),
    (P.PROCEEDING, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), P.TERMINATED),
    (P.COMPLETED, I.RECV_REQUEST): ((A.RESEND_RESPONSE,), P.COMPLETED),
    (P.COMPLETED, I.TIMER_J): ((), P.TERMINATED),
    (P.COMPLETED, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), P.TERMINATED),
}

TABLES: dict[TxKind, dict[tuple[TxState, TxInput], Row]] = {
    TxKind.CLIENT_INVITE: CLIENT_INVITE_TABLE,
    TxKind.CLIENT_NON_INVITE: CLIENT_NON_INVITE_TABLE,
    TxKind.SERVER_INVITE: SERVER_INVITE_TABLE,
    TxKind.SERVER_NON_INVITE: SERVER_NON_INVITE_TABLE,
}

INITIAL_STATE: dict[TxKind, TxState] = {
    TxKind.CLIENT_INVITE: P.CALLING,
    TxKind.CLIENT_NON_INVITE: P.TRYING,
    TxKind.SERVER_INVITE: P.PROCEEDING,
    TxKind.SERVER_NON_INVITE: P.TRYING,
}

# Per kind and state: timers armed afresh on entering the state, and timers
# that keep running from the previous state.  Every other timer is disarmed.
STATE_TIMERS: dict[TxKind, dict[TxState, tuple[tuple[TxInput, ...], tuple[TxInput, ...]]]] = {
    TxKind.CLIENT_INVITE: {
        P.CALLING: ((I.TIMER_A, I.TIMER_B), ()),
        P.ACCEPTED: ((I.TIMER_M,), ()),
        P.COMPLETED: ((I.TIMER_D,), ()),
    },
    TxKind.CLIENT_NON_INVITE: {
        P.TRYING: ((I.TIMER_E, I.TIMER_F), ()),
        P.PROCEEDING: ((), (I.TIMER_E, I.TIMER_F)),
        P.COMPLETED: ((I.TIMER_K,), ()),
    },
    TxKind.SERVER_INVITE: {
        P.ACCEPTED: ((I.TIMER_G, I.TIMER_L), ()),
        P.COMPLETED: ((I.TIMER_G, I.TIMER_H), ()),
        P.CONFIRMED: ((I.TIMER_I,), ()),
    },
    TxKind.SERVER_NON_INVITE: {
        P.COMPLETED: ((I.TIMER_J,), ()),
    },
}

# Timers that exist only to retransmit over unreliable transports (§17.1.1.2, §17.1.2.2, §17.2.1).
RETRANSMIT_TIMERS = frozenset({I.TIMER_A, I.TIMER_E, I.TIMER_G})

# States in which a transaction never reads its request again: a server transaction has sent
# its final response (retransmissions re-send the bytes it kept), a client transaction has its
# final response (the ACK of a non-2xx is built on the way in).  Entering one drops the parsed
# request: the transaction lives on for up to 64*T1 absorbing retransmissions, and at hundreds
# of calls/s the parsed requests it kept (~10 GC-tracked objects each) were most of the heap
# every full collection walked.
REQUEST_DONE_STATES = frozenset({P.ACCEPTED, P.COMPLETED, P.CONFIRMED, P.TERMINATED})


@dataclass(frozen=True, slots=True, init=False)
class TimedOut:
    """The transaction ended on ``timer`` without the expected answer."""

    timer: str

    # An explicit __init__ (the dataclass has init=False): mypyc compiles it, whereas the one
    # dataclasses generates stays interpreted, ~0.2 µs a field on every message.
    def __init__(self, timer: str) -> None:
        object.__setattr__(self, "timer", timer)


@dataclass(frozen=True, slots=True)
class TransportFailure:
    """The transport reported it could not send for this transaction."""


# What a transition asks of the endpoint, in order: ``bytes`` to send to the transaction's peer,
# a message (response, or the ACK of a 2xx) to hand to the transaction user, or a failure.
# Bytes and messages go as themselves: a wrapper object per message was measurable at
# hundreds of calls/s, and ``isinstance`` tells them apart as well.
Effect = bytes | Request | Response | TimedOut | TransportFailure

UNARMED = math.inf  # the deadline of a timer slot that is not running (Transaction slots)


def response_input(status_code: int, *, sending: bool) -> TxInput:
    """Table input for a response being received or sent."""
    if status_code < 200:
        return I.SEND_1XX if sending else I.RECV_1XX
    if status_code < 300:
        return I.SEND_2XX if sending else I.RECV_2XX
    return I.SEND_3XX_6XX if sending else I.RECV_3XX_6XX


# -- the tables compiled per timer configuration ---------------------------------------------
#
# STATE_TIMERS and the §17 durations are resolved once per (kind, TimerConfig, transport
# reliability) instead of on every state entry: each table row becomes a _Step carrying what
# entering its next state arms, with the durations already computed.  The tables above stay
# the single source of truth; this is a cache of them.


class _Entry(NamedTuple):
    """What entering a state does to a transaction's three timer slots.

    A transaction runs at most one retransmit timer (A, E or G), one timeout timer and the
    delayed-100 timer at a time (checked when compiling), so each has a slot.  ``carried``:
    timers left running from the previous state; every other one is disarmed.
    """

    carried: frozenset[TxInput]
    retransmit: TxInput | None  # armed with interval T1; None on reliable transports
    timeout: TxInput | None
    timeout_s: float


class _Step(NamedTuple):
    actions: tuple[Action, ...]
    next_state: TxState
    entry: _Entry | None  # None: the row stays in its state (nothing re-armed)


_Rows = dict[tuple[TxState, TxInput], _Step]


def _fixed_duration(timer: TxInput, timers: TimerConfig, reliable: bool) -> float:
    t1, t4 = timers.t1_s, timers.t4_s
    if timer in (I.TIMER_B, I.TIMER_F, I.TIMER_H, I.TIMER_L, I.TIMER_M):
        return 64 * t1
    if timer is I.TIMER_D:
        return 0.0 if reliable else max(32.0, 64 * t1)  # §17.1.1.2: > 32 s on UDP
    if timer is I.TIMER_J:
        return 0.0 if reliable else 64 * t1
    if timer in (I.TIMER_I, I.TIMER_K):
        return 0.0 if reliable else t4
    raise TransactionError(f"no duration for {timer.name}")


def _compile_entry(kind: TxKind, state: TxState, timers: TimerConfig, reliable: bool) -> _Entry:
    entry, carried = STATE_TIMERS[kind].get(state, ((), ()))
    retransmits = [t for t in entry if t in RETRANSMIT_TIMERS]
    timeouts = [t for t in entry if t not in RETRANSMIT_TIMERS]
    if len(retransmits) > 1 or len(timeouts) > 1 or I.TIMER_TRYING in entry:
        raise TransactionError(f"{kind.name} {state.name}: timers do not fit the slots")
    timeout = timeouts[0] if timeouts else None
    return _Entry(
        carried=frozenset(carried),
        retransmit=None if reliable or not retransmits else retransmits[0],
        timeout=timeout,
        timeout_s=0.0 if timeout is None else _fixed_duration(timeout, timers, reliable),
    )


def _compile_rows(kind: TxKind, timers: TimerConfig, reliable: bool) -> tuple[_Rows, _Entry]:
    entries = {state: _compile_entry(kind, state, timers, reliable) for state in TxState}
    rows = {
        (state, tx_input): _Step(
            actions, next_state, None if next_state is state else entries[next_state]
        )
        for (state, tx_input), (actions, next_state) in TABLES[kind].items()
    }
    return rows, entries[INITIAL_STATE[kind]]


# (id(TimerConfig), kind, reliable) → (that config, the kind's rows, what its initial state
# arms).  Keyed by the config's identity, not its value: hashing the frozen dataclass per
# transaction costs more than the lookup saves.  The entry holds the config, so its id cannot
# be reused while cached, and a hit is checked with ``is``.
_COMPILED: dict[tuple[int, TxKind, bool], tuple[TimerConfig, _Rows, _Entry]] = {}
_MAX_COMPILED = 256  # entries (tests build many configurations; a server has one)


def _compile(
    timers: TimerConfig, kind: TxKind, reliable: bool
) -> tuple[TimerConfig, _Rows, _Entry]:
    if len(_COMPILED) >= _MAX_COMPILED:
        _COMPILED.clear()
    rows, initial = _compile_rows(kind, timers, reliable)
    compiled = _COMPILED[(id(timers), kind, reliable)] = (timers, rows, initial)
    return compiled


class Transaction:
    """One transaction: its table, state, deadlines and the bytes it may re-send.

    Deadlines live in three slots (retransmit, timeout, delayed 100) rather than a dict: a
    transaction lives on for up to 64*T1 after its call, and every object it holds is one
    more for each full collection to walk.  ``deadlines`` shows them as a dict.
    """

    __slots__ = (
        "ack_bytes",
        "ack_received",
        "awaiting_ack_key",
        "key",
        "kind",
        "last_response",
        "last_response_status",
        "local_tag",
        "peer",
        "request",
        "request_bytes",
        "retransmit_at",
        "retransmit_interval",
        "retransmit_timer",
        "rows",
        "scheduled_at",
        "state",
        "timeout_at",
        "timeout_timer",
        "timers",
        "trying_at",
    )

    def __init__(
        self,
        *,
        kind: TxKind,
        key: tuple[str, ...],
        request: Request,
        peer: Peer,
        timers: TimerConfig,
        now: float,
    ) -> None:
        self.kind = kind
        self.key = key
        # None from the first state of REQUEST_DONE_STATES on.
        self.request: Request | None = request
        self.peer = peer
        self.timers = timers
        reliable = peer.reliable
        compiled = _COMPILED.get((id(timers), kind, reliable))
        if compiled is None or compiled[0] is not timers:
            compiled = _compile(timers, kind, reliable)
        self.rows = compiled[1]
        self.state = INITIAL_STATE[kind]
        self.last_response: bytes | None = None
        self.last_response_status = 0
        self.local_tag: str | None = None  # To tag of every response we send (server side)
        self.ack_bytes: bytes | None = None
        self.ack_received = False
        self.request_bytes: bytes | None = None
        # The endpoint's key of the 2xx ACK this server INVITE transaction waits for.
        self.awaiting_ack_key: tuple[str, int, str] | None = None
        # The endpoint's bookkeeping: the deadline its timer heap holds a live entry for.
        self.scheduled_at: float | None = None
        self.retransmit_timer: TxInput | None = None
        self.retransmit_at = UNARMED
        self.retransmit_interval = 0.0  # 0.0: no retransmit timer was ever armed
        self.timeout_timer: TxInput | None = None
        self.timeout_at = UNARMED
        self.trying_at = UNARMED
        self._enter(compiled[2], now)
        if kind is TxKind.SERVER_INVITE and timers.trying_delay_s is not None:
            self.trying_at = now + timers.trying_delay_s

    # -- public inputs ----------------------------------------------------------------

    def start(self) -> list[Effect]:
        """Client transactions: serialise and send the request (§17.1.1.2, §17.1.2.2)."""
        if self.kind not in (TxKind.CLIENT_INVITE, TxKind.CLIENT_NON_INVITE):
            raise TransactionError("only client transactions send a request")
        if self.request is None:
            raise TransactionError("the transaction has already been started")
        self.request_bytes = self.request.to_bytes()
        return [self.request_bytes]

    def receive_response(self, response: Response, now: float) -> list[Effect]:
        """A response matched this client transaction."""
        return self._fire(response_input(response.status_code, sending=False), now, response)

    def receive_request(self, request: Request, now: float) -> list[Effect]:
        """A retransmission of our request, or the ACK for our final response, arrived."""
        tx_input = I.RECV_ACK if request.method == "ACK" else I.RECV_REQUEST
        return self._fire(tx_input, now, request)

    def send_response(self, response: Response, now: float) -> list[Effect]:
        """The user answers this server transaction."""
        return self._fire(response_input(response.status_code, sending=True), now, response)

    def transport_error(self, now: float) -> list[Effect]:
        """The transport failed to send for this transaction."""
        return self._fire(I.TRANSPORT_ERROR, now, None)

    @property
    def deadlines(self) -> dict[TxInput, float]:
        """Armed timers and their deadlines (a fresh dict: for inspection, not the hot path)."""
        armed: dict[TxInput, float] = {}
        if self.retransmit_timer is not None and self.retransmit_at != UNARMED:
            armed[self.retransmit_timer] = self.retransmit_at
        if self.timeout_timer is not None and self.timeout_at != UNARMED:
            armed[self.timeout_timer] = self.timeout_at
        if self.trying_at != UNARMED:
            armed[I.TIMER_TRYING] = self.trying_at
        return armed

    @property
    def intervals(self) -> dict[TxInput, float]:
        """The current interval of the retransmit timer, once one was armed (for inspection)."""
        if self.retransmit_interval == 0.0 or self.retransmit_timer is None:
            return {}
        return {self.retransmit_timer: self.retransmit_interval}

    def due_timers(self, now: float) -> list[TxInput]:
        """Armed timers whose deadline has passed, earliest first."""
        return [timer for at, timer in self._due(now)]

    def fire_due_timers(self, now: float) -> list[Effect]:
        """Fire every timer due at ``now``, earliest first, skipping those an earlier one
        disarmed (its state change) and stopping once terminated."""
        due = self._due(now)
        if not due:
            return []
        if len(due) == 1:  # the common case: one timer, nothing to re-check
            return self.fire_timer(due[0][1], now)
        effects: list[Effect] = []
        for _, timer in due:
            if self.state is P.TERMINATED:
                break
            if self._armed_at(timer) == UNARMED:
                continue
            effects += self.fire_timer(timer, now)
        return effects

    def fire_timer(self, timer: TxInput, now: float) -> list[Effect]:
        """Run the row for an expired timer; a timer without a row leaves it armed."""
        armed = self._disarm(timer)
        try:
            return self._fire(timer, now, None)
        except TransactionError:
            if armed != UNARMED:
                self._set_armed(timer, armed)
            raise

    def next_deadline(self) -> float | None:
        """Earliest armed deadline, or None."""
        at = self.earliest_at()
        return None if at == UNARMED else at

    def earliest_at(self) -> float:
        """The earliest of the three timer slots (``UNARMED`` when none runs): compared here,
        not with ``min()``, which compiled is a generic call of the builtin, after every
        message and timer."""
        at = self.retransmit_at
        if self.timeout_at < at:  # noqa: PLR1730 - min() compiled: a generic call
            at = self.timeout_at
        if self.trying_at < at:  # noqa: PLR1730 - as above
            at = self.trying_at
        return at

    @property
    def terminated(self) -> bool:
        """True once the transaction has reached TERMINATED and can be forgotten."""
        return self.state is P.TERMINATED

    # -- timer slots ---------------------------------------------------------------------

    def _due(self, now: float) -> list[tuple[float, TxInput]]:
        due: list[tuple[float, TxInput]] = []
        # Slot order is the arming order (retransmit, timeout, then the delayed 100), so the
        # stable sort keeps it for equal deadlines.
        if self.retransmit_at <= now and self.retransmit_timer is not None:
            due.append((self.retransmit_at, self.retransmit_timer))
        if self.timeout_at <= now and self.timeout_timer is not None:
            due.append((self.timeout_at, self.timeout_timer))
        if self.trying_at <= now:
            due.append((self.trying_at, I.TIMER_TRYING))
        if len(due) > 1:
            due.sort(key=lambda pair: pair[0])
        return due

    def _armed_at(self, timer: TxInput) -> float:
        if timer is I.TIMER_TRYING:
            return self.trying_at
        if timer is self.retransmit_timer:
            return self.retransmit_at
        if timer is self.timeout_timer:
            return self.timeout_at
        return UNARMED

    def _disarm(self, timer: TxInput) -> float:
        """Stop ``timer`` if it runs; its deadline before, or UNARMED."""
        at = self._armed_at(timer)
        if at != UNARMED:
            self._set_armed(timer, UNARMED)
        return at

    def _set_armed(self, timer: TxInput, at: float) -> None:
        if timer is I.TIMER_TRYING:
            self.trying_at = at
        elif timer in RETRANSMIT_TIMERS:
            self.retransmit_timer = timer
            self.retransmit_at = at
        else:
            self.timeout_timer = timer
            self.timeout_at = at

    # -- the one transition function ------------------------------------------------------

    def _fire(
        self, tx_input: TxInput, now: float, message: Request | Response | None
    ) -> list[Effect]:
        step = self.rows.get((self.state, tx_input))
        if step is None:
            raise TransactionError(
                f"{self.kind.name} transaction in {self.state.name} has no row for {tx_input.name}"
            )
        actions, state, entry = step
        effects: list[Effect] = []
        for action in actions:
            self._run(action, tx_input, now, message, effects)
        if entry is not None:
            self.state = state
            if state in REQUEST_DONE_STATES:
                # Nothing re-sends the request from here on (timers A/E are not carried), and
                # the transaction may stay 32 s to absorb retransmissions: keep neither form.
                self.request = None
                self.request_bytes = None
            self._enter(entry, now)
        elif tx_input in RETRANSMIT_TIMERS:
            self._rearm_retransmit(tx_input, now)
        return effects

    def _enter(self, entry: _Entry, now: float) -> None:
        """Arm the timers of the state just entered; disarm every one it does not carry."""
        carried = entry.carried
        if self.retransmit_timer not in carried:
            self.retransmit_at = UNARMED
        if self.timeout_timer not in carried:
            self.timeout_at = UNARMED
        self.trying_at = UNARMED  # never carried: the delayed 100 belongs to the first state
        if entry.retransmit is not None:
            self.retransmit_timer = entry.retransmit
            self.retransmit_interval = self.timers.t1_s
            self.retransmit_at = now + self.timers.t1_s
        if entry.timeout is not None:
            self.timeout_timer = entry.timeout
            self.timeout_at = now + entry.timeout_s

    def _rearm_retransmit(self, timer: TxInput, now: float) -> None:
        if self.retransmit_interval == 0.0:
            # Fired by hand on a transaction that never armed it (reliable transport).
            raise TransactionError(f"{timer.name} was never armed")
        interval = self.retransmit_interval * 2
        if timer is I.TIMER_E and self.state is P.PROCEEDING:
            interval = self.timers.t2_s  # §17.1.2.2: in Proceeding, E fires every T2
        elif timer is not I.TIMER_A:
            interval = min(interval, self.timers.t2_s)  # A doubles without cap (§17.1.1.2)
        self.retransmit_timer = timer
        self.retransmit_interval = interval
        self.retransmit_at = now + interval

    def _run(
        self,
        action: Action,
        tx_input: TxInput,
        now: float,
        message: Request | Response | None,
        effects: list[Effect],
    ) -> None:
        # Most frequent first: every answer, every response received.
        if action is A.SEND_RESPONSE:
            assert isinstance(message, Response)
            self.trying_at = UNARMED  # answered: no 100 needed any more
            self.last_response = message.to_bytes()
            self.last_response_status = message.status_code
            effects.append(self.last_response)
        elif action is A.PASS_RESPONSE or action is A.PASS_ACK:
            assert message is not None
            if action is A.PASS_ACK:
                self.ack_received = True
                if self.retransmit_timer is I.TIMER_G:
                    self.retransmit_at = UNARMED  # stop re-sending the 2xx
            effects.append(message)
        elif action is A.SEND_ACK:
            assert isinstance(message, Response) and self.request is not None
            self.ack_bytes = make_non2xx_ack(self.request, message).to_bytes()
            effects.append(self.ack_bytes)
        elif action is A.RESEND_ACK:
            if self.ack_bytes is not None:
                effects.append(self.ack_bytes)
        elif action is A.RETRANSMIT_REQUEST:
            if self.request_bytes is not None:
                effects.append(self.request_bytes)
        elif action is A.SEND_TRYING:
            if self.last_response is None:
                self._send_trying(effects)
        elif action is A.RESEND_RESPONSE:
            if self.last_response is not None:
                effects.append(self.last_response)
            elif self.kind is TxKind.SERVER_INVITE:
                self._send_trying(effects)  # its 100 was being delayed: the peer waits
        elif action is A.REPORT_TIMEOUT:
            if tx_input is I.TIMER_L and self.ack_received:
                return  # the 2xx was acknowledged; L only ends absorption (RFC 6026)
            effects.append(TimedOut(tx_input.name.removeprefix("TIMER_")))
        elif action is A.REPORT_TRANSPORT_ERROR:
            effects.append(TransportFailure())

    def _send_trying(self, effects: list[Effect]) -> None:
        """The 100 (Trying) of an INVITE server transaction that has sent nothing yet."""
        if self.request is None:
            return
        self.trying_at = UNARMED
        self.last_response = make_response(self.request, 100).to_bytes()
        self.last_response_status = 100
        effects.append(self.last_response)
