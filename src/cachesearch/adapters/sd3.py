"""Adapter for ``SD3Transformer2DModel`` (Stable Diffusion 3 / 3.5, MMDiT): ``transformer_blocks.i``.

Each ``JointTransformerBlock`` takes the image and text streams and returns ``(encoder_hidden_states,
hidden_states)`` (the last block, ``context_pre_only``, returns ``None`` for the text stream). Components:
the joint attention ``attn`` (returns ``(hidden_states, encoder_hidden_states)``), the image-only ``attn2`` of
SD3.5's dual-attention layers, and the MLPs ``ff`` (image) and ``ff_context`` (text; not in the last block).
The pipeline batches classifier-free guidance as ``[uncond; cond]``.
"""

from __future__ import annotations

from ._dit import TransformerAdapter
from .base import register_adapter

__all__ = ["FAMILY", "SD3Adapter"]

FAMILY = "sd3"

# JointTransformerBlock's layout, (encoder_hidden_states, hidden_states), comes from diffusers'
# TransformerBlockRegistry; its components attn, attn2, ff, ff_context are found by class.


class SD3Adapter(TransformerAdapter):
    """``SD3Transformer2DModel``: ``transformer_blocks.i`` (joint blocks)."""

    family = FAMILY
    description = "SD3Transformer2DModel (Stable Diffusion 3 / 3.5 MMDiT)"
    fallback = False
    class_names = ("SD3Transformer2DModel",)
    text_len = 77 + 256  # CLIP tokens + T5 tokens (max_sequence_length=256)


register_adapter(SD3Adapter())
