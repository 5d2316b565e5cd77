"""``EmbeddedFluxPipeline``: diffusers' ``FluxPipeline`` with the embedded model's defaults and CFG scale.

The subclass exists because two ``FluxPipeline`` defaults are FLUX.1's and cannot be stored in a pipeline
folder, and because the transformer (:class:`~._guided.GuidedFluxTransformer2DModel`) takes its CFG scale from
the call's ``guidance_scale`` (FLUX.1 reads it as a distilled embedding). The two defaults: the T5 prompt
length (``max_sequence_length=512``; our captions are 13 tokens, so the
joint attention would run over 512 mostly-padding text tokens) and the default image side
(``default_sample_size=128`` latent pixels; ours is 16, i.e. 64 px). Every other behaviour — prompt encoding,
2×2 latent packing, the flow-matching loop, decoding with ``scaling_factor``/``shift_factor`` — is
``FluxPipeline``'s own code.
"""

from __future__ import annotations

import functools
from typing import Any

from diffusers import FluxPipeline

__all__ = ["GUIDANCE_SCALE", "TEXT_TOKENS", "EmbeddedFluxPipeline", "mark_text_tokens"]

TEXT_TOKENS = 16
"""T5 prompt length (``max_sequence_length``) of the embedded model; captions are at most 14 tokens."""

GUIDANCE_SCALE = 3.5
"""Default classifier-free guidance scale (FluxPipeline's default ``guidance_scale``), applied by the guided
transformer inside its one call per step."""


class EmbeddedFluxPipeline(FluxPipeline):
    """``FluxPipeline`` whose ``max_sequence_length`` defaults to :data:`TEXT_TOKENS` and image side to 64 px."""

    @property
    def default_sample_size(self) -> int:
        """Default latent side (16: 64 px images); ``FluxPipeline.__init__`` assigning 128 is ignored."""
        return 16

    @default_sample_size.setter
    def default_sample_size(self, value: int) -> None:
        pass

    @functools.wraps(FluxPipeline.__call__)
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("max_sequence_length", TEXT_TOKENS)
        kwargs.setdefault("guidance_scale", GUIDANCE_SCALE)
        if hasattr(self.transformer, "cfg_scale"):  # the guided transformer batches CFG inside its call
            self.transformer.cfg_scale = float(kwargs["guidance_scale"])
        return super().__call__(*args, **kwargs)


def mark_text_tokens(pipe: FluxPipeline, tokens: int = TEXT_TOKENS) -> None:
    """Tell cachesearch's MAC counting that ``pipe.transformer`` sees ``tokens`` text tokens per call, not
    FLUX.1's 512 (joint attention and the text stream's MLPs scale with it)."""
    from cachesearch.adapters._dit import TEXT_TOKENS_ATTR

    setattr(pipe.transformer, TEXT_TOKENS_ATTR, int(tokens))
