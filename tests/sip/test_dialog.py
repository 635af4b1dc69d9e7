"""RFC 3261 §12 dialogs: creation from real messages, request construction, state table."""

from __future__ import annotations

import itertools
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sip import parse_message
from sip.dialog import (
    DIALOG_TRANSITIONS,
    MAX_FORWARDS,
    ROLE_FORBIDDEN,
    CSeqOutOfOrder,
    Dialog,
    DialogId,
    DialogInput,
    DialogRole,
    DialogState,
    DialogStateError,
)
from sip.errors import CallDoesNotExist, SipError, SipParseError, SipUsageError
from sip.headers import CSEQ_MAX, NameAddr
from sip.message import Request, Response
from sip.uri import SipUri, parse_uri

CRLF = b"\r\n"


def _msg(*lines: str, body: bytes = b"") -> bytes:
    head = [*lines, f"Content-Length: {len(body)}"]
    return CRLF.join(line.encode() for line in head) + CRLF + CRLF + body


def _request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def _response(data: bytes) -> Response:
    message = parse_message(data)
    assert isinstance(message, Response)
    return message


SDP = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\n"
    b"c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)

# --- the UAC side: alice (us) calls bob through p1 (near us) and p2 (near bob) -----

ALICE_INVITE = _msg(
    "INVITE sip:bob@biloxi.example.com SIP/2.0",
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8;rport",
    "Max-Forwards: 70",
    'To: "Bob" <sip:bob@biloxi.example.com>',
    'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@192.0.2.10:5060;transport=udp>",
    "Content-Type: application/sdp",
    body=SDP,
)

# Proxies prepend Record-Route, so the response lists p2 (near bob) first.
BOB_180 = _msg(
    "SIP/2.0 180 Ringing",
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8;rport=5060",
    "Record-Route: <sip:p2.biloxi.example.com;lr>",
    "Record-Route: <sip:p1.atlanta.example.com;lr>",
    'To: "Bob" <sip:bob@biloxi.example.com>;tag=a6c85cf',
    'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:bob@198.51.100.20:5062>",
)

# The 2xx travels a different proxy path (p3 replaces p2): the route set is recomputed.
BOB_200 = _msg(
    "SIP/2.0 200 OK",
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8;rport=5060",
    "Record-Route: <sip:p3.biloxi.example.com;lr>, <sip:p1.atlanta.example.com;lr>",
    'To: "Bob" <sip:bob@biloxi.example.com>;tag=a6c85cf',
    'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:bob@198.51.100.21:5064>",
    "Content-Type: application/sdp",
    body=SDP,
)

# The nearest hop (listed last) is an RFC 2543 strict router: no ``lr``.
BOB_200_STRICT = _msg(
    "SIP/2.0 200 OK",
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8;rport=5060",
    "Record-Route: <sip:p2.biloxi.example.com;lr>",
    "Record-Route: <sip:strict.atlanta.example.com;maddr=203.0.113.7;method=INVITE>",
    'To: "Bob" <sip:bob@biloxi.example.com>;tag=a6c85cf',
    'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:bob@198.51.100.20:5062>",
)

# --- the UAS side: we are bob, reached through p2 (near us) and p1 ---------------------

INVITE_TO_BOB = _msg(
    "INVITE sip:bob@198.51.100.20:5062 SIP/2.0",
    "Via: SIP/2.0/UDP p2.biloxi.example.com;branch=z9hG4bK4b43c2ff8.1",
    "Via: SIP/2.0/UDP p1.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1",
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8;received=192.0.2.10",
    "Max-Forwards: 68",
    "Record-Route: <sip:p2.biloxi.example.com;lr>, <sip:p1.atlanta.example.com;lr>",
    'To: "Bob" <sip:bob@biloxi.example.com>',
    'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@192.0.2.10:5060;transport=udp>",
    "Content-Type: application/sdp",
    body=SDP,
)

BOB_TAG = "a6c85cf"
BOB_CONTACT = NameAddr(uri=SipUri(host="198.51.100.20", port=5062, user="bob"))


def _in_dialog_from_alice(
    method: str, seq: int, *, contact: str | None = None, extra: tuple[str, ...] = ()
) -> Request:
    """A request alice sends to bob inside the dialog, as bob receives it."""
    lines = [
        f"{method} sip:bob@198.51.100.20:5062 SIP/2.0",
        "Via: SIP/2.0/UDP p2.biloxi.example.com;branch=z9hG4bK4b43c2ff8.9",
        "Max-Forwards: 69",
        f'To: "Bob" <sip:bob@biloxi.example.com>;tag={BOB_TAG}',
        'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
        f"CSeq: {seq} {method}",
        *extra,
    ]
    if contact is not None:
        lines.append(f"Contact: <{contact}>")
    return _request(_msg(*lines))


def _reply(request: Request, status: int, *, contact: str | None = None) -> Response:
    """A response from the peer to ``request`` (which we built), tags already in place."""
    lines = [
        f"SIP/2.0 {status} Whatever",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKx",
        f"To: {request.headers.get('To')}",
        f"From: {request.headers.get('From')}",
        f"Call-ID: {request.call_id}",
        f"CSeq: {request.cseq}",
    ]
    if contact is not None:
        lines.append(f"Contact: <{contact}>")
    return _response(_msg(*lines))


def uac_early() -> Dialog:
    return Dialog.create_uac(_request(ALICE_INVITE), _response(BOB_180))


def uac_confirmed() -> Dialog:
    return Dialog.create_uac(_request(ALICE_INVITE), _response(BOB_200))


def uas_early() -> Dialog:
    return Dialog.create_uas(_request(INVITE_TO_BOB), BOB_TAG, BOB_CONTACT)


def uas_confirmed() -> Dialog:
    dialog = uas_early()
    dialog.confirm()
    return dialog


def _route_uris(request: Request) -> list[str]:
    return [str(route.uri) for route in request.routes]


# --- identity -----------------------------------------------------------------------


def test_dialog_id_helpers_agree_on_both_sides() -> None:
    invite = _request(INVITE_TO_BOB)
    uas_id = DialogId.for_uas_request(invite, BOB_TAG)
    assert uas_id == DialogId("a84b4c76e66710@pc33.atlanta.example.com", BOB_TAG, "1928301774")
    uac_id = DialogId.for_uac_response(_response(BOB_180))
    assert uac_id == DialogId("a84b4c76e66710@pc33.atlanta.example.com", "1928301774", BOB_TAG)
    # A BYE from alice, as bob receives it, looks up bob's dialog.
    assert DialogId.for_incoming_request(_in_dialog_from_alice("BYE", 314160)) == uas_id


def test_dialog_id_treats_missing_tags_as_empty() -> None:
    rfc2543 = _request(
        _msg(
            "INVITE sip:bob@198.51.100.20 SIP/2.0",
            "Via: SIP/2.0/UDP 192.0.2.10;branch=1234",
            "To: <sip:bob@biloxi.example.com>",
            "From: <sip:alice@atlanta.example.com>",
            "Call-ID: 2543@192.0.2.10",
            "CSeq: 1 INVITE",
            "Contact: <sip:alice@192.0.2.10>",
        )
    )
    assert DialogId.for_uas_request(rfc2543, "t1") == DialogId("2543@192.0.2.10", "t1", "")
    assert DialogId.for_incoming_request(rfc2543) == DialogId("2543@192.0.2.10", "", "")
    dialog = Dialog.create_uas(rfc2543, "t1", BOB_CONTACT)
    dialog.confirm()
    bye = dialog.create_request("BYE")
    assert bye.to_tag is None
    assert bye.headers.get("To") == "<sip:alice@atlanta.example.com>"


def test_dialog_id_is_frozen_and_slotted() -> None:
    dialog_id = DialogId("c", "l", "r")
    assert not hasattr(dialog_id, "__dict__")
    with pytest.raises(AttributeError):
        dialog_id.call_id = "x"  # type: ignore[misc]
    assert hash(dialog_id) == hash(DialogId("c", "l", "r"))


# --- UAC creation (§12.1.2) ------------------------------------------------------------


def test_uac_dialog_from_180_is_early_with_reversed_route_set() -> None:
    dialog = uac_early()
    assert dialog.role is DialogRole.UAC
    assert dialog.state is DialogState.EARLY
    assert dialog.id == DialogId("a84b4c76e66710@pc33.atlanta.example.com", "1928301774", "a6c85cf")
    assert (dialog.call_id, dialog.local_tag, dialog.remote_tag) == (
        "a84b4c76e66710@pc33.atlanta.example.com",
        "1928301774",
        "a6c85cf",
    )
    assert [str(r.uri) for r in dialog.route_set] == [
        "sip:p1.atlanta.example.com;lr",
        "sip:p2.biloxi.example.com;lr",
    ]
    assert dialog.remote_target == parse_uri("sip:bob@198.51.100.20:5062")
    assert dialog.local_cseq == 314159
    assert dialog.remote_cseq is None
    assert str(dialog.local_uri) == '"Alice" <sip:alice@atlanta.example.com>'
    assert str(dialog.remote_uri) == '"Bob" <sip:bob@biloxi.example.com>'
    assert str(dialog.local_contact) == "<sip:alice@192.0.2.10:5060;transport=udp>"
    assert dialog.secure is False


def test_uac_2xx_confirms_early_dialog_and_recomputes_route_set_and_target() -> None:
    dialog = uac_early()
    dialog.receive_response("INVITE", _response(BOB_200))
    assert dialog.state is DialogState.CONFIRMED
    # §13.2.2.4: the route set comes from the 2xx now.
    assert [str(r.uri) for r in dialog.route_set] == [
        "sip:p1.atlanta.example.com;lr",
        "sip:p3.biloxi.example.com;lr",
    ]
    assert dialog.remote_target == parse_uri("sip:bob@198.51.100.21:5064")


def test_uac_dialog_from_200_is_confirmed() -> None:
    dialog = uac_confirmed()
    assert dialog.state is DialogState.CONFIRMED
    assert [str(r.uri) for r in dialog.route_set] == [
        "sip:p1.atlanta.example.com;lr",
        "sip:p3.biloxi.example.com;lr",
    ]


def test_uac_further_1xx_keeps_early_dialog() -> None:
    dialog = uac_early()
    dialog.receive_response("INVITE", _response(BOB_180))
    assert dialog.state is DialogState.EARLY


def test_uac_non2xx_final_terminates_early_dialog() -> None:
    dialog = uac_early()
    busy = _response(BOB_180.replace(b"180 Ringing", b"486 Busy Here"))
    dialog.receive_response("INVITE", busy)
    assert dialog.state is DialogState.TERMINATED


def test_uac_creation_needs_a_dialog_forming_response() -> None:
    invite = _request(ALICE_INVITE)
    trying = _response(BOB_180.replace(b"180 Ringing", b"100 Trying").replace(b";tag=a6c85cf", b""))
    with pytest.raises(SipUsageError):
        Dialog.create_uac(invite, trying)
    with pytest.raises(SipUsageError):
        Dialog.create_uac(invite, _response(BOB_200.replace(b"200 OK", b"486 Busy Here")))


def test_uac_2xx_without_contact_falls_back_to_request_uri() -> None:
    no_contact = _response(BOB_200.replace(b"Contact: <sip:bob@198.51.100.21:5064>\r\n", b""))
    dialog = Dialog.create_uac(_request(ALICE_INVITE), no_contact)
    assert dialog.remote_target == parse_uri("sip:bob@biloxi.example.com")


def test_sips_request_uri_makes_dialog_secure() -> None:
    invite = _request(ALICE_INVITE.replace(b"INVITE sip:bob@", b"INVITE sips:bob@"))
    assert Dialog.create_uac(invite, _response(BOB_200)).secure is True
    uas_invite = _request(INVITE_TO_BOB.replace(b"INVITE sip:bob@", b"INVITE sips:bob@"))
    assert Dialog.create_uas(uas_invite, BOB_TAG, BOB_CONTACT).secure is True


# --- UAS creation (§12.1.1) ------------------------------------------------------------


def test_uas_dialog_keeps_route_set_in_order() -> None:
    dialog = uas_early()
    assert dialog.role is DialogRole.UAS
    assert dialog.state is DialogState.EARLY
    assert dialog.id == DialogId("a84b4c76e66710@pc33.atlanta.example.com", BOB_TAG, "1928301774")
    assert [str(r.uri) for r in dialog.route_set] == [
        "sip:p2.biloxi.example.com;lr",
        "sip:p1.atlanta.example.com;lr",
    ]
    assert dialog.remote_target == parse_uri("sip:alice@192.0.2.10:5060;transport=udp")
    assert dialog.remote_cseq == 314159
    assert dialog.local_cseq == 0
    assert str(dialog.local_uri) == '"Bob" <sip:bob@biloxi.example.com>'
    assert str(dialog.remote_uri) == '"Alice" <sip:alice@atlanta.example.com>'
    assert dialog.local_contact == BOB_CONTACT


def test_uas_confirm_on_2xx() -> None:
    dialog = uas_early()
    dialog.confirm()
    assert dialog.state is DialogState.CONFIRMED


def test_uas_accepts_a_bare_sip_uri_as_contact() -> None:
    bare = SipUri(host="198.51.100.20", port=5062, user="bob")
    dialog = Dialog.create_uas(_request(INVITE_TO_BOB), BOB_TAG, bare)
    assert dialog.local_contact == BOB_CONTACT


def test_uas_creation_rejects_bad_input() -> None:
    invite = _request(INVITE_TO_BOB)
    with pytest.raises(SipUsageError):
        Dialog.create_uas(invite, "", BOB_CONTACT)
    with pytest.raises(SipUsageError):
        Dialog.create_uas(_in_dialog_from_alice("INVITE", 7, contact="sip:a@h"), "x", BOB_CONTACT)
    no_contact = _request(
        INVITE_TO_BOB.replace(b"Contact: <sip:alice@192.0.2.10:5060;transport=udp>\r\n", b"")
    )
    with pytest.raises(SipParseError) as caught:
        Dialog.create_uas(no_contact, BOB_TAG, BOB_CONTACT)
    assert caught.value.status_code == 400


# --- building requests (§12.2.1.1) -----------------------------------------------------


def test_uac_bye_uses_loose_routing() -> None:
    dialog = uac_confirmed()
    bye = dialog.create_request("BYE")
    assert bye.method == "BYE"
    assert bye.uri == parse_uri("sip:bob@198.51.100.21:5064")
    assert _route_uris(bye) == ["sip:p1.atlanta.example.com;lr", "sip:p3.biloxi.example.com;lr"]
    assert bye.cseq.seq == 314160
    assert bye.cseq.method == "BYE"
    assert bye.from_tag == "1928301774"
    assert bye.to_tag == "a6c85cf"
    assert str(bye.from_.uri) == "sip:alice@atlanta.example.com"
    assert str(bye.to.uri) == "sip:bob@biloxi.example.com"
    assert bye.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert bye.max_forwards == MAX_FORWARDS
    assert "Via" not in bye.headers
    assert "Contact" not in bye.headers
    assert bye.headers.get("Content-Length") == "0"


def test_uac_strict_router_takes_the_request_uri() -> None:
    dialog = Dialog.create_uac(_request(ALICE_INVITE), _response(BOB_200_STRICT))
    assert [str(r.uri) for r in dialog.route_set] == [
        "sip:strict.atlanta.example.com;maddr=203.0.113.7;method=INVITE",
        "sip:p2.biloxi.example.com;lr",
    ]
    bye = dialog.create_request("BYE")
    # §12.2.1.1: the first route becomes the R-URI, minus what a R-URI may not carry.
    assert bye.uri == parse_uri("sip:strict.atlanta.example.com;maddr=203.0.113.7")
    # The rest of the route set, then the remote target, go in Route.
    assert _route_uris(bye) == ["sip:p2.biloxi.example.com;lr", "sip:bob@198.51.100.20:5062"]


def test_no_route_set_sends_to_remote_target_without_route() -> None:
    invite = _request(ALICE_INVITE)
    direct = _response(
        BOB_200.replace(
            b"Record-Route: <sip:p3.biloxi.example.com;lr>, <sip:p1.atlanta.example.com;lr>\r\n",
            b"",
        )
    )
    dialog = Dialog.create_uac(invite, direct)
    assert dialog.route_set == ()
    bye = dialog.create_request("BYE")
    assert bye.uri == parse_uri("sip:bob@198.51.100.21:5064")
    assert "Route" not in bye.headers


def test_request_uri_drops_headers_and_method_of_remote_target() -> None:
    response = _response(
        BOB_200.replace(
            b"Contact: <sip:bob@198.51.100.21:5064>",
            b"Contact: <sip:bob@198.51.100.21:5064;method=INVITE;transport=tcp?Subject=hi>",
        )
    )
    dialog = Dialog.create_uac(_request(ALICE_INVITE), response)
    info = dialog.create_request("INFO")
    assert info.uri == parse_uri("sip:bob@198.51.100.21:5064;transport=tcp")


def test_uas_requests_swap_from_and_to() -> None:
    dialog = uas_confirmed()
    bye = dialog.create_request("BYE")
    assert bye.from_tag == BOB_TAG
    assert bye.to_tag == "1928301774"
    assert bye.headers.get("From") == f'"Bob" <sip:bob@biloxi.example.com>;tag={BOB_TAG}'
    assert bye.headers.get("To") == '"Alice" <sip:alice@atlanta.example.com>;tag=1928301774'
    # Local CSeq started empty: the first request uses 1.
    assert bye.cseq.seq == 1
    assert bye.uri == parse_uri("sip:alice@192.0.2.10:5060;transport=udp")
    assert _route_uris(bye) == ["sip:p2.biloxi.example.com;lr", "sip:p1.atlanta.example.com;lr"]


def test_cseq_increments_per_request_and_ack_keeps_the_invites() -> None:
    dialog = uac_confirmed()
    ack = dialog.create_ack(314159)
    assert ack.cseq.seq == 314159
    assert ack.cseq.method == "ACK"
    assert "Contact" not in ack.headers
    assert ack.uri == parse_uri("sip:bob@198.51.100.21:5064")
    assert dialog.local_cseq == 314159
    reinvite = dialog.create_request("INVITE", body=SDP, content_type="application/sdp")
    assert reinvite.cseq.seq == 314160
    assert dialog.create_ack(314160).cseq.seq == 314160
    assert dialog.create_request("INFO").cseq.seq == 314161
    assert dialog.create_request("UPDATE").cseq.seq == 314162
    assert dialog.local_cseq == 314162


def test_ack_rejects_a_cseq_never_sent_and_an_early_dialog() -> None:
    with pytest.raises(SipUsageError):
        uac_confirmed().create_ack(314160)
    with pytest.raises(DialogStateError):
        uac_early().create_ack(314159)


def test_target_refresh_requests_carry_our_contact() -> None:
    dialog = uac_confirmed()
    for method in ("INVITE", "UPDATE"):
        request = dialog.create_request(method)
        assert request.contacts == [dialog.local_contact]
    for method in ("INFO", "OPTIONS", "BYE"):
        assert "Contact" not in dialog.create_request(method).headers


def test_body_extra_headers_and_content_type() -> None:
    dialog = uac_confirmed()
    reinvite = dialog.create_request(
        "INVITE",
        extra_headers=[("Supported", "timer"), ("Session-Expires", "1800;refresher=uac")],
        body=SDP,
        content_type="application/sdp",
    )
    assert reinvite.body == SDP
    assert reinvite.content_type == "application/sdp"
    assert reinvite.supported == ["timer"]
    assert reinvite.headers.get("Content-Length") == str(len(SDP))
    with pytest.raises(SipUsageError):
        dialog.create_request("INFO", body=b"x")
    with pytest.raises(SipUsageError):
        dialog.create_request("INFO", extra_headers=[("cseq", "1 INFO")])
    with pytest.raises(SipUsageError):
        dialog.create_request("INFO", extra_headers=[("v", "SIP/2.0/UDP h;branch=z9hG4bKa")])
    with pytest.raises(SipUsageError):
        dialog.create_request("ACK")
    with pytest.raises(SipUsageError):
        dialog.create_request("CANCEL")
    # Failed builds consume no CSeq.
    assert dialog.local_cseq == 314160


def test_local_cseq_space_is_bounded() -> None:
    dialog = uac_confirmed()
    dialog.local_cseq = CSEQ_MAX
    with pytest.raises(SipUsageError):
        dialog.create_request("INFO")
    assert dialog.state is DialogState.CONFIRMED


def test_uac_creation_needs_our_contact() -> None:
    no_contact = _request(
        ALICE_INVITE.replace(b"Contact: <sip:alice@192.0.2.10:5060;transport=udp>\r\n", b"")
    )
    with pytest.raises(SipUsageError):
        Dialog.create_uac(no_contact, _response(BOB_200))


def test_contact_in_extra_headers_replaces_ours() -> None:
    dialog = uac_confirmed()
    reinvite = dialog.create_request(
        "INVITE", extra_headers=[("Contact", "<sip:alice@192.0.2.99:5080>")]
    )
    assert [str(c.uri) for c in reinvite.contacts] == ["sip:alice@192.0.2.99:5080"]


# --- receiving requests (§12.2.2) ------------------------------------------------------


def test_reinvite_refreshes_remote_target() -> None:
    dialog = uas_confirmed()
    dialog.receive_request(_in_dialog_from_alice("INVITE", 314160, contact="sip:alice@192.0.2.55"))
    assert dialog.remote_target == parse_uri("sip:alice@192.0.2.55")
    assert dialog.remote_cseq == 314160
    assert dialog.create_request("BYE").uri == parse_uri("sip:alice@192.0.2.55")


def test_update_refreshes_remote_target_even_in_early_dialog() -> None:
    dialog = uas_early()
    dialog.receive_request(_in_dialog_from_alice("UPDATE", 314160, contact="sip:alice@192.0.2.56"))
    assert dialog.remote_target == parse_uri("sip:alice@192.0.2.56")
    assert dialog.state is DialogState.EARLY


def test_non_refresh_request_keeps_remote_target() -> None:
    dialog = uas_confirmed()
    before = dialog.remote_target
    dialog.receive_request(_in_dialog_from_alice("INFO", 314160, contact="sip:alice@192.0.2.57"))
    assert dialog.remote_target == before
    # A re-INVITE without Contact keeps the target too.
    dialog.receive_request(_in_dialog_from_alice("INVITE", 314161))
    assert dialog.remote_target == before


@pytest.mark.parametrize("seq", [314158, 314159])
def test_cseq_not_advancing_is_answered_500(seq: int) -> None:
    dialog = uas_confirmed()
    with pytest.raises(CSeqOutOfOrder) as caught:
        dialog.receive_request(_in_dialog_from_alice("INFO", seq))
    assert isinstance(caught.value, SipError)
    assert caught.value.status_code == 500
    assert caught.value.reason_phrase.startswith("CSeq out of order")
    assert dialog.remote_cseq == 314159
    assert dialog.state is DialogState.CONFIRMED


def test_out_of_order_refresh_does_not_change_target() -> None:
    dialog = uas_confirmed()
    before = dialog.remote_target
    with pytest.raises(CSeqOutOfOrder):
        dialog.receive_request(_in_dialog_from_alice("INVITE", 5, contact="sip:evil@192.0.2.66"))
    assert dialog.remote_target == before


def test_ack_and_cancel_are_exempt_from_cseq_ordering() -> None:
    dialog = uas_confirmed()
    dialog.receive_request(_in_dialog_from_alice("ACK", 314159))
    dialog.receive_request(_in_dialog_from_alice("CANCEL", 314159))
    assert dialog.remote_cseq == 314159
    assert dialog.state is DialogState.CONFIRMED


def test_first_request_sets_empty_remote_cseq() -> None:
    dialog = uac_confirmed()  # remote CSeq empty: bob has sent no request yet
    bye_from_bob = _request(
        _msg(
            "BYE sip:alice@192.0.2.10:5060;transport=udp SIP/2.0",
            "Via: SIP/2.0/UDP p1.atlanta.example.com;branch=z9hG4bKbye1",
            "Max-Forwards: 69",
            'From: "Bob" <sip:bob@biloxi.example.com>;tag=a6c85cf',
            'To: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
            "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
            "CSeq: 0 BYE",
        )
    )
    assert DialogId.for_incoming_request(bye_from_bob) == dialog.id
    dialog.receive_request(bye_from_bob)
    assert dialog.remote_cseq == 0
    assert dialog.state is DialogState.TERMINATED


def test_bye_terminates_and_later_requests_get_481() -> None:
    dialog = uas_confirmed()
    dialog.receive_request(_in_dialog_from_alice("BYE", 314160))
    assert dialog.state is DialogState.TERMINATED
    assert dialog.is_terminated
    with pytest.raises(CallDoesNotExist) as caught:
        dialog.receive_request(_in_dialog_from_alice("INFO", 314161))
    assert caught.value.status_code == 481
    assert dialog.remote_cseq == 314160


def test_bye_in_early_dialog_terminates() -> None:
    dialog = uas_early()
    dialog.receive_request(_in_dialog_from_alice("BYE", 314160))
    assert dialog.state is DialogState.TERMINATED


def test_stray_ack_in_early_dialog_is_not_a_dialog_event() -> None:
    dialog = uas_early()
    with pytest.raises(CallDoesNotExist):
        dialog.receive_request(_in_dialog_from_alice("ACK", 314159))
    assert dialog.state is DialogState.EARLY


def test_foreign_message_is_a_usage_error() -> None:
    dialog = uas_confirmed()
    foreign = _request(
        _msg(
            "BYE sip:bob@198.51.100.20:5062 SIP/2.0",
            "Via: SIP/2.0/UDP p2.biloxi.example.com;branch=z9hG4bKz",
            "To: <sip:bob@biloxi.example.com>;tag=other",
            "From: <sip:alice@atlanta.example.com>;tag=1928301774",
            "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
            "CSeq: 314160 BYE",
        )
    )
    with pytest.raises(SipUsageError):
        dialog.receive_request(foreign)
    with pytest.raises(SipUsageError):
        uac_early().receive_response("INVITE", _response(BOB_180.replace(b"a6c85cf", b"fork2")))
    assert dialog.state is DialogState.CONFIRMED


# --- receiving responses (§12.2.1.2) ---------------------------------------------------


def test_2xx_to_reinvite_and_update_refreshes_remote_target() -> None:
    dialog = uac_confirmed()
    reinvite = dialog.create_request("INVITE")
    dialog.receive_response("INVITE", _reply(reinvite, 200, contact="sip:bob@198.51.100.30"))
    assert dialog.remote_target == parse_uri("sip:bob@198.51.100.30")
    update = dialog.create_request("UPDATE")
    dialog.receive_response("UPDATE", _reply(update, 200, contact="sip:bob@198.51.100.31"))
    assert dialog.remote_target == parse_uri("sip:bob@198.51.100.31")
    info = dialog.create_request("INFO")
    dialog.receive_response("INFO", _reply(info, 200, contact="sip:bob@198.51.100.32"))
    assert dialog.remote_target == parse_uri("sip:bob@198.51.100.31")
    # Only the INVITE that created the dialog recomputes the route set.
    assert [str(r.uri) for r in dialog.route_set] == [
        "sip:p1.atlanta.example.com;lr",
        "sip:p3.biloxi.example.com;lr",
    ]


def test_non2xx_to_target_refresh_keeps_target() -> None:
    dialog = uac_confirmed()
    before = dialog.remote_target
    reinvite = dialog.create_request("INVITE")
    dialog.receive_response("INVITE", _reply(reinvite, 488, contact="sip:bob@198.51.100.40"))
    assert dialog.remote_target == before
    assert dialog.state is DialogState.CONFIRMED  # §14.1: a failed re-INVITE leaves the dialog


@pytest.mark.parametrize("status", [481, 408])
@pytest.mark.parametrize("method", ["INVITE", "INFO", "UPDATE"])
def test_481_and_408_terminate_the_dialog(status: int, method: str) -> None:
    dialog = uac_confirmed()
    request = dialog.create_request(method)
    dialog.receive_response(method, _reply(request, status))
    assert dialog.state is DialogState.TERMINATED


def test_failed_update_keeps_early_dialog() -> None:
    dialog = uac_early()
    update = dialog.create_request("UPDATE")
    dialog.receive_response("UPDATE", _reply(update, 491))
    assert dialog.state is DialogState.EARLY


def test_provisional_without_to_tag_is_ignored() -> None:
    dialog = uac_early()
    trying = _response(BOB_180.replace(b"180 Ringing", b"100 Trying").replace(b";tag=a6c85cf", b""))
    dialog.receive_response("INVITE", trying)
    assert dialog.state is DialogState.EARLY


def test_sending_bye_terminates_and_absorbs_its_response() -> None:
    dialog = uac_confirmed()
    bye = dialog.create_request("BYE")
    assert dialog.state is DialogState.TERMINATED
    dialog.receive_response("BYE", _reply(bye, 200))
    # A retransmitted 2xx to the INVITE must still be acknowledged (§13.2.2.4).
    dialog.receive_response("INVITE", _response(BOB_200))
    assert dialog.create_ack(314159).cseq.seq == 314159
    assert dialog.state is DialogState.TERMINATED
    with pytest.raises(DialogStateError):
        dialog.create_request("BYE")
    with pytest.raises(DialogStateError):
        dialog.create_request("INFO")
    assert dialog.local_cseq == 314160


def test_uas_must_not_send_bye_on_early_dialog() -> None:
    dialog = uas_early()
    with pytest.raises(DialogStateError) as caught:
        dialog.create_request("BYE")
    assert caught.value.state is DialogState.EARLY
    assert caught.value.input is DialogInput.SEND_BYE
    assert dialog.state is DialogState.EARLY
    assert dialog.local_cseq == 0
    # The caller may (§15).
    early = uac_early()
    early.create_request("BYE")
    assert early.state is DialogState.TERMINATED


def test_terminate_is_idempotent_and_confirm_after_it_fails() -> None:
    dialog = uas_early()
    dialog.terminate()
    dialog.terminate()
    assert dialog.state is DialogState.TERMINATED
    with pytest.raises(DialogStateError):
        dialog.confirm()


def test_dialog_has_no_instance_dict() -> None:
    assert not hasattr(uac_confirmed(), "__dict__")
    assert "Dialog UAC CONFIRMED" in repr(uac_confirmed())


# --- the transition table ----------------------------------------------------------


_STATE_FACTORIES = {
    (DialogRole.UAC, DialogState.EARLY): uac_early,
    (DialogRole.UAC, DialogState.CONFIRMED): uac_confirmed,
    (DialogRole.UAS, DialogState.EARLY): uas_early,
    (DialogRole.UAS, DialogState.CONFIRMED): uas_confirmed,
}


def _dialog_in(role: DialogRole, state: DialogState) -> Dialog:
    if state is DialogState.TERMINATED:
        dialog = _STATE_FACTORIES[(role, DialogState.EARLY)]()
        dialog.terminate()
        return dialog
    return _STATE_FACTORIES[(role, state)]()


def _expected(role: DialogRole, state: DialogState, input_: DialogInput) -> DialogState | None:
    if (role, state, input_) in ROLE_FORBIDDEN:
        return None
    return DIALOG_TRANSITIONS.get((state, input_))


@pytest.mark.parametrize(
    ("role", "state", "input_"),
    list(itertools.product(DialogRole, DialogState, DialogInput)),
    ids=lambda value: value.name,
)
def test_every_state_input_pair_follows_the_table(
    role: DialogRole, state: DialogState, input_: DialogInput
) -> None:
    dialog = _dialog_in(role, state)
    assert dialog.state is state
    expected = _expected(role, state, input_)
    received = input_.name.startswith("RECV_")
    if expected is None:
        error = CallDoesNotExist if received else DialogStateError
        with pytest.raises(error):
            dialog._fire(input_, received=received)
        assert dialog.state is state  # an illegal input changes nothing
    else:
        assert dialog._fire(input_, received=received) is expected
        assert dialog.state is expected


def test_table_only_names_known_states_and_inputs() -> None:
    for (state, input_), target in DIALOG_TRANSITIONS.items():
        assert isinstance(state, DialogState)
        assert isinstance(input_, DialogInput)
        assert isinstance(target, DialogState)
    for _, state, input_ in ROLE_FORBIDDEN:
        assert (state, input_) in DIALOG_TRANSITIONS  # forbidding a missing row is dead code


def test_every_state_reaches_terminated_and_terminated_is_absorbing() -> None:
    edges: dict[DialogState, set[DialogState]] = {state: set() for state in DialogState}
    for (state, _), target in DIALOG_TRANSITIONS.items():
        edges[state].add(target)
    for start in DialogState:
        seen = {start}
        queue = deque([start])
        while queue:
            for target in edges[queue.popleft()] - seen:
                seen.add(target)
                queue.append(target)
        assert DialogState.TERMINATED in seen, start
    assert edges[DialogState.TERMINATED] == {DialogState.TERMINATED}
    # Every non-terminal state can be left by a local TERMINATE.
    for state in DialogState:
        assert DIALOG_TRANSITIONS[(state, DialogInput.TERMINATE)] is DialogState.TERMINATED


@given(
    role=st.sampled_from(list(DialogRole)),
    inputs=st.lists(st.sampled_from(list(DialogInput)), max_size=20),
)
def test_random_walks_follow_the_table(role: DialogRole, inputs: list[DialogInput]) -> None:
    dialog = _dialog_in(role, DialogState.EARLY)
    for input_ in inputs:
        before = dialog.state
        expected = _expected(role, before, input_)
        received = input_.name.startswith("RECV_")
        if expected is None:
            with pytest.raises((DialogStateError, CallDoesNotExist)):
                dialog._fire(input_, received=received)
            assert dialog.state is before
        else:
            dialog._fire(input_, received=received)
            assert dialog.state is expected


# --- wire round trip ---------------------------------------------------------------


def _built_requests() -> list[Request]:
    built: list[Request] = []
    for make in (uac_confirmed, uas_confirmed):
        dialog = make()
        built.append(dialog.create_request("INVITE", body=SDP, content_type="application/sdp"))
        built.append(dialog.create_ack(dialog.local_cseq))
        built.append(dialog.create_request("UPDATE", extra_headers=[("Supported", "timer")]))
        built.append(
            dialog.create_request(
                "INFO", body=b"Signal=5\r\n", content_type="application/dtmf-relay"
            )
        )
        built.append(dialog.create_request("OPTIONS"))
        built.append(dialog.create_request("BYE"))
    strict = Dialog.create_uac(_request(ALICE_INVITE), _response(BOB_200_STRICT))
    built.append(strict.create_request("BYE"))
    return built


@pytest.mark.parametrize("request_", _built_requests(), ids=repr)
def test_built_requests_round_trip_on_the_wire(request_: Request) -> None:
    request_.headers.insert_first("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx")
    parsed = parse_message(request_.to_bytes())
    assert parsed == request_
    assert isinstance(parsed, Request)
    parsed.validate()
