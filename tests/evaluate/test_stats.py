"""Tail statistics and 95 % intervals of per-image losses; exact merges of image ranges."""

from __future__ import annotations

import numpy as np
import pytest

from cachesearch.evaluate import EvalResult
from cachesearch.evaluate._result import schedule_metrics
from cachesearch.evaluate._stats import (
    cvar,
    lower_bound,
    mean_interval,
    paired_interval,
    quantile,
    statistic,
    summarize,
)

# the shape: most images near 0, a few broken ones
SKEWED = np.random.default_rng(3).lognormal(-5.0, 1.6, 64)


def test_statistics_follow_their_stated_definitions():
    x = [0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.2]
    assert statistic(x, "mean") == pytest.approx(0.05125)
    assert statistic(x, "median") == pytest.approx(0.035)
    assert quantile(x, 0.9) == pytest.approx(0.06 + 0.3 * 0.14)  # position 6.3 of 0..7, linear
    assert statistic(x, "p90") == pytest.approx(np.quantile(x, 0.9))
    assert cvar(x) == 0.2  # 10 % of 8 images is 0.8 of one: the worst
    assert cvar(list(range(64))) == pytest.approx((sum(range(58, 64)) + 0.4 * 57) / 6.4)
    assert cvar(list(range(10))) == 9.0
    s = summarize(x, threshold=0.05)
    assert (s.n, s.max, s.over, s.threshold, s.ci95) == (8, 0.2, 2 / 8, 0.05, None)  # 0.05 itself is not over
    with pytest.raises(ValueError, match="expected one of"):
        statistic(x, "p99")


@pytest.mark.parametrize("name", ["mean", "median", "p90", "cvar", "max"])
def test_zero_padded_statistic_is_a_lower_bound_of_the_full_set(name):
    rng = np.random.default_rng(0)
    for _ in range(200):
        full = rng.exponential(0.02, 8)
        k = int(rng.integers(1, 9))
        assert lower_bound(full[:k], 8, name) <= statistic(full, name) + 1e-15
    assert lower_bound(full, 8, name) == statistic(full, name)


def test_bca_interval_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    for n in (16, 64):
        x = SKEWED[:n]
        ref = stats.bootstrap((x,), np.mean, method="BCa", n_resamples=30_000, random_state=0).confidence_interval
        lo, hi = mean_interval(x)
        width = ref.high - ref.low
        assert abs(lo - ref.low) < 0.06 * width and abs(hi - ref.high) < 0.06 * width
        y = x * np.random.default_rng(n).uniform(0.6, 1.4, n)
        ref = stats.bootstrap((x, y), lambda a, b: np.mean(a - b), paired=True, method="BCa", n_resamples=30_000,
                              random_state=0).confidence_interval
        lo, hi = paired_interval(x, y)
        width = ref.high - ref.low
        assert abs(lo - ref.low) < 0.06 * width and abs(hi - ref.high) < 0.06 * width


def test_intervals_are_deterministic_and_skewed_like_the_losses():
    lo, hi = mean_interval(SKEWED)
    assert (lo, hi) == mean_interval(SKEWED)
    m = SKEWED.mean()
    assert lo < m < hi and hi - m > m - lo  # the heavy side is the long one
    assert mean_interval([0.01] * 5) == (0.01, 0.01)


def test_paired_differences_rank_what_separate_intervals_cannot():
    rng = np.random.default_rng(1)
    a = rng.lognormal(-5.0, 1.5, 32)  # a hard prompt is hard for both schedules
    b = a * 1.15
    ahi, blo = mean_interval(a)[1], mean_interval(b)[0]
    assert blo < ahi  # the two intervals overlap: unranked one by one
    assert paired_interval(b, a)[0] > 0  # paired: b is worse, certainly
    with pytest.raises(ValueError, match="same images"):
        paired_interval(a, b[:8])


def _part(first: int, losses: list[float]) -> EvalResult:
    return EvalResult(schedule="s", split="heldout", valid=True, reason=None, metric="m",
                      quality=float(np.mean(losses)), psnr=30.0, ssim=None, accuracy=None, cost_ratio=0.5,
                      latency_ms=None, baseline_ms=None, speedup=None, latency_spread=None, n_images=len(losses),
                      seconds=1.0, images=[first, first + len(losses)], losses=losses)


def test_merged_ranges_keep_every_image_so_tail_statistics_stay_exact():
    whole = list(SKEWED[:8])
    merged = EvalResult.merge([_part(0, whole[:2]), _part(2, whole[2:5]), _part(5, whole[5:])], total=8)
    assert merged.losses == tuple(whole)
    for name in ("mean", "median", "p90", "cvar", "max"):
        assert merged.stat(name) == pytest.approx(statistic(whole, name))
    assert merged.summary(threshold=0.01).over == summarize(whole, threshold=0.01).over
    old = EvalResult.merge([_part(0, whole[:4]), EvalResult(**{**_part(4, whole[4:]).__dict__, "losses": None})])
    assert old.losses is None and old.stat("p90") is None and old.stat("mean") == pytest.approx(np.mean(whole))
    with pytest.raises(ValueError, match="losses"):
        _part(0, whole).__class__(**{**_part(0, whole).__dict__, "n_images": 3})


def test_a_result_round_trips_through_json_with_its_losses():
    r = _part(0, list(SKEWED[:4]))
    d = r.to_dict(json_safe=True)
    assert isinstance(d["losses"], list) and EvalResult(**d) == r


def test_schedule_metrics_carry_the_tail_and_the_heldout_interval():
    train, held = _part(0, list(SKEWED[:8])), _part(0, list(SKEWED[:64]))
    train = EvalResult(**{**train.__dict__, "split": "train"})
    m = schedule_metrics(train, held, threshold=0.02)
    assert m.tail.train.n == 8 and m.tail.train.ci95 is None
    assert m.tail.heldout.n == 64 and m.tail.heldout.ci95 == mean_interval(SKEWED[:64])
    assert m.tail.heldout.p90 == pytest.approx(np.quantile(SKEWED[:64], 0.9)) and m.tail.heldout.threshold == 0.02
    no_losses = EvalResult(**{**train.__dict__, "losses": None})
    assert schedule_metrics(no_losses).tail is None  # an older record: the file stays in its older format
