"""A space tied to one model and sampler: the flat list of Optuna distributions and the pure trial → policy map.

Every family's parameters are suggested in every trial (a flat space), so NSGA-II's crossover sees all of them
in all trials; parameters that the chosen family does not use are ignored, and the resulting duplicates are
caught by the study's mask deduplication. The order of the suggestions is fixed: the step set, ``mask.family``,
then each mask family in registration order (it is part of what a seed reproduces).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...schedule import Full, Joint, Policy, ScheduleError, StepSet
from .context import SpaceContext
from .families import MaskFamily, baseline_families
from .params import Dist, Fields, Trial

if TYPE_CHECKING:
    from ...evaluate._baselines import Baseline
    from .file import SearchSpace

__all__ = ["ResolvedSpace"]


class ResolvedSpace:
    """A space tied to one model and sampler; :meth:`suggest` maps a trial to a policy.

    Raises:
        SpaceError: a range does not fit the model (e.g. ``steps.count.high`` above the reference steps, an
            unknown block, a DeepCache branch that does not exist).
    """

    def __init__(self, space: SearchSpace, ctx: SpaceContext) -> None:
        self.space = space
        self.ctx = ctx
        self.notes: list[str] = []
        fields = Fields(space.source)
        dists: list[Dist] = []
        if space.steps is not None:
            dists += space.steps.dists(ctx, fields)
            self.notes += space.steps.notes(ctx)
        if len(space.families) > 1:
            dists.append(Dist.choice("mask.family", space.families))
        for family in space.masks.values():
            dists += family.dists(ctx, fields)
            self.notes += family.notes(ctx)
        self._dists: dict[str, Dist] = {d.name: d for d in dists}

    @property
    def param_names(self) -> tuple[str, ...]:
        """Every parameter a trial of this space has, in suggestion order."""
        return tuple(self._dists)

    def distributions(self) -> dict[str, str]:
        """Parameter → readable range (for reports and docs)."""
        return {n: d.describe() for n, d in self._dists.items()}

    # -- the pure trial → policy map ------------------------------------------------------------------
    def suggest(self, trial: Trial) -> Policy:
        """Map a trial to a policy. Pure: the result depends only on the trial's parameter values.

        Every parameter of the space is suggested (flat space), whichever family is chosen.
        """
        values = {name: d.suggest(trial) for name, d in self._dists.items()}
        return self.policy_from_params(values)

    def family_of(self, values: Mapping[str, Any]) -> MaskFamily:
        """The mask family a parameter assignment chooses."""
        name = values.get("mask.family", self.space.families[0])
        family = self.space.masks.get(name)
        if family is None:
            raise ScheduleError(f"mask.family: {name!r} is not one of this space's families "
                                f"{list(self.space.families)}")
        return family

    def policy_from_params(self, values: Mapping[str, Any]) -> Policy:
        """The policy of a complete parameter assignment (what :meth:`suggest` returns for those values)."""
        ctx = self.ctx
        family = self.family_of(values)
        steps = self.space.steps.policy(values, ctx, ctx.num_steps) if self.space.steps is not None else None
        if family.reference_steps:
            policy = family.policy(values, ctx, ctx.num_steps)
            return policy if policy is not None else Full()
        mask = family.policy(values, ctx, steps.count if steps is not None else ctx.num_steps)
        if mask is None:
            return steps if steps is not None else Full()
        return Joint(steps=steps, mask=mask) if steps is not None else mask

    # -- policies → parameters ------------------------------------------------------------------------
    def params_for(self, policy: Policy) -> dict[str, Any] | None:
        """Parameters under which :meth:`suggest` yields ``policy`` (a baseline), or None if the space cannot.

        Parameters the policy does not use get their range's lower bound (or first choice).
        """
        sp = self.space
        if isinstance(policy, StepSet):
            steps, mask = policy, None
        elif isinstance(policy, Joint):
            steps, mask = policy.steps, policy.mask
        else:
            steps, mask = None, policy
        family = next((f for f in sp.masks.values() if f.params(mask, self.ctx) is not None), None)
        if family is None:
            return None
        values = dict(family.params(mask, self.ctx) or {})
        if family.reference_steps or sp.steps is None:
            if steps is not None:
                return None
        else:
            step_values = sp.steps.params(steps, self.ctx)
            if step_values is None:
                return None
            values.update(step_values)
        if "mask.family" in self._dists:
            values["mask.family"] = family.name
        elif sp.families[0] != family.name:
            return None
        params = {n: d.neutral() for n, d in self._dists.items()}
        for name, value in values.items():
            d = self._dists.get(name)
            if d is None:  # fixed by the space: the replay check below catches a mismatch
                continue
            if not d.contains(value):
                return None
            params[name] = value
        try:
            replayed = self.policy_from_params(params)
        except (ScheduleError, KeyError):
            return None
        return params if _same(family, replayed, policy) else None

    def baselines(self) -> list[Baseline]:
        """The heuristic baselines of the kinds the space lists, in enqueue order (fewer steps, then each mask
        family in registration order), whether or not the space can express each."""
        out: list[Baseline] = []
        for kind in baseline_families():
            if kind in self.space.baselines:
                out += self.space.family(kind).baselines(self.ctx, self.space.baseline_grid(kind))
        return out


def _same(family: MaskFamily, a: Policy, b: Policy) -> bool:
    """Whether two policies describe the same schedule (a Joint with the reference step set equals its mask)."""
    if isinstance(a, Joint) and not isinstance(b, (Joint, StepSet)):
        a = a.mask
    if isinstance(a, Joint) and isinstance(b, Joint):
        return a.steps == b.steps and family.same(a.mask, b.mask)
    return family.same(a, b)
