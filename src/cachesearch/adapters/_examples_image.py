"""Example inputs of the image transformers (see :mod:`._examples`), one builder per model family, each modelled on
the ``get_dummy_inputs`` of diffusers' test of that class. Sizes are VAE latent pixels; packed models (FLUX-like:
2 × 2 latent patches per token) pack them as their pipelines do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ._examples import Make, Sizes, example

__all__: list[str] = []


def _packed(s: Sizes) -> int:
    """Tokens of 2 × 2-packed latents (FluxPipeline._pack_latents)."""
    return max(s.height // 2, 1) * max(s.width // 2, 1)


@example("FluxTransformer2DModel", height=128, width=128, text=512, timestep_scale=1.0)
def _flux(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """FLUX.1 (1024 px by default; T5 ``max_sequence_length`` 512); the pipeline passes sigmas as timesteps."""
    tokens = _packed(s)
    inputs = {
        "hidden_states": m.data(s.batch, tokens, c["in_channels"]),
        "encoder_hidden_states": m.data(s.batch, s.text, c["joint_attention_dim"]),
        "pooled_projections": m.data(s.batch, c["pooled_projection_dim"]),
        "timestep": m.full(0.5, s.batch),
        "img_ids": m.zeros(tokens, 3),
        "txt_ids": m.zeros(s.text, 3),
    }
    if c.get("guidance_embeds"):
        inputs["guidance"] = m.full(3.5, s.batch)
    return inputs


@example("SD3Transformer2DModel", height=None, width=None, text=77 + 256)
def _sd3(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """SD3 / 3.5: ``config.sample_size`` latents (128 = 1024 px); CLIP + T5 tokens."""
    return {
        "hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
        "encoder_hidden_states": m.data(s.batch, s.text, c["joint_attention_dim"]),
        "pooled_projections": m.data(s.batch, c["pooled_projection_dim"]),
        "timestep": m.full(500.0, s.batch),
    }


@example("PixArtTransformer2DModel", height=None, width=None, text=300)
def _pixart(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """PixArt-α / Σ: ``config.sample_size`` latents (128 = 1024 px); T5 ``max_sequence_length`` 300 (Σ)."""
    return {
        "hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
        "encoder_hidden_states": m.data(s.batch, s.text, c["caption_channels"]),
        "timestep": m.full(500.0, s.batch),
        "added_cond_kwargs": {"resolution": None, "aspect_ratio": None},
    }


@example("QwenImageTransformer2DModel", height=128, width=128, text=512, timestep_scale=1.0)
def _qwenimage(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Qwen-Image: 2 × 2-packed latents, ``img_shapes`` (frames, packed height, packed width) per sample; the
    pipeline passes sigmas."""
    return {
        "hidden_states": m.data(s.batch, _packed(s), c["in_channels"]),
        "encoder_hidden_states": m.data(s.batch, s.text, c["joint_attention_dim"]),
        "encoder_hidden_states_mask": m.ones(s.batch, s.text, dtype=torch.long),
        "timestep": m.full(1.0, s.batch),
        "img_shapes": [(1, max(s.height // 2, 1), max(s.width // 2, 1))] * s.batch,
    }
