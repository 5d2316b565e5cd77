"""``Full``: recompute every block at every step (the uncached reference)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from .._blockspace import BlockKind, BlockSpace
from .._mask import RECOMPUTE
from .base import MaskPolicy, Masks, register_policy

__all__ = ["Full"]


@register_policy
@dataclass(frozen=True, kw_only=True)
class Full(MaskPolicy):
    """Recompute every block at every step (the uncached reference)."""

    kind: ClassVar[str] = "full"

    def masks(self, space: BlockSpace, num_steps: int, *, call_starts: Sequence[int] | None = None) -> Masks:
        full = RECOMPUTE * num_steps
        return {n: (full, full) for n in space.names(BlockKind.STAGE)}

    def retime(self, masks, num_steps, *, call_starts=None):  # noqa: D102 - see Policy.retime
        full = RECOMPUTE * num_steps
        return self, {n: (full, full) for n in masks}
