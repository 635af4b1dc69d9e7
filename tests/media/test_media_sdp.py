"""SDP parsing and the per-leg rewrite (media/sdp.py) on real-world bodies."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.sdp import (
    Connection,
    Direction,
    NotRelayable,
    SdpError,
    SdpOrigin,
    SessionDescription,
    answer_codec,
    codecs,
    keep_relayable_formats,
    local_answer,
    media_endpoint,
    parse_sdp,
    ports_for_stream,
    relayable_stream,
    rewrite_for_leg,
)

# SIPp's built-in uac scenario body with [local_ip]/[media_ip]/[media_port] filled in.
SIPP_DEFAULT = (
    b"v=0\r\n"
    b"o=user1 53655765 2353687637 IN IP4 127.0.0.2\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.2\r\n"
    b"t=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)

# A carrier softswitch offer: G.729 first, then G.711, RFC 4733 events; LF line ends.
CARRIER_G729 = (
    b"v=0\n"
    b"o=HuaweiSoftX3000 1073751234 1073751234 IN IP4 61.135.10.20\n"
    b"s=SX3000 Session\n"
    b"c=IN IP4 61.135.10.21\n"
    b"b=AS:64\n"
    b"t=0 0\n"
    b"m=audio 31570 RTP/AVP 18 8 0 101\n"
    b"a=rtpmap:18 G729/8000\n"
    b"a=fmtp:18 annexb=no\n"
    b"a=rtpmap:8 PCMA/8000\n"
    b"a=rtpmap:0 PCMU/8000\n"
    b"a=rtpmap:101 telephone-event/8000\n"
    b"a=fmtp:101 0-15\n"
    b"a=ptime:20\n"
    b"a=sendrecv\n"
    b"\n"
)

IPV6 = (
    b"v=0\r\n"
    b"o=- 3861219023 3861219023 IN IP6 2001:db8:85a3::8a2e:370:7334\r\n"
    b"s=-\r\n"
    b"c=IN IP6 2001:db8:85a3::8a2e:370:7334\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 8 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
)

# Old-style (RFC 2543) hold: c=0.0.0.0, and a=sendonly at session level.
HOLD = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844527 IN IP4 198.51.100.7\r\n"
    b"s=-\r\n"
    b"c=IN IP4 0.0.0.0\r\n"
    b"t=0 0\r\n"
    b"a=sendonly\r\n"
    b"m=audio 49170 RTP/AVP 0 8\r\n"
)

# Audio and video, media-level c=, a=rtcp with an address, ICE, and identity lines.
TWO_STREAMS = (
    b"v=0\r\n"
    b"o=bob 2808844564 2808844564 IN IP4 203.0.113.9\r\n"
    b"s=Call from Bob 13800138000\r\n"
    b"i=Bob's desk phone\r\n"
    b"u=sip:13800138000@203.0.113.9\r\n"
    b"e=bob@example.com\r\n"
    b"p=+86 138 0013 8000\r\n"
    b"t=0 0\r\n"
    b"a=ice-ufrag:F7gI\r\n"
    b"a=ice-pwd:x9cml/YzichV2+XlhiMu8g\r\n"
    b"a=tool:SoftPhone 4.2\r\n"
    b"m=audio 54400 RTP/SAVP 0 96\r\n"
    b"c=IN IP4 192.168.1.23\r\n"
    b"a=rtpmap:96 opus/48000/2\r\n"
    b"a=rtcp:54401 IN IP4 192.168.1.23\r\n"
    b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n"
    b"a=candidate:1 1 UDP 2130706431 192.168.1.23 54400 typ host\r\n"
    b"a=candidate:2 1 UDP 1694498815 203.0.113.9 61000 typ srflx raddr 192.168.1.23 rport 54400\r\n"
    b"a=recvonly\r\n"
    b"m=video 55400 RTP/AVP 31\r\n"
    b"c=IN IP4 192.168.1.23\r\n"
    b"a=rtcp:55401\r\n"
    b"m=application 0 UDP/BFCP *\r\n"
    b"c=IN IP4 192.168.1.23\r\n"
)

ALL = [SIPP_DEFAULT, CARRIER_G729, IPV6, HOLD, TWO_STREAMS]


def tokens(body: bytes) -> set[str]:
    """Every token of an SDP body, split on the separators SDP uses."""
    return set(re.split(r"[\s:/=]+", body.decode()))


# --- parsing -----------------------------------------------------------------------------------


def test_sipp_default() -> None:
    sdp = parse_sdp(SIPP_DEFAULT)
    assert sdp.origin.username == "user1"
    assert sdp.origin.session_id == "53655765"
    assert sdp.origin.session_version == "2353687637"
    assert (sdp.origin.nettype, sdp.origin.addrtype, sdp.origin.address) == (
        "IN",
        "IP4",
        "127.0.0.2",
    )
    assert sdp.connection == Connection("IN", "IP4", "127.0.0.2")
    (m,) = sdp.media
    assert (m.media, m.port, m.proto, m.formats) == ("audio", 6000, "RTP/AVP", ("0",))
    assert m.direction is Direction.SENDRECV
    assert media_endpoint(sdp) == ("127.0.0.2", 6000)
    assert codecs(sdp) == ["PCMU"]


def test_carrier_g729_lf_line_ends() -> None:
    sdp = parse_sdp(CARRIER_G729)
    (m,) = sdp.media
    assert m.formats == ("18", "8", "0", "101")
    assert codecs(sdp) == ["G729", "PCMA", "PCMU", "telephone-event"]
    assert m.fmtp("18") == "annexb=no"
    assert m.fmtp("101") == "0-15"
    assert m.fmtp("0") is None
    te = m.rtpmap("101")
    assert te is not None and (te.encoding, te.clock_rate) == ("telephone-event", 8000)
    assert m.attribute_values("ptime") == ["20"]
    assert media_endpoint(sdp) == ("61.135.10.21", 31570)
    assert sdp.session_name == "SX3000 Session"


def test_static_payload_types_without_rtpmap() -> None:
    sdp = parse_sdp(HOLD)
    assert codecs(sdp) == ["PCMU", "PCMA"]


def test_ipv6() -> None:
    sdp = parse_sdp(IPV6)
    assert sdp.origin.addrtype == "IP6"
    assert media_endpoint(sdp) == ("2001:db8:85a3::8a2e:370:7334", 49170)
    assert codecs(sdp) == ["PCMA", "telephone-event"]


def test_hold_has_no_endpoint_and_session_direction_applies() -> None:
    sdp = parse_sdp(HOLD)
    assert sdp.connection is not None and sdp.connection.is_unspecified
    assert media_endpoint(sdp) is None
    assert sdp.media[0].direction is Direction.SENDONLY


def test_two_streams_media_level_connection_and_rtcp() -> None:
    sdp = parse_sdp(TWO_STREAMS)
    audio, video, app = sdp.media
    assert sdp.connection is None
    assert media_endpoint(sdp, 0) == ("192.168.1.23", 54400)
    assert media_endpoint(sdp, 1) == ("192.168.1.23", 55400)
    assert media_endpoint(sdp, 2) is None  # rejected (port 0)
    assert media_endpoint(sdp, 3) is None  # no such stream
    assert audio.rtcp_port == 54401 and video.rtcp_port == 55401
    assert audio.direction is Direction.RECVONLY
    assert video.direction is Direction.SENDRECV
    assert app.rejected and app.formats == ("*",)
    opus = audio.rtpmap("96")
    assert opus is not None and (opus.clock_rate, opus.channels) == (48000, 2)
    assert codecs(sdp) == ["PCMU", "opus", "H261"]
    assert codecs(sdp, 1) == ["H261"]


def test_media_level_connection_wins() -> None:
    body = SIPP_DEFAULT + b"c=IN IP4 10.9.8.7\r\n"
    assert media_endpoint(parse_sdp(body)) == ("10.9.8.7", 6000)


@pytest.mark.parametrize("body", ALL)
def test_to_bytes_keeps_every_line(body: bytes) -> None:
    sdp = parse_sdp(body)
    expected = [line.rstrip("\r") for line in body.decode().split("\n") if line.strip()]
    assert sdp.to_bytes().decode().split("\r\n")[:-1] == expected
    assert parse_sdp(sdp.to_bytes()) == sdp


def test_unknown_lines_and_attributes_kept() -> None:
    body = SIPP_DEFAULT + b"a=X-nat:0\r\na=maxptime:40\r\ny=future-line\r\n"
    sdp = parse_sdp(body)
    assert ("y", "future-line") in sdp.media[0].lines
    out = rewrite_for_leg(sdp, address="192.0.2.1", ports=[20000], session_id=1, version=1)
    assert b"a=X-nat:0\r\na=maxptime:40\r\ny=future-line\r\n" in out


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\r\n\r\n",
        b"hello world",
        b"v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n",
        b"v=0\r\ns=-\r\nt=0 0\r\n",  # no o=
        b"v=0\r\no=- 1 IN IP4 1.2.3.4\r\ns=-\r\n",  # o= with 5 fields
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio abc RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1/x RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\na=rtcp:x\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nNOT A LINE\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nA=upper\r\n",
        b"<html><body>502 Bad Gateway</body></html>",
    ],
)
def test_garbage_raises_sdp_error(body: bytes) -> None:
    with pytest.raises(SdpError):
        parse_sdp(body)
    assert issubclass(SdpError, ValueError)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_sdp_error(body: bytes) -> None:
    try:
        sdp = parse_sdp(body)
    except SdpError:
        return
    assert parse_sdp(sdp.to_bytes()) == sdp


# --- rewriting ---------------------------------------------------------------------------------


OUR_ADDRESS = "192.0.2.50"
OUR_SESSION_ID = 777111222333
OUR_VERSION = 777111222334


def rewrite(sdp: SessionDescription, address: str = OUR_ADDRESS) -> bytes:
    ports = [40000 + 2 * i for i in range(len(sdp.media))]
    return rewrite_for_leg(
        sdp, address=address, ports=ports, session_id=OUR_SESSION_ID, version=OUR_VERSION
    )


@pytest.mark.parametrize("body", ALL)
def test_rewrite_never_leaks_the_original(body: bytes) -> None:
    sdp = parse_sdp(body)
    out = rewrite(sdp)
    leaked = {
        sdp.origin.username,
        sdp.origin.session_id,
        sdp.origin.session_version,
        sdp.origin.address,
    } - {"-"}
    for conn in [sdp.connection, *(m.connection for m in sdp.media)]:
        if conn is not None and not conn.is_unspecified:
            leaked.add(conn.address)
    for m in sdp.media:
        if m.port:
            leaked.add(str(m.port))
        if m.rtcp_port:
            leaked.add(str(m.rtcp_port))
    assert not leaked & tokens(out), leaked & tokens(out)
    for addr in leaked:
        assert addr.encode() not in out


@pytest.mark.parametrize("body", ALL)
def test_rewrite_is_valid_sdp_anchored_on_us(body: bytes) -> None:
    sdp = parse_sdp(body)
    out = parse_sdp(rewrite(sdp))
    assert out.origin.username == "maskline"
    assert out.origin.session_id == str(OUR_SESSION_ID)
    assert out.origin.session_version == str(OUR_VERSION)
    assert out.origin.address == OUR_ADDRESS
    assert out.session_name == "-"
    assert len(out.media) == len(sdp.media)
    for i, (before, after) in enumerate(zip(sdp.media, out.media, strict=True)):
        assert after.port == (0 if before.port == 0 else 40000 + 2 * i)
        assert after.formats == before.formats
        assert after.direction == before.direction
        assert after.rtcp_port is None
        endpoint = media_endpoint(out, i)
        if media_endpoint(sdp, i) is not None:
            assert endpoint == (OUR_ADDRESS, 40000 + 2 * i)
        # codecs and their parameters pass through untouched, in order
        for name in ("rtpmap", "fmtp", "ptime", "crypto"):
            assert after.attribute_values(name) == before.attribute_values(name)
    assert codecs(out) == codecs(sdp)


def test_rewrite_carrier_exact_bytes() -> None:
    out = rewrite(parse_sdp(CARRIER_G729))
    assert out == (
        b"v=0\r\n"
        b"o=maskline 777111222333 777111222334 IN IP4 192.0.2.50\r\n"
        b"s=-\r\n"
        b"c=IN IP4 192.0.2.50\r\n"
        b"b=AS:64\r\n"
        b"t=0 0\r\n"
        b"m=audio 40000 RTP/AVP 18 8 0 101\r\n"
        b"a=rtpmap:18 G729/8000\r\n"
        b"a=fmtp:18 annexb=no\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )


def test_rewrite_drops_identity_ice_and_rtcp() -> None:
    out = rewrite(parse_sdp(TWO_STREAMS))
    for banned in (b"i=", b"u=", b"e=", b"p=", b"a=ice-", b"a=candidate", b"a=rtcp:", b"Bob"):
        assert banned not in out
    assert b"13800138000" not in out
    assert b"a=tool:SoftPhone 4.2\r\n" in out  # other attributes pass through
    assert b"a=crypto:1 AES_CM_128_HMAC_SHA1_80" in out
    assert b"m=application 0 UDP/BFCP *\r\n" in out  # rejected stays rejected
    assert out.count(b"c=IN IP4 192.0.2.50\r\n") == 3  # every media-level c= is ours


def test_rewrite_keeps_hold() -> None:
    out = rewrite(parse_sdp(HOLD))
    assert b"c=IN IP4 0.0.0.0\r\n" in out
    assert b"a=sendonly\r\n" in out
    assert media_endpoint(parse_sdp(out)) is None
    # the unspecified address follows our family
    v6 = parse_sdp(rewrite(parse_sdp(HOLD), address="2001:db8::1"))
    assert v6.connection == Connection("IN", "IP6", "::")


def test_rewrite_ipv4_to_ipv6_and_back() -> None:
    out = parse_sdp(rewrite(parse_sdp(SIPP_DEFAULT), address="2001:DB8:0::5"))
    assert out.origin.addrtype == "IP6" and out.origin.address == "2001:db8::5"
    assert media_endpoint(out) == ("2001:db8::5", 40000)
    back = parse_sdp(rewrite(parse_sdp(IPV6)))
    assert back.connection == Connection("IN", "IP4", OUR_ADDRESS)


def test_rewrite_adds_missing_connection() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n"
    out = parse_sdp(rewrite(parse_sdp(body)))
    assert media_endpoint(out) == (OUR_ADDRESS, 40000)
    assert out.lines[3] == ("c", f"IN IP4 {OUR_ADDRESS}")  # after s=, before t=


def test_rewrite_errors() -> None:
    sdp = parse_sdp(TWO_STREAMS)
    with pytest.raises(SdpError):
        rewrite_for_leg(sdp, address=OUR_ADDRESS, ports=[1], session_id=1, version=1)
    with pytest.raises(SdpError):
        rewrite_for_leg(sdp, address="media.example", ports=[1, 2, 3], session_id=1, version=1)


def test_port_count_dropped() -> None:
    body = SIPP_DEFAULT.replace(b"m=audio 6000 ", b"m=audio 6000/2 ")
    sdp = parse_sdp(body)
    assert sdp.media[0].port_count == 2
    assert b"m=audio 40000 RTP/AVP 0\r\n" in rewrite(sdp)


def test_sdp_origin_counts_versions() -> None:
    origin = SdpOrigin(address=OUR_ADDRESS, session_id=1000)
    first = parse_sdp(origin.rewrite(parse_sdp(SIPP_DEFAULT), ports=[20000]))
    assert first.origin.session_id == "1000"
    assert first.origin.session_version == "1000"
    # the same offer again (session refresh): same version (RFC 3264 §8)
    again = parse_sdp(origin.rewrite(parse_sdp(SIPP_DEFAULT), ports=[20000]))
    assert again.origin.session_version == "1000"
    # a change (hold) bumps it by one; the session id stays
    held = parse_sdp(origin.rewrite(parse_sdp(SIPP_DEFAULT + b"a=sendonly\r\n"), ports=[20000]))
    assert (held.origin.session_id, held.origin.session_version) == ("1000", "1001")
    # the far party's own o= version changing alone is not a change of ours
    bumped = SIPP_DEFAULT.replace(b"2353687637", b"2353687638")
    resumed = parse_sdp(origin.rewrite(parse_sdp(bumped + b"a=sendonly\r\n"), ports=[20000]))
    assert resumed.origin.session_version == "1001"
    assert SdpOrigin(address=OUR_ADDRESS).session_id > 0


# --- what is relayable -------------------------------------------------------------------------


def _offer(*media: str) -> bytes:
    head = "v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    return (head + "".join(media)).encode()


@pytest.mark.parametrize(
    ("body", "index"),
    [
        (SIPP_DEFAULT, 0),
        (CARRIER_G729, 0),  # G.729 first, G.711 behind it: relayable
        (IPV6, 0),
        (HOLD, 0),  # static 0/8 without rtpmap, on hold: still a G.711 stream
        (_offer("m=video 5000 RTP/AVP 31\r\n", "m=audio 5002 RTP/AVPF 8\r\n"), 1),
        (
            _offer(
                "m=audio 0 RTP/AVP 0\r\n", "m=audio 5002 RTP/AVP 96\r\na=rtpmap:96 pcmu/8000\r\n"
            ),
            1,
        ),
    ],
)
def test_relayable_stream_is_the_first_g711_audio(body: bytes, index: int) -> None:
    assert relayable_stream(parse_sdp(body)) == index


@pytest.mark.parametrize(
    ("body", "warning"),
    [
        (_offer(), 304),  # no stream at all
        (_offer("m=video 5000 RTP/AVP 31\r\n"), 304),
        (_offer("m=audio 0 RTP/AVP 0 8\r\n"), 304),  # audio declined
        (_offer("m=audio 5000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"), 305),
        (_offer("m=audio 5000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n"), 305),
        (_offer("m=audio 5000 RTP/AVP 101\r\na=rtpmap:101 telephone-event/8000\r\n"), 305),
        (_offer("m=audio 5000 RTP/SAVP 0\r\n"), 305),  # SRTP: we could not record it
        (_offer("m=audio 5000 RTP/AVP 96\r\na=rtpmap:96 PCMU/16000\r\n"), 305),
        (TWO_STREAMS, 305),  # SAVP audio, video: nothing we relay
    ],
)
def test_not_relayable_says_which_warning(body: bytes, warning: int) -> None:
    with pytest.raises(NotRelayable) as raised:
        relayable_stream(parse_sdp(body))
    assert raised.value.warning_code == warning
    assert isinstance(raised.value, SdpError)
    text = {304: "Media type not available", 305: "Incompatible media format"}[warning]
    assert raised.value.warning("127.0.0.1:5060") == f'{warning} 127.0.0.1:5060 "{text}"'


def test_keep_relayable_formats_drops_other_codecs_and_their_lines() -> None:
    sdp = parse_sdp(CARRIER_G729)
    kept = keep_relayable_formats(sdp, 0)
    (m,) = kept.media
    assert m.formats == ("8", "0", "101")  # offer order kept
    assert codecs(kept) == ["PCMA", "PCMU", "telephone-event"]
    body = kept.to_bytes()
    assert b"G729" not in body and b"annexb" not in body
    assert b"a=fmtp:101 0-15\r\n" in body and b"a=ptime:20\r\n" in body
    assert m.lines[0] == ("m", "audio 31570 RTP/AVP 8 0 101")
    assert m.fmtp("18") is None and m.fmtp("101") == "0-15"
    assert parse_sdp(body) == kept  # the lines and the parsed fields agree
    assert keep_relayable_formats(parse_sdp(SIPP_DEFAULT), 0) == parse_sdp(SIPP_DEFAULT)


def test_keep_relayable_formats_drops_wideband_events_and_cn() -> None:
    sdp = parse_sdp(
        _offer(
            "m=audio 5000 RTP/AVP 96 0 13 97 98\r\n",
            "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\na=rtcp-fb:96 nack\r\n",
            "a=rtpmap:97 telephone-event/48000\r\na=rtpmap:98 CN/16000\r\n",
        )
    )
    (m,) = keep_relayable_formats(sdp, 0).media
    assert m.formats == ("0", "13")
    assert [line for line in m.lines if line[0] == "a"] == []
    with pytest.raises(NotRelayable):
        keep_relayable_formats(parse_sdp(_offer("m=audio 5000 RTP/AVP 18\r\n")), 0)


def test_keep_relayable_formats_to_one_codec_keeps_the_companions() -> None:
    sdp = parse_sdp(CARRIER_G729)
    (m,) = keep_relayable_formats(sdp, 0, codec=0).media
    assert m.formats == ("0", "101")
    assert b"PCMA" not in keep_relayable_formats(sdp, 0, codec=0).to_bytes()
    with pytest.raises(NotRelayable):  # a codec the offer does not have
        keep_relayable_formats(parse_sdp(SIPP_DEFAULT), 0, codec=8)


@pytest.mark.parametrize(
    ("body", "index", "codec"),
    [
        (CARRIER_G729, 0, 8),  # G.729 first is skipped: PCMA is the first G.711 listed
        (SIPP_DEFAULT, 0, 0),
        (_offer("m=video 5000 RTP/AVP 31\r\n", "m=audio 5002 RTP/AVP 0 8\r\n"), 1, 0),
        # PCMU under a dynamic type: relayed, but not a codec we play in
        (_offer("m=audio 5002 RTP/AVP 96\r\na=rtpmap:96 PCMU/8000\r\n"), 0, None),
        # static 8 mapped to something else by a confused peer: not PCMA
        (_offer("m=audio 5002 RTP/AVP 8 0\r\na=rtpmap:8 PCMU/8000\r\n"), 0, 0),
        (HOLD, 0, None),  # sendonly: we could not be heard
        (_offer("m=audio 5002 RTP/AVP 0\r\na=inactive\r\n"), 0, None),
    ],
)
def test_answer_codec_is_the_first_static_g711(body: bytes, index: int, codec: int | None) -> None:
    assert answer_codec(parse_sdp(body), index) == codec


def test_local_answer_one_codec_events_ours_only() -> None:
    offer = parse_sdp(CARRIER_G729)
    body = local_answer(
        offer, 0, payload_type=8, address="10.0.0.1", port=40000, session_id=7, version=9
    )
    answer = parse_sdp(body)
    assert answer.origin.session_id == "7" and answer.origin.session_version == "9"
    assert media_endpoint(answer, 0) == ("10.0.0.1", 40000)
    (m,) = answer.media
    assert m.formats == ("8", "101") and m.direction is Direction.SENDRECV
    assert codecs(answer) == ["PCMA", "telephone-event"]
    assert m.fmtp("101") == "0-15" and m.attribute_values("ptime") == ["20"]
    # Nothing of the offerer's: no address, no session name, no bandwidth line.
    assert b"61.135" not in body and b"SX3000" not in body and b"b=" not in body


def test_local_answer_declines_other_streams_and_keeps_cn() -> None:
    offer = parse_sdp(
        _offer(
            "m=video 5000 RTP/AVP 31\r\n",
            "m=audio 5002 RTP/AVPF 0 13 101\r\na=rtpmap:101 telephone-event/8000\r\n",
        )
    )
    answer = parse_sdp(
        local_answer(offer, 1, payload_type=0, address="::1", port=4000, session_id=1, version=1)
    )
    assert [(m.media, m.port, m.proto) for m in answer.media] == [
        ("video", 0, "RTP/AVP"),
        ("audio", 4000, "RTP/AVPF"),
    ]
    assert answer.media[1].formats == ("0", "13", "101")
    assert media_endpoint(answer, 1) == ("::1", 4000)
    with pytest.raises(SdpError):
        local_answer(offer, 1, payload_type=8, address="::1", port=4, session_id=1, version=1)
    with pytest.raises(SdpError):
        local_answer(offer, 1, payload_type=0, address="pbx", port=4, session_id=1, version=1)


def test_ports_for_stream_declines_the_others() -> None:
    body = _offer("m=video 5000 RTP/AVP 31\r\n", "m=audio 5002 RTP/AVP 8\r\n")
    sdp = parse_sdp(body)
    ports = ports_for_stream(sdp, relayable_stream(sdp), 40000)
    assert ports == [0, 40000]
    out = parse_sdp(rewrite_for_leg(sdp, address="10.0.0.1", ports=ports, session_id=1, version=1))
    assert [(m.media, m.port) for m in out.media] == [("video", 0), ("audio", 40000)]
