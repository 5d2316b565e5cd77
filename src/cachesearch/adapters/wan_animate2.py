"""Wan-Animate 2 (``WanAnimate2Transformer3DModel``): what the generic transformer adapter cannot read from
diffusers' metadata. Its blocks are ``blocks.i`` (found by name); this file adds:

* **Calls beside the steps.** diffusers' modular pipeline (``modular_pipelines/wan_animate_2/denoise.py``) denoises
  the driving video segment by segment; per segment it calls ``scheduler.set_timesteps`` (a new sampling loop),
  then the transformer once with ``kv_cache_mode="extract"`` (the reference pass: every block writes the driving
  segment's keys and values into the segment's KV cache), then per step a cond and an uncond call with
  ``kv_cache_mode="cached"`` that attend to that cache. The reference pass is no sampler step: it runs uncached.
* **CFG passes by argument.** The guider's two passes run outside any ``cache_context``; the uncond pass passes
  ``is_uncondtion=True`` (and skips block 9), the cond pass ``False``: each is a CFG branch with its own counter.
* **Layouts and components.** Blocks take and return the ``[B, L, C]`` token tensor; their components are the
  self-attention, the cross-attention (diffusers attention classes) and ``ffn`` (a plain ``nn.Sequential``).
* **Example inputs** of one step call (the generation pass), with a KV cache holding the reference pass's keys and
  values (data tensors): 800 × 640 pixels (100 × 80 latents), 81-frame segments (21 latent frames plus the
  reference image's slot), 512 UMT5 tokens, 257 CLIP image tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ._blocks import TOKENS
from ._calls import CallRoles, register_call_roles
from ._dit import Component, register_components
from ._examples import Make, Sizes, example
from .base import BlockIO, register_block_io

__all__ = ["ROLES"]

ROLES = CallRoles(
    argument="kv_cache_mode", side=("extract",), branch_argument="is_uncondtion",
    branches=((False, "cond"), (True, "uncond")),
    why="a reference pass per clip segment that fills the segment's KV cache (kv_cache_mode='extract')",
)
register_call_roles("WanAnimate2Transformer3DModel", ROLES)
register_block_io("WanAnimate2TransformerBlock", TOKENS)
register_components("WanAnimate2TransformerBlock", (
    Component("self_attn", attention=True), Component("cross_attn", attention=True), Component("ffn")))
# Its ffn is a plain nn.Sequential (Linear, GELU, Linear) on the [B, L, C] tokens, called as Sequential(input): the
# contract of a Sequential that is a registered component (no family lists another one).
register_block_io("Sequential", BlockIO(hidden_states_argument="input", channel_dim=-1))

_CLIP_TOKENS = 257  # CLIP ViT-H/14 at 224 px: 256 patches and the class token


@example("WanAnimate2Transformer3DModel", height=100, width=80, frames=22, text=512, video=True)
def _wan_animate2(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """One generation-pass call: per sample the noisy latents of the reference image's slot and the segment's
    latent frames (``frames`` in all), the conditioning latents of the same grid (``in_dim - out_dim``
    channels: the i2v mask and the reference / previous-segment latents), and the segment's KV cache as the
    reference pass leaves it (pre-RoPE keys and values of the ``frames - 1`` driving-video latent frames). The
    geometry arguments are what the pipeline's ``prepare_segments`` step computes (grid sizes on the CPU)."""
    from diffusers.models.transformers.transformer_wan_animate_2 import WanAnimate2KVCache

    if s.frames < 2 or s.height % 2 or s.width % 2:
        raise ValueError("Wan-Animate 2 example inputs: need >= 2 latent frames and even latent height and width")
    grid = (s.height // 2, s.width // 2)
    ref_tokens = (s.frames - 1) * grid[0] * grid[1]
    heads = c["num_heads"]
    cache = WanAnimate2KVCache(c["num_layers"])
    for layer in cache.layer_caches:
        layer.store(m.data(s.batch, ref_tokens, heads, c["dim"] // heads),
                    m.data(s.batch, ref_tokens, heads, c["dim"] // heads))
    inputs: dict[str, Any] = {
        "hidden_states": [m.data(c["out_dim"], s.frames, s.height, s.width) for _ in range(s.batch)],
        "timestep": m.full(500.0, 1),
        "encoder_hidden_states": [m.data(s.text, c["text_dim"]) for _ in range(s.batch)],
        "condition_latents": [m.data(c["in_dim"] - c["out_dim"], s.frames, s.height, s.width)
                              for _ in range(s.batch)],
        "kv_cache": cache, "kv_cache_mode": "cached",
        "seq_len": s.frames * grid[0] * grid[1],
        "reference_grid_sizes": torch.tensor([[s.frames - 1, *grid]], dtype=torch.long),
        "origin_len": 4 * (s.frames - 2) + 1, "origin_area": [8 * s.height, 8 * s.width],
    }
    if c.get("use_img_emb", True):
        inputs["encoder_hidden_states_image"] = m.data(s.batch, _CLIP_TOKENS, 1280)  # MLPProj's fixed CLIP width
    return inputs
