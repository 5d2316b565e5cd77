"""Video evaluation: per-frame scores averaged over frames, the temporal error, and the evaluator on a tiny Wan
text-to-video pipeline (clips as references, latent frames in the latents and the MACs, CFG passes in the cost)."""

from __future__ import annotations

import math

import pytest
import torch

import cachesearch as cs
from cachesearch.evaluate import EvalConfig, Evaluator
from cachesearch.evaluate._config import EvalConfigError
from cachesearch.evaluate._result import EvalResult
from cachesearch.evaluate._video import temporal_error, video_scores
from cachesearch.models import block_space
from cachesearch.models._loaders import load_model


def _clips(n=2, f=5, size=12, seed=0):
    return torch.rand(n, f, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _mean_abs(a, b):  # a stand-in perceptual metric: one distance per image
    return (a - b).abs().flatten(1).mean(dim=1)


def test_temporal_error_sees_flicker_not_a_constant_offset():
    ref = _clips()
    assert torch.equal(temporal_error(ref, ref), torch.zeros(2, dtype=torch.float64))
    shifted = ref + 0.1  # off by the same amount in every frame: the same motion
    assert temporal_error(shifted, ref).abs().max() < 1e-6  # float32 rounding of the offset
    d = 0.05
    flicker = ref + torch.tensor([0.0, d, 0.0, d, 0.0]).view(1, 5, 1, 1, 1)  # every other frame off by d
    # each frame-to-frame change is off by +-d: RMS d, whereas the frames themselves are off by d on 2 of 5
    torch.testing.assert_close(temporal_error(flicker, ref), torch.full((2,), d, dtype=torch.float64))
    one = ref[:, :1]
    assert torch.equal(temporal_error(one + 1, one), torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="video batches"):
        temporal_error(ref[:, 0], ref[:, 0])


def test_video_scores_average_each_frame_then_the_clips():
    ref = _clips(size=16)
    cand = ref.clone()
    cand[0, 2] = 1 - cand[0, 2]  # one broken frame in the first clip
    scores = video_scores(_mean_abs, cand, ref)
    per_frame = _mean_abs(cand.flatten(0, 1), ref.flatten(0, 1)).view(2, 5).double()
    assert scores["losses"] == pytest.approx(per_frame.mean(dim=1).tolist())
    assert scores["losses"][1] == 0.0 and scores["quality"] == pytest.approx(per_frame.mean().item())
    assert scores["psnr"] == math.inf  # identical frames have infinite PSNR, as identical images do
    assert 0 < scores["ssim"] < 1 and scores["temporal"] > 0
    same = video_scores(_mean_abs, ref, ref)
    assert same["quality"] == 0.0 and same["temporal"] == 0.0 and same["ssim"] == pytest.approx(1.0)
    small = video_scores(_mean_abs, _clips(size=8), _clips(size=8, seed=1))
    assert small["ssim"] is None and math.isfinite(small["psnr"])


def test_merged_ranges_average_the_temporal_error():
    common = dict(schedule="s", split="train", valid=True, reason=None, metric="m", psnr=30.0, ssim=None,
                  accuracy=None, cost_ratio=0.5, latency_ms=None, baseline_ms=None, speedup=None,
                  latency_spread=None, seconds=1.0)
    a = EvalResult(quality=0.1, n_images=1, images=[0, 1], losses=(0.1,), temporal=0.02, **common)
    b = EvalResult(quality=0.3, n_images=3, images=[1, 4], losses=(0.3, 0.3, 0.3), temporal=0.06, **common)
    assert EvalResult.merge([a, b], total=4).temporal == pytest.approx((0.02 + 3 * 0.06) / 4)


@pytest.fixture(scope="module")
def wan(tmp_path_factory):
    loaded = load_model("arch:wan2.1-tiny")
    config = EvalConfig(model="arch:wan2.1-tiny", n_train=2, n_heldout=1, num_inference_steps=4,
                        cache_dir=str(tmp_path_factory.mktemp("cache")))
    return Evaluator(config, model=loaded)


def test_the_evaluator_scores_clips_against_full_compute(wan):
    assert (wan.height, wan.width, wan.sampler.num_frames) == (16, 16, 9)  # the preset's defaults
    assert wan.latents("train").shape == (2, 16, 3, 2, 2)  # 9 frames -> 3 latent frames of 2 x 2
    assert wan.reference("train").shape == (2, 9, 3, 16, 16)
    assert wan.cfg  # guidance 5: the uncond pass runs every step, its mask counts in the cost
    full = wan.evaluate(cs.compile_schedule(wan.pipe, cs.Full(), num_inference_steps=4))
    assert full.valid and full.quality == 0.0 and full.temporal == 0.0 and full.cost_ratio == pytest.approx(1.0)
    taylor = wan.evaluate(cs.compile_schedule(wan.pipe, cs.TaylorSeer(interval=2, warmup=1), num_inference_steps=4))
    assert taylor.valid, taylor.reason
    assert taylor.quality > 0 and taylor.temporal > 0 and taylor.cost_ratio < 1 and len(taylor.losses) == 2
    uncond_only = cs.compile_schedule(wan.pipe, cs.BlockMask({"blocks.2": {"cond": "RRRR", "uncond": "R..."}}),
                                      num_inference_steps=4)
    stages = [b for b in wan.space.blocks if b.kind is cs.schedule.BlockKind.STAGE]
    block = wan.space.get("blocks.2").macs / (wan.space.other_macs + sum(b.macs for b in stages))
    assert wan.cost_ratio(uncond_only) == pytest.approx(1 - block * 3 / 4 / 2)  # half of the calls skip it 3 times


def test_macs_count_every_latent_frame(wan):
    one = block_space(wan.denoiser, with_costs=True, latent_size=(2, 2), frames=1)
    three = block_space(wan.denoiser, with_costs=True, latent_size=(2, 2), frames=3)
    assert wan.space.get("blocks.0").macs == three.get("blocks.0").macs > one.get("blocks.0").macs  # the run's
    assert three.get("blocks.0.ffn").macs == 3 * one.get("blocks.0.ffn").macs  # per token: linear in frames


def test_frames_on_an_image_model_are_refused(tmp_path):
    from cachesearch.models._loaders import LoadedModel
    from tests._tiny_dit import tiny_dit_pipeline

    pipe = tiny_dit_pipeline("sd3")
    model = LoadedModel(pipe=pipe, denoiser=pipe.transformer, source="path:/tiny", family="sd3", random_weights=True)
    with pytest.raises(EvalConfigError, match="^EvalConfig.num_frames: StableDiffusion3Pipeline renders images"):
        Evaluator(EvalConfig(model="path:/tiny", num_frames=9, height=16, width=16, cache_dir=str(tmp_path)),
                  model=model)
    with pytest.raises(EvalConfigError, match="^EvalConfig.num_frames: expected a number of frames"):
        EvalConfig(num_frames=0)
