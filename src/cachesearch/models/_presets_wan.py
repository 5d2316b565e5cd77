"""Tiny random-weight Wan text-to-video pipelines (``arch:wan2.1-tiny``, ``arch:wan2.2-a14b-tiny``), built offline.

Real ``WanPipeline`` classes at toy sizes, so that ``cachesearch run`` exercises everything a Wan model does — CFG as
a cond and an uncond pass per step, frames, Wan 2.2's two experts switched at ``boundary_ratio`` — on a CPU in
seconds: a 6-block ``WanTransformer3DModel`` (2 heads × 12, 16 latent channels; the layout of diffusers' own Wan
pipeline test), a 2-layer UMT5 encoder, a 4-stage ``AutoencoderKLWan`` (8× in space, 4× in time), the character
tokenizer of :mod:`._tokenizer` (16 tokens) and Wan's published sampler (UniPC, flow prediction, shift 3.0, as
diffusers' Wan conversion script builds it). The pipeline renders 9 frames of 16 × 16 pixels by default (3 latent
frames of 2 × 2). Weights are seeded random: **quality numbers mean nothing** (the pipelines carry
``_cachesearch_random_weights``); the published architectures are the ``arch:wan2.*`` denoiser presets.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
from transformers import UMT5Config, UMT5EncoderModel

from cachesearch.adapters._dit import TEXT_TOKENS_ATTR
from cachesearch.adapters._video import DEFAULTS_ATTR
from cachesearch.models._tokenizer import char_t5_tokenizer

__all__ = ["TINY_WAN", "tiny_wan_configs", "tiny_wan_pipeline", "tiny_wan_transformer"]

TEXT_TOKENS = 16
TEXT_DIM = 32

# The transformer of diffusers' tests/pipelines/wan/test_wan.py (get_dummy_components).
_TRANSFORMER: dict[str, Any] = {
    "patch_size": (1, 2, 2), "num_attention_heads": 2, "attention_head_dim": 12, "in_channels": 16,
    "out_channels": 16, "text_dim": TEXT_DIM, "freq_dim": 256, "ffn_dim": 32, "num_layers": 6, "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads", "rope_max_seq_len": 32,
}
_VAE: dict[str, Any] = {"base_dim": 3, "z_dim": 16, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1,
                        "temperal_downsample": [False, True, True]}
_UMT5: dict[str, Any] = {"vocab_size": 128, "d_model": TEXT_DIM, "d_ff": 37, "d_kv": 8, "num_layers": 2,
                         "num_heads": 4, "relative_attention_num_buckets": 8, "feed_forward_proj": "gated-gelu",
                         "dropout_rate": 0.0}
# Wan-AI/Wan2.1-T2V-*-Diffusers scheduler (scripts/convert_wan_to_diffusers.py in diffusers: UniPC, flow_shift 3.0).
_SCHEDULER: dict[str, Any] = {"prediction_type": "flow_prediction", "use_flow_sigmas": True,
                              "num_train_timesteps": 1000, "flow_shift": 3.0}
_BOUNDARY_RATIO = 0.875  # Wan2.2-T2V-A14B (the same script)

TINY_WAN: dict[str, int] = {"wan2.1-tiny": 1, "wan2.2-a14b-tiny": 2}
"""The tiny presets and their number of experts."""


def tiny_wan_configs() -> dict[str, dict[str, Any]]:
    """Copies of the tiny configs: ``transformer``, ``vae``, ``text_encoder`` (UMT5), ``scheduler``."""
    return {"transformer": dict(_TRANSFORMER), "vae": dict(_VAE), "text_encoder": dict(_UMT5),
            "scheduler": dict(_SCHEDULER)}


def tiny_wan_transformer(seed: int = 0) -> WanTransformer3DModel:
    """The tiny transformer (float32, eval mode); the caller's global RNG is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WanTransformer3DModel(**_TRANSFORMER).eval()
    setattr(model, TEXT_TOKENS_ATTR, TEXT_TOKENS)
    return model


def tiny_wan_pipeline(name: str = "wan2.1-tiny", *, seed: int = 0, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> WanPipeline:
    """A tiny ``WanPipeline`` (``"wan2.1-tiny"``: one transformer; ``"wan2.2-a14b-tiny"``: two experts of the same
    architecture, ``transformer_2`` below the A14B boundary) with seeded random weights."""
    if name not in TINY_WAN:
        raise ValueError(f"unknown tiny Wan preset {name!r}; valid: {', '.join(TINY_WAN)}")
    experts = TINY_WAN[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKLWan(**_VAE).eval()
        text_encoder = UMT5EncoderModel(UMT5Config(**_UMT5)).eval()
    second = tiny_wan_transformer(seed + 1) if experts == 2 else None
    pipe = WanPipeline(
        tokenizer=char_t5_tokenizer(model_max_length=TEXT_TOKENS), text_encoder=text_encoder, vae=vae,
        scheduler=UniPCMultistepScheduler(**_SCHEDULER), transformer=tiny_wan_transformer(seed),
        transformer_2=second, boundary_ratio=_BOUNDARY_RATIO if experts == 2 else None,
    )
    if dtype != torch.float32 or torch.device(device).type != "cpu":
        pipe = pipe.to(device=torch.device(device), dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    setattr(pipe, DEFAULTS_ATTR, {"height": 16, "width": 16, "num_frames": 9})
    pipe._cachesearch_random_weights = True
    return pipe
