"""routing.model.Binding: a dataclass to its users, stored compactly (profile, int sub_id)."""

import dataclasses
import inspect
import math
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing import model
from routing.model import (
    NO_RINGBACK,
    Binding,
    BindingType,
    GroupId,
    PhoneNumber,
    PoolKey,
    Restriction,
    SubId,
    binding_profile,
    expiry_hour,
    restore_binding,
    sub_key,
)

FULL: dict[str, object] = {
    "sub_id": SubId("123456789012345678"),
    "pool_key": PoolKey("FC100"),
    "type": BindingType.AXG,
    "x": PhoneNumber("+8617000000001"),
    "a": PhoneNumber("+8613800000001"),
    "expires_at": 1_900_000_000.5,
    "b": PhoneNumber("+8613800000002"),
    "group_id": GroupId("77"),
    "extension": "12",
    "record": True,
    "restriction": Restriction.BX_DISABLE,
    "ring_timeout_s": 30,
    "out_id": "order-1",
    "created_at": 1_800_000_000.25,
    "ringback": {"AXBRing_A": "tone-1"},
}
# Another valid value for every field, to see each one count in ==.
OTHER: dict[str, object] = {
    "sub_id": SubId("s-2"),
    "pool_key": PoolKey("FC200"),
    "type": BindingType.AXN,
    "x": PhoneNumber("+8617000000002"),
    "a": PhoneNumber("+8613800000003"),
    "expires_at": 1_900_000_001.0,
    "b": None,
    "group_id": None,
    "extension": None,
    "record": False,
    "restriction": Restriction.NONE,
    "ring_timeout_s": 60,
    "out_id": None,
    "created_at": 0.0,
    "ringback": NO_RINGBACK,
}


def full() -> Binding:
    return Binding(**FULL)  # type: ignore[arg-type]


def test_every_field_reads_back_as_given() -> None:
    binding = full()
    for name, value in FULL.items():
        assert getattr(binding, name) == value, name
        assert type(getattr(binding, name)) is type(value) or name == "ringback", name
    assert isinstance(binding.ringback, Mapping)


def test_positional_construction_as_the_dataclass() -> None:
    assert Binding(*FULL.values()) == full()  # type: ignore[arg-type]
    minimal = Binding(*list(FULL.values())[:6])  # type: ignore[arg-type]
    for name, field in Binding.__dataclass_fields__.items():
        if field.default is not dataclasses.MISSING:
            assert getattr(minimal, name) == field.default, name
    assert minimal.ringback is NO_RINGBACK


def test_dataclass_fields_match_the_constructor() -> None:
    assert dataclasses.is_dataclass(Binding)
    parameters = list(inspect.signature(Binding).parameters.values())
    fields = dataclasses.fields(full())
    assert [p.name for p in parameters] == [f.name for f in fields] == list(FULL)
    for parameter, field in zip(parameters, fields, strict=True):
        if field.default is not dataclasses.MISSING:
            assert parameter.default == field.default, field.name
        elif field.default_factory is not dataclasses.MISSING:
            assert parameter.default is field.default_factory(), field.name
        else:
            assert parameter.default is inspect.Parameter.empty, field.name


@pytest.mark.parametrize("name", list(FULL))
def test_replace_changes_one_field_and_equality_sees_it(name: str) -> None:
    binding = full()
    changed = dataclasses.replace(binding, **{name: OTHER[name]})
    assert getattr(changed, name) == OTHER[name]
    for other in FULL:
        if other != name:
            assert getattr(changed, other) == getattr(binding, other), other
    assert changed != binding and binding != changed
    assert dataclasses.replace(changed, **{name: FULL[name]}) == binding


def test_equality_is_by_value_and_class_and_bindings_are_unhashable() -> None:
    assert full() == full() and full() is not full()
    assert full() != "Binding(...)"  # another type: NotImplemented, then identity
    assert full().__eq__(object()) is NotImplemented
    with pytest.raises(TypeError):
        hash(full())


def test_repr_is_the_dataclass_repr() -> None:
    text = repr(full())
    expected = ", ".join(f"{name}={getattr(full(), name)!r}" for name in FULL)
    assert text == f"Binding({expected})"
    assert text.startswith("Binding(sub_id='123456789012345678', pool_key='FC100', type=")


def test_equal_settings_share_one_profile() -> None:
    first, second = full(), dataclasses.replace(full(), a=PhoneNumber("+8613800000009"))
    assert first.profile is second.profile
    # Passed as plain values, stored as the enum members the index compares with `is`.
    loose = binding_profile(PoolKey("FC9"), "AXB", record=1, restriction="CONTROL_AX_DISABLE")  # type: ignore[arg-type]
    assert loose.type is BindingType.AXB and loose.restriction is Restriction.AX_DISABLE
    assert loose.record is True
    assert binding_profile(PoolKey("FC9"), BindingType.AXB, record=True,
                           restriction=Restriction.AX_DISABLE) is loose  # fmt: skip
    with pytest.raises(ValueError):
        binding_profile(PoolKey("FC9"), "AXZ")  # type: ignore[arg-type]


def test_ringback_is_a_read_only_copy() -> None:
    codes = {"AXBRing_B": "tone-2", "AXBRing_A": "tone-1"}
    binding = dataclasses.replace(full(), ringback=codes)
    codes["AXBRing_A"] = "changed"
    assert binding.ringback == {"AXBRing_A": "tone-1", "AXBRing_B": "tone-2"}
    with pytest.raises(TypeError):
        binding.ringback["AXBRing_A"] = "x"  # type: ignore[index]
    assert dataclasses.replace(full(), ringback={}).ringback is NO_RINGBACK


def test_profile_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model, "_PROFILES", {})
    monkeypatch.setattr(model, "_MAX_PROFILES", 4)
    kept = [dataclasses.replace(full(), extension=str(n)) for n in range(10)]
    assert len(model._PROFILES) <= 4
    # Bindings keep the profile they were given; equal settings still compare equal.
    assert [b.extension for b in kept] == [str(n) for n in range(10)]
    assert dataclasses.replace(full(), extension="0") == kept[0]


@settings(max_examples=300)
@given(
    st.one_of(
        st.text(min_size=1, max_size=25),
        st.integers(0, 10**20).map(str),
        st.integers(0, 10**18).map(lambda n: f"{n:018d}"),
    )
)
def test_sub_id_comes_back_exactly_whatever_it_holds(sub_id: str) -> None:
    binding = dataclasses.replace(full(), sub_id=SubId(sub_id))
    assert binding.sub_id == sub_id and type(binding.sub_id) is str
    canonical = sub_id.isascii() and sub_id.isdigit() and sub_id[0] != "0" and len(sub_id) <= 18
    assert type(binding.sub_key) is (int if canonical else str)
    assert sub_key(binding.sub_id) == binding.sub_key


def test_restore_binding_is_binding_without_created_at() -> None:
    binding = full()
    restored = restore_binding(
        binding.sub_key,
        binding.x,
        binding.a,
        binding.b,
        binding.expires_at,
        binding.out_id,
        binding.profile,
    )
    assert restored == dataclasses.replace(binding, created_at=0.0)
    assert restored.created_at == 0.0


@settings(max_examples=300)
@given(
    st.one_of(
        st.floats(min_value=0, max_value=2**34, allow_nan=False),
        # just below, at and just above whole hours: where a rounding error would show
        st.integers(1, 2**20).flatmap(
            lambda hours: st.sampled_from(
                [
                    math.nextafter(hours * 3600.0, 0),
                    hours * 3600.0,
                    math.nextafter(hours * 3600.0, math.inf),
                ]
            )
        ),
    )
)
def test_expiry_hour_is_the_hour_the_expiry_falls_in(expires_at: float) -> None:
    hour = expiry_hour(expires_at)
    assert hour <= expires_at < hour + 3600
    assert hour % 3600 == 0
    assert expiry_hour(hour + 1800.5) is hour  # one shared float per hour


def test_expiry_hour_of_non_finite_values_is_the_value() -> None:
    assert expiry_hour(math.inf) == math.inf
    assert math.isnan(expiry_hour(math.nan))


def test_setting_expiry_out_id_and_created_at_keeps_the_derived_slots_right() -> None:
    binding = full()
    binding.expires_at = 7_200.5
    assert binding.expires_at == 7_200.5 and binding.expiry_hour == 7_200.0
    binding.out_id = None
    assert (binding.out_id, binding.created_at) == (None, FULL["created_at"])
    binding.created_at = 0.0
    binding.out_id = "o-9"
    assert (binding.out_id, binding.created_at) == ("o-9", 0.0)
    binding.created_at = 5.0
    assert (binding.out_id, binding.created_at) == ("o-9", 5.0)
    assert binding == dataclasses.replace(full(), expires_at=7_200.5, out_id="o-9", created_at=5.0)
