"""The step set: the space file's ``steps:`` section (count, spacing, power) and the fewer-steps baselines.

Parameters ``steps.count``, ``steps.spacing`` and ``steps.power``; a trial at the reference count with the
scheduler's spacing runs the reference step set (no ``StepSet`` policy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ....schedule import Policy, StepSet
from ..context import SpaceContext
from ..params import ChoiceParam, Dist, Fields, FloatParam, IntParam
from .base import BaselineGrid, Family

if TYPE_CHECKING:
    from ....evaluate._baselines import Baseline

__all__ = ["SPACINGS", "Steps"]

SPACINGS = ("scheduler", "linear", "power")


@dataclass(frozen=True)
class Steps(Family):
    """Which step sets a space may propose: ``count`` steps with a spacing rule."""

    count: IntParam
    spacing: ChoiceParam
    power: FloatParam

    name: ClassVar[str] = "steps"
    defaults: ClassVar[Mapping[str, Any]] = {"spacing": ["scheduler"], "power": {"low": 1.0, "high": 3.0}}
    required: ClassVar[frozenset[str]] = frozenset({"count"})
    grid: ClassVar[BaselineGrid | None] = BaselineGrid("fractions", integer=False, lo=0.0, hi=1.0)

    @classmethod
    def parse(cls, fields: Fields, path: str, section: Mapping[str, Any]) -> Steps:
        return cls(
            count=fields.int(f"{path}.count", section["count"], lo=1, symbols=("steps",)),
            spacing=fields.choice(f"{path}.spacing", section["spacing"], SPACINGS),
            power=fields.float(f"{path}.power", section["power"], lo=0.0, strict_lo=True),
        )

    @classmethod
    def expressible(cls, has_steps: bool, families: Sequence[str]) -> str | None:
        """Fewer-steps baselines are step sets without a mask: they need this section and family ``none``."""
        return None if has_steps and "none" in families else "a 'steps' section and family 'none'"

    def spacings(self, ctx: SpaceContext) -> tuple[str, ...]:
        """The spacings the model's scheduler can run (only its own unless it accepts explicit timesteps)."""
        if not ctx.accepts_timesteps and self.spacing.choices != ("scheduler",):
            return ("scheduler",)
        return self.spacing.choices

    def notes(self, ctx: SpaceContext) -> list[str]:
        if self.spacings(ctx) == self.spacing.choices:
            return []
        sampler = f"{ctx.scheduler} in {ctx.pipeline}" if ctx.pipeline else ctx.scheduler
        hint = ("a pipeline whose __call__ takes timesteps=" if ctx.transformer else
                "e.g. DPMSolverMultistepScheduler: --scheduler dpmsolver++")
        return [f"steps.spacing restricted to 'scheduler': {sampler} does not accept explicit timesteps "
                f"(linear/power spacing needs {hint})"]

    def _count(self, ctx: SpaceContext, fields: Fields) -> Dist:
        return Dist.integer(fields, "steps.count", "steps.count", self.count, {"steps": ctx.num_steps},
                            hi=ctx.num_steps, hi_why=f"the reference sampler runs {ctx.num_steps} steps (--steps)")

    def dists(self, ctx: SpaceContext, fields: Fields) -> list[Dist]:
        out = [self._count(ctx, fields)]
        spacing = self.spacings(ctx)
        if len(spacing) > 1:
            out.append(Dist.choice("steps.spacing", spacing))
        if "power" in spacing:
            power = Dist.real("steps.power", self.power)
            out.append(power.only_when("steps.spacing", "power") if len(spacing) > 1 else power)
        return out

    def policy(self, values: Mapping[str, Any], ctx: SpaceContext, num_steps: int) -> StepSet | None:
        """The trial's step set, or None for the reference step set (a plain mask policy compiles to the same
        schedule)."""
        spacings = self.spacings(ctx)
        count = int(values["steps.count"]) if "steps.count" in values else self._count(ctx, Fields("")).low
        spacing = values.get("steps.spacing", spacings[0] if len(spacings) == 1 else None)
        power = float(values.get("steps.power", 1.0)) if spacing == "power" else 1.0
        steps = StepSet(count=count, spacing=spacing, power=power)
        return None if count == ctx.num_steps and spacing == "scheduler" else steps

    def params(self, policy: Policy | None, ctx: SpaceContext) -> dict[str, Any] | None:
        """``policy``: a step set, or None for the reference steps."""
        if policy is None:
            count, spacing, power = ctx.num_steps, "scheduler", 1.0
        elif isinstance(policy, StepSet) and policy.timesteps is None:
            count, spacing, power = policy.count, policy.spacing, policy.power
        else:
            return None
        out: dict[str, Any] = {"steps.count": count}
        spacings = self.spacings(ctx)
        if len(spacings) > 1:
            out["steps.spacing"] = spacing
        elif spacings[0] != spacing:
            return None
        if spacing == "power":
            out["steps.power"] = power
        return out

    def baselines(self, ctx: SpaceContext, grid: Sequence[Any] | None) -> list[Baseline]:
        from ....evaluate._baselines import DEFAULT_STEP_FRACTIONS, step_baselines

        return step_baselines(ctx.num_steps, DEFAULT_STEP_FRACTIONS if grid is None else tuple(grid))
