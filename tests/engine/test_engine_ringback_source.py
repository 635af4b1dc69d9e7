"""engine.server.ringback_source: which tone a routed call plays, from real tone files.

The control plane is a stand-in serving pools from a dict (its own tests cover the cache and
the store); the tones are real WAV files read by the real ``RingbackLibrary``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from api.errors import ErrorCode, NotFound
from engine.server import ringback_source
from media import g711
from media.audio import write_wav
from media.ringback import RingbackLibrary
from routing.model import Binding, BindingType, PhoneNumber, PoolKey, SubId

TENANT = "T1"
POOL = PoolKey("FC0000000000000001")


@dataclass
class FakePool:
    tenant_id: str | None
    ringback: dict[str, str] = field(default_factory=dict)


class FakeControl:
    def __init__(self, pools: dict[str, FakePool]) -> None:
        self.pools = pools
        self.reads = 0

    async def get_pool(self, pool_key: str) -> FakePool:
        self.reads += 1
        pool = self.pools.get(pool_key)
        if pool is None:
            raise NotFound(ErrorCode.POOL_NOT_EXIST, "no pool")
        return pool


def _binding(ringback: dict[str, str] | None = None, *, pool: PoolKey = POOL) -> Binding:
    return Binding(
        sub_id=SubId("1"),
        pool_key=pool,
        type=BindingType.AXB,
        x=PhoneNumber("+8617000000001"),
        a=PhoneNumber("+8613800138000"),
        b=PhoneNumber("+8613900139000"),
        expires_at=2e9,
        ringback=ringback or {},
    )


def _tone(library: RingbackLibrary, tone_id: str, frequency_hz: float) -> None:
    t = np.arange(4000) / 8000
    write_wav(
        library.path_for(TENANT, tone_id),
        (8000 * np.sin(2 * np.pi * frequency_hz * t)).astype(np.int16),
    )


def _frequency(frames: object) -> float:
    assert isinstance(frames, tuple | list) and frames
    samples = g711.decode(8, b"".join(frames)).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * 8000 / len(samples))


@pytest.fixture
def library(tmp_path: Path) -> RingbackLibrary:
    library = RingbackLibrary(tmp_path)
    _tone(library, "pool-tone", 400)
    _tone(library, "binding-tone", 1000)
    return library


async def test_binding_code_first_then_the_pools(library: RingbackLibrary) -> None:
    pools = {POOL: FakePool(TENANT, {"AXBRing_A": "pool-tone", "AXBRing_B": "pool-tone"})}
    source = ringback_source(FakeControl(pools), library)  # type: ignore[arg-type]
    binding = _binding({"AXBRing_A": "binding-tone"})
    assert abs(_frequency(await source(binding, 0, 8)) - 1000) < 20  # A calls: binding's
    assert abs(_frequency(await source(binding, 1, 8)) - 400) < 20  # B calls: the pool's
    assert len(await source(binding, 0, 0)) == 25  # 0.5 s in 20 ms PCMU frames too


async def test_no_tone_no_audio_no_pool_no_tenant_play_nothing(library: RingbackLibrary) -> None:
    pools = {
        POOL: FakePool(TENANT),
        PoolKey("FC-missing-file"): FakePool(TENANT, {"AXBRing_A": "never-uploaded"}),
        PoolKey("FC-operator"): FakePool(None, {"AXBRing_A": "pool-tone"}),
    }
    control = FakeControl(pools)
    source = ringback_source(control, library)  # type: ignore[arg-type]
    assert await source(_binding(), 0, 8) == ()
    assert await source(_binding(pool=PoolKey("FC-missing-file")), 0, 8) == ()
    assert await source(_binding(pool=PoolKey("FC-operator")), 0, 8) == ()  # tones are tenants'
    assert await source(_binding(pool=PoolKey("FC-gone")), 0, 8) == ()
    assert control.reads == 4
