"""Pipelines that call the denoiser once per CFG pass (FLUX with ``true_cfg_scale > 1``; Wan, HunyuanVideo and
Qwen-Image do the same): each ``cache_context`` branch keeps its own step counter and stored outputs.

Oracles: diffusers' TaylorSeer keeps one state per context too, so the same settings must give the same output; a
per-branch schedule on the two passes must equal each branch's mask applied alone to a copy of the transformer that
only ever sees that branch. (diffusers' Pyramid Attention Broadcast keeps a single state across contexts, so under
two passes per step it hands the cond pass's attention to the uncond pass: no oracle there.)
"""

from __future__ import annotations

import copy
import re

import pytest
import torch
from diffusers.hooks import TaylorSeerCacheConfig

import cachesearch as cs
from cachesearch.models import block_space
from cachesearch.schedule import BlockKind
from tests._tiny_dit import dit_inputs, pipeline_kwargs, tiny_dit_pipeline, tiny_transformer, watch_linear

STEPS = 6
TOL = 1e-5
PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def flux():
    return tiny_dit_pipeline("flux", seed=1)


def generate(pipe, true_cfg=2.5, steps=STEPS):
    kw = {**pipeline_kwargs("flux"), "num_inference_steps": steps, "generator": torch.Generator().manual_seed(0)}
    if true_cfg is not None:
        kw.update(negative_prompt="a blue square", true_cfg_scale=true_cfg)
    return pipe(PROMPT, **kw).images


class Contexts:
    """Record the cache context of every call (a patch under the schedule's own, removed on close)."""

    def __init__(self, model):
        self.model, self.current, self.calls = model, None, []
        original = model.cache_context

        def cache_context(name, *a, **k):
            self.current = name
            return original(name, *a, **k)

        model.cache_context = cache_context
        self.pre = model.register_forward_pre_hook(lambda m, a: self.calls.append(self.current))

    def close(self):
        self.pre.remove()
        del self.model.cache_context


def test_two_passes_per_step_all_r_is_exact_and_counted_per_branch(flux):
    base = generate(flux)
    rec = Contexts(flux.transformer)
    try:
        for policy in (cs.Full(), cs.TaylorSeer(interval=1, warmup=0)):
            with cs.compile_schedule(flux, policy, num_inference_steps=STEPS).applied(flux):
                assert torch.equal(generate(flux), base)
                assert torch.equal(generate(flux), base)  # a second call starts both branches over
    finally:
        rec.close()
    assert rec.calls[: 2 * STEPS] == ["cond", "uncond"] * STEPS  # what the pipeline does: two calls per step
    assert "cache_context" not in flux.transformer.__dict__ and "forward" not in flux.transformer.__dict__


@pytest.mark.parametrize(("interval", "warmup", "order"), [(2, 2, 1), (3, 2, 2)])
def test_taylorseer_equals_diffusers_with_a_state_per_cfg_pass(flux, interval, warmup, order, record_property):
    sched = cs.compile_schedule(flux, cs.TaylorSeer(interval=interval, warmup=warmup, order=order),
                                num_inference_steps=STEPS)
    with sched.applied(flux):
        ours = generate(flux)
    flux.transformer.enable_cache(TaylorSeerCacheConfig(cache_interval=interval, disable_cache_before_step=warmup,
                                                        max_order=order, taylor_factors_dtype=torch.float32))
    try:
        theirs = generate(flux)
    finally:
        flux.transformer.disable_cache()
    diff = (ours - theirs).abs().max().item()
    record_property("max_abs_diff", diff)
    assert diff <= TOL
    assert (ours - generate(flux)).abs().max().item() > 1e-4  # the cache did change the output


def test_per_branch_masks_run_each_pass_by_its_own_mask(flux, monkeypatch):
    """A leaf Linear inside each listed block runs in the cond pass exactly at the cond mask's R steps and in the
    uncond pass at the uncond mask's."""
    masks = {"transformer_blocks.0": {"cond": "R.R.R.", "uncond": "R....R"},
             "single_transformer_blocks.1.attn": {"cond": "RR..RR", "uncond": "R.R.R."},
             "transformer_blocks.1.ff": "R..R.."}
    sched = cs.compile_schedule(flux, cs.BlockMask(masks), num_inference_steps=STEPS)
    assert sched.per_branch
    names = list(masks)
    rec = Contexts(flux.transformer)
    runs = {(n, b): [] for n in names for b in ("cond", "uncond")}

    def ran(name):
        runs[name, rec.current].append((len(rec.calls) - 1) // 2)  # the step of this call

    watching = watch_linear({n: flux.transformer.get_submodule(n) for n in names}, ran)

    try:
        with sched.applied(flux):
            monkeypatch.setattr(torch.nn.functional, "linear", watching)
            out = generate(flux)
            monkeypatch.undo()
    finally:
        rec.close()
    assert torch.isfinite(out).all()
    for name in names:
        for branch in ("cond", "uncond"):
            mask = sched.masks(branch)[name]
            assert runs[name, branch] == [s for s, ch in enumerate(mask) if ch == "R"], (name, branch)


def _two_pass_loop(model, steps, *, contexts=True, alone=None):
    """Flow-matching Euler with true CFG: a cond and an uncond call per step (each inside its cache context), or,
    with ``alone=(cond_model, uncond_model)``, each pass on a model of its own without contexts."""
    cond = dit_inputs("flux", seed=0)
    uncond = dit_inputs("flux", seed=1)
    x = cond.pop("hidden_states")
    uncond.pop("hidden_states")
    sigmas = torch.linspace(1.0, 0.0, steps + 1)
    with torch.no_grad():
        for s in range(steps):
            t = sigmas[s].expand(1)
            if alone is not None:
                vc = alone[0](hidden_states=x, timestep=t, return_dict=False, **cond)[0]
                vu = alone[1](hidden_states=x, timestep=t, return_dict=False, **uncond)[0]
            else:
                with model.cache_context("cond"):
                    vc = model(hidden_states=x, timestep=t, return_dict=False, **cond)[0]
                with model.cache_context("uncond"):
                    vu = model(hidden_states=x, timestep=t, return_dict=False, **uncond)[0]
            x = x + (sigmas[s + 1] - sigmas[s]) * (vu + 3.0 * (vc - vu))
    return x


@pytest.mark.parametrize("reuse", ["output", "residual"])
def test_per_branch_schedule_on_two_passes_equals_each_branch_alone(reuse):
    model = tiny_transformer("flux", seed=5)
    stages = block_space(model).names(BlockKind.STAGE)
    cond = {n: ("R.R.R." if i % 2 else "RR..R.") for i, n in enumerate(stages)}
    uncond = {n: ("R..R.." if i % 2 else "R.RR.R") for i, n in enumerate(stages)}
    joint = cs.compile_schedule(model, cs.BlockMask({n: {"cond": cond[n], "uncond": uncond[n]} for n in stages}),
                                num_inference_steps=STEPS, reuse=reuse)
    with joint.applied(model):
        ours = _two_pass_loop(model, STEPS)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    with cs.compile_schedule(a, cs.BlockMask(cond), num_inference_steps=STEPS, reuse=reuse).applied(a), \
            cs.compile_schedule(b, cs.BlockMask(uncond), num_inference_steps=STEPS, reuse=reuse).applied(b):
        theirs = _two_pass_loop(model, STEPS, alone=(a, b))
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, _two_pass_loop(model, STEPS))  # the schedule did cache


def test_per_branch_masks_without_cfg_are_refused_naming_the_block(flux):
    masks = {"transformer_blocks.0": {"cond": "R.R.R.", "uncond": "R....R"}}
    sched = cs.compile_schedule(flux, cs.BlockMask(masks), num_inference_steps=STEPS)
    with sched.applied(flux), pytest.raises(cs.ScheduleError, match=re.escape('blocks["transformer_blocks.0"]')
                                            + ".*no unconditional pass"):
        generate(flux, true_cfg=None)  # FLUX without true CFG: one (cond) call per step
    model = tiny_transformer("flux", seed=1)
    bare = cs.compile_schedule(model, cs.BlockMask(masks), num_inference_steps=STEPS)
    with pytest.raises(cs.ScheduleError, match=r'blocks\["transformer_blocks.0"\].*cfg=False'):
        bare.apply(model, cfg=False)
    inputs = dit_inputs("flux")
    with bare.applied(model), pytest.raises(cs.ScheduleError, match="without classifier-free guidance"):
        model(timestep=torch.ones(1), **inputs)
    with bare.applied(model), torch.no_grad():  # both passes, each in its context: accepted
        _two_pass_loop(model, STEPS)


def test_a_bare_transformer_counts_each_context_on_its_own_and_wraps_per_loop():
    model = tiny_transformer("flux", seed=6)
    stages = block_space(model).names(BlockKind.STAGE)
    sched = cs.compile_schedule(model, cs.BlockMask(dict.fromkeys(stages, "R.R..R")), num_inference_steps=STEPS)
    with sched.applied(model):
        first = _two_pass_loop(model, STEPS)
        second = _two_pass_loop(model, STEPS)  # each branch wraps after its sixth call
    assert torch.equal(first, second)


@pytest.fixture
def dynamo_clean():
    import torch._dynamo

    torch._dynamo.reset()
    yield torch._dynamo
    torch._dynamo.reset()


@pytest.mark.parametrize("scope", ["blocks", "denoiser"])
def test_compiled_two_pass_runs_equal_eager_and_never_recompile(flux, dynamo_clean, scope):
    """Both passes share the compiled graphs (one per distinct action row, whichever pass runs it)."""
    from torch._dynamo.testing import CompileCounterWithBackend

    masks = {"transformer_blocks.1": {"cond": "R.R.R.", "uncond": "R..R.."}}  # store / reuse rows: 2 patterns
    sched = cs.compile_schedule(flux, cs.BlockMask(masks), num_inference_steps=STEPS)
    with sched.applied(flux):
        eager = generate(flux)
    cc = CompileCounterWithBackend("eager")
    with sched.applied(flux, compile={"scope": scope, "backend": cc}) as h:
        first = generate(flux)
        frames = cc.frame_count
        if scope == "denoiser":
            # the passes' rows (store, reuse); row_patterns() bounds it with the batched-CFG layout's four
            assert len(h.compiled_variants) == frames == 2 <= h.row_patterns()
        with dynamo_clean.config.patch(error_on_recompile=True):
            second = generate(flux)
        assert cc.frame_count == frames
    torch.testing.assert_close(first, eager, atol=1e-5, rtol=0)
    torch.testing.assert_close(second, eager, atol=1e-5, rtol=0)
