"""Adapter for ``PixArtTransformer2DModel`` (PixArt-α / PixArt-Σ): ``transformer_blocks.i``.

Each ``BasicTransformerBlock`` (``norm_type="ada_norm_single"``) returns the hidden-state tensor; its
components are the self-attention ``attn1``, the cross-attention ``attn2`` (to the T5 text) and the MLP ``ff``.
The pipeline batches classifier-free guidance as ``[uncond; cond]``.
"""

from __future__ import annotations

from typing import Any

import torch

from ._blocks import TOKENS
from ._dit import Component, DiTAdapter, Stack, check_sizes, place
from .base import register_adapter, register_block_io

__all__ = ["FAMILY", "PixArtAdapter"]

FAMILY = "pixart"

register_block_io("BasicTransformerBlock", TOKENS)


class PixArtAdapter(DiTAdapter):
    """``PixArtTransformer2DModel``: ``transformer_blocks.i``."""

    family = FAMILY
    description = "PixArtTransformer2DModel (PixArt-α, PixArt-Σ)"
    class_names = ("PixArtTransformer2DModel",)
    stacks = (
        Stack("transformer_blocks", (Component("attn1", attention=True), Component("attn2", attention=True),
                                     Component("ff"))),
    )
    text_len = 300  # PixArt-Σ's max_sequence_length (T5); PixArt-α uses 120

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
        h = cfg["sample_size"] if height is None else height
        w = cfg["sample_size"] if width is None else width
        check_sizes(batch=batch_size, latent_height=h, latent_width=w)
        kw = place(denoiser, device, dtype)
        return {
            "hidden_states": torch.zeros(batch_size, cfg["in_channels"], h, w, **kw),
            "encoder_hidden_states": torch.zeros(batch_size, self.text_len, cfg["caption_channels"], **kw),
            "timestep": torch.full((batch_size,), 500.0, **kw),
            "added_cond_kwargs": {"resolution": None, "aspect_ratio": None},
        }

    def call_kwargs(self, pipe: Any) -> dict[str, Any]:
        """``use_resolution_binning=False``: binning would render at the nearest trained aspect bin and resize,
        so the evaluator's latents (and a 16 px test image) would not be the ones denoised."""
        import inspect

        params = inspect.signature(type(pipe).__call__).parameters
        return {"use_resolution_binning": False} if "use_resolution_binning" in params else {}


register_adapter(PixArtAdapter())
