"""The binding model shared by routing, store, engine and API (SPEC §2).

Pure data: no I/O, no clock.  Times are UTC epoch seconds (``float``), the
unit the in-memory index compares against ``now`` on the call path; local
time exists only at the edges (CLI, API, reports).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Final, NewType

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


def _no_ringback() -> Mapping[str, str]:
    return NO_RINGBACK


@dataclass(slots=True)
class Binding:
    """One binding of real numbers to a middle number X.

    ``a`` is always the "A side" of SPEC §6 (``phone_no``).  ``b`` is the peer
    for AXB, the default B for AXN/95AXN/AXG/AXN_EXT (None when unset).
    Treat instances as immutable once handed to the index: updates replace
    the object (``dataclasses.replace``).
    """

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
    # Code name (e.g. AXBRing_A) → tone id; read-only (``NO_RINGBACK`` when there are none).
    ringback: Mapping[str, str] = field(default_factory=_no_ringback)
