"""RPC request signatures (``api.rpc_signing``) against ``shared/api/DYPLSAPI.md`` §3, §4, §5, §8.

The §8 worked examples were computed by the reference SDK itself and captured on the wire: they
are replayed here byte for byte (clock pinned to 2025-01-01T00:00:00Z), intermediates included.
The property tests sign with a small reference signer written here from §3/§4 (its own
percent-encoder and canonicalisation), independent of the module's code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.rpc_signing import (
    RpcSignatureError,
    VerifiedRequest,
    canonical_query_v3,
    canonical_request_v3,
    canonicalized_v2,
    nonce_used_error,
    parse_form,
    percent_encode,
    string_to_sign_v2,
    string_to_sign_v3,
    verify_request,
)

NOW = datetime(2025, 1, 1, tzinfo=UTC)
KEY_ID = "testid"
SECRET = "testsecret"
NONCE = "0123456789abcdef0123456789abcdef"
USER_AGENT = "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2"
BUSINESS = {
    "Expiration": "2025-01-01 09:00:00",
    "OutId": "a b*c~d",
    "PhoneNoA": "13800000001",
    "PhoneNoB": "13900000002",
    "PoolKey": "FC100000000001",
}
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SIGNED = (
    "accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;"
    "x-acs-date;x-acs-signature-nonce;x-acs-version"
)

# --- §8, verbatim --------------------------------------------------------------------------

V3_CANONICAL = f"""POST
/
Expiration=2025-01-01%2009%3A00%3A00&OutId=a%20b%2Ac~d&PhoneNoA=13800000001&PhoneNoB=13900000002&PoolKey=FC100000000001
accept:application/json
host:127.0.0.1:18081
user-agent:AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2
x-acs-action:BindAxb
x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
x-acs-credentials-provider:static_ak
x-acs-date:2025-01-01T00:00:00Z
x-acs-signature-nonce:0123456789abcdef0123456789abcdef
x-acs-version:2017-05-25

{SIGNED}
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"""
V3_CANONICAL_HASH = "21db126325785569aca2229230b91d09e5f10b6446623792e94aee6670408e44"
V3_STRING_TO_SIGN = f"ACS3-HMAC-SHA256\n{V3_CANONICAL_HASH}"
V3_SIGNATURE = "ed914ca1eb16f9397676cb8747214e574b28121408adbfaae44f43c841d3dc3b"
V3_WIRE = f"""POST /?Expiration=2025-01-01+09%3A00%3A00&OutId=a+b%2Ac~d&PhoneNoA=13800000001&PhoneNoB=13900000002&PoolKey=FC100000000001 HTTP/1.1
Accept-Encoding: identity
host: 127.0.0.1:18081
x-acs-version: 2017-05-25
x-acs-action: BindAxb
user-agent: AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2
x-acs-date: 2025-01-01T00:00:00Z
x-acs-signature-nonce: 0123456789abcdef0123456789abcdef
accept: application/json
x-acs-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
x-acs-credentials-provider: static_ak
Authorization: ACS3-HMAC-SHA256 Credential=testid,SignedHeaders={SIGNED},Signature={V3_SIGNATURE}
Content-Length: 0

"""  # noqa: E501

V2_CANONICALIZED = "AccessKeyId=testid&Action=BindAxb&Expiration=2025-01-01%2009%3A00%3A00&Format=json&OutId=a%20b%2Ac~d&PhoneNoA=13800000001&PhoneNoB=13900000002&PoolKey=FC100000000001&SignatureMethod=HMAC-SHA1&SignatureNonce=0123456789abcdef0123456789abcdef&SignatureVersion=1.0&Timestamp=2025-01-01T00%3A00%3A00Z&Version=2017-05-25"  # noqa: E501
V2_STRING_TO_SIGN = "POST&%2F&AccessKeyId%3Dtestid%26Action%3DBindAxb%26Expiration%3D2025-01-01%252009%253A00%253A00%26Format%3Djson%26OutId%3Da%2520b%252Ac~d%26PhoneNoA%3D13800000001%26PhoneNoB%3D13900000002%26PoolKey%3DFC100000000001%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D0123456789abcdef0123456789abcdef%26SignatureVersion%3D1.0%26Timestamp%3D2025-01-01T00%253A00%253A00Z%26Version%3D2017-05-25"  # noqa: E501
V2_SIGNATURE = "4U/iDAzR5/k9jElmCn+qrwg59E4="
V2_WIRE = """POST /?Action=BindAxb&Format=json&Version=2017-05-25&Timestamp=2025-01-01T00%3A00%3A00Z&SignatureNonce=0123456789abcdef0123456789abcdef&Expiration=2025-01-01+09%3A00%3A00&OutId=a+b%2Ac~d&PhoneNoA=13800000001&PhoneNoB=13900000002&PoolKey=FC100000000001&SignatureMethod=HMAC-SHA1&SignatureVersion=1.0&AccessKeyId=testid&Signature=4U%2FiDAzR5%2Fk9jElmCn%2Bqrwg59E4%3D HTTP/1.1
Accept-Encoding: identity
host: 127.0.0.1:18081
x-acs-version: 2017-05-25
x-acs-action: BindAxb
user-agent: AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2
x-acs-credentials-provider: static_ak
Content-Length: 0

"""  # noqa: E501


@dataclass(frozen=True)
class Wire:
    """A received request, split the way the HTTP layer hands it over."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    def header(self, name: str, value: str) -> Wire:
        """This request with header ``name`` replaced (or added)."""
        kept = tuple((n, v) for n, v in self.headers if n.lower() != name.lower())
        return replace(self, headers=(*kept, (name, value)))


def parse_wire(text: str) -> Wire:
    """Split a §8 capture (``\\n`` lines here, CRLF on the wire) into a :class:`Wire`."""
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    request_line, *lines = head.split("\n")
    method, target, _version = request_line.split(" ")
    path, _, query = target.partition("?")
    headers = tuple((n, v.lstrip(" ")) for n, v in (line.split(":", 1) for line in lines))
    return Wire(method, path, query, headers, body.encode())


def secret_for(key_id: str) -> str | None:
    """The one key of the §8 examples."""
    return {KEY_ID: SECRET}.get(key_id)


def verify(wire: Wire, now: datetime = NOW) -> VerifiedRequest:
    """Run the verifier on ``wire`` at ``now``."""
    return verify_request(
        method=wire.method,
        path=wire.path,
        query=wire.query,
        headers=wire.headers,
        body=wire.body,
        secret_for=secret_for,
        now=now,
    )


def refused(wire: Wire, now: datetime = NOW) -> RpcSignatureError:
    """The error ``wire`` is refused with."""
    with pytest.raises(RpcSignatureError) as info:
        verify(wire, now)
    return info.value


# --- reference signer (§3, §4), written independently of the module --------------------------

UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def ref_pct(text: str) -> str:
    """§3 step 2 encoding, byte by byte."""
    return "".join(chr(b) if b in UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8"))


def ref_sign_v2(params: dict[str, str], *, method: str = "POST", secret: str = SECRET) -> str:
    """§4 steps 2–4: the base64 HMAC-SHA1 signature of ``params``."""
    canonical = "&".join(f"{ref_pct(k)}={ref_pct(params[k])}" for k in sorted(params))
    sts = f"{method}&%2F&{ref_pct(canonical)}"
    return base64.b64encode(hmac.digest(f"{secret}&".encode(), sts.encode(), "sha1")).decode()


def v2_envelope(
    action: str = "BindAxb", *, timestamp: str = "2025-01-01T00:00:00Z", nonce: str = NONCE
) -> dict[str, str]:
    """The §4 step 1 parameters the SDK adds around the business ones."""
    return {
        "Action": action,
        "Format": "json",
        "Version": "2017-05-25",
        "Timestamp": timestamp,
        "SignatureNonce": nonce,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "AccessKeyId": KEY_ID,
    }


def make_v2(
    business: dict[str, str],
    *,
    form: dict[str, str] | None = None,
    envelope: dict[str, str] | None = None,
    method: str = "POST",
    secret: str = SECRET,
) -> Wire:
    """A v2 request as the SDK sends it (``form``: body parameters, as SDK 1.0.0, §7)."""
    query = {**(envelope if envelope is not None else v2_envelope()), **business}
    signature = ref_sign_v2({**query, **(form or {})}, method=method, secret=secret)
    headers: tuple[tuple[str, str], ...] = (("host", "127.0.0.1:18081"),)
    body = b""
    if form is not None:
        body = urlencode(form).encode()
        headers = (*headers, ("Content-Type", "application/x-www-form-urlencoded"))
    return Wire(method, "/", urlencode({**query, "Signature": signature}), headers, body)


def make_v3(
    query: dict[str, str],
    *,
    body: bytes = b"",
    date: str = "2025-01-01T00:00:00Z",
    extra_headers: dict[str, str] | None = None,
    secret: str = SECRET,
) -> Wire:
    """A v3 request signed as §3 steps 1–7 describe."""
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {
        "host": "127.0.0.1:18081",
        "x-acs-version": "2017-05-25",
        "x-acs-action": "BindAxb",
        "user-agent": USER_AGENT,
        "x-acs-date": date,
        "x-acs-signature-nonce": NONCE,
        "accept": "application/json",
        "x-acs-content-sha256": payload_hash,
        "x-acs-credentials-provider": "static_ak",
        **(extra_headers or {}),
    }
    names = sorted(headers)
    canonical = "\n".join(
        [
            "POST",
            "/",
            "&".join(f"{k}={ref_pct(query[k])}" for k in sorted(query)),
            "".join(f"{n}:{headers[n].strip()}\n" for n in names),
            ";".join(names),
            payload_hash,
        ]
    )
    sts = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    signature = hmac.new(secret.encode(), sts.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"ACS3-HMAC-SHA256 Credential={KEY_ID},SignedHeaders={';'.join(names)},"
        f"Signature={signature}"
    )
    return Wire("POST", "/", urlencode(query), tuple(headers.items()), body)


# --- §8 worked examples --------------------------------------------------------------------


def test_v3_worked_example_intermediates() -> None:
    wire = parse_wire(V3_WIRE)
    received = {n.lower(): [v] for n, v in wire.headers}
    query = dict(parse_form(wire.query))
    assert query == BUSINESS
    assert canonical_query_v3(query) == V3_CANONICAL.split("\n")[2]
    canonical = canonical_request_v3(
        "POST", "/", query, headers=received, signed_headers=SIGNED, hashed_payload=EMPTY_SHA256
    )
    assert canonical == V3_CANONICAL
    assert hashlib.sha256(canonical.encode()).hexdigest() == V3_CANONICAL_HASH
    assert string_to_sign_v3(canonical) == V3_STRING_TO_SIGN
    signature = hmac.new(SECRET.encode(), V3_STRING_TO_SIGN.encode(), hashlib.sha256)
    assert signature.hexdigest() == V3_SIGNATURE
    # the independent reference signer agrees with the SDK
    assert dict(make_v3(BUSINESS).headers)["Authorization"].endswith(V3_SIGNATURE)


def test_v3_worked_example_verifies() -> None:
    result = verify(parse_wire(V3_WIRE))
    assert result == VerifiedRequest(
        access_key_id=KEY_ID,
        scheme="v3",
        action="BindAxb",
        version="2017-05-25",
        params=BUSINESS,
        nonce=NONCE,
        timestamp=NOW,
    )


def test_v2_worked_example_intermediates() -> None:
    wire = parse_wire(V2_WIRE)
    params = dict(parse_form(wire.query))
    assert params.pop("Signature") == V2_SIGNATURE
    assert canonicalized_v2(params) == V2_CANONICALIZED
    assert string_to_sign_v2("POST", "/", params) == V2_STRING_TO_SIGN
    digest = hmac.digest(f"{SECRET}&".encode(), V2_STRING_TO_SIGN.encode(), "sha1")
    assert base64.b64encode(digest).decode() == V2_SIGNATURE
    assert ref_sign_v2(params) == V2_SIGNATURE


def test_v2_worked_example_verifies() -> None:
    result = verify(parse_wire(V2_WIRE))
    assert result == VerifiedRequest(
        access_key_id=KEY_ID,
        scheme="v2",
        action="BindAxb",
        version="2017-05-25",
        params=BUSINESS,
        nonce=NONCE,
        timestamp=NOW,
    )


def test_percent_encoding_of_reserved_characters() -> None:
    assert percent_encode("a b*c~d/+=&%é") == "a%20b%2Ac~d%2F%2B%3D%26%25%C3%A9"
    assert parse_form("a=1+2&b=&c&&d=%E4%B8%AD") == [
        ("a", "1 2"),
        ("b", ""),
        ("c", ""),
        ("d", "中"),
    ]


# --- one-byte changes in every signed part ---------------------------------------------------

V3_MUTATIONS: dict[str, Callable[[str], str]] = {
    "parameter value": lambda w: w.replace("c~d&", "c~e&"),
    "parameter name": lambda w: w.replace("PhoneNoB=", "PhoneNoC="),
    "added parameter": lambda w: w.replace("PoolKey=FC100000000001 ", "PoolKey=FC100000000001&x= "),
    "signed header user-agent": lambda w: w.replace("Python/3.11.7", "Python/3.11.8"),
    "signed header host": lambda w: w.replace("host: 127.0.0.1:18081", "host: 127.0.0.1:18082"),
    "signed header action": lambda w: w.replace("x-acs-action: BindAxb", "x-acs-action: BindAxn"),
    "signed header nonce": lambda w: w.replace("nonce: 0123", "nonce: 1123"),
    "signed header date": lambda w: w.replace(
        "x-acs-date: 2025-01-01T00:00:00Z", "x-acs-date: 2025-01-01T00:00:01Z"
    ),
    "signed header accept": lambda w: w.replace(
        "accept: application/json", "accept: application/jsoN"
    ),
    "payload hash": lambda w: w.replace("sha256: e3b0", "sha256: e3b1"),
    "body": lambda w: w.replace("Content-Length: 0\n\n", "Content-Length: 1\n\nx"),
    "method": lambda w: w.replace("POST /", "PUT /", 1),
    "path": lambda w: w.replace("POST /?", "POST /x?", 1),
    "signature": lambda w: w.replace("Signature=ed91", "Signature=ed92"),
}


@pytest.mark.parametrize("mutation", sorted(V3_MUTATIONS))
def test_v3_one_byte_change_is_refused(mutation: str) -> None:
    text = V3_MUTATIONS[mutation](V3_WIRE)
    assert text != V3_WIRE
    error = refused(parse_wire(text))
    assert (error.code, error.status) == ("SignatureDoesNotMatch", 400)
    assert error.message.startswith(
        "Specified signature is not matched with our calculation. server string to sign is:"
    )


V2_MUTATIONS: dict[str, Callable[[str], str]] = {
    "parameter value": lambda w: w.replace("c~d&", "c~e&"),
    "parameter name": lambda w: w.replace("PhoneNoB=", "PhoneNoC="),
    "added parameter": lambda w: w.replace("&Signature=", "&x=&Signature="),
    "blank parameter added": lambda w: w.replace("&Signature=", "&SignatureType=&Signature="),
    "action": lambda w: w.replace("Action=BindAxb", "Action=BindAxn"),
    "timestamp": lambda w: w.replace("T00%3A00%3A00Z", "T00%3A00%3A01Z"),
    "nonce": lambda w: w.replace("SignatureNonce=0123", "SignatureNonce=1123"),
    "key id case": lambda w: w.replace("AccessKeyId=testid", "AccessKeyId=testiD"),
    "form body": lambda w: w.replace(
        "Content-Length: 0\n\n",
        "Content-Type: application/x-www-form-urlencoded\nContent-Length: 3\n\nx=1",
    ),
    "method": lambda w: w.replace("POST /", "GET /", 1),
    "path": lambda w: w.replace("POST /?", "POST /x?", 1),
    "signature": lambda w: w.replace("Signature=4U", "Signature=5U"),
}


@pytest.mark.parametrize("mutation", sorted(V2_MUTATIONS))
def test_v2_one_byte_change_is_refused(mutation: str) -> None:
    text = V2_MUTATIONS[mutation](V2_WIRE)
    assert text != V2_WIRE
    error = refused(parse_wire(text), NOW)
    if mutation == "key id case":
        assert (error.code, error.status) == ("InvalidAccessKeyId.NotFound", 404)
        return
    assert (error.code, error.status) == ("SignatureDoesNotMatch", 400)
    # §4: the legacy SDK needs the server string to sign after a colon
    assert error.message.split("server string to sign is:")[1].startswith(
        V2_MUTATIONS[mutation](V2_WIRE).split(" ")[0] + "&"
    )


def test_v2_mismatch_message_carries_string_to_sign() -> None:
    wire = parse_wire(V2_WIRE.replace("Signature=4U", "Signature=5U"))
    error = refused(wire)
    assert error.message == (
        "Specified signature is not matched with our calculation. server string to sign is:"
        + V2_STRING_TO_SIGN
    )


def test_v2_unsigned_headers_do_not_matter() -> None:
    """§2: under v2 the x-acs-* headers are unsigned; action and version come from the query."""
    wire = parse_wire(V2_WIRE).header("x-acs-action", "UnbindSubscription")
    assert verify(wire).action == "BindAxb"


# --- keys, time, nonce ---------------------------------------------------------------------


def test_unknown_key() -> None:
    for text in (
        V3_WIRE.replace("Credential=testid", "Credential=other"),
        V2_WIRE.replace("AccessKeyId=testid", "AccessKeyId=other"),
    ):
        error = refused(parse_wire(text))
        assert (error.code, error.status) == ("InvalidAccessKeyId.NotFound", 404)
        assert error.message == "Specified access key is not found."


def test_wrong_secret() -> None:
    for wire in (make_v2(BUSINESS, secret="nope"), make_v3(BUSINESS, secret="nope")):
        assert refused(wire).code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("text", [V2_WIRE, V3_WIRE], ids=["v2", "v3"])
def test_timestamp_window(text: str) -> None:
    wire = parse_wire(text)
    for skew in (timedelta(minutes=15), -timedelta(minutes=15)):
        assert verify(wire, NOW + skew).timestamp == NOW
    for skew in (timedelta(minutes=15, seconds=1), -timedelta(minutes=15, seconds=1)):
        error = refused(wire, NOW + skew)
        assert (error.code, error.status) == ("InvalidTimeStamp.Expired", 400)


def test_unparsable_timestamp() -> None:
    for wire in (
        make_v2(BUSINESS, envelope=v2_envelope(timestamp="yesterday")),
        make_v3(BUSINESS, date="2025-01-01T00:00:00"),
        make_v3(BUSINESS, date="Wed, 01 Jan 2025 00:00:00 GMT"),
    ):
        error = refused(wire)
        assert (error.code, error.status) == ("InvalidTimeStamp.Format", 400)


def test_nonce_is_exposed_for_the_caller() -> None:
    other = "f" * 32
    assert verify(make_v2({}, envelope=v2_envelope(nonce=other))).nonce == other
    assert (nonce_used_error().code, nonce_used_error().status) == ("SignatureNonceUsed", 400)


# --- v2 specifics --------------------------------------------------------------------------


def test_v2_parameters_in_query_or_form_body() -> None:
    """§2/§7: SDK 1.0.0 sends business parameters in a form body, signed with the query."""
    via_query = verify(make_v2(BUSINESS))
    via_form = verify(make_v2({}, form=BUSINESS))
    assert via_query == via_form
    assert via_form.params == BUSINESS
    mixed = verify(make_v2({"PoolKey": "FC1"}, form={"OutId": "x y"}))
    assert mixed.params == {"PoolKey": "FC1", "OutId": "x y"}


def test_v2_form_body_only_with_form_content_type() -> None:
    wire = make_v2(BUSINESS)
    # an unrelated body type is not parameters (and not signed under v2)
    assert verify(replace(wire, body=b"x=1")).params == BUSINESS


def test_v2_legacy_blank_signature_type_and_get() -> None:
    """§7: the legacy SDK signs a blank ``SignatureType``; §2: GET is accepted too."""
    envelope = {**v2_envelope(), "SignatureType": "", "RegionId": "cn-hangzhou"}
    result = verify(make_v2(BUSINESS, envelope=envelope, method="GET"))
    assert result.params == {**BUSINESS, "RegionId": "cn-hangzhou"}


@pytest.mark.parametrize(
    "name", ["AccessKeyId", "Signature", "SignatureMethod", "SignatureNonce", "Timestamp"]
)
def test_v2_missing_mandatory_parameter(name: str) -> None:
    wire = parse_wire(V2_WIRE)
    kept = [p for p in wire.query.split("&") if not p.startswith(f"{name}=")]
    error = refused(replace(wire, query="&".join(kept)))
    assert (error.code, error.status, error.message) == (
        f"Missing{name}",
        400,
        f"{name} is mandatory for this action.",
    )


def test_v2_signature_method() -> None:
    envelope = {**v2_envelope(), "SignatureMethod": "HMAC-SHA256"}
    error = refused(make_v2(BUSINESS, envelope=envelope))
    assert (error.code, error.status) == ("InvalidSignatureMethod", 400)


def test_v2_missing_action() -> None:
    envelope = v2_envelope()
    del envelope["Action"]
    assert refused(make_v2(BUSINESS, envelope=envelope)).code == "MissingAction"


def test_unsigned_request() -> None:
    error = refused(Wire("POST", "/", "Action=BindAxb", (("host", "x"),)))
    assert error.code == "MissingAccessKeyId"
    error = refused(Wire("POST", "/", "", (("Authorization", "Basic eDp5"),)))
    assert error.code == "IncompleteSignature"


def test_repeated_parameter_is_refused() -> None:
    wire = make_v2(BUSINESS)
    assert refused(replace(wire, query=wire.query + "&PoolKey=FC2")).code == "IncompleteSignature"


# --- v3 specifics --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        "ACS3-HMAC-SM3 Credential=testid,SignedHeaders=host,Signature=" + "0" * 64,
        "ACS3-RSA-SHA256 Credential=testid,SignedHeaders=host,Signature=" + "0" * 64,
        "ACS3-HMAC-SHA256 Credential=testid, SignedHeaders=host,Signature=" + "0" * 64,
        "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host,Signature=" + "A" * 64,
        "ACS3-HMAC-SHA256 Credential=testid,Signature=" + "0" * 64,
    ],
)
def test_v3_malformed_authorization(authorization: str) -> None:
    wire = parse_wire(V3_WIRE).header("Authorization", authorization)
    error = refused(wire)
    assert (error.code, error.status) == ("IncompleteSignature", 400)
    assert error.message.startswith("The request signature does not conform to Aliyun standards.")


@pytest.mark.parametrize("dropped", ["host", "x-acs-date", "x-acs-content-sha256"])
def test_v3_required_signed_headers(dropped: str) -> None:
    signed = ";".join(n for n in SIGNED.split(";") if n != dropped)
    text = V3_WIRE.replace(f"SignedHeaders={SIGNED}", f"SignedHeaders={signed}")
    assert refused(parse_wire(text)).code == "IncompleteSignature"


def test_v3_signed_header_not_received() -> None:
    wire = parse_wire(V3_WIRE)
    wire = replace(wire, headers=tuple(h for h in wire.headers if h[0] != "user-agent"))
    assert refused(wire).code == "IncompleteSignature"


def test_v3_signs_over_received_headers_only() -> None:
    """§3 step 2: other SDKs sign fewer headers; unsigned ones may change freely."""
    wire = make_v3(BUSINESS).header("Accept-Encoding", "gzip").header("x-unsigned", "1")
    assert verify(wire).params == BUSINESS


def test_v3_repeated_header_values_sorted_and_joined() -> None:
    wire = make_v3(BUSINESS, extra_headers={"x-acs-extra": "b,a"})
    # the signer saw "b,a"; a receiver that got the values as two header lines "b" and "a"
    # joins them sorted: "a,b" — different from the signed "b,a"
    split = replace(
        wire,
        headers=(
            *(h for h in wire.headers if h[0] != "x-acs-extra"),
            ("x-acs-extra", "b"),
            ("x-acs-extra", "a"),
        ),
    )
    assert refused(split).code == "SignatureDoesNotMatch"
    ordered = make_v3(BUSINESS, extra_headers={"x-acs-extra": "a,b"})
    split = replace(
        ordered,
        headers=(
            *(h for h in ordered.headers if h[0] != "x-acs-extra"),
            ("x-acs-extra", " b "),
            ("x-acs-extra", "a"),
        ),
    )
    assert verify(split).params == BUSINESS


def test_v3_form_body_is_covered_by_payload_hash() -> None:
    body = urlencode({"OutId": "from body"}).encode()
    wire = make_v3(
        {"PoolKey": "FC1"},
        body=body,
        extra_headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert verify(wire).params == {"PoolKey": "FC1", "OutId": "from body"}
    error = refused(replace(wire, body=body.replace(b"body", b"bodY")))
    assert error.code == "SignatureDoesNotMatch"


def test_v3_action_from_query_wins() -> None:
    wire = make_v3({"Action": "UnbindSubscription", "Version": "2017-05-25", "SubsId": "1"})
    result = verify(wire)
    assert (result.action, result.params) == ("UnbindSubscription", {"SubsId": "1"})


# --- properties ----------------------------------------------------------------------------

ENVELOPE = {
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
names = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.",
    min_size=1,
    max_size=12,
).filter(lambda n: n not in ENVELOPE)
values = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.text(alphabet=" !\"#$%&'()*+,/:;<=>?@[\\]^`{|}~-_.", max_size=20),
)
param_dicts = st.dictionaries(names, values, max_size=8)


@settings(max_examples=150, deadline=None)
@given(params=param_dicts, data=st.data())
def test_v2_property_sign_verify_mutate(params: dict[str, str], data: st.DataObject) -> None:
    in_form = data.draw(st.booleans())
    wire = make_v2({}, form=params) if in_form else make_v2(params)
    assert verify(wire).params == params
    if params:
        name = data.draw(st.sampled_from(sorted(params)))
        changed = {**params, name: params[name] + data.draw(st.sampled_from(["x", " ", "*"]))}
        tampered = make_v2(changed) if not in_form else make_v2({}, form=changed)
        original_signature = dict(parse_form(wire.query))["Signature"]
        query = dict(parse_form(tampered.query))
        query["Signature"] = original_signature
        forged = replace(tampered, query=urlencode(query))
        assert refused(forged).code == "SignatureDoesNotMatch"
    extra = data.draw(names.filter(lambda n: n not in params))
    added = replace(wire, query=wire.query + "&" + urlencode({extra: ""}))
    assert refused(added).code == "SignatureDoesNotMatch"
    assert refused(replace(wire, method="PUT")).code == "SignatureDoesNotMatch"


@settings(max_examples=150, deadline=None)
@given(params=param_dicts, data=st.data())
def test_v3_property_sign_verify_mutate(params: dict[str, str], data: st.DataObject) -> None:
    wire = make_v3(params)
    assert verify(wire).params == params
    if params:
        name = data.draw(st.sampled_from(sorted(params)))
        changed = {**params, name: params[name] + data.draw(st.sampled_from(["x", " ", "~"]))}
        assert refused(replace(wire, query=urlencode(changed))).code == "SignatureDoesNotMatch"
        dropped = {k: v for k, v in params.items() if k != name}
        assert refused(replace(wire, query=urlencode(dropped))).code == "SignatureDoesNotMatch"
    header = data.draw(st.sampled_from(["host", "user-agent", "x-acs-action", "accept"]))
    value = dict(wire.headers)[header]
    assert refused(wire.header(header, value + "x")).code == "SignatureDoesNotMatch"
    assert refused(replace(wire, body=b"\x00")).code == "SignatureDoesNotMatch"
