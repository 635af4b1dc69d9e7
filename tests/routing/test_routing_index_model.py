"""routing.index against a naive reference: a list of bindings scanned linearly.

After any sequence of add / replace / remove / load, group, blacklist and clock changes, the
index accepts and refuses exactly what the reference does (same codes) and resolves every
(X, caller, extension) of a small universe to the same answer.
"""

import dataclasses

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from routing.index import BindingIndex, Intercept, NeedsExtension, Route
from routing.model import (
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
)
from routing.validation import check_shape

CAPACITY = 2
XS = [PhoneNumber(f"+861700000000{i}") for i in range(5)]
# Each X has the type it mostly gets (as in a real pool); other types are drawn now and then.
X_TYPES = [
    BindingType.AXB,
    BindingType.AXN,
    BindingType.AXN_EXT,
    BindingType.AXG,
    BindingType.AXN95,
]
# Six numbers: two AXB pairs fill an X of capacity 2 and a third pair can still be drawn.
REALS = [PhoneNumber(f"+86138000000{i:02d}") for i in range(6)]
CALLERS: list[PhoneNumber | None] = [*REALS, None]
EXTENSIONS = ["1", "2"]
GROUPS = [GroupId("g1"), GroupId("g2")]
POOLS = [PoolKey("P0"), PoolKey("P1")]


def pool_of(x: PhoneNumber) -> PoolKey:
    return POOLS[XS.index(x) % 2]


# --------------------------------------------------------------------------- the reference


class Reference:
    """The rules of SPEC §2 as plainly as they can be written: a list, scanned."""

    def __init__(self) -> None:
        self.bindings: list[Binding] = []
        self.groups: dict[GroupId, set[PhoneNumber]] = {}
        self.blacklists: dict[PoolKey, set[PhoneNumber]] = {}
        self.pairs: dict[PoolKey, set[tuple[PhoneNumber, PhoneNumber]]] = {}

    def check(self, new: Binding, now: float, exclude: SubId | None) -> str | None:
        try:
            check_shape(new)
        except RoutingError as exc:
            return exc.code
        others = [b for b in self.bindings if b.x == new.x and b.sub_id != exclude]
        if any(b.type is not new.type for b in others):
            return "X_TYPE_MISMATCH"
        active = [b for b in others if b.expires_at > now]
        if new.type is BindingType.AXB:
            if any(number in (b.a, b.b) for b in active for number in (new.a, new.b)):
                return "BIND_CONFLICT"
            if len(active) >= CAPACITY:
                return "X_CAPACITY_EXCEEDED"
        elif new.type is BindingType.AXN_EXT:
            if any(b.a == new.a for b in active):
                return "BIND_CONFLICT"
            if any(b.extension == new.extension for b in active):
                return "EXTENSION_TAKEN"
        elif active:
            return "X_OCCUPIED"
        return None

    @staticmethod
    def pick(candidates: list[Binding]) -> Binding | None:
        best = None
        for binding in candidates:
            if best is None or binding.expires_at >= best.expires_at:
                best = binding
        return best

    def blocked(
        self, pool: PoolKey, caller: PhoneNumber | None, callee: PhoneNumber | None
    ) -> bool:
        if caller is None:
            return False
        if caller in self.blacklists.get(pool, set()):
            return True
        return (caller, callee) in self.pairs.get(pool, set())

    def finish(
        self,
        binding: Binding,
        caller: PhoneNumber | None,
        callee: PhoneNumber | None,
        call_type: int,
    ) -> tuple[object, ...]:
        if self.blocked(binding.pool_key, caller, callee):
            return ("intercept", InterceptCause.BLACKLISTED, binding.sub_id)
        forbidden = Restriction.AX_DISABLE if call_type == 0 else Restriction.BX_DISABLE
        if binding.restriction is forbidden:
            return ("intercept", InterceptCause.RESTRICTED, binding.sub_id)
        if callee is None:
            return ("intercept", InterceptCause.NO_DEFAULT_B, binding.sub_id)
        return ("route", binding.sub_id, callee, caller, call_type)

    def resolve(
        self, x: PhoneNumber, caller: PhoneNumber | None, now: float, extension: str | None
    ) -> tuple[object, ...]:
        on_x = [b for b in self.bindings if b.x == x]
        no_binding = ("intercept", InterceptCause.NO_BINDING, None)
        if not on_x:
            return no_binding
        kind = on_x[0].type
        if kind is BindingType.AXB:
            found = self.pick([b for b in on_x if caller is not None and caller in (b.a, b.b)])
            if found is None:
                return no_binding
            if found.expires_at <= now:
                return ("intercept", InterceptCause.EXPIRED, found.sub_id)
            if caller == found.a:
                return self.finish(found, caller, found.b, 0)
            return self.finish(found, caller, found.a, 1)
        if kind is BindingType.AXN_EXT:
            as_a = self.pick([b for b in on_x if caller is not None and b.a == caller])
            if as_a is not None:
                if as_a.expires_at <= now:
                    return ("intercept", InterceptCause.EXPIRED, as_a.sub_id)
                return self.finish(as_a, caller, as_a.b, 0)
            if extension is None:
                pool = on_x[0].pool_key
                if caller is not None and caller in self.blacklists.get(pool, set()):
                    return ("intercept", InterceptCause.BLACKLISTED, None)
                return ("extension", x, caller, pool)
            found = self.pick([b for b in on_x if b.extension == extension])
            if found is None:
                return no_binding
            if found.expires_at <= now:
                return ("intercept", InterceptCause.EXPIRED, found.sub_id)
            return self.finish(found, caller, found.a, 1)
        found = self.pick(on_x)
        assert found is not None
        if found.expires_at <= now:
            return ("intercept", InterceptCause.EXPIRED, found.sub_id)
        if caller is not None and caller == found.a:
            return self.finish(found, caller, found.b, 0)
        if kind is BindingType.AXG and (
            caller is None
            or found.group_id is None
            or caller not in self.groups.get(found.group_id, set())
        ):
            return ("intercept", InterceptCause.NOT_IN_GROUP, found.sub_id)
        return self.finish(found, caller, found.a, 1)


def outcome(result: Route | Intercept | NeedsExtension) -> tuple[object, ...]:
    if isinstance(result, Route):
        return ("route", result.binding.sub_id, result.callee, result.caller, result.call_type)
    if isinstance(result, Intercept):
        return (
            "intercept",
            result.cause,
            None if result.binding is None else result.binding.sub_id,
        )
    return ("extension", result.x, result.caller, result.pool_key)


# --------------------------------------------------------------------------- the machine


class IndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.index = BindingIndex(axb_capacity_per_x=CAPACITY)
        self.reference = Reference()
        self.now = 1_000.0
        self.next_id = 0

    def new_binding(self, data: st.DataObject) -> Binding:
        x_index = data.draw(st.integers(0, len(XS) - 1), label="x")
        kind = data.draw(
            st.one_of(st.just(X_TYPES[x_index]), st.sampled_from(BindingType)), label="type"
        )
        self.next_id += 1
        return self.fields(data, sub_id=SubId(f"s{self.next_id}"), x=XS[x_index], kind=kind)

    def fields(
        self, data: st.DataObject, *, sub_id: SubId, x: PhoneNumber, kind: BindingType
    ) -> Binding:
        a = data.draw(st.sampled_from(REALS), label="a")
        if kind is BindingType.AXB:
            b: PhoneNumber | None = data.draw(st.sampled_from(REALS), label="b")
        else:
            b = data.draw(st.none() | st.sampled_from(REALS), label="default b")
        return Binding(
            sub_id=sub_id,
            pool_key=pool_of(x),
            type=kind,
            x=x,
            a=a,
            b=b,
            expires_at=self.now + data.draw(st.sampled_from([50.0, 10.0, 3.0, 0.0, -5.0, 100.0])),
            group_id=(
                data.draw(st.sampled_from(GROUPS), label="group")
                if kind is BindingType.AXG
                else None
            ),
            extension=(
                data.draw(st.sampled_from(EXTENSIONS), label="extension")
                if kind is BindingType.AXN_EXT
                else None
            ),
            restriction=data.draw(st.sampled_from(Restriction), label="restriction"),
        )

    def apply(self, binding: Binding, exclude: SubId | None) -> None:
        expected = self.reference.check(binding, self.now, exclude)
        try:
            if exclude is None:
                self.index.add(binding, self.now)
            else:
                self.index.replace(binding, self.now)
        except RoutingError as exc:
            assert exc.code == expected, (exc.code, expected)
            return
        assert expected is None, expected
        bindings = self.reference.bindings
        if exclude is not None:
            bindings[:] = [b for b in bindings if b.sub_id != exclude]
        bindings.append(binding)

    @rule(data=st.data())
    def add(self, data: st.DataObject) -> None:
        binding = self.new_binding(data)
        if self.reference.check(binding, self.now, None) is None:
            self.index.check(binding, self.now)  # must not raise, and inserts nothing
            assert len(self.index) == len(self.reference.bindings)
        self.apply(binding, None)

    @rule(data=st.data())
    def add_fresh_pair(self, data: st.DataObject) -> None:
        """An AXB pair of numbers not active on the AXB X: reaches the capacity rule often."""
        x = XS[0]
        used = {
            number
            for b in self.reference.bindings
            if b.x == x and b.expires_at > self.now
            for number in (b.a, b.b)
        }
        free = [number for number in REALS if number not in used]
        if len(free) < 2:
            return
        a, b = data.draw(st.permutations(free), label="fresh pair")[:2]
        self.next_id += 1
        binding = Binding(
            sub_id=SubId(f"s{self.next_id}"),
            pool_key=pool_of(x),
            type=BindingType.AXB,
            x=x,
            a=a,
            b=b,
            expires_at=self.now + data.draw(st.sampled_from([50.0, 3.0]), label="expiry"),
        )
        self.apply(binding, None)

    @precondition(lambda self: bool(self.reference.bindings))
    @rule(data=st.data())
    def replace(self, data: st.DataObject) -> None:
        old = data.draw(st.sampled_from(self.reference.bindings), label="old")
        # A binding keeps its X (index.replace looks the old version up there); its type may
        # change, which the rules allow only when it is the X's one binding.
        if data.draw(st.booleans(), label="same type"):
            new = self.fields(data, sub_id=old.sub_id, x=old.x, kind=old.type)
        else:
            new = dataclasses.replace(
                self.new_binding(data), sub_id=old.sub_id, x=old.x, pool_key=pool_of(old.x)
            )
        self.apply(new, old.sub_id)

    @precondition(lambda self: bool(self.reference.bindings))
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        old = data.draw(st.sampled_from(self.reference.bindings), label="removed")
        assert self.index.get(old.sub_id, old.x) is old
        assert self.index.remove(old.sub_id, old.x) is old
        self.reference.bindings.remove(old)

    @rule()
    def reload(self) -> None:
        """A restart: a fresh index loaded from the store's list gives the same answers."""
        fresh = BindingIndex(axb_capacity_per_x=CAPACITY)
        assert fresh.load(self.reference.bindings) == []
        for group_id, members in self.reference.groups.items():
            fresh.set_group(group_id, members)
        for pool, numbers in self.reference.blacklists.items():
            fresh.set_pool_blacklist(pool, numbers)
        for pool, pairs in self.reference.pairs.items():
            for first, second in pairs:
                fresh.add_pair_block(
                    pool, first=first, second=second, direction=BlockDirection.FIRST_TO_SECOND
                )
        self.index = fresh

    @rule(seconds=st.sampled_from([0.0, 1.0, 3.0, 10.0]))
    def tick(self, seconds: float) -> None:
        self.now += seconds

    @rule(group_id=st.sampled_from(GROUPS), members=st.sets(st.sampled_from(REALS)))
    def set_group(self, group_id: GroupId, members: set[PhoneNumber]) -> None:
        self.index.set_group(group_id, members)
        self.reference.groups[group_id] = set(members)

    @rule(group_id=st.sampled_from(GROUPS))
    def remove_group(self, group_id: GroupId) -> None:
        self.index.remove_group(group_id)
        self.reference.groups.pop(group_id, None)

    @rule(pool=st.sampled_from(POOLS), numbers=st.sets(st.sampled_from(REALS), max_size=2))
    def set_blacklist(self, pool: PoolKey, numbers: set[PhoneNumber]) -> None:
        self.index.set_pool_blacklist(pool, numbers)
        if numbers:
            self.reference.blacklists[pool] = set(numbers)
        else:
            self.reference.blacklists.pop(pool, None)

    @rule(
        pool=st.sampled_from(POOLS),
        first=st.sampled_from(REALS),
        second=st.sampled_from(REALS),
        direction=st.sampled_from(BlockDirection),
        add=st.booleans(),
    )
    def pair_block(
        self,
        pool: PoolKey,
        first: PhoneNumber,
        second: PhoneNumber,
        direction: BlockDirection,
        add: bool,
    ) -> None:
        directed = {
            BlockDirection.BOTH: {(first, second), (second, first)},
            BlockDirection.FIRST_TO_SECOND: {(first, second)},
            BlockDirection.SECOND_TO_FIRST: {(second, first)},
        }[direction]
        pairs = self.reference.pairs.setdefault(pool, set())
        if add:
            self.index.add_pair_block(pool, first=first, second=second, direction=direction)
            pairs |= directed
        else:
            self.index.remove_pair_block(pool, first=first, second=second, direction=direction)
            pairs -= directed

    @invariant()
    def same_bindings(self) -> None:
        assert len(self.index) == len(self.reference.bindings)
        for x in XS:
            expected = sorted(b.sub_id for b in self.reference.bindings if b.x == x)
            assert sorted(b.sub_id for b in self.index.by_x(x)) == expected
            assert self.index.count_active(x, now=self.now) == sum(
                1 for b in self.reference.bindings if b.x == x and b.expires_at > self.now
            )

    @invariant()
    def same_routes(self) -> None:
        for x in XS:
            # Only AXN_EXT looks at the extension; elsewhere one extension shows it is ignored.
            has_extensions = any(
                b.x == x and b.type is BindingType.AXN_EXT for b in self.reference.bindings
            )
            extensions = (None, *EXTENSIONS, "9") if has_extensions else (None, "1")
            for caller in CALLERS:
                for extension in extensions:
                    got = outcome(self.index.resolve(x, caller, now=self.now, extension=extension))
                    want = self.reference.resolve(x, caller, self.now, extension)
                    assert got == want, (x, caller, extension, got, want)


def _examples(divisor: int) -> int:
    # The ci profile's 5,000 examples per property would take minutes for a state machine.
    return max(50, settings().max_examples // divisor)


IndexMachine.TestCase.settings = settings(
    max_examples=_examples(20), stateful_step_count=40, deadline=None
)
test_index_agrees_with_the_reference = IndexMachine.TestCase
