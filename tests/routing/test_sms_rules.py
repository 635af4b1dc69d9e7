"""routing.sms: segment counting, the smart text, unsubscribe, whitelist and the decision table."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.sms import (
    SEGMENT_CHARS,
    SIGNATURE,
    UNSUBSCRIBE_SUFFIX,
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

# The SPEC's table: 70 code points per segment, Chinese and ASCII alike; empty is one segment.
SEGMENT_TABLE = [(0, 1), (1, 1), (70, 1), (71, 2), (140, 2), (141, 3)]


@pytest.mark.parametrize(("chars", "expected"), SEGMENT_TABLE)
@pytest.mark.parametrize("letter", ["a", "中", "😀"])
def test_segments_count_code_points(chars: int, expected: int, letter: str) -> None:
    assert segments(letter * chars) == expected


def test_smart_text_wraps_with_signature_and_suffix() -> None:
    assert smart_text("你好") == "【号码隐私保护】你好【回T退订】"
    assert SIGNATURE == "【号码隐私保护】" and len(SIGNATURE) == 8
    assert UNSUBSCRIBE_SUFFIX == "【回T退订】" and len(UNSUBSCRIBE_SUFFIX) == 6


@pytest.mark.parametrize(
    ("text_chars", "expected"),
    [(0, 1), (56, 1), (57, 2), (126, 2), (127, 3)],  # the 14 wrapper code points count too
)
def test_smart_segments_include_signature_and_suffix(text_chars: int, expected: int) -> None:
    assert segments(smart_text("快" * text_chars)) == expected


@given(st.text(max_size=400))
@settings(max_examples=200)
def test_segments_bound_the_text(text: str) -> None:
    count = segments(text)
    assert count >= 1
    assert len(text) <= count * SEGMENT_CHARS
    assert count == 1 or len(text) > (count - 1) * SEGMENT_CHARS


@pytest.mark.parametrize("text", ["T", "t", " T ", "\tt\n", "Ｔ", "ｔ"])
def test_unsubscribe_replies(text: str) -> None:
    assert is_unsubscribe(text)


@pytest.mark.parametrize("text", ["", "TT", "Tt", "T.", "退订", "yes T", "x"])
def test_not_unsubscribe(text: str) -> None:
    assert not is_unsubscribe(text)


def test_whitelist_matches_keywords_case_insensitively() -> None:
    assert whitelisted("您的验证码是 1234", ["验证码"])
    assert whitelisted("Your CODE is 1234", ["code"])
    assert whitelisted("ＣＯＤＥ 1", ["code"])  # full-width letters
    assert not whitelisted("hello", ["code", "验证码"])
    assert not whitelisted("anything", ["", "  "])  # blank keywords never match
    assert not whitelisted("anything", [])


def test_digest_is_short_and_stable() -> None:
    assert text_digest("abc") == text_digest("abc") != text_digest("abd")
    assert len(text_digest("abc")) == 16
    assert text_digest("T") != hashlib.sha256(b"T").hexdigest()[:16]  # keyed: not recomputable


# ---------------------------------------------------------------------------- the decision


def facts(**changes: object) -> SmsFacts:
    base: dict[str, object] = {
        "in_pool": True,
        "pool_is_95": False,
        "mode": Mode.SMART,
        "reach": Reach.ROUTED,
        "unsubscribe": False,
        "recipient_unsubscribed": False,
        "whitelisted": False,
        "confirm": False,
    }
    base.update(changes)
    return SmsFacts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "action", "status", "cause"),
    [
        ({"in_pool": False}, Action.REFUSE, 404, "no_pool"),
        ({"pool_is_95": True}, Action.REFUSE, 403, "95axn"),
        ({"pool_is_95": True, "unsubscribe": True}, Action.REFUSE, 403, "95axn"),
        ({"mode": Mode.OFF}, Action.REFUSE, 403, "sms_off"),
        ({"mode": Mode.OFF, "unsubscribe": True}, Action.REFUSE, 403, "sms_off"),
        ({"unsubscribe": True}, Action.UNSUBSCRIBE, 202, "unsubscribe"),
        ({"unsubscribe": True, "reach": Reach.NO_BINDING}, Action.UNSUBSCRIBE, 202, "unsubscribe"),
        ({"mode": Mode.INTERCEPT, "reach": Reach.NO_BINDING}, Action.REFUSE, 404, "no_binding"),
        ({"reach": Reach.NO_BINDING}, Action.REFUSE, 404, "no_binding"),
        (
            {"mode": Mode.FULL_INTERCEPT, "reach": Reach.NO_BINDING},
            Action.INTERCEPT, 202, "no_binding",
        ),
        ({"reach": Reach.BLOCKED}, Action.INTERCEPT, 202, "blocked"),
        ({"mode": Mode.INTERCEPT}, Action.INTERCEPT, 202, "intercept_mode"),
        ({"mode": Mode.FULL_INTERCEPT}, Action.INTERCEPT, 202, "intercept_mode"),
        ({"mode": Mode.INTERCEPT, "whitelisted": True}, Action.DELIVER, 202, "smart"),
        (
            {"mode": Mode.INTERCEPT, "whitelisted": True, "recipient_unsubscribed": True},
            Action.INTERCEPT, 202, "unsubscribed",
        ),
        ({"recipient_unsubscribed": True}, Action.INTERCEPT, 202, "unsubscribed"),
        ({"recipient_unsubscribed": True, "confirm": True}, Action.INTERCEPT, 202, "unsubscribed"),
        ({"confirm": True}, Action.HOLD, 202, "confirm"),
        ({"mode": Mode.INTERCEPT, "confirm": True}, Action.INTERCEPT, 202, "intercept_mode"),
        ({}, Action.DELIVER, 202, "smart"),
    ],
)  # fmt: skip
def test_decision_table(
    changes: dict[str, object], action: Action, status: int, cause: str
) -> None:
    outcome = decide(facts(**changes))
    assert (outcome.action, outcome.status, outcome.cause) == (action, status, cause)
    assert outcome.reason  # a phrase a telecom engineer can read


def test_every_combination_has_a_consistent_outcome() -> None:
    for in_pool, is_95, mode, reach, unsub, unsubscribed, white, confirm in itertools.product(
        (True, False), (True, False), Mode, Reach, *([(True, False)] * 4)
    ):
        outcome = decide(SmsFacts(in_pool, is_95, mode, reach, unsub, unsubscribed, white, confirm))
        taken = outcome.action is not Action.REFUSE
        assert (outcome.status == 202) == taken
        if not in_pool or is_95 or mode is Mode.OFF:
            assert not taken  # nothing is ever stored there
        if outcome.action is Action.DELIVER:
            assert reach is Reach.ROUTED and not unsubscribed and not confirm and not unsub
            assert mode is Mode.SMART or white
