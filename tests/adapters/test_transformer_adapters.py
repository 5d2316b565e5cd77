"""Transformer adapters (FLUX, SD3, PixArt): block lists at block and component granularity, output layouts,
costs, pipeline lookup, and the real FLUX.1-dev / SD3.5-medium / PixArt-Σ architectures on meta."""

from __future__ import annotations

import pytest
import torch

import cachesearch as cs
from cachesearch.models import (
    adapter_for,
    block_io_of,
    block_space,
    build_arch_pipeline,
    denoiser_costs,
    denoiser_of,
    module_macs,
)
from cachesearch.schedule import BlockKind
from tests._tiny_dit import FAMILIES, dit_inputs, tiny_dit_pipeline, tiny_transformer

BLOCKS = {
    "flux": ("transformer_blocks.0", "transformer_blocks.1", "single_transformer_blocks.0",
             "single_transformer_blocks.1"),
    "sd3": ("transformer_blocks.0", "transformer_blocks.1"),
    "pixart": ("transformer_blocks.0", "transformer_blocks.1"),
}
COMPONENTS = {  # block 0 of each stack, in execution order
    "flux": {"transformer_blocks.0": ("attn", "ff", "ff_context"),
             "single_transformer_blocks.0": ("proj_mlp", "attn", "proj_out")},
    "sd3": {"transformer_blocks.0": ("attn", "attn2", "ff", "ff_context"),  # a dual-attention layer
            "transformer_blocks.1": ("attn", "ff")},  # the last block: no attn2, no text MLP
    "pixart": {"transformer_blocks.0": ("attn1", "attn2", "ff")},
}
ATTENTION = {
    "flux": ("transformer_blocks.0.attn", "transformer_blocks.1.attn", "single_transformer_blocks.0.attn",
             "single_transformer_blocks.1.attn"),
    "sd3": ("transformer_blocks.0.attn", "transformer_blocks.0.attn2", "transformer_blocks.1.attn"),
    "pixart": ("transformer_blocks.0.attn1", "transformer_blocks.0.attn2", "transformer_blocks.1.attn1",
               "transformer_blocks.1.attn2"),
}


@pytest.fixture(scope="module")
def models():
    return {f: tiny_transformer(f) for f in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_blocks_and_components_in_execution_order(models, family):
    model = models[family]
    space = block_space(model)
    assert adapter_for(model).family == space.family == family
    assert space.names(BlockKind.STAGE) == BLOCKS[family] == space.names()
    for block, roles in COMPONENTS[family].items():
        assert space.children(block) == tuple(f"{block}.{r}" for r in roles)
        assert all(space.get(f"{block}.{r}").kind is BlockKind.COMPONENT for r in roles)
    assert space.attention_components() == ATTENTION[family]
    assert not space.deepcache_branches
    for name in space.names(BlockKind.COMPONENT):  # every component is a real module of the model
        assert type(model.get_submodule(name)).__name__ in {"Attention", "FluxAttention", "FeedForward", "Linear"}


def test_residual_ok_only_where_output_has_the_input_shape(models):
    space = block_space(models["flux"])
    assert not space.get("single_transformer_blocks.0.proj_mlp").residual_ok
    assert not space.get("single_transformer_blocks.0.proj_out").residual_ok
    assert space.get("single_transformer_blocks.0.attn").residual_ok and space.get("transformer_blocks.0").residual_ok
    with pytest.raises(cs.ScheduleError, match=r'blocks\["single_transformer_blocks.0.proj_mlp"\]: reuse: residual'):
        cs.compile_schedule(models["flux"], cs.BlockMask({"single_transformer_blocks.0.proj_mlp": "R.R"}),
                            num_inference_steps=3, reuse="residual")


def _record(model, names):
    """Each named module's (args, kwargs, output) of one call, via forward hooks."""
    seen = {}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda m, a, kw, out, n=n: seen.__setitem__(n, (a, kw, out)), with_kwargs=True) for n in names]
    return seen, handles


@pytest.mark.parametrize("family", FAMILIES)
def test_registered_output_layouts_match_what_the_blocks_return(models, family):
    model = models[family]
    space = block_space(model)
    names = space.names() + space.names(BlockKind.COMPONENT)
    seen, handles = _record(model, names)
    inputs = dit_inputs(family)
    try:
        with torch.no_grad():
            model(timestep=torch.tensor([0.5]), return_dict=False, **inputs)
    finally:
        for h in handles:
            h.remove()
    for name in names:
        args, kwargs, out = seen[name]
        io = block_io_of(model.get_submodule(name))
        y, x = io.hidden_output(out), io.hidden_input(args, kwargs)
        assert x is not None, name
        if space.get(name).residual_ok:
            assert y.shape == x.shape, name
        enc_out = io.encoder_output(out)
        if enc_out is not None:  # dual-stream: the text stream comes back at the registered index
            assert enc_out.shape == io.encoder_input(args, kwargs).shape, name
    if family in ("flux", "sd3"):  # (encoder_hidden_states, hidden_states) as diffusers' registry says
        _, kw, out = seen["transformer_blocks.0"]
        io = block_io_of(model.get_submodule("transformer_blocks.0"))
        assert out[1] is io.hidden_output(out) and out[0] is io.encoder_output(out)
        assert out[0].shape[1] == kw["encoder_hidden_states"].shape[1]  # text tokens
        assert out[1].shape[1] == kw["hidden_states"].shape[1]  # image tokens
    if family == "sd3":  # the last block returns no text stream
        out = seen["transformer_blocks.1"][2]
        assert out[0] is None and block_io_of(model.get_submodule("transformer_blocks.1")).encoder_output(out) is None


@pytest.mark.parametrize("family", FAMILIES)
def test_costs_at_both_granularities_add_up(models, family):
    model = models[family]
    adapter = adapter_for(model)
    macs, other = denoiser_costs(model, height=16, width=16)  # on a meta replica
    space = adapter.block_space(model, macs=macs, other_macs=other)
    blocks = [space.get(n) for n in space.names(BlockKind.STAGE)]
    inputs = adapter.example_inputs(model, height=16, width=16)
    with torch.no_grad():
        total = module_macs(model, lambda: model(**inputs, return_dict=False), [BLOCKS[family][0]]).total_macs
    assert sum(b.macs for b in blocks) + space.other_macs == total  # an independent count of the whole call
    for b in blocks:
        kids = [space.get(k).macs for k in space.children(b.name)]
        assert kids and all(m > 0 for m in kids) and sum(kids) <= b.macs, b.name  # a block includes its components
    comps = space.names(BlockKind.COMPONENT)
    one = {comps[0]: "R."}
    assert 0.0 < 1 - space.cost_ratio(one, 2) == pytest.approx(space.get(comps[0]).macs / 2 / (total * 1.0))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_pipeline_and_the_bare_transformer_resolve_to_the_same_denoiser(family):
    pipe = tiny_dit_pipeline(family)
    assert denoiser_of(pipe) is pipe.transformer and denoiser_of(pipe.transformer) is pipe.transformer
    adapter = adapter_for(pipe.transformer)
    assert adapter.pipeline_attribute == "transformer"
    assert adapter.uses_cfg(pipe, 4.5) is (family != "flux")  # FLUX.1 is guidance-distilled
    # the pipeline's default: FluxPipeline's fixed default_sample_size 128, the others' sample size 8; x VAE factor 2
    assert adapter.default_size(pipe) == ((256, 256) if family == "flux" else (16, 16))
    shape = adapter.latent_shape(pipe, 16, 16)
    assert shape == ((16, 4) if family == "flux" else (4, 8, 8))  # FLUX latents are packed 2 x 2
    s = cs.compile_schedule(pipe, cs.Full(), num_inference_steps=3)
    assert s.model.family == family and s.model.cls == type(pipe.transformer).__name__
    assert s.sampler.scheduler == type(pipe.scheduler).__name__


def test_unknown_component_and_a_module_that_is_not_a_block_name_the_field(models):
    model = models["flux"]
    for bad in ("transformer_blocks.0.attn7", "transformer_blocks.0.norm1", "transformer_blocks.9"):
        with pytest.raises(cs.ScheduleError, match=rf'^blocks\["{bad}"\]: .*not a cacheable block of this flux'):
            cs.compile_schedule(model, cs.BlockMask({bad: "R.R"}), num_inference_steps=3)
    with pytest.raises(cs.ScheduleError, match=r"^policy.blocks\[1\]: .*'transformer_blocks.0.norm1'"):
        cs.compile_schedule(model, cs.TaylorSeer(interval=2, blocks=["transformer_blocks.0.attn",
                                                                      "transformer_blocks.0.norm1"]),
                            num_inference_steps=6)
    # a file naming a real module that is not a block is refused when applied, before anything is installed
    good = cs.compile_schedule(model, cs.BlockMask({"transformer_blocks.0.ff": "R.R"}), num_inference_steps=3)
    bad = good.with_updates(blocks=(cs.schedule.BlockEntry(block="transformer_blocks.0.norm1", cond="R.R",
                                                           uncond="R.R"),))
    with pytest.raises(cs.ScheduleError, match=r'^blocks\["transformer_blocks.0.norm1"\]: .*not a cacheable block'):
        bad.apply(model)
    assert all("forward" not in m.__dict__ for m in model.modules())


# -- the real architectures, on meta --------------------------------------------------------------------
REAL = {  # preset: (transformer parameters, blocks, components, attention components)
    "flux": (11_901_408_320, 57, 19 * 3 + 38 * 3, 57),
    "sd3": (2_243_171_520, 24, 24 * 2 + 13 + 23, 24 + 13),
    "pixart-sigma": (610_856_096, 28, 28 * 3, 56),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_architectures_on_meta_with_costs(name):
    params, n_blocks, n_components, n_attention = REAL[name]
    model = build_arch_pipeline(f"arch:{name}", device="meta", components="denoiser")
    assert model._cachesearch_random_weights is True
    assert sum(p.numel() for p in model.parameters()) == params
    space = block_space(model, with_costs=True)
    assert len(space.names(BlockKind.STAGE)) == n_blocks
    assert len(space.names(BlockKind.COMPONENT)) == n_components
    assert len(space.attention_components()) == n_attention
    assert all(b.macs and b.macs > 0 for b in space.blocks)
    full = {n: "R" * 4 for n in space.names()}
    assert space.cost_ratio(full, 4) == 1.0
    middle = cs.MiddleCache(interval=2, front=1, back=1).masks(space, 4)
    assert 0.5 < space.cost_ratio({n: m for n, (m, _) in middle.items()}, 4) < 0.6
