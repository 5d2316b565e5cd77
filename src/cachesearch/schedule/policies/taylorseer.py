"""``TaylorSeer`` (arXiv 2503.06923): periodic recomputes of the attention modules, Taylor forecasts between."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .._blockspace import BlockSpace
from .._errors import ScheduleError, short_repr
from .._mask import RECOMPUTE, REUSE, check_block_name
from .base import MaskPolicy, Masks, Policy, check_int, register_policy

__all__ = ["TaylorSeer", "taylorseer_mask"]


def taylorseer_mask(num_steps: int, interval: int, warmup: int) -> str:
    """The recompute mask of diffusers' TaylorSeer hook over ``num_steps`` calls.

    Step ``s`` recomputes when ``s < warmup`` or ``(s - warmup - 1) % interval == 0`` (diffusers'
    ``disable_cache_before_step`` and ``cache_interval``); step 0 always recomputes (nothing to forecast from
    yet; diffusers raises there when ``warmup == 0``).
    """
    return "".join(
        RECOMPUTE if (s == 0 or s < warmup or (s - warmup - 1) % interval == 0) else REUSE for s in range(num_steps)
    )


@register_policy
@dataclass(frozen=True, kw_only=True)
class TaylorSeer(MaskPolicy):
    """TaylorSeer (arXiv 2503.06923): recompute ``blocks`` at the first ``warmup`` steps and then every
    ``interval`` steps; forecast them in between with a Taylor expansion of order ``order`` (reuse ``taylor``).

    The same steps and forecasts as diffusers' ``TaylorSeerCacheConfig(cache_interval=interval,
    disable_cache_before_step=warmup, max_order=order)`` on the same modules (with float32 Taylor factors).

    Args:
        interval: recompute every ``interval`` steps after the warm-up (1: every step).
        warmup: the first steps, all recomputed (they seed the finite differences).
        order: 1 (linear) or 2 (quadratic) forecast.
        blocks: the blocks or components to forecast; ``None`` = the adapter's attention components (what
            diffusers' default identifiers select on FLUX: every ``attn`` of its double and single blocks).
    """

    kind: ClassVar[str] = "taylorseer"
    since_format: ClassVar[int] = 3
    interval: int
    warmup: int = 3
    order: int = 1
    blocks: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval", check_int("policy.interval", self.interval, lo=1))
        object.__setattr__(self, "warmup", check_int("policy.warmup", self.warmup, lo=0))
        object.__setattr__(self, "order", check_int("policy.order", self.order, lo=1, hi=2))
        if self.blocks is not None:
            if isinstance(self.blocks, str) or not isinstance(self.blocks, Sequence) or not self.blocks:
                raise ScheduleError(
                    f"policy.blocks: expected null or a non-empty list of block names, got {short_repr(self.blocks)}"
                )
            names = tuple(check_block_name(f"policy.blocks[{i}]", b) for i, b in enumerate(self.blocks))
            if len(set(names)) != len(names):
                raise ScheduleError("policy.blocks: a block is listed twice")
            object.__setattr__(self, "blocks", names)

    def _names(self, space: BlockSpace) -> tuple[str, ...]:
        if self.blocks is None:
            names = space.attention_components()
            if not names:
                raise ScheduleError(
                    f"policy.blocks: the {space.family} adapter marks no attention components to forecast; "
                    f"list the blocks: TaylorSeer(..., blocks=[...])"
                )
            return names
        space.check_names(self.blocks, "policy.blocks")
        space.check_disjoint(self.blocks)
        return space.order(self.blocks)

    def masks(self, space: BlockSpace, num_steps: int, *, call_starts: Sequence[int] | None = None) -> Masks:
        m = taylorseer_mask(num_steps, self.interval, self.warmup)
        return {name: (m, m) for name in self._names(space)}

    def reuse(self) -> tuple[str, int | None]:
        return ("taylor", self.order)

    def retime(self, masks, num_steps, *, call_starts=None):  # noqa: D102 - see Policy.retime
        m = taylorseer_mask(num_steps, self.interval, self.warmup)
        return self, {name: (m, m) for name in masks}

    def default_name(self, num_steps: int) -> str:
        return f"taylorseer-n{self.interval}-w{self.warmup}-o{self.order}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "interval": self.interval, "warmup": self.warmup, "order": self.order,
                "blocks": None if self.blocks is None else list(self.blocks)}

    @classmethod
    def from_dict(cls, args: Mapping[str, Any], path: str) -> Policy:
        args = dict(args)
        if isinstance(args.get("blocks"), list):
            args["blocks"] = tuple(args["blocks"])
        return super().from_dict(args, path)
