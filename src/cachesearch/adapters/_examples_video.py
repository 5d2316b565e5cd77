"""Example inputs of the video transformers (see :mod:`._examples`), one builder per model family, each modelled on
the ``get_dummy_inputs`` of diffusers' test of that class. Sizes are VAE latent pixels and latent frames; the
defaults are each family's published default resolution and clip length."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._examples import Make, Sizes, example

__all__: list[str] = []


@example("WanTransformer3DModel", height=60, width=104, frames=21, text=512, video=True)
def _wan(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Wan 2.1 / 2.2 (480 × 832, 81 frames: 60 × 104 latents, 21 latent frames; UMT5 512 tokens); image-to-video
    checkpoints (``image_dim``) also take 257 CLIP image tokens."""
    inputs = {
        "hidden_states": m.data(s.batch, c["in_channels"], s.frames, s.height, s.width),
        "encoder_hidden_states": m.data(s.batch, s.text, c["text_dim"]),
        "timestep": m.full(500.0, s.batch),
    }
    if c.get("image_dim"):
        inputs["encoder_hidden_states_image"] = m.data(s.batch, 257, c["image_dim"])
    return inputs


@example("HunyuanVideoTransformer3DModel", height=68, width=120, frames=33, text=256, video=True)
def _hunyuan_video(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """HunyuanVideo (544 × 960, 129 frames: 68 × 120 latents, 33 latent frames; Llama 256 tokens + CLIP pooled);
    the pipeline passes the guidance scale × 1000 to guidance-distilled checkpoints."""
    inputs = {
        "hidden_states": m.data(s.batch, c["in_channels"], s.frames, s.height, s.width),
        "timestep": m.full(500.0, s.batch),
        "encoder_hidden_states": m.data(s.batch, s.text, c["text_embed_dim"]),
        "encoder_attention_mask": m.ones(s.batch, s.text),
        "pooled_projections": m.data(s.batch, c["pooled_projection_dim"]),
    }
    if c.get("guidance_embeds"):
        inputs["guidance"] = m.full(6000.0, s.batch)
    return inputs


@example("LTXVideoTransformer3DModel", height=15, width=22, frames=21, text=128, video=True)
def _ltx(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """LTX-Video (480 × 704, 161 frames: 15 × 22 latents, 21 latent frames; T5 128 tokens): the pipeline packs
    latents into ``frames × height × width`` tokens and passes the grid size."""
    return {
        "hidden_states": m.data(s.batch, s.frames * s.height * s.width, c["in_channels"]),
        "encoder_hidden_states": m.data(s.batch, s.text, c["caption_channels"]),
        "timestep": m.full(500.0, s.batch),
        "encoder_attention_mask": m.ones(s.batch, s.text),
        "num_frames": s.frames,
        "height": s.height,
        "width": s.width,
    }


@example("CogVideoXTransformer3DModel", height=60, width=90, frames=13, text=226, video=True)
def _cogvideox(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """CogVideoX (480 × 720, 49 frames: 60 × 90 latents, 13 latent frames; T5 226 tokens); latents are
    ``[B, F, C, H, W]``; CogVideoX 1.5 image-to-video (``ofs_embed_dim``) also takes the ``ofs`` scale."""
    inputs = {
        "hidden_states": m.data(s.batch, s.frames, c["in_channels"], s.height, s.width),
        "encoder_hidden_states": m.data(s.batch, s.text, c["text_embed_dim"]),
        "timestep": m.full(500.0, s.batch),
    }
    if c.get("ofs_embed_dim"):
        inputs["ofs"] = m.full(2.0, s.batch)
    return inputs
