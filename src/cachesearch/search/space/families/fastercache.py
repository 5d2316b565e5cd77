"""Family ``fastercache``: diffusers' FasterCache, attention half — spatial attention outputs are computed every
``skip`` steps and extrapolated in between (``t_i ≈ t_{i-1} + w (t_{i-1} - t_{i-2})``, weight 0.5, diffusers'
default) while the timestep is below ``t_high``. Its CFG-Cache half needs the pipeline to batch ``[uncond; cond]``
at the denoiser's input; where it does not (guidance-distilled FLUX, or CFG batched inside the denoiser as the
embedded shapes-flux model does, or separate passes) the config says ``is_guidance_distilled``. Needs a pipeline
that reports its ``current_timestep``. Baselines: skip ranges 2 and 3 at FasterCache's default window (-1, 681)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ....schedule import DiffusersCache, Policy
from ..context import SpaceContext
from ..params import Dist, Fields, IntParam
from ._runtime import RuntimeFamily, config_of
from .base import BaselineGrid
from .pab import TIMESTEP

if TYPE_CHECKING:
    from ....evaluate._baselines import Baseline

__all__ = ["FasterCacheFamily"]


def guidance_in_input(ctx: SpaceContext) -> bool:
    """Whether the pipeline batches ``[uncond; cond]`` at the denoiser's input (FasterCache's CFG-Cache half)."""
    pipe = ctx.pipe
    denoiser = getattr(pipe, "transformer", None)
    if pipe is None or denoiser is None or getattr(denoiser, "cfg_batch", False):
        return False  # the guided transformer batches CFG inside its own call
    from ....adapters import adapter_for
    from ....adapters.base import CFG

    if adapter_for(denoiser).cfg is not CFG.BATCHED:
        return False  # separate cond / uncond calls (Wan: diffusers' CFG-Cache half fails on its batch of one)
    return bool(getattr(pipe, "do_classifier_free_guidance", False))


@dataclass(frozen=True)
class FasterCacheFamily(RuntimeFamily):
    """Ranges of FasterCache's spatial-attention skip range and the end of its timestep window."""

    skip: IntParam
    t_high: IntParam

    name: ClassVar[str] = "fastercache"
    library: ClassVar[str] = "diffusers"
    method: ClassVar[str] = "FasterCacheConfig"
    defaults: ClassVar[Mapping[str, Any]] = {"skip": {"low": 2, "high": 5}, "t_high": {"low": 300, "high": 1000}}
    grid: ClassVar[BaselineGrid | None] = BaselineGrid("skips", integer=True, lo=2)

    @classmethod
    def parse(cls, fields: Fields, path: str, section: Mapping[str, Any]) -> FasterCacheFamily:
        return cls(skip=fields.int(f"{path}.skip", section["skip"], lo=1),
                   t_high=fields.int(f"{path}.t_high", section["t_high"], lo=0))

    def dists(self, ctx: SpaceContext, fields: Fields) -> list[Dist]:
        self.require(ctx, fields)
        return [Dist.integer(fields, "fastercache.skip", "mask.fastercache.skip", self.skip, {}),
                Dist.integer(fields, "fastercache.t_high", "mask.fastercache.t_high", self.t_high, {})]

    def policy(self, values: Mapping[str, Any], ctx: SpaceContext, num_steps: int) -> DiffusersCache:
        return self.diffusers(self.method, spatial_attention_block_skip_range=int(values["fastercache.skip"]),
                              spatial_attention_timestep_skip_range=[-1, int(values["fastercache.t_high"])],
                              is_guidance_distilled=not guidance_in_input(ctx), current_timestep_callback=TIMESTEP)

    def params(self, policy: Policy | None, ctx: SpaceContext) -> dict[str, Any] | None:
        cfg = config_of(policy, self.method)
        if cfg is None or "spatial_attention_block_skip_range" not in cfg.fields:
            return None
        _, high = cfg.fields.get("spatial_attention_timestep_skip_range", (-1, 681))
        return {"fastercache.skip": cfg.fields["spatial_attention_block_skip_range"], "fastercache.t_high": high}

    def baselines(self, ctx: SpaceContext, grid: Sequence[Any] | None) -> list[Baseline]:
        from ....evaluate._baselines import Baseline

        if self.unavailable(ctx) is not None:
            return []
        out = []
        for skip in sorted(set(grid if grid is not None else (2, 3))):
            p = self.policy({"fastercache.skip": skip, "fastercache.t_high": 681}, ctx, ctx.num_steps)
            out.append(Baseline(kind=self.name, name=p.default_name(ctx.num_steps), policy=p))
        return out
