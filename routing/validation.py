"""Field checks of a binding that need no other binding (SPEC §2 per-binding options).

Two levels:

- :func:`check_shape` — what every binding in the index must satisfy whatever the time: the
  fields its type needs (AXB: B, distinct from A; AXN_EXT: a 1–3 digit extension; AXG: a
  group).  :meth:`routing.index.BindingIndex.check` runs it before the X-sharing rules.
- :func:`validate_request` — the shape plus the rules of a bind or update request at ``now``:
  expiry more than 60 s ahead, ringing timeout 5–180 s.  The API runs it; the index does not,
  so that bindings loaded at start (some already expired) are still indexed.

Errors are :class:`InvalidBindingError` with a stable ``code``; where the reference service has
a code for the same fault its name is reused (``EXPIRE_DATE_ILLEGAL``).
"""

from __future__ import annotations

from typing import Final

from routing.model import (
    MAX_RING_TIMEOUT_S,
    MIN_RING_TIMEOUT_S,
    Binding,
    BindingType,
    RoutingError,
)

__all__ = [
    "MIN_EXPIRY_AHEAD_S",
    "InvalidBindingError",
    "check_shape",
    "is_valid_extension",
    "validate_request",
]

# SPEC §2: the expiry must be more than 60 s in the future.
MIN_EXPIRY_AHEAD_S: Final = 60.0
MAX_EXTENSION_DIGITS: Final = 3


class InvalidBindingError(RoutingError, ValueError):
    """A binding whose own fields break a rule (no other binding involved).

    Codes: ``B_REQUIRED`` (AXB without B), ``SAME_NUMBER`` (A equals B), ``EXTENSION_REQUIRED``,
    ``EXTENSION_ILLEGAL`` (not 1–3 digits), ``GROUP_REQUIRED`` (AXG without group),
    ``EXPIRE_DATE_ILLEGAL`` (not more than 60 s ahead), ``RING_TIMEOUT_ILLEGAL`` (not 5–180 s).
    """


def is_valid_extension(extension: str) -> bool:
    """True for 1–3 ASCII digits (SPEC §2 AXN extension)."""
    length_ok = 1 <= len(extension) <= MAX_EXTENSION_DIGITS
    return length_ok and extension.isascii() and extension.isdigit()


def check_shape(binding: Binding) -> None:
    """Raise :class:`InvalidBindingError` when the binding lacks what its type needs."""
    kind = binding.type
    if kind is BindingType.AXB and binding.b is None:
        raise InvalidBindingError("B_REQUIRED", "an AXB binding needs both A and B")
    if binding.b is not None and binding.b == binding.a:
        raise InvalidBindingError("SAME_NUMBER", "A and B must be different numbers")
    if kind is BindingType.AXN_EXT:
        if binding.extension is None:
            raise InvalidBindingError("EXTENSION_REQUIRED", "an AXN extension binding needs one")
        if not is_valid_extension(binding.extension):
            raise InvalidBindingError("EXTENSION_ILLEGAL", "an extension is 1 to 3 digits")
    elif binding.extension is not None:
        raise InvalidBindingError("EXTENSION_ILLEGAL", f"a {kind} binding has no extension")
    if kind is BindingType.AXG and binding.group_id is None:
        raise InvalidBindingError("GROUP_REQUIRED", "an AXG binding needs a number group")


def validate_request(binding: Binding, *, now: float) -> None:
    """Checks of a bind or update request received at ``now`` (UTC epoch seconds).

    The shape (:func:`check_shape`), an expiry more than 60 s after ``now`` and a ringing
    timeout within 5–180 s.
    """
    check_shape(binding)
    if not binding.expires_at > now + MIN_EXPIRY_AHEAD_S:
        raise InvalidBindingError(
            "EXPIRE_DATE_ILLEGAL", "the expiry must be more than 60 seconds in the future"
        )
    if not MIN_RING_TIMEOUT_S <= binding.ring_timeout_s <= MAX_RING_TIMEOUT_S:
        raise InvalidBindingError(
            "RING_TIMEOUT_ILLEGAL",
            f"the ringing timeout must be {MIN_RING_TIMEOUT_S} to {MAX_RING_TIMEOUT_S} seconds",
        )
