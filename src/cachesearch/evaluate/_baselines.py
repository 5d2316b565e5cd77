"""Heuristic baselines as named policies: fewer steps, the DeepCache uniform grid, Block-Caching thresholds.

Each is a :class:`Baseline` record whose ``kind`` (``steps``, ``deepcache``, ``blockcaching``: the policy family
that proposes it) is a field; its name is for people and files and is never parsed. Names are stable so studies
can be seeded with them and reports can refer to them:

``steps-K``
    ``StepSet(count=K)``: K of the reference's N steps with the scheduler's own spacing.
``deepcache-nN-bB``
    ``DeepCache(interval=N, branch=B)`` (uniform): a full step every N steps, otherwise only skip branch B.
``blockcaching-tX``
    ``BlockCachingAuto(threshold=X)`` over a block-change profile (Block Caching's automatic schedule).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cachesearch.schedule import BlockCachingAuto, BlockProfile, BlockSpace, DeepCache, Policy, StepSet

from ._profile import profile_id

if TYPE_CHECKING:
    from ._evaluator import Evaluator

__all__ = [
    "DEFAULT_DEEPCACHE_INTERVALS",
    "DEFAULT_STEP_FRACTIONS",
    "DEFAULT_THRESHOLDS",
    "Baseline",
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


@dataclass(frozen=True, kw_only=True)
class Baseline:
    """A heuristic baseline: ``kind`` is the policy family it belongs to, ``name`` a stable label."""

    kind: str
    name: str
    policy: Policy


def step_baselines(num_steps: int, fractions: Iterable[float] = DEFAULT_STEP_FRACTIONS) -> list[Baseline]:
    """``steps-K`` for ``K = round(f * num_steps)``, distinct, ``1 <= K < num_steps``, most steps first."""
    counts = sorted({max(1, round(f * num_steps)) for f in fractions} - {num_steps}, reverse=True)
    return [Baseline(kind="steps", name=f"steps-{k}", policy=StepSet(count=k)) for k in counts if k < num_steps]


def deepcache_baselines(
    num_steps: int, num_branches: int, intervals: Iterable[int] = DEFAULT_DEEPCACHE_INTERVALS
) -> list[Baseline]:
    """``deepcache-nN-bB`` for every interval ``2 <= N < num_steps`` in ``intervals`` and every branch."""
    out: list[Baseline] = []
    for n in sorted(set(intervals)):
        if 2 <= n < num_steps:
            out += [Baseline(kind="deepcache", name=f"deepcache-n{n}-b{b}", policy=DeepCache(interval=n, branch=b))
                    for b in range(num_branches)]
    return out


def blockcaching_baselines(
    space: BlockSpace, num_steps: int, profile: BlockProfile, thresholds: Iterable[float] = DEFAULT_THRESHOLDS
) -> list[Baseline]:
    """``blockcaching-tX`` for each threshold whose mask differs from full compute and from smaller thresholds.

    ``profile`` must cover ``num_steps`` steps of the same model and sampler (from :func:`profile_blocks`).
    """
    if profile.num_steps != num_steps:
        raise ValueError(f"profile: has {profile.num_steps} steps but the evaluator samples {num_steps}; re-profile")
    pid = profile_id(profile)
    out: list[Baseline] = []
    seen: set[tuple] = set()
    for t in sorted(set(thresholds)):
        policy = BlockCachingAuto(threshold=t, profile=profile, profile_id=pid)
        masks = policy.masks(space, num_steps)
        signature = tuple(sorted(masks.items()))
        if signature in seen or all("." not in c + u for c, u in masks.values()):
            continue
        seen.add(signature)
        out.append(Baseline(kind="blockcaching", name=f"blockcaching-t{t:g}", policy=policy))
    return out


def baselines(
    evaluator: Evaluator,
    *,
    profile: BlockProfile | None = None,
    step_fractions: Iterable[float] = DEFAULT_STEP_FRACTIONS,
    intervals: Iterable[int] = DEFAULT_DEEPCACHE_INTERVALS,
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
) -> list[Baseline]:
    """All heuristic baselines for ``evaluator``'s model and sampler (reads its ``space`` and
    ``num_inference_steps``), fewer steps first, then DeepCache, then Block Caching.

    Block-Caching baselines need a ``profile`` of the same model, sampler and steps (from
    :func:`profile_blocks`); without one they are left out.
    """
    n = evaluator.num_inference_steps
    out = step_baselines(n, step_fractions)
    out += deepcache_baselines(n, len(evaluator.space.deepcache_branches), intervals)
    if profile is not None:
        out += blockcaching_baselines(evaluator.space, n, profile, thresholds)
    return out
