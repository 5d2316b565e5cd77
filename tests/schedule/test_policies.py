"""Policy families compile to the masks their papers describe."""

from __future__ import annotations

import pytest

import cachesearch as cs
from cachesearch.models import block_space
from cachesearch.schedule import BlockKind, BlockProfile, policy_from_dict
from tests._tiny import tiny_sd_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd_pipeline(seed=0, blocks=3)


@pytest.fixture(scope="module")
def space(pipe):
    return block_space(pipe.unet)


def test_block_space_lists_stages_and_layers_in_execution_order(space):
    stages = space.names(BlockKind.STAGE)
    assert stages == ("down_blocks.0", "down_blocks.1", "down_blocks.2", "mid_block", "up_blocks.0", "up_blocks.1",
                      "up_blocks.2")
    assert space.children("down_blocks.1") == (
        "down_blocks.1.resnets.0", "down_blocks.1.attentions.0", "down_blocks.1.resnets.1",
        "down_blocks.1.attentions.1", "down_blocks.1.downsamplers.0",
    )
    assert space.children("mid_block") == ("mid_block.resnets.0", "mid_block.attentions.0", "mid_block.resnets.1")
    assert space.children("up_blocks.2")[-1] == "up_blocks.2.resnets.2"
    assert space.get("down_blocks.1.attentions.0").residual_ok
    assert not space.get("down_blocks.1").residual_ok


def test_deepcache_uniform_full_steps_and_shallow_branch(pipe, space):
    s = cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=0), num_inference_steps=10)
    masks = s.masks()
    assert masks["mid_block"] == "R..R..R..R"
    # Branch 0 keeps only the last layer of the outermost up block (its skip comes from conv_in).
    kept = [b for b, m in masks.items() if m == "R" * 10]
    assert kept == ["up_blocks.2.resnets.2"]
    assert "down_blocks.0" in masks  # stage-level where all its layers agree


def test_deepcache_nonuniform_matches_paper_code(space):
    # Values produced by the official sample_from_quad_center(50, 10, center=15, pow=1.4).
    assert cs.DeepCache(interval=5, schedule="nonuniform", center=15).full_steps(50) == [
        0, 5, 9, 13, 17, 21, 26, 31, 37, 43,
    ]
    masks = cs.DeepCache(interval=5, schedule="nonuniform", center=15).masks(space, 50)
    assert masks["mid_block"][0].count("R") == 10


def test_deepcache_bad_arguments(space):
    with pytest.raises(cs.ScheduleError, match="policy.interval: expected an integer >= 1"):
        cs.DeepCache(interval=0)
    with pytest.raises(cs.ScheduleError, match="policy.branch: 9 is out of range; this denoiser has branches 0..8"):
        cs.DeepCache(interval=2, branch=9).masks(space, 10)
    with pytest.raises(cs.ScheduleError, match="policy.schedule"):
        cs.DeepCache(interval=2, schedule="sometimes")


def test_blockmask_validation(space):
    with pytest.raises(cs.ScheduleError, match="unknown block 'mid'"):
        cs.BlockMask({"mid": "R.R"}).masks(space, 3)
    with pytest.raises(cs.ScheduleError, match='inside blocks\\["mid_block"\\]'):
        cs.BlockMask({"mid_block": "R.R", "mid_block.resnets.0": "RRR"}).masks(space, 3)
    with pytest.raises(cs.ScheduleError, match="mask has 2 characters but the sampler runs 3 steps"):
        cs.BlockMask({"mid_block": "R."}).masks(space, 3)


def test_stepset_spacings_and_joint(pipe):
    assert cs.StepSet(count=5, spacing="linear").resolve(1000) == (5, (999, 799, 599, 400, 200))
    n, ts = cs.StepSet(count=4, spacing="power", power=2.0).resolve(1000)
    assert n == 4 and ts[0] == 999 and all(a > b for a, b in zip(ts, ts[1:]))
    assert cs.StepSet(count=8).resolve(1000) == (8, None)
    with pytest.raises(cs.ScheduleError, match="exactly one of"):
        cs.StepSet()
    with pytest.raises(cs.ScheduleError, match="strictly descending"):
        cs.StepSet(timesteps=(10, 500))
    # DDIM cannot take explicit timesteps: clear error naming what works.
    with pytest.raises(cs.ScheduleError, match="does not accept explicit timesteps"):
        cs.compile_schedule(pipe, cs.StepSet(count=5, spacing="linear"))
    joint = cs.Joint(steps=cs.StepSet(count=6), mask=cs.DeepCache(interval=2))
    s = cs.compile_schedule(pipe, joint)
    assert s.num_steps == 6 and s.masks()["mid_block"] == "R.R.R."
    assert s.pipeline_kwargs() == {"num_inference_steps": 6}
    with pytest.raises(cs.ScheduleError, match="leave it unset"):
        cs.compile_schedule(pipe, joint, num_inference_steps=6)


def test_block_caching_auto_threshold(space):
    profile = BlockProfile(
        blocks=("mid_block", "up_blocks.0"),
        changes=((0.0, 0.05, 0.05, 0.05, 0.05, 0.05), (0.0, 0.3, 0.3, 0.3, 0.3, 0.3)),
    )
    low = cs.BlockCachingAuto(threshold=0.04, profile=profile).masks(space, 6)
    high = cs.BlockCachingAuto(threshold=0.12, profile=profile).masks(space, 6)
    assert low["mid_block"][0] == "RRRRRR" and high["mid_block"][0] == "R..R.."
    assert high["up_blocks.0"][0] == "RRRRRR"
    with pytest.raises(cs.ScheduleError, match="needs a block-change profile"):
        cs.BlockCachingAuto(threshold=0.1).masks(space, 6)
    with pytest.raises(cs.ScheduleError, match="profiled 6 steps but the schedule has 5"):
        cs.BlockCachingAuto(threshold=0.1, profile=profile).masks(space, 5)


def test_periodic_mask(space):
    p = cs.PeriodicMask(blocks=(("mid_block", 3, 0, 0.0, 1.0), ("up_blocks.0", 2, 1, 0.5, 1.0)))
    m = p.masks(space, 8)
    assert m["mid_block"][0] == "R..R..R."
    assert m["up_blocks.0"][0] == "RRRR.R.R"  # window [4, 8): R where (s - 1) % 2 == 0


def test_policies_round_trip_through_their_dicts():
    for p in (
        cs.DeepCache(interval=3, branch=2, schedule="nonuniform", center=10, power=1.3),
        cs.StepSet(count=12, spacing="power", power=1.5),
        cs.Joint(steps=cs.StepSet(count=10), mask=cs.DeepCache(interval=2)),
        cs.PeriodicMask(blocks=(("mid_block", 3, 0, 0.0, 1.0),)),
        cs.Full(),
    ):
        assert policy_from_dict(p.to_dict()) == p


def test_cost_ratio_is_analytic(space):
    stages = space.names(BlockKind.STAGE)
    costed = cs.schedule.BlockSpace(
        family="t", blocks=tuple(cs.schedule.BlockInfo(name=n, kind=BlockKind.STAGE, macs=10) for n in stages),
        other_macs=30,
    )
    assert costed.cost_ratio({"mid_block": "RRRR"}, 4) == 1.0
    # mid_block reused at 2 of 4 steps: saves 2*10 of 4*(30+70) MACs.
    assert costed.cost_ratio({"mid_block": "R.R."}, 4) == pytest.approx(1 - 20 / 400)


def test_middle_cache_auto_refuses_what_it_cannot_compile() -> None:
    from tests._tiny_dit import tiny_transformer

    space = block_space(tiny_transformer("flux"))
    stages = space.names(BlockKind.STAGE)
    prof = BlockProfile(blocks=stages, changes=tuple((0.0, 0.2, 0.2, 0.2) for _ in stages))
    assert cs.MiddleCacheAuto(threshold=0.3, profile=prof).mask(space, 4) == "R.R."
    assert cs.MiddleCacheAuto(threshold=0.3, front=0, profile=prof).masks(space, 4).keys() == set(stages)
    with pytest.raises(cs.ScheduleError, match=r"policy.threshold: expected a number > 0"):
        cs.MiddleCacheAuto(threshold=0.0)
    with pytest.raises(cs.ScheduleError, match=r"policy.max_skip: expected an integer >= 0"):
        cs.MiddleCacheAuto(threshold=0.1, max_skip=-1)
    with pytest.raises(cs.ScheduleError, match=r"policy.order: expected an integer <= 2"):
        cs.MiddleCacheAuto(threshold=0.1, order=3)
    assert cs.MiddleCacheAuto(threshold=0.1).reuse() == ("residual", None)
    assert cs.MiddleCacheAuto(threshold=0.1, order=1).reuse() == ("taylor", 1)
    with pytest.raises(cs.ScheduleError, match=r"policy.profile: MiddleCacheAuto needs a block-change profile"):
        cs.MiddleCacheAuto(threshold=0.1).masks(space, 4)
    with pytest.raises(cs.ScheduleError, match=r"policy.profile: profiled 4 steps but the schedule has 6"):
        cs.MiddleCacheAuto(threshold=0.1, profile=prof).masks(space, 6)
    partial = BlockProfile(blocks=stages[:2], changes=((0.0, 0.2, 0.2, 0.2),) * 2)
    with pytest.raises(cs.ScheduleError, match=r"policy.profile: no profiled change for middle block\(s\)"):
        cs.MiddleCacheAuto(threshold=0.1, profile=partial).masks(space, 4)
    with pytest.raises(cs.ScheduleError, match=r"policy.front \+ policy.back: 3 \+ 1 blocks always run"):
        cs.MiddleCacheAuto(threshold=0.1, front=3, back=1, profile=prof).masks(space, 4)
    # the file keeps the parameters and the profile's id, not the profile
    p = cs.MiddleCacheAuto(threshold=0.3, warmup=1, max_skip=2, order=1, profile=prof, profile_id="sha256:x")
    d = p.to_dict()
    assert d == {"kind": "middleauto", "threshold": 0.3, "front": 1, "back": 0, "warmup": 1, "max_skip": 2,
                 "order": 1, "profile_id": "sha256:x"}
    assert policy_from_dict(d) == p and policy_from_dict(d).profile is None
