"""Family ``fbcache``: diffusers' FirstBlockCache — after the first transformer block, the rest of the stack is
skipped (its last residual reused) while the first block's residual changed by less than ``threshold`` (relative
L1) since the last computed step. Baselines: a grid of thresholds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ....schedule import DiffusersCache, Policy
from ..context import SpaceContext
from ..params import Dist, Fields, FloatParam
from ._runtime import RuntimeFamily, config_of
from .base import BaselineGrid

if TYPE_CHECKING:
    from ....evaluate._baselines import Baseline

__all__ = ["FBCacheFamily"]

THRESHOLDS = (0.05, 0.1, 0.2, 0.4)
"""Default baseline thresholds (diffusers' default is 0.05)."""


@dataclass(frozen=True)
class FBCacheFamily(RuntimeFamily):
    """Range of FirstBlockCache's threshold."""

    threshold: FloatParam

    name: ClassVar[str] = "fbcache"
    library: ClassVar[str] = "diffusers"
    block_hooks: ClassVar[bool] = True
    method: ClassVar[str] = "FirstBlockCacheConfig"
    defaults: ClassVar[Mapping[str, Any]] = {"threshold": {"low": 0.01, "high": 1.0, "log": True}}
    grid: ClassVar[BaselineGrid | None] = BaselineGrid("thresholds", integer=False, lo=0.0)

    @classmethod
    def parse(cls, fields: Fields, path: str, section: Mapping[str, Any]) -> FBCacheFamily:
        return cls(threshold=fields.float(f"{path}.threshold", section["threshold"], lo=0.0))

    def dists(self, ctx: SpaceContext, fields: Fields) -> list[Dist]:
        self.require(ctx, fields)
        return [Dist.real("fbcache.threshold", self.threshold)]

    def policy(self, values: Mapping[str, Any], ctx: SpaceContext, num_steps: int) -> DiffusersCache:
        return self.diffusers(self.method, threshold=float(values["fbcache.threshold"]))

    def params(self, policy: Policy | None, ctx: SpaceContext) -> dict[str, Any] | None:
        cfg = config_of(policy, self.method)
        return None if cfg is None else self.values(cfg, {"fbcache.threshold": "threshold"})

    def baselines(self, ctx: SpaceContext, grid: Sequence[Any] | None) -> list[Baseline]:
        from ....evaluate._baselines import Baseline

        if self.unavailable(ctx) is not None:
            return []
        out = []
        for t in sorted(set(grid if grid is not None else THRESHOLDS)):
            p = self.policy({"fbcache.threshold": float(t)}, ctx, ctx.num_steps)
            out.append(Baseline(kind=self.name, name=p.default_name(ctx.num_steps), policy=p))
        return out
