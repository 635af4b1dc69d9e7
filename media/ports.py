"""RTP port allocation for the media relay (pure: no sockets, no clock).

Every relay socket takes an even RTP port and keeps the odd port above it (port + 1) reserved for
its RTCP, as RFC 3550 §11 and RFC 3605 §1 expect when an SDP has no ``a=rtcp:`` line. The free
list is FIFO: a released port goes to the back of the queue, so the whole range is cycled before
a port is handed out again and late packets of an ended call never reach the next one.
"""

from __future__ import annotations

from collections import deque

__all__ = ["PortAllocator", "PortsError", "PortsExhaustedError"]


class PortsError(ValueError):
    """Root of the port allocator's errors (misuse: bad range, double release)."""


class PortsExhaustedError(PortsError):
    """Every even port of the range is in use."""


class PortAllocator:
    """Hands out even RTP ports from ``port_min..port_max`` (inclusive), each with port + 1.

    ``allocate()`` returns the port that has been free for longest; ``release(port)`` puts it at
    the back of the queue. Both are O(1).
    """

    __slots__ = ("_free", "_in_use", "port_max", "port_min")

    def __init__(self, port_min: int, port_max: int) -> None:
        """Take the range; only pairs (even, even + 1) that lie wholly inside it are used."""
        if not 1 <= port_min <= port_max <= 65535:
            raise PortsError(f"bad port range {port_min}..{port_max}")
        self.port_min = port_min
        self.port_max = port_max
        first = port_min + (port_min & 1)  # the first even port
        # The pair (p, p + 1) must fit: p + 1 <= port_max.
        self._free: deque[int] = deque(range(first, port_max, 2))
        if not self._free:
            raise PortsError(f"port range {port_min}..{port_max} holds no even/odd pair")
        self._in_use: set[int] = set()

    @property
    def capacity(self) -> int:
        """How many RTP ports (pairs) the range holds."""
        return len(self._free) + len(self._in_use)

    @property
    def in_use(self) -> int:
        """How many ports are allocated and not yet released."""
        return len(self._in_use)

    @property
    def available(self) -> int:
        """How many ports can still be allocated."""
        return len(self._free)

    def is_allocated(self, port: int) -> bool:
        """Whether ``port`` is currently handed out."""
        return port in self._in_use

    def allocate(self) -> int:
        """Return an even port (its port + 1 is reserved with it) that has been free the longest.

        Raises ``PortsExhaustedError`` when every pair of the range is in use.
        """
        try:
            port = self._free.popleft()
        except IndexError:
            raise PortsExhaustedError(
                f"all {len(self._in_use)} RTP ports of {self.port_min}..{self.port_max} in use"
            ) from None
        self._in_use.add(port)
        return port

    def release(self, port: int) -> None:
        """Give ``port`` back; it is handed out again only after every other free port.

        Raises ``PortsError`` if ``port`` is not allocated (a double release is a bug in the
        caller, and silently accepting it would put the port twice in the queue).
        """
        try:
            self._in_use.remove(port)
        except KeyError:
            raise PortsError(f"port {port} is not allocated") from None
        self._free.append(port)
