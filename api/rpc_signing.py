"""Request signatures of the reference service's RPC API (Dyplsapi 2017-05-25).

Pure functions, no I/O: the HTTP layer hands over the pieces of a received request and a
``secret_for(access_key_id)`` lookup, and :func:`verify_request` decides which of the two schemes
the request uses, verifies it and returns a :class:`VerifiedRequest` — or raises
:class:`RpcSignatureError` carrying the reference service's gateway error code and HTTP status
(``shared/api/DYPLSAPI.md`` §5).

- **v3**, ``ACS3-HMAC-SHA256`` (the SDK default, DYPLSAPI.md §3): an ``Authorization`` header over a
  canonical request made of the method, the path, the URL query, the headers named in
  ``SignedHeaders`` and the body hash ``x-acs-content-sha256``.
- **v2**, RPC ``HMAC-SHA1`` (DYPLSAPI.md §4): a ``Signature`` parameter over every other parameter
  of the URL query and of an ``application/x-www-form-urlencoded`` body.

Both then check the request time against the server clock (±15 minutes, §3 step 4). Nonce
uniqueness needs state (the reference remembers nonces ~31 minutes, §3 step 4): the nonce is
returned in the result and the caller must refuse a repeat with :func:`nonce_used_error`.

Choices made where DYPLSAPI.md is silent are marked "choice:" in the comments below.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal
from urllib.parse import quote, unquote_to_bytes

__all__ = [
    "MAX_CLOCK_SKEW",
    "V3_ALGORITHM",
    "RpcSignatureError",
    "Scheme",
    "VerifiedRequest",
    "canonical_query_v3",
    "canonical_request_v3",
    "canonicalized_v2",
    "nonce_used_error",
    "parse_form",
    "percent_encode",
    "string_to_sign_v2",
    "string_to_sign_v3",
    "verify_request",
]

Scheme = Literal["v2", "v3"]
HeaderInput = Mapping[str, str] | Iterable[tuple[str, str]]
SecretLookup = Callable[[str], "str | None"]

#: Allowed distance between the request time and the server clock (DYPLSAPI.md §3 step 4, §5).
MAX_CLOCK_SKEW: Final = timedelta(minutes=15)
#: The only v3 algorithm maskline accepts (§1: the SM3/RSA variants may be refused).
V3_ALGORITHM: Final = "ACS3-HMAC-SHA256"
#: §3 step 1: hex sha256 of the empty body, what the SDK always sends for Dyplsapi.
EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()

# §3 server verification step 1, verbatim.
_AUTHORIZATION_RE: Final = re.compile(
    r"ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]{64})"
)
# §3 server verification step 2: headers that must be covered by a v3 signature.
_REQUIRED_SIGNED: Final = frozenset(
    {
        "host",
        "x-acs-action",
        "x-acs-version",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
    }
)
# §4 server verification: mandatory v2 parameters, in the order they are checked.
_REQUIRED_V2: Final = ("AccessKeyId", "Signature", "SignatureMethod", "SignatureNonce", "Timestamp")
# Envelope parameters of either scheme (§2, §4 step 1), removed from ``VerifiedRequest.params``.
# choice: ``SecurityToken`` (STS) stays in ``params`` so the caller can refuse it explicitly.
_ENVELOPE: Final = frozenset(
    {
        "AccessKeyId",
        "Action",
        "Format",
        "Signature",
        "SignatureMethod",
        "SignatureNonce",
        "SignatureType",
        "SignatureVersion",
        "Timestamp",
        "Version",
    }
)
_FORM_TYPE: Final = "application/x-www-form-urlencoded"

# §5 gateway error table: HTTP status and reference wording.
_MESSAGES: Final[dict[str, tuple[int, str]]] = {
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "SignatureDoesNotMatch": (
        400,
        "Specified signature is not matched with our calculation. server string to sign is:",
    ),
    "IncompleteSignature": (
        400,
        "The request signature does not conform to Aliyun standards.",
    ),
    "InvalidSignatureMethod": (400, "Specified signature method is not valid."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "InvalidTimeStamp.Format": (
        400,
        "Specified time stamp or date value is not well formatted.",
    ),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
}


class RpcSignatureError(Exception):
    """A refused request: a §5 gateway ``code``, its ``message`` and HTTP ``status``.

    The HTTP layer answers ``{"RequestId","HostId","Code","Message","Recommend"}`` with ``status``
    (DYPLSAPI.md §5); ``message`` already carries the reference wording.
    """

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _error(code: str, detail: str = "") -> RpcSignatureError:
    """The §5 error ``code`` with its reference status and message (+ ``detail``)."""
    status, message = _MESSAGES[code]
    return RpcSignatureError(code, message + detail, status)


def _missing(name: str) -> RpcSignatureError:
    """§5: ``400 Missing<Name>`` / ``<Name> is mandatory for this action.``."""
    return RpcSignatureError(f"Missing{name}", f"{name} is mandatory for this action.", 400)


def nonce_used_error() -> RpcSignatureError:
    """The §5 error for a replayed nonce, for the caller that remembers nonces."""
    return _error("SignatureNonceUsed")


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """A request whose signature and time were verified.

    ``params`` are the API parameters (URL query merged with a form body, blank values kept,
    envelope parameters removed); ``timestamp`` is the signed request time (aware, UTC); ``nonce``
    must be checked for reuse by the caller (per ``access_key_id``, over at least twice
    :data:`MAX_CLOCK_SKEW`, §3 step 4).
    """

    access_key_id: str
    scheme: Scheme
    action: str
    version: str
    params: dict[str, str]
    nonce: str
    timestamp: datetime


# --- encoding --------------------------------------------------------------------------------


def percent_encode(value: str) -> str:
    """RFC 3986 encoding of the UTF-8 bytes, ``A–Z a–z 0–9 - _ . ~`` kept (§3 step 2, §4 step 2).

    Space becomes ``%20`` (never ``+``), ``*`` becomes ``%2A``, ``~`` stays.
    """
    return quote(value.encode("utf-8"), safe="-_.~")


def parse_form(data: str | bytes) -> list[tuple[str, str]]:
    """Decode a query string or form body as ``application/x-www-form-urlencoded`` (§2).

    ``+`` is a space, blank values are kept (``a=`` and a bare ``a`` both give ``("a", "")``),
    empty segments are skipped. Percent-escapes must decode to UTF-8, else
    ``IncompleteSignature`` (choice: the document does not say; no SDK can produce it).
    """
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    pairs: list[tuple[str, str]] = []
    for segment in text.split("&"):
        if not segment:
            continue
        name, _, value = segment.partition("=")
        try:
            pairs.append((_form_unquote(name), _form_unquote(value)))
        except UnicodeDecodeError as exc:
            raise _error("IncompleteSignature", " (parameters are not UTF-8)") from exc
    return pairs


def _form_unquote(text: str) -> str:
    """One form-encoded component: ``+`` → space, ``%XX`` → byte, bytes decoded as UTF-8."""
    return unquote_to_bytes(text.replace("+", " ")).decode("utf-8")


def _merge(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Parameters as a mapping; a name given twice is refused.

    choice: the SDKs build parameters from dicts and never repeat a name (§2, §7); a repeat would
    make "which value did the client mean" ambiguous, so it is ``IncompleteSignature``.
    """
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise _error("IncompleteSignature", f" (parameter {name} given twice)")
        params[name] = value
    return params


def _header_values(headers: HeaderInput) -> dict[str, list[str]]:
    """Header values by lower-cased name, repeats kept in order."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    grouped: dict[str, list[str]] = {}
    for name, value in items:
        grouped.setdefault(name.lower(), []).append(value)
    return grouped


def _parse_time(value: str) -> datetime:
    """The request time: ISO 8601 with a zone (the SDK sends ``2025-01-01T00:00:00Z``, §2).

    choice: any ISO 8601 date-time with an explicit zone is accepted (fractional seconds, ``Z`` or
    an offset) since other SDKs may differ in precision; a zone-less value is ``Format``.
    """
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _error("InvalidTimeStamp.Format") from exc
    if parsed.tzinfo is None:
        raise _error("InvalidTimeStamp.Format")
    return parsed.astimezone(UTC)


def _check_time(value: str, now: datetime) -> datetime:
    """§3 step 4: within ± ``MAX_CLOCK_SKEW`` of ``now`` (bounds inclusive: choice)."""
    stamp = _parse_time(value)
    if abs(now - stamp) > MAX_CLOCK_SKEW:
        raise _error("InvalidTimeStamp.Expired")
    return stamp


def _form_body(headers: dict[str, list[str]], body: bytes) -> list[tuple[str, str]]:
    """Parameters of a form body (§2, §7: SDK 1.0.0 sends its business parameters there)."""
    content_types = headers.get("content-type", [])
    if not body or not content_types:
        return []
    media_type = content_types[0].split(";", 1)[0].strip().lower()
    return parse_form(body) if media_type == _FORM_TYPE else []


# --- v3: ACS3-HMAC-SHA256 (§3) -------------------------------------------------------------


def canonical_query_v3(params: Mapping[str, str]) -> str:
    """§3 step 2: sorted by name (code points), ``name=pct(value)``; names not encoded."""
    return "&".join(f"{name}={percent_encode(params[name])}" for name in sorted(params))


def canonical_request_v3(
    method: str,
    path: str,
    query: Mapping[str, str],
    *,
    headers: Mapping[str, Iterable[str]],
    signed_headers: str,
    hashed_payload: str,
) -> str:
    """§3 step 4: ``METHOD\\nPATH\\nCanonicalQuery\\nCanonicalHeaders\\nSignedHeaders\\nHash``.

    ``headers`` maps each signed (lower-case) name to its received values; each line is
    ``name:value`` with values trimmed, sorted and joined by ``,`` (§3 step 3).
    """
    lines = "".join(
        f"{name}:{','.join(sorted(v.strip() for v in headers[name]))}\n"
        for name in signed_headers.split(";")
    )
    return "\n".join(
        [method, path, canonical_query_v3(query), lines, signed_headers, hashed_payload]
    )


def string_to_sign_v3(canonical_request: str) -> str:
    """§3 step 5: ``ACS3-HMAC-SHA256\\n`` + hex sha256 of the canonical request."""
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return f"{V3_ALGORITHM}\n{digest}"


def _verify_v3(
    method: str,
    path: str,
    *,
    query_pairs: list[tuple[str, str]],
    headers: dict[str, list[str]],
    body: bytes,
    secret_for: SecretLookup,
    now: datetime,
) -> VerifiedRequest:
    """§3 server verification, steps 1–4 in the document's order."""
    authorization = headers["authorization"]
    match = _AUTHORIZATION_RE.fullmatch(authorization[0]) if len(authorization) == 1 else None
    if match is None:
        raise _error("IncompleteSignature")
    key_id, signed_headers, signature = match.groups()
    names = signed_headers.split(";")
    # choice: the list must be lower-case, sorted and unique as §3 step 3 builds it, and every
    # listed header must have been received; anything else is IncompleteSignature.
    if names != sorted(set(names)) or any(n != n.lower() or not n for n in names):
        raise _error("IncompleteSignature", " (SignedHeaders not sorted lower-case names)")
    if not set(names) >= _REQUIRED_SIGNED:
        missing = ",".join(sorted(_REQUIRED_SIGNED - set(names)))
        raise _error("IncompleteSignature", f" (SignedHeaders lacks {missing})")
    if any(name not in headers for name in names):
        raise _error("IncompleteSignature", " (a signed header was not received)")
    secret = secret_for(key_id)
    if secret is None:
        raise _error("InvalidAccessKeyId.NotFound")
    query = _merge(query_pairs)
    # §3 step 3: the payload hash as received is what was signed; it must match the body.
    claimed_hash = headers["x-acs-content-sha256"][0]
    canonical = canonical_request_v3(
        method,
        path or "/",
        query,
        headers=headers,
        signed_headers=signed_headers,
        hashed_payload=claimed_hash,
    )
    string_to_sign = string_to_sign_v3(canonical)
    expected = hmac.new(
        secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    body_ok = hmac.compare_digest(claimed_hash.encode(), hashlib.sha256(body).hexdigest().encode())
    signature_ok = hmac.compare_digest(expected.encode(), signature.encode())
    if not (body_ok and signature_ok):
        raise _error("SignatureDoesNotMatch", string_to_sign)
    stamp = _check_time(headers["x-acs-date"][0], now)
    # §2: parameters = URL query merged with a form body (covered by x-acs-content-sha256);
    # action/version: the query wins over the headers, both are signed here (the query always,
    # the headers by the required list above).
    params = _merge([*query_pairs, *_form_body(headers, body)])
    action = query.get("Action") or headers["x-acs-action"][0]
    version = query.get("Version") or headers["x-acs-version"][0]
    nonce = headers["x-acs-signature-nonce"][0]
    if not nonce:
        raise _error("IncompleteSignature", " (empty x-acs-signature-nonce)")
    return VerifiedRequest(
        access_key_id=key_id,
        scheme="v3",
        action=_required(action, "Action"),
        version=_required(version, "Version"),
        params={k: v for k, v in params.items() if k not in _ENVELOPE},
        nonce=nonce,
        timestamp=stamp,
    )


# --- v2: RPC HMAC-SHA1 (§4) ----------------------------------------------------------------


def canonicalized_v2(params: Mapping[str, str]) -> str:
    """§4 step 2: ``pct(name)=pct(value)`` sorted by name, joined by ``&`` (blank → ``name=``)."""
    return "&".join(
        f"{percent_encode(name)}={percent_encode(params[name])}" for name in sorted(params)
    )


def string_to_sign_v2(method: str, path: str, params: Mapping[str, str]) -> str:
    """§4 step 3: ``METHOD&pct(path)&pct(canonicalized)`` — ``POST&%2F&...`` for the SDK.

    choice: the document writes ``pct("/")`` because the SDK always requests ``/``; the received
    path is used here, so a request to any other path does not match.
    """
    return f"{method}&{percent_encode(path)}&{percent_encode(canonicalized_v2(params))}"


def _verify_v2(
    method: str,
    path: str,
    params: dict[str, str],
    secret_for: SecretLookup,
    now: datetime,
) -> VerifiedRequest:
    """§4 server verification, in the document's order."""
    # choice: a blank mandatory parameter counts as missing.
    for name in _REQUIRED_V2:
        if not params.get(name):
            raise _missing(name)
    if params["SignatureMethod"] != "HMAC-SHA1":
        raise _error("InvalidSignatureMethod")
    secret = secret_for(params["AccessKeyId"])
    if secret is None:
        raise _error("InvalidAccessKeyId.NotFound")
    signed = {k: v for k, v in params.items() if k != "Signature"}
    string_to_sign = string_to_sign_v2(method, path or "/", signed)
    expected = base64.b64encode(
        hmac.new(f"{secret}&".encode(), string_to_sign.encode("utf-8"), hashlib.sha1).digest()
    )
    if not hmac.compare_digest(expected, params["Signature"].encode("utf-8")):
        raise _error("SignatureDoesNotMatch", string_to_sign)
    stamp = _check_time(params["Timestamp"], now)
    # choice: under v2 the x-acs-action/x-acs-version headers are unsigned (§2), so action and
    # version are taken from the signed parameters only.
    return VerifiedRequest(
        access_key_id=params["AccessKeyId"],
        scheme="v2",
        action=_required(params.get("Action", ""), "Action"),
        version=_required(params.get("Version", ""), "Version"),
        params={k: v for k, v in params.items() if k not in _ENVELOPE},
        nonce=params["SignatureNonce"],
        timestamp=stamp,
    )


def _required(value: str, name: str) -> str:
    """``value`` or ``Missing<name>`` (§5) when blank."""
    if not value:
        raise _missing(name)
    return value


# --- entry point -----------------------------------------------------------------------------


def verify_request(
    *,
    method: str,
    path: str,
    query: str | bytes,
    headers: HeaderInput,
    body: bytes,
    secret_for: SecretLookup,
    now: datetime | None = None,
) -> VerifiedRequest:
    """Verify a received RPC request under whichever scheme it uses.

    ``path`` is the request path as received (``/``), ``query`` the raw query string without
    ``?``, ``headers`` a mapping or a list of pairs (names in any case; give pairs to keep
    repeated headers), ``body`` the raw body, ``secret_for`` the key lookup (``None`` = unknown
    key; it may raise :class:`RpcSignatureError` itself, e.g. ``InvalidAccessKeyId.Inactive``),
    ``now`` the server clock (aware; default: the system clock).

    Scheme choice (choice: the document gives none explicitly): an ``Authorization`` header
    starting ``ACS3-`` → v3 (only ``ACS3-HMAC-SHA256`` accepted); otherwise v2, whose missing
    parameters answer ``Missing<Name>``; an ``Authorization`` of any other kind on a request
    without v2 parameters → ``IncompleteSignature``.
    """
    clock = now if now is not None else datetime.now(UTC)
    received = _header_values(headers)
    query_pairs = parse_form(query)
    authorization = received.get("authorization", [])
    if authorization and authorization[0].startswith("ACS3-"):
        return _verify_v3(
            method,
            path,
            query_pairs=query_pairs,
            headers=received,
            body=body,
            secret_for=secret_for,
            now=clock,
        )
    form_pairs = _form_body(received, body)
    params = _merge([*query_pairs, *form_pairs])
    if authorization and not {"Signature", "SignatureMethod", "AccessKeyId"} & params.keys():
        raise _error("IncompleteSignature")
    return _verify_v2(method, path, params, secret_for, clock)
