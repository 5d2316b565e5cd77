"""Family ``blockcaching``: Block Caching's automatic schedule — a block is recomputed once its accumulated
relative change (from the run's block-change profile) exceeds ``threshold``. Always on the reference steps,
which the profile covers. Baselines: a grid of thresholds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ....schedule import BlockCachingAuto, Policy
from ..context import SpaceContext
from ..params import Dist, Fields, FloatParam
from .base import BaselineGrid, MaskFamily

if TYPE_CHECKING:
    from ....evaluate._baselines import Baseline

__all__ = ["BlockCachingFamily"]


@dataclass(frozen=True)
class BlockCachingFamily(MaskFamily):
    """Range of Block Caching's change threshold (needs the run's block-change profile)."""

    threshold: FloatParam

    name: ClassVar[str] = "blockcaching"
    defaults: ClassVar[Mapping[str, Any]] = {"threshold": {"low": 0.01, "high": 2.0, "log": True}}
    grid: ClassVar[BaselineGrid | None] = BaselineGrid("thresholds", integer=False, lo=0.0)
    reference_steps: ClassVar[bool] = True

    @classmethod
    def parse(cls, fields: Fields, path: str, section: Mapping[str, Any]) -> BlockCachingFamily:
        return cls(threshold=fields.float(f"{path}.threshold", section["threshold"], lo=0.0))

    def dists(self, ctx: SpaceContext, fields: Fields) -> list[Dist]:
        if ctx.profile is None:
            raise fields.error("mask.families", "family 'blockcaching' needs the run's block-change profile, which "
                                                "was not computed")
        return [Dist.real("blockcaching.threshold", self.threshold)]

    def policy(self, values: Mapping[str, Any], ctx: SpaceContext, num_steps: int) -> BlockCachingAuto:
        return BlockCachingAuto(threshold=float(values["blockcaching.threshold"]), profile=ctx.profile,
                                profile_id=ctx.profile_id)

    def params(self, policy: Policy | None, ctx: SpaceContext) -> dict[str, Any] | None:
        if not isinstance(policy, BlockCachingAuto):
            return None
        return {"blockcaching.threshold": policy.threshold}

    def same(self, a: Policy, b: Policy) -> bool:
        """Equal thresholds: the profile is the run's own; its id may be spelled differently."""
        if isinstance(a, BlockCachingAuto) and isinstance(b, BlockCachingAuto):
            return a.threshold == b.threshold
        return a == b

    def baselines(self, ctx: SpaceContext, grid: Sequence[Any] | None) -> list[Baseline]:
        from ....evaluate._baselines import DEFAULT_THRESHOLDS, blockcaching_baselines

        if ctx.profile is None or ctx.block_space is None:
            return []
        thresholds = DEFAULT_THRESHOLDS if grid is None else tuple(grid)
        return blockcaching_baselines(ctx.block_space, ctx.num_steps, ctx.profile, thresholds)
