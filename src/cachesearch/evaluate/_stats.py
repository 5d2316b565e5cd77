"""Statistics of per-image quality losses: the tail (median, p90, CVaR, max, share over a threshold) and 95 %
intervals of means and of paired differences.

A static schedule cannot adapt per prompt, so it is judged by the distribution of its per-image losses, not only
their mean: one broken image in eight is invisible in a mean over eight but is what a user sees.

Definitions (fixed: files, reports and the search objective use exactly these):

- ``p90``: the 0.9 quantile with linear interpolation between order statistics (numpy's default, Hyndman–Fan
  type 7).
- ``cvar``: the mean of the worst ``CVAR_ALPHA`` = 10 % of the images, fractional at the edge (the discrete
  superquantile: with 8 images it is the worst one, with 64 it is ``(top 6 + 0.4 · 7th) / 6.4``).
- ``over``: the share of images whose loss is strictly above the stated threshold.
- intervals: bias-corrected and accelerated (BCa) bootstrap of the mean, 10 000 resamples from a fixed seed
  (deterministic). Per-image losses are right-skewed (most images are near 0, a few broken ones dominate the
  mean); a Student-t interval assumes a symmetric mean distribution and is too short on the heavy side at
  n = 16–64, the plain percentile bootstrap is biased for skewed statistics, BCa corrects both (Efron 1987).
  Two schedules scored on the same (prompt, seed) pairs are compared by the interval of the mean *difference*
  per pair (:func:`paired_interval`): a prompt that is hard for one is hard for the other, so that variance
  cancels and the interval is far tighter than two separate intervals.

Every statistic is non-decreasing in each loss, so for losses >= 0 the statistic of the images seen so far padded
with zeros for the unseen ones is a lower bound of the full set's (:func:`lower_bound`; exact screening).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from cachesearch.schedule import LOSS_STATS, LossStats

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BROKEN_THRESHOLD",
    "CVAR_ALPHA",
    "STATS",
    "cvar",
    "lower_bound",
    "mean_interval",
    "paired_interval",
    "quantile",
    "statistic",
    "summarize",
]

BROKEN_THRESHOLD = 0.05
"""Default loss above which an image counts as visibly broken (the share of such images is reported): at ST-LPIPS
0.05 to full compute the embedded models' images show a moved or recoloured object, below 0.02 they look the same."""
CVAR_ALPHA = 0.1
"""CVaR is the mean of the worst ``CVAR_ALPHA`` of the images."""
BOOTSTRAP_RESAMPLES = 10_000
_SEED = 20261207
STATS = LOSS_STATS
"""The statistics of a loss distribution (each a function of the per-image losses)."""


def _array(losses: Sequence[float]) -> np.ndarray:
    x = np.asarray(losses, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("statistics of no images")
    if not np.all(np.isfinite(x)):
        raise ValueError("losses must be finite")
    return x


def quantile(losses: Sequence[float], q: float) -> float:
    """The ``q`` quantile, linear interpolation between order statistics (numpy's default)."""
    return float(np.quantile(_array(losses), q))


def cvar(losses: Sequence[float], alpha: float = CVAR_ALPHA) -> float:
    """Mean of the worst ``alpha`` share of the images, the last one weighted fractionally (see the module)."""
    if not 0 < alpha <= 1:
        raise ValueError(f"cvar: alpha must be in (0, 1], got {alpha}")
    x = np.sort(_array(losses))[::-1]
    k = alpha * x.size
    if k <= 1:  # the worst share lies within the worst image
        return float(x[0])
    whole = int(math.floor(k + 1e-12))
    total = float(x[:whole].sum())
    if whole < x.size and k > whole:
        total += (k - whole) * float(x[whole])
    return total / k


def statistic(losses: Sequence[float], name: str) -> float:
    """One of :data:`STATS` of ``losses``."""
    x = _array(losses)
    if name == "mean":
        return float(x.mean())
    if name == "median":
        return float(np.median(x))
    if name == "p90":
        return float(np.quantile(x, 0.9))
    if name == "cvar":
        return cvar(x)
    if name == "max":
        return float(x.max())
    raise ValueError(f"statistic: expected one of {list(STATS)}, got {name!r}")


def lower_bound(losses: Sequence[float], total: int, name: str) -> float:
    """A lower bound of statistic ``name`` over ``total`` images of which ``losses`` were seen (losses >= 0): the
    statistic with the unseen images at 0. Exact when all were seen."""
    x = _array(losses)
    if total < x.size:
        raise ValueError(f"lower_bound: {x.size} losses seen of {total}")
    return statistic(np.concatenate([x, np.zeros(total - x.size)]), name)


def _bca(x: np.ndarray, level: float, resamples: int, seed: int) -> tuple[float, float]:
    """BCa bootstrap interval of the mean of ``x`` (Efron 1987; the formula scipy.stats.bootstrap uses)."""
    n = x.size
    theta = float(x.mean())
    if n < 2 or float(x.max() - x.min()) == 0.0:
        return theta, theta
    rng = np.random.default_rng(seed)
    boot = np.empty(resamples)
    for lo in range(0, resamples, 2000):  # bounded memory: 2000 × n indices at a time
        hi = min(lo + 2000, resamples)
        boot[lo:hi] = x[rng.integers(0, n, size=(hi - lo, n))].mean(axis=1)
    norm = NormalDist()
    share = (np.count_nonzero(boot < theta) + 0.5 * np.count_nonzero(boot == theta)) / resamples
    share = min(max(share, 1.0 / resamples), 1.0 - 1.0 / resamples)
    z0 = norm.inv_cdf(share)
    jack = (x.sum() - x) / (n - 1)
    d = jack.mean() - jack
    ss = float(np.sum(d * d))
    a = float(np.sum(d ** 3)) / (6.0 * ss ** 1.5) if ss > 0 else 0.0
    out = []
    for z in (norm.inv_cdf((1 - level) / 2), norm.inv_cdf((1 + level) / 2)):
        p = norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
        out.append(float(np.quantile(boot, min(max(p, 0.0), 1.0))))
    return out[0], out[1]


def mean_interval(losses: Sequence[float], *, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                  seed: int = _SEED) -> tuple[float, float]:
    """The ``level`` interval of the mean loss (BCa bootstrap; deterministic for a given input)."""
    return _bca(_array(losses), level, resamples, seed)


def paired_interval(a: Sequence[float], b: Sequence[float], *, level: float = 0.95,
                    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = _SEED) -> tuple[float, float]:
    """The ``level`` interval of ``mean(a - b)`` for losses of two schedules on the same (prompt, seed) pairs, in
    the same order (BCa bootstrap of the per-pair differences). Excludes 0: the two are ranked."""
    x, y = _array(a), _array(b)
    if x.size != y.size:
        raise ValueError(f"paired_interval: {x.size} and {y.size} losses; pairs need the same images")
    return _bca(x - y, level, resamples, seed)


def summarize(losses: Sequence[float], *, threshold: float = BROKEN_THRESHOLD, interval: bool = False) -> LossStats:
    """Mean, median, p90, CVaR, max and share over ``threshold`` of ``losses`` (and the mean's 95 % interval)."""
    x = _array(losses)
    return LossStats(
        n=int(x.size), mean=float(x.mean()), median=float(np.median(x)), p90=float(np.quantile(x, 0.9)),
        cvar=cvar(x), max=float(x.max()), over=float(np.count_nonzero(x > threshold)) / x.size,
        threshold=float(threshold), ci95=mean_interval(x) if interval else None,
    )
