"""Multi-fidelity screening: a candidate is scored on growing subsets of the train images and stops as soon as it
provably cannot reach the front (:class:`Screening`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..evaluate import EvalResult, Evaluator
    from ..schedule import Schedule
    from .masks import KnownMasks
    from .objective import Objectives
    from .outcome import TrialAttrs

__all__ = ["Screening", "evaluate_screened"]


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


def evaluate_screened(
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
