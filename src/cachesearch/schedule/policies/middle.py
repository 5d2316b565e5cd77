"""``MiddleCache``: the first and last blocks of the stack run every step, the middle ones every N steps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from .._blockspace import BlockKind, BlockSpace
from .._errors import ScheduleError
from .._mask import RECOMPUTE, REUSE
from .base import MaskPolicy, Masks, check_int, register_policy

__all__ = ["MiddleCache"]


@register_policy
@dataclass(frozen=True, kw_only=True)
class MiddleCache(MaskPolicy):
    """A static middle-of-the-stack cache: the first ``front`` and last ``back`` blocks of the denoiser's stack
    (its stages in execution order: a DiT's transformer blocks, a UNet's down/mid/up blocks) recompute every
    step; the blocks between them recompute at the first ``warmup`` steps and then every ``interval`` steps.

    This is the static form of cache-dit's DBCache ``Fn``/``Bn`` (which decides the middle's recomputes from a
    residual threshold at run time) and of Δ-DiT's stage-wise block cache. It is made for ``reuse: residual``
    (the default when compiled): a reused middle block adds its stored ``output − input`` to its fresh input,
    so the reused middle as a whole adds the residual it last computed, exactly as DBCache does (both streams
    of dual-stream blocks).

    Args:
        interval: recompute the middle every ``interval`` steps (1: every step).
        front: blocks at the start of the stack that always run (DBCache's ``Fn``).
        back: blocks at the end of the stack that always run (DBCache's ``Bn``).
        warmup: the first steps, where every block runs.
    """

    kind: ClassVar[str] = "middle"
    since_format: ClassVar[int] = 3
    interval: int
    front: int = 1
    back: int = 0
    warmup: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval", check_int("policy.interval", self.interval, lo=1))
        object.__setattr__(self, "front", check_int("policy.front", self.front, lo=0))
        object.__setattr__(self, "back", check_int("policy.back", self.back, lo=0))
        object.__setattr__(self, "warmup", check_int("policy.warmup", self.warmup, lo=0))

    def mask(self, num_steps: int) -> str:
        """The mask of every middle block over ``num_steps`` steps."""
        return "".join(
            RECOMPUTE if (s < max(self.warmup, 1) or (s - self.warmup) % self.interval == 0) else REUSE
            for s in range(num_steps)
        )

    def middle(self, space: BlockSpace) -> tuple[str, ...]:
        """The middle blocks of ``space``'s stack."""
        stack = space.names(BlockKind.STAGE)
        if self.front + self.back >= len(stack):
            raise ScheduleError(
                f"policy.front + policy.back: {self.front} + {self.back} blocks always run, which leaves no middle "
                f"block to cache in this {space.family} denoiser's stack of {len(stack)}"
            )
        return stack[self.front : len(stack) - self.back]

    def masks(self, space: BlockSpace, num_steps: int, *, call_starts: Sequence[int] | None = None) -> Masks:
        m = self.mask(num_steps)
        return {name: (m, m) for name in self.middle(space)}

    def reuse(self) -> tuple[str, int | None]:
        return ("residual", None)

    def retime(self, masks, num_steps, *, call_starts=None):  # noqa: D102 - see Policy.retime
        m = self.mask(num_steps)
        return self, {name: (m, m) for name in masks}

    def default_name(self, num_steps: int) -> str:
        warm = f"-w{self.warmup}" if self.warmup else ""
        return f"middle-n{self.interval}-f{self.front}-b{self.back}{warm}"
