"""Media side of the e2e tests: a caller's RTP endpoint owned by the test, and audio checks.

SIPp plays and echoes RTP but cannot tell a test what it heard. The scenarios named
``*_rtp_port.xml`` / ``uac_call_info_dtmf.xml`` therefore offer, in the caller's SDP, a port the
test listens on (``-key rtp_port P``): an :class:`RtpEndpoint` there records every datagram
maskline sends to the caller (ringback, prompts, the relayed callee) and can talk back from the
same port — symmetric RTP, so maskline latches onto it as it would onto a real phone.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from media import g711

LOOPBACK = "127.0.0.1"
SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms

Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class ReceivedPacket:
    """One datagram as it arrived: monotonic arrival time, source, RTP header fields, payload."""

    arrival: float
    source: tuple[str, int]
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> tuple[int, bool, int, int, int, bytes] | None:
    """(payload type, marker, sequence, timestamp, ssrc, payload) of an RTP datagram, or None."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    first, second, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", data)
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:  # header extension: 4-byte header, then length in 32-bit words
        if len(data) < offset + 4:
            return None
        (words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * words
    end = len(data)
    if first & 0x20 and end > offset:  # padding: the last byte says how much
        end -= data[-1]
    if end < offset:
        return None
    return second & 0x7F, bool(second & 0x80), sequence, timestamp, ssrc, data[offset:end]


@dataclass
class RtpEndpoint:
    """A UDP socket on loopback standing for the caller's phone; a thread records arrivals."""

    sock: socket.socket = field(init=False)
    packets: list[ReceivedPacket] = field(default_factory=list, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._run, name="rtp-endpoint", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            parsed = parse_rtp(data)
            if parsed is None:
                continue
            with self._lock:
                self.packets.append(ReceivedPacket(time.monotonic(), source, *parsed))

    def received(self, *, payload_types: tuple[int, ...] = (0, 8)) -> list[ReceivedPacket]:
        with self._lock:
            return [p for p in self.packets if p.payload_type in payload_types]

    def wait_for_packets(self, count: int, timeout: float) -> list[ReceivedPacket]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received()
            if len(got) >= count:
                return got
            time.sleep(0.02)
        return self.received()

    def sender(self) -> tuple[str, int] | None:
        """Where maskline's media for this caller comes from (its relay port for this leg)."""
        with self._lock:
            return self.packets[0].source if self.packets else None

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        self.sock.sendto(data, to)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def rtp_packet(
    payload: bytes, *, payload_type: int, sequence: int, timestamp: int, ssrc: int,
    marker: bool = False,
) -> bytes:  # fmt: skip
    """A plain 12-byte-header RTP datagram."""
    second = payload_type | (0x80 if marker else 0)
    return struct.pack("!BBHII", 0x80, second, sequence & 0xFFFF, timestamp, ssrc) + payload


def decode_stream(packets: list[ReceivedPacket]) -> Pcm:
    """The audio of G.711 packets laid out by RTP timestamp per SSRC, streams one after another.

    Within one SSRC, samples go where their timestamp says (gaps stay silent); a new SSRC
    (ringback handing over to the callee's media, say) starts where the previous one ended.
    """
    pieces: list[Pcm] = []
    by_ssrc: dict[int, list[ReceivedPacket]] = {}
    order: list[int] = []
    for packet in packets:
        if packet.ssrc not in by_ssrc:
            by_ssrc[packet.ssrc] = []
            order.append(packet.ssrc)
        by_ssrc[packet.ssrc].append(packet)
    for ssrc in order:
        stream = by_ssrc[ssrc]
        base = stream[0].timestamp
        offsets = [(p.timestamp - base) & 0xFFFFFFFF for p in stream]
        length = max(o + len(p.payload) for o, p in zip(offsets, stream, strict=True))
        audio = np.zeros(length, dtype=np.int16)
        for offset, packet in zip(offsets, stream, strict=True):
            samples = g711.decode(packet.payload_type, packet.payload)
            audio[offset : offset + len(samples)] = samples
        pieces.append(audio)
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)


def tone(frequency: float, seconds: float, *, amplitude: float = 8000.0) -> Pcm:
    """A sine tone at 8 kHz."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def dominant_frequency(samples: Pcm) -> float:
    """The strongest frequency (Hz) of ``samples`` by FFT, DC excluded."""
    if len(samples) < 2:
        return 0.0
    window = np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * window))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(samples))


def best_correlation(received: Pcm, reference: Pcm) -> float:
    """Peak normalised cross-correlation (0..1) of ``reference`` sliding over ``received``.

    G.711 round trips and a different starting point in a looped tone keep this near 1 for
    the same audio; unrelated audio or silence stays far below.
    """
    if len(received) < len(reference) or not len(reference):
        return 0.0
    a = received.astype(np.float64)
    b = reference.astype(np.float64)
    b_norm = float(np.sqrt(np.sum(b * b)))
    if b_norm == 0.0:
        return 0.0
    size = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    products = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    products = products[: len(a) - len(b) + 1]
    energy = np.concatenate(([0.0], np.cumsum(a * a)))
    windows = np.sqrt(np.maximum(energy[len(b) :] - energy[: -len(b)], 1e-9))
    return float(np.max(products / (windows * b_norm)))


def frames(samples: Pcm, payload_type: int) -> list[bytes]:
    """20 ms G.711 payloads of ``samples`` (the last padded with silence)."""
    padded = np.zeros(-(-len(samples) // FRAME_SAMPLES) * FRAME_SAMPLES, dtype=np.int16)
    padded[: len(samples)] = samples
    encoded = g711.encode(payload_type, padded)
    return [encoded[i : i + FRAME_SAMPLES] for i in range(0, len(encoded), FRAME_SAMPLES)]
