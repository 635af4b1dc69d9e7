"""REST routes (``/v1/...``) of the inventory area; mounted by :func:`api.app.create_app`.

Operator only (a tenant gets 403 ``FORBIDDEN`` and nothing changes): stock, covered cities,
top-ups, verification policies and decisions.  A tenant may read its own balance (another
tenant's id answers 404 ``TENANT_NOT_EXIST``, as an id that does not exist).  Pool-scoped
routes serve the operator and the pool's tenant; another tenant's pool or number answers 404
exactly as one that does not exist.  Numbers are accepted in any common format and returned in
E.164; times are local ``YYYY-MM-DD HH:MM:SS``; money is a decimal string.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from api.auth import AuthError, PrincipalDependency
from api.control import ControlPlane
from api.errors import ErrorCode
from api.inventory import MigrationJob, NumberDetail, parse_amount
from api.principal import Principal
from routing.model import BindingType

__all__ = ["build_router"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StockRowOut(_Model):
    """Free numbers of one city and spec (95 numbers: city 全国; Hainan: 海口)."""

    city: str
    province: str
    spec: int = Field(description="1 virtual 170/171, 2 carrier number, 3 95 number")
    free: int


class StockOut(_Model):
    """Remaining stock, by spec then city."""

    stock: list[StockRowOut]


class CitiesOut(_Model):
    """Cities with free stock."""

    cities: list[str]


class TopupIn(_Model):
    """A top-up: a decimal string, more than 0, at most 2 decimals."""

    amount: str = Field(examples=["100.00"])


class BalanceOut(_Model):
    """A tenant's balance (Σ top-ups − Σ charges), a decimal string."""

    tenant_id: str
    balance: str


class PolicyIn(_Model):
    """Whether numbers of a type need real-person verification, and the grace period."""

    required: bool
    grace_s: float = Field(default=0.0, description="seconds a new number may bind unverified")


class PolicyOut(_Model):
    """A verification policy."""

    type: BindingType
    required: bool
    grace_s: float


class PoliciesOut(_Model):
    """Every policy set (types without one require nothing)."""

    policies: list[PolicyOut]


class DecisionIn(_Model):
    """The operator's decision on a pending verification."""

    approved: bool


class PurchaseIn(_Model):
    """A purchase of random free numbers of a city (first month's rent charged)."""

    count: int = Field(description="1-1000")
    city: str = Field(examples=["北京"], description="95 numbers: 全国 or Nationwide")
    spec: int | None = Field(default=None, description="1, 2 or 3; default: any fitting spec")
    prefix: str | None = Field(default=None, description="up to 18 digits of the number")


class PurchaseOut(_Model):
    """The numbers bought (E.164)."""

    numbers: list[str]


class NumberOut(_Model):
    """A number of a pool."""

    number: str
    city: str
    province: str
    carrier: str
    vendor: int | None = Field(description="1 China Mobile, 2 China Unicom, 3 China Telecom")
    spec: int
    status: str = Field(description="free, bound or locked")
    secret_status: int = Field(description="0 free, 1 bound, 2 locked")
    pool_key: str
    purchased: str | None
    verification: str = Field(description="unverified, pending, verified or rejected")
    certify_status: int = Field(description="1 verified, else 0")
    verification_deadline: str | None


class NumbersListOut(_Model):
    """The numbers of a pool, sorted."""

    items: list[NumberOut]


class ReleasedOut(_Model):
    """A number given back to the stock."""

    number: str
    ok: bool = True


class UsageOut(_Model):
    """A pool's numbers and binding utilisation."""

    pool_key: str
    numbers: int
    bound: int
    locked: int
    utilisation_pct: float


class MigrationIn(_Model):
    """Either ``city`` + ``count``, or ``numbers`` (a list, or one string, one number a line)."""

    from_pool: str
    to_pool: str
    city: str | None = None
    count: int | None = Field(default=None, description="1-500")
    numbers: list[str] | str | None = Field(default=None, description="at most 500")


class MigrationResultOut(_Model):
    """One number of a migration job."""

    number: str
    ok: bool
    reason: str | None


class MigrationOut(_Model):
    """A migration job with its per-number results."""

    job_id: str
    from_pool: str
    to_pool: str
    city: str | None
    requested: int
    moved: int
    failed: int
    created: str
    results: list[MigrationResultOut]


def _number_out(detail: NumberDetail) -> NumberOut:
    return NumberOut(
        number=detail.number,
        city=detail.city,
        province=detail.province,
        carrier=detail.carrier,
        vendor=detail.vendor,
        spec=int(detail.spec),
        status=detail.status.label,
        secret_status=int(detail.status),
        pool_key=detail.pool_key,
        purchased=detail.purchased,
        verification=detail.verification.value,
        certify_status=detail.certify_status,
        verification_deadline=detail.verification_deadline,
    )


def _migration_out(job: MigrationJob) -> MigrationOut:
    return MigrationOut(
        job_id=job.job_id,
        from_pool=job.from_pool,
        to_pool=job.to_pool,
        city=job.city,
        requested=job.requested,
        moved=job.moved,
        failed=job.failed,
        created=job.created,
        results=[
            MigrationResultOut(number=r.number, ok=r.ok, reason=r.reason) for r in job.results
        ],
    )


def build_router(control: ControlPlane, principal: PrincipalDependency) -> APIRouter:
    """The area's routes; each takes ``Depends(principal)`` and passes its tenant on."""
    router = APIRouter(tags=["inventory"])
    inventory = control.inventory
    caller = Depends(principal)

    async def operator_only(who: Principal = caller) -> Principal:
        # A dependency, so a tenant is refused (403) before its body is even validated.
        if not who.is_operator:
            raise AuthError(403, ErrorCode.FORBIDDEN, "this route is reserved to the operator")
        return who

    operator = Depends(operator_only)

    # --------------------------------------------------------------------- operator

    # Stock is not tenant data: tenants read it too (as the RPC API's QuerySecretNoRemain).
    @router.get("/stock", response_model=StockOut, summary="Remaining free stock")
    async def stock(
        city: Annotated[str | None, Query()] = None,
        spec: Annotated[int | None, Query()] = None,
        prefix: Annotated[str | None, Query()] = None,
        _who: Principal = caller,
    ) -> StockOut:
        rows = await inventory.stock(city=city, spec=spec, prefix=prefix)
        return StockOut(
            stock=[
                StockRowOut(city=r.city, province=r.province, spec=int(r.spec), free=r.free)
                for r in rows
            ]
        )

    @router.get(
        "/stock/cities", response_model=CitiesOut, summary="Cities with free stock (covered cities)"
    )
    async def covered_cities(
        spec: Annotated[int | None, Query()] = None, _who: Principal = caller
    ) -> CitiesOut:
        return CitiesOut(cities=await inventory.covered_cities(spec=spec))

    @router.post(
        "/tenants/{tenant_id}/topup",
        response_model=BalanceOut,
        summary="Credit a tenant's account (operator)",
    )
    async def topup(tenant_id: str, body: TopupIn, _who: Principal = operator) -> BalanceOut:
        balance = await inventory.topup(tenant_id, parse_amount(body.amount))
        return BalanceOut(tenant_id=tenant_id, balance=str(balance))

    @router.get(
        "/tenants/{tenant_id}/balance",
        response_model=BalanceOut,
        summary="A tenant's balance (operator, or the tenant itself)",
    )
    async def balance(tenant_id: str, who: Principal = caller) -> BalanceOut:
        amount = await inventory.balance(tenant_id, tenant=who.tenant_id)
        return BalanceOut(tenant_id=tenant_id, balance=str(amount))

    @router.get(
        "/verification-policy",
        response_model=PoliciesOut,
        summary="Real-person verification policies (operator)",
    )
    async def policies(_who: Principal = operator) -> PoliciesOut:
        return PoliciesOut(
            policies=[
                PolicyOut(type=p.type, required=p.required, grace_s=p.grace_s)
                for p in inventory.verification_policies()
            ]
        )

    @router.put(
        "/verification-policy/{type}",
        response_model=PolicyOut,
        summary="Require real-person verification for a binding type (operator; never 95AXN)",
    )
    async def set_policy(
        type: BindingType, body: PolicyIn, _who: Principal = operator
    ) -> PolicyOut:
        policy = await inventory.set_verification_policy(
            type, required=body.required, grace_s=body.grace_s
        )
        return PolicyOut(type=policy.type, required=policy.required, grace_s=policy.grace_s)

    @router.post(
        "/numbers/{number}/verification",
        response_model=NumberOut,
        summary="Approve or reject a pending verification (operator)",
    )
    async def decide(number: str, body: DecisionIn, _who: Principal = operator) -> NumberOut:
        return _number_out(await inventory.decide_verification(number, approved=body.approved))

    # --------------------------------------------------------------------- pools

    @router.post(
        "/pools/{pool_key}/purchase",
        response_model=PurchaseOut,
        summary="Buy random free numbers of a city into the pool (first month's rent charged)",
    )
    async def purchase(pool_key: str, body: PurchaseIn, who: Principal = caller) -> PurchaseOut:
        numbers = await inventory.buy(
            pool_key,
            count=body.count,
            city=body.city,
            spec=body.spec,
            prefix=body.prefix,
            tenant=who.tenant_id,
        )
        return PurchaseOut(numbers=list(numbers))

    @router.get(
        "/pools/{pool_key}/numbers", response_model=NumbersListOut, summary="A pool's numbers"
    )
    async def list_numbers(pool_key: str, who: Principal = caller) -> NumbersListOut:
        details = await inventory.list_numbers(pool_key, tenant=who.tenant_id)
        return NumbersListOut(items=[_number_out(d) for d in details])

    @router.get(
        "/pools/{pool_key}/numbers/{number}",
        response_model=NumberOut,
        summary="One number of a pool (QuerySecretNoDetail)",
    )
    async def number_detail(pool_key: str, number: str, who: Principal = caller) -> NumberOut:
        return _number_out(await inventory.number_detail(pool_key, number, tenant=who.tenant_id))

    @router.post(
        "/pools/{pool_key}/numbers/{number}/release",
        response_model=ReleasedOut,
        summary="Release an unbound number back to the stock (rent stops next month)",
    )
    async def release(pool_key: str, number: str, who: Principal = caller) -> ReleasedOut:
        released = await inventory.release(pool_key, number, tenant=who.tenant_id)
        return ReleasedOut(number=released)

    @router.post(
        "/pools/{pool_key}/numbers/{number}/lock",
        response_model=NumberOut,
        summary="Lock a number: kept in the pool, never allocated",
    )
    async def lock(pool_key: str, number: str, who: Principal = caller) -> NumberOut:
        return _number_out(await inventory.lock(pool_key, number, tenant=who.tenant_id))

    @router.post(
        "/pools/{pool_key}/numbers/{number}/unlock",
        response_model=NumberOut,
        summary="Unlock a locked number",
    )
    async def unlock(pool_key: str, number: str, who: Principal = caller) -> NumberOut:
        return _number_out(await inventory.unlock(pool_key, number, tenant=who.tenant_id))

    @router.post(
        "/pools/{pool_key}/numbers/{number}/verification-request",
        response_model=NumberOut,
        summary="Submit a number for real-person verification (→ pending)",
    )
    async def request_verification(
        pool_key: str, number: str, who: Principal = caller
    ) -> NumberOut:
        detail = await inventory.submit_verification(pool_key, number, tenant=who.tenant_id)
        return _number_out(detail)

    @router.get(
        "/pools/{pool_key}/usage", response_model=UsageOut, summary="Pool numbers and utilisation"
    )
    async def usage(pool_key: str, who: Principal = caller) -> UsageOut:
        used = await inventory.pool_usage(pool_key, tenant=who.tenant_id)
        return UsageOut(
            pool_key=used.pool_key,
            numbers=used.numbers,
            bound=used.bound,
            locked=used.locked,
            utilisation_pct=used.utilisation_pct,
        )

    # --------------------------------------------------------------------- migration

    @router.post(
        "/migrations",
        response_model=MigrationOut,
        status_code=201,
        summary="Move unbound numbers between two pools of one type and tenant (free)",
    )
    async def migrate(body: MigrationIn, who: Principal = caller) -> MigrationOut:
        numbers = body.numbers.splitlines() if isinstance(body.numbers, str) else body.numbers
        job = await inventory.migrate(
            body.from_pool,
            body.to_pool,
            tenant=who.tenant_id,
            city=body.city,
            count=body.count,
            numbers=numbers,
        )
        return _migration_out(job)

    @router.get(
        "/migrations/{job_id}", response_model=MigrationOut, summary="A migration job's results"
    )
    async def get_migration(job_id: str, who: Principal = caller) -> MigrationOut:
        return _migration_out(await inventory.get_migration(job_id, tenant=who.tenant_id))

    return router
