"""One candidate: policy → compiled schedule → evaluation → objective values, or a failure with its reason.

The same code runs in the local executor's process and in Ray workers. Nothing here touches the study: the
result is an :class:`Outcome` that the executor records (user attributes, constraints, ``tell``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import socket
import subprocess
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from .._util import device_description, json_safe
from ..schedule import Policy, Schedule
from ..schedule.policies import scale_shift_request

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from ..evaluate import EvalResult, Evaluator

__all__ = [
    "OBJECTIVE_KINDS",
    "OBJECTIVE_STATS",
    "Objectives",
    "Outcome",
    "Screening",
    "TrialAttrs",
    "evaluate_candidate",
    "git_revision",
    "mask_key",
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


class TrialAttrs(TypedDict, total=False):
    """The user attributes cachesearch records on a trial (all JSON; every key optional).

    Set by :func:`evaluate_candidate`: ``policy`` (``Policy.to_dict()``), ``git``, ``device``, ``mask_key``,
    ``schedule`` (:func:`schedule_attr`), ``result`` (the train ``EvalResult`` as a dict), ``speedup``,
    ``remeasured``, ``duplicate_of`` (the trial whose evaluation this one reuses; the duplicate is told PRUNED),
    ``screened`` (multi-fidelity: the image count, partial loss, bound and the front point that dominates it;
    the trial is told PRUNED), ``reason`` and ``traceback`` of a failure; by the executors: ``params_error``, ``worker``
    (``{"host", "pid"}``), ``already_recorded``,
    the runner (``host``, ``pid``, ``session``, ``run_dir``); by the study: ``baseline``, ``baseline_kind``,
    ``requeued``, ``requeued_from``.
    """

    policy: dict[str, Any]
    git: str | None
    device: str
    mask_key: str
    schedule: dict[str, Any]
    result: dict[str, Any]
    speedup: float
    remeasured: bool
    duplicate_of: int
    screened: dict[str, Any]
    reason: str
    traceback: str
    params_error: str
    worker: dict[str, Any]
    already_recorded: bool


@dataclass
class Outcome:
    """What evaluating one candidate produced.

    ``values`` is set for a completed trial and None for a failed one (then ``reason`` says why);
    ``user_attrs`` and ``constraints`` are recorded on the trial before it is told.
    """

    values: tuple[float, float] | None
    reason: str | None = None
    constraints: dict[str, float] = field(default_factory=dict)
    user_attrs: TrialAttrs = field(default_factory=lambda: TrialAttrs())

    @property
    def ok(self) -> bool:
        """True for a completed trial."""
        return self.values is not None

    def to_json(self) -> str:
        """Serialise (Ray workers send outcomes to the driver as JSON)."""
        return json.dumps({"values": self.values, "reason": self.reason, "constraints": self.constraints,
                           "user_attrs": self.user_attrs})

    @classmethod
    def from_json(cls, text: str) -> Outcome:
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        values = tuple(d["values"]) if d["values"] is not None else None
        return cls(values=values, reason=d["reason"], constraints=d["constraints"],
                   user_attrs=TrialAttrs(**d["user_attrs"]))


# -- trial metadata ----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def git_revision() -> str | None:
    """``git describe --always --dirty`` of the checkout cachesearch runs from, or None outside a checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_dir_id(run_dir: str | Path) -> str:
    """A run directory's identity in trial attributes: a digest of its resolved path, so a study (which may be
    shared or committed) holds no path of the machine that ran it."""
    return "sha256:" + hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def runner_attrs(session: str, run_dir: str | Path) -> dict[str, Any]:
    """Who is running a trial (used to tell orphaned RUNNING trials from live ones)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "session": session, "run_dir": run_dir_id(run_dir)}


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
    return "sha256:" + hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


# -- evaluation --------------------------------------------------------------------------------------------
def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def _reason(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    if isinstance(e, MemoryError) or "out of memory" in str(e).lower():
        text = f"out of memory: {text}"
    return text[:2000]


def _free_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort after an OOM
        pass


def result_attr(res: EvalResult) -> dict[str, Any]:
    """An :class:`~cachesearch.evaluate.EvalResult` as plain JSON (NaN and inf → None)."""
    return json_safe(dict(res.to_dict()))


def objective_values(res: EvalResult, objectives: Objectives) -> tuple[tuple[float, float], float]:
    """``((quality, cost-or-latency ratio), speedup)`` of a valid result, quality being the objectives' statistic
    of the per-image losses; raises ValueError if not finite."""
    quality = res.stat(objectives.stat)
    if not _finite(quality):
        what = "quality" if objectives.stat == "mean" else f"{objectives.stat} of the per-image losses"
        raise ValueError(f"{what} is not a finite number ({quality!r})")
    if objectives.kind == "cost":
        cost = res.cost_ratio
        if not _finite(cost) or cost <= 0:
            raise ValueError(f"cost ratio is not a positive finite number ({cost!r}); the model has no MACs")
        speedup = 1.0 / float(cost)
    else:
        ms, base = res.latency_ms, res.baseline_ms
        if not (_finite(ms) and _finite(base)) or ms <= 0 or base <= 0:
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


@dataclass(frozen=True)
class Screening:
    """Multi-fidelity evaluation without approximation: score a candidate on the first ``stages[0]`` train
    images, then the first ``stages[1]``, …, then all ``N``; stop as soon as it provably cannot reach the front.

    Losses are non-negative, so after ``k`` of ``N`` images with mean loss ``q_k`` the full mean is at least
    ``k / N * q_k``; every objective statistic (mean, p90, CVaR) is non-decreasing in each image's loss, so in
    general the statistic of the ``k`` losses seen padded with ``N - k`` zeros is a lower bound
    (:func:`cachesearch.evaluate._stats.lower_bound`). If a front point (fully evaluated, feasible) costs no more
    and already has a lower loss than that bound, the candidate is dominated whatever its other images give (or,
    with ``--max-lpips``, it is certain to break the constraint): it is told PRUNED with ``screened`` recorded.
    Candidates that finish get exactly the values a single full evaluation gives (the images of a range equal
    those of the full batch; merged results keep every image's loss).

    Only under the analytic cost objective (a measured latency is not known before the images are made).
    """

    stages: tuple[int, ...] = (2, 4)

    def __post_init__(self) -> None:
        if any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in self.stages) or list(
            self.stages
        ) != sorted(set(self.stages)):
            raise ValueError(f"--screen: expected increasing positive image counts like 2,4, got {self.stages}")

    @classmethod
    def parse(cls, text: str | None) -> Screening | None:
        """``"2,4"`` → ``Screening((2, 4))``; ``None``, ``""`` or ``"off"`` → ``None``."""
        if text is None or text.strip().lower() in ("", "off", "none"):
            return None
        try:
            stages = tuple(int(p) for p in text.split(","))
        except ValueError:
            raise ValueError(f"--screen: expected image counts like 2,4 or 'off', got {text!r}") from None
        return cls(stages)

    def dominated(
        self, bound: float, cost: float, front: list[tuple[float, float]], objectives: Objectives
    ) -> tuple[float, float] | None:
        """The front point that dominates any candidate of ``cost`` whose loss is at least ``bound`` (or
        ``(bound, inf)`` when the bound already breaks ``--max-lpips``); ``None`` if none does."""
        if objectives.max_quality is not None and bound > objectives.max_quality:
            return (bound, math.inf)
        for q, c in front:
            if c <= cost and q < bound:
                return (q, c)
        return None


def _screened(
    evaluator: Evaluator, schedule: Schedule, screening: Screening, known: KnownMasks, objectives: Objectives,
    attrs: TrialAttrs,
) -> tuple[EvalResult, bool]:
    """Evaluate ``schedule`` stage by stage (see :class:`Screening`); ``(result, screened_out)``."""
    from ..evaluate import EvalResult
    from ..evaluate._stats import lower_bound

    total = len(evaluator.prompt_set("train"))
    front = known.front()
    parts: list[EvalResult] = []
    start = 0
    cuts = [s for s in screening.stages if s < total] if front else []  # nothing to compare with yet: one go
    for k in (*cuts, total):
        res = evaluator.evaluate(schedule, split="train", measure=False, images=slice(start, k))
        if not res.valid:
            return res, False
        parts.append(res)
        start = k
        merged = EvalResult.merge(parts, total=total)
        if k == total or merged.cost_ratio is None:
            continue
        if merged.losses is not None:
            bound = lower_bound(merged.losses, total, objectives.stat)
        elif objectives.stat == "mean":  # an evaluator that keeps no per-image losses
            bound = float(merged.quality) * k / total
        else:
            continue
        by = screening.dominated(bound, float(merged.cost_ratio), front, objectives)
        if by is not None:
            attrs["screened"] = {"images": k, "of": total, "quality": merged.stat(objectives.stat), "bound": bound,
                                 "dominated_by": list(by) if math.isfinite(by[1]) else None}
            return merged, True
    return merged, False


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
    ``claim(key)``, called for a mask not in ``known``, reserves it in a shared study (:class:`~.shared.Claims`):
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
            res, screened_out = _screened(evaluator, schedule, screening, known, objectives, attrs)
        else:
            res = evaluator.evaluate(schedule, split="train", measure=measure)
        if not res.valid:
            raise _Invalid(res.reason or "the evaluator marked the result invalid")
        values, speedup = objective_values(res, objectives)
        spread = res.latency_spread
        if measure and _finite(spread) and spread > remeasure_spread:
            again = evaluator.evaluate(schedule, split="train", measure=True)
            spread2 = again.latency_spread
            if again.valid and _finite(spread2) and spread2 < spread:
                res = again
                values, speedup = objective_values(res, objectives)
            attrs["remeasured"] = True
    except _Invalid as e:
        _free_memory()
        attrs["reason"] = f"invalid output: {e}"
        return Outcome(values=None, reason=attrs["reason"], user_attrs=attrs)
    except Exception as e:  # noqa: BLE001
        _free_memory()
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
