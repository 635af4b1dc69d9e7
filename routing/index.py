"""The in-memory binding index: (X, caller) → route or interception, O(1), no database.

The store loads every binding at start (:meth:`BindingIndex.load`) and applies each committed
change (:meth:`~BindingIndex.add`, :meth:`~BindingIndex.replace`, :meth:`~BindingIndex.remove`);
the engine asks :meth:`~BindingIndex.resolve` on every call.  Pure: time comes in as ``now``
(UTC epoch seconds) and is only compared with ``Binding.expires_at``.

**X-sharing rules (SPEC §2)**, checked by :meth:`~BindingIndex.check` against *active*
bindings (``expires_at > now``; expired ones stay indexed until removed, so calls to them are
reported as expired, but they block nothing):

============================  ==========================================================
code                          when
============================  ==========================================================
``BIND_CONFLICT``             AXB: A or B already in another active AXB binding on this X;
                              AXN_EXT: A already has an active binding on this X (A→X
                              must reach exactly one default B)
``X_CAPACITY_EXCEEDED``       AXB: the X already carries ``axb_capacity_per_x`` (200)
                              active bindings.  The RPC layer reports it as
                              ``isv.NO_AVAILABLE_NUMBER``: for the reference service a
                              full X is simply not available.
``X_OCCUPIED``                AXN / 95AXN / AXG: the X already has an active binding
``EXTENSION_TAKEN``           AXN_EXT: (X, extension) already has an active binding
``X_TYPE_MISMATCH``           the X carries bindings of another type (active or expired:
                              an X serves one type until its old bindings are removed)
``DUPLICATE_SUB_ID``          :meth:`~BindingIndex.add` of a sub_id already indexed on X
``NO_SUCH_BINDING``           :meth:`~BindingIndex.replace` of a sub_id not indexed on X
============================  ==========================================================

``BindConflictError.reference_code`` gives the reference service's ``isv.`` code for each.

**Resolution** (:meth:`~BindingIndex.resolve`), in this order: find the binding for the caller
(none → ``NO_BINDING``, AXG stranger → ``NOT_IN_GROUP``); expired → ``EXPIRED``; caller on the
pool blacklist or the pair (caller → callee) blocked → ``BLACKLISTED``; the binding's one-way
restriction → ``RESTRICTED``; A calling with no default B → ``NO_DEFAULT_B``.  Where several
bindings of one slot are indexed (one active, older ones expired), the one expiring last
wins: it is the active one when there is one, else the most recently expired.

**Layout**: one dict X → per-X entry, nothing else per binding.  For AXB the entry is a dict
real number → binding (A and B both keyed, with the binding count); for the exclusive types it
is the binding itself; for AXN_EXT an object with a dict A → binding and a dict extension →
binding.  A slot holds a ``Binding`` or, rarely (expired bindings not yet removed), a list of
them.  There is no dict sub_id → binding: bindings are found by X (see
:meth:`~BindingIndex.get`).  A resolve at a million bindings is bound by cache misses, not
instructions: X's dict (its index array, the entry, the key compared), the binding, the number
it compares and routes to.  So the by-X dict and every AXB X's dict use CPython's general
table, which keeps each key's hash in the entry: a lookup passing over other keys' slots never
reads their str objects (``_general_dict``).  The expiry is checked on the binding's shared
:attr:`~routing.model.Binding.expiry_hour` first, so the rest of the expiry is read only in
its last hour.  The :class:`Route` returned is a bare slotted object filled in place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from routing.masking import mask_number
from routing.model import (
    AXB_CAPACITY_PER_X,
    Binding,
    BindingType,
    BlockDirection,
    GroupId,
    InterceptCause,
    PhoneNumber,
    PoolKey,
    Restriction,
    RoutingError,
    SubId,
    sub_key,
)
from routing.validation import check_shape

__all__ = [
    "CALL_TYPE_A_TO_PEER",
    "CALL_TYPE_PEER_TO_A",
    "BindConflictError",
    "BindingIndex",
    "Intercept",
    "NeedsExtension",
    "Resolution",
    "Route",
]


def _masked(number: PhoneNumber | None) -> str | None:
    return None if number is None else mask_number(number)


# SPEC §6 call_type of a connected call.
CALL_TYPE_A_TO_PEER: Final = 0
CALL_TYPE_PEER_TO_A: Final = 1

_REFERENCE_CODES: Final[dict[str, str]] = {
    "BIND_CONFLICT": "isv.BIND_CONFLICT",
    "X_CAPACITY_EXCEEDED": "isv.NO_AVAILABLE_NUMBER",
    "X_OCCUPIED": "isv.NO_AVAILABLE_NUMBER",
    "EXTENSION_TAKEN": "isv.BIND_CONFLICT",
    "X_TYPE_MISMATCH": "isv.BIND_CONFLICT",
    "DUPLICATE_SUB_ID": "isv.BIND_CONFLICT",
    "NO_SUCH_BINDING": "isv.NO_SUCH_BINDING",
}


class BindConflictError(RoutingError):
    """A binding that breaks an X-sharing rule of SPEC §2 (codes in the module docstring)."""

    @property
    def reference_code(self) -> str:
        """The reference service's error code for this fault (``isv.BIND_CONFLICT`` …)."""
        return _REFERENCE_CODES.get(self.code, "isv.BIND_CONFLICT")


@dataclass(init=False, repr=False, eq=True)
class Route:
    """Connect the call: ring ``callee``, showing X as the caller.

    ``call_type`` is SPEC §6: 0 when the binding's A side calls its peer, 1 when the peer (B,
    an N, a group member) calls A.  ``caller`` is None for an anonymous caller (an N on AXN).

    A value: made only by :meth:`BindingIndex.resolve`, never changed after it returns.  A
    dataclass for its fields, ``==`` and ``repr`` shape, but neither frozen nor with an
    ``__init__``: resolve fills the four slots of a bare instance, the cheapest object CPython
    builds from Python (≈ 30 ns under a frozen dataclass's ``__class__`` switch, ≈ 1 µs under
    its generated ``__init__``; the call path makes one per call).
    """

    __slots__ = ("binding", "call_type", "callee", "caller")

    binding: Binding
    callee: PhoneNumber
    caller: PhoneNumber | None
    call_type: int

    def __repr__(self) -> str:
        # Routes end up in log lines and tracebacks: numbers masked, the binding by id only.
        return (
            f"Route(sub_id={self.binding.sub_id!r}, callee={mask_number(self.callee)!r},"
            f" caller={_masked(self.caller)!r}, call_type={self.call_type})"
        )

    @property
    def phone_no(self) -> PhoneNumber:
        """SPEC §6 ``phone_no``: the binding's A side."""
        return self.binding.a

    @property
    def peer_no(self) -> PhoneNumber | None:
        """SPEC §6 ``peer_no``: the other party (the callee on A→peer, else the caller)."""
        return self.callee if self.call_type == CALL_TYPE_A_TO_PEER else self.caller


@dataclass(frozen=True, slots=True, repr=False)
class Intercept:
    """Do not connect: answer by ``cause``; ``binding`` is the one found (None without any)."""

    cause: InterceptCause
    binding: Binding | None = None

    def __repr__(self) -> str:
        sub_id = None if self.binding is None else self.binding.sub_id
        return f"Intercept(cause={self.cause.value}, sub_id={sub_id!r})"


@dataclass(frozen=True, slots=True, repr=False)
class NeedsExtension:
    """An N called an AXN-extension X: prompt for the extension, then resolve again with it."""

    x: PhoneNumber
    caller: PhoneNumber | None
    pool_key: PoolKey

    def __repr__(self) -> str:
        return (
            f"NeedsExtension(x={mask_number(self.x)!r}, caller={_masked(self.caller)!r},"
            f" pool_key={self.pool_key!r})"
        )


Resolution = Route | Intercept | NeedsExtension

_NO_BINDING: Final = Intercept(InterceptCause.NO_BINDING)

# Enum members as module constants: in Python 3.11 ``BindingType.AXB`` is a descriptor lookup
# costing ~0.1 µs, and resolve would pay it several times per call.
_AXB: Final = BindingType.AXB
_AXN_EXT: Final = BindingType.AXN_EXT
_AXG: Final = BindingType.AXG
_EXPIRED: Final = InterceptCause.EXPIRED
_NOT_IN_GROUP: Final = InterceptCause.NOT_IN_GROUP
_BLACKLISTED: Final = InterceptCause.BLACKLISTED
_RESTRICTED: Final = InterceptCause.RESTRICTED
_NO_DEFAULT_B: Final = InterceptCause.NO_DEFAULT_B
_UNRESTRICTED: Final = Restriction.NONE
_AX_DISABLE: Final = Restriction.AX_DISABLE
_BX_DISABLE: Final = Restriction.BX_DISABLE


def _route(
    binding: Binding, callee: PhoneNumber, caller: PhoneNumber | None, call_type: int
) -> Route:
    route = Route()
    route.binding = binding
    route.callee = callee
    route.caller = caller
    route.call_type = call_type
    return route


# A slot: one binding, or (rarely) a list of the bindings of the same key in insertion order.
_Slot = Binding | list[Binding]


def _slot_add(slots: dict[Any, _Slot], key: object, binding: Binding) -> None:
    current = slots.setdefault(key, binding)
    if current is binding:
        return
    if type(current) is list:
        current.append(binding)
    else:
        assert isinstance(current, Binding)
        slots[key] = [current, binding]


def _slot_remove(slots: dict[Any, _Slot], key: object, binding: Binding) -> None:
    current = slots.get(key)
    if current is binding:
        del slots[key]
    elif type(current) is list:
        current.remove(binding)  # identity first, then == (same object here)
        if len(current) == 1:
            slots[key] = current[0]


def _pick(slot: _Slot) -> Binding:
    """The binding of a slot that counts: the one expiring last (ties: the latest added)."""
    if type(slot) is not list:
        assert isinstance(slot, Binding)
        return slot
    best = slot[0]
    for candidate in slot:
        if candidate.expires_at >= best.expires_at:
            best = candidate
    return best


def _slot_bindings(slot: _Slot | None) -> list[Binding]:
    if slot is None:
        return []
    if type(slot) is list:
        return list(slot)
    assert isinstance(slot, Binding)
    return [slot]


# A key no phone number can be: put into a new dict and taken out again, it gives the dict
# CPython's "general" table, which stores each key's hash beside the key.  A dict that has only
# ever held str keys gets the compact str-only table instead, whose lookups read the hash from
# each candidate key *object*: at a million bindings every slot a lookup passes over costs a
# cache miss on a str nothing else reads.  The general table answers those from the entry
# itself (−10 to −15 % per AXB resolve at 1M bindings; see bench/README.md), for 8 bytes more
# per entry.  A dict keeps its kind through every resize, so once is enough.
_NOT_A_NUMBER: Final = 0


def _general_dict(new: dict[Any, Any]) -> None:
    """Turn an empty dict's table into the general kind (see ``_NOT_A_NUMBER``)."""
    new[_NOT_A_NUMBER] = None
    del new[_NOT_A_NUMBER]


class _AxbEntry(dict[PhoneNumber, _Slot]):
    """An AXB X: its real numbers (A and B of every binding) → binding, and the binding count.

    The dict itself is what ``_by_x`` holds, so resolve reaches the binding in two lookups with
    no object in between (one cache miss less per call at a million bindings).  Its table is
    the general kind (``_general_dict``).
    """

    __slots__ = ("count",)

    def __init__(self) -> None:
        super().__init__()
        _general_dict(self)
        self.count = 0  # bindings indexed on this X, active or expired

    def bindings(self) -> list[Binding]:
        return [
            binding
            for number, slot in self.items()
            for binding in _slot_bindings(slot)
            if binding.a == number
        ]


class _ExtEntry:
    """An AXN-extension X: A → binding (A calls its default B) and extension → binding."""

    __slots__ = ("count", "extensions", "parties", "pool_key")

    def __init__(self, pool_key: PoolKey) -> None:
        self.pool_key = pool_key
        self.count = 0
        self.parties: dict[PhoneNumber, _Slot] = {}
        self.extensions: dict[str, _Slot] = {}

    def bindings(self) -> list[Binding]:
        return [
            binding
            for number, slot in self.parties.items()
            for binding in _slot_bindings(slot)
            if binding.a == number
        ]


# What ``_by_x`` holds per X: an AXB or AXN-extension entry, or for the exclusive types (AXN,
# 95AXN, AXG: one binding per X) the binding itself — a list of them in the rare case of expired
# bindings not yet removed beside the active one.
_Entry = _AxbEntry | _ExtEntry | Binding | list[Binding]


def _entry_bindings(entry: _Entry) -> list[Binding]:
    if isinstance(entry, _AxbEntry | _ExtEntry):
        return entry.bindings()
    return _slot_bindings(entry)


def _entry_count(entry: _Entry) -> int:
    if isinstance(entry, _AxbEntry | _ExtEntry):
        return entry.count
    return len(entry) if type(entry) is list else 1


def _entry_type(entry: _Entry) -> BindingType:
    if isinstance(entry, _AxbEntry):
        return _AXB
    if isinstance(entry, _ExtEntry):
        return _AXN_EXT
    return _slot_bindings(entry)[0].profile.type


def _conflict(code: str, message: str) -> BindConflictError:
    return BindConflictError(code, message)


class BindingIndex:
    """All bindings in memory, keyed for O(1) resolution of (X, caller).

    Not thread-safe and not meant to be: the engine's one event loop owns it.  Bindings handed
    in must not be mutated afterwards (updates go through :meth:`replace`).

    Bindings are found by X: there is no table sub_id → binding (at a million bindings it
    would cost ~40 bytes each, a tenth of DESIGN's budget).  :meth:`get` and :meth:`remove`
    take the binding's X; the control plane reads the binding from the store first anyway.
    """

    __slots__ = (
        "_axb_capacity",
        "_by_x",
        "_count",
        "_groups",
        "_pair_blocks",
        "_pool_blacklists",
        "_screened",
    )

    def __init__(self, *, axb_capacity_per_x: int = AXB_CAPACITY_PER_X) -> None:
        """An empty index; ``axb_capacity_per_x`` is the most active AXB bindings one X carries."""
        self._axb_capacity = axb_capacity_per_x
        self._count = 0
        self._by_x: dict[PhoneNumber, _Entry] = {}
        _general_dict(self._by_x)
        self._groups: dict[GroupId, frozenset[PhoneNumber]] = {}
        self._pool_blacklists: dict[PoolKey, frozenset[PhoneNumber]] = {}
        # Directed (caller, callee) pairs blocked per pool.
        self._pair_blocks: dict[PoolKey, set[tuple[PhoneNumber, PhoneNumber]]] = {}
        # Any pool blacklist or pair block at all: resolve tests this one flag and skips both
        # tables in the common case of none (kept by _rescreen after each change).
        self._screened = False

    # ------------------------------------------------------------------ bindings

    def __len__(self) -> int:
        """Number of bindings indexed (active and expired)."""
        return self._count

    def get(self, sub_id: SubId, x: PhoneNumber | None = None) -> Binding | None:
        """The binding with this sub_id on X, or None.

        Looks among the bindings of X (at most a few hundred).  Without ``x`` every binding is
        scanned: for tests and tools, never on a request path.
        """
        key = sub_key(sub_id)
        if x is not None:
            entry = self._by_x.get(x)
            return None if entry is None else _find(entry, key)
        for entry in self._by_x.values():
            found = _find(entry, key)
            if found is not None:
                return found
        return None

    def by_x(self, x: PhoneNumber) -> list[Binding]:
        """Every binding indexed on X (active and expired), in no particular order."""
        entry = self._by_x.get(x)
        return [] if entry is None else _entry_bindings(entry)

    def x_type(self, x: PhoneNumber) -> BindingType | None:
        """The type of the bindings on X, None when X has none indexed (X is free)."""
        entry = self._by_x.get(x)
        return None if entry is None else _entry_type(entry)

    def count_active(self, x: PhoneNumber, *, now: float) -> int:
        """Active bindings on X at ``now`` (for allocation: capacity and load spreading)."""
        entry = self._by_x.get(x)
        if entry is None:
            return 0
        return sum(1 for binding in _entry_bindings(entry) if binding.expires_at > now)

    def check(self, binding: Binding, now: float) -> None:
        """Raise if ``binding`` could not be added at ``now``; change nothing.

        Runs :func:`routing.validation.check_shape` (``InvalidBindingError``) and the X-sharing
        rules (:class:`BindConflictError`, codes in the module docstring).  A binding with the
        same sub_id already indexed on X is ignored, so this also validates an update before it
        is written; :meth:`add` additionally refuses a sub_id already indexed on X.
        """
        check_shape(binding)
        self._check_sharing(binding, now=now)

    def add(self, binding: Binding, now: float, *, checked: bool = False) -> None:
        """Validate (as :meth:`check`) and index a new binding.

        Refuses a sub_id already indexed on the binding's X (``DUPLICATE_SUB_ID``); sub_ids are
        unique across X numbers in the store (its primary key), which the index relies on.

        ``checked``: the caller ran :meth:`check` on this binding, nothing changed on its X
        since (the control plane holds X's lock from the check to the add) and the store has
        just accepted its sub_id as new, so none of that is evaluated twice.
        """
        if not checked:
            entry = self._by_x.get(binding.x)
            if entry is not None and _find(entry, binding.sub_key) is not None:
                raise _conflict("DUPLICATE_SUB_ID", f"binding {binding.sub_id} already exists")
            check_shape(binding)
            self._check_sharing(binding, now=now)
        self._link(binding)

    def replace(self, binding: Binding, now: float) -> Binding:
        """Update: validate the new version against all bindings but its old self, swap it in.

        The old version is the binding with the same sub_id on the same X (a binding does not
        change X: remove it and add the new one for that).  Returns the old version.  Raises
        ``NO_SUCH_BINDING`` when there is none; on any error the index is unchanged.
        """
        entry = self._by_x.get(binding.x)
        old = None if entry is None else _find(entry, binding.sub_key, binding)
        if old is None:
            raise _conflict("NO_SUCH_BINDING", f"binding {binding.sub_id} does not exist")
        check_shape(binding)
        self._check_sharing(binding, now=now)
        self._unlink(old)
        self._link(binding)
        return old

    def remove(self, sub_id: SubId, x: PhoneNumber | None = None) -> Binding | None:
        """Drop a binding (unbind, or purge of an expired one); returns it, None if absent.

        ``x``: the binding's X, as for :meth:`get` (without it every binding is scanned).
        """
        binding = self.get(sub_id, x)
        if binding is not None:
            self._unlink(binding)
        return binding

    def load(self, bindings: Iterable[Binding]) -> list[Binding]:
        """Bulk-index bindings read from the store at start, without the sharing rules.

        The store validated each binding when it was written, so only what the index cannot
        represent is refused: a binding whose X carries bindings of another type.  Those are
        returned (not indexed) for the caller to log.  sub_ids are not checked for duplicates
        (the store's primary key keeps them unique).
        """
        refused: list[Binding] = []
        by_x = self._by_x
        entry_of = by_x.get
        link = self._link
        axb = _AXB
        count = 0
        # _link inlined for AXB, the common case (DESIGN: a million bindings at start ≤ 5 s).
        for binding in bindings:
            x = binding.x
            entry = entry_of(x)
            if binding.profile.type is axb:
                if entry is None:
                    entry = by_x[x] = _AxbEntry()
                elif type(entry) is not _AxbEntry:
                    refused.append(binding)
                    continue
                a = binding.a
                current = entry.setdefault(a, binding)
                if current is not binding:  # a slot shared with expired bindings: rare
                    _slot_add(entry, a, binding)
                b = binding.b
                if b is not None:
                    current = entry.setdefault(b, binding)
                    if current is not binding:
                        _slot_add(entry, b, binding)
                entry.count += 1
                count += 1
            elif entry is None or _entry_type(entry) is binding.profile.type:
                link(binding)
            else:
                refused.append(binding)
        self._count += count
        return refused

    def x_counts(self) -> dict[PhoneNumber, int]:
        """Bindings indexed per X (active and expired), for every X that has any."""
        return {x: _entry_count(entry) for x, entry in self._by_x.items()}

    # ------------------------------------------------------------------ groups and blacklists

    def set_group(self, group_id: GroupId, numbers: Iterable[PhoneNumber]) -> None:
        """Create or overwrite the members of an AXG number group."""
        self._groups[group_id] = frozenset(numbers)

    def remove_group(self, group_id: GroupId) -> None:
        """Forget a group; AXG bindings still naming it then admit nobody but A."""
        self._groups.pop(group_id, None)

    def group_members(self, group_id: GroupId) -> frozenset[PhoneNumber]:
        """Members of a group (empty when unknown)."""
        return self._groups.get(group_id, frozenset())

    def set_pool_blacklist(self, pool_key: PoolKey, numbers: Iterable[PhoneNumber]) -> None:
        """Overwrite the pool-wide blacklist: these numbers cannot call any X of the pool."""
        members = frozenset(numbers)
        if members:
            self._pool_blacklists[pool_key] = members
        else:
            self._pool_blacklists.pop(pool_key, None)
        self._rescreen()

    def add_pair_block(
        self,
        pool_key: PoolKey,
        *,
        first: PhoneNumber,
        second: PhoneNumber,
        direction: BlockDirection = BlockDirection.BOTH,
    ) -> None:
        """Block calls between ``first`` and ``second`` through the pool's X numbers.

        ``direction``: both ways, only first → second, or only second → first (SPEC §3).
        """
        pairs = self._pair_blocks.setdefault(pool_key, set())
        pairs.update(_directed(first=first, second=second, direction=direction))
        self._rescreen()

    def remove_pair_block(
        self,
        pool_key: PoolKey,
        *,
        first: PhoneNumber,
        second: PhoneNumber,
        direction: BlockDirection = BlockDirection.BOTH,
    ) -> None:
        """Lift a pair block (the given direction(s) only)."""
        pairs = self._pair_blocks.get(pool_key)
        if pairs is None:
            return
        pairs.difference_update(_directed(first=first, second=second, direction=direction))
        if not pairs:
            del self._pair_blocks[pool_key]
        self._rescreen()

    def _rescreen(self) -> None:
        self._screened = bool(self._pool_blacklists or self._pair_blocks)

    # ------------------------------------------------------------------ the call path

    def resolve(
        self,
        x: PhoneNumber,
        caller: PhoneNumber | None,
        *,
        now: float,
        extension: str | None = None,
    ) -> Resolution:
        """Who a call from ``caller`` to ``x`` at ``now`` rings, or why it is intercepted.

        ``caller`` is None when the caller is anonymous or not a number.  ``extension`` is
        what an N keyed on an AXN-extension X; without it such a call resolves to
        :class:`NeedsExtension`.  Rules per type in SPEC §2, order in the module docstring.
        """
        entry = self._by_x.get(x)
        if entry is None:
            return _NO_BINDING
        kind = type(entry)
        if kind is _AxbEntry:
            slot = entry.get(caller)  # type: ignore[union-attr,arg-type]  # None: anonymous
            if slot is None:
                return _NO_BINDING
            binding: Binding = slot if type(slot) is not list else _pick(slot)  # type: ignore[assignment]
            # The shared hour first: the binding's own expiry (a property adding the seconds
            # past the hour) is read only in its last hour or after.
            if binding.expiry_hour <= now and binding.expires_at <= now:
                return Intercept(_EXPIRED, binding)
            if caller == binding.a:
                callee: PhoneNumber = binding.b  # type: ignore[assignment]  # AXB: never None
                call_type = CALL_TYPE_A_TO_PEER
            else:
                callee = binding.a
                call_type = CALL_TYPE_PEER_TO_A
            if self._screened or binding.profile.restriction is not _UNRESTRICTED:
                return self._finish(binding, caller, callee, call_type)
            # The common case, _finish and _route inlined (≈ 0.1 µs of ≈ 0.3 µs in cache).
            route = Route()
            route.binding = binding
            route.callee = callee
            route.caller = caller
            route.call_type = call_type
            return route
        if kind is Binding:
            binding = entry  # type: ignore[assignment]
        elif kind is list:
            binding = _pick(entry)  # type: ignore[arg-type]
        else:
            return self._resolve_extension(
                entry,  # type: ignore[arg-type]
                x=x,
                caller=caller,
                now=now,
                extension=extension,
            )
        # Exclusive: AXN, 95AXN, AXG.
        if binding.expiry_hour <= now and binding.expires_at <= now:
            return Intercept(_EXPIRED, binding)
        if caller is not None and caller == binding.a:
            return self._finish_a(binding, caller)
        profile = binding.profile
        if profile.type is _AXG and (
            caller is None or profile.group_id is None
            or caller not in self._groups.get(profile.group_id, ())
        ):  # fmt: skip
            return Intercept(_NOT_IN_GROUP, binding)
        if self._screened or profile.restriction is not _UNRESTRICTED:
            return self._finish(binding, caller, binding.a, CALL_TYPE_PEER_TO_A)
        route = Route()  # as in the AXB branch: _finish and _route inlined
        route.binding = binding
        route.callee = binding.a
        route.caller = caller
        route.call_type = CALL_TYPE_PEER_TO_A
        return route

    def _resolve_extension(
        self,
        entry: _ExtEntry,
        *,
        x: PhoneNumber,
        caller: PhoneNumber | None,
        now: float,
        extension: str | None,
    ) -> Resolution:
        if caller is not None:
            slot = entry.parties.get(caller)
            if slot is not None:  # A calls X: its default B, whatever was keyed
                binding = _pick(slot)
                if binding.expires_at <= now:
                    return Intercept(_EXPIRED, binding)
                return self._finish_a(binding, caller)
        if extension is None:
            blacklist = self._pool_blacklists.get(entry.pool_key)
            if blacklist is not None and caller in blacklist:
                # Known before the prompt: spare the caller the IVR.
                return Intercept(_BLACKLISTED, None)
            return NeedsExtension(x=x, caller=caller, pool_key=entry.pool_key)
        slot = entry.extensions.get(extension)
        if slot is None:
            return _NO_BINDING
        binding = _pick(slot)
        if binding.expires_at <= now:
            return Intercept(_EXPIRED, binding)
        return self._finish(binding, caller, binding.a, CALL_TYPE_PEER_TO_A)

    def _finish_a(self, binding: Binding, caller: PhoneNumber) -> Resolution:
        """A called its own X: ring the default B, if any."""
        callee = binding.b
        if callee is None:
            if self._is_blocked(binding.profile.pool_key, caller, None):
                return Intercept(_BLACKLISTED, binding)
            if binding.profile.restriction is _AX_DISABLE:
                return Intercept(_RESTRICTED, binding)
            return Intercept(_NO_DEFAULT_B, binding)
        return self._finish(binding, caller, callee, CALL_TYPE_A_TO_PEER)

    def _finish(
        self,
        binding: Binding,
        caller: PhoneNumber | None,
        callee: PhoneNumber,
        call_type: int,
    ) -> Resolution:
        """The checks after the binding and direction are known: blacklists, restriction."""
        if self._screened and self._is_blocked(binding.profile.pool_key, caller, callee):
            return Intercept(_BLACKLISTED, binding)
        restriction = binding.profile.restriction
        if restriction is not _UNRESTRICTED and restriction is (
            _AX_DISABLE if call_type == CALL_TYPE_A_TO_PEER else _BX_DISABLE
        ):
            return Intercept(_RESTRICTED, binding)
        return _route(binding, callee, caller, call_type)

    def _is_blocked(
        self, pool_key: PoolKey, caller: PhoneNumber | None, callee: PhoneNumber | None
    ) -> bool:
        if caller is None:
            return False
        blacklist = self._pool_blacklists.get(pool_key)
        if blacklist is not None and caller in blacklist:
            return True
        pairs = self._pair_blocks.get(pool_key)
        return pairs is not None and callee is not None and (caller, callee) in pairs

    # ------------------------------------------------------------------ internals

    def _check_sharing(self, binding: Binding, *, now: float) -> None:
        """The X-sharing rules against every binding on X but one with the same sub_id."""
        entry = self._by_x.get(binding.x)
        if entry is None:
            return
        key = binding.sub_key
        kind = binding.profile.type
        if _entry_type(entry) is not kind:
            bindings = _entry_bindings(entry)
            if len(bindings) > 1 or bindings[0].sub_key != key:  # not just its old self
                raise _conflict(
                    "X_TYPE_MISMATCH",
                    f"X already carries {_entry_type(entry)} bindings, not {kind}",
                )
            return

        def active(slot: _Slot | None) -> Binding | None:
            for other in _slot_bindings(slot):
                if other.expires_at > now and other.sub_key != key:
                    return other
            return None

        if type(entry) is _AxbEntry:
            for side, number in (("A", binding.a), ("B", binding.b)):
                assert number is not None
                if active(entry.get(number)) is not None:
                    raise _conflict(
                        "BIND_CONFLICT", f"{side} already has an active binding on this X"
                    )
            if entry.count >= self._axb_capacity:  # expired and its old self included
                in_use = sum(
                    1
                    for other in entry.bindings()
                    if other.expires_at > now and other.sub_key != key
                )
                if in_use >= self._axb_capacity:
                    raise _conflict(
                        "X_CAPACITY_EXCEEDED",
                        f"X already carries {in_use} active bindings (capacity"
                        f" {self._axb_capacity})",
                    )
        elif type(entry) is _ExtEntry:
            if active(entry.parties.get(binding.a)) is not None:
                raise _conflict("BIND_CONFLICT", "A already has an active binding on this X")
            if active(entry.extensions.get(binding.extension or "")) is not None:
                raise _conflict(
                    "EXTENSION_TAKEN", f"extension {binding.extension} of this X is in use"
                )
        elif active(entry) is not None:  # type: ignore[arg-type]
            raise _conflict("X_OCCUPIED", f"this {kind} X already has an active binding")

    def _link(self, binding: Binding) -> None:
        """Index ``binding``; X carries none or bindings of its type (checked by the caller)."""
        x = binding.x
        entry = self._by_x.get(x)
        kind = binding.profile.type
        if kind is _AXB:
            if entry is None:
                entry = self._by_x[x] = _AxbEntry()
            assert type(entry) is _AxbEntry
            _slot_add(entry, binding.a, binding)
            if binding.b is not None:
                _slot_add(entry, binding.b, binding)
            entry.count += 1
        elif kind is _AXN_EXT:
            if entry is None:
                entry = self._by_x[x] = _ExtEntry(binding.pool_key)
            assert type(entry) is _ExtEntry
            _slot_add(entry.parties, binding.a, binding)
            if binding.extension is not None:
                _slot_add(entry.extensions, binding.extension, binding)
            entry.count += 1
        elif entry is None:
            self._by_x[x] = binding
        elif type(entry) is list:
            entry.append(binding)
        else:
            assert isinstance(entry, Binding)
            self._by_x[x] = [entry, binding]
        self._count += 1

    def _unlink(self, binding: Binding) -> None:
        x = binding.x
        entry = self._by_x[x]
        if type(entry) is _AxbEntry:
            _slot_remove(entry, binding.a, binding)
            if binding.b is not None:
                _slot_remove(entry, binding.b, binding)
            entry.count -= 1
            empty = entry.count == 0
        elif type(entry) is _ExtEntry:
            _slot_remove(entry.parties, binding.a, binding)
            if binding.extension is not None:
                _slot_remove(entry.extensions, binding.extension, binding)
            entry.count -= 1
            empty = entry.count == 0
        elif type(entry) is list:
            entry.remove(binding)
            if len(entry) == 1:
                self._by_x[x] = entry[0]
            empty = False
        else:
            empty = True
        if empty:
            del self._by_x[x]
        self._count -= 1


def _find(entry: _Entry, key: object, hint: Binding | None = None) -> Binding | None:
    """The binding of ``entry`` whose sub_id key is ``key``, or None.

    ``hint``: a version of the binding sought (same sub_id, maybe other numbers); its A and B
    slots are looked at first, which finds an update's old version without a scan of X.
    """
    if hint is not None and type(entry) is _AxbEntry:
        for number in (hint.a, hint.b):
            for binding in _slot_bindings(entry.get(number)):  # type: ignore[arg-type]
                if binding.sub_key == key:
                    return binding
    for binding in _entry_bindings(entry):
        if binding.sub_key == key:
            return binding
    return None


def _directed(
    *, first: PhoneNumber, second: PhoneNumber, direction: BlockDirection
) -> list[tuple[PhoneNumber, PhoneNumber]]:
    if direction is BlockDirection.FIRST_TO_SECOND:
        return [(first, second)]
    if direction is BlockDirection.SECOND_TO_FIRST:
        return [(second, first)]
    return [(first, second), (second, first)]
