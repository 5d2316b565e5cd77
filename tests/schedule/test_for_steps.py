"""Schedule.for_steps: a schedule's recorded policy re-compiled for another step count, without the model."""

from __future__ import annotations

import pytest

import cachesearch as cs
from tests._tiny import tiny_sd_pipeline


@pytest.fixture(scope="module")
def ddim():
    return tiny_sd_pipeline(seed=0, blocks=3)


@pytest.fixture(scope="module")
def pndm():
    return tiny_sd_pipeline(seed=0, blocks=3, scheduler="pndm")


def _masks(s: cs.Schedule) -> dict:
    return {bm.block: (bm.cond, bm.uncond) for bm in s.blocks}


@pytest.mark.parametrize(
    "policy",
    [cs.DeepCache(interval=3, branch=0), cs.DeepCache(interval=4, branch=5, schedule="nonuniform"),
     cs.DeepCache(interval=1, branch=2), cs.Full(),
     cs.PeriodicMask(blocks=(("mid_block", 3, 1, 0.2, 0.9), ("up_blocks.0.attentions.1", 2, 0, 0.0, 1.0)))],
    ids=lambda p: p.default_name(0),
)
@pytest.mark.parametrize("which", ["ddim", "pndm"])
def test_for_steps_equals_compiling_the_policy_at_the_new_step_count(request, policy, which):
    pipe = request.getfixturevalue(which)
    at10 = cs.compile_schedule(pipe, policy, num_inference_steps=10, guidance_scale=5.0)
    for n in (7, 25):
        direct = cs.compile_schedule(pipe, policy, num_inference_steps=n, guidance_scale=5.0)
        moved = at10.for_steps(n)
        assert _masks(moved) == _masks(direct), n
        assert moved.policy == direct.policy and moved.name == direct.name
        assert moved.pipeline_kwargs() == {"num_inference_steps": n, "guidance_scale": 5.0}
        assert moved.reference.num_inference_steps == n  # its reference was the full run at its own steps
        assert moved.metrics is None
        assert moved.provenance.note == f"for_steps({n}) of {at10.name!r} (10 steps); metrics dropped"


def test_joint_step_sets_move_with_the_count_and_the_reference_is_dropped(ddim, tmp_path):
    ref = cs.schedule.ReferenceRun(scheduler="DDIMScheduler", num_inference_steps=20, guidance_scale=5.0)
    j = cs.compile_schedule(ddim, cs.Joint(steps=cs.StepSet(count=8), mask=cs.DeepCache(interval=3)), reference=ref)
    moved = j.for_steps(12)
    direct = cs.compile_schedule(ddim, cs.Joint(steps=cs.StepSet(count=12), mask=cs.DeepCache(interval=3)))
    assert _masks(moved) == _masks(direct) and moved.policy == direct.policy
    assert moved.reference is None  # the 20-step reference says nothing about a 12-step run of this policy
    back = cs.load_schedule(moved.save(tmp_path / "m.yaml"))
    assert back == moved and back.format == "cachesearch/schedule@2"


def test_for_steps_refuses_what_it_cannot_recompile(ddim):
    hand = cs.compile_schedule(ddim, cs.BlockMask({"mid_block": "R.R.R."}), num_inference_steps=6)
    with pytest.raises(cs.ScheduleError, match=r"hand-made mask \(policy kind 'blockmask'\): there is no policy"):
        hand.for_steps(10)
    explicit = cs.compile_schedule(
        tiny_sd_pipeline(seed=0, blocks=3, scheduler="euler"), cs.StepSet(count=5, spacing="linear"))
    with pytest.raises(cs.ScheduleError, match="training range"):
        explicit.for_steps(8)
    with pytest.raises(cs.ScheduleError, match="num_steps: expected a positive integer"):
        hand.for_steps(0)
