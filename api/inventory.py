"""X-number inventory: stock, covered cities, purchase, release, lock, verification, migration.

A service of the control plane: constructed by :class:`api.control.ControlPlane` with itself,
so it shares the database, the clock, the binding index and the tenant scoping (``tenant``
None = operator; another tenant's resource answers as one that does not exist).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from api.control import ControlPlane

__all__ = ["Inventory"]


class Inventory:
    """X-number inventory and the tenants' balance."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    async def load(self) -> None:
        """Load this service's in-memory state at start-up (before calls are routed)."""
