"""Adapter for ``SD3Transformer2DModel`` (Stable Diffusion 3 / 3.5, MMDiT): ``transformer_blocks.i``.

Each ``JointTransformerBlock`` takes the image and text streams and returns ``(encoder_hidden_states,
hidden_states)`` (the last block, ``context_pre_only``, returns ``None`` for the text stream). Components:
the joint attention ``attn`` (returns ``(hidden_states, encoder_hidden_states)``), the image-only ``attn2`` of
SD3.5's dual-attention layers, and the MLPs ``ff`` (image) and ``ff_context`` (text; not in the last block).
The pipeline batches classifier-free guidance as ``[uncond; cond]``.
"""

from __future__ import annotations

from typing import Any

import torch

from ._dit import Component, DiTAdapter, Stack, check_sizes, place
from .base import BlockIO, register_adapter, register_block_io

__all__ = ["FAMILY", "SD3Adapter"]

FAMILY = "sd3"

register_block_io("JointTransformerBlock", BlockIO(return_hidden_states_index=1, return_encoder_hidden_states_index=0,
                                                   encoder_hidden_states_position=1, channel_dim=-1))


class SD3Adapter(DiTAdapter):
    """``SD3Transformer2DModel``: ``transformer_blocks.i`` (joint blocks)."""

    family = FAMILY
    description = "SD3Transformer2DModel (Stable Diffusion 3 / 3.5 MMDiT)"
    class_names = ("SD3Transformer2DModel",)
    stacks = (
        Stack("transformer_blocks", (Component("attn", attention=True), Component("attn2", attention=True),
                                     Component("ff"), Component("ff_context"))),
    )
    text_len = 77 + 256  # CLIP tokens + T5 tokens (max_sequence_length=256)

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
        """Inputs of one call for ``height × width`` latents (default ``config.sample_size``: 128 = 1024 px)."""
        cfg = denoiser.config
        text_len = self.text_tokens(denoiser)
        h = cfg["sample_size"] if height is None else height
        w = cfg["sample_size"] if width is None else width
        check_sizes(batch=batch_size, latent_height=h, latent_width=w)
        kw = place(denoiser, device, dtype)
        return {
            "hidden_states": torch.zeros(batch_size, cfg["in_channels"], h, w, **kw),
            "encoder_hidden_states": torch.zeros(batch_size, text_len, cfg["joint_attention_dim"], **kw),
            "pooled_projections": torch.zeros(batch_size, cfg["pooled_projection_dim"], **kw),
            "timestep": torch.full((batch_size,), 500.0, **kw),
        }


register_adapter(SD3Adapter())
