"""compile_schedule: the one policy → schedule bridge, on the tiny SD pipeline (no forward pass needed)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import ClassVar

import pytest
import yaml

import cachesearch as cs
from cachesearch._compile import default_name, model_info
from cachesearch._version import __version__
from cachesearch.runtime import fingerprint_module
from cachesearch.schedule import MaskPolicy, parse_schedule, policy_from_dict
from cachesearch.schedule.policies import base, register_policy

STEPS = 4


@pytest.fixture(scope="module")
def make_pipe():
    """The tiny-pipeline factory; the one place that names its module (it is moving under tests/)."""
    from tests._tiny import tiny_sd_pipeline

    return tiny_sd_pipeline


@pytest.fixture(scope="module")
def pipe(make_pipe):
    return make_pipe(seed=0)  # DDIM: no explicit timesteps


@pytest.fixture(scope="module")
def euler(make_pipe):
    return make_pipe(seed=0, scheduler="euler")  # accepts timesteps=


# -- errors ------------------------------------------------------------------------------------------------
def test_refuses_what_is_not_a_policy(pipe):
    with pytest.raises(cs.ScheduleError, match=r"^policy: expected a cachesearch policy .*got \{'kind': 'full'\}$"):
        cs.compile_schedule(pipe, {"kind": "full"}, num_inference_steps=STEPS)  # type: ignore[arg-type]


def test_refuses_an_unknown_reuse_mode(pipe):
    with pytest.raises(cs.ScheduleError) as e:
        cs.compile_schedule(pipe, cs.Full(), num_inference_steps=STEPS, reuse="sometimes")
    assert str(e.value) == "reuse: expected one of ['output', 'residual', 'taylor'], got 'sometimes'"


def test_step_count_comes_from_the_step_set_or_the_caller(pipe):
    with pytest.raises(cs.ScheduleError, match="^num_inference_steps: leave it unset when the policy carries a step"):
        cs.compile_schedule(pipe, cs.StepSet(count=3), num_inference_steps=3)
    with pytest.raises(cs.ScheduleError, match="^num_inference_steps: leave it unset"):
        cs.compile_schedule(pipe, cs.Joint(steps=cs.StepSet(count=3), mask=cs.Full()), num_inference_steps=3)
    with pytest.raises(cs.ScheduleError, match=r"^num_inference_steps: required \(the number of sampler steps"):
        cs.compile_schedule(pipe, cs.Full())
    for bad in (0, -2, True, 2.0, "4"):
        with pytest.raises(cs.ScheduleError) as e:
            cs.compile_schedule(pipe, cs.Full(), num_inference_steps=bad)  # type: ignore[arg-type]
        assert str(e.value) == f"num_inference_steps: expected a positive integer, got {bad!r}"


def test_explicit_timesteps_are_refused_on_ddim_and_accepted_on_euler(pipe, euler):
    for steps in (cs.StepSet(timesteps=(900, 500, 100)), cs.StepSet(count=3, spacing="linear")):
        with pytest.raises(cs.ScheduleError, match="^policy.steps: DDIMScheduler does not accept explicit timesteps"):
            cs.compile_schedule(pipe, cs.Joint(steps=steps, mask=cs.DeepCache(interval=2)))
    assert cs.compile_schedule(euler, cs.StepSet(timesteps=(900, 500, 100))).sampler.timesteps == (900, 500, 100)
    # the scheduler's own spacing needs no timesteps= and works on DDIM
    s = cs.compile_schedule(pipe, cs.StepSet(count=3))
    assert (s.sampler.num_inference_steps, s.sampler.timesteps) == (3, None)


def test_timesteps_outside_the_training_range_are_refused(euler):
    with pytest.raises(cs.ScheduleError, match=r"^policy.timesteps: 1000 is outside the scheduler's range 0\.\.999$"):
        cs.compile_schedule(euler, cs.StepSet(timesteps=(1000, 10)))


def test_residual_reuse_needs_shape_preserving_blocks(pipe):
    with pytest.raises(cs.ScheduleError) as e:
        cs.compile_schedule(pipe, cs.BlockMask({"mid_block": "R.R."}), num_inference_steps=STEPS, reuse="residual")
    assert str(e.value).startswith('blocks["mid_block"]: reuse: residual needs a block whose output has its input')
    s = cs.compile_schedule(
        pipe, cs.BlockMask({"mid_block.attentions.0": "R.R."}), num_inference_steps=STEPS, reuse="residual"
    )
    assert s.reuse is cs.ReuseMode.RESIDUAL and s.masks() == {"mid_block.attentions.0": "R.R."}


def test_unknown_blocks_are_refused(pipe):
    with pytest.raises(cs.ScheduleError, match="unknown block 'up_blocks.7'"):
        cs.compile_schedule(pipe, cs.BlockMask({"up_blocks.7": "R.R."}), num_inference_steps=STEPS)


# -- names -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "steps", "name"),
    [
        (cs.DeepCache(interval=3, branch=1), 10, "deepcache-n3-b1"),
        (cs.DeepCache(interval=2, schedule="nonuniform"), 10, "deepcache-n2-b0-nonuniform"),
        (cs.Full(), 4, "full"),
        (cs.BlockMask({"mid_block": "R.R."}), 4, "blockmask"),
        (cs.PeriodicMask(blocks=(("mid_block", 2, 0, 0.0, 1.0),)), 4, "periodic"),
        (cs.StepSet(count=6), None, "steps6"),
        (cs.Joint(steps=cs.StepSet(count=6), mask=cs.DeepCache(interval=2)), None, "steps6-deepcache-n2-b0"),
        (cs.Joint(steps=cs.StepSet(count=6), mask=cs.Full()), None, "steps6-full"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_default_names_on_ddim(pipe, policy, steps, name):
    s = cs.compile_schedule(pipe, policy, num_inference_steps=steps)
    assert s.name == name
    assert default_name(policy, s.num_steps) == name


@pytest.mark.parametrize(
    ("policy", "name"),
    [
        (cs.StepSet(count=5, spacing="linear"), "steps5-linear"),
        (cs.StepSet(count=5, spacing="power", power=2.0), "steps5-power"),
        (cs.StepSet(timesteps=(900, 500, 100)), "steps3"),
        (
            cs.Joint(steps=cs.StepSet(count=4, spacing="linear"), mask=cs.DeepCache(interval=2, schedule="nonuniform")),
            "steps4-linear-deepcache-n2-b0-nonuniform",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_default_names_of_explicit_step_sets(euler, policy, name):
    assert cs.compile_schedule(euler, policy).name == name


def test_block_caching_name_and_an_explicit_name(pipe):
    profile = cs.BlockProfile(blocks=("mid_block",), changes=((0.0, 0.2, 0.2, 0.2),))
    s = cs.compile_schedule(pipe, cs.BlockCachingAuto(threshold=0.3, profile=profile), num_inference_steps=STEPS)
    assert (s.name, s.masks()) == ("blockcaching", {"mid_block": "R.R."})
    assert cs.compile_schedule(pipe, cs.Full(), num_inference_steps=STEPS, name="mine").name == "mine"


# -- what is recorded --------------------------------------------------------------------------------------
def test_records_model_sampler_policy_and_provenance(pipe):
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    policy = cs.DeepCache(interval=2)
    s = cs.compile_schedule(pipe, policy, num_inference_steps=STEPS, guidance_scale=3)
    after = dt.datetime.now(dt.timezone.utc)

    assert s.model == cs.schedule.ModelInfo(
        family="unet2d", cls="UNet2DConditionModel", fingerprint=fingerprint_module(pipe.unet), source="unknown"
    )
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", s.model.fingerprint)
    assert s.sampler == cs.schedule.SamplerInfo(
        scheduler="DDIMScheduler", num_inference_steps=STEPS, timesteps=None, guidance_scale=3.0
    )
    assert isinstance(s.sampler.guidance_scale, float)
    assert s.policy == {
        "kind": "deepcache",
        "interval": 2,
        "branch": 0,
        "schedule": "uniform",
        "center": None,
        "power": 1.4,
    }
    assert policy_from_dict(s.policy) == policy
    assert s.masks() == {
        "down_blocks.0": "R.R.",
        "down_blocks.1": "R.R.",
        "mid_block": "R.R.",
        "up_blocks.0": "R.R.",
        "up_blocks.1.resnets.0": "R.R.",
        "up_blocks.1.resnets.1": "R.R.",
        "up_blocks.1.resnets.2": "RRRR",
    }
    assert s.reuse is cs.ReuseMode.OUTPUT

    p = s.provenance
    assert p.cachesearch == __version__ == cs.__version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", p.created)
    created = dt.datetime.fromisoformat(p.created.replace("Z", "+00:00"))
    assert before <= created <= after
    assert (p.study, p.trial, p.prompts, p.git) == (None, None, None, None)


def test_source_explicit_from_the_loader_or_unknown(pipe, monkeypatch):
    assert cs.compile_schedule(pipe, cs.Full(), num_inference_steps=STEPS, source="hub:a/b").model.source == "hub:a/b"
    assert model_info(pipe).source == "unknown"
    monkeypatch.setattr(pipe, "_cachesearch_source", "embedded:shapes", raising=False)
    assert cs.compile_schedule(pipe, cs.Full(), num_inference_steps=STEPS).model.source == "embedded:shapes"
    assert model_info(pipe, "path:/x").source == "path:/x"


def test_a_bare_denoiser_records_an_unknown_scheduler(pipe):
    s = cs.compile_schedule(pipe.unet, cs.Full(), num_inference_steps=STEPS)
    assert s.sampler.scheduler == "unknown"
    assert s.model.fingerprint == fingerprint_module(pipe.unet)
    # without a scheduler nothing refuses explicit timesteps; the default training range (1000) applies
    assert cs.compile_schedule(pipe.unet, cs.StepSet(count=2, spacing="linear")).sampler.timesteps == (999, 500)


def test_a_joint_step_set_reaches_pipeline_kwargs(euler):
    joint = cs.Joint(steps=cs.StepSet(count=4, spacing="linear"), mask=cs.DeepCache(interval=2))
    s = cs.compile_schedule(euler, joint, guidance_scale=5.0)
    assert s.sampler.timesteps == (999, 749, 500, 250)
    assert s.pipeline_kwargs() == {"timesteps": [999, 749, 500, 250], "guidance_scale": 5.0}
    assert s.masks()["mid_block"] == "R.R."
    assert s.policy == joint.to_dict()
    assert cs.compile_schedule(euler, cs.Joint(steps=cs.StepSet(count=6), mask=cs.Full())).pipeline_kwargs() == {
        "num_inference_steps": 6
    }


def test_the_compiled_schedule_survives_its_file_format(euler):
    s = cs.compile_schedule(euler, cs.Joint(steps=cs.StepSet(count=4, spacing="linear"), mask=cs.DeepCache(interval=2)))
    assert parse_schedule(yaml.safe_load(s.to_yaml())) == s


# -- a new family needs only its own file --------------------------------------------------------------------
@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))


def test_a_new_policy_family_compiles_and_round_trips(pipe, registry):
    @register_policy
    @dataclass(frozen=True, kw_only=True)
    class EveryOther(MaskPolicy):
        """Recompute ``block`` at every other step."""

        kind: ClassVar[str] = "test-everyother"
        block: str

        def masks(self, space, num_steps, *, call_starts=None):
            m = "".join("R" if s % 2 == 0 else "." for s in range(num_steps))
            return {self.block: (m, m)}

        def default_name(self, num_steps):
            return f"everyother-{self.block}"

    p = EveryOther(block="mid_block")
    assert policy_from_dict(p.to_dict()) == p
    s = cs.compile_schedule(pipe, p, num_inference_steps=5)
    assert (s.name, s.masks(), s.policy) == (
        "everyother-mid_block",
        {"mid_block": "R.R.R"},
        {"kind": "test-everyother", "block": "mid_block"},
    )
    j = cs.compile_schedule(pipe, cs.Joint(steps=cs.StepSet(count=3), mask=p))
    assert (j.name, j.masks()) == ("steps3-everyother-mid_block", {"mid_block": "R.R"})
    assert parse_schedule(yaml.safe_load(j.to_yaml())) == j


def test_the_reference_run_is_recorded(pipe, tmp_path):
    s = cs.compile_schedule(pipe, cs.DeepCache(interval=3), num_inference_steps=10, guidance_scale=5.0)
    assert s.reference == cs.schedule.ReferenceRun(scheduler="DDIMScheduler", num_inference_steps=10,
                                                   guidance_scale=5.0)
    assert s.format == "cachesearch/schedule@2"
    assert cs.load_schedule(s.save(tmp_path / "s.yaml")).reference == s.reference
    j = cs.compile_schedule(pipe, cs.Joint(steps=cs.StepSet(count=4), mask=cs.Full()))
    assert j.reference is None and j.format == "cachesearch/schedule@1"  # its own step set: reference unknown
    ref = cs.schedule.ReferenceRun(scheduler="DDIMScheduler", num_inference_steps=20, guidance_scale=5.0)
    j20 = cs.compile_schedule(pipe, cs.Joint(steps=cs.StepSet(count=4), mask=cs.Full()), reference=ref)
    assert j20.reference == ref and j20.num_steps == 4


def test_explicit_timesteps_are_refused_on_a_pipeline_that_takes_none() -> None:
    from tests._tiny_dit import tiny_dit_pipeline

    pipe = tiny_dit_pipeline("flux")  # FlowMatchEuler accepts timesteps=, FluxPipeline.__call__ does not
    with pytest.raises(cs.ScheduleError, match=r"policy\.steps: FluxPipeline takes no explicit timesteps"):
        cs.compile_schedule(pipe, cs.StepSet(count=3, spacing="linear"))
    assert cs.compile_schedule(pipe, cs.StepSet(count=3)).num_steps == 3
