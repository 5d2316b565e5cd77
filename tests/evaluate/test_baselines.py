"""Heuristic baselines: kinds as fields, stable names, the full DeepCache grid, fewer steps, Block-Caching
thresholds."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

import cachesearch as cs
from cachesearch.evaluate import baselines
from cachesearch.evaluate._baselines import Baseline
from cachesearch.models import block_space
from cachesearch.schedule import BlockKind, BlockProfile
from tests._tiny import tiny_sd_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd_pipeline(blocks=3)


def _fake_evaluator(pipe, steps: int) -> SimpleNamespace:
    """What baselines() reads from an Evaluator: the block space and the reference steps."""
    return SimpleNamespace(space=block_space(pipe.unet), num_inference_steps=steps)


def _profile(space, steps: int) -> BlockProfile:
    stages = space.names(BlockKind.STAGE)
    # Deeper stages change less per step, as in the Block Caching paper's analysis.
    rows = tuple(tuple(0.0 if s == 0 else 0.4 / (1 + i) for s in range(steps)) for i in range(len(stages)))
    return BlockProfile(blocks=stages, changes=rows)


def test_names_and_policies_of_the_grid(pipe) -> None:
    ev = _fake_evaluator(pipe, 20)
    items = baselines(ev, profile=_profile(ev.space, 20))
    assert all(isinstance(b, Baseline) for b in items)
    names = [b.name for b in items]
    assert len(names) == len(set(names))
    patterns = {"steps": r"steps-\d+", "deepcache": r"deepcache-n\d+-b\d+", "blockcaching": r"blockcaching-t[0-9.e+-]+"}
    for b in items:
        assert re.fullmatch(patterns[b.kind], b.name), b
    # the kind is the policy's family, a field of the record
    kinds = {"steps": cs.StepSet, "deepcache": cs.DeepCache, "blockcaching": cs.BlockCachingAuto}
    assert all(isinstance(b.policy, kinds[b.kind]) for b in items)
    assert [b.kind for b in items] == sorted((b.kind for b in items), key=list(kinds).index)  # enqueue order
    branches = len(ev.space.deepcache_branches)
    dc = {b.name: b.policy for b in items if b.kind == "deepcache"}
    assert len(dc) == 9 * branches  # N = 2..10, every branch
    assert dc["deepcache-n3-b1"] == cs.DeepCache(interval=3, branch=1)
    steps = {b.name: b.policy for b in items if b.kind == "steps"}
    assert steps["steps-10"] == cs.StepSet(count=10) and "steps-20" not in steps
    assert all(p.spacing == "scheduler" for p in steps.values())
    bc = [b.policy for b in items if b.kind == "blockcaching"]
    assert bc and all(p.profile_id.startswith("sha256:") for p in bc)


def test_every_baseline_compiles_and_blockcaching_masks_are_distinct(pipe) -> None:
    ev = _fake_evaluator(pipe, 12)
    masks = []
    for b in baselines(ev, profile=_profile(ev.space, 12)):
        sched = cs.compile_schedule(pipe, b.policy, num_inference_steps=None if b.kind == "steps" else 12)
        if b.kind == "blockcaching":
            assert sched.recompute_fraction() < 1.0, b.name  # never a disguised full schedule
            masks.append(sched.masks())
    assert len(masks) == len({tuple(sorted(m.items())) for m in masks}) >= 2


def test_intervals_never_reach_the_step_count(pipe) -> None:
    items = baselines(_fake_evaluator(pipe, 4))
    assert {b.policy.interval for b in items if b.kind == "deepcache"} == {2, 3}
    assert not [b for b in items if b.kind == "blockcaching"]  # no profile, no Block-Caching baselines
    assert [b.name for b in items if b.kind == "steps"] == ["steps-3", "steps-2", "steps-1"]


def test_profile_with_other_steps_is_refused(pipe) -> None:
    ev = _fake_evaluator(pipe, 8)
    with pytest.raises(ValueError, match="profile: has 6 steps"):
        baselines(ev, profile=_profile(ev.space, 6))
