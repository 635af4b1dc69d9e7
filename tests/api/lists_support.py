"""Helpers of the groups and blacklists tests: pools with numbers, bindings, full snapshots."""

from __future__ import annotations

from pathlib import Path

from api_support import START, TABLES, Api, Snapshot, local, snapshot_tables

from api.control import ControlPlane
from api.errors import ControlError
from routing.index import Intercept, Resolution, Route
from routing.model import Binding, BindingType, InterceptCause, PhoneNumber
from routing.numbers import normalize

#: Every table the control plane writes, the lists' own sure to be among them.
LIST_TABLES = tuple(dict.fromkeys((*TABLES, "blacklists", "blacklist_pairs")))

A = "13800138000"
B = "13900139000"
MEMBER = "13700137000"
STRANGER = "13600136000"


def e164(number: str) -> PhoneNumber:
    """The E.164 form of a number as the tests write it."""
    return normalize(number)


def snapshot(db_path: Path) -> Snapshot:
    """Every row of every table the control plane writes (separate connection)."""
    return snapshot_tables(db_path, LIST_TABLES)


def expires(ahead_s: float = 3600) -> str:
    """A local expiry ``ahead_s`` after the tests' start time."""
    return local(START + ahead_s)


async def pool_with_numbers(
    control: ControlPlane, type_: BindingType, *, count: int = 1, tenant_id: str | None = None
) -> str:
    """A pool of ``type_`` holding ``count`` numbers of the inventory (imported by the caller)."""
    key = await control.create_pool(type_, f"{type_.value} pool", tenant_id=tenant_id)
    if count:
        city = "全国" if type_ is BindingType.AXN95 else "北京"
        await control.add_numbers(key, count, city=city)
    return key


async def bind(
    control: ControlPlane,
    type_: BindingType,
    pool_key: str,
    *,
    a: str = A,
    b: str | None = None,
    group_id: str | None = None,
) -> Binding:
    """A binding of ``type_`` on an allocated X, one hour long."""
    return await control.bind(type_, pool_key, a, b, expires=expires(), group_id=group_id)


def resolve(api: Api, binding: Binding, caller: str, *, extension: str | None = None) -> Resolution:
    """How a call from ``caller`` to the binding's X resolves one second after the start."""
    return api.control.index.resolve(binding.x, e164(caller), now=START + 1, extension=extension)


def is_intercepted(resolution: Resolution, cause: InterceptCause) -> bool:
    """True when ``resolution`` intercepts the call with ``cause``."""
    return isinstance(resolution, Intercept) and resolution.cause is cause


def rings(resolution: Resolution, callee: str) -> bool:
    """True when ``resolution`` connects the call to ``callee``."""
    return isinstance(resolution, Route) and resolution.callee == e164(callee)


def code_of(error: BaseException) -> str:
    """The control-plane code of an error (asserts it is one)."""
    assert isinstance(error, ControlError), error
    return error.code
