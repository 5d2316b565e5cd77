"""Family ``taylorseer``: TaylorSeer (arXiv 2503.06923) on a transformer denoiser — the attention modules (or the
listed components) recompute at the first ``warmup`` steps and then every ``interval`` steps and are forecast by
a Taylor expansion of order ``order`` in between (see :class:`~cachesearch.schedule.TaylorSeer`). Baselines: a
grid of intervals at the section's warmup and each order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ....schedule import BlockSpace, Policy, TaylorSeer
from ..context import SpaceContext, is_transformer
from ..params import Dist, Fields, IntParam
from ._dit import check_component_spec, nonempty, require_transformer, select_components
from .base import BaselineGrid, MaskFamily

if TYPE_CHECKING:
    from ....evaluate._baselines import Baseline

__all__ = ["TaylorSeerFamily"]

DEFAULT_WARMUP = 3
"""diffusers' ``TaylorSeerCacheConfig.disable_cache_before_step``: the warm-up of the baselines (when in range)."""


def _clamp(p: IntParam, value: int) -> int:
    """``value`` moved into an integer range with numeric bounds."""
    return min(max(value, int(p.low)), int(p.high))


@dataclass(frozen=True)
class TaylorSeerFamily(MaskFamily):
    """Ranges of TaylorSeer's interval, warm-up and order; ``blocks``: ``attention`` (the adapter's attention
    components, TaylorSeer's default), ``all`` or a list of component kinds or names."""

    interval: IntParam
    warmup: IntParam
    order: IntParam
    blocks: str | tuple[str, ...]

    name: ClassVar[str] = "taylorseer"
    defaults: ClassVar[Mapping[str, Any]] = {
        "interval": {"low": 2, "high": 6},
        "warmup": {"low": 1, "high": 4},
        "order": {"low": 1, "high": 2},
        "blocks": "attention",
    }
    grid: ClassVar[BaselineGrid | None] = BaselineGrid("intervals", integer=True, lo=2)

    @classmethod
    def parse(cls, fields: Fields, path: str, section: Mapping[str, Any]) -> TaylorSeerFamily:
        order = fields.int(f"{path}.order", section["order"], lo=1)
        if int(order.high) > 2:
            raise fields.error(f"{path}.order", f"TaylorSeer forecasts with order 1 or 2, got up to {order.high}")
        return cls(
            interval=fields.int(f"{path}.interval", section["interval"], lo=1),
            warmup=fields.int(f"{path}.warmup", section["warmup"], lo=0),
            order=order,
            blocks=check_component_spec(fields, f"{path}.blocks", section["blocks"]),
        )

    @classmethod
    def supports(cls, blocks: BlockSpace) -> bool:
        return is_transformer(blocks)

    def targets(self, ctx: SpaceContext) -> tuple[str, ...] | None:
        """The policy's ``blocks``: None for the adapter's attention components, else the selected names."""
        return None if self.blocks == "attention" else select_components(self.blocks, ctx)

    def dists(self, ctx: SpaceContext, fields: Fields) -> list[Dist]:
        require_transformer(self.name, ctx, fields)
        nonempty(select_components(self.blocks, ctx, fields, "mask.taylorseer.blocks"), ctx, fields,
                 "mask.taylorseer.blocks")
        return [
            Dist.integer(fields, "taylorseer.interval", "mask.taylorseer.interval", self.interval, {}),
            Dist.integer(fields, "taylorseer.warmup", "mask.taylorseer.warmup", self.warmup, {}),
            Dist.integer(fields, "taylorseer.order", "mask.taylorseer.order", self.order, {}),
        ]

    def policy(self, values: Mapping[str, Any], ctx: SpaceContext, num_steps: int) -> TaylorSeer:
        return TaylorSeer(interval=int(values["taylorseer.interval"]), warmup=int(values["taylorseer.warmup"]),
                          order=int(values["taylorseer.order"]), blocks=self.targets(ctx))

    def params(self, policy: Policy | None, ctx: SpaceContext) -> dict[str, Any] | None:
        if not isinstance(policy, TaylorSeer) or policy.blocks != self.targets(ctx):
            return None
        return {"taylorseer.interval": policy.interval, "taylorseer.warmup": policy.warmup,
                "taylorseer.order": policy.order}

    def baselines(self, ctx: SpaceContext, grid: Sequence[Any] | None) -> list[Baseline]:
        """``taylorseer-nN-wW-oO`` for each interval ``N`` of the grid (default 2..5) and each order of the range,
        at diffusers' warm-up of 3 steps (moved into the warm-up range)."""
        from ....evaluate._baselines import Baseline

        if not ctx.transformer:
            return []
        warmup = _clamp(self.warmup, DEFAULT_WARMUP)
        out = []
        for n in sorted(set(grid if grid is not None else (2, 3, 4, 5))):
            for order in range(int(self.order.low), int(self.order.high) + 1):
                p = TaylorSeer(interval=n, warmup=warmup, order=order, blocks=self.targets(ctx))
                out.append(Baseline(kind=self.name, name=p.default_name(ctx.num_steps), policy=p))
        return out
