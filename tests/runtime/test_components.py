"""Attention-level Block Caching and component granularity (attn1 / attn2 / ff) on the UNet."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import cachesearch as cs
from cachesearch.models import block_space
from cachesearch.schedule import BlockKind, BlockProfile
from tests._tiny import tiny_sd_pipeline

STEPS = 4


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd_pipeline(seed=1)


def _first_leaf(module):
    return next(c for c in module.modules() if c is not module and not list(c.children())
                and any(True for _ in c.parameters(recurse=False)))


def _count(pipe, sched, classes):
    """Executions of each module of ``classes``: a reused block is still *called* (its wrapper returns the
    stored output), so count runs of its first parametrised leaf instead."""
    counts: Counter[str] = Counter()
    handles = [_first_leaf(m).register_forward_hook(lambda mod, a, o, n=n: counts.update([n]))
               for n, m in pipe.unet.named_modules() if type(m).__name__ in classes]
    try:
        with sched.applied(pipe):
            pipe("a red circle", num_inference_steps=STEPS, height=32, width=32, output_type="latent",
                 generator=torch.Generator().manual_seed(0))
    finally:
        for h in handles:
            h.remove()
    return counts


def test_component_blocks_in_the_space_with_macs(pipe):
    space = block_space(pipe.unet, with_costs=True)
    comps = space.names(BlockKind.COMPONENT)
    assert "down_blocks.1.attentions.0.transformer_blocks.0.attn1" in comps
    assert {c.rsplit(".", 1)[1] for c in comps} == {"attn1", "attn2", "ff"}
    assert not set(comps) & set(space.names())  # "every block" stays stages + layers
    assert all(space.get(c).macs > 0 for c in comps)
    info = space.get(comps[0])
    assert info.parent == "down_blocks.1.attentions.0" and space.get(info.parent).role == "attention"
    masks = {c: "R.R." for c in comps[:3]}
    assert space.coarsen(masks) == masks  # components never merge into their layer
    ratio = space.cost_ratio(masks, STEPS)
    assert 0.9 < ratio < 1.0
    with pytest.raises(cs.ScheduleError, match="inside"):
        space.check_disjoint(["down_blocks.1", comps[0]])


def test_attention_level_block_caching_touches_no_resblock(pipe):
    space = block_space(pipe.unet)
    layers = space.names(BlockKind.LAYER)
    profile = BlockProfile(blocks=layers, changes=tuple((0.0,) + (0.1,) * (STEPS - 1) for _ in layers))
    policy = cs.BlockCachingAuto(threshold=0.15, profile=profile, blocks="attentions")
    sched = cs.compile_schedule(pipe, policy, num_inference_steps=STEPS)
    assert sched.policy["blocks"] == "attentions"
    assert all(space.get(b.block).role == "attention" for b in sched.blocks)
    counts = _count(pipe, sched, {"ResnetBlock2D", "Transformer2DModel"})
    resnets = [n for n in counts if ".resnets." in n]
    assert resnets and all(counts[n] == STEPS for n in resnets)  # ResBlocks run every step
    attns = [n for n in counts if n.endswith(tuple(f"attentions.{i}" for i in range(3)))]
    assert attns and all(counts[n] == 2 for n in attns)  # "R.R." at threshold 0.15
    assert cs.BlockCachingAuto(threshold=0.15, profile=profile).to_dict().get("blocks") is None


def test_component_masks_skip_exactly_the_listed_components(pipe):
    listed = {"down_blocks.1.attentions.0.transformer_blocks.0.attn2": "R..R",
              "up_blocks.0.attentions.1.transformer_blocks.0.ff": "R.R."}
    sched = cs.compile_schedule(pipe, cs.BlockMask(masks=listed), num_inference_steps=STEPS)
    assert {b.block for b in sched.blocks} == set(listed)
    counts = _count(pipe, sched, {"Attention", "FeedForward"})
    assert counts, "no components ran"
    for name, n in counts.items():
        expected = listed[name].count("R") if name in listed else STEPS
        assert n == expected, name
    # and the reuse really happened: the output differs from full compute but stays finite
    full = cs.compile_schedule(pipe, cs.Full(), num_inference_steps=STEPS)
    assert _count(pipe, full, {"FeedForward"})


def test_block_caching_components_from_a_component_profile(pipe):
    space = block_space(pipe.unet)
    comps = space.names(BlockKind.COMPONENT)
    profile = BlockProfile(blocks=comps, changes=tuple((0.0,) + (0.1,) * (STEPS - 1) for _ in comps))
    sched = cs.compile_schedule(pipe, cs.BlockCachingAuto(threshold=0.15, profile=profile, blocks="components"),
                                num_inference_steps=STEPS)
    assert {b.block for b in sched.blocks} == set(comps)
    with pytest.raises(cs.ScheduleError, match="granularity='layer'"):
        cs.compile_schedule(pipe, cs.BlockCachingAuto(threshold=0.1, profile=profile, blocks="attentions"),
                            num_inference_steps=STEPS)
