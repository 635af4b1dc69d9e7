"""Report payloads are written by orjson (store.outbox._json): the same text the standard
encoder with the same options wrote, for every kind of value a payload holds."""

from __future__ import annotations

import json
from enum import IntEnum, StrEnum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.outbox import _json

STANDARD = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class Kind(StrEnum):
    START = "start"


class Code(IntEnum):
    BUSY = 17


def test_a_call_payload_is_the_standard_encoders_text() -> None:
    payload: dict[str, object] = {
        "pool_key": "FC100000001",
        "sub_id": "4000000000000000001",
        "call_id": "a84b4c76e66710@pc33.example.com",
        "phone_no": "13800138000",
        "secret_no": "17000000001",
        "call_type": 0,
        "call_time": "2026-12-05 13:00:00",
        "start_time": None,
        "release_dir": Code.BUSY,
        "kind": Kind.START,
        "city": "北京",
        "duration": 1.5,
        "recorded": False,
        'quote\\and"\n': "tab\there \u2028 \x00",
    }
    assert _json(payload) == STANDARD.encode(payload)


def plain_values(floats: st.SearchStrategy[float]) -> st.SearchStrategy[object]:
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**64 - 1)
        | floats
        | st.text(),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=8), children, max_size=3)
        ),
        max_leaves=8,
    )


# The payloads' floats: seconds rounded to the millisecond (``round(x, 3)``), which Python
# writes without an exponent.
MILLISECONDS = st.floats(min_value=-1e9, max_value=1e9).map(lambda f: round(f, 3))


# At most 1,000 examples, not the ci profile's 5,000: these nested payloads are slow to draw
# (22 s a test at 5,000 in the suite), and past a few hundred the encoders' agreement is
# seldom news. The dev profile's fewer examples stay fewer.
NESTED_EXAMPLES = settings(max_examples=min(1_000, settings().max_examples))


@NESTED_EXAMPLES
@given(st.dictionaries(st.text(max_size=12), plain_values(MILLISECONDS), max_size=8))
def test_any_payload_of_plain_values_is_the_standard_encoders_text(
    payload: dict[str, object],
) -> None:
    assert _json(payload) == STANDARD.encode(payload)


@NESTED_EXAMPLES
@given(
    st.dictionaries(
        st.text(max_size=12),
        plain_values(st.floats(allow_nan=False, allow_infinity=False)),
        max_size=8,
    )
)
def test_any_finite_float_reads_back_the_same(payload: dict[str, object]) -> None:
    # Only an exponent's form may differ (1e-07 there, 1e-7 here): the same number.
    assert json.loads(_json(payload)) == json.loads(STANDARD.encode(payload)) == payload


def test_what_orjson_refuses_gets_the_standard_encoders_text() -> None:
    payload: dict[str, object] = {"big": 2**70, "list": [2**65]}
    assert _json(payload) == STANDARD.encode(payload)
    assert _json(payload) == '{"big":1180591620717411303424,"list":[36893488147419103232]}'


def test_what_neither_encodes_is_refused() -> None:
    with pytest.raises(TypeError):
        _json({"value": object()})
