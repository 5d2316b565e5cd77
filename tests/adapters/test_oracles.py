"""cachesearch against diffusers' own cache hooks on every class of the coverage table they run on
(:data:`tests.adapters.families.ORACLES`), at the tiny configurations, on the same modules:

* ``cs.TaylorSeer(interval, warmup, order, blocks=<the attention components>)`` equals diffusers'
  ``TaylorSeerCacheConfig`` told those modules by name (its default patterns fullmatch ``^blocks.*attn`` and friends,
  which hook nothing on Wan's ``blocks.0.attn1`` or Lumina's ``layers.0.attn``);
* a mask that recomputes every attention component at even steps equals Pyramid Attention Broadcast with a block
  skip range of 2 over all timesteps (self-attention by its spatial identifiers, cross-attention by its cross ones).

Bare transformers, one call per step with diffusers' cache context set (what a pipeline's ``cache_context``
does). Tolerance: max |diff| <= 1e-5 in float32; each cached run must also differ from the uncached one.
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
from cachesearch.adapters import adapter_for
from tests._tiny_dit import diffusers_hook
from tests.adapters._zoo import build, sample
from tests.adapters.families import ORACLES

STEPS = 5
TOL = 1e-5


def _attention(model):
    return adapter_for(model).block_space(model).attention_components()


def _exact(names):
    return [f"^{re.escape(n)}$" for n in names]


@pytest.mark.parametrize("name", sorted(n for n, hooks in ORACLES.items() if "taylorseer" in hooks))
def test_taylorseer_equals_diffusers_taylorseer_on_the_attention_modules(name, record_property):
    torch.set_num_threads(1)
    model = build(name)
    names = list(_attention(model))
    base = sample(model, name, STEPS)
    sched = cs.compile_schedule(model, cs.TaylorSeer(interval=2, warmup=1, order=1, blocks=names),
                                num_inference_steps=STEPS)
    with sched.applied(model):
        ours = sample(model, name, STEPS)
    config = TaylorSeerCacheConfig(cache_interval=2, disable_cache_before_step=1, max_order=1,
                                   taylor_factors_dtype=torch.float32, cache_identifiers=_exact(names))
    with diffusers_hook(model, apply_taylorseer_cache, config, "taylorseer_cache"):
        theirs = sample(model, name, STEPS, context=True)
    diff = (ours - theirs).abs().max().item()
    record_property("max_abs_diff", diff)
    assert diff <= TOL, (name, diff)
    assert not torch.equal(ours, base), name


@pytest.mark.parametrize("name", sorted(n for n, hooks in ORACLES.items() if "pab" in hooks))
def test_even_step_attention_masks_equal_pyramid_attention_broadcast(name, record_property):
    torch.set_num_threads(1)
    model = build(name)
    names = _attention(model)
    base = sample(model, name, STEPS)
    even = "".join("R" if s % 2 == 0 else "." for s in range(STEPS))
    with cs.compile_schedule(model, cs.BlockMask(dict.fromkeys(names, even)), num_inference_steps=STEPS).applied(model):
        ours = sample(model, name, STEPS)
    cross = [n for n in names if getattr(model.get_submodule(n), "is_cross_attention", False)]
    spatial = [n for n in names if n not in cross]
    always = (-1, 10**9)
    config = PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=2 if spatial else None, spatial_attention_timestep_skip_range=always,
        spatial_attention_block_identifiers=tuple(_exact(spatial)),
        cross_attention_block_skip_range=2 if cross else None, cross_attention_timestep_skip_range=always,
        cross_attention_block_identifiers=tuple(_exact(cross)), current_timestep_callback=lambda: 500)
    with diffusers_hook(model, apply_pyramid_attention_broadcast, config, "pyramid_attention_broadcast"):
        theirs = sample(model, name, STEPS)
    diff = (ours - theirs).abs().max().item()
    record_property("max_abs_diff", diff)
    assert diff <= TOL, (name, diff)
    assert not torch.equal(ours, base), name
