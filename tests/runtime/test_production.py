"""Schedules on what production runs: SDXL, LoRA (fused, unfused, switched), model offload and diffusers'
other hooks (group offloading, layerwise casting) in both install orders, and torch.compile (regional and
whole-denoiser), on tiny random pipelines on CPU."""

from __future__ import annotations

import pytest
import torch

import cachesearch as cs
from cachesearch.models import block_space
from cachesearch.runtime import fingerprint_module
from tests._tiny import tiny_sd_pipeline, tiny_sdxl_pipeline

STEPS = 6
PROMPT = "a red circle on a blue background"


def generate(pipe, steps=STEPS, **kw):
    return pipe(PROMPT, num_inference_steps=steps, height=32, width=32, guidance_scale=5.0,
                generator=torch.Generator().manual_seed(0), output_type="pt", **kw).images


def _no_wrappers(pipe) -> bool:
    """No cachesearch wrapper left: no applied handle, scheduler and pipeline methods are the class's."""
    return (
        getattr(pipe.unet, "_cachesearch_applied", None) is None
        and not {"set_timesteps", "set_begin_index"} & set(pipe.scheduler.__dict__)
        and "get_timesteps" not in pipe.__dict__
    )


def _official(pipe, interval, branch):
    from DeepCache.extension.deepcache import DeepCacheSDHelper

    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=interval, cache_branch_id=branch)
    helper.enable()
    try:
        return generate(pipe)
    finally:
        helper.disable()
        for m in pipe.unet.modules():  # the helper "restores" by assigning bound methods on instances
            m.__dict__.pop("forward", None)


# -- SDXL ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sdxl():
    return tiny_sdxl_pipeline(seed=0)


def test_sdxl_all_r_is_exact_with_cfg_and_remove_restores(sdxl):
    pipe = sdxl
    assert pipe.unet.config.addition_embed_type == "text_time"
    vanilla = generate(pipe)
    with cs.compile_schedule(pipe, cs.Full(), num_inference_steps=STEPS).applied(pipe):
        assert torch.equal(generate(pipe), vanilla)
    sched = cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=0), num_inference_steps=STEPS)
    with sched.applied(pipe):
        cached = generate(pipe)
    assert not torch.equal(cached, vanilla)
    assert _no_wrappers(pipe) and all("forward" not in m.__dict__ for m in pipe.unet.modules())
    assert torch.equal(generate(pipe), vanilla)


@pytest.mark.parametrize(("interval", "branch"), [(2, 0), (3, 4), (5, 8)])
def test_sdxl_deepcache_matches_official_helper(sdxl, interval, branch):
    pipe = sdxl
    assert len(block_space(pipe.unet).deepcache_branches) == 9
    sched = cs.compile_schedule(pipe, cs.DeepCache(interval=interval, branch=branch), num_inference_steps=STEPS)
    with sched.applied(pipe):
        ours = generate(pipe)
    official = _official(pipe, interval, branch)
    assert torch.allclose(ours, official, atol=1e-5, rtol=0), (ours - official).abs().max()


# -- LoRA ------------------------------------------------------------------------------------------------
def _lora_pipe():
    from peft import LoraConfig

    pipe = tiny_sd_pipeline(seed=0, blocks=3)
    full = cs.compile_schedule(pipe, cs.Full(), num_inference_steps=STEPS)  # compiled on the base UNet
    dc = cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=0), num_inference_steps=STEPS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for name in ("a", "b"):  # init_lora_weights=False: random, non-zero A and B
            config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                init_lora_weights=False)
            pipe.unet.add_adapter(config, adapter_name=name)
    return pipe, full, dc


@pytest.mark.filterwarnings("ignore:Already found a `peft_config`")
def test_lora_unfused_schedule_applies_and_follows_set_adapters():
    pipe, full, dc = _lora_pipe()
    assert any(".lora_A." in n for n, _ in pipe.unet.named_parameters())
    assert fingerprint_module(pipe.unet) == dc.model.fingerprint  # LoRA params ignored, base_layer unwrapped
    pipe.unet.set_adapters(["a"])
    vanilla_a = generate(pipe)
    pipe.unet.set_adapters(["b"])
    vanilla_b = generate(pipe)
    assert not torch.equal(vanilla_a, vanilla_b)
    pipe.unet.set_adapters(["a"])
    with full.applied(pipe):
        assert torch.equal(generate(pipe), vanilla_a)
    handle = dc.apply(pipe)
    cached_a = generate(pipe)
    pipe.unet.set_adapters(["b"])  # switched while the schedule is applied
    cached_b = generate(pipe)
    handle.remove()
    assert not torch.equal(cached_a, cached_b) and not torch.equal(cached_b, vanilla_b)
    with dc.applied(pipe):  # no stale cache: a fresh handle with "b" active gives the same cached output
        assert torch.equal(generate(pipe), cached_b)
    assert torch.equal(generate(pipe), vanilla_b)
    pipe.unet.set_adapters(["a"])
    assert torch.equal(generate(pipe), vanilla_a)
    assert _no_wrappers(pipe)


@pytest.mark.filterwarnings("ignore:Already found a `peft_config`")
def test_lora_fused_schedule_applies_all_r_exact():
    pipe, full, dc = _lora_pipe()
    pipe.unet.set_adapters(["a"])
    unfused = generate(pipe)
    pipe.unet.fuse_lora(adapter_names=["a"])  # "a" merged into the base weights; merged layers skip it
    assert all(m.merged for m in pipe.unet.modules() if hasattr(m, "merged_adapters"))
    fused = generate(pipe)
    assert torch.allclose(fused, unfused, atol=1e-4)
    assert fingerprint_module(pipe.unet) == dc.model.fingerprint
    with full.applied(pipe):
        assert torch.equal(generate(pipe), fused)
    with dc.applied(pipe):
        cached = generate(pipe)
    assert not torch.equal(cached, fused)
    assert torch.equal(generate(pipe), fused)


# -- offload and diffusers hooks -------------------------------------------------------------------------
def _install(pipe, kind: str) -> None:
    from diffusers.hooks import apply_group_offloading

    if kind == "model_offload":
        pipe.enable_model_cpu_offload(device="cpu")
    elif kind in ("block_level", "leaf_level"):
        apply_group_offloading(pipe.unet, onload_device="cpu", offload_device="cpu", offload_type=kind,
                               num_blocks_per_group=1 if kind == "block_level" else None)
    else:
        pipe.unet.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)


def _hook_names(module) -> set[str]:
    return set(getattr(getattr(module, "_diffusers_hook", None), "hooks", {}))


KINDS = ("model_offload", "block_level", "leaf_level", "layerwise_casting")


@pytest.mark.parametrize("kind", KINDS)
def test_hooks_installed_before_or_after_the_schedule(kind):
    """All-R equals the same hooked pipeline; DeepCache gives the same output whichever was installed first;
    remove() leaves the hooks working and takes only our wrappers out."""
    # hooks first, then the schedule
    pipe = tiny_sd_pipeline(seed=0, blocks=3)
    full = cs.compile_schedule(pipe, cs.Full(), num_inference_steps=STEPS)
    dc = cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=0), num_inference_steps=STEPS)
    _install(pipe, kind)
    hooked = generate(pipe)
    with full.applied(pipe):
        assert torch.equal(generate(pipe), hooked)
    with dc.applied(pipe):
        cached_before = generate(pipe)
    assert not torch.equal(cached_before, hooked)
    assert torch.equal(generate(pipe), hooked) and _no_wrappers(pipe)

    # the schedule first, then the hooks (on the very blocks it wraps, for block-level group offloading)
    pipe = tiny_sd_pipeline(seed=0, blocks=3)
    handle = dc.apply(pipe)
    _install(pipe, kind)
    block = pipe.unet.down_blocks[1]
    theirs = block.__dict__.get("forward")
    names = _hook_names(block)
    if kind == "block_level":
        assert "group_offloading" in names and theirs is not None  # it wrapped our wrapper
    assert torch.equal(generate(pipe), cached_before)
    handle.remove()
    assert _no_wrappers(pipe)
    assert _hook_names(block) == names
    if kind == "block_level":
        assert block.__dict__.get("forward") is theirs  # their hook is kept, with ours taken out from under it
    else:
        assert "forward" not in block.__dict__
    assert torch.equal(generate(pipe), hooked)  # and ours is gone


def test_model_offload_hook_on_the_unet_is_accelerate():
    pipe = tiny_sd_pipeline(seed=0, blocks=3)
    pipe.enable_model_cpu_offload(device="cpu")  # works on a CPU-only machine when told the device
    assert type(getattr(pipe.unet, "_hf_hook", None)).__name__ == "CpuOffload"


def test_hooks_installed_after_the_schedule_still_run_after_remove():
    """A diffusers hook and an accelerate hook put on wrapped blocks after the schedule keep running once
    remove() has taken our wrapper out from under them."""
    from accelerate.hooks import ModelHook as AccelerateHook
    from accelerate.hooks import add_hook_to_module
    from diffusers.hooks import HookRegistry, ModelHook

    calls = {"diffusers": 0, "accelerate": 0}

    class Count(ModelHook):
        def pre_forward(self, module, *args, **kwargs):
            calls["diffusers"] += 1
            return args, kwargs

    class CountAcc(AccelerateHook):
        def pre_forward(self, module, *args, **kwargs):
            calls["accelerate"] += 1
            return args, kwargs

    pipe = tiny_sd_pipeline(seed=0, blocks=3)
    vanilla = generate(pipe)
    dc = cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=0), num_inference_steps=STEPS)
    handle = dc.apply(pipe)
    cached = generate(pipe)
    HookRegistry.check_if_exists_or_initialize(pipe.unet.mid_block).register_hook(Count(), "count")
    add_hook_to_module(pipe.unet.up_blocks[0], CountAcc())
    assert torch.equal(generate(pipe), cached)
    assert calls == {"diffusers": STEPS, "accelerate": STEPS}  # their hooks run on reuse steps too
    handle.remove()
    assert torch.equal(generate(pipe), vanilla)
    assert calls == {"diffusers": 2 * STEPS, "accelerate": 2 * STEPS}


def test_remove_refuses_a_replacement_it_cannot_unwrap_and_works_once_it_is_undone():
    pipe = tiny_sd_pipeline(seed=0, blocks=3)
    vanilla = generate(pipe)
    handle = cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=0), num_inference_steps=STEPS).apply(pipe)
    block = pipe.unet.mid_block
    ours = block.forward
    block.forward = lambda *a, **k: ours(*a, **k)
    with pytest.raises(cs.ScheduleError, match=r"remove\(\): UNet2DConditionModel\.mid_block\.forward was "
                                               r"replaced after the schedule was applied"):
        handle.remove()
    assert getattr(pipe.unet, "_cachesearch_applied", None) is handle  # nothing was restored
    block.forward = ours
    handle.remove()
    assert _no_wrappers(pipe) and all("forward" not in m.__dict__ for m in pipe.unet.modules())
    assert torch.equal(generate(pipe), vanilla)


# -- torch.compile ---------------------------------------------------------------------------------------
@pytest.fixture
def dynamo_clean():
    import torch._dynamo

    torch._dynamo.reset()
    yield torch._dynamo
    torch._dynamo.reset()


def _counter(backend="eager"):
    from torch._dynamo.testing import CompileCounterWithBackend

    return CompileCounterWithBackend(backend)


def test_regional_compile_compiles_each_block_once_and_never_again(dynamo_clean):
    pipe = tiny_sd_pipeline(seed=0, blocks=2)
    dc = cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=0), num_inference_steps=STEPS)
    with dc.applied(pipe) as h:
        eager = generate(pipe)
        n_hooked = len(h._modules)
    cc = _counter()
    with dc.applied(pipe, compile={"backend": cc}):
        first = generate(pipe)
        frames = cc.frame_count
        # at most one graph per hooked block (a class's blocks share code: a second shape is one more)
        assert 0 < frames <= n_hooked
        with dynamo_clean.config.patch(error_on_recompile=True):
            second = generate(pipe, steps=STEPS)
        assert cc.frame_count == frames  # zero recompiles on the second call
    torch.testing.assert_close(first, eager, atol=1e-5, rtol=0)
    torch.testing.assert_close(second, eager, atol=1e-5, rtol=0)
    assert all("forward" not in m.__dict__ for m in pipe.unet.modules())


@pytest.mark.parametrize("how", ["module.compile", "torch.compile"])
def test_whole_denoiser_fullgraph_compiles_one_graph_per_step_pattern(dynamo_clean, how):
    """Dynamo specialises on each block's action row: one graph per distinct row pattern, all in the first
    call (DeepCache: store rows and reuse rows = 2), none after; the step counter itself is not traced."""
    pipe = tiny_sd_pipeline(seed=0, blocks=2)
    dc = cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=0), num_inference_steps=STEPS)
    with dc.applied(pipe):
        eager = generate(pipe)
    cc = _counter()
    if how == "module.compile":
        pipe.unet.compile(fullgraph=True, backend=cc)
    else:
        pipe.unet = torch.compile(pipe.unet, fullgraph=True, backend=cc)
    with dc.applied(pipe) as h:  # the fingerprint and blocks are the compiled module's
        assert h.row_patterns() == 2
        first = generate(pipe)
        assert cc.frame_count == h.row_patterns()  # not one per step (6)
        with dynamo_clean.config.patch(error_on_recompile=True):
            second = generate(pipe)
        assert cc.frame_count == h.row_patterns()
    torch.testing.assert_close(first, eager, atol=1e-5, rtol=0)
    torch.testing.assert_close(second, eager, atol=1e-5, rtol=0)


@pytest.mark.parametrize("policy", [cs.DeepCache(interval=3, branch=0),
                                    cs.BlockMask({"mid_block": "R.R..R", "up_blocks.0": "R..R.R"})])
def test_compile_denoiser_scope_never_recompiles_across_steps_or_calls(dynamo_clean, policy):
    """apply(pipe, compile="denoiser"): the whole denoiser, fullgraph, one variant per step pattern on a code
    object of its own, so with error_on_recompile dynamo never recompiles — in the first call or after."""
    pipe = tiny_sd_pipeline(seed=0, blocks=2)
    sched = cs.compile_schedule(pipe, policy, num_inference_steps=STEPS)
    with sched.applied(pipe):
        eager = generate(pipe)
    cc = _counter()
    denoiser_scope = {"scope": "denoiser", "backend": cc}
    with dynamo_clean.config.patch(error_on_recompile=True), sched.applied(pipe, compile=denoiser_scope) as h:
        first = generate(pipe)
        patterns = len(h.compiled_variants)
        assert patterns == h.row_patterns() and cc.frame_count == patterns  # one graph each, no recompile
        second = generate(pipe)
        assert cc.frame_count == patterns
    torch.testing.assert_close(first, eager, atol=1e-5, rtol=0)
    torch.testing.assert_close(second, eager, atol=1e-5, rtol=0)
    assert "forward" not in pipe.unet.__dict__  # removed exactly


def test_compile_denoiser_scope_refuses_a_compiled_or_rewrapped_denoiser(dynamo_clean):
    pipe = tiny_sd_pipeline(seed=0, blocks=2)
    sched = cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=0), num_inference_steps=STEPS)
    pipe.unet = torch.compile(pipe.unet, backend="eager")
    with pytest.raises(cs.ScheduleError, match="compile='denoiser' compiles the denoiser itself"):
        sched.apply(pipe, compile="denoiser")
    with pytest.raises(cs.ScheduleError, match="compile: scope must be 'blocks' or 'denoiser'"):
        sched.apply(pipe, compile={"scope": "everything"})


def test_whole_denoiser_fullgraph_with_more_patterns_than_the_recompile_limit_warns_then_fails(dynamo_clean):
    from torch._dynamo.exc import FailOnRecompileLimitHit

    pipe = tiny_sd_pipeline(seed=0, blocks=2)
    dc = cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=0), num_inference_steps=STEPS)
    pipe.unet.compile(fullgraph=True, backend="eager")
    with dynamo_clean.config.patch(recompile_limit=1):
        with pytest.warns(UserWarning, match=r"has 2 distinct step patterns, more than "
                                             r"torch._dynamo.config.recompile_limit \(1\)"):
            handle = dc.apply(pipe)
        try:
            with pytest.raises(FailOnRecompileLimitHit):
                generate(pipe)
        finally:
            handle.remove()


@pytest.mark.slow
def test_regional_compile_with_inductor(dynamo_clean):
    pipe = tiny_sd_pipeline(seed=0, blocks=2)
    sched = cs.compile_schedule(pipe, cs.BlockMask({"up_blocks.1.resnets.0": "R.R..R"}), num_inference_steps=STEPS)
    with sched.applied(pipe):
        eager = generate(pipe)
    with sched.applied(pipe, compile=True):  # default backend (inductor)
        compiled = generate(pipe)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=0)
