"""A candidate's identity (:func:`mask_key`), its compiled schedule as stored on a trial, and the evaluations
already made by identity (:class:`KnownMasks`), so the same masks are never evaluated twice."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..schedule import Schedule
from ..schedule.policies import scale_shift_request
from .outcome import Outcome, TrialAttrs

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["KnownMasks", "mask_key", "schedule_attr"]


def schedule_attr(schedule: Schedule) -> dict[str, Any]:
    """The compiled schedule as stored in a trial's user attributes (JSON)."""
    blocks: dict[str, Any] = {}
    for bm in schedule.blocks:
        blocks[bm.block] = bm.cond if bm.shared else {"cond": bm.cond, "uncond": bm.uncond}
    if schedule.runtime is not None:
        return {"name": schedule.name, "scheduler": schedule.sampler.scheduler,
                "num_inference_steps": schedule.sampler.num_inference_steps, "runtime": schedule.runtime.to_plain(),
                "policy": dict(schedule.policy)}
    return {
        "name": schedule.name,
        "scheduler": schedule.sampler.scheduler,
        "num_inference_steps": schedule.sampler.num_inference_steps,
        "timesteps": list(schedule.sampler.timesteps) if schedule.sampler.timesteps is not None else None,
        "reuse": schedule.reuse.value,
        **({"taylor_order": schedule.taylor_order} if schedule.taylor_order is not None else {}),
        **({"taylor_guard": True} if schedule.taylor_guard else {}),
        "blocks": blocks,
        "policy": dict(schedule.policy),
    }


def mask_key(schedule: Schedule) -> str:
    """Identity of what a schedule computes: steps run, reuse mode and the masks of blocks that ever reuse.

    Blocks whose mask is all ``R`` are dropped (they equal unlisted blocks), so e.g. a periodic mask with
    period 1 everywhere has the key of full compute. A policy that asks for a fitted scale-shift adds its method
    (the key is the same whether or not the fit has been made yet). A runtime schedule's identity is its steps and
    the configs its library enables (not the library's version).
    """
    if schedule.runtime is not None:
        runtime = {k: v for k, v in schedule.runtime.to_plain().items() if k != "version"}
        key: dict[str, Any] = {"steps": schedule.sampler.num_inference_steps, "runtime": runtime}
        return "sha256:" + hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    blocks = sorted(
        (bm.block, bm.cond, bm.uncond) for bm in schedule.blocks if "." in bm.cond or "." in bm.uncond
    )
    key = {
        "steps": schedule.sampler.num_inference_steps,
        "timesteps": list(schedule.sampler.timesteps) if schedule.sampler.timesteps is not None else None,
        "reuse": schedule.reuse.value if blocks else None,
        "blocks": blocks,
    }
    method = scale_shift_request(schedule.policy) if blocks else None
    if method is not None:  # the same masks with a fitted scale-shift are another candidate (older keys unchanged)
        key["scale_shift"] = method
    if blocks and schedule.taylor_order is not None:  # order 1 and 2 forecasts compute different things
        key["taylor_order"] = schedule.taylor_order
    if blocks and schedule.taylor_guard:  # a guarded forecast is another candidate (unguarded keys unchanged)
        key["taylor_guard"] = True
    return "sha256:" + hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


@dataclass
class KnownMasks:
    """Completed evaluations by :func:`mask_key`, so a candidate whose compiled mask was seen is not re-run."""

    entries: dict[str, tuple[int, tuple[float, float], dict[str, float], TrialAttrs]] = field(default_factory=dict)

    def add(self, number: int, outcome: Outcome) -> None:
        """Record a completed or screened-out, non-duplicate trial."""
        key = outcome.user_attrs.get("mask_key")
        if outcome.ok and key and "duplicate_of" not in outcome.user_attrs and key not in self.entries:
            extra = TrialAttrs()
            for name in ("result", "speedup", "screened"):
                if name in outcome.user_attrs:
                    extra[name] = outcome.user_attrs[name]  # type: ignore[literal-required]
            self.entries[key] = (number, outcome.values, dict(outcome.constraints), extra)

    def front(self) -> list[tuple[float, float]]:
        """``(quality, cost)`` of the feasible, fully evaluated (not screened-out) entries that no other
        entry dominates."""
        points = sorted(
            (values[0], values[1])
            for _, values, constraints, extra in self.entries.values()
            if "screened" not in extra and all(v <= 0 for v in constraints.values())
        )
        out: list[tuple[float, float]] = []
        for q, c in points:  # by quality; keep a point only if it is cheaper than every better one
            if not out or c < out[-1][1]:
                out.append((q, c))
        return out

    def add_trial(self, trial: FrozenTrial) -> None:
        """Record a finished Optuna trial (``FrozenTrial``) if it completed and was evaluated."""
        from optuna.trial import TrialState

        if trial.state != TrialState.COMPLETE or trial.values is None:
            return
        attrs = TrialAttrs(**trial.user_attrs)  # type: ignore[typeddict-item]
        outcome = Outcome(values=(float(trial.values[0]), float(trial.values[1])), constraints=dict(trial.constraints),
                          user_attrs=attrs)
        self.add(trial.number, outcome)
