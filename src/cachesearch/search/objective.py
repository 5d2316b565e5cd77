"""One candidate: policy → compiled schedule → evaluation → objective values, or a failure with its reason.

The same code runs in the local executor's process and in Ray workers. Nothing here touches the study: the
result is an :class:`Outcome` that the executor records (user attributes, constraints, ``tell``).
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._util import device_description, is_num
from ..schedule import Policy
from ..schedule.policies import scale_shift_request
from .masks import KnownMasks, mask_key, schedule_attr
from .outcome import Outcome, TrialAttrs, result_attr
from .provenance import git_revision, run_dir_id, runner_attrs
from .screening import Screening, evaluate_screened

if TYPE_CHECKING:
    from ..evaluate import EvalResult, Evaluator

# Outcome, the masks' identity, provenance and screening live in their own modules; they stay importable from
# here, where the executors, tests and benchmarks have always imported them.
__all__ = [
    "OBJECTIVE_KINDS",
    "OBJECTIVE_STATS",
    "KnownMasks",
    "Objectives",
    "Outcome",
    "Screening",
    "TrialAttrs",
    "constraint_values",
    "evaluate_candidate",
    "git_revision",
    "mask_key",
    "objective_values",
    "result_attr",
    "run_dir_id",
    "runner_attrs",
    "schedule_attr",
]

OBJECTIVE_KINDS = ("cost", "latency")
OBJECTIVE_STATS = ("mean", "p90", "cvar")
"""Statistics of a candidate's per-image train losses the search can minimise (``--objective-stat``)."""


@dataclass(frozen=True)
class Objectives:
    """What a study minimises and which constraints it enforces.

    Attributes:
        kind: ``"cost"`` (analytic cost ratio from per-block MACs) or ``"latency"`` (measured latency over the
            uncached baseline's latency, i.e. 1/speedup).
        max_quality: constraint ``quality <= max_quality`` (``--max-lpips``; on the statistic ``stat``), or None.
        min_speedup: constraint ``speedup >= min_speedup`` (``--min-speedup``), or None. The speedup is the
            measured one under ``latency`` and ``1 / cost_ratio`` under ``cost``.
        stat: the statistic of the per-image train losses minimised as the quality objective: ``"mean"``,
            ``"p90"`` (0.9 quantile) or ``"cvar"`` (mean of the worst 10 % of the images).
    """

    kind: str = "cost"
    max_quality: float | None = None
    min_speedup: float | None = None
    stat: str = "mean"

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVE_KINDS:
            raise ValueError(f"--objective: expected one of {list(OBJECTIVE_KINDS)}, got {self.kind!r}")
        if self.stat not in OBJECTIVE_STATS:
            raise ValueError(f"--objective-stat: expected one of {list(OBJECTIVE_STATS)}, got {self.stat!r}")
        if self.max_quality is not None and not (math.isfinite(self.max_quality) and self.max_quality > 0):
            raise ValueError(f"--max-lpips: expected a positive number, got {self.max_quality}")
        if self.min_speedup is not None and not (math.isfinite(self.min_speedup) and self.min_speedup > 0):
            raise ValueError(f"--min-speedup: expected a positive number, got {self.min_speedup}")

    @property
    def names(self) -> tuple[str, str]:
        """Objective names recorded in the study (both minimised): ``quality`` (the mean) or ``quality_p90`` /
        ``quality_cvar``, and the cost or latency ratio."""
        return ("quality" if self.stat == "mean" else f"quality_{self.stat}",
                "cost_ratio" if self.kind == "cost" else "latency_ratio")

    @property
    def constrained(self) -> bool:
        """Whether any constraint is set."""
        return self.max_quality is not None or self.min_speedup is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain form stored in the study."""
        return {"kind": self.kind, "names": list(self.names), "directions": ["minimize", "minimize"],
                "max_quality": self.max_quality, "min_speedup": self.min_speedup, "stat": self.stat}


# -- evaluation --------------------------------------------------------------------------------------------
def _reason(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    if isinstance(e, MemoryError) or "out of memory" in str(e).lower():
        text = f"out of memory: {text}"
    return text[:2000]


def objective_values(res: EvalResult, objectives: Objectives) -> tuple[tuple[float, float], float]:
    """``((quality, cost-or-latency ratio), speedup)`` of a valid result, quality being the objectives' statistic
    of the per-image losses; raises ValueError if not finite."""
    quality = res.stat(objectives.stat)
    if not is_num(quality):
        what = "quality" if objectives.stat == "mean" else f"{objectives.stat} of the per-image losses"
        raise ValueError(f"{what} is not a finite number ({quality!r})")
    if objectives.kind == "cost":
        cost = res.cost_ratio
        if not is_num(cost) or cost <= 0:
            raise ValueError(f"cost ratio is not a positive finite number ({cost!r}); the model has no MACs")
        speedup = 1.0 / float(cost)
    else:
        ms, base = res.latency_ms, res.baseline_ms
        if not (is_num(ms) and is_num(base)) or ms <= 0 or base <= 0:
            raise ValueError(f"latency was not measured (latency_ms={ms!r}, baseline_ms={base!r}); "
                             f"use --latency measured with --objective latency")
        cost = float(ms) / float(base)
        speedup = float(base) / float(ms)
    return (float(quality), float(cost)), speedup


def constraint_values(quality: float, speedup: float, objectives: Objectives) -> dict[str, float]:
    """Optuna constraints (feasible when <= 0)."""
    out: dict[str, float] = {}
    if objectives.max_quality is not None:
        out["max_quality"] = quality - objectives.max_quality
    if objectives.min_speedup is not None:
        out["min_speedup"] = objectives.min_speedup - speedup
    return out


def evaluate_candidate(
    evaluator: Evaluator,
    policy: Policy,
    objectives: Objectives,
    *,
    known: KnownMasks | None = None,
    number: int | None = None,
    study: str | None = None,
    remeasure_spread: float = 0.1,
    claim: Callable[[str], None] | None = None,
    screening: Screening | None = None,
) -> Outcome:
    """Compile and evaluate ``policy`` on the train split. Never raises for a bad candidate.

    Exceptions (including out-of-memory), invalid outputs (NaN/inf) and non-finite metrics become a failed
    :class:`Outcome` with the reason. A candidate whose compiled mask is in ``known`` is not evaluated: it
    takes the recorded values and ``duplicate_of`` names the trial that was evaluated.
    ``claim(key)``, called for a mask not in ``known``, reserves it in a shared study (:class:`~.claims.Claims`):
    it returns once this trial holds the mask, or once another process's evaluation of it is in ``known``.
    Under measured latency a noisy measurement (relative spread above ``remeasure_spread``) is taken again and
    the tighter one kept. With ``screening`` (cost objective only) the candidate is scored on growing image
    subsets and stops once it provably cannot reach the front of ``known`` (:class:`Screening`).
    """
    attrs = TrialAttrs(policy=policy.to_dict(), git=git_revision(), device=device_description(evaluator.device))
    try:
        name = f"{study}-t{number}" if study is not None and number is not None else None
        schedule = evaluator.compile(policy, name=name, fit=False)  # the masks: enough to spot a duplicate
    except Exception as e:  # noqa: BLE001 - every failure is the candidate's, recorded with its reason
        attrs["reason"] = f"compile: {_reason(e)}"
        return Outcome(values=None, reason=attrs["reason"], user_attrs=attrs)
    key = mask_key(schedule)
    attrs.update(mask_key=key, schedule=schedule_attr(schedule))

    if claim is not None and (known is None or key not in known.entries):
        claim(key)
    if known is not None and key in known.entries:
        first, values, constraints, extra = known.entries[key]
        attrs.update(extra)
        attrs["duplicate_of"] = first
        return Outcome(values=values, constraints=dict(constraints), user_attrs=attrs)
    measure = objectives.kind == "latency"
    screened_out = False
    method = scale_shift_request(policy)
    try:
        if method is not None:  # fitted now, inside the trial (its time counts), once per mask in this process
            schedule = evaluator.compile(policy, name=name)
            secs = evaluator.scale_shifts.seconds.get(evaluator.scale_shifts.key(schedule, method))
            attrs["scale_shift"] = {"method": method, "fit_s": None if secs is None else round(secs, 3)}
        # a runtime cache decides per image: its cost on the first images bounds nothing, so no screening
        if screening is not None and not measure and known is not None and schedule.runtime is None:
            res, screened_out = evaluate_screened(evaluator, schedule, screening, known, objectives, attrs)
        else:
            res = evaluator.evaluate(schedule, split="train", measure=measure)
        if not res.valid:
            raise _Invalid(res.reason or "the evaluator marked the result invalid")
        values, speedup = objective_values(res, objectives)
        spread = res.latency_spread
        if measure and is_num(spread) and spread > remeasure_spread:
            again = evaluator.evaluate(schedule, split="train", measure=True)
            spread2 = again.latency_spread
            if again.valid and is_num(spread2) and spread2 < spread:
                res = again
                values, speedup = objective_values(res, objectives)
            attrs["remeasured"] = True
    except _Invalid as e:
        evaluator.cleanup_after_failure()
        attrs["reason"] = f"invalid output: {e}"
        return Outcome(values=None, reason=attrs["reason"], user_attrs=attrs)
    except Exception as e:  # noqa: BLE001
        evaluator.cleanup_after_failure()
        attrs["reason"] = _reason(e)
        attrs["traceback"] = traceback.format_exc(limit=8)[-4000:]
        return Outcome(values=None, reason=attrs["reason"], user_attrs=attrs)
    attrs.update(result=result_attr(res), speedup=speedup)
    if screened_out:
        return Outcome(values=values, user_attrs=attrs)
    if res.device:
        attrs["device"] = res.device  # where latency was measured
    return Outcome(values=values, constraints=constraint_values(values[0], speedup, objectives), user_attrs=attrs)


class _Invalid(Exception):
    """The evaluator returned ``valid=False``."""
