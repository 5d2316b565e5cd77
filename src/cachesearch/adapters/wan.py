"""Adapter for ``WanTransformer3DModel`` (Wan 2.1 and 2.2, text- and image-to-video): ``blocks.i``.

What is special about Wan, beside what the generic adapter reads from diffusers (the block list ``blocks``, each
``WanTransformerBlock``'s layout from ``TransformerBlockRegistry``, its components ``attn1`` / ``attn2`` / ``ffn``
found by class):

* **CFG as two passes.** ``WanPipeline`` calls the transformer once for the prompt inside
  ``cache_context("cond")`` and once for the negative prompt inside ``cache_context("uncond")``, each on the plain
  batch; the runtime keeps a step counter and stored outputs per pass (``cfg = separate``).
* **Two experts.** Wan 2.2 A14B pipelines also hold ``transformer_2`` and switch to it below
  ``boundary_ratio · num_train_timesteps``; a schedule covers both (its rows go to whichever expert runs the step).
* **Frames.** Latents are ``[B, C, (F - 1) // 4 + 1, H / 8, W / 8]`` (Wan 2.2 TI2V's VAE: 16× in space); the
  pipeline renders 480 × 832, 81 frames by default.
* **Text length.** The pipeline pads prompts to ``max_sequence_length`` (512) UMT5 tokens; a pipeline whose
  transformer carries :data:`~cachesearch.adapters._dit.TEXT_TOKENS_ATTR` (the tiny random-weight preset) is called
  with that many instead, so its cost is what the MACs count.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from ._dit import TEXT_TOKENS_ATTR
from ._video import VideoAdapter
from .base import CFG, register_adapter

__all__ = ["FAMILY", "WanAdapter"]

FAMILY = "wan"


class WanAdapter(VideoAdapter):
    """``WanTransformer3DModel``: ``blocks.i`` (self-attention ``attn1``, cross-attention ``attn2``, ``ffn``)."""

    family = FAMILY
    description = "WanTransformer3DModel (Wan 2.1 / 2.2 video; cond and uncond passes; Wan 2.2 A14B's two experts)"
    fallback = False
    class_names = ("WanTransformer3DModel",)
    cfg = CFG.SEPARATE
    text_len = 512  # WanPipeline's max_sequence_length (UMT5)

    def uses_cfg(self, pipe: Any, guidance_scale: float) -> bool:
        # Never a [uncond; cond] batch: with guidance the uncond pass is a call of its own.
        return False

    def expert_steps(self, pipe: Any, num_steps: int, timesteps: Sequence[int] | None = None) -> tuple[int, ...] | None:
        """Per denoiser call, 0 where ``transformer`` runs (timestep >= ``boundary_ratio · num_train_timesteps``) and
        1 where ``transformer_2`` does, as ``WanPipeline`` decides; from ``set_timesteps`` on a copy of the scheduler
        (offline: at compile and apply time, never during sampling). ``None`` without a second expert."""
        ratio = (getattr(pipe, "config", None) or {}).get("boundary_ratio")
        if ratio is None or getattr(pipe, "transformer_2", None) is None:
            return None
        probe = copy.deepcopy(pipe.scheduler)
        if timesteps is not None:
            probe.set_timesteps(timesteps=list(timesteps), device="cpu")
        else:
            probe.set_timesteps(num_steps, device="cpu")
        boundary = float(ratio) * float(probe.config.num_train_timesteps)
        return tuple(0 if float(t) >= boundary else 1 for t in probe.timesteps)

    def call_kwargs(self, pipe: Any) -> dict[str, Any]:
        tokens = getattr(pipe.transformer, TEXT_TOKENS_ATTR, None)
        return {"max_sequence_length": int(tokens)} if tokens else {}


register_adapter(WanAdapter())
