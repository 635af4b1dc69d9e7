"""sip.uas: body types per method (a MESSAGE takes text/plain, an INVITE SDP), 415 naming them."""

from __future__ import annotations

import pytest

from sip import parse_message
from sip.message import Request
from sip.uas import DEFAULT_METHODS, UasPolicy, check_request

POLICY = UasPolicy(
    allowed_methods=DEFAULT_METHODS | {"MESSAGE"},
    accepted_content_types=frozenset({"application/sdp"}),
    content_types_by_method={"MESSAGE": frozenset({"text/plain"})},
)


def _request(method: str, content_type: str, body: bytes = b"hello") -> Request:
    data = (
        f"{method} sip:17000000001@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-uas-1\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:13800138000@192.0.2.1>;tag=a\r\n"
        "To: <sip:17000000001@127.0.0.1>\r\n"
        "Call-ID: uas-policy@192.0.2.1\r\n"
        f"CSeq: 1 {method}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    request = parse_message(data)
    assert isinstance(request, Request)
    request.validate()
    return request


def test_a_message_with_text_passes() -> None:
    assert (
        check_request(_request("MESSAGE", "text/plain;charset=UTF-8"), POLICY, to_tag="t") is None
    )


@pytest.mark.parametrize("content_type", ["application/vnd.3gpp.sms", "application/sdp"])
def test_a_message_with_another_body_gets_415_naming_text_plain(content_type: str) -> None:
    response = check_request(_request("MESSAGE", content_type), POLICY, to_tag="t")
    assert response is not None and response.status_code == 415
    assert response.headers.get("Accept") == "text/plain"
    assert response.reason == "Unsupported Media Type (MESSAGE takes text/plain only)"


def test_other_methods_keep_the_general_types() -> None:
    refused = check_request(_request("INVITE", "text/plain"), POLICY, to_tag="t")
    assert refused is not None and refused.status_code == 415
    assert refused.headers.get("Accept") == "application/sdp"
    assert refused.reason == "Unsupported Media Type"
    sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    assert check_request(_request("INVITE", "application/sdp", sdp), POLICY, to_tag="t") is None


def test_message_is_refused_405_where_it_is_not_allowed() -> None:
    response = check_request(_request("MESSAGE", "text/plain"), UasPolicy(), to_tag="t")
    assert response is not None and response.status_code == 405
    assert "MESSAGE" not in (response.headers.get("Allow") or "")
