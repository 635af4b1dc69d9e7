"""AXG groups and blacklists (api.lists): rules, refusals that write nothing, the routing effect
in the binding index, restart, and tenant isolation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from api_support import START, ZONE, Api, Clock, local
from lists_support import (
    MEMBER,
    STRANGER,
    A,
    B,
    bind,
    code_of,
    e164,
    is_intercepted,
    pool_with_numbers,
    resolve,
    rings,
    snapshot,
)

import store
from api.control import ControlPlane
from api.errors import Conflict, ControlError, InvalidInput, NotFound
from api.lists import WAY_CONTROL, GroupOperation
from routing.index import BindingIndex, NeedsExtension
from routing.model import Binding, BindingType, BlockDirection, GroupId, InterceptCause, PoolKey
from store import Database

AXG = BindingType.AXG
AXN = BindingType.AXN
AXB = BindingType.AXB
MISSING = "FC0000000000000000"


async def refused(
    api: Api, action: Awaitable[object], kind: type[ControlError], code: str
) -> ControlError:
    """Run ``action``; assert it raises ``kind`` with ``code`` and leaves the database as it was."""
    before = snapshot(api.db_path)
    with pytest.raises(kind) as caught:
        await action
    assert code_of(caught.value) == code, caught.value
    assert snapshot(api.db_path) == before
    return caught.value


@pytest.fixture
async def axg(api: Api) -> str:
    await api.import_inventory()
    return await pool_with_numbers(api.control, AXG, count=2)


# ------------------------------------------------------------------------------ groups


async def test_create_group_shows_normalised_members_and_feeds_the_index(
    api: Api, axg: str
) -> None:
    lists = api.control.lists
    group_id = await lists.create_group(
        axg, "  drivers ", ["+86 137 0013 7000", "13600136000", "13700137000"], remark="night"
    )
    group = await lists.get_group(axg, group_id)
    assert (group.group_id, group.pool_key, group.name, group.remark) == (
        group_id,
        axg,
        "drivers",
        "night",
    )
    assert group.numbers == (e164(STRANGER), e164(MEMBER))
    assert group.created_at == START
    assert lists.group_view(group)["created"] == local(START)
    assert api.control.index.group_members(group_id) == {e164(STRANGER), e164(MEMBER)}
    assert api.control._group_pool[group_id] == axg


async def test_group_may_start_empty_and_groups_list_oldest_first(api: Api, axg: str) -> None:
    lists = api.control.lists
    first = await lists.create_group(axg, "empty", [])
    api.clock.now += 5
    second = await lists.create_group(axg, "one", [MEMBER])
    groups = await lists.list_groups(axg)
    assert [(g.group_id, g.numbers) for g in groups] == [(first, ()), (second, (e164(MEMBER),))]
    assert api.control.index.group_members(first) == frozenset()
    # An empty group admits nobody but A on an AXG binding.
    binding = await bind(api.control, AXG, axg, group_id=first)
    assert is_intercepted(resolve(api, binding, MEMBER), InterceptCause.NOT_IN_GROUP)


@pytest.mark.parametrize(
    ("name", "numbers", "remark", "code"),
    [
        ("", [MEMBER], None, "PARAMETER_ILLEGAL"),
        ("   ", [MEMBER], None, "PARAMETER_ILLEGAL"),
        ("n" * 129, [MEMBER], None, "PARAMETER_ILLEGAL"),
        ("g", [MEMBER], "r" * 257, "PARAMETER_ILLEGAL"),
        ("g", [f"1370000{i:04d}" for i in range(201)], None, "PARAMETER_ILLEGAL"),
        ("g", [MEMBER, "1380013800"], None, "MOBILE_NUMBER_ILLEGAL"),
        ("g", [MEMBER, "abc"], None, "NUMBER_ILLEGAL"),
    ],
)
async def test_create_group_refusals_write_nothing(  # noqa: PLR0917  (parametrized)
    api: Api, axg: str, name: str, numbers: list[str], remark: str | None, code: str
) -> None:
    await refused(
        api, api.control.lists.create_group(axg, name, numbers, remark), InvalidInput, code
    )
    assert api.control._group_pool == {}


async def test_group_limits_are_inclusive(api: Api, axg: str) -> None:
    lists = api.control.lists
    numbers = [f"1370000{i:04d}" for i in range(200)]
    group_id = await lists.create_group(axg, "n" * 128, numbers, remark="r" * 256)
    assert len((await lists.get_group(axg, group_id)).numbers) == 200


@pytest.mark.parametrize("type_", [AXB, AXN, BindingType.AXN_EXT, BindingType.AXN95])
async def test_groups_only_in_axg_pools(api: Api, type_: BindingType) -> None:
    key = await api.control.create_pool(type_, "not axg")
    lists = api.control.lists
    for action in (
        lists.create_group(key, "g", [MEMBER]),
        lists.list_groups(key),
        lists.get_group(key, "1"),
        lists.operate_group(key, "1", "add", [MEMBER]),
        lists.delete_group(key, "1"),
    ):
        await refused(api, action, InvalidInput, "POOL_TYPE_MISMATCH")


async def test_operate_add_delete_overwrite(api: Api, axg: str) -> None:
    lists = api.control.lists
    index = api.control.index
    group_id = await lists.create_group(axg, "g", [MEMBER])
    added = await lists.operate_group(axg, group_id, GroupOperation.ADD, [STRANGER, MEMBER])
    assert added.numbers == (e164(STRANGER), e164(MEMBER))  # MEMBER twice: still once
    assert index.group_members(group_id) == {e164(STRANGER), e164(MEMBER)}
    deleted = await lists.operate_group(axg, group_id, "delete", [MEMBER, B])  # B: not a member
    assert deleted.numbers == (e164(STRANGER),)
    assert index.group_members(group_id) == {e164(STRANGER)}
    overwritten = await lists.operate_group(axg, group_id, "overwrite", [B, A])
    assert overwritten.numbers == (e164(A), e164(B))
    assert index.group_members(group_id) == {e164(A), e164(B)}
    emptied = await lists.operate_group(axg, group_id, "overwrite", [])
    assert emptied.numbers == () and index.group_members(group_id) == frozenset()
    rows = snapshot(api.db_path)["group_members"]
    assert rows == []


async def test_operate_refusals_write_nothing_and_keep_the_index(api: Api, axg: str) -> None:
    lists = api.control.lists
    start = [f"1370000{i:04d}" for i in range(150)]
    group_id = await lists.create_group(axg, "g", start)
    members = api.control.index.group_members(group_id)
    more = [f"1360000{i:04d}" for i in range(51)]
    error = await refused(
        api, lists.operate_group(axg, group_id, "add", more), InvalidInput, "PARAMETER_ILLEGAL"
    )
    assert "201" in error.message  # the size the group would have had
    too_many = [f"1350000{i:04d}" for i in range(201)]
    for operation in GroupOperation:
        await refused(
            api,
            lists.operate_group(axg, group_id, operation, too_many),
            InvalidInput,
            "PARAMETER_ILLEGAL",
        )
    # One bad number refuses the whole call: the good ones before it are not added.
    await refused(
        api,
        lists.operate_group(axg, group_id, "add", [STRANGER, "1234"]),
        InvalidInput,
        "NUMBER_ILLEGAL",
    )
    await refused(
        api, lists.operate_group(axg, group_id, "add", []), InvalidInput, "PARAMETER_ILLEGAL"
    )
    await refused(
        api, lists.operate_group(axg, group_id, "delete", []), InvalidInput, "PARAMETER_ILLEGAL"
    )
    await refused(
        api,
        lists.operate_group(axg, group_id, "addNumbers", [STRANGER]),
        InvalidInput,
        "PARAMETER_ILLEGAL",
    )
    await refused(
        api, lists.operate_group(axg, "404", "add", [STRANGER]), NotFound, "GROUP_NOT_EXIST"
    )
    assert api.control.index.group_members(group_id) == members
    # Adding up to exactly 200 is fine.
    full = await lists.operate_group(axg, group_id, "add", more[:50])
    assert len(full.numbers) == 200


async def test_routing_follows_group_operations(api: Api, axg: str) -> None:
    lists = api.control.lists
    group_id = await lists.create_group(axg, "g", [MEMBER])
    binding = await bind(api.control, AXG, axg, group_id=group_id)
    assert rings(resolve(api, binding, MEMBER), A)
    assert is_intercepted(resolve(api, binding, STRANGER), InterceptCause.NOT_IN_GROUP)

    await lists.operate_group(axg, group_id, "add", [STRANGER])
    assert rings(resolve(api, binding, STRANGER), A)

    await lists.operate_group(axg, group_id, "delete", [MEMBER])
    assert is_intercepted(resolve(api, binding, MEMBER), InterceptCause.NOT_IN_GROUP)
    assert rings(resolve(api, binding, STRANGER), A)

    await lists.operate_group(axg, group_id, "overwrite", [MEMBER])
    assert rings(resolve(api, binding, MEMBER), A)
    assert is_intercepted(resolve(api, binding, STRANGER), InterceptCause.NOT_IN_GROUP)


async def test_delete_group_only_when_unused(api: Api, axg: str) -> None:
    control = api.control
    lists = control.lists
    group_id = await lists.create_group(axg, "g", [MEMBER])
    binding = await bind(control, AXG, axg, group_id=group_id)
    await refused(api, lists.delete_group(axg, group_id), Conflict, "GROUP_IN_USE")
    # Still usable after the refusal: the group → pool map was restored.
    assert control._group_pool[group_id] == axg
    assert rings(resolve(api, binding, MEMBER), A)
    # Expired but not unbound still counts as a user.
    api.clock.now += 7200
    await refused(api, lists.delete_group(axg, group_id), Conflict, "GROUP_IN_USE")
    api.clock.now = START
    await control.unbind(axg, binding.sub_id)

    await lists.delete_group(axg, group_id)
    rows = snapshot(api.db_path)["groups"]
    assert len(rows) == 1 and rows[0][-1] == START  # soft: kept, deleted_at set
    assert group_id not in control._group_pool
    assert control.index.group_members(group_id) == frozenset()
    await refused(api, lists.get_group(axg, group_id), NotFound, "GROUP_NOT_EXIST")
    await refused(api, lists.delete_group(axg, group_id), NotFound, "GROUP_NOT_EXIST")
    await refused(api, lists.operate_group(axg, group_id, "add", [A]), NotFound, "GROUP_NOT_EXIST")
    assert await lists.list_groups(axg) == []
    with pytest.raises(NotFound) as caught:
        await bind(control, AXG, axg, group_id=group_id)
    assert caught.value.code == "GROUP_NOT_EXIST"


async def test_group_of_another_pool_is_not_found(api: Api, axg: str) -> None:
    other = await pool_with_numbers(api.control, AXG, count=0)
    lists = api.control.lists
    group_id = await lists.create_group(other, "elsewhere", [MEMBER])
    for action in (
        lists.get_group(axg, group_id),
        lists.operate_group(axg, group_id, "add", [A]),
        lists.delete_group(axg, group_id),
    ):
        await refused(api, action, NotFound, "GROUP_NOT_EXIST")
    assert [g.group_id for g in await lists.list_groups(axg)] == []
    assert (await lists.get_group(other, group_id)).numbers == (e164(MEMBER),)


# ------------------------------------------------------------------------------ pool blacklist


@pytest.mark.parametrize("type_", [AXN, BindingType.AXN_EXT])
async def test_pool_blacklist_intercepts_and_lifts(api: Api, type_: BindingType) -> None:
    await api.import_inventory()
    control = api.control
    key = await pool_with_numbers(control, type_, count=1)
    binding = await bind(control, type_, key, b=B)
    lists = control.lists
    extension = binding.extension if type_ is BindingType.AXN_EXT else None

    entry = await lists.add_pool_blacklist(key, "+86 136-0013-6000")
    assert (entry.pool_key, entry.number, entry.created_at) == (key, e164(STRANGER), START)
    assert is_intercepted(
        resolve(api, binding, STRANGER, extension=extension), InterceptCause.BLACKLISTED
    )
    assert rings(resolve(api, binding, MEMBER, extension=extension), A)
    if type_ is BindingType.AXN_EXT:
        # Refused before the extension prompt.
        assert is_intercepted(resolve(api, binding, STRANGER), InterceptCause.BLACKLISTED)
        assert isinstance(resolve(api, binding, MEMBER), NeedsExtension)

    api.clock.now += 10
    again = await lists.add_pool_blacklist(key, STRANGER)  # idempotent: the first entry stays
    assert again == entry
    assert snapshot(api.db_path)["blacklists"] == [(key, e164(STRANGER), START)]
    assert await lists.list_pool_blacklist(key) == [entry]

    await lists.remove_pool_blacklist(key, STRANGER)
    assert rings(resolve(api, binding, STRANGER, extension=extension), A)
    assert await lists.list_pool_blacklist(key) == []
    await refused(api, lists.remove_pool_blacklist(key, STRANGER), NotFound, "BLACKLIST_NOT_EXIST")


async def test_blacklisted_a_cannot_call_its_own_x(api: Api) -> None:
    await api.import_inventory()
    key = await pool_with_numbers(api.control, AXN, count=1)
    binding = await bind(api.control, AXN, key, b=B)
    await api.control.lists.add_pool_blacklist(key, A)
    assert is_intercepted(resolve(api, binding, A), InterceptCause.BLACKLISTED)


async def test_blacklist_of_one_pool_leaves_another(api: Api) -> None:
    await api.import_inventory()
    control = api.control
    first = await pool_with_numbers(control, AXN, count=1)
    second = await pool_with_numbers(control, AXN, count=1)
    on_first = await bind(control, AXN, first)
    on_second = await bind(control, AXN, second, a=B)
    await control.lists.add_pool_blacklist(first, STRANGER)
    assert is_intercepted(resolve(api, on_first, STRANGER), InterceptCause.BLACKLISTED)
    assert rings(resolve(api, on_second, STRANGER), B)
    await refused(
        api, control.lists.remove_pool_blacklist(second, STRANGER), NotFound, "BLACKLIST_NOT_EXIST"
    )


@pytest.mark.parametrize("type_", [AXB, AXG, BindingType.AXN95])
async def test_pool_blacklist_only_in_axn_pools(api: Api, type_: BindingType) -> None:
    key = await api.control.create_pool(type_, "p")
    lists = api.control.lists
    for action in (
        lists.add_pool_blacklist(key, STRANGER),
        lists.remove_pool_blacklist(key, STRANGER),
        lists.list_pool_blacklist(key),
    ):
        await refused(api, action, InvalidInput, "POOL_TYPE_MISMATCH")


@pytest.mark.parametrize(
    ("number", "code"), [("1360013600", "MOBILE_NUMBER_ILLEGAL"), ("x", "NUMBER_ILLEGAL")]
)
async def test_pool_blacklist_refuses_bad_numbers(api: Api, number: str, code: str) -> None:
    key = await api.control.create_pool(AXN, "p")
    lists = api.control.lists
    await refused(api, lists.add_pool_blacklist(key, number), InvalidInput, code)
    await refused(api, lists.remove_pool_blacklist(key, number), InvalidInput, code)
    await refused(api, lists.add_pool_blacklist(MISSING, STRANGER), NotFound, "POOL_NOT_EXIST")


# ------------------------------------------------------------------------------ pair blocks


@pytest.fixture
async def axb(api: Api) -> tuple[str, Binding]:
    await api.import_inventory()
    key = await pool_with_numbers(api.control, AXB, count=1)
    binding = await bind(api.control, AXB, key, b=B)
    return key, binding


@pytest.mark.parametrize(
    ("direction", "a_to_b", "b_to_a"),
    [
        (BlockDirection.BOTH, False, False),
        (BlockDirection.FIRST_TO_SECOND, False, True),
        (BlockDirection.SECOND_TO_FIRST, True, False),
    ],
)
async def test_pair_block_directions(
    api: Api, axb: tuple[str, Binding], direction: BlockDirection, a_to_b: bool, b_to_a: bool
) -> None:
    key, binding = axb
    lists = api.control.lists
    pair = await lists.add_pair_block(key, A, B, direction)
    assert (pair.first, pair.second, pair.direction) == (e164(A), e164(B), direction)
    from_a = resolve(api, binding, A)
    from_b = resolve(api, binding, B)
    assert rings(from_a, B) is a_to_b
    assert rings(from_b, A) is b_to_a
    assert a_to_b or is_intercepted(from_a, InterceptCause.BLACKLISTED)
    assert b_to_a or is_intercepted(from_b, InterceptCause.BLACKLISTED)
    await lists.remove_pair_block(key, A, B, direction)
    assert rings(resolve(api, binding, A), B)
    assert rings(resolve(api, binding, B), A)
    assert snapshot(api.db_path)["blacklist_pairs"] == []


async def test_pair_entries_merge_whichever_way_round(api: Api, axb: tuple[str, Binding]) -> None:
    key, binding = axb
    lists = api.control.lists
    one_way = await lists.add_pair_block(key, A, B, "FIRST_TO_SECOND")
    api.clock.now += 10
    # b:a SECOND_TO_FIRST is a → b again: already blocked, nothing changes.
    assert await lists.add_pair_block(key, B, A, BlockDirection.SECOND_TO_FIRST) == one_way
    assert await lists.add_pair_block(key, A, B, BlockDirection.FIRST_TO_SECOND) == one_way
    # b:a FIRST_TO_SECOND is b → a: merged into a:b BOTH, keeping its orientation and time.
    both = await lists.add_pair_block(key, B, A, BlockDirection.FIRST_TO_SECOND)
    assert (both.first, both.second, both.direction, both.created_at) == (
        e164(A),
        e164(B),
        BlockDirection.BOTH,
        START,
    )
    assert snapshot(api.db_path)["blacklist_pairs"] == [(key, e164(A), e164(B), "both", START)]
    assert await lists.list_pair_blocks(key) == [both]
    assert is_intercepted(resolve(api, binding, B), InterceptCause.BLACKLISTED)

    # Lifting b → a (written b:a FIRST_TO_SECOND) leaves a → b blocked.
    left = await lists.remove_pair_block(key, B, A, BlockDirection.FIRST_TO_SECOND)
    assert left is not None and left.direction is BlockDirection.FIRST_TO_SECOND
    assert (left.first, left.second) == (e164(A), e164(B))
    assert rings(resolve(api, binding, B), A)
    assert is_intercepted(resolve(api, binding, A), InterceptCause.BLACKLISTED)
    assert snapshot(api.db_path)["blacklist_pairs"] == [
        (key, e164(A), e164(B), "first_to_second", START)
    ]
    # b → a is no longer blocked: lifting it again is not found.
    await refused(
        api,
        lists.remove_pair_block(key, A, B, BlockDirection.SECOND_TO_FIRST),
        NotFound,
        "BLACKLIST_NOT_EXIST",
    )
    # BOTH lifts whatever is left.
    assert await lists.remove_pair_block(key, B, A) is None
    assert await lists.list_pair_blocks(key) == []
    assert rings(resolve(api, binding, A), B)


async def test_pair_block_refusals(api: Api, axb: tuple[str, Binding]) -> None:
    key, _binding = axb
    lists = api.control.lists
    await refused(
        api, lists.add_pair_block(key, A, "+8613800138000"), InvalidInput, "PARAMETER_ILLEGAL"
    )
    await refused(
        api, lists.add_pair_block(key, A, B, "DUPLEX_REJECT"), InvalidInput, "PARAMETER_ILLEGAL"
    )
    await refused(api, lists.add_pair_block(key, A, "139"), InvalidInput, "NUMBER_ILLEGAL")
    await refused(api, lists.remove_pair_block(key, A, B), NotFound, "BLACKLIST_NOT_EXIST")
    await refused(api, lists.list_pair_blocks(MISSING), NotFound, "POOL_NOT_EXIST")


@pytest.mark.parametrize("type_", [AXN, AXG, BindingType.AXN_EXT, BindingType.AXN95])
async def test_pair_blocks_work_in_every_pool_type(api: Api, type_: BindingType) -> None:
    await api.import_inventory()
    control = api.control
    key = await pool_with_numbers(control, type_, count=1)
    group_id = await control.lists.create_group(key, "g", [MEMBER]) if type_ is AXG else None
    binding = await bind(control, type_, key, b=B, group_id=group_id)
    extension = binding.extension if type_ is BindingType.AXN_EXT else None
    assert rings(resolve(api, binding, A), B)
    await control.lists.add_pair_block(key, A, B, BlockDirection.FIRST_TO_SECOND)
    assert is_intercepted(resolve(api, binding, A), InterceptCause.BLACKLISTED)
    caller = MEMBER if type_ is AXG else STRANGER
    await control.lists.add_pair_block(key, caller, A, BlockDirection.FIRST_TO_SECOND)
    assert is_intercepted(
        resolve(api, binding, caller, extension=extension), InterceptCause.BLACKLISTED
    )


def test_way_control_mapping() -> None:
    assert WAY_CONTROL == {
        "DUPLEX_REJECT": BlockDirection.BOTH,
        "PHONEA_REJECT": BlockDirection.FIRST_TO_SECOND,
        "PHONEB_REJECT": BlockDirection.SECOND_TO_FIRST,
    }


# ------------------------------------------------------------------------------ restart


async def test_restart_keeps_lists_effective(api: Api, clock: Clock, tmp_path: Path) -> None:
    await api.import_inventory()
    control = api.control
    lists = control.lists
    axn = await pool_with_numbers(control, AXN, count=1)
    axb = await pool_with_numbers(control, AXB, count=1)
    axg = await pool_with_numbers(control, AXG, count=1)
    on_axn = await bind(control, AXN, axn)
    on_axb = await bind(control, AXB, axb, b=B)
    group_id = await lists.create_group(axg, "g", [MEMBER])
    await lists.operate_group(axg, group_id, "add", [STRANGER])
    await lists.operate_group(axg, group_id, "delete", [MEMBER])
    on_axg = await bind(control, AXG, axg, group_id=group_id)
    deleted = await lists.create_group(axg, "gone", [MEMBER])
    await lists.delete_group(axg, deleted)
    await lists.add_pool_blacklist(axn, STRANGER)
    await lists.add_pool_blacklist(axn, MEMBER)
    await lists.remove_pool_blacklist(axn, MEMBER)
    await lists.add_pair_block(axb, B, A, BlockDirection.FIRST_TO_SECOND)

    db = await Database.open(tmp_path / "maskline.sqlite3")
    fresh = ControlPlane(db=db, index=BindingIndex(), zone=ZONE, clock=clock)
    try:
        await fresh.load()
        index = fresh.index
        now = START + 1
        assert is_intercepted(
            index.resolve(on_axn.x, e164(STRANGER), now=now), InterceptCause.BLACKLISTED
        )
        assert rings(index.resolve(on_axn.x, e164(MEMBER), now=now), A)
        assert is_intercepted(index.resolve(on_axb.x, e164(B), now=now), InterceptCause.BLACKLISTED)
        assert rings(index.resolve(on_axb.x, e164(A), now=now), B)
        assert rings(index.resolve(on_axg.x, e164(STRANGER), now=now), A)
        assert is_intercepted(
            index.resolve(on_axg.x, e164(MEMBER), now=now), InterceptCause.NOT_IN_GROUP
        )
        assert fresh._group_pool == {group_id: PoolKey(axg)}
        assert index.group_members(GroupId(deleted)) == frozenset()
        # The reloaded service goes on from the durable state.
        assert [e.number for e in await fresh.lists.list_pool_blacklist(axn)] == [e164(STRANGER)]
        await fresh.lists.remove_pool_blacklist(axn, STRANGER)
        assert rings(index.resolve(on_axn.x, e164(STRANGER), now=now), A)
        pair = await fresh.lists.add_pair_block(axb, A, B, BlockDirection.FIRST_TO_SECOND)
        assert (pair.first, pair.second, pair.direction) == (e164(B), e164(A), BlockDirection.BOTH)
        await refused(
            api, fresh.lists.remove_pool_blacklist(axn, MEMBER), NotFound, "BLACKLIST_NOT_EXIST"
        )
    finally:
        await fresh.close()


# ------------------------------------------------------------------------------ tenants


async def test_tenant_b_cannot_see_or_change_tenant_a_lists(api: Api) -> None:
    control = api.control
    await api.import_inventory()
    await store.create_tenant(control.db, tenant_id="ta", name="A", now=START)
    await store.create_tenant(control.db, tenant_id="tb", name="B", now=START)
    axg = await pool_with_numbers(control, AXG, count=1, tenant_id="ta")
    axn = await pool_with_numbers(control, AXN, count=1, tenant_id="ta")
    own_axg = await pool_with_numbers(control, AXG, count=0, tenant_id="tb")
    lists = control.lists
    # Tenant A works on its own pools.
    group_id = await lists.create_group(axg, "g", [MEMBER], tenant="ta")
    await lists.add_pool_blacklist(axn, STRANGER, tenant="ta")
    await lists.add_pair_block(axn, A, B, tenant="ta")
    assert [g.group_id for g in await lists.list_groups(axg, tenant="ta")] == [group_id]

    # Each attempt takes (AXG pool, AXN pool): run on A's pools, then on pools that do not exist.
    attempts: list[Callable[[str, str], Awaitable[object]]] = [
        lambda g, n: lists.create_group(g, "g", [MEMBER], tenant="tb"),
        lambda g, n: lists.list_groups(g, tenant="tb"),
        lambda g, n: lists.get_group(g, group_id, tenant="tb"),
        lambda g, n: lists.operate_group(g, group_id, "add", [A], tenant="tb"),
        lambda g, n: lists.operate_group(g, group_id, "overwrite", [], tenant="tb"),
        lambda g, n: lists.delete_group(g, group_id, tenant="tb"),
        lambda g, n: lists.add_pool_blacklist(n, MEMBER, tenant="tb"),
        lambda g, n: lists.remove_pool_blacklist(n, STRANGER, tenant="tb"),
        lambda g, n: lists.list_pool_blacklist(n, tenant="tb"),
        lambda g, n: lists.add_pair_block(n, A, MEMBER, tenant="tb"),
        lambda g, n: lists.remove_pair_block(n, A, B, tenant="tb"),
        lambda g, n: lists.list_pair_blocks(n, tenant="tb"),
        # Even with bad input, the foreign pool answers first: nothing about it leaks.
        lambda g, n: lists.add_pool_blacklist(n, "bad", tenant="tb"),
        lambda g, n: lists.create_group(g, "", ["bad"], tenant="tb"),
    ]
    index_before = (control.index.group_members(group_id), dict(control._group_pool))
    for attempt in attempts:
        foreign = await refused(api, attempt(axg, axn), NotFound, "POOL_NOT_EXIST")
        missing = await refused(api, attempt(MISSING, MISSING), NotFound, "POOL_NOT_EXIST")
        # The same words too, but for the key itself.
        shown = foreign.message.replace(axg, MISSING).replace(axn, MISSING)
        assert shown == missing.message
    # A's group through B's own AXG pool: as a missing group.
    for action in (
        lists.get_group(own_axg, group_id, tenant="tb"),
        lists.operate_group(own_axg, group_id, "add", [A], tenant="tb"),
        lists.delete_group(own_axg, group_id, tenant="tb"),
    ):
        await refused(api, action, NotFound, "GROUP_NOT_EXIST")
    assert (control.index.group_members(group_id), dict(control._group_pool)) == index_before
    # The operator sees everything.
    assert (await lists.get_group(axg, group_id)).numbers == (e164(MEMBER),)
    assert [e.number for e in await lists.list_pool_blacklist(axn)] == [e164(STRANGER)]


# ------------------------------------------------------------------------------ concurrency


async def test_concurrent_changes_lose_nothing(api: Api, axg: str) -> None:
    """Concurrent operations on one pool's lists: the database and the index agree afterwards."""
    control = api.control
    lists = control.lists
    group_id = await lists.create_group(axg, "g", [])
    axn = await control.create_pool(AXN, "p")
    numbers = [f"1370000{i:04d}" for i in range(30)]
    await asyncio.gather(
        *(lists.operate_group(axg, group_id, "add", [n]) for n in numbers),
        *(lists.add_pool_blacklist(axn, n) for n in numbers),
        *(lists.add_pair_block(axn, A, n, BlockDirection.FIRST_TO_SECOND) for n in numbers),
    )
    await asyncio.gather(
        *(lists.operate_group(axg, group_id, "delete", [n]) for n in numbers[::2]),
        *(lists.remove_pool_blacklist(axn, n) for n in numbers[::2]),
        *(lists.remove_pair_block(axn, n, A, BlockDirection.SECOND_TO_FIRST) for n in numbers[::2]),
    )
    kept = {e164(n) for n in numbers[1::2]}
    rows = snapshot(api.db_path)
    assert {number for _gid, number in rows["group_members"]} == kept
    assert control.index.group_members(group_id) == kept
    assert {row[1] for row in rows["blacklists"]} == kept
    assert {row[2] for row in rows["blacklist_pairs"]} == kept
    # The index agrees: kept numbers are refused on an AXN X of the pool, the others are not.
    await api.import_inventory()
    await control.add_numbers(axn, 1, city="北京")
    binding = await bind(control, AXN, axn, a=B)
    for n in numbers:
        refused_call = is_intercepted(resolve(api, binding, n), InterceptCause.BLACKLISTED)
        assert refused_call is (e164(n) in kept)
