"""Family ``pab``: diffusers' Pyramid Attention Broadcast — the attention outputs of the transformer blocks are
computed every ``skip`` steps and broadcast (reused) in between, while the timestep is inside ``(t_low, t_high)``.
Needs a pipeline that reports its ``current_timestep``. Baselines: skip ranges 2, 3, 4 at PAB's default timestep
range (100, 800)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ....schedule import DiffusersCache, Policy
from ..context import SpaceContext
from ..params import Dist, Fields, IntParam
from ._runtime import RuntimeFamily, config_of
from .base import BaselineGrid

if TYPE_CHECKING:
    from ....evaluate._baselines import Baseline

__all__ = ["PABFamily"]

TIMESTEP = "pipeline.current_timestep"  # the callback's plain marker: rebuilt as lambda: pipe.current_timestep


@dataclass(frozen=True)
class PABFamily(RuntimeFamily):
    """Ranges of PAB's spatial-attention skip range and its timestep window."""

    skip: IntParam
    t_low: IntParam
    t_high: IntParam

    name: ClassVar[str] = "pab"
    library: ClassVar[str] = "diffusers"
    method: ClassVar[str] = "PyramidAttentionBroadcastConfig"
    defaults: ClassVar[Mapping[str, Any]] = {
        "skip": {"low": 2, "high": 5},
        "t_low": {"low": 0, "high": 400},
        "t_high": {"low": 600, "high": 1000},
    }
    grid: ClassVar[BaselineGrid | None] = BaselineGrid("skips", integer=True, lo=2)

    @classmethod
    def parse(cls, fields: Fields, path: str, section: Mapping[str, Any]) -> PABFamily:
        return cls(skip=fields.int(f"{path}.skip", section["skip"], lo=1),
                   t_low=fields.int(f"{path}.t_low", section["t_low"], lo=-1),
                   t_high=fields.int(f"{path}.t_high", section["t_high"], lo=0))

    def dists(self, ctx: SpaceContext, fields: Fields) -> list[Dist]:
        self.require(ctx, fields)
        return [Dist.integer(fields, "pab.skip", "mask.pab.skip", self.skip, {}),
                Dist.integer(fields, "pab.t_low", "mask.pab.t_low", self.t_low, {}),
                Dist.integer(fields, "pab.t_high", "mask.pab.t_high", self.t_high, {})]

    def policy(self, values: Mapping[str, Any], ctx: SpaceContext, num_steps: int) -> DiffusersCache:
        return self.diffusers(self.method, spatial_attention_block_skip_range=int(values["pab.skip"]),
                              spatial_attention_timestep_skip_range=[int(values["pab.t_low"]),
                                                                     int(values["pab.t_high"])],
                              current_timestep_callback=TIMESTEP)

    def params(self, policy: Policy | None, ctx: SpaceContext) -> dict[str, Any] | None:
        cfg = config_of(policy, self.method)
        if cfg is None or "spatial_attention_block_skip_range" not in cfg.fields:
            return None
        low, high = cfg.fields.get("spatial_attention_timestep_skip_range", (100, 800))
        return {"pab.skip": cfg.fields["spatial_attention_block_skip_range"], "pab.t_low": low, "pab.t_high": high}

    def baselines(self, ctx: SpaceContext, grid: Sequence[Any] | None) -> list[Baseline]:
        from ....evaluate._baselines import Baseline

        if self.unavailable(ctx) is not None:
            return []
        out = []
        for skip in sorted(set(grid if grid is not None else (2, 3, 4))):
            p = self.policy({"pab.skip": skip, "pab.t_low": 100, "pab.t_high": 800}, ctx, ctx.num_steps)
            out.append(Baseline(kind=self.name, name=p.default_name(ctx.num_steps), policy=p))
        return out
