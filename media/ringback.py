"""Enterprise ringback (彩铃): which tone a call plays, where tones live, their cached frames.

- :func:`ringback_tone_for` (pure) picks the tone id of a call from the binding's and the pool's
  ringback codes (SPEC §2) by binding type and direction.
- :func:`tone_file_name` (pure) is the one place a (tenant, tone id) pair becomes a file name:
  sanitised characters plus a hash of the exact pair, so nothing typed by a user reaches the
  file system unsanitised and two ids that sanitise alike still get different files.
- :class:`RingbackLibrary` serves a tone's 20 ms G.711 payloads per payload type, cached and
  reloaded when the tone's file is replaced (the API replaces it atomically with ``os.replace``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from media.audio import AudioError, frames, read_wav
from routing.index import CALL_TYPE_A_TO_PEER, CALL_TYPE_PEER_TO_A
from routing.model import BindingType

__all__ = [
    "RingbackLibrary",
    "ringback_codes_for",
    "ringback_tone_for",
    "tone_file_name",
]

_log = logging.getLogger("maskline.media.ringback")

_AXN_CODES: Final = (("AXNRing_A", "AXNRing_AB"), ("AXNRing_N", "AXNRing_AB"))
_AXG_CODES: Final = (("AXGRing_A", "AXGRing_AB"), ("AXGRing_G", "AXGRing_AB"))
#: Per binding type: (codes when A calls the peer, codes when the peer calls A), most specific
#: first. AXB has no shared "AB" code; the AXN variants (extension, 95) use the AXN codes.
_CODES: Final[Mapping[BindingType, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    BindingType.AXB: (("AXBRing_A",), ("AXBRing_B",)),
    BindingType.AXN: _AXN_CODES,
    BindingType.AXN_EXT: _AXN_CODES,
    BindingType.AXN95: _AXN_CODES,
    BindingType.AXG: _AXG_CODES,
}


def ringback_codes_for(binding_type: BindingType, call_type: int) -> tuple[str, ...]:
    """The ringback code names that apply to a call, most specific first.

    ``call_type`` 0: the binding's A side calls (AXBRing_A, AXNRing_A, AXGRing_A); 1: the peer
    calls A (AXBRing_B, AXNRing_N, AXGRing_G); AXN and AXG fall back to their ``..._AB`` code
    for both directions. ``ValueError`` for another call type.
    """
    if call_type not in (CALL_TYPE_A_TO_PEER, CALL_TYPE_PEER_TO_A):
        raise ValueError(f"ringback applies to connected calls (call_type 0 or 1), not {call_type}")
    return _CODES[binding_type][call_type]


def ringback_tone_for(
    binding_codes: Mapping[str, str],
    pool_codes: Mapping[str, str],
    *,
    binding_type: BindingType,
    call_type: int,
) -> str | None:
    """The tone id the caller hears while the callee rings, or None for no enterprise ringback.

    SPEC §2: the binding-level codes first, else the pool's. A binding that sets any code that
    applies to this call wins over the pool, including its ``..._AB`` fallback over a pool's
    direction-specific code: the tenant configured this binding on purpose. An empty tone id
    counts as unset.
    """
    names = ringback_codes_for(binding_type, call_type)
    for codes in (binding_codes, pool_codes):
        for name in names:
            tone = codes.get(name)
            if tone:
                return tone
    return None


# ------------------------------------------------------------------------------- files

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]")
_SAFE_PART_CHARS: Final = 40


def tone_file_name(tenant_id: str, tone_id: str) -> str:
    """The WAV file name of a tenant's tone: ``<tenant>--<tone>--<hash>.wav``.

    Both parts keep only ASCII letters, digits, '-' and '_' (others become '_', at most 40
    characters each, for an operator reading the directory); the 16 hex digits of SHA-256 over
    the exact pair make the name unique per pair. Never starts with '.' and has no '/'.
    """
    digest = hashlib.sha256(f"{tenant_id}\0{tone_id}".encode()).hexdigest()[:16]
    tenant = _UNSAFE.sub("_", tenant_id)[:_SAFE_PART_CHARS] or "_"
    tone = _UNSAFE.sub("_", tone_id)[:_SAFE_PART_CHARS] or "_"
    return f"{tenant}--{tone}--{digest}.wav"


@dataclass(frozen=True, slots=True)
class _Cached:
    # Identity of the file the frames came from: a replacement (os.replace) changes the inode,
    # an in-place rewrite the mtime or the size.
    signature: tuple[int, int, int]
    frames: tuple[bytes, ...]


class RingbackLibrary:
    """Tenants' ringback tones under ``ringback_dir`` as pre-encoded 20 ms G.711 payloads.

    :meth:`frames` costs one ``stat`` per call when cached; the first use of a tone (or of a
    replaced one) reads and encodes its WAV (a few ms for a 30 s tone). At most ``max_cached``
    (tone, payload type) entries are kept, least recently used dropped first.
    """

    def __init__(self, ringback_dir: Path, *, max_cached: int = 256) -> None:
        self.ringback_dir = Path(ringback_dir)
        self.max_cached = max_cached
        self._cache: OrderedDict[tuple[str, str, int], _Cached] = OrderedDict()

    def path_for(self, tenant_id: str, tone_id: str) -> Path:
        """The file of a tenant's tone (which may not exist)."""
        return self.ringback_dir / tone_file_name(tenant_id, tone_id)

    def frames(self, tenant_id: str | None, tone_id: str, payload_type: int) -> Sequence[bytes]:
        """The tone's payloads for ``payload_type`` (0 PCMU, 8 PCMA); empty when there is no
        such tone or its file is unusable (logged), so the call goes on without ringback.
        Tones belong to tenants: ``tenant_id`` None (a pool of the operator's) has none.

        ``ValueError`` for a payload type that is not G.711.
        """
        if payload_type not in (0, 8):
            raise ValueError(f"not a G.711 payload type: {payload_type}")
        if tenant_id is None:
            return ()
        key = (tenant_id, tone_id, payload_type)
        path = self.path_for(tenant_id, tone_id)
        try:
            status = os.stat(path)
        except FileNotFoundError:
            self._cache.pop(key, None)
            return ()
        signature = (status.st_ino, status.st_mtime_ns, status.st_size)
        cached = self._cache.get(key)
        if cached is not None and cached.signature == signature:
            self._cache.move_to_end(key)
            return cached.frames
        try:
            payloads = tuple(frames(read_wav(path), payload_type))
        except (AudioError, OSError) as error:
            self._cache.pop(key, None)
            _log.error(
                "ringback tone unusable",
                extra={"tenant_id": tenant_id, "file": path.name, "error": str(error)},
            )
            return ()
        self._cache[key] = _Cached(signature, payloads)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)
        return payloads

    def forget(self, tenant_id: str, tone_id: str) -> None:
        """Drop a tone's cached frames (optional: a replaced file is noticed by itself)."""
        for payload_type in (0, 8):
            self._cache.pop((tenant_id, tone_id, payload_type), None)
