"""A space tied to one model and sampler: its Optuna distributions and the pure trial → policy map.

The space is conditional (Optuna's define-by-run): a trial is asked for the step set's parameters, then
``mask.family``, then only the chosen family's parameters, and a parameter with a condition (``Dist.when``:
``steps.power`` under ``steps.spacing == "power"``, DeepCache's ``center``/``power`` under the non-uniform
schedule) only when it holds. So a trial's ``params`` hold exactly what defines its policy, and candidates that
differ only in unused parameters are not proposed as different trials. The order of the suggestions is fixed
(it is part of what a seed reproduces).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...schedule import Full, Joint, PerBranch, Policy, ScheduleError, StepSet, WithScaleShift
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
        shared: list[Dist] = []
        if space.steps is not None:
            shared += space.steps.dists(ctx, fields)
            self.notes += space.steps.notes(ctx)
        if len(space.families) > 1:
            shared.append(Dist.choice("mask.family", space.families))
        self._shared = shared
        self._by_family: dict[str, list[Dist]] = {}
        for family in space.masks.values():
            self._by_family[family.name] = family.dists(ctx, fields)
            self.notes += family.notes(ctx)
        # modifiers of a caching trial (not of 'none'): the CFG branches it caches, then a fitted scale-shift
        # (only for shared masks: the closed-form fit observes the whole batch)
        self._modifiers: list[Dist] = []
        if len(space.cfg) > 1:
            self._modifiers.append(Dist.choice("mask.cfg", space.cfg))
        if len(space.scale_shift) > 1:
            d = Dist.choice("mask.scale_shift", space.scale_shift)
            self._modifiers.append(d.only_when("mask.cfg", "shared") if len(space.cfg) > 1 else d)
        self._dists: dict[str, Dist] = {d.name: d for d in shared}
        for dists in self._by_family.values():
            self._dists.update((d.name, d) for d in dists)
        self._dists.update((d.name, d) for d in self._modifiers)

    @property
    def param_names(self) -> tuple[str, ...]:
        """Every parameter a trial of this space may have (each trial has those of its family), in order."""
        return tuple(self._dists)

    def _active(self, values: Mapping[str, Any], get: Any) -> dict[str, Any]:
        """The parameters a trial has, in suggestion order: ``get(dist, values_so_far)`` gives each value."""
        out: dict[str, Any] = {}
        for d in self._shared:
            if d.active(out):
                out[d.name] = get(d, out)
        family = self.family_of(out)
        for d in [*self._by_family[family.name], *(self._modifiers if family.name != "none" else [])]:
            if d.active(out):
                out[d.name] = get(d, out)
        return out

    def distributions(self) -> dict[str, str]:
        """Parameter → readable range (for reports and docs)."""
        return {n: d.describe() for n, d in self._dists.items()}

    # -- the pure trial → policy map ------------------------------------------------------------------
    def suggest(self, trial: Trial) -> Policy:
        """Map a trial to a policy. Pure: the result depends only on the trial's parameter values.

        Only the chosen family's parameters are suggested, and conditional ones only when their condition holds.
        """
        return self.policy_from_params(self._active({}, lambda d, _: d.suggest(trial)))

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
        if family.reference_steps:  # the family's schedule is on the reference steps: no step set joins it
            steps, mask = None, family.policy(values, ctx, ctx.num_steps)
        else:
            steps = self.space.steps.policy(values, ctx, ctx.num_steps) if self.space.steps is not None else None
            mask = family.policy(values, ctx, steps.count if steps is not None else ctx.num_steps)
        if mask is None:
            return steps if steps is not None else Full()
        # the modifiers apply to every caching family (they were suggested for it): CFG branches, scale-shift
        cfg = values.get("mask.cfg", self.space.cfg[0])
        if cfg != "shared":
            mask = PerBranch(mask=mask, branch=cfg)
        method = values.get("mask.scale_shift", self.space.scale_shift[0]) if cfg == "shared" else "off"
        if method != "off":
            mask = WithScaleShift(mask=mask, method=method)
        return Joint(steps=steps, mask=mask) if steps is not None else mask

    # -- policies → parameters ------------------------------------------------------------------------
    def params_for(self, policy: Policy) -> dict[str, Any] | None:
        """Parameters under which :meth:`suggest` yields ``policy`` (a baseline), or None if the space cannot.

        Only the parameters a trial of that family has are returned; those the policy does not use get their
        range's lower bound (or first choice).
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
        if self._outside(values):  # a parameter that is not a Dist is fixed by the space: the replay check below
            return None            # catches a mismatch
        try:
            params = self._active(values, lambda d, _: values.get(d.name, d.neutral()))
            replayed = self.policy_from_params(params)
        except (ScheduleError, KeyError):
            return None
        return params if _same(family, replayed, policy) else None

    def with_steps(self, params: Mapping[str, Any], steps_from: Mapping[str, Any]) -> dict[str, Any] | None:
        """The parameters of trial ``params`` with the step set (``steps.*``) of trial ``steps_from``, or ``None``
        where its family always runs the reference steps or the space cannot express the combination."""
        family = self.family_of(params)
        if family.reference_steps or self.space.steps is None:
            return None
        values = {k: v for k, v in params.items() if not k.startswith("steps.")}
        values.update({k: v for k, v in steps_from.items() if k.startswith("steps.")})
        try:
            out = self._active(values, lambda d, _: values.get(d.name, d.neutral()))
            self.policy_from_params(out)
        except (ScheduleError, KeyError, ValueError):
            return None
        return None if self._outside(out) else out

    def _outside(self, values: Mapping[str, Any]) -> bool:
        """Whether a value of ``values`` lies outside its parameter's range (names without one are skipped)."""
        return any((d := self._dists.get(n)) is not None and not d.contains(v) for n, v in values.items())

    def grid(self, n: int, seed: int | None = 0) -> list[dict[str, Any]]:
        """About ``n`` parameter assignments spread over the space (a warm start): the caching families share
        them evenly, and within a family they form a Latin hypercube over its parameters and the step set's
        (each range cut into as many strata as the family has points, one point per stratum, in a seeded
        order). Assignments whose policy a family refuses are left out."""
        import random

        rng = random.Random(seed)
        families = [f for f in self.space.families if f != "none"] or list(self.space.families)
        out: list[dict[str, Any]] = []
        for i, name in enumerate(families):
            m = n // len(families) + (1 if i < n % len(families) else 0)
            strata: dict[str, list[int]] = {}
            for j in range(m):

                def value(d: Dist, _: Mapping[str, Any], j: int = j, m: int = m, name: str = name,
                          strata: dict[str, list[int]] = strata) -> Any:
                    if d.name == "mask.family":
                        return name
                    order = strata.setdefault(d.name, rng.sample(range(m), m))
                    return d.at((order[j] + rng.random()) / m)

                params = self._active({"mask.family": name}, value)
                try:
                    self.policy_from_params(params)
                except (ScheduleError, ValueError):
                    continue
                out.append(params)
        return out

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
