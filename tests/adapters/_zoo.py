"""Tiny random configurations of diffusers' transformer classes, for the adapter coverage tests. Test-only.

Each configuration is the one diffusers' own model test of that class builds (``get_init_dict`` /
``prepare_init_args_and_inputs_for_common`` in ``tests/models/transformers/test_models_transformer_*.py``), with
at most two layers per block list; the sizes are that test's ``get_dummy_inputs`` sizes (latent frames, height,
width, text tokens). The inputs themselves come from the adapter (:func:`cachesearch.adapters.example_for`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import diffusers
import torch

__all__ = ["TINY", "Tiny", "build"]


@dataclass(frozen=True)
class Tiny:
    """One tiny configuration and its test sizes."""

    config: dict[str, Any]
    height: int = 16
    width: int = 16
    frames: int = 1
    text: int = 8
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


TINY: dict[str, Tiny] = {
    # image
    "FluxTransformer2DModel": Tiny(dict(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 4, 8)), height=8, width=8),
    "SD3Transformer2DModel": Tiny(dict(
        sample_size=32, patch_size=1, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=4,
        caption_projection_dim=32, joint_attention_dim=32, pooled_projection_dim=64, out_channels=4,
        dual_attention_layers=(0,), qk_norm="rms_norm"), height=8, width=8),
    "PixArtTransformer2DModel": Tiny(dict(
        sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=3, caption_channels=32,
        in_channels=4, cross_attention_dim=24, out_channels=8, attention_bias=True, activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000, norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6),
        height=8, width=8),
    "QwenImageTransformer2DModel": Tiny(dict(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=4,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4)), height=8, width=8),
    # video
    "WanTransformer3DModel": Tiny(dict(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=16, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32), frames=2, height=16, width=16, text=12),
    "HunyuanVideoTransformer3DModel": Tiny(dict(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, patch_size=1, patch_size_t=1, guidance_embeds=True,
        text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 4, 4), image_condition_type=None),
        frames=1, height=16, width=16, text=12),
    "LTXVideoTransformer3DModel": Tiny(dict(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
        num_layers=2, qk_norm="rms_norm_across_heads", caption_channels=16), frames=2, height=16, width=16, text=16),
    "CogVideoXTransformer3DModel": Tiny(dict(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=2,
        text_embed_dim=8, num_layers=2, sample_width=8, sample_height=8, sample_frames=8, patch_size=2,
        patch_size_t=None, temporal_compression_ratio=4, max_text_seq_length=8), frames=1, height=8, width=8),
}


def build(name: str, seed: int = 0) -> torch.nn.Module:
    """The tiny model of class ``name`` (float32, eval mode, seeded; the caller's RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(diffusers, name)(**TINY[name].config)
    return model.eval()
