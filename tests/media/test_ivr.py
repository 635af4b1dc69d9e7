"""The AXN-extension collector (media/ivr.py), driven on a fake clock."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.ivr import (
    TRANSITIONS,
    ExtensionCollector,
    ExtensionEntered,
    FailureReason,
    GiveUp,
    IvrError,
    IvrEvent,
    IvrInput,
    IvrState,
    RetryPrompt,
    StopPrompt,
)

TIMEOUT_S = 5.0


def collector(**kwargs: float | int | None) -> ExtensionCollector:
    options: dict[str, float | int | None] = {"inter_digit_timeout_s": TIMEOUT_S}
    options.update(kwargs)
    return ExtensionCollector(**options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Step:
    """One input at time ``at``: "prompt", "timer", "rejected", "accepted", or a key."""

    at: float
    what: str


def run(ivr: ExtensionCollector, steps: list[Step]) -> list[IvrEvent]:
    events: list[IvrEvent] = []
    for step in steps:
        if step.what == "prompt":
            events += ivr.prompt_finished(step.at)
        elif step.what == "timer":
            events += ivr.handle_timer(step.at)
        elif step.what == "rejected":
            events += ivr.rejected(step.at)
        elif step.what == "accepted":
            events += ivr.accepted(step.at)
        else:
            events += ivr.digit(step.what, step.at)
    return events


def keys(start: float, text: str, gap: float = 0.5) -> list[Step]:
    return [Step(start + gap * k, key) for k, key in enumerate(text)]


CASES: list[tuple[str, dict[str, int | None], list[Step], list[IvrEvent], IvrState]] = [
    (
        "1 2 3 # after the prompt",
        {"max_length": None},
        [Step(3, "prompt"), *keys(4, "123#")],
        [ExtensionEntered("123", attempt=1)],
        IvrState.VERIFYING,
    ),
    (
        "max length reached needs no #",
        {"max_length": 3},
        [Step(3, "prompt"), *keys(4, "123")],
        [ExtensionEntered("123", attempt=1)],
        IvrState.VERIFYING,
    ),
    (
        "# after a full entry changes nothing",
        {"max_length": 3},
        [Step(3, "prompt"), *keys(4, "123#")],
        [ExtensionEntered("123", attempt=1)],
        IvrState.VERIFYING,
    ),
    (
        "short extension ended by #",
        {},
        [Step(3, "prompt"), *keys(4, "7#")],
        [ExtensionEntered("7", attempt=1)],
        IvrState.VERIFYING,
    ),
    (
        "inter-digit timeout ends an entry with digits",
        {},
        [Step(3, "prompt"), *keys(4, "42"), Step(4.5 + TIMEOUT_S, "timer")],
        [ExtensionEntered("42", attempt=1)],
        IvrState.VERIFYING,
    ),
    (
        "barge-in: keys during the prompt count",
        {},
        [*keys(1, "12"), Step(2, "prompt"), Step(2.5, "#")],
        [StopPrompt(), ExtensionEntered("12", attempt=1)],
        IvrState.VERIFYING,
    ),
    (
        "barge-in filling the entry",
        {"max_length": 1},
        [Step(1, "5")],
        [StopPrompt(), ExtensionEntered("5", attempt=1)],
        IvrState.VERIFYING,
    ),
    (
        "nothing keyed: timeout, retry",
        {},
        [Step(3, "prompt"), Step(3 + TIMEOUT_S, "timer")],
        [RetryPrompt(FailureReason.TIMEOUT, tries_left=2)],
        IvrState.PROMPTING,
    ),
    (
        "# alone after the prompt is an empty entry",
        {},
        [Step(3, "prompt"), Step(4, "#")],
        [RetryPrompt(FailureReason.EMPTY, tries_left=2)],
        IvrState.PROMPTING,
    ),
    (
        "# alone during the prompt is ignored",
        {},
        [Step(1, "#"), Step(3, "prompt"), *keys(4, "9#")],
        [ExtensionEntered("9", attempt=1)],
        IvrState.VERIFYING,
    ),
    (
        "* clears the entry",
        {},
        [Step(3, "prompt"), *keys(4, "98*12#")],
        [ExtensionEntered("12", attempt=1)],
        IvrState.VERIFYING,
    ),
    (
        "A-D are ignored",
        {},
        [Step(3, "prompt"), *keys(4, "1A2D#")],
        [ExtensionEntered("12", attempt=1)],
        IvrState.VERIFYING,
    ),
    (
        "wrong extension then the right one",
        {},
        [
            Step(3, "prompt"),
            *keys(4, "99#"),
            Step(5.1, "rejected"),
            Step(8, "prompt"),
            *keys(9, "12#"),
            Step(10.1, "accepted"),
        ],
        [
            ExtensionEntered("99", attempt=1),
            RetryPrompt(FailureReason.NOT_FOUND, tries_left=2),
            ExtensionEntered("12", attempt=2),
        ],
        IvrState.ROUTED,
    ),
    (
        "three wrong extensions give up",
        {},
        [
            Step(3, "prompt"),
            *keys(4, "1#"),
            Step(5, "rejected"),
            Step(8, "prompt"),
            *keys(9, "2#"),
            Step(10, "rejected"),
            Step(13, "prompt"),
            *keys(14, "3#"),
            Step(15, "rejected"),
        ],
        [
            ExtensionEntered("1", attempt=1),
            RetryPrompt(FailureReason.NOT_FOUND, tries_left=2),
            ExtensionEntered("2", attempt=2),
            RetryPrompt(FailureReason.NOT_FOUND, tries_left=1),
            ExtensionEntered("3", attempt=3),
            GiveUp(FailureReason.NOT_FOUND),
        ],
        IvrState.GAVE_UP,
    ),
    (
        "mixed failures count together",
        {"max_tries": 3},
        [
            Step(3, "prompt"),
            Step(3 + TIMEOUT_S, "timer"),
            Step(10, "prompt"),
            Step(11, "#"),
            Step(14, "prompt"),
            *keys(15, "5#"),
            Step(16, "rejected"),
        ],
        [
            RetryPrompt(FailureReason.TIMEOUT, tries_left=2),
            RetryPrompt(FailureReason.EMPTY, tries_left=1),
            ExtensionEntered("5", attempt=3),
            GiveUp(FailureReason.NOT_FOUND),
        ],
        IvrState.GAVE_UP,
    ),
    (
        "one try only",
        {"max_tries": 1},
        [Step(3, "prompt"), Step(3 + TIMEOUT_S, "timer")],
        [GiveUp(FailureReason.TIMEOUT)],
        IvrState.GAVE_UP,
    ),
    (
        "keys after giving up are ignored",
        {"max_tries": 1},
        [Step(3, "prompt"), Step(4, "#"), *keys(5, "12#"), Step(7, "prompt")],
        [GiveUp(FailureReason.EMPTY)],
        IvrState.GAVE_UP,
    ),
    (
        "late prompt end after barge-in is harmless",
        {},
        [Step(1, "4"), Step(1.2, "prompt"), Step(1.5, "#")],
        [StopPrompt(), ExtensionEntered("4", attempt=1)],
        IvrState.VERIFYING,
    ),
]


@pytest.mark.parametrize(
    ("options", "steps", "expected", "final"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_scenarios(
    options: dict[str, int | None],
    steps: list[Step],
    expected: list[IvrEvent],
    final: IvrState,
) -> None:
    ivr = collector(**options)
    assert run(ivr, steps) == expected
    assert ivr.state is final


def test_timer_is_armed_only_while_collecting_and_restarts_with_each_key() -> None:
    ivr = collector()
    assert ivr.next_timer() is None  # the prompt plays: no timeout yet
    ivr.prompt_finished(10.0)
    assert ivr.next_timer() == 10.0 + TIMEOUT_S
    ivr.digit("1", 12.0)
    assert ivr.next_timer() == 12.0 + TIMEOUT_S
    assert ivr.handle_timer(16.9) == []  # early: nothing happens
    assert ivr.state is IvrState.COLLECTING
    assert ivr.handle_timer(17.0) == [ExtensionEntered("1", attempt=1)]
    assert ivr.next_timer() is None
    assert ivr.handle_timer(100.0) == []


def test_retry_starts_a_fresh_entry() -> None:
    ivr = collector()
    ivr.prompt_finished(0)
    ivr.digit("8", 1)
    ivr.handle_timer(1 + TIMEOUT_S)  # "8" submitted by the timeout
    ivr.rejected(6.5)
    assert ivr.next_timer() is None
    ivr.prompt_finished(9)
    assert ivr.digit("3", 10) == []
    assert ivr.digit("#", 11) == [ExtensionEntered("3", attempt=2)]


@pytest.mark.parametrize(
    ("steps", "call"),
    [
        ([], "rejected"),  # nothing entered yet
        ([], "accepted"),
        ([Step(1, "prompt")], "rejected"),
        ([Step(1, "prompt"), Step(2, "1"), Step(2.1, "#"), Step(3, "accepted")], "rejected"),
        ([Step(1, "prompt"), Step(2, "#"), Step(3, "prompt")], "accepted"),
    ],
)
def test_inputs_missing_from_the_table_raise_and_change_nothing(
    steps: list[Step], call: str
) -> None:
    ivr = collector()
    run(ivr, steps)
    before = (ivr.state, ivr.failures, ivr.next_timer())
    with pytest.raises(IvrError):
        run(ivr, [Step(50, call)])
    assert (ivr.state, ivr.failures, ivr.next_timer()) == before


def test_table_shape() -> None:
    """Misuse has no row (so it raises), and the final states only ever stay put."""
    rows = set(TRANSITIONS)
    assert (IvrState.PROMPTING, IvrInput.TIMEOUT) not in rows
    assert (IvrState.PROMPTING, IvrInput.REJECTED) not in rows
    assert (IvrState.COLLECTING, IvrInput.ACCEPTED) not in rows
    assert (IvrState.ROUTED, IvrInput.REJECTED) not in rows
    assert (IvrState.GAVE_UP, IvrInput.ACCEPTED) not in rows
    for (state, _), (actions, next_state) in TRANSITIONS.items():
        if state in (IvrState.ROUTED, IvrState.GAVE_UP):
            assert (actions, next_state) == ((), state)


def test_bad_keys_and_settings_are_refused() -> None:
    ivr = collector()
    for bad in ("", "12", "x", "E", "٣"):
        with pytest.raises(ValueError):
            ivr.digit(bad, 1.0)
    assert ivr.state is IvrState.PROMPTING
    for options in ({"max_tries": 0}, {"inter_digit_timeout_s": 0}, {"max_length": 0}):
        with pytest.raises(ValueError):
            collector(**options)


def test_digits_never_show_in_reprs() -> None:
    ivr = collector(max_length=None)
    ivr.prompt_finished(0)
    events = [e for key in "8675309" for e in ivr.digit(key, 1)]
    assert events == []
    text = repr(ivr)
    assert "<7 digits>" in text
    assert not any(part in text for part in ("867", "675", "753", "530", "309"))
    entered = ivr.digit("#", 2)
    assert entered == [ExtensionEntered("8675309", attempt=1)]
    shown = repr(entered[0])
    assert "8675309" not in shown and "<7 digits>" in shown


@settings(max_examples=300)
@given(
    script=st.lists(
        st.one_of(
            st.sampled_from(list("0123456789*#ABCD")),
            st.sampled_from(["prompt", "timer", "rejected", "accepted"]),
        ),
        max_size=40,
    ),
    max_tries=st.integers(1, 4),
    max_length=st.one_of(st.none(), st.integers(1, 4)),
)
def test_invariants_under_any_input(
    script: list[str], max_tries: int, max_length: int | None
) -> None:
    """Whatever the engine feeds (refused inputs included), the collector keeps its promises."""
    ivr = collector(max_tries=max_tries, max_length=max_length)
    now = 0.0
    outcomes: list[IvrEvent] = []
    for what in script:
        now += 1.0 if what != "timer" else TIMEOUT_S
        before = (ivr.state, ivr.failures)
        try:
            outcomes += run(ivr, [Step(now, what)])
        except IvrError:
            assert (ivr.state, ivr.failures) == before  # refused: nothing changed
        assert ivr.failures <= max_tries
        assert (ivr.next_timer() is not None) == (ivr.state is IvrState.COLLECTING)
    give_ups = [e for e in outcomes if isinstance(e, GiveUp)]
    retries = [e for e in outcomes if isinstance(e, RetryPrompt)]
    assert len(give_ups) <= 1
    assert len(retries) <= max_tries - 1
    assert (len(give_ups) == 1) == (ivr.state is IvrState.GAVE_UP)
    for event in outcomes:
        if isinstance(event, ExtensionEntered):
            assert event.extension.isdigit()
            assert max_length is None or len(event.extension) <= max_length
            assert 1 <= event.attempt <= max_tries
