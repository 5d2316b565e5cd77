"""Adapter for ``FluxTransformer2DModel`` (FLUX.1): 19 double-stream then 38 single-stream blocks.

Double-stream blocks (``transformer_blocks.i``, ``FluxTransformerBlock``) take the image and text streams
and return ``(encoder_hidden_states, hidden_states)``; their components are the joint attention ``attn``
(which returns ``(hidden_states, encoder_hidden_states)``) and the two MLPs ``ff`` (image) and ``ff_context``
(text). Single-stream blocks (``single_transformer_blocks.i``, ``FluxSingleTransformerBlock``) concatenate the
streams, run ``proj_mlp`` and ``attn`` in parallel and fuse them with ``proj_out``; they too return
``(encoder_hidden_states, hidden_states)`` (diffusers' ``TransformerBlockRegistry`` says the same).

FLUX.1 is guidance-distilled: the guidance scale is an embedding, not a CFG batch (``true_cfg_scale > 1``
makes two denoiser calls per step, a cond and an uncond pass in their cache contexts, each with its own step
counter and caches in the runtime). Latents are packed 2×2: the
pipeline's ``latents=`` are ``[B, (h/2)·(w/2), 4·C]`` for ``h × w`` VAE latents.
"""

from __future__ import annotations

from typing import Any

from ._dit import Component, TransformerAdapter, register_components, vae_factor
from .base import CFG, register_adapter

__all__ = ["FAMILY", "FluxAdapter"]

FAMILY = "flux"

# Single-stream blocks: proj_mlp runs before attn (both read the same normalised input); proj_out fuses them. Their
# Linear layers are components too, beside the attention diffusers' classes find.
register_components("FluxSingleTransformerBlock", (
    Component("proj_mlp", residual_ok=False), Component("attn", attention=True),
    Component("proj_out", residual_ok=False)))
# Both block classes' layouts, (encoder_hidden_states, hidden_states), come from diffusers' TransformerBlockRegistry;
# FluxAttention (an AttentionModuleMixin: ._blocks) returns a pair in double-stream blocks, one tensor in single ones.


class FluxAdapter(TransformerAdapter):
    """``FluxTransformer2DModel``: ``transformer_blocks.i`` (double) then ``single_transformer_blocks.i``."""

    family = FAMILY
    description = "FluxTransformer2DModel (FLUX.1: double- and single-stream blocks)"
    fallback = False
    class_names = ("FluxTransformer2DModel",)
    cfg = CFG.NONE
    text_len = 512  # FLUX.1-dev's max_sequence_length (T5)

    def latent_shape(self, pipe: Any, height: int, width: int) -> tuple[int, ...]:
        factor = vae_factor(pipe)
        h, w = 2 * (int(height) // (factor * 2)), 2 * (int(width) // (factor * 2))  # as FluxPipeline rounds
        channels = int(pipe.transformer.config.in_channels) // 4
        return (h // 2) * (w // 2), channels * 4

    def default_size(self, pipe: Any) -> tuple[int, int]:
        sample = int(getattr(pipe, "default_sample_size", None) or 128)
        return sample * vae_factor(pipe), sample * vae_factor(pipe)

    def uses_cfg(self, pipe: Any, guidance_scale: float) -> bool:
        # FLUX.1 is guidance-distilled (the scale is an embedding); a transformer class that batches CFG inside
        # its one call per step (``cfg_batch``, e.g. the embedded model's) runs its blocks on [uncond; cond]
        return bool(getattr(pipe.transformer, "cfg_batch", False)) and guidance_scale > 1


register_adapter(FluxAdapter())
