"""Who is asking: the operator (sees everything) or one tenant (sees only its own resources).

Every control-plane use case takes ``tenant: str | None`` (``None`` = the operator). A tenant
asking for another tenant's pool, number, binding, group or record gets exactly the answer of a
resource that does not exist (SPEC §8, issue 4: cross-tenant access must not even reveal that
the resource exists), so ownership is checked where the resource is looked up, never after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["OPERATOR", "Principal", "visible_to"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: ``tenant_id`` None is the operator role."""

    tenant_id: str | None
    access_key_id: str | None = None

    @property
    def is_operator(self) -> bool:
        """True for the operator role."""
        return self.tenant_id is None


OPERATOR: Final = Principal(None)


def visible_to(owner_tenant_id: str | None, tenant: str | None) -> bool:
    """Whether a resource owned by ``owner_tenant_id`` is visible to ``tenant`` (None: operator)."""
    return tenant is None or owner_tenant_id == tenant
