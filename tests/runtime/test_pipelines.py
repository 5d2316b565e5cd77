"""Schedules on the pipelines production serves: img2img / inpaint tails, ControlNet, SDXL, LoRA, offload."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
)

import cachesearch as cs
from cachesearch.models._tiny import tiny_sd_pipeline
from cachesearch.runtime import steps_of_calls

SCHEDULERS = {"ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler,
              "heun": HeunDiscreteScheduler}


@pytest.fixture(scope="module")
def base():
    p = tiny_sd_pipeline(seed=0, blocks=3)
    p.set_progress_bar_config(disable=True)
    return p


def _image(seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


class _Counter:
    """Counts real executions of one block per denoiser call (installed before the schedule)."""

    def __init__(self, unet: torch.nn.Module, name: str) -> None:
        self.call = -1
        self.runs: dict[int, int] = defaultdict(int)
        self.hook = unet.register_forward_pre_hook(self._tick)
        self.module = unet.get_submodule(name)
        self.original = self.module.forward

        def counting(*a, **k):
            self.runs[self.call] += 1
            return self.original(*a, **k)

        self.module.forward = counting

    def _tick(self, *_):
        self.call += 1

    def close(self) -> None:
        self.hook.remove()
        self.module.__dict__.pop("forward", None)


def _run(pipe, steps, strength, **kw):
    kw.setdefault("image", _image())
    return pipe("a red circle on a blue background", image=kw.pop("image"), strength=strength,
                num_inference_steps=steps, guidance_scale=1.0, generator=torch.Generator().manual_seed(0),
                output_type="pt", **kw).images


@pytest.mark.parametrize("kind", list(SCHEDULERS))
def test_img2img_uses_the_tail_rows_and_recomputes_everything_on_the_first_run_step(base, kind):
    pipe = StableDiffusionImg2ImgPipeline(**base.components)
    pipe.scheduler = SCHEDULERS[kind].from_config(base.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    steps, strength = 12, 0.5
    mask = "R..R...R.R.."  # row 6, the first one run at strength 0.5, is a reuse row: it must recompute
    sched = cs.compile_schedule(pipe, cs.BlockMask({"mid_block": mask}), num_inference_steps=steps)
    vanilla = _run(pipe, steps, strength)
    with cs.compile_schedule(pipe, cs.Full(), num_inference_steps=steps).applied(pipe):
        assert torch.equal(_run(pipe, steps, strength), vanilla)  # all-R img2img is exact
    counter = _Counter(pipe.unet, "mid_block")
    try:
        with sched.applied(pipe):
            _run(pipe, steps, strength)
    finally:
        counter.close()
    probe = SCHEDULERS[kind].from_config(base.scheduler.config)
    probe.set_timesteps(steps)
    rows = steps_of_calls(probe, steps, len(probe.timesteps))
    n_run = counter.call + 1
    tail = rows[len(rows) - n_run:]
    first = tail[0]
    assert first == steps // 2  # strength 0.5 of 12 steps: the last 6 rows run
    expected = [1 if (r == first or mask[r] == "R") else 0 for r in tail]
    assert [counter.runs[c] for c in range(n_run)] == expected


def test_inpaint_uses_the_tail_rows(base):
    pipe = StableDiffusionInpaintPipeline(**base.components)
    pipe.set_progress_bar_config(disable=True)
    steps = 10
    mask = "R.R..R..R."
    sched = cs.compile_schedule(pipe, cs.BlockMask({"mid_block": mask}), num_inference_steps=steps)
    counter = _Counter(pipe.unet, "mid_block")
    try:
        with sched.applied(pipe):
            _run(pipe, steps, 0.3, mask_image=torch.ones(1, 1, 32, 32))
    finally:
        counter.close()
    n_run = counter.call + 1
    assert n_run == 3
    assert [counter.runs[c] for c in range(n_run)] == [1, 1, 0]  # rows 7 (forced R), 8 (R), 9 (.)
