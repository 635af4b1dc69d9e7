"""G.711 µ-law (PCMU) and A-law (PCMA) with NumPy lookup tables (ITU-T G.711).

Decoding is one table lookup per byte (256 entries); encoding one lookup per sample into a
65,536-entry table indexed by the 16-bit sample. Whole buffers at a time, never a Python call
per sample or per packet: recordings decode a call's payloads in batches, prompts and ringback
are encoded once per tone and codec.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "PAYLOAD_TYPE_PCMA",
    "PAYLOAD_TYPE_PCMU",
    "alaw_decode",
    "alaw_encode",
    "decode",
    "encode",
    "ulaw_decode",
    "ulaw_encode",
]

PAYLOAD_TYPE_PCMU: Final = 0
PAYLOAD_TYPE_PCMA: Final = 8

Pcm = npt.NDArray[np.int16]

_ULAW_BIAS: Final = 0x84
_ULAW_CLIP: Final = 32635


def _ulaw_decode_table() -> Pcm:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> Pcm:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    # On 14-bit samples as G.711 defines them (the arithmetic shift rounds negatives down).
    samples = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(samples < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(samples), _ULAW_CLIP >> 2) + (_ULAW_BIAS >> 2)
    # segment = how far the highest set bit lies above bit 5 (0..7)
    segment = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 5, 0, 7)
    code = (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    table: npt.NDArray[np.uint8] = (code ^ mask).astype(np.uint8)
    return table


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    samples = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(samples >= 0, 0x80, 0x00)
    # A-law works on 13-bit magnitudes; -1 maps like 0 so the negative range is symmetric.
    magnitude = np.where(samples >= 0, samples, -samples - 1) >> 3
    exponent = np.where(
        magnitude < 32, 0, np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 4
    )
    exponent = np.clip(exponent, 0, 7)
    mantissa = np.where(exponent == 0, magnitude >> 1, magnitude >> exponent) & 0x0F
    table: npt.NDArray[np.uint8] = ((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8)
    return table


_ULAW_DECODE: Final = _ulaw_decode_table()
_ALAW_DECODE: Final = _alaw_decode_table()
_ULAW_ENCODE: Final = _ulaw_encode_table()
_ALAW_ENCODE: Final = _alaw_encode_table()


def ulaw_decode(data: bytes) -> Pcm:
    """µ-law bytes → 16-bit linear samples."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes) -> Pcm:
    """A-law bytes → 16-bit linear samples."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(samples: Pcm) -> bytes:
    """16-bit linear samples → µ-law bytes."""
    return bytes(_ULAW_ENCODE[samples.astype(np.int32) + 32768])


def alaw_encode(samples: Pcm) -> bytes:
    """16-bit linear samples → A-law bytes."""
    return bytes(_ALAW_ENCODE[samples.astype(np.int32) + 32768])


def decode(payload_type: int, data: bytes) -> Pcm:
    """Decode by RTP static payload type (0 PCMU, 8 PCMA); ValueError for anything else."""
    if payload_type == PAYLOAD_TYPE_PCMU:
        return ulaw_decode(data)
    if payload_type == PAYLOAD_TYPE_PCMA:
        return alaw_decode(data)
    raise ValueError(f"not a G.711 payload type: {payload_type}")


def encode(payload_type: int, samples: Pcm) -> bytes:
    """Encode by RTP static payload type (0 PCMU, 8 PCMA); ValueError for anything else."""
    if payload_type == PAYLOAD_TYPE_PCMU:
        return ulaw_encode(samples)
    if payload_type == PAYLOAD_TYPE_PCMA:
        return alaw_encode(samples)
    raise ValueError(f"not a G.711 payload type: {payload_type}")
