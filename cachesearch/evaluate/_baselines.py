"""Heuristic baselines as named policies: fewer steps, the DeepCache uniform grid, Block-Caching thresholds.

Names are stable so studies can be seeded with them and reports can refer to them:

``steps-K``
    ``StepSet(count=K)``: K of the reference's N steps with the scheduler's own spacing.
``deepcache-nN-bB``
    ``DeepCache(interval=N, branch=B)`` (uniform): a full step every N steps, otherwise only skip branch B.
``blockcaching-tX``
    ``BlockCachingAuto(threshold=X)`` over a block-change profile (Block Caching's automatic schedule).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from cachesearch.schedule import BlockCachingAuto, BlockProfile, DeepCache, Policy, StepSet

from ._profile import profile_id

if TYPE_CHECKING:
    from ._evaluator import Evaluator

__all__ = [
    "DEFAULT_DEEPCACHE_INTERVALS",
    "DEFAULT_STEP_FRACTIONS",
    "DEFAULT_THRESHOLDS",
    "baselines",
    "blockcaching_baselines",
    "deepcache_baselines",
    "step_baselines",
]

DEFAULT_STEP_FRACTIONS: tuple[float, ...] = (0.75, 0.5, 0.4, 1 / 3, 0.25, 0.2)
"""Fractions of the reference steps tried by the fewer-steps baseline."""

DEFAULT_DEEPCACHE_INTERVALS: tuple[int, ...] = tuple(range(2, 11))
"""DeepCache intervals N of the uniform grid."""

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
"""Block-Caching thresholds on the accumulated relative change."""


def step_baselines(num_steps: int, fractions: Iterable[float] = DEFAULT_STEP_FRACTIONS) -> list[tuple[str, Policy]]:
    """``steps-K`` for ``K = round(f * num_steps)``, distinct, ``1 <= K < num_steps``, most steps first."""
    counts = sorted({max(1, round(f * num_steps)) for f in fractions} - {num_steps}, reverse=True)
    return [(f"steps-{k}", StepSet(count=k)) for k in counts if k < num_steps]


def deepcache_baselines(
    num_steps: int, num_branches: int, intervals: Iterable[int] = DEFAULT_DEEPCACHE_INTERVALS
) -> list[tuple[str, Policy]]:
    """``deepcache-nN-bB`` for every interval ``2 <= N < num_steps`` in ``intervals`` and every branch."""
    out: list[tuple[str, Policy]] = []
    for n in sorted(set(intervals)):
        if 2 <= n < num_steps:
            out += [(f"deepcache-n{n}-b{b}", DeepCache(interval=n, branch=b)) for b in range(num_branches)]
    return out


def blockcaching_baselines(
    evaluator: Evaluator, profile: BlockProfile, thresholds: Iterable[float] = DEFAULT_THRESHOLDS
) -> list[tuple[str, Policy]]:
    """``blockcaching-tX`` for each threshold whose mask differs from full compute and from smaller thresholds."""
    pid = profile_id(profile)
    out: list[tuple[str, Policy]] = []
    seen: set[tuple] = set()
    for t in sorted(set(thresholds)):
        policy = BlockCachingAuto(threshold=t, profile=profile, profile_id=pid)
        masks = policy.masks(evaluator.space, evaluator.num_inference_steps)
        signature = tuple(sorted(masks.items()))
        if signature in seen or all("." not in c + u for c, u in masks.values()):
            continue
        seen.add(signature)
        out.append((f"blockcaching-t{t:g}", policy))
    return out


def baselines(
    evaluator: Evaluator,
    *,
    profile: BlockProfile | None = None,
    step_fractions: Iterable[float] = DEFAULT_STEP_FRACTIONS,
    intervals: Iterable[int] = DEFAULT_DEEPCACHE_INTERVALS,
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
) -> list[tuple[str, Policy]]:
    """All heuristic baselines for ``evaluator``'s model and sampler as ``(name, policy)`` pairs.

    Block-Caching baselines need a ``profile`` of the same model, sampler and steps (from
    :func:`profile_blocks`); without one they are left out.
    """
    n = evaluator.num_inference_steps
    out = step_baselines(n, step_fractions)
    out += deepcache_baselines(n, len(evaluator.space.deepcache_branches), intervals)
    if profile is not None:
        if profile.num_steps != n:
            raise ValueError(f"profile: has {profile.num_steps} steps but the evaluator samples {n}; re-profile")
        out += blockcaching_baselines(evaluator, profile, thresholds)
    return out
