"""Schedules on tiny FLUX / SD3 / PixArt transformers, against diffusers' own hooks as oracles.

* all-R schedules are bit-identical (pipelines and bare transformers);
* a mask that recomputes every attention module at even steps equals diffusers' Pyramid Attention Broadcast
  (``spatial_attention_block_skip_range=2`` over all timesteps);
* ``TaylorSeer(interval, warmup, order)`` equals diffusers' ``TaylorSeerCacheConfig`` on the same modules
  (attention components; whole multi-output blocks too);
* skipped components really do not run; residual reuse adds both streams' stored residuals; MiddleCache's
  reused middle adds the residual the middle last computed (DBCache's rule); BlockCachingAuto at both
  granularities.

Tolerance: max |diff| <= 1e-5 in float32 (the hooks do the same arithmetic, so it is 0 in practice).
"""

from __future__ import annotations

import re

import pytest
import torch
from diffusers.hooks import (
    PyramidAttentionBroadcastConfig,
    TaylorSeerCacheConfig,
    apply_pyramid_attention_broadcast,
    apply_taylorseer_cache,
)

import cachesearch as cs
from cachesearch.models import block_space
from cachesearch.schedule import BlockKind, BlockProfile
from tests._tiny_dit import (
    FAMILIES,
    diffusers_hook,
    flow_loop,
    pipeline_kwargs,
    tiny_dit_pipeline,
    tiny_transformer,
    watch_linear,
)

STEPS = 8
TOL = 1e-5
PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def pipes():
    return {f: tiny_dit_pipeline(f, seed=1) for f in FAMILIES}


def generate(pipe, family, steps=STEPS, **kw):
    g = torch.Generator().manual_seed(0)
    kw = {**pipeline_kwargs(family), **kw}
    if family != "flux":
        kw.setdefault("guidance_scale", 4.0)  # a CFG batch [uncond; cond]
    return pipe(PROMPT, num_inference_steps=steps, generator=g, **kw).images


def _unhooked(model) -> bool:
    return all("forward" not in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("family", FAMILIES)
def test_all_recompute_is_bit_identical_on_pipelines_and_bare_transformers(pipes, family):
    pipe = pipes[family]
    base = generate(pipe, family)
    space = block_space(pipe.transformer)
    every = {n: "R" * STEPS for n in space.names(BlockKind.COMPONENT)}
    for policy in (cs.Full(), cs.BlockMask(every), cs.TaylorSeer(interval=1, warmup=0)):
        sched = cs.compile_schedule(pipe, policy, num_inference_steps=STEPS)
        with sched.applied(pipe):
            assert torch.equal(generate(pipe, family), base)
        assert _unhooked(pipe.transformer)
    model = pipe.transformer
    bare = flow_loop(model, family, STEPS)
    with cs.compile_schedule(model, cs.Full(), num_inference_steps=STEPS).applied(model):
        assert torch.equal(flow_loop(model, family, STEPS), bare)


def _pab(family):
    kw = {"spatial_attention_block_skip_range": 2, "spatial_attention_timestep_skip_range": (-1, 10**9),
          "current_timestep_callback": lambda: 500}
    if family == "pixart":  # PixArt's attn2 is cross-attention: PAB's cross range covers it
        kw.update(cross_attention_block_skip_range=2, cross_attention_timestep_skip_range=(-1, 10**9))
    return PyramidAttentionBroadcastConfig(**kw)


@pytest.mark.parametrize("family", FAMILIES)
def test_even_step_attention_masks_equal_pyramid_attention_broadcast(pipes, family, record_property):
    pipe = pipes[family]
    base = generate(pipe, family)
    attention = block_space(pipe.transformer).attention_components()
    even = "".join("R" if s % 2 == 0 else "." for s in range(STEPS))
    sched = cs.compile_schedule(pipe, cs.BlockMask(dict.fromkeys(attention, even)), num_inference_steps=STEPS)
    with sched.applied(pipe):
        ours = generate(pipe, family)
    with diffusers_hook(pipe.transformer, apply_pyramid_attention_broadcast, _pab(family),
                         "pyramid_attention_broadcast"):
        theirs = generate(pipe, family)
    diff = (ours - theirs).abs().max().item()
    record_property("max_abs_diff", diff)
    assert diff <= TOL
    assert (ours - base).abs().max().item() > 1e-4  # the cache did change the output


TAYLOR_SETTINGS = [(2, 3, 1), (3, 3, 2), (2, 2, 2)]  # (interval, warmup, order)


@pytest.mark.parametrize(("interval", "warmup", "order"), TAYLOR_SETTINGS)
def test_taylorseer_equals_diffusers_on_the_flux_pipeline(pipes, interval, warmup, order, record_property):
    """FLUX: diffusers' default identifiers select every ``attn`` of the double and single blocks, which is what
    ``blocks=None`` (the adapter's attention components) means; the pipeline sets the cache context."""
    pipe = pipes["flux"]
    sched = cs.compile_schedule(pipe, cs.TaylorSeer(interval=interval, warmup=warmup, order=order),
                                num_inference_steps=STEPS)
    assert [b.block for b in sched.blocks] == [n for n, m in pipe.transformer.named_modules()
                                               if re.fullmatch(r"^(single_)?transformer_blocks.*attn", n)]
    with sched.applied(pipe):
        ours = generate(pipe, "flux")
    pipe.transformer.enable_cache(TaylorSeerCacheConfig(cache_interval=interval, disable_cache_before_step=warmup,
                                                        max_order=order, taylor_factors_dtype=torch.float32))
    try:
        theirs = generate(pipe, "flux")
    finally:
        pipe.transformer.disable_cache()
    diff = (ours - theirs).abs().max().item()
    record_property("max_abs_diff", diff)
    assert diff <= TOL
    assert not torch.equal(ours, generate(pipe, "flux"))


def _taylor_pair(model, family, names, interval, warmup, order):
    sched = cs.compile_schedule(model, cs.TaylorSeer(interval=interval, warmup=warmup, order=order, blocks=names),
                                num_inference_steps=STEPS)
    with sched.applied(model):
        ours = flow_loop(model, family, STEPS)
    config = TaylorSeerCacheConfig(cache_interval=interval, disable_cache_before_step=warmup, max_order=order,
                                   taylor_factors_dtype=torch.float32, cache_identifiers=[re.escape(n) for n in names])
    with diffusers_hook(model, apply_taylorseer_cache, config, "taylorseer_cache"):
        theirs = flow_loop(model, family, STEPS, context=True)
    return ours, theirs


@pytest.mark.parametrize("family", ["sd3", "pixart"])
@pytest.mark.parametrize(("interval", "warmup", "order"), TAYLOR_SETTINGS[:2])
def test_taylorseer_equals_diffusers_on_bare_transformers(family, interval, warmup, order, record_property):
    """Once per step, hand-written flow-matching loop; diffusers' hook told the same modules (its default
    identifiers miss SD3's attn2 and PixArt's attn1/attn2)."""
    model = tiny_transformer(family, seed=2)
    names = list(block_space(model).attention_components())
    ours, theirs = _taylor_pair(model, family, names, interval, warmup, order)
    diff = (ours - theirs).abs().max().item()
    record_property("max_abs_diff", diff)
    assert diff <= TOL and not torch.equal(ours, flow_loop(model, family, STEPS))


@pytest.mark.parametrize("order", [1, 2])
def test_taylor_on_multi_output_blocks_equals_diffusers(order, record_property):
    """Whole FLUX blocks (double and single, both returning ``(encoder_hidden_states, hidden_states)``): every
    tensor of the output is forecast, as diffusers' hook does for tuple outputs."""
    model = tiny_transformer("flux", seed=3)
    names = list(block_space(model).names(BlockKind.STAGE))
    ours, theirs = _taylor_pair(model, "flux", names, 3, 2, order)
    diff = (ours - theirs).abs().max().item()
    record_property("max_abs_diff", diff)
    assert diff <= TOL


def test_taylor_on_sd3_blocks_whose_text_output_is_none():
    model = tiny_transformer("sd3", seed=3)
    sched = cs.compile_schedule(model, cs.TaylorSeer(interval=2, warmup=2, order=2,
                                                     blocks=["transformer_blocks.0", "transformer_blocks.1"]),
                                num_inference_steps=STEPS)
    with sched.applied(model):
        out = flow_loop(model, "sd3", STEPS)
    assert torch.isfinite(out).all() and not torch.equal(out, flow_loop(model, "sd3", STEPS))


@pytest.mark.parametrize("family", FAMILIES)
def test_skipped_components_really_do_not_run(pipes, family, monkeypatch):
    pipe = pipes[family]
    comps = block_space(pipe.transformer).names(BlockKind.COMPONENT)
    masks = {c: ("R..R.R.." if i % 2 else "R.R.R.R.") for i, c in enumerate(comps)}
    runs = dict.fromkeys(comps, 0)

    def ran(name):
        runs[name] += 1

    watching = watch_linear({c: pipe.transformer.get_submodule(c) for c in comps}, ran)
    sched = cs.compile_schedule(pipe, cs.BlockMask(masks), num_inference_steps=STEPS)
    with sched.applied(pipe):
        monkeypatch.setattr(torch.nn.functional, "linear", watching)
        generate(pipe, family)
        monkeypatch.undo()
    assert runs == {c: masks[c].count("R") for c in comps}


def _capture(model, names):
    """Per call of each named block: (hidden input, text input, output), recorded around the cache wrapper."""
    calls = {n: [] for n in names}

    def hook(n):
        def record(module, args, kwargs, out):
            calls[n].append((kwargs.get("hidden_states", args[0] if args else None),
                             kwargs.get("encoder_hidden_states"), out))
        return record

    handles = [model.get_submodule(n).register_forward_hook(hook(n), with_kwargs=True) for n in names]
    return calls, handles


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_residual_reuse_adds_both_streams_residuals(family):
    model = tiny_transformer(family, seed=4)
    blocks = list(block_space(model).names(BlockKind.STAGE))
    mask = "RR.R..R."
    sched = cs.compile_schedule(model, cs.BlockMask(dict.fromkeys(blocks, mask)), num_inference_steps=STEPS,
                                reuse="residual")
    calls, handles = _capture(model, blocks)
    try:
        with sched.applied(model):
            flow_loop(model, family, STEPS)
    finally:
        for h in handles:
            h.remove()
    for name in blocks:
        stored = None
        for s, (x, xe, (enc, hid)) in enumerate(calls[name]):
            if mask[s] == "R":
                stored = (hid - x, None if enc is None else enc - xe)
                continue
            torch.testing.assert_close(hid, x + stored[0], rtol=0, atol=TOL)
            if stored[1] is None:  # SD3's last block has no text output
                assert enc is None
            else:
                torch.testing.assert_close(enc, xe + stored[1], rtol=0, atol=TOL)


def test_middle_cache_reuses_the_middle_s_last_residual_as_dbcache_does():
    """Front 1 and back 1 FLUX blocks run every step; the two middle blocks (the last double and the first
    single block) recompute every 3 steps; on the other steps the middle adds to its fresh input what it added
    at its last recompute, on both streams (DBCache's Fn/Bn with a static decision)."""
    model = tiny_transformer("flux", seed=5)
    policy = cs.MiddleCache(interval=3, front=1, back=1)
    sched = cs.compile_schedule(model, policy, num_inference_steps=STEPS)
    assert sched.reuse is cs.ReuseMode.RESIDUAL and sched.format == "cachesearch/schedule@3"
    first, last = "transformer_blocks.1", "single_transformer_blocks.0"
    assert [b.block for b in sched.blocks] == [first, last] and sched.masks()[first] == "R..R..R."
    calls, handles = _capture(model, [first, last])
    try:
        with sched.applied(model):
            cached = flow_loop(model, "flux", STEPS)
    finally:
        for h in handles:
            h.remove()
    for s in range(STEPS):
        x, xe, _ = calls[first][s]
        enc, hid = calls[last][s][2]
        if s % 3 == 0:
            residual = (hid - x, enc - xe)
        else:
            torch.testing.assert_close(hid, x + residual[0], rtol=0, atol=TOL)
            torch.testing.assert_close(enc, xe + residual[1], rtol=0, atol=TOL)
    assert not torch.equal(cached, flow_loop(model, "flux", STEPS))


@pytest.mark.parametrize("granularity", [BlockKind.STAGE, BlockKind.COMPONENT])
def test_block_caching_auto_at_block_and_component_granularity(pipes, granularity):
    pipe = pipes["pixart"]
    space = block_space(pipe.transformer)
    names = space.names(granularity)
    rates = [0.05 + 0.15 * i / (len(names) - 1) for i in range(len(names))]  # later blocks change faster
    profile = BlockProfile(blocks=names, changes=tuple((0.0,) + (r,) * (STEPS - 1) for r in rates))
    sched = cs.compile_schedule(pipe, cs.BlockCachingAuto(threshold=0.12, profile=profile), num_inference_steps=STEPS,
                                guidance_scale=4.0)
    masks = sched.masks()
    assert list(masks) == list(names)
    assert masks[names[0]] == "R..R..R."  # 0.05 per step: recompute once 0.15 > 0.12
    assert masks[names[-1]] == "R" * STEPS
    with sched.applied(pipe):
        out = generate(pipe, "pixart")
    assert torch.isfinite(out).all()
    if granularity is BlockKind.COMPONENT:
        only = cs.compile_schedule(pipe, cs.BlockCachingAuto(threshold=0.12, profile=profile, blocks="components"),
                                   num_inference_steps=STEPS)
        assert only.masks() == masks


@pytest.mark.parametrize("reuse", ["output", "residual"])
def test_per_branch_masks_on_cfg_transformers(pipes, reuse):
    """SD3 batches [uncond; cond]: a block recomputing for one branch runs on that half only (both streams)."""
    pipe = pipes["sd3"]
    masks = {"transformer_blocks.0": {"cond": "RR.R..R.", "uncond": "R..R..R."},
             "transformer_blocks.1.ff": {"cond": "R.R.R.R.", "uncond": "RRR.RRR."}}
    sched = cs.compile_schedule(pipe, cs.BlockMask(masks), num_inference_steps=STEPS, reuse=reuse)
    assert sched.per_branch
    with sched.applied(pipe):
        out = generate(pipe, "sd3")
    assert torch.isfinite(out).all() and not torch.equal(out, generate(pipe, "sd3"))
