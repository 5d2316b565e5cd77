"""Family ``magcache``: diffusers' MagCache — the stack's residual is reused while the accumulated error of the
per-step magnitude ratios stays under ``threshold`` (at most ``max_skip_steps`` steps in a row, never in the first
``retention`` fraction of the steps). The ratios come from MagCache's own calibration run on the train prompts,
made once per search (:func:`cachesearch.evaluate.magcache_ratios`; counted in the run's time and stored in the
study). Baselines: a grid of thresholds at K = 3, retention 0.2 (MagCache's defaults)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ....schedule import DiffusersCache, Policy
from ..context import SpaceContext
from ..params import Dist, Fields, FloatParam, IntParam
from ._runtime import RuntimeFamily, config_of
from .base import BaselineGrid

if TYPE_CHECKING:
    from ....evaluate._baselines import Baseline

__all__ = ["MagCacheFamily"]

THRESHOLDS = (0.06, 0.12, 0.24)
"""Default baseline thresholds (MagCache's default is 0.06)."""
_NAMES = {"magcache.threshold": "threshold", "magcache.max_skip_steps": "max_skip_steps",
          "magcache.retention": "retention_ratio"}


@dataclass(frozen=True)
class MagCacheFamily(RuntimeFamily):
    """Ranges of MagCache's threshold, maximum skipped steps in a row and retention ratio."""

    threshold: FloatParam
    max_skip_steps: IntParam
    retention: FloatParam

    name: ClassVar[str] = "magcache"
    library: ClassVar[str] = "diffusers"
    block_hooks: ClassVar[bool] = True
    method: ClassVar[str] = "MagCacheConfig"
    defaults: ClassVar[Mapping[str, Any]] = {
        "threshold": {"low": 0.01, "high": 1.0, "log": True},
        "max_skip_steps": {"low": 1, "high": 5},
        "retention": {"low": 0.0, "high": 0.4},
    }
    grid: ClassVar[BaselineGrid | None] = BaselineGrid("thresholds", integer=False, lo=0.0)

    @classmethod
    def parse(cls, fields: Fields, path: str, section: Mapping[str, Any]) -> MagCacheFamily:
        return cls(threshold=fields.float(f"{path}.threshold", section["threshold"], lo=0.0),
                   max_skip_steps=fields.int(f"{path}.max_skip_steps", section["max_skip_steps"], lo=0),
                   retention=fields.float(f"{path}.retention", section["retention"], lo=0.0, hi=1.0))

    def dists(self, ctx: SpaceContext, fields: Fields) -> list[Dist]:
        self.require(ctx, fields)
        return [Dist.real("magcache.threshold", self.threshold),
                Dist.integer(fields, "magcache.max_skip_steps", "mask.magcache.max_skip_steps", self.max_skip_steps,
                             {}),
                Dist.real("magcache.retention", self.retention)]

    def policy(self, values: Mapping[str, Any], ctx: SpaceContext, num_steps: int) -> DiffusersCache:
        if ctx.mag_ratios is None:
            from ....schedule import ScheduleError

            raise ScheduleError("mask.magcache: MagCache's ratios were not calibrated for this run")
        return self.diffusers(self.method, threshold=float(values["magcache.threshold"]),
                              max_skip_steps=int(values["magcache.max_skip_steps"]),
                              retention_ratio=float(values["magcache.retention"]), num_inference_steps=num_steps,
                              mag_ratios=list(ctx.mag_ratios))

    def params(self, policy: Policy | None, ctx: SpaceContext) -> dict[str, Any] | None:
        cfg = config_of(policy, self.method)
        return None if cfg is None else self.values(cfg, _NAMES)

    def baselines(self, ctx: SpaceContext, grid: Sequence[Any] | None) -> list[Baseline]:
        from ....evaluate._baselines import Baseline

        if self.unavailable(ctx) is not None or ctx.mag_ratios is None:
            return []
        out = []
        for t in sorted(set(grid if grid is not None else THRESHOLDS)):
            values = {"magcache.threshold": float(t), "magcache.max_skip_steps": 3, "magcache.retention": 0.2}
            p = self.policy(values, ctx, ctx.num_steps)
            out.append(Baseline(kind=self.name, name=p.default_name(ctx.num_steps), policy=p))
        return out
