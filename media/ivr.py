"""The AXN-extension collector: "please enter the extension followed by #" (SPEC §2).

A sans-IO state machine, like sip/transaction.py: the engine feeds it what happened (the prompt
finished playing, a digit arrived, a timer expired, the binding index rejected the extension)
with the time ``now``, and acts on the events each input returns. It owns no clock, no socket
and no player; ``next_timer()`` tells the engine when to call ``handle_timer``.

States (``TRANSITIONS`` is the one table)::

    PROMPTING  --prompt finished / a key (barge-in)-->  COLLECTING
    COLLECTING --'#', max length, timeout after digits-->  VERIFYING   (ExtensionEntered)
    COLLECTING --'#' alone, timeout with nothing keyed-->  PROMPTING   (RetryPrompt) or GAVE_UP
    VERIFYING  --rejected()-->  PROMPTING (RetryPrompt) or GAVE_UP (GiveUp)
    VERIFYING  --accepted()-->  ROUTED

- Keys pressed while the prompt plays count (barge-in): the first one asks the engine to stop
  the prompt (``StopPrompt``) and starts the entry.
- An entry ends on '#', on reaching ``max_length`` digits (SPEC §2: extensions are 1–3 digits,
  so a third digit needs no '#'), or when ``inter_digit_timeout_s`` passes without a key after
  at least one digit (SPEC: "then # or timeout"). The same timeout with nothing entered, or a
  '#' alone, is an empty entry.
- '*' clears what was entered so far (the usual "start again" key); 'A'-'D' are ignored.
- A '#' alone while the prompt is still playing is ignored rather than counted as an empty
  entry: it is most often the '#' that ended the previous, rejected entry arriving late.
- Each failed entry (empty, or ``rejected()`` by the engine because no binding has that
  extension) uses one of ``max_tries``; while tries remain the engine replays the prompt
  (``RetryPrompt``), after the last it plays the not-found prompt and hangs up (``GiveUp``).

Digits are a caller's input: ``ExtensionEntered`` and the collector mask them in ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto
from typing import Final

__all__ = [
    "DEFAULT_INTER_DIGIT_TIMEOUT_S",
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_MAX_TRIES",
    "TRANSITIONS",
    "ExtensionCollector",
    "ExtensionEntered",
    "FailureReason",
    "GiveUp",
    "IvrError",
    "IvrEvent",
    "IvrInput",
    "IvrState",
    "RetryPrompt",
    "StopPrompt",
]

DEFAULT_MAX_TRIES: Final = 3  # [ivr] max_tries
DEFAULT_INTER_DIGIT_TIMEOUT_S: Final = 5.0  # [ivr] inter_digit_timeout_s
DEFAULT_MAX_LENGTH: Final = 3  # SPEC §2: an extension is 1 to 3 digits
_KEYS: Final = frozenset("0123456789*#ABCD")


class IvrError(Exception):
    """An input the collector's table has no row for in its state (the engine's mistake)."""


class IvrState(Enum):
    """Where the caller is in entering an extension."""

    PROMPTING = auto()  # the prompt plays; nothing keyed yet in this try
    COLLECTING = auto()  # keys are being entered, the inter-digit timer runs
    VERIFYING = auto()  # an extension was entered; the engine looks it up
    ROUTED = auto()  # the engine accepted the extension (final)
    GAVE_UP = auto()  # tries used up (final)


class IvrInput(Enum):
    """Everything that can happen to the collector, already classified by its guards."""

    PROMPT_FINISHED = auto()
    DIGIT = auto()  # '0'-'9', the entry not yet full
    DIGIT_FILLS = auto()  # '0'-'9' reaching max_length
    HASH = auto()  # '#' after at least one digit
    HASH_EMPTY = auto()  # '#' with nothing entered
    HASH_EMPTY_LAST = auto()  # the same, on the last try
    STAR = auto()  # '*': clear the entry
    OTHER_KEY = auto()  # 'A'-'D'
    TIMEOUT = auto()  # inter-digit timer with digits entered
    TIMEOUT_EMPTY = auto()
    TIMEOUT_EMPTY_LAST = auto()
    REJECTED = auto()  # the engine found no binding for the extension
    REJECTED_LAST = auto()
    ACCEPTED = auto()


class FailureReason(Enum):
    """Why an entry did not give an extension."""

    EMPTY = "empty"  # '#' with no digit
    TIMEOUT = "timeout"  # no key within the timeout after the prompt
    NOT_FOUND = "not_found"  # no binding for the extension entered


class Action(Enum):
    """Side effects a row asks for, run in order."""

    STOP_PROMPT = auto()
    APPEND = auto()
    CLEAR = auto()
    ARM_TIMER = auto()
    SUBMIT = auto()
    RETRY = auto()
    GIVE_UP = auto()


S = IvrState
I = IvrInput  # noqa: E741 - short alias keeps the table readable
A = Action
Row = tuple[tuple[Action, ...], IvrState]

_IGNORED_IN_FINAL: Final = (
    I.PROMPT_FINISHED, I.DIGIT, I.DIGIT_FILLS, I.HASH, I.HASH_EMPTY, I.HASH_EMPTY_LAST,
    I.STAR, I.OTHER_KEY,
)  # fmt: skip

TRANSITIONS: dict[tuple[IvrState, IvrInput], Row] = {
    # The prompt plays. A key is barge-in: stop the prompt, start the entry.
    (S.PROMPTING, I.PROMPT_FINISHED): ((A.ARM_TIMER,), S.COLLECTING),
    (S.PROMPTING, I.DIGIT): ((A.STOP_PROMPT, A.APPEND, A.ARM_TIMER), S.COLLECTING),
    (S.PROMPTING, I.DIGIT_FILLS): ((A.STOP_PROMPT, A.APPEND, A.SUBMIT), S.VERIFYING),
    (S.PROMPTING, I.HASH_EMPTY): ((), S.PROMPTING),  # a late '#' of the previous entry
    (S.PROMPTING, I.HASH_EMPTY_LAST): ((), S.PROMPTING),
    (S.PROMPTING, I.STAR): ((), S.PROMPTING),
    (S.PROMPTING, I.OTHER_KEY): ((), S.PROMPTING),
    # Keys come in; the timer restarts with each.
    # The prompt's end can be reported after a barge-in stopped it: nothing to do.
    (S.COLLECTING, I.PROMPT_FINISHED): ((), S.COLLECTING),
    (S.COLLECTING, I.DIGIT): ((A.APPEND, A.ARM_TIMER), S.COLLECTING),
    (S.COLLECTING, I.DIGIT_FILLS): ((A.APPEND, A.SUBMIT), S.VERIFYING),
    (S.COLLECTING, I.HASH): ((A.SUBMIT,), S.VERIFYING),
    (S.COLLECTING, I.HASH_EMPTY): ((A.RETRY,), S.PROMPTING),
    (S.COLLECTING, I.HASH_EMPTY_LAST): ((A.GIVE_UP,), S.GAVE_UP),
    (S.COLLECTING, I.STAR): ((A.CLEAR, A.ARM_TIMER), S.COLLECTING),
    (S.COLLECTING, I.OTHER_KEY): ((A.ARM_TIMER,), S.COLLECTING),
    (S.COLLECTING, I.TIMEOUT): ((A.SUBMIT,), S.VERIFYING),
    (S.COLLECTING, I.TIMEOUT_EMPTY): ((A.RETRY,), S.PROMPTING),
    (S.COLLECTING, I.TIMEOUT_EMPTY_LAST): ((A.GIVE_UP,), S.GAVE_UP),
    # The engine looks the extension up; keys typed meanwhile (a '#' after a full entry) and a
    # late prompt end change nothing.
    **{(S.VERIFYING, key): ((), S.VERIFYING) for key in _IGNORED_IN_FINAL},
    (S.VERIFYING, I.REJECTED): ((A.RETRY,), S.PROMPTING),
    (S.VERIFYING, I.REJECTED_LAST): ((A.GIVE_UP,), S.GAVE_UP),
    (S.VERIFYING, I.ACCEPTED): ((), S.ROUTED),
    # Final states: the caller may go on pressing keys while the call is routed or torn down.
    **{(S.ROUTED, key): ((), S.ROUTED) for key in _IGNORED_IN_FINAL},
    **{(S.GAVE_UP, key): ((), S.GAVE_UP) for key in _IGNORED_IN_FINAL},
}

# Which failure each failing input is, for RetryPrompt and GiveUp.
_FAILURE_OF: Final = {
    I.HASH_EMPTY: FailureReason.EMPTY,
    I.HASH_EMPTY_LAST: FailureReason.EMPTY,
    I.TIMEOUT_EMPTY: FailureReason.TIMEOUT,
    I.TIMEOUT_EMPTY_LAST: FailureReason.TIMEOUT,
    I.REJECTED: FailureReason.NOT_FOUND,
    I.REJECTED_LAST: FailureReason.NOT_FOUND,
}


@dataclass(frozen=True, slots=True)
class StopPrompt:
    """The caller keyed during the prompt: stop playing it (barge-in)."""


@dataclass(frozen=True, slots=True, repr=False)
class ExtensionEntered:
    """The caller entered ``extension``: look it up, then call ``accepted()`` or ``rejected()``."""

    extension: str
    attempt: int  # 1 for the first try

    def __repr__(self) -> str:
        return f"ExtensionEntered(extension=<{len(self.extension)} digits>, attempt={self.attempt})"


@dataclass(frozen=True, slots=True)
class RetryPrompt:
    """The entry failed and tries remain: play the prompt again, then ``prompt_finished()``."""

    reason: FailureReason
    tries_left: int


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The last try failed: play the not-found prompt and end the call."""

    reason: FailureReason


IvrEvent = StopPrompt | ExtensionEntered | RetryPrompt | GiveUp


class ExtensionCollector:
    """Collects one AXN extension from a caller's keys, over up to ``max_tries`` entries.

    Created when the engine starts playing the prompt (state PROMPTING). Every input method
    returns the events it produced, in order; an input the table has no row for in the
    current state raises ``IvrError`` and changes nothing.
    """

    __slots__ = (
        "_deadline",
        "_entry",
        "failures",
        "inter_digit_timeout_s",
        "max_length",
        "max_tries",
        "state",
    )

    def __init__(
        self,
        *,
        max_tries: int = DEFAULT_MAX_TRIES,
        inter_digit_timeout_s: float = DEFAULT_INTER_DIGIT_TIMEOUT_S,
        max_length: int | None = DEFAULT_MAX_LENGTH,
    ) -> None:
        """``max_length`` None: only '#' or the timeout ends an entry."""
        if max_tries < 1:
            raise ValueError("max_tries must be at least 1")
        if not inter_digit_timeout_s > 0:
            raise ValueError("inter_digit_timeout_s must be positive")
        if max_length is not None and max_length < 1:
            raise ValueError("max_length must be at least 1")
        self.max_tries = max_tries
        self.inter_digit_timeout_s = inter_digit_timeout_s
        self.max_length = max_length
        self.state = S.PROMPTING
        self.failures = 0  # entries that failed so far
        self._entry: list[str] = []
        self._deadline: float | None = None

    # --- inputs ---

    def prompt_finished(self, now: float) -> list[IvrEvent]:
        """The (first or repeated) prompt has played to its end."""
        return self._fire(I.PROMPT_FINISHED, now, None)

    def digit(self, digit: str, now: float) -> list[IvrEvent]:
        """The caller pressed ``digit`` ('0'-'9', '*', '#', 'A'-'D'); ``ValueError`` otherwise."""
        if len(digit) != 1 or digit not in _KEYS:
            raise ValueError("not a DTMF key")
        return self._fire(self._classify_key(digit), now, digit)

    def handle_timer(self, now: float) -> list[IvrEvent]:
        """Call at (or after) ``next_timer()``; nothing happens before the deadline."""
        if self._deadline is None or now < self._deadline:
            return []
        failing = not self._entry
        tx_input = self._failing(I.TIMEOUT_EMPTY, I.TIMEOUT_EMPTY_LAST) if failing else I.TIMEOUT
        return self._fire(tx_input, now, None)

    def rejected(self, now: float) -> list[IvrEvent]:
        """The engine found no binding for the extension entered (counts as a failed try)."""
        return self._fire(self._failing(I.REJECTED, I.REJECTED_LAST), now, None)

    def accepted(self, now: float) -> list[IvrEvent]:
        """The engine found the binding and routes the call; the collector is done."""
        return self._fire(I.ACCEPTED, now, None)

    def next_timer(self) -> float | None:
        """When ``handle_timer`` must be called next (loop time), or None."""
        return self._deadline

    @property
    def finished(self) -> bool:
        """True in ROUTED and GAVE_UP: nothing more will come out of the collector."""
        return self.state in (S.ROUTED, S.GAVE_UP)

    # --- guards: turn a raw input into the table's input ---

    def _classify_key(self, key: str) -> IvrInput:
        if key.isdigit():
            full = self.max_length is not None and len(self._entry) + 1 >= self.max_length
            return I.DIGIT_FILLS if full else I.DIGIT
        if key == "#":
            if self._entry:
                return I.HASH
            return self._failing(I.HASH_EMPTY, I.HASH_EMPTY_LAST)
        if key == "*":
            return I.STAR
        return I.OTHER_KEY

    def _failing(self, retry: IvrInput, last: IvrInput) -> IvrInput:
        return last if self.failures + 1 >= self.max_tries else retry

    # --- the one transition function ---

    def _fire(self, tx_input: IvrInput, now: float, key: str | None) -> list[IvrEvent]:
        try:
            actions, next_state = TRANSITIONS[(self.state, tx_input)]
        except KeyError:
            raise IvrError(f"no transition from {self.state.name} on {tx_input.name}") from None
        events: list[IvrEvent] = []
        for action in actions:
            self._run(action, tx_input, now, key, events)
        self._set_state(next_state)
        return events

    def _set_state(self, state: IvrState) -> None:
        if state is not S.COLLECTING:
            self._deadline = None  # the inter-digit timer runs only while collecting
        self.state = state

    def _run(
        self,
        action: Action,
        tx_input: IvrInput,
        now: float,
        key: str | None,
        events: list[IvrEvent],
    ) -> None:
        if action is A.STOP_PROMPT:
            events.append(StopPrompt())
        elif action is A.APPEND:
            assert key is not None
            self._entry.append(key)
        elif action is A.CLEAR:
            self._entry.clear()
        elif action is A.ARM_TIMER:
            self._deadline = now + self.inter_digit_timeout_s
        elif action is A.SUBMIT:
            events.append(ExtensionEntered("".join(self._entry), attempt=self.failures + 1))
            self._entry.clear()
        elif action is A.RETRY or action is A.GIVE_UP:
            self.failures += 1
            self._entry.clear()
            reason = _FAILURE_OF[tx_input]
            if action is A.RETRY:
                events.append(RetryPrompt(reason, tries_left=self.max_tries - self.failures))
            else:
                events.append(GiveUp(reason))

    def __repr__(self) -> str:
        return (
            f"ExtensionCollector(state={self.state.name}, entered=<{len(self._entry)} digits>, "
            f"failures={self.failures}/{self.max_tries})"
        )
