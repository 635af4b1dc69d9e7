"""REST routes (``/v1/...``) of statistics and export (SPEC §7); mounted by
:func:`api.app.create_app` with the ``/v1`` prefix.

- ``GET /v1/stats/full?month=2026-12[&tenant_id=T][&details=true]``: full statistics of a month,
  rows of (tenant, number type, pool, billing item, count, unit, amount) from the ledger, with
  the ledger lines behind each row when ``details`` is true.
- ``GET /v1/stats/classified?from=2026-12-01&to=2026-12-31[&type=AXB][&pool_key=P][&tenant_id=T]``:
  per pool, billed numbers, calls, answered calls, connection rate, total and average talk time,
  fees; and their total.
- ``GET /v1/stats/packages[?tenant_id=T][&month=2026-12]``: prepaid minute packages (name, price,
  validity, state, minutes, used, remaining, minutes paid for in the month) and the quota still
  usable; ``month`` defaults to the current one.
- ``GET /v1/pools/{pool_key}/export?month=2026-12``: the pool's month of call records as the CSV
  file ``<pool key><YYYYMM>.csv`` (UTF-8 with BOM; :mod:`billing.export`).
- ``GET /v1/calls/{call_id}/files`` (operator): the call's record, its recording's path on the
  server and the name of the daily CDR file holding it — ``maskline calls find``.

Scope: the operator sees everything (without ``tenant_id``: every tenant); a tenant sees its own
(no ``tenant_id``, or its own). Another tenant's id answers 404 ``TENANT_NOT_EXIST`` and another
tenant's pool 404 ``POOL_NOT_EXIST``, exactly as ids that do not exist. Bad months, days or
ranges are 400 ``PARAMETER_ILLEGAL``. Money is a decimal string (yuan); times are local
``YYYY-MM-DD HH:MM:SS`` in ``[time] zone``; rules in :mod:`billing.statistics`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import AuthError, PrincipalDependency
from api.control import ControlPlane
from api.errors import ErrorCode, InvalidInput, NotFound
from api.principal import Principal
from billing.export import pool_month_csv
from billing.rating import PackageState
from billing.statistics import (
    ClassifiedRow,
    FullRow,
    LedgerLine,
    Month,
    PackageRecord,
    StatisticsInputError,
    classified_statistics,
    full_statistics,
    money_text,
    package_statistics,
    parse_day_range,
    parse_month,
)
from routing.model import BindingType
from store.cdr import CdrWriter
from store.recordings import recording_of

__all__ = ["build_router"]

_CSV: Final = "text/csv; charset=utf-8"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LedgerLineOut(_Model):
    """One ledger line behind a full-statistics row."""

    number: str | None = Field(description="the X number (rent), or the call's X")
    ref: str | None = Field(description="what was rated: a call record id, rent:<number>:...")
    quantity: int
    unit_price: str | None
    amount: str
    created: str = Field(description="when it was written, local time")


class FullRowOut(_Model):
    """Σ quantity (``count``) and Σ amount of the month's lines of one pool and item."""

    tenant_id: str
    number_type: BindingType | None = Field(description="the pool's type; null: no pool")
    pool_key: str | None
    item: str = Field(
        description="rent, call, call_package, recording, sms_intercept, sms_smart, package, "
        "discount"
    )
    count: int
    unit: str | None = Field(examples=["minute"])
    amount: str = Field(examples=["0.33"])
    lines: int = Field(description="ledger lines summed")
    details: list[LedgerLineOut] | None = Field(description="the lines (details=true)")


class FullStatsOut(_Model):
    """Full statistics of a month."""

    month: str = Field(examples=["2026-12"])
    tenant_id: str | None = Field(description="null: every tenant (operator)")
    rows: list[FullRowOut]
    total: str = Field(description="Σ amount: charges less discounts")


class ClassifiedRowOut(_Model):
    """One pool's figures (the total has no pool)."""

    number_type: BindingType | None
    pool_key: str | None
    tenant_id: str | None
    billed_numbers: int = Field(description="numbers with rent in a month the range touches")
    calls: int = Field(description="voice calls (call types 0, 1, 4) that ended in the range")
    answered: int
    intercepted: int
    connection_rate_pct: float = Field(description="answered / calls, per cent")
    total_talk_s: float = Field(description="answered seconds")
    average_talk_s: float = Field(description="per answered call")
    call_fees: str = Field(description="call time and recording of those calls")
    monthly_fees: str = Field(description="rent, discounts ... of the months touched")
    fees: str


class ClassifiedStatsOut(_Model):
    """Classified statistics of a day range."""

    from_: str = Field(alias="from", examples=["2026-12-01"])
    to: str = Field(examples=["2026-12-31"])
    rows: list[ClassifiedRowOut]
    total: ClassifiedRowOut


class PackageRecordOut(_Model):
    """A prepaid call-minute package: purchase, quota, use."""

    package_id: str
    tenant_id: str
    name: str
    price: str
    minutes: int
    used_minutes: int
    remaining_minutes: int
    valid_from: str = Field(description="first valid local day")
    valid_to: str = Field(description="last valid local day, included")
    state: PackageState
    purchased: str
    month_minutes: int = Field(description="minutes it paid for in the month")


class PackageStatsOut(_Model):
    """Package records and the remaining quota."""

    month: str
    tenant_id: str | None
    remaining_minutes: int = Field(description="remaining minutes of active and pending packages")
    month_minutes: int = Field(description="minutes the packages paid for in the month")
    packages: list[PackageRecordOut]


class RecordingFileOut(_Model):
    """Where a call's recording is on the server."""

    path: str = Field(description="absolute path of the WAV on the server")
    kept: bool = Field(description="false: removed by retention")
    exists: bool = Field(description="the file is there now")
    duration_s: float
    size_bytes: int


class CallFilesOut(_Model):
    """A call's record and its files on the server."""

    call: dict[str, Any] = Field(description="the end-of-call record (SPEC §6 fields)")
    duration_s: float = Field(description="answered seconds")
    recording: RecordingFileOut | None
    cdr_file: str = Field(
        description="the daily CDR file holding the record, in [cdr] dir",
        examples=["cdr-20261231.csv"],
    )


def _input_error(error: StatisticsInputError) -> InvalidInput:
    return InvalidInput(ErrorCode.PARAMETER_ILLEGAL, str(error))


def _month(text: str) -> Month:
    try:
        return parse_month(text)
    except StatisticsInputError as error:
        raise _input_error(error) from None


async def _tenant_scope(control: ControlPlane, who: Principal, tenant_id: str | None) -> str | None:
    """The tenant whose data is asked for (None: every tenant, operator only)."""
    if tenant_id is None:
        return who.tenant_id
    if who.tenant_id is not None and tenant_id != who.tenant_id:
        raise NotFound(ErrorCode.TENANT_NOT_EXIST, f"no tenant {tenant_id!r}")
    await control.tenants.get_tenant(tenant_id)  # 404 for a tenant that does not exist
    return tenant_id


def _line_out(control: ControlPlane, line: LedgerLine) -> LedgerLineOut:
    return LedgerLineOut(
        number=line.number,
        ref=line.ref,
        quantity=line.quantity,
        unit_price=None if line.unit_price is None else money_text(line.unit_price),
        amount=money_text(line.amount),
        created=control.local_time(line.created_at),
    )


def _full_row_out(control: ControlPlane, row: FullRow, details: bool) -> FullRowOut:
    return FullRowOut(
        tenant_id=row.tenant_id,
        number_type=row.number_type,
        pool_key=row.pool_key,
        item=row.item,
        count=row.count,
        unit=row.unit,
        amount=money_text(row.amount),
        lines=row.lines,
        details=[_line_out(control, line) for line in row.details] if details else None,
    )


def _classified_out(row: ClassifiedRow) -> ClassifiedRowOut:
    return ClassifiedRowOut(
        number_type=row.number_type,
        pool_key=row.pool_key,
        tenant_id=row.tenant_id,
        billed_numbers=row.billed_numbers,
        calls=row.calls,
        answered=row.answered,
        intercepted=row.intercepted,
        connection_rate_pct=row.connection_rate_pct,
        total_talk_s=row.total_talk_s,
        average_talk_s=row.average_talk_s,
        call_fees=money_text(row.call_fees),
        monthly_fees=money_text(row.monthly_fees),
        fees=money_text(row.fees),
    )


def _package_out(control: ControlPlane, package: PackageRecord) -> PackageRecordOut:
    def day(epoch_s: float) -> str:
        return control.local_time(epoch_s)[:10]

    return PackageRecordOut(
        package_id=package.package_id,
        tenant_id=package.tenant_id,
        name=package.name,
        price=money_text(package.price),
        minutes=package.minutes,
        used_minutes=package.used_minutes,
        remaining_minutes=package.remaining_minutes,
        valid_from=day(package.valid_from),
        # valid_until is the local midnight after the last valid day.
        valid_to=day(package.valid_until - 1),
        state=package.state,
        purchased=control.local_time(package.purchased_at),
        month_minutes=package.month_minutes,
    )


def _recording_file(path: str) -> tuple[str, bool]:
    """The absolute path (relative ones are the server's working directory's) and whether the
    file exists; run in a thread (it touches the disk)."""
    absolute = os.path.abspath(path)
    return absolute, os.path.isfile(absolute)


def build_router(control: ControlPlane, principal: PrincipalDependency) -> APIRouter:
    """The area's routes; each takes ``Depends(principal)`` and scopes by its tenant."""
    router = APIRouter(tags=["statistics"])
    caller = Depends(principal)

    @router.get(
        "/stats/full",
        response_model=FullStatsOut,
        summary="Full statistics of a month: per number type, pool and billing item",
    )
    async def stats_full(
        month: Annotated[str, Query(description="YYYY-MM", examples=["2026-12"])],
        who: Principal = caller,
        tenant_id: Annotated[str | None, Query(description="operator: one tenant")] = None,
        details: Annotated[bool, Query(description="the ledger lines behind each row")] = False,
    ) -> FullStatsOut:
        wanted = _month(month)
        scope = await _tenant_scope(control, who, tenant_id)
        stats = await full_statistics(control.db, wanted, tenant_id=scope, details=details)
        return FullStatsOut(
            month=wanted.label,
            tenant_id=scope,
            rows=[_full_row_out(control, row, details) for row in stats.rows],
            total=money_text(stats.total),
        )

    @router.get(
        "/stats/classified",
        response_model=ClassifiedStatsOut,
        response_model_by_alias=True,
        summary="Classified statistics of a day range: per pool of a type, or one pool",
    )
    async def stats_classified(
        *,
        first: Annotated[str, Query(alias="from", description="first local day YYYY-MM-DD")],
        last: Annotated[str, Query(alias="to", description="last local day, included")],
        who: Principal = caller,
        type: Annotated[BindingType | None, Query(description="pools of this type")] = None,
        pool_key: Annotated[str | None, Query(description="this pool only")] = None,
        tenant_id: Annotated[str | None, Query(description="operator: one tenant")] = None,
    ) -> ClassifiedStatsOut:
        try:
            days = parse_day_range(first, last)
        except StatisticsInputError as error:
            raise _input_error(error) from None
        scope = await _tenant_scope(control, who, tenant_id)
        pool = None
        if pool_key is not None:
            pool = await control.get_pool(pool_key, tenant=scope)
            if type is not None and pool.type is not type:
                raise InvalidInput(
                    ErrorCode.POOL_TYPE_MISMATCH,
                    f"pool {pool.pool_key} is {pool.type.value}, not {type.value}",
                )
        stats = await classified_statistics(
            control.db, days, control.zone, tenant_id=scope, number_type=type, pool=pool
        )
        return ClassifiedStatsOut.model_validate(
            {
                "from": days.first.isoformat(),
                "to": days.last.isoformat(),
                "rows": [_classified_out(row) for row in stats.rows],
                "total": _classified_out(stats.total),
            }
        )

    @router.get(
        "/stats/packages",
        response_model=PackageStatsOut,
        summary="Prepaid minute packages: records, use in a month, remaining quota",
    )
    async def stats_packages(
        who: Principal = caller,
        tenant_id: Annotated[str | None, Query(description="operator: one tenant")] = None,
        month: Annotated[
            str | None, Query(description="YYYY-MM; default: the current month")
        ] = None,
    ) -> PackageStatsOut:
        now = control.clock()
        wanted = _month(month) if month is not None else _month(control.local_time(now)[:7])
        scope = await _tenant_scope(control, who, tenant_id)
        stats = await package_statistics(control.db, wanted, now=now, tenant_id=scope)
        return PackageStatsOut(
            month=wanted.label,
            tenant_id=scope,
            remaining_minutes=stats.remaining_minutes,
            month_minutes=stats.month_minutes,
            packages=[_package_out(control, package) for package in stats.packages],
        )

    @router.get(
        "/pools/{pool_key}/export",
        response_class=Response,
        responses={
            200: {
                "content": {"text/csv": {"schema": {"type": "string"}}},
                "description": "<pool key><YYYYMM>.csv: UTF-8 with BOM, one row per call record",
            }
        },
        summary="The pool's call records of a month as a CSV file",
    )
    async def export_pool_month(
        pool_key: str,
        month: Annotated[str, Query(description="YYYY-MM", examples=["2026-12"])],
        who: Principal = caller,
    ) -> Response:
        wanted = _month(month)
        pool = await control.get_pool(pool_key, tenant=who.tenant_id)
        export = await pool_month_csv(control.db, pool, wanted, control.zone)
        return Response(
            content=export.data,
            media_type=_CSV,
            headers={
                "content-disposition": f'attachment; filename="{export.name}"',
                "x-maskline-calls": str(export.calls),
                "cache-control": "private, no-store",
            },
        )

    @router.get(
        "/calls/{call_id}/files",
        response_model=CallFilesOut,
        summary="Operator: a call's record, its recording's path on the server, its CDR file",
    )
    async def call_files(call_id: str, who: Principal = caller) -> CallFilesOut:
        if not who.is_operator:
            # Server paths are the operator's business; a tenant downloads through
            # GET /v1/calls/{call_id}/recording.
            raise AuthError(403, ErrorCode.FORBIDDEN, "this route is reserved to the operator")
        record = await control.get_call_record(call_id)
        found = await recording_of(control.db, record.call_id)
        recording = None
        if found is not None:
            path, exists = await asyncio.to_thread(_recording_file, found.path)
            recording = RecordingFileOut(
                path=path,
                kept=found.present,
                exists=exists,
                duration_s=found.duration_s,
                size_bytes=found.size_bytes,
            )
        # The CDR writer's own naming rule (local date of the release), without its directory.
        cdr_file = CdrWriter(Path(), control.zone).file_for(record.release_time).name
        return CallFilesOut(
            call=record.to_report(control.zone),
            duration_s=record.duration_s,
            recording=recording,
            cdr_file=cdr_file,
        )

    return router
