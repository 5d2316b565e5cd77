"""Family ``seacache``: diffusers' SeaCache — the transformer's repeated blocks are replaced by a (linearly
extrapolated) cached residual while the accumulated change of its spectral-evolution indicators stays under
``threshold``; never in the first ``retention_steps`` steps, at most ``max_consecutive`` reuses in a row. In diffusers
0.42 it runs where a built-in raw-vision adapter exists and the pipeline passes the step, sigma and step count in
its ``cache_context`` (Wan 2.1/2.2 text-to-video, Cosmos 3); elsewhere it is unavailable (diffusers would run it in
"fail-open" mode: full compute). Baselines: thresholds 0.1, 0.25 (its default), 0.5."""

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

__all__ = ["SeaCacheFamily"]

DENOISERS = ("WanTransformer3DModel", "Cosmos3OmniTransformer")
"""The denoisers diffusers 0.42's SeaCache has a built-in raw-vision adapter for."""
_NAMES = {"seacache.threshold": "threshold", "seacache.retention_steps": "retention_steps",
          "seacache.max_consecutive": "max_consecutive_cached"}


@dataclass(frozen=True)
class SeaCacheFamily(RuntimeFamily):
    """Ranges of SeaCache's threshold, retained first steps and reuses in a row."""

    threshold: FloatParam
    retention_steps: IntParam
    max_consecutive: IntParam

    name: ClassVar[str] = "seacache"
    library: ClassVar[str] = "diffusers"
    block_hooks: ClassVar[bool] = True
    method: ClassVar[str] = "SeaCacheConfig"
    defaults: ClassVar[Mapping[str, Any]] = {
        "threshold": {"low": 0.05, "high": 1.0, "log": True},
        "retention_steps": {"low": 0, "high": 3},
        "max_consecutive": {"low": 1, "high": 4},
    }
    grid: ClassVar[BaselineGrid | None] = BaselineGrid("thresholds", integer=False, lo=0.0)

    @classmethod
    def parse(cls, fields: Fields, path: str, section: Mapping[str, Any]) -> SeaCacheFamily:
        return cls(threshold=fields.float(f"{path}.threshold", section["threshold"], lo=0.0),
                   retention_steps=fields.int(f"{path}.retention_steps", section["retention_steps"], lo=0),
                   max_consecutive=fields.int(f"{path}.max_consecutive", section["max_consecutive"], lo=0))

    def unavailable(self, ctx: SpaceContext) -> str | None:
        why = super().unavailable(ctx)
        if why is None and ctx.pipe is not None and ctx.denoiser_class not in DENOISERS:
            why = (f"diffusers' SeaCache has no raw-vision adapter for {ctx.denoiser_class} (it has one for "
                   f"{', '.join(DENOISERS)}) and would run full compute")
        return why

    def dists(self, ctx: SpaceContext, fields: Fields) -> list[Dist]:
        self.require(ctx, fields)
        return [Dist.real("seacache.threshold", self.threshold),
                Dist.integer(fields, "seacache.retention_steps", "mask.seacache.retention_steps",
                             self.retention_steps, {}),
                Dist.integer(fields, "seacache.max_consecutive", "mask.seacache.max_consecutive",
                             self.max_consecutive, {})]

    def policy(self, values: Mapping[str, Any], ctx: SpaceContext, num_steps: int) -> DiffusersCache:
        return self.diffusers(self.method, threshold=float(values["seacache.threshold"]),
                              retention_steps=int(values["seacache.retention_steps"]),
                              max_consecutive_cached=int(values["seacache.max_consecutive"]))

    def params(self, policy: Policy | None, ctx: SpaceContext) -> dict[str, Any] | None:
        cfg = config_of(policy, self.method)
        return None if cfg is None else self.values(cfg, _NAMES)

    def baselines(self, ctx: SpaceContext, grid: Sequence[Any] | None) -> list[Baseline]:
        from ....evaluate._baselines import Baseline

        if self.unavailable(ctx) is not None:
            return []
        out = []
        for t in sorted(set(grid if grid is not None else (0.1, 0.25, 0.5))):
            values = {"seacache.threshold": float(t), "seacache.retention_steps": 1, "seacache.max_consecutive": 2}
            p = self.policy(values, ctx, ctx.num_steps)
            out.append(Baseline(kind=self.name, name=p.default_name(ctx.num_steps), policy=p))
        return out
