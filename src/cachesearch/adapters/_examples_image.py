"""Example inputs of the image transformers that take latent images (see :mod:`._examples`; the packed-token ones
are in :mod:`._examples_flux`), one builder per model family, each modelled on the ``get_dummy_inputs`` of
diffusers' test of that class. Sizes are VAE latent pixels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ._examples import Make, Sizes, example

__all__: list[str] = []


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
    text = c["text_len"]  # the CLIP stream's length is the config's (its pooler reads that many tokens)
    tokens = (s.height // p) * (s.width // p)
    head = c["attention_head_dim"]
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
            "encoder_hidden_states": m.data(s.batch, text, c["cross_attention_dim"]),
            "text_embedding_mask": m.ones(s.batch, text),
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


@example("HunyuanImageTransformer2DModel", height=64, width=64, text=1000)
def _hunyuan_image(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """HunyuanImage 2.1 (2048 px on its 32× autoencoder: 64 × 64 latents; Qwen2.5-VL text, ByT5 glyph text where
    ``text_embed_2_dim`` is set; guidance and MeanFlow embeddings where the config has them)."""
    inputs = {
        "hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
        "timestep": m.full(500.0, s.batch),
        "encoder_hidden_states": m.data(s.batch, s.text, c["text_embed_dim"]),
        "encoder_attention_mask": m.ones(s.batch, s.text),
    }
    if c.get("text_embed_2_dim"):
        inputs["encoder_hidden_states_2"] = m.data(s.batch, 128, c["text_embed_2_dim"])
        inputs["encoder_attention_mask_2"] = m.ones(s.batch, 128)
    if c.get("guidance_embeds"):
        inputs["guidance"] = m.full(3500.0, s.batch)
    if c.get("use_meanflow"):
        inputs["timestep_r"] = m.full(250.0, s.batch)
    return inputs


@example("BriaFibo2Transformer2DModel", height=128, width=128, text=256, timestep_scale=1.0)
def _bria_fibo2(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Bria FIBO 2: text features bundled per injection block (the Perceiver's first)."""
    bundles = 1 + len(c["injection_layer_ids"])
    return {
        "hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
        "timestep": m.full(1.0, s.batch),
        "encoder_hidden_states": m.data(s.batch, bundles, s.text, c["cap_feat_dim"]),
    }


@example("JoyImageEditTransformer3DModel", height=128, width=128, text=256, timestep_scale=1.0)
def _joyimage(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """JoyImage-Edit: one latent frame ``[B, C, 1, H, W]``."""
    return {"hidden_states": m.data(s.batch, c["in_channels"], 1, s.height, s.width),
            "encoder_hidden_states": m.data(s.batch, s.text, c["text_dim"]),
            "timestep": m.full(1.0, s.batch)}


@example("JoyImageEditPlusTransformer3DModel", height=128, width=128, text=256, timestep_scale=1.0)
def _joyimage_plus(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """JoyImage-Edit-Plus: patchified tokens ``[B, patches, C, pt, ph, pw]`` of the images (here the target alone)
    with each image's patch grid."""
    pt, ph, pw = c["patch_size"]
    h, w = s.height // ph, s.width // pw
    return {"hidden_states": m.data(s.batch, h * w, c["in_channels"], pt, ph, pw),
            "encoder_hidden_states": m.data(s.batch, s.text, c["text_dim"]),
            "timestep": m.full(1.0, s.batch),
            "shape_list": [[(1, h, w)]] * s.batch}


@example("Transformer2DModel", height=None, width=None, text=1)
def _transformer_2d(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """The legacy patched Transformer2DModel (DiT / PixArt-α checkpoints before their own classes): class-
    conditional with ``ada_norm_zero``, else text-conditional."""
    inputs = {"hidden_states": m.data(s.batch, c["in_channels"], s.height, s.width),
              "timestep": m.full(500.0, s.batch, dtype=torch.long)}
    if c.get("norm_type") == "ada_norm_zero":
        inputs["class_labels"] = m.zeros(s.batch, dtype=torch.long)
    elif c.get("cross_attention_dim"):
        inputs["encoder_hidden_states"] = m.data(s.batch, s.text, c.get("caption_channels") or
                                                 c["cross_attention_dim"])
        inputs["added_cond_kwargs"] = {"resolution": None, "aspect_ratio": None}
    return inputs
