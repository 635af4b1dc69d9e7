"""Write RTP audio as a classic pcap file that SIPp's ``play_pcap_audio`` replays.

A libpcap file (magic ``a1b2c3d4``, version 2.4, microsecond timestamps, link type 1 Ethernet)
holding one Ethernet/IPv4/UDP/RTP frame per 20 ms of G.711 audio. SIPp reads the frames, keeps
their pacing (the capture timestamps, 20 ms apart) and their RTP headers, and rewrites only the
UDP ports and addresses to the call's media addresses; so the sequence numbers (+1), timestamps
(+160 samples) and SSRC written here are what maskline relays and records.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt

from media import g711

FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_S = 0.02
_PCAP_MAGIC = 0xA1B2C3D4
_LINKTYPE_ETHERNET = 1
_ETHERTYPE_IPV4 = 0x0800
_IPPROTO_UDP = 17
# Placeholder addresses: SIPp sends from the call's own media address to the far party's.
_SOURCE = (bytes([10, 0, 0, 1]), 16384)
_DESTINATION = (bytes([10, 0, 0, 2]), 16384)


def rtp_frames(
    samples: npt.NDArray[np.int16],
    *,
    payload_type: int,
    ssrc: int,
    first_sequence: int = 1,
    first_timestamp: int = 0,
) -> list[bytes]:
    """RTP datagrams (RFC 3550 §5.1, 12-byte header) carrying ``samples`` 20 ms at a time.

    The marker bit is set on the first packet (start of a talkspurt, RFC 3551 §4.1); the last
    frame is padded with silence.
    """
    padded = np.zeros(-(-len(samples) // FRAME_SAMPLES) * FRAME_SAMPLES, dtype=np.int16)
    padded[: len(samples)] = samples
    encoded = g711.encode(payload_type, padded)
    datagrams = []
    for n, start in enumerate(range(0, len(encoded), FRAME_SAMPLES)):
        second = payload_type | (0x80 if n == 0 else 0)
        header = struct.pack(
            "!BBHII",
            0x80,
            second,
            (first_sequence + n) & 0xFFFF,
            (first_timestamp + n * FRAME_SAMPLES) & 0xFFFFFFFF,
            ssrc,
        )
        datagrams.append(header + encoded[start : start + FRAME_SAMPLES])
    return datagrams


def _ipv4_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(datagram: bytes, identification: int) -> bytes:
    """Ethernet II / IPv4 (no options) / UDP (checksum 0: none, RFC 768) around ``datagram``."""
    udp = struct.pack("!HHHH", _SOURCE[1], _DESTINATION[1], 8 + len(datagram), 0) + datagram
    ip_header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,  # version 4, 5 words of header
        0,
        20 + len(udp),
        identification & 0xFFFF,
        0x4000,  # don't fragment
        64,
        _IPPROTO_UDP,
        0,
        _SOURCE[0],
        _DESTINATION[0],
    )
    ip_header = ip_header[:10] + struct.pack("!H", _ipv4_checksum(ip_header)) + ip_header[12:]
    ethernet = bytes.fromhex("020000000002020000000001") + struct.pack("!H", _ETHERTYPE_IPV4)
    return ethernet + ip_header + udp


def write_rtp_pcap(path: Path, datagrams: list[bytes], *, frame_s: float = FRAME_S) -> Path:
    """Write ``datagrams`` to ``path`` as a pcap, one every ``frame_s`` seconds from t = 0."""
    out = bytearray(struct.pack("<IHHiIII", _PCAP_MAGIC, 2, 4, 0, 0, 65535, _LINKTYPE_ETHERNET))
    for n, datagram in enumerate(datagrams):
        frame = _frame(datagram, n)
        micros = round(n * frame_s * 1_000_000)
        out += struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(frame), len(frame))
        out += frame
    path.write_bytes(bytes(out))
    return path


def tone_pcap(
    path: Path, *, frequency_hz: float, seconds: float, payload_type: int, ssrc: int
) -> Path:
    """A pcap of a sine tone (amplitude 8,000 of 32,767) as G.711 RTP, ``seconds`` long."""
    t = np.arange(round(seconds * 8000)) / 8000
    samples = (8000 * np.sin(2 * np.pi * frequency_hz * t)).astype(np.int16)
    return write_rtp_pcap(path, rtp_frames(samples, payload_type=payload_type, ssrc=ssrc))
