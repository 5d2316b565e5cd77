"""What a schedule file records about how its schedule scored: quality, the distribution of per-image losses
(format @4) and cost."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._errors import ScheduleError

__all__ = ["LOSS_STATS", "LatencyMetrics", "LossStats", "Metrics", "QualityMetrics", "TailMetrics"]

LOSS_STATS = ("mean", "median", "p90", "cvar", "max")
"""The statistics :class:`LossStats` holds, by name."""


@dataclass(frozen=True, kw_only=True)
class QualityMetrics:
    """Quality loss against the uncached reference (lower is better for distances)."""

    metric: str
    train: float
    heldout: float | None = None
    n_images: int = 0
    psnr: float | None = None
    ssim: float | None = None
    accuracy: float | None = None


@dataclass(frozen=True, kw_only=True)
class LossStats:
    """The distribution of a schedule's per-image quality losses on one prompt split (format @4).

    Attributes:
        n: images (prompt, seed pairs) scored.
        mean, median, p90, max: of the per-image losses (p90: linear interpolation between order statistics).
        cvar: mean of the worst 10 % of the images (fractional at the edge).
        over: share of images whose loss is above ``threshold`` (visibly broken ones).
        threshold: the loss ``over`` counts above.
        ci95: 95 % interval of the mean (BCa bootstrap over the images), or ``None``.
    """

    n: int
    mean: float
    median: float
    p90: float
    cvar: float
    max: float
    over: float
    threshold: float
    ci95: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ScheduleError(f"n: expected a positive number of images, got {self.n!r}")
        for name in (*LOSS_STATS, "over", "threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ScheduleError(f"{name}: expected a finite number >= 0, got {v!r}")
        if not self.over <= 1:
            raise ScheduleError(f"over: expected a share in [0, 1], got {self.over!r}")
        if self.ci95 is not None:
            lo, hi = self.ci95
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ScheduleError(f"ci95: expected [low, high] with low <= high, got {list(self.ci95)!r}")
            object.__setattr__(self, "ci95", (float(lo), float(hi)))

    def get(self, name: str) -> float:
        """Statistic ``name`` (one of :data:`LOSS_STATS`)."""
        if name not in LOSS_STATS:
            raise ScheduleError(f"stat: expected one of {list(LOSS_STATS)}, got {name!r}")
        return float(getattr(self, name))


@dataclass(frozen=True, kw_only=True)
class TailMetrics:
    """Per-image loss distributions on the train and held-out prompts (format @4)."""

    train: LossStats | None = None
    heldout: LossStats | None = None


@dataclass(frozen=True, kw_only=True)
class LatencyMetrics:
    """Cost of the schedule: measured latency (if any) and the analytic cost ratio (a runtime schedule's: counted
    from what executed on the train images)."""

    device: str | None = None
    ms: float | None = None
    baseline_ms: float | None = None
    speedup: float | None = None
    cost_ratio: float | None = None
    cost_ratio_heldout: float | None = None
    """The cost ratio on the held-out images when it differs by image (a runtime cache decides per prompt: what
    ran there, counted; format @4). ``cost_ratio`` is then the train images' count."""


@dataclass(frozen=True, kw_only=True)
class Metrics:
    """How a schedule scored when it was searched or evaluated (``tail``: format @4)."""

    quality: QualityMetrics | None = None
    latency: LatencyMetrics | None = None
    tail: TailMetrics | None = None
