"""The memory layout behind fast lookups: compact expiries, general dict tables, the Route value.

Figures live in bench/bind.py; these tests hold the layout to what the figures rely on and,
above all, show that the compact forms give back exactly what was put in.
"""

import dataclasses
import math
import sys
from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from routing.index import BindingIndex, Intercept, Route, _AxbEntry
from routing.model import (
    Binding,
    BindingType,
    InterceptCause,
    PhoneNumber,
    PoolKey,
    SubId,
    binding_profile,
    restore_binding,
)

NOW = 1_900_000_000.0
X = PhoneNumber("+8617000000001")
PROFILE = binding_profile(PoolKey("P"), BindingType.AXB)


def axb(expires_at: float, i: int = 0) -> Binding:
    return Binding(
        sub_id=SubId(f"{10**12 + i}"),
        pool_key=PoolKey("P"),
        type=BindingType.AXB,
        x=X,
        a=PhoneNumber(f"+86138{i:08d}"),
        b=PhoneNumber(f"+86139{i:08d}"),
        expires_at=expires_at,
    )


def restored(expires_at: float) -> Binding:
    return restore_binding(1, X, PhoneNumber("+8613800000000"), None, expires_at, None, PROFILE)


expiries = st.one_of(
    st.integers(-(10**10), 10**10).map(float),  # whole seconds: the compact form
    st.floats(allow_nan=False),  # anything else, infinities included
    st.integers(0, 10**9).map(lambda s: s + 0.5),
)


@settings(max_examples=300)
@given(expires_at=expiries)
def test_expiry_reads_back_exactly_whichever_form_holds_it(expires_at: float) -> None:
    for binding in (axb(expires_at), restored(expires_at)):
        assert binding.expires_at == expires_at
        assert type(binding.expires_at) is float
        hour = binding.expiry_hour
        assert hour <= expires_at or math.isinf(expires_at)
    changed = axb(0.0)
    changed.expires_at = expires_at
    assert changed.expires_at == expires_at
    assert changed == dataclasses.replace(axb(1.0), expires_at=expires_at)


def test_nan_expiry_stays_nan() -> None:
    assert math.isnan(axb(math.nan).expires_at)
    assert math.isnan(restored(math.nan).expires_at)


def test_a_whole_second_expiry_holds_no_float_of_its_own() -> None:
    # Two bindings expiring at the same second share every object of their expiry; a float
    # per binding would be 32 bytes each at a million bindings.
    first, second = axb(NOW + 1234.0), restored(NOW + 1234.0)
    assert first._expires_at is second._expires_at
    assert type(first._expires_at) is int
    assert first.expiry_hour is second.expiry_hour
    fraction = axb(NOW + 1234.25)
    assert type(fraction._expires_at) is float
    assert fraction.expires_at == NOW + 1234.25


def test_an_expiry_in_its_last_hour_or_past_is_judged_on_the_exact_second() -> None:
    index = BindingIndex()
    binding = axb(NOW + 10.0)
    index.add(binding, NOW)
    assert isinstance(index.resolve(X, binding.a, now=NOW + 9.5), Route)
    expired = index.resolve(X, binding.a, now=NOW + 10.0)
    assert isinstance(expired, Intercept) and expired.binding is binding
    assert expired.cause is InterceptCause.EXPIRED


def _str_only_copy(entry: Mapping[Any, object]) -> dict[object, object]:
    return {key: value for key, value in entry.items()}  # a plain str-only dict


def test_x_tables_keep_each_keys_hash_beside_it() -> None:
    # The general table (hash in each entry) is larger than the str-only one of the same keys;
    # a lookup then never reads a key object whose hash does not match (bench/README.md).
    index = BindingIndex()
    for i in range(50):
        index.add(axb(NOW + 3600.0, i), NOW)
    entry = index._by_x[X]
    assert type(entry) is _AxbEntry
    assert sys.getsizeof(entry) > sys.getsizeof(_str_only_copy(entry))
    for i in range(50):  # and it still holds only the numbers
        assert set(entry) >= {PhoneNumber(f"+86138{i:08d}"), PhoneNumber(f"+86139{i:08d}")}
    assert len(entry) == 100
    by_x = index._by_x
    assert sys.getsizeof(by_x) > sys.getsizeof(_str_only_copy(by_x))
    assert list(by_x) == [X]


def test_route_is_a_plain_value_with_dataclass_fields() -> None:
    index = BindingIndex()
    binding = axb(NOW + 3600.0)
    index.add(binding, NOW)
    route = index.resolve(X, binding.b, now=NOW)
    assert isinstance(route, Route)
    assert [field.name for field in dataclasses.fields(Route)] == [
        "binding",
        "callee",
        "caller",
        "call_type",
    ]
    assert (route.binding, route.callee, route.caller, route.call_type) == (
        binding,
        binding.a,
        binding.b,
        1,
    )
    b_as_parsed = PhoneNumber("".join(["+86139", "00000000"]))  # equal, not the same object
    assert b_as_parsed == binding.b and b_as_parsed is not binding.b
    again = index.resolve(X, b_as_parsed, now=NOW)
    assert again == route and again is not route
    assert route.phone_no == binding.a and route.peer_no == binding.b
