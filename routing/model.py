"""The binding model shared by routing, store, engine and API (SPEC §2).

Pure data: no I/O, no clock.  Times are UTC epoch seconds (``float``), the
unit the in-memory index compares against ``now`` on the call path; local
time exists only at the edges (CLI, API, reports).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import Field, dataclass, field
from enum import IntEnum, StrEnum
from math import isfinite
from types import MappingProxyType
from typing import Any, ClassVar, Final, NewType

# E.164 with leading "+", e.g. "+8613800138000"; produced only by routing.numbers.normalize.
PhoneNumber = NewType("PhoneNumber", str)
SubId = NewType("SubId", str)
PoolKey = NewType("PoolKey", str)
GroupId = NewType("GroupId", str)


class BindingType(StrEnum):
    """Number (binding) types of SPEC §2; the values are the CLI/API spellings."""

    AXB = "AXB"
    AXN = "AXN"
    AXN_EXT = "AXN_EXT"
    AXN95 = "95AXN"
    AXG = "AXG"

    @property
    def exclusive(self) -> bool:
        """True when X carries a single binding (AXN, 95AXN, AXG)."""
        return self in (BindingType.AXN, BindingType.AXN95, BindingType.AXG)


class Restriction(StrEnum):
    """One-way call restriction (SPEC §2: CONTROL_AX_DISABLE, CONTROL_BX_DISABLE)."""

    NONE = "NONE"
    AX_DISABLE = "CONTROL_AX_DISABLE"  # A may not call X
    BX_DISABLE = "CONTROL_BX_DISABLE"  # the peer (B/N/G member) may not call X


class NumberSpec(IntEnum):
    """Resource spec of an X number (SPEC §3)."""

    VIRTUAL = 1  # virtual-operator 170/171
    CARRIER = 2
    NATIONWIDE_95 = 3


class BlockDirection(StrEnum):
    """Direction of a point-to-point blacklist pair ``first:second`` (SPEC §3 blacklists)."""

    BOTH = "BOTH"  # neither may call the other through the pool's X numbers
    FIRST_TO_SECOND = "FIRST_TO_SECOND"  # only first → second is blocked
    SECOND_TO_FIRST = "SECOND_TO_FIRST"  # only second → first is blocked


class RoutingError(Exception):
    """Root of the routing package's errors: a stable machine ``code`` and a human ``message``.

    The ``code`` is what the API and CLI print as ``{"code": ..., "message": ...}``; messages never
    contain an unmasked phone number.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class InterceptCause(StrEnum):
    """Why a call to X is not connected (SPEC §4 intercepted calls, §6 unconnected_cause)."""

    NO_BINDING = "NO_BINDING"
    EXPIRED = "EXPIRED"
    RESTRICTED = "RESTRICTED"
    NOT_IN_GROUP = "NOT_IN_GROUP"
    BLACKLISTED = "BLACKLISTED"
    UNVERIFIED = "UNVERIFIED"
    NO_DEFAULT_B = "NO_DEFAULT_B"  # A called an AXN/AXG X with no default B set

    @property
    def unconnected_cause(self) -> int:
        """SPEC §6 code: 1 blacklist, 2 no binding, 3 restriction, 4 other."""
        if self is InterceptCause.BLACKLISTED:
            return 1
        if self in (InterceptCause.NO_BINDING, InterceptCause.EXPIRED):
            return 2
        if self is InterceptCause.RESTRICTED:
            return 3
        return 4


# SPEC §2 defaults.
AXB_CAPACITY_PER_X = 200
DEFAULT_RING_TIMEOUT_S = 60
MIN_RING_TIMEOUT_S = 5
MAX_RING_TIMEOUT_S = 180


#: The ringback codes of a binding that has none: one shared read-only empty mapping, so the
#: million bindings loaded at start do not each carry an empty dict (64 bytes apiece).
NO_RINGBACK: Final[Mapping[str, str]] = MappingProxyType({})


#: Interned profiles by their defining values (see :func:`binding_profile`).  Cleared when it
#: reaches ``_MAX_PROFILES`` (a profile per group or extension can add up over years): bindings
#: keep the profile they hold, and sharing starts again for the next ones.
_PROFILES: dict[tuple[object, ...], BindingProfile] = {}
_MAX_PROFILES: Final = 1 << 16


@dataclass(frozen=True, slots=True)
class BindingProfile:
    """The settings of a binding that many bindings share, held once (a flyweight).

    A binding's pool, type, recording flag, restriction, ringing timeout, group, extension and
    ringback codes take few distinct combinations across a million bindings; each combination
    is one interned, immutable profile (:func:`binding_profile`) and a :class:`Binding` carries
    it in one slot instead of eight.  Equal profiles compare equal whether or not they are the
    same object.
    """

    pool_key: PoolKey
    type: BindingType
    record: bool
    restriction: Restriction
    ring_timeout_s: int
    group_id: GroupId | None
    extension: str | None
    # The codes as sorted (name, tone id) pairs: the hashable, comparable form.
    ringback_codes: tuple[tuple[str, str], ...]
    # Code name → tone id, read-only (``NO_RINGBACK`` when there are none).
    ringback: Mapping[str, str] = field(compare=False)


def binding_profile(
    pool_key: PoolKey,
    type: BindingType,
    *,
    record: bool = False,
    restriction: Restriction = Restriction.NONE,
    ring_timeout_s: int = DEFAULT_RING_TIMEOUT_S,
    group_id: GroupId | None = None,
    extension: str | None = None,
    ringback: Mapping[str, str] = NO_RINGBACK,
) -> BindingProfile:
    """The interned profile of these settings (the same object for equal settings)."""
    codes = () if ringback is NO_RINGBACK or not ringback else tuple(sorted(ringback.items()))
    key = (pool_key, type, record, restriction, ring_timeout_s, group_id, extension, codes)
    profile = _PROFILES.get(key)
    if profile is None:
        if len(_PROFILES) >= _MAX_PROFILES:
            _PROFILES.clear()
        # Enum members and a bool whatever was passed: the index compares with ``is``, and
        # "AXB" == BindingType.AXB would otherwise let a str into a shared profile.
        profile = _PROFILES[key] = BindingProfile(
            pool_key=pool_key,
            type=BindingType(type),
            record=bool(record),
            restriction=Restriction(restriction),
            ring_timeout_s=ring_timeout_s,
            group_id=group_id,
            extension=extension,
            ringback_codes=codes,
            ringback=MappingProxyType(dict(codes)) if codes else NO_RINGBACK,
        )
    return profile


#: The longest sub_id held as an int: 18 digits stay below 2**60, a 32-byte int.
_MAX_INT_SUB_ID_DIGITS: Final = 18


def sub_key(sub_id: str) -> SubId | int:
    """The compact form a binding holds its sub_id in: an int for a canonical decimal id.

    The ids maskline makes are 18 random digits: as an int 32 bytes instead of an 80-byte
    str.  Any other id (leading zero, letters, longer) stays the str it is.  ``str()`` of the
    int gives the id back exactly.
    """
    if (
        0 < len(sub_id) <= _MAX_INT_SUB_ID_DIGITS
        and sub_id.isascii()
        and sub_id.isdigit()
        and sub_id[0] != "0"
    ):
        return int(sub_id)
    return SubId(sub_id)


#: One shared float per whole hour an expiry falls in (see :func:`expiry_hour`); cleared, like
#: the profiles, when it reaches ``_MAX_PROFILES``.
_HOURS: dict[float, float] = {}
_HOUR_S: Final = 3600.0


def expiry_hour(expires_at: float) -> float:
    """``expires_at`` rounded down to the whole hour (UTC), as one float object shared by
    every binding expiring in that hour.

    The call path compares this first: a binding whose hour lies after ``now`` is in force
    without reading its own expiry, a float object of its own and one more cache miss per
    call at a million bindings (the hour floats, a few hundred, stay in cache).  Exact:
    ``expires_at % 3600`` is exact in binary floating point, so the result never exceeds
    ``expires_at``; a value that is not finite is its own hour.
    """
    if not isfinite(expires_at):
        return expires_at
    hour = expires_at - expires_at % _HOUR_S
    shared = _HOURS.get(hour)
    if shared is None:
        if len(_HOURS) >= _MAX_PROFILES:
            _HOURS.clear()
        shared = _HOURS[hour] = hour
    return shared


#: The whole seconds past the hour, as shared int objects: a binding whose expiry is a whole
#: second (every expiry the API and the RPC endpoint accept, "YYYY-MM-DD HH:MM:SS") holds one
#: of these beside its shared :func:`expiry_hour` instead of a float object of its own, 32
#: bytes less per binding at a million (0–256 are CPython's cached small ints anyway).
_SECONDS_PAST_HOUR: Final = tuple(range(int(_HOUR_S)))


def _expiry_rest(expires_at: float, hour: float) -> float | int:
    """What a binding's ``_expires_at`` slot holds: the shared seconds past ``hour`` when
    ``hour + seconds`` is exactly ``expires_at``, else the float itself (fractions, values
    not finite)."""
    rest = expires_at - hour
    if 0.0 <= rest < _HOUR_S:  # False for NaN, and for ∞ − ∞
        whole = int(rest)
        if hour + whole == expires_at:
            return _SECONDS_PAST_HOUR[whole]
    return float(expires_at)


class _Cold:
    """``out_id`` and ``created_at`` of a binding that has a ``created_at`` (one slot for two).

    Bindings in the index have none (0.0): the load does not read it and the control plane
    indexes its bindings without it, so nearly every binding holds just its ``out_id`` (or
    None) in that slot.
    """

    __slots__ = ("created_at", "out_id")

    def __init__(self, out_id: str | None, created_at: float) -> None:
        self.out_id = out_id
        self.created_at = created_at


def _cold(out_id: str | None, created_at: float) -> _Cold | str | None:
    return out_id if created_at == 0.0 else _Cold(out_id, created_at)


class Binding:
    """One binding of real numbers to a middle number X.

    ``a`` is always the "A side" of SPEC §6 (``phone_no``).  ``b`` is the peer
    for AXB, the default B for AXN/95AXN/AXG/AXN_EXT (None when unset).
    Treat instances as immutable once handed to the index: updates replace
    the object (``dataclasses.replace``).

    Built and read like a dataclass of the 15 fields of ``__init__`` (keyword or positional
    construction, ``dataclasses.replace``/``fields``, field-wise ``==``, the dataclass
    ``repr``), but stored compactly, for DESIGN's ≤ 400 bytes per binding at a million, in 8
    slots (a 96-byte object): ``a``, ``b`` and ``x`` as given; :attr:`expiry_hour` (the
    expiry's hour, a shared float, what resolve compares first) and beside it the rest of the
    expiry: for a whole second a shared int (seconds past that hour), else the float itself;
    ``sub_id`` as :attr:`sub_key`
    (an int for canonical decimal ids); ``out_id`` with ``created_at`` in one slot (just the
    ``out_id`` when ``created_at`` is 0.0, unknown); and the eight settings bindings share
    (pool, type, flags, group, extension, ringback) as one interned :class:`BindingProfile`.
    Those are read through properties.  Bindings in the index have ``created_at`` 0.0: the
    start-up load does not read it and the control plane indexes bindings without it (the
    store has it; views read the store).
    """

    __slots__ = ("_cold", "_expires_at", "a", "b", "expiry_hour", "profile", "sub_key", "x")

    # Set below from _BindingFields: what makes dataclasses.replace/fields/is_dataclass work.
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    # Unhashable, as a dataclass with eq and not frozen (Python sets it so: __eq__ is defined).
    __hash__: ClassVar[None]  # type: ignore[assignment]

    x: PhoneNumber
    a: PhoneNumber
    b: PhoneNumber | None
    expiry_hour: float
    profile: BindingProfile
    sub_key: SubId | int
    # A float, or the shared int seconds past expiry_hour (see _expiry_rest).
    _expires_at: float | int
    _cold: _Cold | str | None

    def __init__(  # noqa: PLR0917  # positional as the dataclass's: Binding(sub_id, pool_key, …)
        self,
        sub_id: SubId,
        pool_key: PoolKey,
        type: BindingType,
        x: PhoneNumber,
        a: PhoneNumber,
        expires_at: float,
        b: PhoneNumber | None = None,
        group_id: GroupId | None = None,
        extension: str | None = None,
        record: bool = False,
        restriction: Restriction = Restriction.NONE,
        ring_timeout_s: int = DEFAULT_RING_TIMEOUT_S,
        out_id: str | None = None,
        created_at: float = 0.0,
        ringback: Mapping[str, str] = NO_RINGBACK,
    ) -> None:
        self.sub_key = sub_key(sub_id)
        self.x = x
        self.a = a
        self.expiry_hour = hour = expiry_hour(expires_at)
        self._expires_at = _expiry_rest(expires_at, hour)
        self.b = b
        self._cold = _cold(out_id, created_at)
        self.profile = binding_profile(
            pool_key,
            type,
            record=record,
            restriction=restriction,
            ring_timeout_s=ring_timeout_s,
            group_id=group_id,
            extension=extension,
            ringback=ringback,
        )

    @property
    def expires_at(self) -> float:
        """UTC epoch seconds after which the binding no longer routes calls (a float)."""
        rest = self._expires_at
        return rest if type(rest) is float else self.expiry_hour + rest

    @expires_at.setter
    def expires_at(self, value: float) -> None:
        self.expiry_hour = hour = expiry_hour(value)
        self._expires_at = _expiry_rest(value, hour)

    @property
    def out_id(self) -> str | None:
        cold = self._cold
        return cold.out_id if isinstance(cold, _Cold) else cold

    @out_id.setter
    def out_id(self, value: str | None) -> None:
        self._cold = _cold(value, self.created_at)

    @property
    def created_at(self) -> float:
        """UTC epoch seconds of the bind; 0.0 when unknown (bindings held by the index)."""
        cold = self._cold
        return cold.created_at if isinstance(cold, _Cold) else 0.0

    @created_at.setter
    def created_at(self, value: float) -> None:
        self._cold = _cold(self.out_id, value)

    @property
    def sub_id(self) -> SubId:
        """The binding's id (a str, whatever form :attr:`sub_key` holds it in)."""
        key = self.sub_key
        return SubId(str(key)) if isinstance(key, int) else key

    @property
    def pool_key(self) -> PoolKey:
        return self.profile.pool_key

    @property
    def type(self) -> BindingType:
        return self.profile.type

    @property
    def group_id(self) -> GroupId | None:
        return self.profile.group_id

    @property
    def extension(self) -> str | None:
        return self.profile.extension

    @property
    def record(self) -> bool:
        return self.profile.record

    @property
    def restriction(self) -> Restriction:
        return self.profile.restriction

    @property
    def ring_timeout_s(self) -> int:
        return self.profile.ring_timeout_s

    @property
    def ringback(self) -> Mapping[str, str]:
        """Code name (e.g. AXBRing_A) → tone id; read-only (``NO_RINGBACK`` when none)."""
        return self.profile.ringback

    def _values(self) -> tuple[object, ...]:
        return (
            self.sub_key,
            self.x,
            self.a,
            self.expires_at,
            self.b,
            self.out_id,
            self.created_at,
            self.profile,
        )

    def __eq__(self, other: object) -> bool:
        # As a dataclass: same class and every field equal.
        if not isinstance(other, Binding) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in _FIELD_NAMES)
        return f"{self.__class__.__qualname__}({fields})"


def restore_binding(  # noqa: PLR0917  # positional only: called a million times at start
    sub_key: SubId | int,
    x: PhoneNumber,
    a: PhoneNumber,
    b: PhoneNumber | None,
    expires_at: float,
    out_id: str | None,
    profile: BindingProfile,
    /,
) -> Binding:
    """A binding from its compact parts, without ``created_at`` (0.0): as the index keeps them.

    For the start-up load of a million and the control plane's index copies (no checks).
    ``sub_key`` as :func:`sub_key` gives it, ``profile`` from :func:`binding_profile`.  A
    fifth of the cost of ``Binding(...)``.
    """
    binding = _new_binding(Binding)
    binding.sub_key = sub_key
    binding.x = x
    binding.a = a
    binding.b = b
    # expiry_hour() and _expiry_rest() inlined for the common case: an hour already seen and
    # a whole second (nearly every row of a load).
    hour = _HOURS.get(expires_at - expires_at % _HOUR_S)
    if hour is None:
        hour = expiry_hour(expires_at)
    binding.expiry_hour = hour
    rest = expires_at - hour
    if 0.0 <= rest < _HOUR_S and hour + (whole := int(rest)) == expires_at:
        binding._expires_at = _SECONDS_PAST_HOUR[whole]
    else:
        binding._expires_at = _expiry_rest(expires_at, hour)
    binding._cold = out_id
    binding.profile = profile
    return binding


_new_binding = object.__new__


def _no_ringback() -> Mapping[str, str]:
    return NO_RINGBACK


@dataclass
class _BindingFields:
    """The fields of :class:`Binding` as a dataclass states them (never instantiated)."""

    sub_id: SubId
    pool_key: PoolKey
    type: BindingType
    x: PhoneNumber
    a: PhoneNumber
    expires_at: float
    b: PhoneNumber | None = None
    group_id: GroupId | None = None
    extension: str | None = None
    record: bool = False
    restriction: Restriction = Restriction.NONE
    ring_timeout_s: int = DEFAULT_RING_TIMEOUT_S
    out_id: str | None = None
    created_at: float = 0.0
    ringback: Mapping[str, str] = field(default_factory=_no_ringback)


Binding.__dataclass_fields__ = _BindingFields.__dataclass_fields__
Binding.__dataclass_params__ = _BindingFields.__dataclass_params__  # type: ignore[attr-defined]
_FIELD_NAMES: Final = tuple(_BindingFields.__dataclass_fields__)
