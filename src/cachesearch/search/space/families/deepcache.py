"""Family ``deepcache``: a full step every ``interval`` steps, otherwise only skip branch ``branch``; uniform or
non-uniform placement of the full steps. Baselines: the uniform grid over intervals × every branch."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ....schedule import BlockSpace, DeepCache, Policy, ScheduleError
from ..context import SpaceContext
from ..params import ChoiceParam, Dist, Fields, FloatParam, IntParam
from .base import BaselineGrid, MaskFamily

if TYPE_CHECKING:
    from ....evaluate._baselines import Baseline

__all__ = ["DeepCacheFamily", "feasible_center"]


@functools.lru_cache(maxsize=4096)
def feasible_center(num_steps: int, interval: int, center: int, power: float) -> int:
    """The step nearest ``center`` (the lower one on a tie) around which DeepCache's non-uniform schedule can
    place its full steps (``DeepCache.full_steps`` raises for some centers, e.g. the middle of an even step
    count at interval 2); ``center`` itself when it is feasible, or when no step is (compile reports why).

    A pure function of its arguments, so a trial's parameters still replay to one policy (``FixedTrial``):
    the space maps an infeasible combination to the nearest feasible one instead of failing the trial.
    """
    for offset in range(num_steps):
        for c in (center - offset, center + offset) if offset else (center,):
            if 0 <= c < num_steps:
                try:
                    DeepCache(interval=interval, schedule="nonuniform", center=c, power=power).full_steps(num_steps)
                except ScheduleError:
                    continue
                return c
    return center


@dataclass(frozen=True)
class DeepCacheFamily(MaskFamily):
    """Ranges of DeepCache's parameters (``center`` as a fraction of the steps)."""

    interval: IntParam
    branch: IntParam
    schedule: ChoiceParam
    center: FloatParam
    power: FloatParam

    name: ClassVar[str] = "deepcache"
    defaults: ClassVar[Mapping[str, Any]] = {
        "interval": {"low": 2, "high": 6},
        "branch": {"low": 0, "high": "last"},
        "schedule": ["uniform"],
        "center": {"low": 0.1, "high": 0.6},
        "power": {"low": 1.1, "high": 2.0},
    }
    grid: ClassVar[BaselineGrid | None] = BaselineGrid("intervals", integer=True, lo=2)

    @classmethod
    def parse(cls, fields: Fields, path: str, section: Mapping[str, Any]) -> DeepCacheFamily:
        return cls(
            interval=fields.int(f"{path}.interval", section["interval"], lo=1),
            branch=fields.int(f"{path}.branch", section["branch"], lo=0, symbols=("last",)),
            schedule=fields.choice(f"{path}.schedule", section["schedule"], ("uniform", "nonuniform")),
            center=fields.float(f"{path}.center", section["center"], lo=0.0, hi=1.0),
            power=fields.float(f"{path}.power", section["power"], lo=1.0, strict_lo=True),
        )

    @classmethod
    def supports(cls, blocks: BlockSpace) -> bool:
        return bool(blocks.deepcache_branches)

    def dists(self, ctx: SpaceContext, fields: Fields) -> list[Dist]:
        if ctx.n_branches == 0:
            raise fields.error("mask.families", "family 'deepcache' needs skip branches, which this denoiser lacks")
        last = ctx.n_branches - 1
        out = [
            Dist.integer(fields, "deepcache.interval", "mask.deepcache.interval", self.interval, {}),
            Dist.integer(fields, "deepcache.branch", "mask.deepcache.branch", self.branch, {"last": last}, hi=last,
                         hi_why=f"this denoiser has DeepCache branches 0..{last}"),
        ]
        if len(self.schedule.choices) > 1:
            out.append(Dist.choice("deepcache.schedule", self.schedule.choices))
        if "nonuniform" in self.schedule.choices:
            shape = [Dist.real("deepcache.center", self.center), Dist.real("deepcache.power", self.power)]
            if len(self.schedule.choices) > 1:
                shape = [d.only_when("deepcache.schedule", "nonuniform") for d in shape]
            out += shape
        return out

    def policy(self, values: Mapping[str, Any], ctx: SpaceContext, num_steps: int) -> DeepCache:
        schedule = values.get("deepcache.schedule", self.schedule.choices[0])
        kwargs: dict[str, Any] = {}
        interval = int(values["deepcache.interval"])
        if schedule == "nonuniform":
            center = min(int(round(float(values["deepcache.center"]) * num_steps)), max(num_steps - 1, 0))
            power = float(values["deepcache.power"])
            kwargs = {"center": feasible_center(num_steps, interval, center, power), "power": power}
        return DeepCache(interval=interval, branch=int(values["deepcache.branch"]), schedule=schedule, **kwargs)

    def params(self, policy: Policy | None, ctx: SpaceContext) -> dict[str, Any] | None:
        """Uniform DeepCache only (a non-uniform center is rounded to a step: no exact inverse)."""
        if not isinstance(policy, DeepCache) or policy.schedule != "uniform":
            return None
        out: dict[str, Any] = {"deepcache.interval": policy.interval, "deepcache.branch": policy.branch}
        if len(self.schedule.choices) > 1:
            out["deepcache.schedule"] = "uniform"
        elif self.schedule.choices[0] != "uniform":
            return None
        return out

    def baselines(self, ctx: SpaceContext, grid: Sequence[Any] | None) -> list[Baseline]:
        from ....evaluate._baselines import DEFAULT_DEEPCACHE_INTERVALS, deepcache_baselines

        intervals = DEFAULT_DEEPCACHE_INTERVALS if grid is None else tuple(grid)
        return deepcache_baselines(ctx.num_steps, ctx.n_branches, intervals)
