"""The even-port FIFO allocator (media/ports.py)."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from media.ports import PortAllocator, PortsError, PortsExhaustedError


def test_even_ports_with_room_for_rtcp() -> None:
    # 20001 is odd (skipped); 20006 has no 20007 inside the range (skipped).
    alloc = PortAllocator(20001, 20006)
    assert alloc.capacity == 2
    assert [alloc.allocate(), alloc.allocate()] == [20002, 20004]
    assert alloc.in_use == 2 and alloc.available == 0
    with pytest.raises(PortsExhaustedError):
        alloc.allocate()


def test_fifo_release_does_not_reuse_at_once() -> None:
    alloc = PortAllocator(30000, 30009)  # 30000, 30002, 30004, 30006, 30008
    first = alloc.allocate()
    alloc.release(first)
    # every other port comes before the one just released
    assert [alloc.allocate() for _ in range(4)] == [30002, 30004, 30006, 30008]
    assert alloc.allocate() == first


def test_release_errors() -> None:
    alloc = PortAllocator(30000, 30003)
    port = alloc.allocate()
    alloc.release(port)
    with pytest.raises(PortsError):
        alloc.release(port)  # double release
    with pytest.raises(PortsError):
        alloc.release(30001)  # never allocated
    assert alloc.in_use == 0 and alloc.is_allocated(port) is False


def test_exhaustion_and_recovery() -> None:
    alloc = PortAllocator(30000, 30002)  # one pair: 30000/30001
    port = alloc.allocate()
    with pytest.raises(PortsExhaustedError) as info:
        alloc.allocate()
    assert isinstance(info.value, PortsError)
    alloc.release(port)
    assert alloc.allocate() == port


@pytest.mark.parametrize("bounds", [(0, 10), (10, 5), (20000, 70000), (20000, 20000), (5, 6)])
def test_bad_ranges(bounds: tuple[int, int]) -> None:
    # (5, 6): 6 is the only even port and 7 is outside the range.
    with pytest.raises(PortsError):
        PortAllocator(*bounds)


class AllocatorMachine(RuleBasedStateMachine):
    """Random allocate/release sequences against a model: a deque of free ports."""

    def __init__(self) -> None:
        super().__init__()
        self.alloc = PortAllocator(40001, 40020)
        self.free = deque(range(40002, 40020, 2))
        self.used: set[int] = set()

    @rule()
    def allocate(self) -> None:
        if not self.free:
            with pytest.raises(PortsExhaustedError):
                self.alloc.allocate()
            return
        port = self.alloc.allocate()
        assert port == self.free.popleft()
        self.used.add(port)

    @precondition(lambda self: bool(self.used))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        port = data.draw(st.sampled_from(sorted(self.used)))
        self.alloc.release(port)
        self.used.remove(port)
        self.free.append(port)

    @invariant()
    def consistent(self) -> None:
        assert self.alloc.in_use == len(self.used)
        assert self.alloc.available == len(self.free)
        assert self.alloc.capacity == 9
        for port in self.used:
            assert self.alloc.is_allocated(port)
            assert port % 2 == 0 and 40001 <= port < port + 1 <= 40020


TestAllocatorMachine = AllocatorMachine.TestCase
# Each example is a whole run of up to 50 steps; 500 of them cover a 9-port range many times
# over, where the CI profile's 10,000 would take minutes for no extra coverage.
TestAllocatorMachine.settings = settings(max_examples=500, stateful_step_count=50, deadline=None)
