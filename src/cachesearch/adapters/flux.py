"""Adapter for ``FluxTransformer2DModel`` (FLUX.1): 19 double-stream then 38 single-stream blocks.

Double-stream blocks (``transformer_blocks.i``, ``FluxTransformerBlock``) take the image and text streams
and return ``(encoder_hidden_states, hidden_states)``; their components are the joint attention ``attn``
(which returns ``(hidden_states, encoder_hidden_states)``) and the two MLPs ``ff`` (image) and ``ff_context``
(text). Single-stream blocks (``single_transformer_blocks.i``, ``FluxSingleTransformerBlock``) concatenate the
streams, run ``proj_mlp`` and ``attn`` in parallel and fuse them with ``proj_out``; they too return
``(encoder_hidden_states, hidden_states)`` (diffusers' ``TransformerBlockRegistry`` says the same).

FLUX.1 is guidance-distilled: the guidance scale is an embedding, not a CFG batch (``true_cfg_scale > 1``
makes two denoiser calls per step, which the step accounting refuses). Latents are packed 2×2: the
pipeline's ``latents=`` are ``[B, (h/2)·(w/2), 4·C]`` for ``h × w`` VAE latents.
"""

from __future__ import annotations

from typing import Any

import torch

from ._dit import Component, DiTAdapter, Stack, check_sizes, place, vae_factor
from .base import BlockIO, register_adapter, register_block_io

__all__ = ["FAMILY", "FluxAdapter"]

FAMILY = "flux"

_DUAL = BlockIO(return_hidden_states_index=1, return_encoder_hidden_states_index=0,
                encoder_hidden_states_position=1, channel_dim=-1)
register_block_io("FluxTransformerBlock", _DUAL)
register_block_io("FluxSingleTransformerBlock", _DUAL)
# A pair (hidden_states, encoder_hidden_states) in double-stream blocks, one tensor in single-stream ones.
register_block_io("FluxAttention", BlockIO(return_hidden_states_index=0, return_encoder_hidden_states_index=1,
                                           encoder_hidden_states_position=1, channel_dim=-1))

_ATTN = Component("attn", attention=True)


class FluxAdapter(DiTAdapter):
    """``FluxTransformer2DModel``: ``transformer_blocks.i`` (double) then ``single_transformer_blocks.i``."""

    family = FAMILY
    description = "FluxTransformer2DModel (FLUX.1: double- and single-stream blocks)"
    class_names = ("FluxTransformer2DModel",)
    stacks = (
        Stack("transformer_blocks", (_ATTN, Component("ff"), Component("ff_context"))),
        # proj_mlp runs before attn (both read the same normalised input); proj_out fuses them
        Stack("single_transformer_blocks", (Component("proj_mlp", residual_ok=False), _ATTN,
                                            Component("proj_out", residual_ok=False))),
    )
    text_len = 512  # FLUX.1-dev's max_sequence_length (T5)

    def example_inputs(
        self,
        denoiser: torch.nn.Module,
        *,
        batch_size: int = 1,
        height: int | None = None,
        width: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Any]:
        """Inputs of one call for ``height × width`` VAE latents (default 128 × 128 = 1024 px), packed 2×2."""
        cfg = denoiser.config
        text_len = self.text_tokens(denoiser)
        h = 128 if height is None else height
        w = 128 if width is None else width
        check_sizes(batch=batch_size, latent_height=h, latent_width=w)
        tokens = max(h // 2, 1) * max(w // 2, 1)
        kw = place(denoiser, device, dtype)
        inputs: dict[str, Any] = {
            "hidden_states": torch.zeros(batch_size, tokens, cfg["in_channels"], **kw),
            "encoder_hidden_states": torch.zeros(batch_size, text_len, cfg["joint_attention_dim"], **kw),
            "pooled_projections": torch.zeros(batch_size, cfg["pooled_projection_dim"], **kw),
            "timestep": torch.full((batch_size,), 0.5, **kw),
            "img_ids": torch.zeros(tokens, 3, **kw),
            "txt_ids": torch.zeros(text_len, 3, **kw),
        }
        if cfg.get("guidance_embeds"):
            inputs["guidance"] = torch.full((batch_size,), 3.5, **kw)
        return inputs

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
