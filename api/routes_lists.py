"""REST routes (``/v1/...``) of the lists area; mounted by :func:`api.app.create_app`.

AXG groups (``POST /v1/pools/{pool_key}/groups`` itself is served by ``api.app``), the
pool-wide blacklist of AXN / AXN_EXT pools and point-to-point blocks. Rules and semantics:
:mod:`api.lists`. Numbers are answered in E.164, times in local ``YYYY-MM-DD HH:MM:SS``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from api.auth import PrincipalDependency
from api.control import ControlPlane
from api.lists import MAX_GROUP_NUMBERS, GroupOperation
from api.principal import Principal
from routing.model import BlockDirection

__all__ = ["build_router"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GroupDetailOut(_Model):
    """An AXG number group."""

    group_id: str
    pool_key: str
    name: str
    remark: str | None
    numbers: list[str]
    created: str


class GroupsOut(_Model):
    """The pool's groups, oldest first."""

    groups: list[GroupDetailOut]


class GroupNumbersIn(_Model):
    """Change a group's members: add, delete or overwrite (≤ 200 numbers per call)."""

    operation: GroupOperation
    numbers: list[Annotated[str, Field(max_length=64)]] = Field(
        max_length=MAX_GROUP_NUMBERS,
        description="add/delete: 1..200 numbers; overwrite: 0..200 (empty clears the group)",
    )


class BlacklistIn(_Model):
    """A caller to refuse on every X of the pool."""

    number: str = Field(max_length=64, examples=["13800138000"])


class BlacklistEntryOut(_Model):
    """A pool blacklist entry."""

    pool_key: str
    number: str
    created: str


class BlacklistOut(_Model):
    """The pool's blacklisted numbers, sorted."""

    numbers: list[BlacklistEntryOut]


class PairIn(_Model):
    """A point-to-point block ``first:second``."""

    first: str = Field(max_length=64)
    second: str = Field(max_length=64)
    direction: BlockDirection = BlockDirection.BOTH


class PairOut(_Model):
    """A point-to-point block."""

    pool_key: str
    first: str
    second: str
    direction: BlockDirection
    created: str


class PairsOut(_Model):
    """The pool's point-to-point blocks."""

    pairs: list[PairOut]


class PairRemovedOut(_Model):
    """What is left of the pair after lifting directions (None: the pair is gone)."""

    ok: bool = True
    remaining: PairOut | None = None


class DoneOut(_Model):
    """Success without a payload."""

    ok: bool = True


def build_router(control: ControlPlane, principal: PrincipalDependency) -> APIRouter:
    """The area's routes; each takes ``Depends(principal)`` and passes its tenant on."""
    router = APIRouter()
    lists = control.lists
    # Who asks: the operator (tenant None) or a tenant, whose tenant id scopes every call.
    authenticated = Depends(principal)

    # --------------------------------------------------------------------- groups

    @router.get(
        "/pools/{pool_key}/groups", response_model=GroupsOut, summary="List the AXG pool's groups"
    )
    async def list_groups(pool_key: str, caller: Principal = authenticated) -> GroupsOut:
        groups = await lists.list_groups(pool_key, tenant=caller.tenant_id)
        return GroupsOut(
            groups=[GroupDetailOut.model_validate(lists.group_view(g)) for g in groups]
        )

    @router.get(
        "/pools/{pool_key}/groups/{group_id}",
        response_model=GroupDetailOut,
        summary="Show a group with its numbers",
    )
    async def get_group(
        pool_key: str, group_id: str, caller: Principal = authenticated
    ) -> GroupDetailOut:
        group = await lists.get_group(pool_key, group_id, tenant=caller.tenant_id)
        return GroupDetailOut.model_validate(lists.group_view(group))

    @router.delete(
        "/pools/{pool_key}/groups/{group_id}",
        response_model=DoneOut,
        summary="Delete a group no binding uses (409 GROUP_IN_USE otherwise)",
    )
    async def delete_group(
        pool_key: str, group_id: str, caller: Principal = authenticated
    ) -> DoneOut:
        await lists.delete_group(pool_key, group_id, tenant=caller.tenant_id)
        return DoneOut()

    @router.post(
        "/pools/{pool_key}/groups/{group_id}/numbers",
        response_model=GroupDetailOut,
        summary="Add, delete or overwrite a group's numbers; answers the group after it",
    )
    async def operate_group(
        pool_key: str, group_id: str, body: GroupNumbersIn, caller: Principal = authenticated
    ) -> GroupDetailOut:
        group = await lists.operate_group(
            pool_key, group_id, body.operation, body.numbers, tenant=caller.tenant_id
        )
        return GroupDetailOut.model_validate(lists.group_view(group))

    # --------------------------------------------------------------------- pool blacklist

    @router.get(
        "/pools/{pool_key}/blacklist",
        response_model=BlacklistOut,
        summary="List the pool-wide blacklist (AXN and AXN_EXT pools)",
    )
    async def list_blacklist(pool_key: str, caller: Principal = authenticated) -> BlacklistOut:
        entries = await lists.list_pool_blacklist(pool_key, tenant=caller.tenant_id)
        return BlacklistOut(
            numbers=[BlacklistEntryOut.model_validate(lists.blacklist_view(e)) for e in entries]
        )

    @router.post(
        "/pools/{pool_key}/blacklist",
        response_model=BlacklistEntryOut,
        summary="Blacklist a caller on every X of the pool (idempotent)",
    )
    async def add_blacklist(
        pool_key: str, body: BlacklistIn, caller: Principal = authenticated
    ) -> BlacklistEntryOut:
        entry = await lists.add_pool_blacklist(pool_key, body.number, tenant=caller.tenant_id)
        return BlacklistEntryOut.model_validate(lists.blacklist_view(entry))

    @router.delete(
        "/pools/{pool_key}/blacklist/{number}",
        response_model=DoneOut,
        summary="Lift a pool blacklist entry (404 BLACKLIST_NOT_EXIST when absent)",
    )
    async def remove_blacklist(
        pool_key: str, number: str, caller: Principal = authenticated
    ) -> DoneOut:
        await lists.remove_pool_blacklist(pool_key, number, tenant=caller.tenant_id)
        return DoneOut()

    # --------------------------------------------------------------------- pair blocks

    @router.get(
        "/pools/{pool_key}/blacklist-pairs",
        response_model=PairsOut,
        summary="List the pool's point-to-point blocks",
    )
    async def list_pairs(pool_key: str, caller: Principal = authenticated) -> PairsOut:
        pairs = await lists.list_pair_blocks(pool_key, tenant=caller.tenant_id)
        return PairsOut(pairs=[PairOut.model_validate(lists.pair_view(p)) for p in pairs])

    @router.post(
        "/pools/{pool_key}/blacklist-pairs",
        response_model=PairOut,
        summary="Block calls between two numbers (merged into the pair's entry; idempotent)",
    )
    async def add_pair(pool_key: str, body: PairIn, caller: Principal = authenticated) -> PairOut:
        pair = await lists.add_pair_block(
            pool_key, body.first, body.second, body.direction, tenant=caller.tenant_id
        )
        return PairOut.model_validate(lists.pair_view(pair))

    @router.delete(
        "/pools/{pool_key}/blacklist-pairs",
        response_model=PairRemovedOut,
        summary="Lift direction(s) of a point-to-point block (404 BLACKLIST_NOT_EXIST if none)",
    )
    async def remove_pair(
        pool_key: str,
        first: Annotated[str, Query(max_length=64)],
        second: Annotated[str, Query(max_length=64)],
        direction: Annotated[BlockDirection, Query()] = BlockDirection.BOTH,
        caller: Principal = authenticated,
    ) -> PairRemovedOut:
        left = await lists.remove_pair_block(
            pool_key, first, second, direction, tenant=caller.tenant_id
        )
        remaining = None if left is None else PairOut.model_validate(lists.pair_view(left))
        return PairRemovedOut(remaining=remaining)

    return router
