"""Outgoing RTP (media/rtp_out.py): headers checked with aiortc's independent RTP parser."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from media.rtp_out import RtpStreamWriter


def test_header_fields_and_first_packet_marker() -> None:
    writer = RtpStreamWriter(
        payload_type=8, ssrc=0xDEADBEEF, initial_sequence=100, initial_timestamp=5000
    )
    first = RtpPacket.parse(writer.packet(b"\x01" * 160))
    second = RtpPacket.parse(writer.packet(b"\x02" * 160))

    assert (first.version, first.payload_type, first.ssrc) == (2, 8, 0xDEADBEEF)
    assert (first.sequence_number, first.timestamp, first.marker) == (100, 5000, 1)
    assert first.payload == b"\x01" * 160
    assert (second.sequence_number, second.timestamp, second.marker) == (101, 5160, 0)
    assert first.csrc == second.csrc == []
    assert len(writer.packet(b"")) == 12
    assert writer.packets_sent == 3
    assert writer.octets_sent == 320


def test_sequence_and_timestamp_wrap() -> None:
    writer = RtpStreamWriter(
        payload_type=0, ssrc=1, initial_sequence=0xFFFF, initial_timestamp=0xFFFFFFFF - 100
    )
    a = RtpPacket.parse(writer.packet(b"x"))
    b = RtpPacket.parse(writer.packet(b"x"))
    assert (a.sequence_number, b.sequence_number) == (0xFFFF, 0)
    assert b.timestamp == (0xFFFFFFFF - 100 + 160) % (1 << 32)


def test_explicit_marker_and_custom_samples() -> None:
    writer = RtpStreamWriter(payload_type=0, ssrc=1, initial_sequence=0, initial_timestamp=0)
    writer.packet(b"a")
    marked = RtpPacket.parse(writer.packet(b"b", marker=True, samples=80))
    after = RtpPacket.parse(writer.packet(b"c"))
    assert marked.marker == 1
    assert marked.timestamp == 160
    assert after.timestamp == 240  # moved by the 80 samples of the marked packet
    assert after.marker == 0


def test_skip_moves_timestamp_not_sequence_and_marks_next_talkspurt() -> None:
    writer = RtpStreamWriter(payload_type=0, ssrc=7, initial_sequence=10, initial_timestamp=0)
    writer.packet(b"a")
    writer.skip(8000)  # one second of silence, nothing sent
    resumed = RtpPacket.parse(writer.packet(b"b"))
    assert resumed.sequence_number == 11  # no gap: the receiver must not see loss
    assert resumed.timestamp == 160 + 8000
    assert resumed.marker == 1
    writer.skip(0)  # no silence: no new talkspurt
    assert RtpPacket.parse(writer.packet(b"c")).marker == 0


def test_random_start_values_differ_between_streams() -> None:
    writers = [RtpStreamWriter(payload_type=0) for _ in range(8)]
    # 8 draws from 2**32 (and 2**16) colliding all at once is beyond chance.
    assert len({w.ssrc for w in writers}) > 1
    assert len({w.next_sequence for w in writers}) > 1
    assert len({w.next_timestamp for w in writers}) > 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"payload_type": 128},
        {"payload_type": -1},
        {"payload_type": 0, "ssrc": 1 << 32},
        {"payload_type": 0, "initial_sequence": 1 << 16},
        {"payload_type": 0, "initial_timestamp": -1},
        {"payload_type": 0, "samples_per_frame": -160},
    ],
)
def test_out_of_range_construction_is_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        RtpStreamWriter(**kwargs)


def test_negative_samples_are_refused_without_advancing() -> None:
    writer = RtpStreamWriter(payload_type=0, ssrc=1, initial_sequence=5, initial_timestamp=9)
    with pytest.raises(ValueError):
        writer.packet(b"x", samples=-1)
    with pytest.raises(ValueError):
        writer.skip(-1)
    assert (writer.next_sequence, writer.next_timestamp, writer.packets_sent) == (5, 9, 0)


@settings(max_examples=200)
@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payloads=st.lists(st.binary(max_size=200), min_size=1, max_size=20),
)
def test_stream_property(pt: int, seq: int, ts: int, ssrc: int, payloads: list[bytes]) -> None:
    writer = RtpStreamWriter(payload_type=pt, ssrc=ssrc, initial_sequence=seq, initial_timestamp=ts)
    parsed = [RtpPacket.parse(writer.packet(p)) for p in payloads]
    for index, (packet, payload) in enumerate(zip(parsed, payloads, strict=True)):
        assert packet.payload == payload
        assert packet.payload_type == pt
        assert packet.ssrc == ssrc
        assert packet.sequence_number == (seq + index) % (1 << 16)
        assert packet.timestamp == (ts + 160 * index) % (1 << 32)
        assert packet.marker == (1 if index == 0 else 0)
