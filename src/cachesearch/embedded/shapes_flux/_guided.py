"""``GuidedFluxTransformer2DModel``: FLUX's transformer with classifier-free guidance inside one call.

FLUX.1-dev is guidance-*distilled* (the scale is an embedding); a small model trained here cannot be distilled,
and ``FluxPipeline``'s true CFG calls the transformer twice per step. This subclass keeps FLUX's blocks and
weights unchanged and adds two learned null conditionings (token states and the pooled vector, as PixArt's
``y_embedding``; trained by replacing 10 % of the captions with them). With ``cfg_scale > 1`` one call runs the
blocks on the batch ``[null; cond]`` and returns ``v_null + s · (v_cond − v_null)``, so the sampler still makes
one denoiser call per step and the blocks see the ``[uncond; cond]`` batch every CFG pipeline has.
The scale is set per pipeline call by :class:`~._pipeline.EmbeddedFluxPipeline` from ``guidance_scale``.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import FluxTransformer2DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_outputs import Transformer2DModelOutput

__all__ = ["GuidedFluxTransformer2DModel"]


class GuidedFluxTransformer2DModel(FluxTransformer2DModel):
    """``FluxTransformer2DModel`` plus learned null text conditioning and batched CFG (see the module)."""

    cfg_batch = True
    """The blocks run on ``[uncond; cond]`` when ``cfg_scale > 1`` (what cachesearch's adapter reads)."""

    @register_to_config
    def __init__(
        self,
        patch_size: int = 1,
        in_channels: int = 64,
        out_channels: int | None = None,
        num_layers: int = 19,
        num_single_layers: int = 38,
        attention_head_dim: int = 128,
        num_attention_heads: int = 24,
        joint_attention_dim: int = 4096,
        pooled_projection_dim: int = 768,
        guidance_embeds: bool = False,
        axes_dims_rope: tuple[int, int, int] = (16, 56, 56),
        null_text_tokens: int = 16,
    ) -> None:
        super().__init__(patch_size=patch_size, in_channels=in_channels, out_channels=out_channels,
                         num_layers=num_layers, num_single_layers=num_single_layers,
                         attention_head_dim=attention_head_dim, num_attention_heads=num_attention_heads,
                         joint_attention_dim=joint_attention_dim, pooled_projection_dim=pooled_projection_dim,
                         guidance_embeds=guidance_embeds, axes_dims_rope=axes_dims_rope)
        self.null_text = torch.nn.Parameter(torch.zeros(null_text_tokens, joint_attention_dim))
        self.null_pooled = torch.nn.Parameter(torch.zeros(pooled_projection_dim))
        self.cfg_scale = 1.0

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                pooled_projections: torch.Tensor | None = None, timestep: torch.Tensor | None = None,
                *args: Any, return_dict: bool = True, **kwargs: Any) -> Any:
        """FLUX's forward; with ``cfg_scale > 1`` on ``[null; cond]`` in one batch, combined by CFG."""
        if self.cfg_scale <= 1.0 or encoder_hidden_states is None:
            return super().forward(hidden_states, encoder_hidden_states, pooled_projections, timestep, *args,
                                   return_dict=return_dict, **kwargs)
        b = hidden_states.shape[0]
        null_text = self.null_text.to(encoder_hidden_states.dtype).expand(b, -1, -1)
        null_pooled = self.null_pooled.to(pooled_projections.dtype).expand(b, -1)
        out = super().forward(
            torch.cat([hidden_states, hidden_states]), torch.cat([null_text, encoder_hidden_states]),
            torch.cat([null_pooled, pooled_projections]), torch.cat([timestep, timestep]), *args,
            return_dict=False, **kwargs)[0]
        uncond, cond = out.chunk(2)
        v = uncond + self.cfg_scale * (cond - uncond)
        return Transformer2DModelOutput(sample=v) if return_dict else (v,)

    def with_null(self, encoder_hidden_states: torch.Tensor, pooled_projections: torch.Tensor,
                  drop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The conditioning with the rows where ``drop`` is true replaced by the null one (training)."""
        d = drop.to(encoder_hidden_states.device)
        text = torch.where(d[:, None, None], self.null_text.expand_as(encoder_hidden_states), encoder_hidden_states)
        pooled = torch.where(d[:, None], self.null_pooled.expand_as(pooled_projections), pooled_projections)
        return text, pooled
