"""``maskline`` control commands of the inventory area (registered by ``engine.cli.build_parser``).

Same output contract as the other control commands (see ``engine.cli``): one JSON object per
line on stdout, errors as ``{"code", "message"}`` with exit code 1 (or 2 for usage).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from engine.cli import Commands

__all__ = ["COMMANDS"]

#: One registration function per top-level command or group of this area.
COMMANDS: Final[tuple[Callable[[Commands], None], ...]] = ()
