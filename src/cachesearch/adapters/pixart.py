"""Adapter for ``PixArtTransformer2DModel`` (PixArt-α / PixArt-Σ): ``transformer_blocks.i``.

Each ``BasicTransformerBlock`` (``norm_type="ada_norm_single"``) returns the hidden-state tensor; its
components are the self-attention ``attn1``, the cross-attention ``attn2`` (to the T5 text) and the MLP ``ff``.
The pipeline batches classifier-free guidance as ``[uncond; cond]``.
"""

from __future__ import annotations

from typing import Any

from ._dit import TransformerAdapter
from .base import register_adapter

__all__ = ["FAMILY", "PixArtAdapter"]

FAMILY = "pixart"

# BasicTransformerBlock's layout (the hidden-state tensor) comes from diffusers' TransformerBlockRegistry; its
# components attn1, attn2, ff are found by class.


class PixArtAdapter(TransformerAdapter):
    """``PixArtTransformer2DModel``: ``transformer_blocks.i``."""

    family = FAMILY
    description = "PixArtTransformer2DModel (PixArt-α, PixArt-Σ)"
    fallback = False
    class_names = ("PixArtTransformer2DModel",)
    text_len = 300  # PixArt-Σ's max_sequence_length (T5); PixArt-α uses 120

    def call_kwargs(self, pipe: Any) -> dict[str, Any]:
        """``use_resolution_binning=False``: binning would render at the nearest trained aspect bin and resize,
        so the evaluator's latents (and a 16 px test image) would not be the ones denoised."""
        import inspect

        params = inspect.signature(type(pipe).__call__).parameters
        return {"use_resolution_binning": False} if "use_resolution_binning" in params else {}


register_adapter(PixArtAdapter())
