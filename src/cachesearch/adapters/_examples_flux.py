"""Example inputs of the image transformers that take packed latent tokens (see :mod:`._examples`): FLUX.1 and its
derivatives (Bria, Chroma, LongCat-Image, Ovis-Image, Bria FIBO), FLUX.2 / FLUX.3, Qwen-Image and the models on its
layout, Krea 2, Ideogram 4. One builder per model family, each modelled on the ``get_dummy_inputs`` of diffusers'
test of that class. Sizes are VAE latent pixels, packed 2 × 2 per token as the pipelines pack them."""

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


def _flux_like(m: Make, c: Mapping[str, Any], s: Sizes, *, pooled: bool, guidance: bool) -> dict[str, Any]:
    """The FLUX.1 layout of its derivatives (Bria, Chroma, LongCat-Image, Ovis-Image): packed tokens, position ids
    per token, sigmas as timesteps; pooled text and a guidance embedding where the config has them."""
    tokens = _packed(s)
    inputs = {
        "hidden_states": m.data(s.batch, tokens, c["in_channels"]),
        "encoder_hidden_states": m.data(s.batch, s.text, c["joint_attention_dim"]),
        "timestep": m.full(1.0, s.batch),
        "img_ids": m.zeros(tokens, 3),
        "txt_ids": m.zeros(s.text, 3),
    }
    if pooled and c.get("pooled_projection_dim"):
        inputs["pooled_projections"] = m.data(s.batch, c["pooled_projection_dim"])
    if guidance and c.get("guidance_embeds"):
        inputs["guidance"] = m.full(3.5, s.batch)
    return inputs


@example("BriaTransformer2DModel", height=128, width=128, text=128, timestep_scale=1.0)
def _bria(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Bria 3.2 (FLUX layout; T5 128 tokens)."""
    return _flux_like(m, c, s, pooled=True, guidance=True)


@example("ChromaTransformer2DModel", height=128, width=128, text=512, timestep_scale=1.0)
def _chroma(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Chroma (FLUX layout without pooled text or guidance: its approximator makes the modulations)."""
    return _flux_like(m, c, s, pooled=False, guidance=False)


@example("LongCatImageTransformer2DModel", height=128, width=128, text=512, timestep_scale=1.0)
def _longcat_image(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """LongCat-Image (FLUX layout; the test passes a guidance scale)."""
    inputs = _flux_like(m, c, s, pooled=False, guidance=False)
    inputs["guidance"] = m.full(3.5, s.batch)
    return inputs


@example("OvisImageTransformer2DModel", height=128, width=128, text=256, timestep_scale=1.0)
def _ovis_image(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Ovis-Image (FLUX layout, no pooled text)."""
    return _flux_like(m, c, s, pooled=False, guidance=False)


@example("BriaFiboTransformer2DModel", height=128, width=128, text=128, timestep_scale=1.0)
def _bria_fibo(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Bria FIBO (FLUX layout) plus one text-encoder layer per block (``text_encoder_dim`` channels)."""
    inputs = _flux_like(m, c, s, pooled=True, guidance=True)
    blocks = c["num_layers"] + c["num_single_layers"]
    inputs["text_encoder_layers"] = [m.data(s.batch, s.text, c["text_encoder_dim"]) for _ in range(blocks)]
    return inputs


@example("Flux2Transformer2DModel", height=128, width=128, text=512, timestep_scale=1.0)
def _flux2(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """FLUX.2: packed tokens with 4-axis position ids (t, h, w, layer) per sample; guidance embedding."""
    tokens = _packed(s)
    h, w = max(s.height // 2, 1), max(s.width // 2, 1)
    img = torch.cartesian_prod(m.arange(1), m.arange(h), m.arange(w), m.arange(1))
    txt = torch.cartesian_prod(m.arange(1), m.arange(1), m.arange(1), m.arange(s.text))
    inputs = {
        "hidden_states": m.data(s.batch, tokens, c["in_channels"]),
        "encoder_hidden_states": m.data(s.batch, s.text, c["joint_attention_dim"]),
        "img_ids": img.unsqueeze(0).expand(s.batch, -1, -1),
        "txt_ids": txt.unsqueeze(0).expand(s.batch, -1, -1),
        "timestep": m.full(1.0, s.batch),
    }
    if c.get("guidance_embeds", True):
        inputs["guidance"] = m.full(1.0, s.batch)
    return inputs


@example("NucleusMoEImageTransformer2DModel", height=128, width=128, text=512, timestep_scale=1.0)
def _nucleus_moe(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Nucleus-MoE-Image: Qwen-Image's layout."""
    return _qwenimage(m, c, s)


@example("Flux3Transformer2DModel", height=128, width=128, text=512, timestep_scale=1.0)
def _flux3(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """FLUX.3: packed tokens with 4-axis position ids shared by the batch; timesteps in [0, 1]; step-distilled
    (``flow_map``) checkpoints also take the timestep each step jumps to."""
    h, w = max(s.height // 2, 1), max(s.width // 2, 1)
    inputs = {
        "hidden_states": m.data(s.batch, h * w, c["in_channels"]),
        "encoder_hidden_states": m.data(s.batch, s.text, c["joint_attention_dim"]),
        "timestep": m.full(1.0, s.batch),
        "img_ids": torch.cartesian_prod(m.arange(1), m.arange(h), m.arange(w), m.arange(1)),
        "txt_ids": torch.cartesian_prod(m.arange(1), m.arange(1), m.arange(1), m.arange(s.text)),
    }
    if c.get("flow_map"):
        inputs["target_timestep"] = m.full(0.5, s.batch)
    return inputs


@example("QwenImage21Transformer2DModel", height=128, width=128, text=512, timestep_scale=1.0)
def _qwenimage21(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Qwen-Image 2.1: 2 × 2-packed target tokens; the vision-language sequence holds the text, then one image slot
    per 2 × 2 group of target tokens (``img_mask``)."""
    h, w = max(s.height // 2, 2) // 2 * 2, max(s.width // 2, 2) // 2 * 2  # slots hold 2 x 2 tokens
    slots = h * w // 4
    mask = torch.cat([m.zeros(s.batch, s.text, dtype=torch.bool), m.ones(s.batch, slots, dtype=torch.bool)], dim=1)
    return {
        "hidden_states": m.data(s.batch, h * w, c["in_channels"]),
        "encoder_hidden_states": m.data(s.batch, s.text, c["context_in_dim"]),
        "timestep": m.full(1.0, s.batch),
        "img_shapes": [[(1, h, w)]] * s.batch,
        "img_mask": mask,
    }


@example("Ideogram4Transformer2DModel", height=128, width=128, text=256, timestep_scale=1.0)
def _ideogram4(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Ideogram 4: one packed sequence of text then 2 × 2-patchified image tokens; per-token roles (indicator 3:
    text, 2: output image) and 3-axis positions (image rows offset by 65536, as the pipeline places them)."""
    h, w = max(s.height // 2, 1), max(s.width // 2, 1)
    image = h * w
    length = s.text + image
    hidden = m.data(s.batch, length, c["in_channels"])
    hidden[:, : s.text] = 0
    context = m.data(s.batch, length, c["llm_features_dim"])
    context[:, s.text:] = 0
    pos = m.zeros(s.batch, length, 3, dtype=torch.long)
    pos[:, : s.text] = m.arange(s.text)[:, None]
    grid = torch.cartesian_prod(m.arange(h), m.arange(w))
    pos[:, s.text:, 0] = 65536
    pos[:, s.text:, 1:] = grid + 65536
    indicator = m.full(3, s.batch, length, dtype=torch.long)
    indicator[:, s.text:] = 2
    return {"hidden_states": hidden, "encoder_hidden_states": context, "timestep": m.full(0.5, s.batch),
            "position_ids": pos, "segment_ids": m.ones(s.batch, length, dtype=torch.long), "indicator": indicator}


@example("Krea2Transformer2DModel", height=128, width=128, text=256, timestep_scale=1.0)
def _krea2(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Krea 2: 2 × 2-patchified image tokens, text hidden states of several encoder layers, positions (text rows
    0, image rows (0, row, column))."""
    h, w = max(s.height // 2, 1), max(s.width // 2, 1)
    pos = m.zeros(s.text + h * w, 3)
    pos[s.text:, 1:] = torch.cartesian_prod(m.arange(h), m.arange(w)).to(m.dtype)
    return {"hidden_states": m.data(s.batch, h * w, c["in_channels"]),
            "encoder_hidden_states": m.data(s.batch, s.text, c["num_text_layers"], c["text_hidden_dim"]),
            "timestep": m.full(0.5, s.batch), "position_ids": pos,
            "encoder_attention_mask": m.ones(s.batch, s.text, dtype=torch.bool)}
