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


def _sizes_cond(m: Make, s: Sizes) -> dict[str, Any]:
    """CogView's micro-conditioning: original and target size in pixels (8 per latent pixel), crop corner."""
    size = torch.tensor([[s.height * 8, s.width * 8]] * s.batch, device=m.device)
    return {"original_size": size, "target_size": size.clone(),
            "crop_coords": torch.zeros(s.batch, 2, dtype=torch.long, device=m.device)}


@example("CogView3PlusTransformer2DModel", height=128, width=128, text=224)
def _cogview3plus(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """CogView3-Plus (1024 px; T5 224 tokens)."""
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
            "encoder_hidden_states": m.data(s.batch, s.text, c["text_embed_dim"]),
            "timestep": m.full(500.0, s.batch), **_sizes_cond(m, s)}


@example("CogView4Transformer2DModel", height=128, width=128, text=1024)
def _cogview4(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """CogView4 (1024 px; GLM text up to 1024 tokens)."""
    return _cogview3plus(m, c, s)


@example("GlmImageTransformer2DModel", height=128, width=128, text=256)
def _glm_image(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """GLM-Image: CogView4's layout plus the prior (vector-quantised) token ids and their drop flags."""
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
            "encoder_hidden_states": m.data(s.batch, s.text, c["text_embed_dim"]),
            "prior_token_id": m.zeros(s.batch, dtype=torch.long),
            "prior_token_drop": m.zeros(s.batch, dtype=torch.bool),
            "timestep": m.full(500.0, s.batch),
            "target_size": m.full(0.0, s.batch, 2) + torch.tensor([s.height, s.width], device=m.device),
            "crop_coords": m.zeros(s.batch, 2)}


@example("AuraFlowTransformer2DModel", height=None, width=None, text=256)
def _auraflow(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """AuraFlow (``config.sample_size`` latents; Pile-T5 256 tokens)."""
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
            "encoder_hidden_states": m.data(s.batch, s.text, c["joint_attention_dim"]),
            "timestep": m.full(500.0, s.batch)}


@example("DiTTransformer2DModel", height=None, width=None, text=1)
def _dit(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """DiT (class-conditional ImageNet: a class label, no text)."""
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
            "timestep": m.full(500.0, s.batch, dtype=torch.long),
            "class_labels": m.zeros(s.batch, dtype=torch.long)}


@example("SanaTransformer2DModel", height=None, width=None, text=300)
def _sana(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """SANA (``config.sample_size`` DC-AE latents: 32 = 1024 px; Gemma 300 tokens)."""
    inputs = {"hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
              "encoder_hidden_states": m.data(s.batch, s.text, c["caption_channels"]),
              "timestep": m.full(500.0, s.batch)}
    if c.get("guidance_embeds"):
        inputs["guidance"] = m.full(4.5, s.batch)
    return inputs


@example("Lumina2Transformer2DModel", height=128, width=128, text=256, timestep_scale=1.0)
def _lumina2(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Lumina-Image 2.0 (Gemma 256 tokens; timesteps in [0, 1], 1 = clean)."""
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
            "encoder_hidden_states": m.data(s.batch, s.text, c["cap_feat_dim"]),
            "timestep": m.full(0.5, s.batch),
            "encoder_attention_mask": m.ones(s.batch, s.text, dtype=torch.bool)}


@example("LuminaNextDiT2DModel", height=128, width=128, text=256, timestep_scale=1.0)
def _lumina_next(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Lumina-Next: the pipeline passes the 2-D rotary table (384 × 384 positions × half a head)."""
    head = c["hidden_size"] // c["num_attention_heads"]
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
            "encoder_hidden_states": m.data(s.batch, s.text, c["cross_attention_dim"]),
            "timestep": m.full(0.5, s.batch),
            "encoder_mask": m.ones(s.batch, s.text),
            "image_rotary_emb": m.data(384, 384, head // 2),
            "cross_attention_kwargs": {}}


@example("HiDreamImageTransformer2DModel", height=128, width=128, text=128, timestep="timesteps")
def _hidream(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """HiDream-I1: T5 and Llama-3 hidden states (one per Llama layer it reads), pooled CLIP text."""
    t5_dim, llama_dim = c["caption_channels"]
    layers = max(c["llama_layers"]) + 1
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
            "encoder_hidden_states_t5": m.data(s.batch, s.text, t5_dim),
            "encoder_hidden_states_llama3": m.data(layers, s.batch, s.text, llama_dim),
            "pooled_embeds": m.data(s.batch, c["text_emb_dim"]),
            "timesteps": m.full(500.0, s.batch, dtype=torch.long)}


@example("HunyuanDiT2DModel", height=None, width=None, text=77)
def _hunyuan_dit(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Hunyuan-DiT: CLIP and T5 text with masks, size/crop micro-conditioning, a style id, and the 2-D rotary
    table the pipeline computes (cos, sin per image token)."""
    p = c["patch_size"]
    tokens = (s.height // p) * (s.width // p)
    head = c["attention_head_dim"]
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
            "encoder_hidden_states": m.data(s.batch, s.text, c["cross_attention_dim"]),
            "text_embedding_mask": m.ones(s.batch, s.text),
            "encoder_hidden_states_t5": m.data(s.batch, c["text_len_t5"], c["cross_attention_dim_t5"]),
            "text_embedding_mask_t5": m.ones(s.batch, c["text_len_t5"]),
            "timestep": m.full(500.0, s.batch),
            "image_meta_size": m.full(0.0, s.batch, 6) + torch.tensor(
                [1024, 1024, s.height * 8, s.width * 8, 0, 0], dtype=m.dtype, device=m.device),
            "style": m.zeros(s.batch, dtype=torch.long),
            "image_rotary_emb": (m.ones(tokens, head), m.zeros(tokens, head))}


@example("ZImageTransformer2DModel", height=128, width=128, text=512, latent="x", timestep="t",
         timestep_scale=1.0)
def _z_image(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Z-Image: per-sample lists of latents ``[C, 1, H, W]`` and caption features; timesteps in [0, 1]."""
    return {"x": [m.data(c["in_channels"], 1, s.height, s.width) for _ in range(s.batch)],
            "cap_feats": [m.data(s.text, c["cap_feat_dim"]) for _ in range(s.batch)],
            "t": m.full(0.5, s.batch)}


@example("NucleusMoEImageTransformer2DModel", height=128, width=128, text=512, timestep_scale=1.0)
def _nucleus_moe(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Nucleus-MoE-Image: Qwen-Image's layout."""
    return _qwenimage(m, c, s)


@example("ErnieImageTransformer2DModel", height=128, width=128, text=256, timestep_scale=1.0)
def _ernie_image(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """ERNIE-Image: text hidden states and their lengths."""
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
            "timestep": m.full(1.0, s.batch),
            "text_bth": m.data(s.batch, s.text, c["text_in_dim"]),
            "text_lens": m.full(s.text, s.batch, dtype=torch.long)}


@example("PRXTransformer2DModel", height=64, width=64, text=256, timestep_scale=1.0)
def _prx(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """PRX (Photoroom)."""
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
            "encoder_hidden_states": m.data(s.batch, s.text, c["context_in_dim"]),
            "timestep": m.full(1.0, s.batch)}


@example("OmniGenTransformer2DModel", height=128, width=128, text=64, timestep_scale=1.0)
def _omnigen(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """OmniGen: a text-only prompt's token ids, no input images; one sequence of prompt, time token and 2 × 2
    image patches, fully attended."""
    length = s.text + 1 + (s.height // 2) * (s.width // 2)
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
            "timestep": m.full(0.5, s.batch),
            "input_ids": m.zeros(s.batch, s.text, dtype=torch.long),
            "input_img_latents": [],
            "input_image_sizes": {},
            "attention_mask": m.ones(s.batch, length, length),
            "position_ids": m.arange(length).unsqueeze(0).expand(s.batch, -1)}
