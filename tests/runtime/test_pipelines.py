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
from cachesearch.runtime import steps_of_calls
from tests._tiny import tiny_sd_pipeline

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


# -- ControlNet ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def controlnet_pipe(base):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    torch.manual_seed(0)
    controlnet = ControlNetModel.from_unet(base.unet, conditioning_embedding_out_channels=(16, 32))
    with torch.no_grad():  # from_unet zero-initialises the residual convs: give them weight so control matters
        for name, p in controlnet.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding")):
                p.copy_(torch.randn_like(p) * 0.3)
    comps = {k: v for k, v in base.components.items() if k != "image_encoder"}
    pipe = StableDiffusionControlNetPipeline(**comps, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _control(pipe, control, steps=8):
    return pipe("a red circle on a blue background", image=control, num_inference_steps=steps, height=32,
                width=32, guidance_scale=5.0, generator=torch.Generator().manual_seed(0), output_type="pt").images


def test_controlnet_all_r_is_exact_and_cached_runs_keep_the_residuals_live(controlnet_pipe):
    pipe = controlnet_pipe
    a, b = _image(1), _image(2)
    vanilla = _control(pipe, a)
    with cs.compile_schedule(pipe, cs.Full(), num_inference_steps=8).applied(pipe):
        assert torch.equal(_control(pipe, a), vanilla)
    sched = cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=0), num_inference_steps=8)
    with sched.applied(pipe):
        cached_a = _control(pipe, a)
        cached_b = _control(pipe, b)
    assert not torch.equal(cached_a, vanilla)  # the schedule really cached
    # a different control image still changes the cached output, by about as much as without caching
    diff_cached = (cached_a - cached_b).abs().mean().item()
    diff_vanilla = (vanilla - _control(pipe, b)).abs().mean().item()
    print(f"control-image effect: cached {diff_cached:.6f}, vanilla {diff_vanilla:.6f}")
    assert diff_cached > 0.25 * diff_vanilla > 0
    assert all("forward" not in m.__dict__ for m in pipe.unet.modules())


def test_sdxl_controlnet_all_r_is_exact_and_cached_runs_follow_the_control_image():
    from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline

    from tests._tiny import tiny_sdxl_pipeline

    base = tiny_sdxl_pipeline(seed=0)
    torch.manual_seed(0)
    controlnet = ControlNetModel.from_unet(base.unet, conditioning_embedding_out_channels=(16, 32))
    with torch.no_grad():
        for name, p in controlnet.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding")):
                p.copy_(torch.randn_like(p) * 0.3)
    comps = {k: v for k, v in base.components.items() if k in (
        "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "scheduler")}
    pipe = StableDiffusionXLControlNetPipeline(**comps, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    size = 8 * pipe.vae_scale_factor

    def run(control):
        return pipe("a red circle", image=control, num_inference_steps=6, height=size, width=size, guidance_scale=5.0,
                    generator=torch.Generator().manual_seed(0), output_type="pt").images

    a = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    b = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(2))
    vanilla_a, vanilla_b = run(a), run(b)
    with cs.compile_schedule(pipe, cs.Full(), num_inference_steps=6).applied(pipe):
        assert torch.equal(run(a), vanilla_a)
    with cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=0), num_inference_steps=6).applied(pipe):
        cached_a, cached_b = run(a), run(b)
    assert not torch.equal(cached_a, vanilla_a)
    effect, vanilla_effect = (cached_a - cached_b).abs().mean().item(), (vanilla_a - vanilla_b).abs().mean().item()
    assert effect > 0.25 * vanilla_effect > 0
