"""Denoiser MACs per pipeline call of a schedule, from a block space's per-block MACs (what the analytic cost
ratio prices, in absolute numbers: the compute a search spends)."""

from __future__ import annotations

from collections.abc import Sequence

from cachesearch.schedule import BlockKind, BlockSpace, Schedule

__all__ = ["call_macs"]


def call_macs(space: BlockSpace, schedule: Schedule, step_of_call: Sequence[int], *, cfg: bool) -> list[float] | None:
    """MACs of each denoiser call for one image: the blocks each call's step recomputes, for the cond branch and,
    with ``cfg``, the uncond one too (one image is two rows of a CFG batch). ``None`` when ``space`` has no MACs."""
    stages = [b for b in space.blocks if b.kind is BlockKind.STAGE]
    if space.other_macs is None or any(b.macs is None for b in stages):
        return None
    full = float(space.other_macs) + sum(float(b.macs or 0) for b in stages)
    branches = [schedule.masks("cond")] + ([schedule.masks("uncond")] if cfg else [])
    per_step = []
    for s in range(schedule.num_steps):
        ratios = [space.cost_ratio({b: m[s] for b, m in masks.items()}, 1) for masks in branches]
        per_step.append(full * sum(r or 0.0 for r in ratios))
    return [per_step[s] for s in step_of_call]
