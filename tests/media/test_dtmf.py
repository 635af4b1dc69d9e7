"""RFC 4733 telephone events and SIP INFO DTMF bodies (media/dtmf.py)."""

from __future__ import annotations

import struct

import pytest
from aiortc.rtp import RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from media.dtmf import (
    DTMF_DIGITS,
    DtmfDetector,
    DtmfDigit,
    DtmfError,
    MalformedDtmfBody,
    MalformedTelephoneEvent,
    UnsupportedDtmfBody,
    parse_info_body,
    parse_telephone_event,
    telephone_event_packets,
    telephone_event_payload_type,
)
from media.sdp import parse_sdp

SSRC = 0xCAFE


def event_packet(
    event: int,
    *,
    timestamp: int,
    duration: int,
    end: bool = False,
    seq: int = 1,
    ssrc: int = SSRC,
    payload_type: int = 101,
    volume: int = 10,
    marker: bool = False,
) -> bytes:
    """One telephone-event packet, written out field by field (RFC 4733 §2.3)."""
    header = struct.pack(
        "!BBHII", 0x80, (0x80 if marker else 0) | payload_type, seq, timestamp, ssrc
    )
    return header + struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration)


def press(
    digit: str, *, timestamp: int, sequence: int = 0, duration_samples: int = 800
) -> list[bytes]:
    return telephone_event_packets(
        digit,
        ssrc=SSRC,
        sequence=sequence,
        timestamp=timestamp,
        duration_samples=duration_samples,
    )


def digits_of(detector: DtmfDetector, packets: list[bytes]) -> str:
    found = [detector.receive_packet(p) for p in packets]
    return "".join(d.digit for d in found if d is not None)


# --- the packet builder, checked with aiortc's parser ---


def test_builder_follows_rfc_4733_sender_rules() -> None:
    packets = press("7", timestamp=48000, sequence=65534, duration_samples=800)
    parsed = [RtpPacket.parse(p) for p in packets]
    # Updates at 160, 320, 480, 640 samples, then the final packet three times.
    assert len(parsed) == 4 + 3
    assert {p.timestamp for p in parsed} == {48000}  # the event's start, in every packet
    assert [p.sequence_number for p in parsed] == [65534, 65535, 0, 1, 2, 3, 4]
    assert [p.marker for p in parsed] == [1, 0, 0, 0, 0, 0, 0]
    assert {p.payload_type for p in parsed} == {101}
    events = [struct.unpack("!BBH", p.payload) for p in parsed]
    assert {e[0] for e in events} == {7}
    assert [e[2] for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [bool(e[1] & 0x80) for e in events] == [False] * 4 + [True] * 3
    assert {e[1] & 0x3F for e in events} == {10}


@pytest.mark.parametrize(
    ("kwargs", "digit"),
    [
        ({}, "x"),
        ({}, "12"),
        ({"duration_samples": 0}, "1"),
        ({"duration_samples": 0x10000}, "1"),
        ({"volume": 64}, "1"),
        ({"end_repeats": 0}, "1"),
        ({"payload_type": 128}, "1"),
        ({"samples_per_update": 0}, "1"),
    ],
)
def test_builder_refuses_bad_arguments(kwargs: dict[str, int], digit: str) -> None:
    with pytest.raises(ValueError):
        telephone_event_packets(digit, ssrc=1, sequence=0, timestamp=0, **kwargs)


# --- parsing one packet ---


@pytest.mark.parametrize(("code", "digit"), list(enumerate(DTMF_DIGITS)))
def test_every_event_code_maps_to_its_key(code: int, digit: str) -> None:
    event = parse_telephone_event(
        event_packet(code, timestamp=99, duration=400, end=True, volume=7, seq=5, marker=True)
    )
    assert event.digit == digit
    assert (event.event, event.end, event.volume, event.duration) == (code, True, 7, 400)
    assert (event.timestamp, event.ssrc, event.sequence, event.marker) == (99, SSRC, 5, True)


def test_non_dtmf_events_have_no_digit() -> None:
    assert parse_telephone_event(event_packet(16, timestamp=0, duration=0)).digit is None  # flash


def test_header_extension_csrc_and_padding_are_skipped() -> None:
    payload = struct.pack("!BBH", 11, 0x80 | 5, 320)
    # X=1, P=1, CC=1: one CSRC, a one-word extension, 3 octets of padding.
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 1, 101, 7, 1234, SSRC)
    packet = header + struct.pack("!I", 42) + struct.pack("!HHI", 0xBEDE, 1, 0) + payload
    packet += b"\x00\x00\x03"
    event = parse_telephone_event(packet)
    assert (event.digit, event.end, event.duration, event.timestamp) == ("#", True, 320, 1234)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x65",  # shorter than a header
        struct.pack("!BBHII", 0x40, 101, 1, 1, 1) + b"\x01\x00\x00\xa0",  # version 1
        struct.pack("!BBHII", 0x80, 101, 1, 1, 1),  # no payload
        struct.pack("!BBHII", 0x80, 101, 1, 1, 1) + b"\x01\x00\x00",  # 3 octets
        struct.pack("!BBHII", 0x80, 101, 1, 1, 1) + b"\x01\x00\x00\xa0\x02",  # 5 octets
        struct.pack("!BBHII", 0x81, 101, 1, 1, 1),  # a CSRC announced, missing
        struct.pack("!BBHII", 0xA0, 101, 1, 1, 1) + b"\x01\x00\x00\xa0\x09",  # bad padding
    ],
)
def test_garbage_is_a_malformed_event(data: bytes) -> None:
    with pytest.raises(MalformedTelephoneEvent):
        parse_telephone_event(data)


# --- the detector: one digit per key press ---


def test_one_press_with_redundant_end_packets_is_one_digit() -> None:
    detector = DtmfDetector()
    assert digits_of(detector, press("5", timestamp=8000)) == "5"
    assert detector.digits == 1
    assert detector.event_packets == 7


def test_a_digit_is_reported_on_the_first_packet_of_its_event() -> None:
    detector = DtmfDetector()
    packets = press("9", timestamp=0)
    first = detector.receive_packet(packets[0])
    assert first is not None and first.digit == "9" and first.source == "rfc4733"
    assert all(detector.receive_packet(p) is None for p in packets[1:])


def test_a_sequence_of_presses() -> None:
    detector = DtmfDetector()
    packets: list[bytes] = []
    for index, digit in enumerate("123#"):
        packets += press(digit, timestamp=16000 * (index + 1), sequence=10 * index)
    assert digits_of(detector, packets) == "123#"


def test_two_identical_digits_in_a_row_are_two_digits() -> None:
    detector = DtmfDetector()
    packets = press("4", timestamp=1600) + press("4", timestamp=4000, sequence=7)
    assert digits_of(detector, packets) == "44"


def test_lost_end_packets_still_give_each_digit_once() -> None:
    detector = DtmfDetector()
    first = press("8", timestamp=1000)[:3]  # updates only: every end packet lost
    second = press("8", timestamp=3000, sequence=3)
    assert digits_of(detector, first + second) == "88"


def test_only_end_packets_received_still_give_the_digit() -> None:
    detector = DtmfDetector()
    packets = press("0", timestamp=500)[-2:]  # start and updates lost
    assert digits_of(detector, packets) == "0"


def test_late_redundant_end_of_a_previous_event_is_not_a_new_digit() -> None:
    detector = DtmfDetector()
    one, two = press("1", timestamp=1000), press("2", timestamp=5000, sequence=7)
    # The last end packet of "1" arrives after "2" began (reordering).
    assert digits_of(detector, one[:-1] + two[:2] + one[-1:] + two[2:]) == "12"


def test_other_payload_types_are_ignored_cheaply() -> None:
    detector = DtmfDetector(payload_type=96)
    audio = struct.pack("!BBHII", 0x80, 0, 1, 160, SSRC) + b"\xff" * 160
    assert detector.receive_packet(audio) is None
    assert detector.receive_packet(b"") is None
    assert detector.receive_packet(event_packet(3, timestamp=0, duration=160)) is None  # PT 101
    assert detector.event_packets == 0
    found = detector.receive_packet(event_packet(3, timestamp=0, duration=160, payload_type=96))
    assert found is not None and found.digit == "3"


def test_malformed_event_packets_are_counted_not_raised() -> None:
    detector = DtmfDetector()
    assert detector.receive_packet(struct.pack("!BBHII", 0x80, 101, 1, 1, 1) + b"\x01") is None
    assert detector.malformed == 1
    assert detector.digits == 0


def test_flash_and_tones_are_not_digits() -> None:
    detector = DtmfDetector()
    assert detector.receive_packet(event_packet(16, timestamp=0, duration=160)) is None
    assert detector.non_dtmf_events == 1


def test_a_key_held_past_the_duration_field_is_one_digit() -> None:
    """RFC 4733 §2.5.1.3: the second segment starts at the first's timestamp + 0xFFFF."""
    detector = DtmfDetector()
    first_segment = [
        event_packet(6, timestamp=10_000, duration=d, seq=k)
        for k, d in enumerate([160, 32000, 0xFFFF])
    ]
    second_segment = [
        event_packet(6, timestamp=10_000 + 0xFFFF, duration=d, end=d == 800, seq=3 + k)
        for k, d in enumerate([160, 800, 800, 800])
    ]
    assert digits_of(detector, first_segment + second_segment) == "6"
    # A later press of the same key is a new digit.
    assert digits_of(detector, press("6", timestamp=200_000, sequence=20)) == "6"


def test_a_new_ssrc_is_a_new_stream() -> None:
    detector = DtmfDetector()
    first = detector.receive_packet(event_packet(2, timestamp=7, duration=160, ssrc=1))
    second = detector.receive_packet(event_packet(2, timestamp=7, duration=160, ssrc=2))
    assert first is not None and second is not None


def test_timestamp_wrap_is_handled() -> None:
    detector = DtmfDetector()
    packets = press("1", timestamp=0xFFFFFF00) + press("2", timestamp=0x100, sequence=9)
    assert digits_of(detector, packets) == "12"


@settings(max_examples=300)
@given(
    keys=st.lists(st.sampled_from(DTMF_DIGITS), min_size=1, max_size=12),
    keep=st.lists(st.lists(st.booleans(), min_size=7, max_size=7), min_size=12, max_size=12),
    start=st.integers(0, 0xFFFFFFFF),
    repeat=st.integers(1, 3),
)
def test_any_loss_keeping_one_packet_per_press_gives_each_key_once(
    keys: list[str], keep: list[list[bool]], start: int, repeat: int
) -> None:
    """Whatever packets of each press are lost or duplicated, a press with one survivor is
    one digit, in order (presses 1 s apart, each 100 ms)."""
    detector = DtmfDetector()
    stream: list[bytes] = []
    for index, key in enumerate(keys):
        packets = press(key, timestamp=(start + 8000 * index) % (1 << 32), sequence=7 * index)
        kept = [p for p, k in zip(packets, keep[index], strict=True) if k] or packets[-1:]
        stream += [p for p in kept for _ in range(repeat)]
    assert digits_of(detector, stream) == "".join(keys)
    assert detector.digits == len(keys)


# --- the payload type from the SDP ---


def offer(formats: str, *rtpmaps: str) -> bytes:
    lines = [
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        f"m=audio 4000 RTP/AVP {formats}",
        *(f"a=rtpmap:{m}" for m in rtpmaps),
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (offer("0 101", "0 PCMU/8000", "101 telephone-event/8000"), 101),
        (offer("8 96", "96 TELEPHONE-EVENT/8000"), 96),
        # A wideband event clock does not go with 8 kHz G.711; the 8 kHz one is chosen.
        (offer("0 97 101", "97 telephone-event/16000", "101 telephone-event/8000"), 101),
        (offer("0 97", "97 telephone-event/16000"), None),
        (offer("0 8", "0 PCMU/8000"), None),
        # Listed in a=rtpmap but not offered on the m= line: not negotiated.
        (offer("0", "101 telephone-event/8000"), None),
    ],
)
def test_event_payload_type_from_sdp(body: bytes, expected: int | None) -> None:
    assert telephone_event_payload_type(parse_sdp(body).media[0]) == expected


# --- SIP INFO bodies ---


@pytest.mark.parametrize(
    ("content_type", "body", "digit", "duration_ms"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5", 160),
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160", "5", 160),
        ("Application/DTMF-Relay; charset=us-ascii", b"signal= #\nduration = 250\n", "#", 250),
        ("application/dtmf-relay", b"Signal=*\r\n", "*", None),
        ("application/dtmf-relay", b"Signal=11\r\nDuration=100\r\n", "#", 100),
        ("application/dtmf-relay", b"Signal=10\r\n", "*", None),
        ("application/dtmf-relay", b"Signal=d\r\nDuration=100\r\nVendor=x\r\n", "D", 100),
        ("application/dtmf-relay", b"\r\nSignal=0\r\n\r\n", "0", None),
        ("application/dtmf", b"7", "7", None),
        ("application/dtmf", b" 9\r\n", "9", None),
    ],
)
def test_info_bodies(content_type: str, body: bytes, digit: str, duration_ms: int | None) -> None:
    found = parse_info_body(content_type, body)
    assert (found.digit, found.source, found.duration_ms) == (digit, "info", duration_ms)


@pytest.mark.parametrize(
    "content_type", ["application/sdp", "text/plain", "", "application/dtmf-relay-x"]
)
def test_other_content_types_are_415(content_type: str) -> None:
    with pytest.raises(UnsupportedDtmfBody) as caught:
        parse_info_body(content_type, b"Signal=5\r\n")
    assert caught.value.status_code == 415


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/dtmf-relay", b""),
        ("application/dtmf-relay", b"Duration=160\r\n"),
        ("application/dtmf-relay", b"Signal=\r\n"),
        ("application/dtmf-relay", b"Signal=55\r\n"),
        ("application/dtmf-relay", b"Signal=16\r\n"),  # flash: not a key
        ("application/dtmf-relay", b"Signal=E\r\n"),
        ("application/dtmf-relay", b"Signal=5\r\nSignal=6\r\n"),
        ("application/dtmf-relay", b"Signal=5\r\nDuration=abc\r\n"),
        ("application/dtmf-relay", b"Signal=5\r\nDuration=-5\r\n"),
        ("application/dtmf-relay", b"Signal=5\r\nDuration=999999\r\n"),
        ("application/dtmf-relay", b"Signal=5\r\nDuration=1\r\nDuration=2\r\n"),
        ("application/dtmf-relay", b"Signal 5\r\n"),
        ("application/dtmf-relay", "Signal=５".encode()),  # a full-width digit
        ("application/dtmf-relay", b"Signal=\xff\r\n"),
        ("application/dtmf-relay", b"Signal=5\r\n" + b"X=" + b"y" * 2000),
        ("application/dtmf", b""),
        ("application/dtmf", b"12"),  # event codes belong to dtmf-relay's Signal only
        ("application/dtmf", b"11"),
        ("application/dtmf", b"Signal=5"),
        ("application/dtmf", "٣".encode()),  # an Arabic-Indic digit
    ],
)
def test_garbage_bodies_are_400(content_type: str, body: bytes) -> None:
    with pytest.raises(MalformedDtmfBody) as caught:
        parse_info_body(content_type, body)
    assert caught.value.status_code == 400


@settings(max_examples=300)
@given(
    content_type=st.sampled_from(["application/dtmf-relay", "application/dtmf"]),
    body=st.binary(max_size=64) | st.text(max_size=40).map(str.encode),
)
def test_any_body_gives_a_digit_or_a_dtmf_error(content_type: str, body: bytes) -> None:
    try:
        found = parse_info_body(content_type, body)
    except DtmfError as error:
        assert error.status_code == 400
    else:
        assert found.digit in DTMF_DIGITS and len(found.digit) == 1


@settings(max_examples=200)
@given(
    digit=st.sampled_from(DTMF_DIGITS),
    duration=st.integers(0, 60_000),
    newline=st.sampled_from(["\r\n", "\n"]),
)
def test_dtmf_relay_round_trip(digit: str, duration: int, newline: str) -> None:
    body = f"Signal={digit}{newline}Duration={duration}{newline}".encode()
    found = parse_info_body("application/dtmf-relay", body)
    assert (found.digit, found.duration_ms) == (digit, duration)


# --- digits stay out of logs ---


def test_reprs_mask_the_digit() -> None:
    digit = parse_info_body("application/dtmf", b"7")
    event = parse_telephone_event(event_packet(7, timestamp=1, duration=160))
    assert "7" not in repr(digit)
    assert "event=<masked>" in repr(event) and "7" not in repr(event).replace("timestamp=1", "")
    assert "7" not in str(DtmfDetector())


def test_dtmf_digit_validates() -> None:
    with pytest.raises(ValueError):
        DtmfDigit("x", "info")
    with pytest.raises(ValueError):
        DtmfDigit("", "rfc4733")
