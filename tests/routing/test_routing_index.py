"""routing.index: the X-sharing rules of SPEC §2 and route resolution, rule by rule."""

import dataclasses

import pytest

from routing.index import (
    CALL_TYPE_A_TO_PEER,
    CALL_TYPE_PEER_TO_A,
    BindConflictError,
    BindingIndex,
    Intercept,
    NeedsExtension,
    Resolution,
    Route,
)
from routing.model import (
    AXB_CAPACITY_PER_X,
    NO_RINGBACK,
    Binding,
    BindingType,
    BlockDirection,
    GroupId,
    InterceptCause,
    PhoneNumber,
    PoolKey,
    Restriction,
    SubId,
)
from routing.validation import InvalidBindingError, validate_request

X = PhoneNumber("+8617000000001")
X2 = PhoneNumber("+8617000000002")
X95 = PhoneNumber("+86950130000001")
A = PhoneNumber("+8613800000001")
B = PhoneNumber("+8613800000002")
C = PhoneNumber("+8613800000003")
D = PhoneNumber("+8613800000004")
N = PhoneNumber("+861012345678")
POOL = PoolKey("FC100")
OTHER_POOL = PoolKey("FC200")
G = GroupId("g1")
NOW = 1_000_000.0
LATER = NOW + 3600.0

_counter = iter(range(1, 10**9))


def bind(
    kind: BindingType = BindingType.AXB,
    *,
    x: PhoneNumber = X,
    a: PhoneNumber = A,
    b: PhoneNumber | None = B,
    expires_at: float = LATER,
    **fields: object,
) -> Binding:
    """A binding with a fresh sub_id; AXB by default (A, B on X)."""
    return Binding(
        sub_id=SubId(f"sub{next(_counter)}"),
        pool_key=POOL,
        type=kind,
        x=x,
        a=a,
        b=b,
        expires_at=expires_at,
        **fields,  # type: ignore[arg-type]
    )


def route(result: Resolution) -> Route:
    assert isinstance(result, Route), result
    return result


def intercepted(result: Resolution, cause: InterceptCause) -> Intercept:
    assert isinstance(result, Intercept), result
    assert result.cause is cause
    return result


def conflict_code(index: BindingIndex, binding: Binding, now: float = NOW) -> str:
    with pytest.raises(BindConflictError) as caught:
        index.check(binding, now)
    with pytest.raises(BindConflictError):
        index.add(binding, now)
    return caught.value.code


@pytest.fixture
def index() -> BindingIndex:
    return BindingIndex()


# --------------------------------------------------------------------------- AXB


def test_axb_a_calls_x_rings_b(index: BindingIndex) -> None:
    binding = bind()
    index.add(binding, NOW)
    result = route(index.resolve(X, A, now=NOW))
    assert result.binding is binding
    assert (result.callee, result.caller, result.call_type) == (B, A, CALL_TYPE_A_TO_PEER)
    assert (result.phone_no, result.peer_no) == (A, B)


def test_axb_b_calls_x_rings_a(index: BindingIndex) -> None:
    index.add(bind(), NOW)
    result = route(index.resolve(X, B, now=NOW))
    assert (result.callee, result.caller, result.call_type) == (A, B, CALL_TYPE_PEER_TO_A)
    assert (result.phone_no, result.peer_no) == (A, B)


def test_axb_anyone_else_is_intercepted_no_binding(index: BindingIndex) -> None:
    index.add(bind(), NOW)
    result = intercepted(index.resolve(X, C, now=NOW), InterceptCause.NO_BINDING)
    assert result.binding is None
    intercepted(index.resolve(X, None, now=NOW), InterceptCause.NO_BINDING)
    intercepted(index.resolve(X2, A, now=NOW), InterceptCause.NO_BINDING)
    assert InterceptCause.NO_BINDING.unconnected_cause == 2


def test_axb_one_x_carries_many_pairs(index: BindingIndex) -> None:
    """AXB and CXD share X fine."""
    index.add(bind(a=A, b=B), NOW)
    index.add(bind(a=C, b=D), NOW)
    assert route(index.resolve(X, A, now=NOW)).callee == B
    assert route(index.resolve(X, D, now=NOW)).callee == C
    assert len(index.by_x(X)) == 2
    assert index.count_active(X, now=NOW) == 2


@pytest.mark.parametrize(
    ("a", "b"),
    [(A, C), (C, A), (B, C), (C, B), (B, A), (A, B)],
    ids=["AXC", "CXA", "BXC", "CXB", "BXA", "AXB-again"],
)
def test_axb_a_real_number_in_at_most_one_active_binding_per_x(
    index: BindingIndex, a: PhoneNumber, b: PhoneNumber
) -> None:
    """AXB with AXC does not share X: BIND_CONFLICT (whichever side the shared number is on)."""
    index.add(bind(a=A, b=B), NOW)
    assert conflict_code(index, bind(a=a, b=b)) == "BIND_CONFLICT"
    # ... but on another X it is fine.
    index.add(bind(x=X2, a=a, b=b), NOW)


def test_axb_expired_binding_blocks_nothing_and_the_active_one_routes(index: BindingIndex) -> None:
    old = bind(a=A, b=B, expires_at=NOW + 10)
    index.add(old, NOW)
    later = NOW + 20
    new = bind(a=A, b=C)
    index.add(new, later)
    assert route(index.resolve(X, A, now=later)).callee == C
    assert route(index.resolve(X, C, now=later)).callee == A
    # B's only binding on X expired: reported as expired, with that binding.
    assert intercepted(index.resolve(X, B, now=later), InterceptCause.EXPIRED).binding is old
    # Once the new one expires too, A hears about the later of the two.
    gone = LATER + 1
    assert intercepted(index.resolve(X, A, now=gone), InterceptCause.EXPIRED).binding is new


def test_axb_capacity_per_x() -> None:
    index = BindingIndex(axb_capacity_per_x=3)
    pairs = [
        (PhoneNumber(f"+86139000000{i:02d}"), PhoneNumber(f"+86137000000{i:02d}")) for i in range(5)
    ]
    first = bind(a=pairs[0][0], b=pairs[0][1], expires_at=NOW + 10)
    index.add(first, NOW)
    for a, b in pairs[1:3]:
        index.add(bind(a=a, b=b), NOW)
    fourth = bind(a=pairs[3][0], b=pairs[3][1])
    assert conflict_code(index, fourth) == "X_CAPACITY_EXCEEDED"
    with pytest.raises(BindConflictError) as caught:
        index.add(fourth, NOW)
    assert caught.value.reference_code == "isv.NO_AVAILABLE_NUMBER"
    # Capacity counts active bindings only: once the first expires there is room.
    index.add(fourth, NOW + 10)
    assert conflict_code(index, bind(a=pairs[4][0], b=pairs[4][1]), NOW + 10) == (
        "X_CAPACITY_EXCEEDED"
    )
    index.remove(fourth.sub_id)
    index.add(bind(a=pairs[4][0], b=pairs[4][1]), NOW + 10)


def test_axb_default_capacity_is_200(index: BindingIndex) -> None:
    for i in range(AXB_CAPACITY_PER_X):
        index.add(
            bind(a=PhoneNumber(f"+861390000{i:04d}"), b=PhoneNumber(f"+861370000{i:04d}")), NOW
        )
    extra = bind(a=PhoneNumber("+8613600000000"), b=PhoneNumber("+8613600000001"))
    assert conflict_code(index, extra) == "X_CAPACITY_EXCEEDED"
    assert index.count_active(X, now=NOW) == 200


def test_expiry_boundary(index: BindingIndex) -> None:
    """Active while now < expires_at; at expires_at it is expired (and blocks nothing)."""
    binding = bind(expires_at=NOW + 100)
    index.add(binding, NOW)
    assert isinstance(index.resolve(X, A, now=NOW + 99.999), Route)
    result = intercepted(index.resolve(X, A, now=NOW + 100), InterceptCause.EXPIRED)
    assert result.binding is binding
    intercepted(index.resolve(X, B, now=NOW + 100), InterceptCause.EXPIRED)
    assert conflict_code(index, bind(a=A, b=C), NOW + 99.999) == "BIND_CONFLICT"
    index.check(bind(a=A, b=C), NOW + 100)
    assert InterceptCause.EXPIRED.unconnected_cause == 2


def test_axb_restriction_ax_disable(index: BindingIndex) -> None:
    binding = bind(restriction=Restriction.AX_DISABLE)
    index.add(binding, NOW)
    assert intercepted(index.resolve(X, A, now=NOW), InterceptCause.RESTRICTED).binding is binding
    assert route(index.resolve(X, B, now=NOW)).callee == A
    assert InterceptCause.RESTRICTED.unconnected_cause == 3


def test_axb_restriction_bx_disable(index: BindingIndex) -> None:
    index.add(bind(restriction=Restriction.BX_DISABLE), NOW)
    assert route(index.resolve(X, A, now=NOW)).callee == B
    intercepted(index.resolve(X, B, now=NOW), InterceptCause.RESTRICTED)


def test_restriction_cleared_by_replace(index: BindingIndex) -> None:
    binding = bind(restriction=Restriction.AX_DISABLE)
    index.add(binding, NOW)
    index.replace(dataclasses.replace(binding, restriction=Restriction.NONE), NOW)
    assert route(index.resolve(X, A, now=NOW)).callee == B


# --------------------------------------------------------------------------- AXN, 95AXN


@pytest.mark.parametrize(("kind", "x"), [(BindingType.AXN, X), (BindingType.AXN95, X95)])
def test_axn_any_number_calls_x_rings_a(
    index: BindingIndex, kind: BindingType, x: PhoneNumber
) -> None:
    binding = bind(kind, x=x, b=None)
    index.add(binding, NOW)
    for caller in (C, N, B):
        result = route(index.resolve(x, caller, now=NOW))
        assert (result.callee, result.caller, result.call_type) == (A, caller, CALL_TYPE_PEER_TO_A)
        assert (result.phone_no, result.peer_no) == (A, caller)
    anonymous = route(index.resolve(x, None, now=NOW))
    assert (anonymous.callee, anonymous.peer_no) == (A, None)


@pytest.mark.parametrize(("kind", "x"), [(BindingType.AXN, X), (BindingType.AXN95, X95)])
def test_axn_a_calls_x_rings_default_b_else_intercepted(
    index: BindingIndex, kind: BindingType, x: PhoneNumber
) -> None:
    binding = bind(kind, x=x, b=None)
    index.add(binding, NOW)
    result = intercepted(index.resolve(x, A, now=NOW), InterceptCause.NO_DEFAULT_B)
    assert result.binding is binding
    index.replace(dataclasses.replace(binding, b=B), NOW)
    result2 = route(index.resolve(x, A, now=NOW))
    assert (result2.callee, result2.call_type, result2.peer_no) == (B, CALL_TYPE_A_TO_PEER, B)


@pytest.mark.parametrize(
    ("kind", "x"),
    [(BindingType.AXN, X), (BindingType.AXN95, X95), (BindingType.AXG, X)],
)
def test_exclusive_x_carries_one_active_binding(
    index: BindingIndex, kind: BindingType, x: PhoneNumber
) -> None:
    first = bind(kind, x=x, b=None, group_id=G, expires_at=NOW + 10)
    index.add(first, NOW)
    other = bind(kind, x=x, a=C, b=None, group_id=G)
    assert conflict_code(index, other) == "X_OCCUPIED"
    with pytest.raises(BindConflictError) as caught:
        index.add(other, NOW)
    assert caught.value.reference_code == "isv.NO_AVAILABLE_NUMBER"
    # Once the first expired, the X is free again and the new binding is the one that routes.
    index.add(other, NOW + 10)
    index.set_group(G, [N])
    result = route(index.resolve(x, N, now=NOW + 10))
    assert (result.binding, result.callee) == (other, C)


@pytest.mark.parametrize(("kind", "x"), [(BindingType.AXN, X), (BindingType.AXN95, X95)])
def test_axn_restrictions(index: BindingIndex, kind: BindingType, x: PhoneNumber) -> None:
    binding = bind(kind, x=x, b=B, restriction=Restriction.BX_DISABLE)
    index.add(binding, NOW)
    intercepted(index.resolve(x, N, now=NOW), InterceptCause.RESTRICTED)
    intercepted(index.resolve(x, None, now=NOW), InterceptCause.RESTRICTED)
    assert route(index.resolve(x, A, now=NOW)).callee == B
    index.replace(dataclasses.replace(binding, restriction=Restriction.AX_DISABLE), NOW)
    intercepted(index.resolve(x, A, now=NOW), InterceptCause.RESTRICTED)
    assert route(index.resolve(x, N, now=NOW)).callee == A
    # A restricted and no default B: the restriction is the reason given.
    index.replace(dataclasses.replace(binding, b=None, restriction=Restriction.AX_DISABLE), NOW)
    intercepted(index.resolve(x, A, now=NOW), InterceptCause.RESTRICTED)


def test_axn_expired_is_reported_for_every_caller(index: BindingIndex) -> None:
    binding = bind(BindingType.AXN, b=B, expires_at=NOW + 5)
    index.add(binding, NOW)
    for caller in (A, N, None):
        assert intercepted(
            index.resolve(X, caller, now=NOW + 5), InterceptCause.EXPIRED
        ).binding is (binding)


@pytest.mark.parametrize(
    ("existing", "new"),
    [
        (BindingType.AXN, BindingType.AXB),
        (BindingType.AXB, BindingType.AXN),
        (BindingType.AXN, BindingType.AXG),
        (BindingType.AXN_EXT, BindingType.AXN),
        (BindingType.AXB, BindingType.AXN_EXT),
    ],
)
def test_type_clash_on_one_x_is_a_conflict(
    index: BindingIndex, existing: BindingType, new: BindingType
) -> None:
    def make(
        kind: BindingType, a: PhoneNumber, b: PhoneNumber | None, expires_at: float
    ) -> Binding:
        return bind(
            kind,
            a=a,
            b=b if kind is BindingType.AXB else None,
            group_id=G if kind is BindingType.AXG else None,
            extension="1" if kind is BindingType.AXN_EXT else None,
            expires_at=expires_at,
        )

    old = make(existing, A, B, NOW + 1)
    index.add(old, NOW)
    assert conflict_code(index, make(new, C, D, LATER)) == "X_TYPE_MISMATCH"
    # Expired bindings of another type still hold the X until removed.
    assert conflict_code(index, make(new, C, D, LATER), NOW + 2) == "X_TYPE_MISMATCH"
    index.remove(old.sub_id)
    index.add(make(new, C, D, LATER), NOW + 2)


# --------------------------------------------------------------------------- AXN extension


def test_axn_ext_n_without_extension_needs_the_prompt(index: BindingIndex) -> None:
    index.add(bind(BindingType.AXN_EXT, b=None, extension="12"), NOW)
    result = index.resolve(X, N, now=NOW)
    assert result == NeedsExtension(x=X, caller=N, pool_key=POOL)
    assert index.resolve(X, None, now=NOW) == NeedsExtension(x=X, caller=None, pool_key=POOL)


def test_axn_ext_n_keys_the_extension_and_rings_its_a(index: BindingIndex) -> None:
    first = bind(BindingType.AXN_EXT, a=A, b=None, extension="1")
    second = bind(BindingType.AXN_EXT, a=C, b=None, extension="123")
    index.add(first, NOW)
    index.add(second, NOW)  # X shared by many bindings
    result = route(index.resolve(X, N, now=NOW, extension="123"))
    assert (result.binding, result.callee, result.call_type, result.peer_no) == (
        second,
        C,
        CALL_TYPE_PEER_TO_A,
        N,
    )
    assert route(index.resolve(X, N, now=NOW, extension="1")).callee == A
    intercepted(index.resolve(X, N, now=NOW, extension="9"), InterceptCause.NO_BINDING)


def test_axn_ext_a_calls_x_rings_default_b(index: BindingIndex) -> None:
    binding = bind(BindingType.AXN_EXT, b=B, extension="1")
    index.add(binding, NOW)
    result = route(index.resolve(X, A, now=NOW))
    assert (result.callee, result.call_type) == (B, CALL_TYPE_A_TO_PEER)
    # A is recognised whatever was keyed.
    assert route(index.resolve(X, A, now=NOW, extension="7")).callee == B
    index.replace(dataclasses.replace(binding, b=None), NOW)
    intercepted(index.resolve(X, A, now=NOW), InterceptCause.NO_DEFAULT_B)


def test_axn_ext_x_extension_unique(index: BindingIndex) -> None:
    index.add(bind(BindingType.AXN_EXT, a=A, b=None, extension="1", expires_at=NOW + 10), NOW)
    clash = bind(BindingType.AXN_EXT, a=C, b=None, extension="1")
    assert conflict_code(index, clash) == "EXTENSION_TAKEN"
    index.add(bind(BindingType.AXN_EXT, a=C, b=None, extension="2"), NOW)
    index.add(clash := dataclasses.replace(clash, a=D), NOW + 10)  # the first expired
    assert route(index.resolve(X, N, now=NOW + 10, extension="1")).binding is clash


def test_axn_ext_a_once_per_x(index: BindingIndex) -> None:
    """A calling X must reach exactly one default B: one active binding per A per X."""
    index.add(bind(BindingType.AXN_EXT, a=A, b=B, extension="1"), NOW)
    assert conflict_code(index, bind(BindingType.AXN_EXT, a=A, b=C, extension="2")) == (
        "BIND_CONFLICT"
    )


def test_axn_ext_expired(index: BindingIndex) -> None:
    binding = bind(BindingType.AXN_EXT, b=B, extension="5", expires_at=NOW + 1)
    index.add(binding, NOW)
    intercepted(index.resolve(X, N, now=NOW + 1, extension="5"), InterceptCause.EXPIRED)
    intercepted(index.resolve(X, A, now=NOW + 1), InterceptCause.EXPIRED)


# --------------------------------------------------------------------------- AXG


def test_axg_member_rings_a_others_intercepted(index: BindingIndex) -> None:
    index.set_group(G, [C, D])
    binding = bind(BindingType.AXG, b=B, group_id=G)
    index.add(binding, NOW)
    result = route(index.resolve(X, C, now=NOW))
    assert (result.callee, result.call_type, result.peer_no) == (A, CALL_TYPE_PEER_TO_A, C)
    assert route(index.resolve(X, A, now=NOW)).callee == B  # A → default B
    for stranger in (N, B, None):
        result2 = intercepted(index.resolve(X, stranger, now=NOW), InterceptCause.NOT_IN_GROUP)
        assert result2.binding is binding
    assert InterceptCause.NOT_IN_GROUP.unconnected_cause == 4


def test_axg_group_overwrite_and_removal(index: BindingIndex) -> None:
    index.set_group(G, [C])
    index.add(bind(BindingType.AXG, b=None, group_id=G), NOW)
    index.set_group(G, [D])
    intercepted(index.resolve(X, C, now=NOW), InterceptCause.NOT_IN_GROUP)
    assert route(index.resolve(X, D, now=NOW)).callee == A
    assert index.group_members(G) == frozenset({D})
    index.remove_group(G)
    intercepted(index.resolve(X, D, now=NOW), InterceptCause.NOT_IN_GROUP)
    intercepted(index.resolve(X, A, now=NOW), InterceptCause.NO_DEFAULT_B)


def test_axg_restriction_bx_blocks_members(index: BindingIndex) -> None:
    index.set_group(G, [C])
    index.add(bind(BindingType.AXG, b=B, group_id=G, restriction=Restriction.BX_DISABLE), NOW)
    intercepted(index.resolve(X, C, now=NOW), InterceptCause.RESTRICTED)
    assert route(index.resolve(X, A, now=NOW)).callee == B


# --------------------------------------------------------------------------- blacklists


def test_pool_blacklist_blocks_callers_of_the_pool_only(index: BindingIndex) -> None:
    index.add(bind(BindingType.AXN, b=B), NOW)
    index.add(dataclasses.replace(bind(BindingType.AXN, x=X2, b=B), pool_key=OTHER_POOL), NOW)
    index.set_pool_blacklist(POOL, [N])
    assert intercepted(index.resolve(X, N, now=NOW), InterceptCause.BLACKLISTED).binding is not None
    assert route(index.resolve(X2, N, now=NOW)).callee == A  # another pool
    assert route(index.resolve(X, C, now=NOW)).callee == A
    assert InterceptCause.BLACKLISTED.unconnected_cause == 1
    index.set_pool_blacklist(POOL, [])
    assert route(index.resolve(X, N, now=NOW)).callee == A


def test_pool_blacklist_on_axn_ext_before_the_prompt(index: BindingIndex) -> None:
    index.add(bind(BindingType.AXN_EXT, b=None, extension="1"), NOW)
    index.set_pool_blacklist(POOL, [N])
    intercepted(index.resolve(X, N, now=NOW), InterceptCause.BLACKLISTED)
    intercepted(index.resolve(X, N, now=NOW, extension="1"), InterceptCause.BLACKLISTED)
    assert isinstance(index.resolve(X, C, now=NOW), NeedsExtension)


def test_blacklisted_a_cannot_reach_its_default_b(index: BindingIndex) -> None:
    index.add(bind(BindingType.AXN, b=None), NOW)
    index.set_pool_blacklist(POOL, [A])
    intercepted(index.resolve(X, A, now=NOW), InterceptCause.BLACKLISTED)


@pytest.mark.parametrize(
    ("direction", "a_to_b_blocked", "b_to_a_blocked"),
    [
        (BlockDirection.BOTH, True, True),
        (BlockDirection.FIRST_TO_SECOND, True, False),
        (BlockDirection.SECOND_TO_FIRST, False, True),
    ],
)
def test_pair_blocks_by_direction(
    index: BindingIndex, direction: BlockDirection, a_to_b_blocked: bool, b_to_a_blocked: bool
) -> None:
    index.add(bind(), NOW)
    index.add(bind(a=C, b=D), NOW)
    index.add_pair_block(POOL, first=A, second=B, direction=direction)
    assert isinstance(index.resolve(X, A, now=NOW), Intercept) is a_to_b_blocked
    assert isinstance(index.resolve(X, B, now=NOW), Intercept) is b_to_a_blocked
    assert isinstance(index.resolve(X, C, now=NOW), Route)
    if a_to_b_blocked:
        intercepted(index.resolve(X, A, now=NOW), InterceptCause.BLACKLISTED)
    index.remove_pair_block(POOL, first=A, second=B, direction=direction)
    assert isinstance(index.resolve(X, A, now=NOW), Route)
    assert isinstance(index.resolve(X, B, now=NOW), Route)


def test_pair_block_other_pool_and_partial_removal(index: BindingIndex) -> None:
    index.add(bind(), NOW)
    index.add_pair_block(OTHER_POOL, first=A, second=B)
    assert isinstance(index.resolve(X, A, now=NOW), Route)
    index.add_pair_block(POOL, first=A, second=B)
    index.remove_pair_block(POOL, first=A, second=B, direction=BlockDirection.FIRST_TO_SECOND)
    assert isinstance(index.resolve(X, A, now=NOW), Route)
    intercepted(index.resolve(X, B, now=NOW), InterceptCause.BLACKLISTED)


def test_pair_block_on_axn_n_to_a(index: BindingIndex) -> None:
    index.add(bind(BindingType.AXN, b=None), NOW)
    index.add_pair_block(POOL, first=N, second=A, direction=BlockDirection.FIRST_TO_SECOND)
    intercepted(index.resolve(X, N, now=NOW), InterceptCause.BLACKLISTED)
    assert route(index.resolve(X, C, now=NOW)).callee == A


def test_blacklist_reported_before_restriction(index: BindingIndex) -> None:
    index.add(bind(restriction=Restriction.AX_DISABLE), NOW)
    index.set_pool_blacklist(POOL, [A])
    intercepted(index.resolve(X, A, now=NOW), InterceptCause.BLACKLISTED)


# --------------------------------------------------------------------------- maintenance


def test_remove(index: BindingIndex) -> None:
    binding = bind()
    index.add(binding, NOW)
    assert len(index) == 1 and index.get(binding.sub_id, X) is binding
    assert index.get(binding.sub_id, X2) is None  # found on its own X only
    assert index.remove(binding.sub_id, X2) is None and len(index) == 1
    assert index.remove(binding.sub_id, X) is binding
    assert index.remove(binding.sub_id, X) is None
    assert len(index) == 0 and index.get(binding.sub_id) is None
    assert index.by_x(X) == [] and index.x_type(X) is None
    intercepted(index.resolve(X, A, now=NOW), InterceptCause.NO_BINDING)
    index.add(bind(BindingType.AXN, b=None), NOW)  # X fully released: any type again


def test_replace_updates_every_structure(index: BindingIndex) -> None:
    binding = bind()
    index.add(binding, NOW)
    updated = dataclasses.replace(binding, b=C)
    assert index.replace(updated, NOW) is binding
    assert index.get(binding.sub_id, X) is updated
    intercepted(index.resolve(X, B, now=NOW), InterceptCause.NO_BINDING)
    assert route(index.resolve(X, C, now=NOW)).callee == A
    assert index.by_x(X) == [updated]
    index.add(bind(a=B, b=D), NOW)  # B is free on X again


def test_replace_revalidates_excluding_itself(index: BindingIndex) -> None:
    binding = bind()
    other = bind(a=C, b=D)
    index.add(binding, NOW)
    index.add(other, NOW)
    index.replace(dataclasses.replace(binding, expires_at=LATER + 10), NOW)  # itself: fine
    with pytest.raises(BindConflictError) as caught:
        index.replace(dataclasses.replace(binding, b=D), NOW)
    assert caught.value.code == "BIND_CONFLICT"
    assert route(index.resolve(X, B, now=NOW)).callee == A  # unchanged on error
    assert route(index.resolve(X, D, now=NOW)).callee == C


def test_replace_extending_an_expired_binding_whose_number_moved_on(index: BindingIndex) -> None:
    old = bind(expires_at=NOW + 1)
    index.add(old, NOW)
    index.add(bind(a=A, b=C), NOW + 2)
    with pytest.raises(BindConflictError):
        index.replace(dataclasses.replace(old, expires_at=LATER), NOW + 2)


def test_replace_and_add_errors(index: BindingIndex) -> None:
    binding = bind()
    with pytest.raises(BindConflictError) as caught:
        index.replace(binding, NOW)
    assert caught.value.code == "NO_SUCH_BINDING"
    index.add(binding, NOW)
    with pytest.raises(BindConflictError) as caught2:
        index.add(dataclasses.replace(binding, a=C, b=D), NOW)
    assert caught2.value.code == "DUPLICATE_SUB_ID"
    with pytest.raises(BindConflictError) as caught3:  # the old version is looked up on X
        index.replace(dataclasses.replace(binding, x=X2), NOW)
    assert caught3.value.code == "NO_SUCH_BINDING"
    assert index.by_x(X) == [binding] and index.by_x(X2) == []


@pytest.mark.parametrize("kind", [BindingType.AXB, BindingType.AXN])
def test_expiry_within_its_last_hour_is_exact(index: BindingIndex, kind: BindingType) -> None:
    """resolve looks at the binding's hour first; within that hour the exact expiry decides."""
    hour = 3_600.0 * 500
    expires_at = hour + 1_800.25
    index.add(bind(kind, expires_at=expires_at, b=B if kind is BindingType.AXB else None), hour)
    caller = B if kind is BindingType.AXB else N
    for now in (hour - 1.0, hour, expires_at - 0.25):
        assert route(index.resolve(X, caller, now=now)).callee == A
    for now in (expires_at, expires_at + 0.25, hour + 3_600.0):
        intercepted(index.resolve(X, caller, now=now), InterceptCause.EXPIRED)


def test_check_changes_nothing(index: BindingIndex) -> None:
    binding = bind()
    index.check(binding, NOW)
    assert len(index) == 0
    intercepted(index.resolve(X, A, now=NOW), InterceptCause.NO_BINDING)


@pytest.mark.parametrize(
    ("binding", "code"),
    [
        (bind(b=None), "B_REQUIRED"),
        (bind(b=A), "SAME_NUMBER"),
        (bind(BindingType.AXN, b=A), "SAME_NUMBER"),
        (bind(BindingType.AXN_EXT, b=None), "EXTENSION_REQUIRED"),
        (bind(BindingType.AXN_EXT, b=None, extension="1234"), "EXTENSION_ILLEGAL"),
        (bind(BindingType.AXN_EXT, b=None, extension=""), "EXTENSION_ILLEGAL"),
        (bind(BindingType.AXN_EXT, b=None, extension="1#"), "EXTENSION_ILLEGAL"),
        (bind(BindingType.AXN, b=None, extension="1"), "EXTENSION_ILLEGAL"),
        (bind(BindingType.AXG, b=None), "GROUP_REQUIRED"),
    ],
)
def test_shape_errors(index: BindingIndex, binding: Binding, code: str) -> None:
    with pytest.raises(InvalidBindingError) as caught:
        index.add(binding, NOW)
    assert caught.value.code == code
    assert len(index) == 0


def test_validate_request() -> None:
    validate_request(bind(expires_at=NOW + 60.001), now=NOW)
    for expires_at in (NOW + 60, NOW, NOW - 1):
        with pytest.raises(InvalidBindingError) as caught:
            validate_request(bind(expires_at=expires_at), now=NOW)
        assert caught.value.code == "EXPIRE_DATE_ILLEGAL"
    validate_request(bind(ring_timeout_s=5), now=NOW)
    validate_request(bind(ring_timeout_s=180), now=NOW)
    for timeout_s in (4, 181):
        with pytest.raises(InvalidBindingError) as caught2:
            validate_request(bind(ring_timeout_s=timeout_s), now=NOW)
        assert caught2.value.code == "RING_TIMEOUT_ILLEGAL"


def test_load_indexes_without_rules_and_refuses_type_clashes(index: BindingIndex) -> None:
    expired = bind(expires_at=NOW - 100)
    current = bind(a=A, b=C)
    clash = bind(BindingType.AXN, b=None)
    axn = bind(BindingType.AXN, x=X2, b=None)
    refused = index.load([expired, current, clash, axn, bind(BindingType.AXB, x=X2)])
    assert len(refused) == 2 and refused[0] is clash and refused[1].x == X2
    assert len(index) == 3
    assert index.get(current.sub_id, X) is current and index.get(axn.sub_id, X2) is axn
    assert route(index.resolve(X, A, now=NOW)).callee == C
    intercepted(index.resolve(X, B, now=NOW), InterceptCause.EXPIRED)
    intercepted(index.resolve(X2, A, now=NOW), InterceptCause.NO_DEFAULT_B)
    # Same rules as bindings added one by one: A's active binding blocks a new one, expired
    # B does not.
    assert conflict_code(index, bind(a=A, b=D)) == "BIND_CONFLICT"
    index.add(bind(a=B, b=D), NOW)


def test_x_counts_counts_bindings_per_x_active_or_expired(index: BindingIndex) -> None:
    expired = bind(expires_at=NOW - 100)
    index.load([expired, bind(a=C, b=D), bind(BindingType.AXN, x=X2, b=None)])
    assert index.x_counts() == {X: 2, X2: 1}
    index.remove(expired.sub_id, X)
    assert index.x_counts() == {X: 1, X2: 1}


def test_bindings_without_ringback_share_one_read_only_mapping() -> None:
    first, second = bind(), bind(a=C, b=D)
    assert first.ringback is NO_RINGBACK and second.ringback is NO_RINGBACK
    assert first.ringback == {}
    with pytest.raises(TypeError):
        first.ringback["AXBRing_A"] = "tone"  # type: ignore[index]
    assert bind(ringback={"AXBRing_A": "tone"}).ringback == {"AXBRing_A": "tone"}


def test_reprs_mask_numbers(index: BindingIndex) -> None:
    index.add(bind(), NOW)
    text = repr(index.resolve(X, A, now=NOW)) + repr(NeedsExtension(x=X, caller=N, pool_key=POOL))
    for number in (A, B, X, N):
        assert number not in text
    assert "sub" in repr(index.resolve(X, A, now=NOW + 10**9))
