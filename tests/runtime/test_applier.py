"""The cache applier on a tiny random SD pipeline: exactness, call accounting, state resets, samplers."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
from diffusers import HeunDiscreteScheduler

import cachesearch as cs
from cachesearch.models import BlockIO, block_space, register_block_io
from cachesearch.runtime import fingerprint_module
from tests._tiny import tiny_sd_pipeline

STEPS = 10


@pytest.fixture(scope="module")
def pipe():
    p = tiny_sd_pipeline(seed=0, blocks=3)
    p.set_progress_bar_config(disable=True)
    return p


def generate(pipe, prompt="a red circle on a blue background", steps=STEPS, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    kw.setdefault("height", 32)
    kw.setdefault("width", 32)
    return pipe(prompt, num_inference_steps=steps, generator=g, output_type="pt", **kw).images


def _no_wrappers(pipe) -> bool:
    return (
        all("forward" not in m.__dict__ for m in pipe.unet.modules())
        and not {"set_timesteps", "set_begin_index"} & set(pipe.scheduler.__dict__)
        and "get_timesteps" not in pipe.__dict__
    )


# -- a. all-R is exact -----------------------------------------------------------------------------------
def test_all_recompute_is_bit_identical_and_remove_restores(pipe):
    base = generate(pipe)
    space = block_space(pipe.unet)
    full = {n: "R" * STEPS for n in space.names(cs.schedule.BlockKind.STAGE)}
    for policy in (cs.Full(), cs.BlockMask(full)):
        sched = cs.compile_schedule(pipe, policy, num_inference_steps=STEPS)
        with sched.applied(pipe):
            assert torch.equal(generate(pipe), base)
        assert _no_wrappers(pipe)
        assert torch.equal(generate(pipe), base)


def test_cached_schedule_changes_output_and_remove_restores_exactly(pipe):
    base = generate(pipe)
    sched = cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=0), num_inference_steps=STEPS)
    handle = sched.apply(pipe)
    cached = generate(pipe)
    handle.remove()
    handle.remove()  # idempotent
    assert not torch.equal(cached, base)
    assert _no_wrappers(pipe)
    assert torch.equal(generate(pipe), base)
    with sched.applied(pipe):  # a fresh handle on the restored pipeline gives the cached output again, exactly
        assert torch.equal(generate(pipe), cached)


# -- b. DeepCache equals the official package ------------------------------------------------------------
@pytest.mark.parametrize("interval", [2, 3, 5])
def test_deepcache_matches_official_helper(pipe, interval):
    from DeepCache.extension.deepcache import DeepCacheSDHelper

    n_branches = len(block_space(pipe.unet).deepcache_branches)
    assert n_branches == 9  # 3 stages x 3 layers, numbered like cache_branch_id
    for branch in range(n_branches):
        sched = cs.compile_schedule(pipe, cs.DeepCache(interval=interval, branch=branch), num_inference_steps=STEPS)
        with sched.applied(pipe):
            ours = generate(pipe)
        helper = DeepCacheSDHelper(pipe=pipe)
        helper.set_params(cache_interval=interval, cache_branch_id=branch)
        helper.enable()
        try:
            official = generate(pipe)
        finally:
            helper.disable()
            for m in pipe.unet.modules():  # the helper "restores" by assigning bound methods on instances
                m.__dict__.pop("forward", None)
        assert torch.allclose(ours, official, atol=1e-5, rtol=0), (interval, branch)


def _official(pipe, interval, branch, **kw):
    from DeepCache.extension.deepcache import DeepCacheSDHelper

    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=interval, cache_branch_id=branch)
    helper.enable()
    try:
        return generate(pipe, **kw)
    finally:
        helper.disable()
        for m in pipe.unet.modules():
            m.__dict__.pop("forward", None)


@pytest.fixture(scope="module")
def pndm_pipe():
    p = tiny_sd_pipeline(seed=0, blocks=3, scheduler="pndm")
    p.set_progress_bar_config(disable=True)
    return p


@pytest.mark.parametrize("interval", [2, 3, 5])
def test_deepcache_matches_official_helper_on_pndm(pndm_pipe, interval):
    """SD1.5's default scheduler evaluates its second timestep twice (10 steps = 11 calls); the interval counts
    calls as the helper does, so the same DeepCache setting gives the same output."""
    pipe = pndm_pipe
    assert type(pipe.scheduler).__name__ == "PNDMScheduler" and pipe.scheduler.config.skip_prk_steps
    for branch in (0, 4, 8):
        sched = cs.compile_schedule(pipe, cs.DeepCache(interval=interval, branch=branch), num_inference_steps=STEPS)
        with sched.applied(pipe):
            ours = generate(pipe)
        official = _official(pipe, interval, branch)
        assert (ours - official).abs().max().item() <= 1e-5, (interval, branch)
    full = {2: "R..R.R.R.R", 3: "R.R..R..R.", 5: "R...R....R"}[interval]  # calls 0, N, 2N, ... of 11
    assert next(bm for bm in sched.blocks if bm.block == "mid_block").cond == full


# -- c. skipped blocks really do not run -----------------------------------------------------------------
class CallRecorder:
    """Counting wrappers installed *before* the schedule, so they see only real executions."""

    def __init__(self, unet, names):
        self.step = -1
        self.calls = defaultdict(lambda: defaultdict(list))  # block -> step -> [batch sizes]
        self.hook = unet.register_forward_pre_hook(self._tick)
        self.modules = []
        for name in names:
            module = unet.get_submodule(name)
            original = module.forward

            def counting(*args, _name=name, _orig=original, **kwargs):
                x = args[0] if args else next(v for v in kwargs.values() if isinstance(v, torch.Tensor))
                self.calls[_name][self.step].append(x.shape[0])
                return _orig(*args, **kwargs)

            module.forward = counting
            self.modules.append(module)

    def _tick(self, *_):
        self.step += 1

    def close(self):
        self.hook.remove()
        for m in self.modules:
            del m.forward


def test_block_calls_per_step_follow_the_mask(pipe):
    sched = cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=1), num_inference_steps=STEPS)
    names = [bm.block for bm in sched.blocks]
    rec = CallRecorder(pipe.unet, names)
    try:
        with sched.applied(pipe):
            generate(pipe)
    finally:
        rec.close()
    assert any("." in bm.cond for bm in sched.blocks)
    for bm in sched.blocks:
        for s, ch in enumerate(bm.cond):
            assert len(rec.calls[bm.block][s]) == (1 if ch == "R" else 0), (bm.block, s)


def test_per_branch_masks_run_only_the_recomputing_half(pipe):
    space = block_space(pipe.unet)
    masks = {n: "R" * STEPS for n in space.names(cs.schedule.BlockKind.STAGE)}
    masks["mid_block"] = {"cond": "R.R.R.R.R.", "uncond": "R...R...R."}
    masks["up_blocks.0"] = {"cond": "RRRRRRRRRR", "uncond": "R........."}
    sched = cs.compile_schedule(pipe, cs.BlockMask(masks), num_inference_steps=STEPS, guidance_scale=7.5)
    assert sched.per_branch
    rec = CallRecorder(pipe.unet, ["mid_block", "up_blocks.0"])
    try:
        with sched.applied(pipe):
            out = generate(pipe, guidance_scale=7.5)
    finally:
        rec.close()
    assert torch.isfinite(out).all()
    for block in ("mid_block", "up_blocks.0"):
        cond, uncond = masks[block]["cond"], masks[block]["uncond"]
        for s in range(STEPS):
            expected = [] if cond[s] == uncond[s] == "." else [2] if cond[s] == uncond[s] == "R" else [1]
            assert rec.calls[block][s] == expected, (block, s)


def test_per_branch_masks_equal_running_each_branch_alone():
    """Rows of a UNet batch are independent, so a per-branch schedule on [uncond; cond] must equal the
    uncond mask applied to the uncond rows alone and the cond mask applied to the cond rows alone."""
    pipe = tiny_sd_pipeline(seed=1, blocks=3)
    unet = pipe.unet
    n = 6
    cond = {"down_blocks.1": "R..R..", "mid_block": "R.R.R.", "up_blocks.1": "RR..RR"}
    uncond = {"down_blocks.1": "R.....", "mid_block": "RRR...", "up_blocks.1": "R.R.R."}
    both = {k: {"cond": cond[k], "uncond": uncond[k]} for k in cond}

    def sched(masks):
        return cs.compile_schedule(unet, cs.BlockMask(masks), num_inference_steps=n)

    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(4, 4, 16, 16, generator=gen) for _ in range(n)]
    enc = torch.randn(4, 7, 32, generator=gen)
    ts = [torch.tensor(999 - 150 * i) for i in range(n)]

    def loop(s, rows, cfg):
        with torch.no_grad(), s.applied(unet, cfg=cfg):
            return [unet(x[rows], t, encoder_hidden_states=enc[rows]).sample for x, t in zip(xs, ts)]

    joint = loop(sched(both), slice(0, 4), True)
    alone_u = loop(sched(uncond), slice(0, 2), False)
    alone_c = loop(sched(cond), slice(2, 4), False)
    for j, u, c in zip(joint, alone_u, alone_c):
        torch.testing.assert_close(j, torch.cat([u, c]), atol=1e-5, rtol=1e-5)


# -- d. no state leaks across calls; shapes may change ---------------------------------------------------
def test_consecutive_calls_identical_and_cache_rebuilt_for_new_shapes(pipe):
    sched = cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=0), num_inference_steps=STEPS)
    variants = [
        dict(prompt="a red circle on a blue background"),
        dict(prompt=["a red circle on a blue background", "a cyan cross on a gray background"]),
        dict(prompt="a red circle on a blue background", num_images_per_prompt=3),
        dict(prompt="a red circle on a blue background", height=64, width=64),
        dict(prompt="a red circle on a blue background", guidance_scale=1.0),
    ]
    with sched.applied(pipe):
        outs = [generate(pipe, **v) for v in variants]
        again = [generate(pipe, **v) for v in reversed(variants)][::-1]
    for v, a, b in zip(variants, outs, again):
        assert torch.equal(a, b), v
    # Each variant alone, on a freshly applied schedule, gives the same result: no leak from the others.
    for v, a in zip(variants, outs):
        with sched.applied(pipe):
            assert torch.equal(generate(pipe, **v), a), v
    assert outs[3].shape[-1] == 64 and outs[0].shape[-1] == 32 and outs[2].shape[0] == 3


# -- e. multi-call samplers: masks follow steps, not calls ------------------------------------------------
@pytest.mark.parametrize("kind", ["heun", "pndm"])
def test_masks_align_with_steps_for_multi_call_schedulers(kind):
    pipe = tiny_sd_pipeline(seed=0, blocks=3, scheduler="pndm" if kind == "pndm" else "ddim")
    pipe.set_progress_bar_config(disable=True)
    if kind == "heun":
        pipe.scheduler = HeunDiscreteScheduler.from_config(pipe.scheduler.config)
    steps = 5
    sched = cs.compile_schedule(pipe, cs.DeepCache(interval=2, branch=0), num_inference_steps=steps)
    mid = next(bm for bm in sched.blocks if bm.block == "mid_block")
    # PNDM: DeepCache's interval counts calls like the official helper (call starts 0, 1, 3, 4, 5);
    # Heun: it counts steps.
    assert mid.cond == ("R..R." if kind == "pndm" else "R.R.R")
    rec = CallRecorder(pipe.unet, ["mid_block"])
    try:
        with sched.applied(pipe):
            out = generate(pipe, steps=steps)
    finally:
        rec.close()
    n_calls = rec.step + 1
    if kind == "heun":
        assert n_calls == 2 * steps - 1
        step_of_call = [(c + 1) // 2 for c in range(n_calls)]  # a row is a timestep: corrector + next predictor
    else:
        assert n_calls == steps + 1
        step_of_call = [0, 1, 1, 2, 3, 4]  # PLMS evaluates its second timestep twice
    for call in range(n_calls):
        ran = len(rec.calls["mid_block"][call])
        assert ran == (1 if mid.cond[step_of_call[call]] == "R" else 0), call
    assert torch.isfinite(out).all()


# -- f (runtime part). clear errors ----------------------------------------------------------------------
def test_wrong_step_count_raises_clear_error(pipe):
    sched = cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=0), num_inference_steps=STEPS)
    with sched.applied(pipe), pytest.raises(cs.ScheduleError, match="has 10 steps but the sampler was set up for 7"):
        generate(pipe, steps=7)
    assert _no_wrappers(pipe)


def test_wrong_architecture_refused_unless_forced(pipe):
    other = tiny_sd_pipeline(seed=0, blocks=2)
    sched = cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=0), num_inference_steps=STEPS)
    assert fingerprint_module(other.unet) != sched.model.fingerprint
    with pytest.raises(cs.ScheduleError, match="different architecture"):
        sched.apply(other)
    sched2 = cs.compile_schedule(other, cs.BlockMask({"mid_block": "R.R.R.R.R."}), num_inference_steps=STEPS)
    foreign = sched2.with_updates(model=sched.model)
    with pytest.warns(UserWarning, match="force=True"), foreign.applied(other, force=True):
        pass
    assert _no_wrappers(other)


def test_same_architecture_other_weights_is_accepted():
    a, b = tiny_sd_pipeline(seed=0, blocks=3), tiny_sd_pipeline(seed=5, blocks=3)
    assert not torch.equal(next(a.unet.parameters()), next(b.unet.parameters()))
    assert fingerprint_module(a.unet) == fingerprint_module(b.unet)
    assert fingerprint_module(a.unet.half()) == fingerprint_module(b.unet)


def test_double_apply_and_exception_inside_block_leave_nothing_behind(pipe):
    sched = cs.compile_schedule(pipe, cs.DeepCache(interval=2, branch=0), num_inference_steps=STEPS)
    with sched.applied(pipe), pytest.raises(cs.ScheduleError, match="already applied"):
        sched.apply(pipe)
    assert _no_wrappers(pipe)
    with pytest.raises(RuntimeError, match="boom"), sched.applied(pipe):
        raise RuntimeError("boom")
    assert _no_wrappers(pipe)


def test_unknown_block_and_scheduler_swap_errors(pipe):
    sched = cs.compile_schedule(pipe, cs.BlockMask({"mid_block": "R.R.R.R.R."}), num_inference_steps=STEPS)
    bad = sched.with_updates(blocks=(cs.schedule.BlockEntry(block="mid_blok", cond="R" * STEPS, uncond="R" * STEPS),))
    with pytest.raises(cs.ScheduleError, match="no submodule 'mid_blok'"):
        bad.apply(pipe)
    assert _no_wrappers(pipe)
    original = pipe.scheduler
    with sched.applied(pipe):
        pipe.scheduler = type(original).from_config(original.config)
        try:
            with pytest.raises(cs.ScheduleError, match="scheduler was replaced"):
                generate(pipe)
        finally:
            pipe.scheduler = original


class _ToyResidualBlock(torch.nn.Linear):
    """A block class of our own, registered with the adapter seam's I/O contract below."""


register_block_io("_ToyResidualBlock", BlockIO(hidden_states_argument="input"))


def _residual_toy(block: torch.nn.Module) -> tuple[torch.nn.Module, cs.Schedule]:
    net = torch.nn.Sequential()
    net.add_module("pre", torch.nn.Linear(4, 4))
    net.add_module("blk", block)
    sched = cs.schedule.Schedule(
        name="residual-test",
        model=cs.schedule.ModelInfo(family="unet2d", cls="Sequential", fingerprint=fingerprint_module(net),
                                    source="test"),
        sampler=cs.schedule.SamplerInfo(scheduler="none", num_inference_steps=3),
        blocks=(cs.schedule.BlockEntry(block="blk", cond="R..", uncond="R.."),),
        reuse="residual",
    )
    return net, sched


def test_residual_reuse_on_an_unregistered_block_class_is_refused_at_apply():
    net, sched = _residual_toy(torch.nn.Bilinear(4, 4, 4))
    expected = r'blocks\["blk"\]: no I/O contract is registered for Bilinear.*register_block_io'
    with pytest.raises(cs.ScheduleError, match=expected):
        sched.apply(net)
    assert "forward" not in net.blk.__dict__  # nothing left installed


def test_residual_reuse_adds_stored_delta_to_fresh_input():
    block = _ToyResidualBlock(4, 4)
    net, sched = _residual_toy(block)
    xs = [torch.randn(2, 4) for _ in range(3)]
    with torch.no_grad():
        with sched.applied(net):
            outs = [net(x) for x in xs]
        h0 = net.pre(xs[0])
        delta = block(h0) - h0
        torch.testing.assert_close(outs[0], block(h0))
        for x, out in zip(xs[1:], outs[1:]):
            torch.testing.assert_close(out, net.pre(x) + delta)
            assert not torch.allclose(out, block(net.pre(x)))


def test_regional_compile_keeps_schedule_logic_outside_and_output_equal(pipe):
    """compile= wraps each hooked block's original forward in torch.compile; dynamo with the eager backend
    exercises the tracing path cheaply on CPU (inductor codegen is covered by the GPU benchmark)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    sched = cs.compile_schedule(pipe, cs.DeepCache(interval=3, branch=0), num_inference_steps=4)
    with sched.applied(pipe):
        eager = generate(pipe, steps=4)
    counters.clear()
    with sched.applied(pipe, compile={"backend": "eager"}):
        compiled = generate(pipe, steps=4)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    # dynamo really traced the hooked blocks' forwards (zero frames without compile=)
    assert counters["frames"]["ok"] > 0
    assert _no_wrappers(pipe)
