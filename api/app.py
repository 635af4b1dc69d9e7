"""The operator HTTP API (JSON under ``/v1/``, OpenAPI at ``/openapi.json``).

Every ``/v1/`` endpoint needs ``Authorization: Bearer <[api] operator_token>``: a missing or wrong
token is 401 ``{"code": "UNAUTHORIZED"}``; with no token configured every operator endpoint is 403
``{"code": "FORBIDDEN"}`` (the API is then closed rather than open).

Errors are mapped here, in one place, to ``{"code": ..., "message": ...}``: control-plane errors
with their own status (400 bad input, 404 unknown pool/binding/group, 409 conflict or no stock),
request validation errors to 400 ``PARAMETER_ILLEGAL``, unknown routes to 404 ``NOT_FOUND``, and
anything unexpected to 500 ``INTERNAL_ERROR`` (logged, with the traceback masked by the logger).

Numbers are returned in E.164 (``+8613800138000``); times as local ``YYYY-MM-DD HH:MM:SS`` in
the configured ``[time] zone``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final, Protocol

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import (
    routes_billing,
    routes_inventory,
    routes_lists,
    routes_recordings,
    routes_reports,
    routes_ringback,
    routes_sms,
    routes_stats,
    routes_tenants,
)
from api.auth import AuthError, principal_dependency
from api.control import ControlPlane, ImportRow, parse_number_csv
from api.errors import ControlError, ErrorCode, InvalidInput, NotFound
from api.principal import Principal
from api.rpc import build_rpc_endpoint
from engine.logging import get_logger
from routing.model import Binding, BindingType, Restriction
from store import AllocationMode, Pool, SmsMode
from store.pools import PoolSettings

__all__ = ["create_app"]

_log = get_logger("api.app")

_CSV_TYPES: Final = ("text/csv", "text/plain", "application/csv")
MAX_IMPORT_BYTES: Final = 32 * 1024 * 1024


# ------------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Model):
    """Every error response."""

    code: str = Field(examples=["BIND_CONFLICT"])
    message: str


class NumberRowIn(_Model):
    """One inventory number."""

    number: str = Field(examples=["17000000001"])
    city: str = Field(examples=["北京"])
    province: str = Field(default="", examples=["北京"])
    carrier: str = Field(default="", examples=["CMCC"])
    spec: int = Field(description="1 virtual 170/171, 2 carrier number, 3 95 number")


class ImportIn(_Model):
    """A JSON import (the same endpoint also takes CSV text with a header row)."""

    rows: list[NumberRowIn]


class ImportOut(_Model):
    """How many numbers were new (numbers already in the inventory are skipped)."""

    imported: int


class PoolIn(_Model):
    """A new pool; a tenant creates pools for itself (``tenant_id`` is the operator's choice)."""

    type: BindingType
    name: str = Field(max_length=128)
    tenant_id: str | None = None
    allocation_mode: AllocationMode | None = None


class PoolConfigIn(_Model):
    """Pool settings to change (SPEC §3); absent fields stay as they are."""

    name: str | None = Field(default=None, max_length=128)
    allocation_mode: AllocationMode | None = None
    sms_mode: SmsMode | None = None
    recording: bool | None = Field(default=None, description="default of a binding's record flag")
    ringback: dict[str, str] | None = Field(
        default=None, description="ringback code (AXBRing_A ...) → tone id; replaces the map"
    )
    warn_free_numbers: int | None = Field(default=None, ge=0)
    warn_utilisation_pct: float | None = Field(default=None, gt=0, le=100)
    clear_warnings: bool = False


class PoolKeyOut(_Model):
    """The key of a new pool."""

    pool_key: str


class PoolOut(_Model):
    """A pool with its number count and binding utilisation."""

    pool_key: str
    type: BindingType
    name: str
    tenant_id: str | None
    allocation_mode: str
    sms_mode: str
    recording: bool
    ringback: dict[str, str]
    warn_free_numbers: int | None
    warn_utilisation_pct: float | None
    numbers: int = Field(description="X numbers available to bindings (locked ones excluded)")
    bound_numbers: int = Field(description="numbers carrying at least one binding")
    utilisation_pct: float
    created: str


class PoolsOut(_Model):
    """Pools, oldest first."""

    pools: list[PoolOut]


class AddNumbersIn(_Model):
    """Random free numbers put into the pool by the operator (no rent is charged)."""

    count: int = Field(ge=1, le=1000)
    city: str | None = None
    tenant_id: str | None = Field(default=None, description="when given, the pool must be its")


class NumbersOut(_Model):
    """Numbers (E.164)."""

    numbers: list[str]


class BindIn(_Model):
    """A bind request; which fields apply depends on ``type`` (SPEC §2)."""

    type: BindingType
    a: str = Field(description="A (AXB/AXN/95AXN/AXG/AXN_EXT), any common format")
    b: str | None = Field(default=None, description="AXB: B (required); others: default B")
    x: str | None = Field(default=None, description="the X to use; omitted: allocated")
    expires: str = Field(
        description="local time YYYY-MM-DD HH:MM:SS in the configured zone, > 60 s ahead",
        examples=["2030-01-01 12:00:00"],
    )
    record: bool | None = Field(default=None, description="omitted: the pool's default")
    group_id: str | None = Field(default=None, description="AXG: the number group")
    extension: str | None = Field(default=None, description="AXN_EXT: 1-3 digits or allocated")
    restriction: Restriction = Restriction.NONE
    ring_timeout_s: int | None = Field(default=None, ge=5, le=180)
    out_id: str | None = Field(default=None, max_length=128)
    expect_city: str | None = None
    ringback: dict[str, str] | None = Field(
        default=None, description="binding-level ringback codes (AXBRing_A ...) → tone id"
    )


class BindingUpdateIn(_Model):
    """Fields of a binding to change; absent fields stay as they are."""

    a: str | None = None
    b: str | None = Field(default=None, description="empty string clears a default B")
    expires: str | None = Field(default=None, examples=["2030-01-01 12:00:00"])
    group_id: str | None = None
    restriction: Restriction | None = Field(default=None, description="NONE clears")
    out_id: str | None = Field(default=None, max_length=128)
    record: bool | None = None
    ring_timeout_s: int | None = Field(default=None, ge=5, le=180)
    ringback: dict[str, str] | None = None


class BindingOut(_Model):
    """A binding."""

    sub_id: str
    pool_key: str
    type: BindingType
    secret_no: str
    a: str
    b: str | None
    group_id: str | None
    extension: str | None
    expires: str
    record: bool
    restriction: Restriction
    ring_timeout_s: int
    out_id: str | None
    ringback: dict[str, str]
    created: str


class BindingsOut(_Model):
    """Bindings, oldest first."""

    bindings: list[BindingOut]


class BindOut(_Model):
    """The result of a bind: the id to unbind with and the X to hand out."""

    sub_id: str
    secret_no: str
    extension: str | None = None
    binding: BindingOut


class OkOut(_Model):
    """Success without a payload."""

    ok: bool = True


class GroupIn(_Model):
    """A new AXG number group."""

    name: str = Field(max_length=128)
    numbers: list[str] = Field(default_factory=list, max_length=200)
    remark: str | None = Field(default=None, max_length=256)


class GroupOut(_Model):
    """The id of a new group."""

    group_id: str


class CallsOut(_Model):
    """Latest call records (SPEC §6 end-of-call fields), newest first."""

    calls: list[dict[str, Any]]


async def _who(request: Request) -> Principal:
    """The caller, authenticated once per request by the app's principal dependency.

    Module level (not a closure in :func:`create_app`) so that FastAPI can resolve the
    annotation; the app keeps its dependency in ``app.state.principal``.
    """
    known: Principal | None = getattr(request.state, "principal", None)
    if known is None:
        known = await request.app.state.principal(request)
        request.state.principal = known
    return known


Who = Annotated[Principal, Depends(_who)]

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409)
}


# ------------------------------------------------------------------------------- app


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


class MetricsExporter(Protocol):
    """What serves ``GET /metrics`` (``engine.metrics.Metrics``)."""

    async def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        ...


def create_app(
    control: ControlPlane,
    *,
    operator_token: str | None,
    metrics: MetricsExporter | None = None,
) -> FastAPI:
    """The FastAPI application over ``control``.

    ``operator_token`` None closes the operator role (tenants' access keys still work).
    ``metrics``: served as ``GET /metrics`` (Prometheus text; the operator's bearer token, like
    ``/v1``); None: no such route.
    """
    app = FastAPI(
        title="maskline operator API",
        version="1",
        description="Number pools, X numbers and bindings of the maskline engine.",
    )
    principal = principal_dependency(operator_token, control.tenants.authenticate)
    app.state.principal = principal
    router = APIRouter(prefix="/v1", dependencies=[Depends(_who)], responses=_ERRORS)

    @app.exception_handler(ControlError)
    async def _control_error(_request: Request, error: ControlError) -> JSONResponse:
        return _error(error.status, error.code, error.message)

    @app.exception_handler(AuthError)
    async def _auth_error(_request: Request, error: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return _error(error.status, error.code, error.message, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(400, ErrorCode.PARAMETER_ILLEGAL, _validation_message(list(error.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: ErrorCode.NOT_FOUND, 405: "METHOD_NOT_ALLOWED"}.get(
            error.status_code, f"HTTP_{error.status_code}"
        )
        return _error(error.status_code, code, str(error.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
        _log.error("api_internal_error", error=repr(error), exc_info=error)
        return _error(500, ErrorCode.INTERNAL_ERROR, "internal error; see the server log")

    def operator_only(who: Principal) -> None:
        if not who.is_operator:
            raise AuthError(403, ErrorCode.FORBIDDEN, "this operation is for the operator only")

    def pool_out(pool: Pool) -> PoolOut:
        numbers, bound, pct = control.pool_usage(pool.pool_key)
        return PoolOut(
            pool_key=pool.pool_key,
            type=pool.type,
            name=pool.name,
            tenant_id=pool.tenant_id,
            allocation_mode=pool.allocation_mode.value,
            sms_mode=pool.sms_mode.value,
            recording=pool.recording,
            ringback=pool.ringback,
            warn_free_numbers=pool.warn_free_numbers,
            warn_utilisation_pct=pool.warn_utilisation_pct,
            numbers=numbers,
            bound_numbers=bound,
            utilisation_pct=pct,
            created=control.local_time(pool.created_at),
        )

    def binding_out(binding: Binding) -> BindingOut:
        return BindingOut.model_validate(control.binding_view(binding))

    # --------------------------------------------------------------------- inventory

    @router.post(
        "/numbers/import",
        response_model=ImportOut,
        summary="Import X numbers (operator; CSV with header number,city,province,carrier,spec, "
        "or JSON)",
        openapi_extra={
            "requestBody": {
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/json": {"schema": ImportIn.model_json_schema()},
                },
                "required": True,
            }
        },
    )
    async def import_numbers(request: Request, who: Who) -> ImportOut:
        operator_only(who)
        body = await request.body()
        if len(body) > MAX_IMPORT_BYTES:
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "import body too large (32 MiB max)")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(ErrorCode.CSV_ILLEGAL, "the body is not UTF-8") from None
        if content_type in _CSV_TYPES:
            rows = parse_number_csv(text)
        else:
            try:
                parsed = ImportIn.model_validate(json.loads(text))
            except (ValueError, ValidationError) as error:
                message = (
                    _validation_message(list(error.errors()))
                    if isinstance(error, ValidationError)
                    else "the body is neither CSV (Content-Type: text/csv) nor JSON"
                )
                raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, message) from None
            rows = [ImportRow(r.number, r.city, r.province, r.carrier, r.spec) for r in parsed.rows]
        return ImportOut(imported=await control.import_numbers(rows))

    # --------------------------------------------------------------------- pools

    @router.post("/pools", response_model=PoolKeyOut, status_code=201, summary="Create a pool")
    async def create_pool(body: PoolIn, who: Who) -> PoolKeyOut:
        tenant_id = body.tenant_id
        if not who.is_operator:
            if tenant_id not in (None, who.tenant_id):
                raise NotFound(ErrorCode.TENANT_NOT_EXIST, f"no tenant {tenant_id!r}")
            tenant_id = who.tenant_id
        key = await control.create_pool(body.type, body.name, tenant_id=tenant_id)
        if body.allocation_mode is not None:
            await control.configure_pool(key, PoolSettings(allocation_mode=body.allocation_mode))
        return PoolKeyOut(pool_key=key)

    @router.get("/pools", response_model=PoolsOut, summary="List the pools the caller sees")
    async def list_pools(who: Who) -> PoolsOut:
        pools = await control.list_pools(tenant=who.tenant_id)
        return PoolsOut(pools=[pool_out(pool) for pool in pools])

    @router.get("/pools/{pool_key}", response_model=PoolOut, summary="Show a pool")
    async def get_pool(pool_key: str, who: Who) -> PoolOut:
        return pool_out(await control.get_pool(pool_key, tenant=who.tenant_id))

    @router.patch("/pools/{pool_key}", response_model=PoolOut, summary="Configure a pool")
    async def configure_pool(pool_key: str, body: PoolConfigIn, who: Who) -> PoolOut:
        settings = PoolSettings(**body.model_dump())
        return pool_out(await control.configure_pool(pool_key, settings, tenant=who.tenant_id))

    @router.post(
        "/pools/{pool_key}/numbers",
        response_model=NumbersOut,
        summary="Operator: put random free numbers (of a city) into the pool, without charge",
    )
    async def add_numbers(pool_key: str, body: AddNumbersIn, who: Who) -> NumbersOut:
        operator_only(who)
        if body.tenant_id is not None:  # the pool must be that tenant's
            await control.get_pool(pool_key, tenant=body.tenant_id)
        numbers = await control.add_numbers(pool_key, body.count, city=body.city)
        return NumbersOut(numbers=list(numbers))

    # --------------------------------------------------------------------- bindings

    @router.post(
        "/pools/{pool_key}/bindings",
        response_model=BindOut,
        status_code=201,
        summary="Bind real numbers to an X of the pool",
    )
    async def bind(pool_key: str, body: BindIn, who: Who) -> BindOut:
        binding = await control.bind(
            body.type,
            pool_key,
            body.a,
            body.b,
            body.x,
            expires=body.expires,
            record=body.record,
            group_id=body.group_id,
            extension=body.extension,
            restriction=body.restriction,
            ring_timeout_s=body.ring_timeout_s,
            out_id=body.out_id,
            expect_city=body.expect_city,
            ringback=body.ringback,
            tenant=who.tenant_id,
        )
        return BindOut(
            sub_id=binding.sub_id,
            secret_no=binding.x,
            extension=binding.extension,
            binding=binding_out(binding),
        )

    @router.get(
        "/pools/{pool_key}/bindings",
        response_model=BindingsOut,
        summary="List the pool's bindings on an X (x=) or of a real number (number=)",
    )
    async def list_bindings(
        pool_key: str,
        who: Who,
        x: Annotated[str | None, Query(description="an X of the pool")] = None,
        number: Annotated[str | None, Query(description="a real number (A or B)")] = None,
    ) -> BindingsOut:
        if (x is None) == (number is None):
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "give exactly one of x and number")
        if x is not None:
            found = await control.bindings_by_x(pool_key, x, tenant=who.tenant_id)
        else:
            assert number is not None
            found = await control.bindings_by_number(
                number, pool_key=pool_key, tenant=who.tenant_id
            )
        return BindingsOut(bindings=[binding_out(b) for b in found])

    @router.get(
        "/bindings",
        response_model=BindingsOut,
        summary="List the bindings of a real number (A or B) in every pool the caller sees",
    )
    async def bindings_of_number(
        who: Who, number: Annotated[str, Query(description="a real number (A or B)")]
    ) -> BindingsOut:
        found = await control.bindings_by_number(number, tenant=who.tenant_id)
        return BindingsOut(bindings=[binding_out(b) for b in found])

    @router.get(
        "/pools/{pool_key}/bindings/{sub_id}", response_model=BindingOut, summary="Show a binding"
    )
    async def get_binding(pool_key: str, sub_id: str, who: Who) -> BindingOut:
        return binding_out(await control.get_binding(pool_key, sub_id, tenant=who.tenant_id))

    @router.patch(
        "/pools/{pool_key}/bindings/{sub_id}", response_model=BindingOut, summary="Update a binding"
    )
    async def update_binding(
        pool_key: str, sub_id: str, body: BindingUpdateIn, who: Who
    ) -> BindingOut:
        binding = await control.update_binding(
            pool_key, sub_id, tenant=who.tenant_id, **body.model_dump()
        )
        return binding_out(binding)

    @router.delete("/pools/{pool_key}/bindings/{sub_id}", response_model=OkOut, summary="Unbind")
    async def unbind(pool_key: str, sub_id: str, who: Who) -> OkOut:
        await control.unbind(pool_key, sub_id, tenant=who.tenant_id)
        return OkOut()

    # --------------------------------------------------------------------- groups

    @router.post(
        "/pools/{pool_key}/groups",
        response_model=GroupOut,
        status_code=201,
        summary="Create an AXG number group",
    )
    async def create_group(pool_key: str, body: GroupIn, who: Who) -> GroupOut:
        group_id = await control.lists.create_group(
            pool_key, body.name, body.numbers, remark=body.remark, tenant=who.tenant_id
        )
        return GroupOut(group_id=group_id)

    # --------------------------------------------------------------------- call records

    @router.get("/calls", response_model=CallsOut, summary="Latest call records, newest first")
    async def recent_calls(
        who: Who,
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    ) -> CallsOut:
        records = await control.recent_calls(limit, tenant=who.tenant_id)
        return CallsOut(calls=[record.to_report(control.zone) for record in records])

    @router.get("/calls/{call_id}", response_model=CallsOut, summary="One call's record")
    async def get_call(call_id: str, who: Who) -> CallsOut:
        record = await control.get_call_record(call_id, tenant=who.tenant_id)
        return CallsOut(calls=[record.to_report(control.zone)])

    app.include_router(router)
    for area in (
        routes_tenants,
        routes_inventory,
        routes_lists,
        routes_ringback,
        routes_billing,
        routes_reports,
        routes_sms,
        routes_stats,
    ):
        app.include_router(area.build_router(control, principal), prefix="/v1", responses=_ERRORS)
    app.include_router(routes_recordings.build_router(control, principal))
    if metrics is not None:
        exporter = metrics

        # Prometheus scrapes with ``authorization: {credentials: <operator_token>}``; call
        # volumes are the operator's business, not a tenant's (docs/operations.md).
        @app.get("/metrics", include_in_schema=False)
        async def metrics_text(who: Who) -> Response:
            operator_only(who)
            body, content_type = await exporter.exposition()
            return Response(content=body, media_type=content_type)

    app.add_route(
        "/", build_rpc_endpoint(control), methods=["GET", "POST"], include_in_schema=False
    )
    return app
