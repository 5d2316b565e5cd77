"""Runtime schedules on pipelines that run CFG as separate denoiser passes per step, each inside its own
``cache_context`` ("cond" / "uncond"): FLUX's true CFG (``true_cfg_scale > 1``) and the tiny random-weight Wan
(issue 26's video family, ``arch:wan2.1-tiny``). Each library keeps one state per pass; the schedule's output equals
enabling that library's cache by hand, bit for bit, the second image equals the first (each starts cold), and after
removal the pipeline computes vanilla with every module as it was."""

from __future__ import annotations

import pytest
import torch
from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig

import cachesearch as cs
from tests._tiny_dit import pipeline_kwargs, tiny_dit_pipeline
from tests.runtime.test_runtime_caches import HAS_CACHE_DIT, STEPS, _diffusers_configs, _pipeline_by_hand, _state


@pytest.mark.parametrize("method", ["fbcache", "magcache", "dbcache"])
def test_runtime_caches_on_a_pipeline_with_separate_cfg_passes(method):
    """FLUX's true CFG (``true_cfg_scale > 1``): the uncond pass is a second denoiser call per step inside
    ``cache_context("uncond")``; each library keeps its own state per pass, exactly as when enabled by hand."""
    if method == "dbcache" and not HAS_CACHE_DIT:
        pytest.skip("cache-dit is not installed")
    pipe = tiny_dit_pipeline("flux", seed=6)
    calls = []
    pipe.transformer.register_forward_pre_hook(lambda *a: calls.append(1))
    kw = {**pipeline_kwargs("flux"), "num_inference_steps": STEPS, "true_cfg_scale": 2.0,
          "negative_prompt": ["a blurry picture"]}

    def run():
        return pipe(prompt=["a red circle"], generator=torch.Generator().manual_seed(2), **kw).images

    def make():
        if method == "fbcache":
            return FirstBlockCacheConfig(threshold=0.3)
        if method == "magcache":
            return _diffusers_configs(pipe)["magcache"]()
        import cache_dit

        return cache_dit.DBCacheConfig(Fn_compute_blocks=1, residual_diff_threshold=0.4, max_warmup_steps=1,
                                       num_inference_steps=STEPS, enable_separate_cfg=True)

    vanilla = run()
    assert len(calls) == 2 * STEPS  # two passes per step
    policy = cs.CacheDiT(cache_config=make()) if method == "dbcache" else cs.DiffusersCache(make())
    sched = cs.compile_schedule(pipe, policy, num_inference_steps=STEPS)
    with sched.applied(pipe):
        ours, again = run(), run()
    assert torch.equal(run(), vanilla)
    by_hand = _pipeline_by_hand(pipe, make(), run, cache_dit=method == "dbcache")
    assert torch.equal(ours, by_hand) and torch.equal(ours, again) and not torch.equal(ours, vanilla)


@pytest.mark.parametrize("method", ["seacache", "fbcache", "magcache", "dbcache"])
def test_runtime_caches_on_wan_with_two_passes_per_step(method):
    """Wan (issue 26's video family): CFG as a cond and an uncond pass per step; SeaCache has its built-in adapter
    here (the pipeline passes the step, sigma and step count in its cache_context); cache-dit's registry lists
    WanPipeline, so its DBCache is enabled on the pipeline itself with a separate CFG pass. Bit for bit against
    enabling each by hand, and after removal vanilla with every module as it was."""
    if method == "dbcache" and not HAS_CACHE_DIT:
        pytest.skip("cache-dit is not installed")
    from diffusers.hooks import SeaCacheConfig

    from cachesearch.models._presets_wan import tiny_wan_pipeline

    pipe = tiny_wan_pipeline("wan2.1-tiny", seed=1)

    def run():
        return pipe(prompt=["a red ball"], negative_prompt=["blur"], num_inference_steps=STEPS, height=16, width=16,
                    num_frames=9, guidance_scale=5.0, generator=torch.Generator().manual_seed(0),
                    output_type="latent").frames

    def make():
        if method == "seacache":
            return SeaCacheConfig(threshold=1.0, retention_steps=1, cache_end_steps=1)
        if method == "fbcache":
            return FirstBlockCacheConfig(threshold=0.5)
        if method == "magcache":
            return MagCacheConfig(threshold=0.5, max_skip_steps=2, retention_ratio=0.2,
                                  mag_ratios=[1.0, 1.0, 0.99, 0.98, 0.97, 0.95], num_inference_steps=STEPS)
        import cache_dit

        return cache_dit.DBCacheConfig(Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=1.0,
                                       max_warmup_steps=1, num_inference_steps=STEPS, enable_separate_cfg=True)

    vanilla, before = run(), _state(pipe.transformer, keys=method == "dbcache")
    policy = cs.CacheDiT(cache_config=make()) if method == "dbcache" else cs.DiffusersCache(make())
    sched = cs.compile_schedule(pipe, policy, num_inference_steps=STEPS)
    with sched.applied(pipe):
        ours, again = run(), run()
    assert torch.equal(run(), vanilla) and _state(pipe.transformer, keys=method == "dbcache") == before
    by_hand = _pipeline_by_hand(pipe, make(), run, cache_dit=method == "dbcache")
    assert torch.equal(ours, by_hand) and torch.equal(ours, again) and not torch.equal(ours, vanilla)
