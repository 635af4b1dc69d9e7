"""The actions of the RPC API (Dyplsapi 2017-05-25), mapped onto the control plane.

Each handler takes a :class:`Call` (the caller's tenant, its parameters as received, the clock)
and returns the operation's response fields of ``shared/api/DYPLSAPI.md`` §6 (the endpoint in
:mod:`api.rpc` adds ``Code``/``Message``/``RequestId``). Every use case runs with
``tenant=<the access key's tenant>``, so a foreign pool, binding, group or number answers exactly
as one that does not exist (``isv.POOLKEY_NOT_EXISTS``, ``isv.SUBS_NOT_EXIST`` …).

Errors:

- a parameter marked required (``!``) in §6 that is absent or blank → gateway error
  ``400 Missing<Name>`` (:class:`api.rpc_signing.RpcSignatureError`, as the reference gateway);
- a parameter that does not parse (int, boolean, JSON, enum value) → business error
  ``isv.INVALID_PARAMETERS`` naming the parameter;
- a :class:`api.errors.ControlError` → business error whose code comes from
  :data:`REFERENCE_CODES` (one table; unknown codes become ``isv.<CODE>``).

Values out: numbers in national digits (``13800138000``), date-times ``yyyy-MM-dd HH:mm:ss`` in
``control.zone``, ints and booleans as JSON numbers and booleans where §6 says ``:i``/``:b``.

Choices made where DYPLSAPI.md is silent are marked "choice:" below.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from api.control import ControlPlane
from api.errors import ControlError, ErrorCode
from api.inventory import InventoryCode
from api.recordings import recordings_of
from api.rpc_signing import RpcSignatureError
from routing.model import Binding, BindingType, BlockDirection, PhoneNumber, Restriction
from routing.numbers import InvalidNumberError, national, normalize
from store import CallType

__all__ = [
    "API_VERSION",
    "FORBIDDEN_ACTION",
    "REFERENCE_CODES",
    "UNSUPPORTED_ACTIONS",
    "BusinessError",
    "Call",
    "Params",
    "RpcActions",
    "business_error_of",
    "missing_parameter",
]

#: The only API version served (DYPLSAPI.md §2).
API_VERSION: Final = "2017-05-25"

INVALID_PARAMETERS: Final = "isv.INVALID_PARAMETERS"
FORBIDDEN_ACTION: Final = "isv.FORBIDDEN_ACTION"
SUBS_NOT_EXIST: Final = "isv.SUBS_NOT_EXIST"
POOLKEY_NOT_EXISTS: Final = "isv.POOLKEY_NOT_EXISTS"
NO_NOT_EXIST: Final = "isv.NO_NOT_EXIST"
# choice: the reference names no code for "this call has no recording"; this one says it plainly.
RECORD_NOT_EXIST: Final = "isv.RECORD_NOT_EXIST"

#: ``ControlError.code`` → the reference service's business error code (DYPLSAPI.md §5).
#: Codes not listed become ``"isv." + code``.
REFERENCE_CODES: Final[Mapping[str, str]] = {
    ErrorCode.MOBILE_NUMBER_ILLEGAL: "isv.MOBILE_NUMBER_ILLEGAL",
    # choice: a number that does not parse is "illegal" whatever its role; isv.NO_NOT_EXIST is
    # kept for a well-formed number that is not one of the pool's (below).
    ErrorCode.NUMBER_ILLEGAL: "isv.MOBILE_NUMBER_ILLEGAL",
    ErrorCode.EXPIRE_DATE_ILLEGAL: "isv.EXPIRE_DATE_ILLEGAL",
    ErrorCode.BIND_CONFLICT: "isv.BIND_CONFLICT",
    ErrorCode.NO_AVAILABLE_NUMBER: "isv.NO_AVAILABLE_NUMBER",
    ErrorCode.POOL_NOT_EXIST: POOLKEY_NOT_EXISTS,
    # DYPLSAPI.md §5 names isv.SUBS_NOT_EXIST; issue 4's text says isv.SUBSID_NOT_EXIST. The wire
    # contract wins (it was established against the reference's SDK and documentation).
    ErrorCode.BINDING_NOT_EXIST: SUBS_NOT_EXIST,
    ErrorCode.PARAMETER_ILLEGAL: INVALID_PARAMETERS,
    ErrorCode.POOL_TYPE_MISMATCH: INVALID_PARAMETERS,
    ErrorCode.CSV_ILLEGAL: INVALID_PARAMETERS,
    ErrorCode.NUMBER_NOT_IN_POOL: NO_NOT_EXIST,
    InventoryCode.NUMBER_NOT_EXIST: NO_NOT_EXIST,
    # A group of another pool answers as a group that does not exist (no existence leak).
    ErrorCode.GROUP_NOT_IN_POOL: "isv.GROUP_NOT_EXIST",
    ErrorCode.GROUP_NOT_EXIST: "isv.GROUP_NOT_EXIST",
    ErrorCode.CALL_NOT_EXIST: "isv.CALL_NOT_EXIST",
    # Operator-only use cases (api.tenants.OperatorOnly).
    ErrorCode.FORBIDDEN: FORBIDDEN_ACTION,
}
# Messages replaced because the control plane's would reveal another pool's resource.
_NOT_FOUND_MESSAGES: Final[Mapping[str, str]] = {
    ErrorCode.GROUP_NOT_IN_POOL: "the group does not exist in this pool",
}

#: Actions of DYPLSAPI.md §6 (and SDK 1.0.0) that maskline knows but does not serve: their
#: products (700 numbers, fixed line, work numbers, courier pick-up, KYC reports, ASR, tracking
#: numbers, vendor file upload) are not features of maskline. They answer the business error
#: ``isv.FORBIDDEN_ACTION`` (HTTP 200) rather than ``404 InvalidApi.NotFound``, so that an
#: application learns the action is recognised but not offered (choice).
UNSUPPORTED_ACTIONS: Final = frozenset(
    {
        "AddAxnTrackNo", "QueryPhoneNoAByTrackNo", "GetTotalPublicUrl", "GetSecretAsrDetail",
        "CreatePhoneNoAReport", "CreateFixedNoAReport", "QuerySecretAPhoneNoToCust",
        "DeleteSecretAPhoneNoToCust",
        "BindXB", "UnBindXB", "BindAXBCall", "UnBindAXB", "ConfigX", "GetXConfig",
        "GetXDefaultConfig", "ListXTelephones", "CreateSmsSign", "QuerySoundRecord",
        "BindAxb700", "BindGxb700", "UpdateSubs700", "UnbindSubs700",
        "BindAxbFixedLine", "BindAxnFixedLine", "BindAxnExtensionFixedLine",
        "UpdateAxbBindFixedLine", "UpdateAxnBindFixedLine", "UpdateAxnExtensionBindFixedLine",
        "DeleteAxbBindFixedLine", "DeleteAxnBindFixedLine", "DeleteAxnExtensionBindFixedLine",
        "QueryAxbBindFixedLine", "QueryAxnBindFixedLine", "QueryAxnExtensionBindFixedLine",
        "CreatePickUpWaybillPreQuery", "CreatePickUpWaybill", "CancelPickUpWaybill",
        "GetDyplsOSSInfoForUploadFile",
        # SDK 1.0.0 only (DYPLSAPI.md §6, "asked for but absent").
        "CreateSubscription", "GetSubscriptionDetail", "UpdateDefaultB", "UpdatePhoneNumber",
        "UpdatePhoneSwitch", "InitFaceVerify", "GetFaceVerify",
    }
)  # fmt: skip

# choice: BindBatchAxg items per call (the reference documents no limit; bounded here so one
# request cannot hold the event loop for long).
MAX_BATCH_ITEMS: Final = 100
MAX_GROUP_NUMBERS: Final = 200
_TRUE: Final = frozenset({"true", "1"})
_FALSE: Final = frozenset({"false", "0"})
_CALL_RESTRICT: Final[Mapping[str, Restriction]] = {
    "CONTROL_AX_DISABLE": Restriction.AX_DISABLE,
    "CONTROL_BX_DISABLE": Restriction.BX_DISABLE,
}
# OperateAxgGroup OperateType → lists.operate_group's operation.
_GROUP_OPERATIONS: Final[Mapping[str, str]] = {
    "addNumbers": "add",
    "deleteNumbers": "delete",
    "overwriteNumbers": "overwrite",
}
# AddSecretBlacklist WayControl → direction of the pair ``BlackNo = first:second``.
# choice: PHONEA_REJECT blocks calls from the first number (A) to the second, PHONEB_REJECT the
# reverse; DUPLEX_REJECT (the default) both ways.
_WAY_CONTROL: Final[Mapping[str, BlockDirection]] = {
    "DUPLEX_REJECT": BlockDirection.BOTH,
    "PHONEA_REJECT": BlockDirection.FIRST_TO_SECOND,
    "PHONEB_REJECT": BlockDirection.SECOND_TO_FIRST,
}


class BusinessError(Exception):
    """A refused operation: HTTP 200 ``{"Code": code, "Message": message, "RequestId"}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def missing_parameter(name: str) -> RpcSignatureError:
    """DYPLSAPI.md §5: ``400 Missing<Name>`` / ``<Name> is mandatory for this action.``."""
    return RpcSignatureError(f"Missing{name}", f"{name} is mandatory for this action.", 400)


def business_error_of(error: ControlError) -> BusinessError:
    """The business error the reference would answer for a control-plane error."""
    code = REFERENCE_CODES.get(error.code, f"isv.{error.code}")
    return BusinessError(code, _NOT_FOUND_MESSAGES.get(error.code, error.message))


def _invalid(name: str, why: str) -> BusinessError:
    return BusinessError(INVALID_PARAMETERS, f"{name} {why}")


class Params:
    """The request's parameters (strings as received) with typed accessors.

    Blank values count as absent (the SDKs never send an unset field, §2). ``missing`` builds the
    error for an absent required parameter: the gateway's ``Missing<Name>`` for a request, a
    business error for an item of a batch.
    """

    def __init__(
        self,
        values: Mapping[str, str],
        *,
        missing: Callable[[str], Exception] = missing_parameter,
    ) -> None:
        self._values = values
        self._missing = missing

    def text(self, name: str) -> str | None:
        """The value, or None when absent or blank."""
        value = self._values.get(name)
        return value if value is not None and value.strip() else None

    def required(self, name: str) -> str:
        """The value; absent or blank raises the ``missing`` error."""
        value = self.text(name)
        if value is None:
            raise self._missing(name)
        return value

    def integer(self, name: str, *, required: bool = False) -> int | None:
        """A decimal integer (``isv.INVALID_PARAMETERS`` otherwise)."""
        value = self.required(name) if required else self.text(name)
        if value is None:
            return None
        text = value.strip()
        digits = text.removeprefix("-")
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
            raise _invalid(name, f"must be an integer, got {value!r}")
        return int(text)

    def boolean(self, name: str) -> bool | None:
        """``true``/``false`` in any case (Python SDKs send ``True``/``False``, §2)."""
        value = self.text(name)
        if value is None:
            return None
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise _invalid(name, f"must be true or false, got {value!r}")

    def json(self, name: str, *, required: bool = False) -> Any:
        """One value holding JSON (§2 structured parameters)."""
        value = self.required(name) if required else self.text(name)
        if value is None:
            return None
        try:
            return json.loads(value)
        except ValueError:
            raise _invalid(name, "must be JSON") from None


@dataclass(frozen=True, slots=True)
class Call:
    """One verified RPC request: who (``tenant``), what (``params``), when (``now``, epoch s)."""

    tenant: str
    params: Params
    now: float


Handler = Callable[[Call], Awaitable[dict[str, Any]]]


def _number(raw: str, name: str) -> PhoneNumber:
    """A number given by the client; one that does not parse is ``isv.MOBILE_NUMBER_ILLEGAL``."""
    try:
        return normalize(raw)
    except InvalidNumberError as error:
        raise BusinessError("isv.MOBILE_NUMBER_ILLEGAL", f"{name}: {error.message}") from None


def _display(number: PhoneNumber | None) -> str | None:
    """National digits of an E.164 number (None stays None)."""
    return None if number is None else national(number)


def _numbers_list(raw: str, name: str) -> list[str]:
    """A comma-separated number list (``Numbers``), at most 200 entries."""
    numbers = [part.strip() for part in raw.split(",") if part.strip()]
    if len(numbers) > MAX_GROUP_NUMBERS:
        raise _invalid(name, f"holds at most {MAX_GROUP_NUMBERS} numbers, got {len(numbers)}")
    return numbers


def _group_id(value: str | int | None) -> int | None:
    """Group ids are numeric strings in maskline; the RPC API shows them as ints (§6 ``:i``)."""
    if value is None:
        return None
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() else None


def _restriction(params: Params) -> Restriction:
    raw = params.text("CallRestrict")
    if raw is None:
        return Restriction.NONE
    restriction = _CALL_RESTRICT.get(raw.strip())
    if restriction is None:
        raise _invalid("CallRestrict", "must be CONTROL_AX_DISABLE or CONTROL_BX_DISABLE")
    return restriction


def _check_unsupported_options(params: Params) -> None:
    """Options maskline cannot honour are refused, never silently dropped.

    ``CallDisplayType`` only ``1`` (§6: the only value); ``ASRStatus`` true needs speech
    recognition, which maskline does not have. ``DtmfConfig``, ``ASRModelId``, ``OutOrderId``,
    ``Extend`` and ``NoType`` are accepted and ignored (choice: they select vendor features with
    no effect on routing).
    """
    display = params.integer("CallDisplayType")
    if display is not None and display != 1:
        raise _invalid("CallDisplayType", "only 1 (show X to both sides) is supported")
    if params.boolean("ASRStatus"):
        raise BusinessError(FORBIDDEN_ACTION, "speech recognition (ASRStatus) is not supported")


def _ring_config(params: Params) -> dict[str, str] | None:
    """``RingConfig``: JSON object of ringback code name → tone id (e.g. ``AXBRing_A``)."""
    config = params.json("RingConfig")
    if config is None:
        return None
    if not isinstance(config, dict) or not all(isinstance(v, str) for v in config.values()):
        raise _invalid("RingConfig", "must be a JSON object of ringback code names to tone ids")
    return {str(name): tone for name, tone in config.items()}


def _bind_dto(binding: Binding) -> dict[str, Any]:
    return {
        "Extension": binding.extension,
        "SecretNo": national(binding.x),
        "SubsId": binding.sub_id,
    }


def _item_params(item: object, index: int) -> Params:
    """One ``AxgBindList`` entry as parameters (JSON values back to their wire strings)."""
    if not isinstance(item, dict):
        raise _invalid("AxgBindList", f"item {index} must be a JSON object")
    values: dict[str, str] = {}
    for key, value in item.items():
        if value is None:
            continue
        if isinstance(value, bool):
            values[str(key)] = "true" if value else "false"
        elif isinstance(value, int | str):
            values[str(key)] = str(value)
        else:  # a nested structure (RingConfig): back to the JSON string the field holds
            values[str(key)] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def missing(name: str) -> Exception:
        return _invalid(f"AxgBindList[{index}].{name}", "is required")

    return Params(values, missing=missing)


class RpcActions:
    """The dispatch table: action name → handler, over one control plane."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control
        self.handlers: dict[str, Handler] = {
            "BindAxb": self.bind_axb,
            "BindAxn": self.bind_axn,
            "BindAxnExtension": self.bind_axn_extension,
            "BindAxg": self.bind_axg,
            "BindBatchAxg": self.bind_batch_axg,
            "UnbindSubscription": self.unbind_subscription,
            "UpdateSubscription": self.update_subscription,
            "QuerySubscriptionDetail": self.query_subscription_detail,
            "QuerySubsId": self.query_subs_id,
            "QuerySecretNoDetail": self.query_secret_no_detail,
            "QuerySecretNoRemain": self.query_secret_no_remain,
            "BuySecretNo": self.buy_secret_no,
            "ReleaseSecretNo": self.release_secret_no,
            "LockSecretNo": self.lock_secret_no,
            "UnlockSecretNo": self.unlock_secret_no,
            "CreateAxgGroup": self.create_axg_group,
            "OperateAxgGroup": self.operate_axg_group,
            "DeleteAxgGroup": self.delete_axg_group,
            "OperateBlackNo": self.operate_black_no,
            "AddSecretBlacklist": self.add_secret_blacklist,
            "DeleteSecretBlacklist": self.delete_secret_blacklist,
            "QueryRecordFileDownloadUrl": self.query_record_file_download_url,
            "QueryCallStatus": self.query_call_status,
        }

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _pool_key(call: Call) -> str:
        """``PoolKey``; where §6 marks it optional (``?``) it is still needed by maskline.

        choice: the legacy ``ProductType``-only accounts (no pool key) do not exist in
        maskline, so a missing key is ``isv.INVALID_PARAMETERS`` naming it.
        """
        pool_key = call.params.text("PoolKey")
        if pool_key is None:
            raise _invalid("PoolKey", "is required (accounts without a pool key are not supported)")
        return pool_key.strip()

    async def _binding(self, call: Call, pool_key: str, *, x_param: str) -> Binding:
        """The binding ``SubsId`` of the pool, which must sit on the number ``x_param`` names.

        A binding asked for with another X answers as one that does not exist.
        """
        sub_id = call.params.required("SubsId").strip()
        x = call.params.required(x_param)
        return await self.control.get_binding(pool_key, sub_id, tenant=call.tenant, x=x)

    async def _bind(self, call: Call, type_: BindingType, params: Params, pool_key: str) -> Binding:
        _check_unsupported_options(params)
        return await self.control.bind(
            type_,
            pool_key,
            params.required("PhoneNoA"),
            params.text("PhoneNoB"),
            params.text("PhoneNoX"),
            expires=params.required("Expiration"),
            record=params.boolean("IsRecordingEnabled"),  # absent: the pool's default
            group_id=params.text("GroupId") if type_ is BindingType.AXG else None,
            extension=params.text("Extension") if type_ is BindingType.AXN_EXT else None,
            restriction=_restriction(params),
            ring_timeout_s=params.integer("CallTimeout"),
            out_id=params.text("OutId"),
            expect_city=params.text("ExpectCity"),
            ringback=_ring_config(params),
            tenant=call.tenant,
        )

    # ------------------------------------------------------------------ bindings

    async def bind_axb(self, call: Call) -> dict[str, Any]:
        """BindAxb → ``SecretBindDTO{Extension, SecretNo, SubsId}``."""
        binding = await self._bind(call, BindingType.AXB, call.params, self._pool_key(call))
        return {"SecretBindDTO": _bind_dto(binding)}

    async def bind_axn(self, call: Call) -> dict[str, Any]:
        """BindAxn: an AXN binding, or 95AXN when the pool is a 95 pool (same action, §6)."""
        pool_key = self._pool_key(call)
        pool = await self.control.get_pool(pool_key, tenant=call.tenant)
        type_ = BindingType.AXN95 if pool.type is BindingType.AXN95 else BindingType.AXN
        binding = await self._bind(call, type_, call.params, pool_key)
        return {"SecretBindDTO": _bind_dto(binding)}

    async def bind_axn_extension(self, call: Call) -> dict[str, Any]:
        """BindAxnExtension: ``Extension`` given (1–3 digits) or allocated."""
        binding = await self._bind(call, BindingType.AXN_EXT, call.params, self._pool_key(call))
        return {"SecretBindDTO": _bind_dto(binding)}

    async def bind_axg(self, call: Call) -> dict[str, Any]:
        """BindAxg: ``GroupId`` required."""
        call.params.required("GroupId")
        binding = await self._bind(call, BindingType.AXG, call.params, self._pool_key(call))
        return {"SecretBindDTO": _bind_dto(binding)}

    async def bind_batch_axg(self, call: Call) -> dict[str, Any]:
        """BindBatchAxg: one AXG bind per ``AxgBindList`` item, each with its own Code/Message.

        The list as a whole is validated first (JSON array, 1..100 objects) — a malformed list
        binds nothing; then items are bound in order, a refused item does not stop the others
        (choice: the reference reports per item, so partial success is its model).
        """
        items = call.params.json("AxgBindList", required=True)
        pool_key = self._pool_key(call)
        if not isinstance(items, list) or not items:
            raise _invalid("AxgBindList", "must be a non-empty JSON array")
        if len(items) > MAX_BATCH_ITEMS:
            raise _invalid("AxgBindList", f"holds at most {MAX_BATCH_ITEMS} items")
        await self.control.get_pool(pool_key, tenant=call.tenant)
        item_params = [_item_params(item, i) for i, item in enumerate(items)]
        results: list[dict[str, Any]] = []
        for params in item_params:
            entry: dict[str, Any] = {
                "PhoneNoA": params.text("PhoneNoA"),
                "GroupId": params.text("GroupId"),
            }
            try:
                params.required("GroupId")
                binding = await self._bind(call, BindingType.AXG, params, pool_key)
            except ControlError as error:
                failure = business_error_of(error)
                entry.update(Code=failure.code, Message=failure.message)
            except BusinessError as failure:
                entry.update(Code=failure.code, Message=failure.message)
            else:
                entry.update(Code="OK", Message="OK", **_bind_dto(binding))
                entry["PhoneNoA"] = national(binding.a)
            results.append(entry)
        return {"SecretBindList": {"SecretBind": results}}

    async def unbind_subscription(self, call: Call) -> dict[str, Any]:
        """UnbindSubscription: ``SubsId`` on ``SecretNo`` (the binding's X) of the pool."""
        pool_key = self._pool_key(call)
        sub_id = call.params.required("SubsId").strip()
        secret_no = call.params.required("SecretNo")
        await self.control.unbind(pool_key, sub_id, tenant=call.tenant, x=secret_no)
        return {}

    async def update_subscription(self, call: Call) -> dict[str, Any]:
        """UpdateSubscription: one change per call, chosen by ``OperateType`` (§6)."""
        params = call.params
        operation = params.required("OperateType").strip()
        pool_key = self._pool_key(call)
        change: dict[str, Any]
        if operation == "updateNoA":
            change = {"a": self._needed(params, "PhoneNoA", operation)}
        elif operation == "updateNoB":
            change = {"b": self._needed(params, "PhoneNoB", operation)}
        elif operation == "updateExpire":
            change = {"expires": self._needed(params, "Expiration", operation)}
        elif operation == "updateAxgGroup":
            change = {"group_id": self._needed(params, "GroupId", operation)}
        elif operation == "updateCallRestrict":
            raw = self._needed(params, "CallRestrict", operation)
            if raw == "CONTROL_CLEAR_DISABLE":
                change = {"restriction": Restriction.NONE}
            else:
                change = {"restriction": _restriction(params)}
        elif operation == "updateOutId":
            change = {"out_id": self._needed(params, "OutId", operation)}
        elif operation == "updateIsRecordingEnabled":
            self._needed(params, "IsRecordingEnabled", operation)
            change = {"record": params.boolean("IsRecordingEnabled")}
        elif operation == "updateCallDisplayType":
            self._needed(params, "CallDisplayType", operation)
            _check_unsupported_options(params)
            change = {}  # 1 is the only display type, always in effect
        else:
            raise _invalid(
                "OperateType",
                "must be updateNoA, updateNoB, updateExpire, updateAxgGroup, updateCallRestrict, "
                "updateCallDisplayType, updateOutId or updateIsRecordingEnabled",
            )
        sub_id = params.required("SubsId").strip()
        x = params.required("PhoneNoX")
        if change:
            await self.control.update_binding(pool_key, sub_id, tenant=call.tenant, x=x, **change)
        else:
            await self.control.get_binding(pool_key, sub_id, tenant=call.tenant, x=x)
        return {}

    @staticmethod
    def _needed(params: Params, name: str, operation: str) -> str:
        """A parameter required by the chosen ``OperateType`` (business error when absent)."""
        value = params.text(name)
        if value is None:
            raise _invalid(name, f"is required for OperateType {operation}")
        return value.strip()

    async def query_subscription_detail(self, call: Call) -> dict[str, Any]:
        """QuerySubscriptionDetail → ``SecretBindDetailDTO`` (Status 1 in effect, 0 expired)."""
        pool_key = self._pool_key(call)
        binding = await self._binding(call, pool_key, x_param="PhoneNoX")
        control = self.control
        return {
            "SecretBindDetailDTO": {
                "ASRModelId": None,
                "ASRStatus": False,
                "CallRestrict": (
                    None if binding.restriction is Restriction.NONE else binding.restriction.value
                ),
                "ExpireDate": control.local_time(binding.expires_at),
                "Extension": binding.extension,
                "GmtCreate": control.local_time(binding.created_at),
                "GroupId": _group_id(binding.group_id),
                "NeedRecord": binding.record,
                "PhoneNoA": national(binding.a),
                "PhoneNoB": _display(binding.b),
                "PhoneNoX": national(binding.x),
                "Status": 1 if binding.expires_at > call.now else 0,
                "SubsId": binding.sub_id,
            }
        }

    async def query_subs_id(self, call: Call) -> dict[str, Any]:
        """QuerySubsId: the binding on ``PhoneNoX``.

        choice: an AXB X carries many bindings; the newest one in effect (else the newest) is
        answered, as the reference answers a single ``SubsId``.
        """
        pool_key = self._pool_key(call)
        x = _number(call.params.required("PhoneNoX"), "PhoneNoX")
        bindings = await self.control.bindings_by_x(pool_key, x, tenant=call.tenant)
        if not bindings:
            raise BusinessError(SUBS_NOT_EXIST, "no binding on PhoneNoX in this pool")
        newest = max(bindings, key=lambda b: (b.expires_at > call.now, b.created_at))
        return {"SubsId": newest.sub_id}

    # ------------------------------------------------------------------ numbers

    async def query_secret_no_detail(self, call: Call) -> dict[str, Any]:
        """QuerySecretNoDetail → ``SecretNoInfoDTO`` (SecretStatus 0 free, 1 bound, 2 locked)."""
        pool_key = call.params.required("PoolKey").strip()
        number = _number(call.params.required("SecretNo"), "SecretNo")
        detail = await self.control.inventory.number_detail(pool_key, number, tenant=call.tenant)
        return {
            "SecretNoInfoDTO": {
                "CertifyStatus": detail.certify_status,
                "City": detail.city,
                "Province": detail.province,
                "PurchaseTime": detail.purchased,
                "SecretStatus": int(detail.status),
                "Vendor": detail.vendor,
            }
        }

    async def query_secret_no_remain(self, call: Call) -> dict[str, Any]:
        """QuerySecretNoRemain → ``SecretRemainDTO``: free stock of ``City`` and ``SpecId``.

        ``SecretNo`` (optional) is a number prefix, as for BuySecretNo.
        """
        city = call.params.required("City").strip()
        spec = call.params.integer("SpecId", required=True)
        prefix = call.params.text("SecretNo")
        rows = await self.control.inventory.stock(
            city=city, spec=spec, prefix=None if prefix is None else prefix.strip()
        )
        per_city: dict[str, int] = {}
        for row in rows:
            per_city[row.city] = per_city.get(row.city, 0) + row.free
        return {
            "SecretRemainDTO": {
                "Amount": sum(per_city.values()),
                "City": city,
                "RemainDTOList": {
                    "remainDTO": [
                        {"Amount": amount, "City": name} for name, amount in per_city.items()
                    ]
                },
            }
        }

    async def buy_secret_no(self, call: Call) -> dict[str, Any]:
        """BuySecretNo: one number of ``City``/``SpecId`` (``SecretNo`` = number prefix)."""
        params = call.params
        pool_key = params.required("PoolKey").strip()
        city = params.required("City").strip()
        spec = params.integer("SpecId", required=True)
        prefix = params.text("SecretNo")
        numbers = await self.control.inventory.buy(
            pool_key,
            count=1,
            city=city,
            spec=spec,
            prefix=None if prefix is None else prefix.strip(),
            tenant=call.tenant,
        )
        return {"SecretBuyInfoDTO": {"SecretNo": national(PhoneNumber(numbers[0]))}}

    async def _pool_number(self, call: Call) -> tuple[str, PhoneNumber]:
        pool_key = call.params.required("PoolKey").strip()
        return pool_key, _number(call.params.required("SecretNo"), "SecretNo")

    async def release_secret_no(self, call: Call) -> dict[str, Any]:
        """ReleaseSecretNo (only an unbound number)."""
        pool_key, number = await self._pool_number(call)
        await self.control.inventory.release(pool_key, number, tenant=call.tenant)
        return {}

    async def lock_secret_no(self, call: Call) -> dict[str, Any]:
        """LockSecretNo."""
        pool_key, number = await self._pool_number(call)
        await self.control.inventory.lock(pool_key, number, tenant=call.tenant)
        return {}

    async def unlock_secret_no(self, call: Call) -> dict[str, Any]:
        """UnlockSecretNo."""
        pool_key, number = await self._pool_number(call)
        await self.control.inventory.unlock(pool_key, number, tenant=call.tenant)
        return {}

    # ------------------------------------------------------------------ groups, blacklists

    async def create_axg_group(self, call: Call) -> dict[str, Any]:
        """CreateAxgGroup → ``GroupId`` (int at top level)."""
        params = call.params
        pool_key = params.required("PoolKey").strip()
        raw_numbers = params.text("Numbers")
        numbers = [] if raw_numbers is None else _numbers_list(raw_numbers, "Numbers")
        # choice: Name is optional on the wire; an unnamed group is called "AXG group".
        group_id = await self.control.lists.create_group(
            pool_key,
            params.text("Name") or "AXG group",
            numbers,
            params.text("Remark"),
            tenant=call.tenant,
        )
        return {"GroupId": _group_id(group_id)}

    async def operate_axg_group(self, call: Call) -> dict[str, Any]:
        """OperateAxgGroup: addNumbers, deleteNumbers or overwriteNumbers (≤ 200 numbers)."""
        params = call.params
        pool_key = params.required("PoolKey").strip()
        group_id = params.integer("GroupId", required=True)
        numbers = _numbers_list(params.required("Numbers"), "Numbers")
        operation = _GROUP_OPERATIONS.get(params.required("OperateType").strip())
        if operation is None:
            raise _invalid("OperateType", "must be addNumbers, deleteNumbers or overwriteNumbers")
        await self.control.lists.operate_group(
            pool_key, str(group_id), operation, numbers, tenant=call.tenant
        )
        return {}

    async def delete_axg_group(self, call: Call) -> dict[str, Any]:
        """DeleteAxgGroup (only a group no binding uses)."""
        pool_key = call.params.required("PoolKey").strip()
        group_id = call.params.integer("GroupId", required=True)
        await self.control.lists.delete_group(pool_key, str(group_id), tenant=call.tenant)
        return {}

    async def operate_black_no(self, call: Call) -> dict[str, Any]:
        """OperateBlackNo: AddBlack / DeleteBlack of a number on the pool-wide blacklist."""
        params = call.params
        pool_key = params.required("PoolKey").strip()
        number = params.required("BlackNo").strip()
        operation = params.required("OperateType").strip()
        lists = self.control.lists
        if operation == "AddBlack":
            await lists.add_pool_blacklist(pool_key, number, tenant=call.tenant)
        elif operation == "DeleteBlack":
            await lists.remove_pool_blacklist(pool_key, number, tenant=call.tenant)
        else:
            raise _invalid("OperateType", "must be AddBlack or DeleteBlack")
        return {}

    async def _secret_blacklist(self, call: Call, *, add: bool) -> dict[str, Any]:
        """Add/DeleteSecretBlacklist: pool-wide number or a point-to-point pair ``a:b``."""
        params = call.params
        pool_key = params.required("PoolKey").strip()
        black_no = params.required("BlackNo").strip()
        black_type = params.required("BlackType").strip()
        lists = self.control.lists
        if black_type == "PARTNER_GLOBAL_NUMBER_BLACK":
            if add:
                await lists.add_pool_blacklist(pool_key, black_no, tenant=call.tenant)
            else:
                await lists.remove_pool_blacklist(pool_key, black_no, tenant=call.tenant)
            return {}
        if black_type != "POINT_TO_POINT_BLACK":
            raise _invalid(
                "BlackType", "must be POINT_TO_POINT_BLACK or PARTNER_GLOBAL_NUMBER_BLACK"
            )
        first, colon, second = black_no.partition(":")
        if not colon or not first.strip() or not second.strip():
            raise _invalid("BlackNo", "must be 'numberA:numberB' for POINT_TO_POINT_BLACK")
        way = (params.text("WayControl") or "DUPLEX_REJECT").strip()
        direction = _WAY_CONTROL.get(way)
        if direction is None:
            raise _invalid("WayControl", "must be DUPLEX_REJECT, PHONEA_REJECT or PHONEB_REJECT")
        operate = lists.add_pair_block if add else lists.remove_pair_block
        await operate(pool_key, first.strip(), second.strip(), direction, tenant=call.tenant)
        return {}

    async def add_secret_blacklist(self, call: Call) -> dict[str, Any]:
        """AddSecretBlacklist."""
        return await self._secret_blacklist(call, add=True)

    async def delete_secret_blacklist(self, call: Call) -> dict[str, Any]:
        """DeleteSecretBlacklist."""
        return await self._secret_blacklist(call, add=False)

    # ------------------------------------------------------------------ calls

    async def query_record_file_download_url(self, call: Call) -> dict[str, Any]:
        """QueryRecordFileDownloadUrl: the recording URL of the call ``CallId``.

        A recording maskline keeps gets a fresh signed, expiring URL (``api.recordings``;
        absolute under the configured public base URL, else relative to the API's root); a call
        whose record carries a ``record_url`` from elsewhere answers that URL.
        ``isv.CALL_NOT_EXIST`` for an unknown (or foreign) call, ``isv.RECORD_NOT_EXIST`` when
        the call has no recording. ``CallTime`` is accepted and ignored (the reference uses it
        to find the day's partition). A given ``PoolKey`` must be the call's pool.
        """
        call_id = call.params.required("CallId").strip()
        pool_key = call.params.text("PoolKey")
        record = await self.control.get_call_record(
            call_id, tenant=call.tenant, pool_key=None if pool_key is None else pool_key.strip()
        )
        recordings = recordings_of(self.control)
        signed = await recordings.signed_url_of(record)
        if signed is not None:
            return {"DownloadUrl": recordings.absolute(signed)}
        if not record.record_url:
            raise BusinessError(RECORD_NOT_EXIST, f"call {call_id} has no recording")
        return {"DownloadUrl": record.record_url}

    async def query_call_status(self, call: Call) -> dict[str, Any]:
        """QueryCallStatus (SDK 1.0.0): the latest call of binding ``SubsId``.

        maskline keeps end-of-call records only, so the status is that of the binding's latest
        call (``CallNo`` given: the latest call *from* that number), choice of codes:
        ``Status`` 0 = no call yet, 1 = answered, 2 = not answered, 3 = intercepted (blacklist,
        restriction, no binding); ``CalledNo`` = who that call rang (national digits).
        """
        params = call.params
        pool_key = self._pool_key(call)
        sub_id = params.text("SubsId")
        if sub_id is None:
            raise _invalid("SubsId", "is required")
        records = await self.control.calls_of_binding(pool_key, sub_id.strip(), tenant=call.tenant)
        raw_caller = params.text("CallNo")
        caller = None if raw_caller is None else _number(raw_caller, "CallNo")
        for record in records:
            from_a = record.call_type is CallType.A_TO_PEER
            calling = record.phone_no if from_a else record.peer_no
            if caller is not None and calling != caller:
                continue
            called = record.peer_no if from_a else record.phone_no
            if record.unconnected_cause:
                status = 3
            elif record.start_time is not None:
                status = 1
            else:
                status = 2
            return {"SecretCallStatusDTO": {"Status": status, "CalledNo": _display(called)}}
        return {"SecretCallStatusDTO": {"Status": 0, "CalledNo": None}}
