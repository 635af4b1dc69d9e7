"""AXG groups and blacklists (pool-wide and point-to-point).

A service of the control plane: constructed by :class:`api.control.ControlPlane` with itself,
so it shares the database, the clock, the binding index and the tenant scoping (``tenant``
None = operator; another tenant's resource answers as one that does not exist).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from api.control import ControlPlane

__all__ = ["Lists"]


class Lists:
    """AXG groups and blacklists (pool-wide and point-to-point)."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    async def load(self) -> None:
        """Load this service's in-memory state at start-up (before calls are routed)."""
